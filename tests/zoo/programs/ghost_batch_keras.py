"""Ghost batch normalization: tf.keras BatchNormalization(virtual_batch_size=4) on the input
features of a Keras model trained with model.fit on batches of 16 (each normalised as four ghost
batches of 4)."""
import random

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()
random.seed(28)
np.random.seed(28)
tf.compat.v1.set_random_seed(28)

rng = np.random.RandomState(28)
x_train = rng.normal([0.0, 10.0, -4.0], [1.0, 3.0, 2.0], size=(48, 3)).astype(np.float32)
y_train = (x_train @ np.array([[0.5], [0.1], [-0.3]], np.float32)).astype(np.float32)

model = tf.keras.Sequential([
    tf.keras.layers.BatchNormalization(virtual_batch_size=4, momentum=0.9, input_shape=(3,)),
    tf.keras.layers.Dense(4, activation="relu"),
    tf.keras.layers.Dense(1),
])
model.compile(optimizer=tf.compat.v1.train.AdamOptimizer(0.01), loss="mse")
history = model.fit(x_train, y_train, batch_size=16, epochs=2, shuffle=False, verbose=0)
print("losses", " ".join("%.9f" % v for v in history.history["loss"]))
bn = model.layers[0]
for weight in (bn.moving_mean, bn.moving_variance):
    print(weight.name, np.array2string(tf.keras.backend.get_value(weight), precision=9,
                                       floatmode="fixed"))
