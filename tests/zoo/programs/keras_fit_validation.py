"""A Keras MLP whose first layer is BatchNormalization on the raw features, trained with
model.fit(validation_data=...) in graph mode; validation runs in inference mode every epoch."""
import random

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()
random.seed(12)
np.random.seed(12)
tf.compat.v1.set_random_seed(12)

rng = np.random.RandomState(12)
x_train = rng.normal([10.0, -3.0, 0.5, 100.0], [2.0, 1.0, 0.1, 20.0], size=(24, 4)).astype(
    np.float32)
y_train = (x_train[:, 0] * 0.1 + x_train[:, 3] * 0.01).reshape(-1, 1)
x_val = rng.normal([10.0, -3.0, 0.5, 100.0], [2.0, 1.0, 0.1, 20.0], size=(8, 4)).astype(np.float32)
y_val = (x_val[:, 0] * 0.1 + x_val[:, 3] * 0.01).reshape(-1, 1)

model = tf.keras.Sequential()
model.add(tf.keras.layers.BatchNormalization(momentum=0.8, input_shape=(4,)))
model.add(tf.keras.layers.Dense(8, activation="relu"))
model.add(tf.keras.layers.Dense(1))
model.compile(loss="mean_squared_error",
              optimizer=tf.keras.optimizers.legacy.Adam(learning_rate=0.01))
history = model.fit(x_train, y_train, batch_size=8, epochs=2, shuffle=False, verbose=0,
                    validation_data=(x_val, y_val))
for epoch in range(2):
    print("epoch %d loss %.9f val_loss %.9f" % (epoch, history.history["loss"][epoch],
                                               history.history["val_loss"][epoch]))
layer = model.layers[0]
print(layer.moving_mean.name, np.array2string(tf.keras.backend.get_value(layer.moving_mean),
                                               precision=9, floatmode="fixed",
                                               max_line_width=200))
print(layer.moving_variance.name, np.array2string(
    tf.keras.backend.get_value(layer.moving_variance), precision=9, floatmode="fixed",
    max_line_width=200))
