"""tf.keras (tf_keras) Conv2D + BatchNormalization classifier trained with model.fit in graph
mode, as TF1-era Keras tutorials train on small images."""
import random

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()
random.seed(11)
np.random.seed(11)
tf.compat.v1.set_random_seed(11)

rng = np.random.RandomState(11)
x_train = rng.rand(16, 6, 6, 1).astype(np.float32)
y_train = rng.randint(0, 2, size=16)

model = tf.keras.models.Sequential([
    tf.keras.layers.Conv2D(4, (3, 3), input_shape=(6, 6, 1)),
    tf.keras.layers.BatchNormalization(momentum=0.9),
    tf.keras.layers.Activation("relu"),
    tf.keras.layers.GlobalAveragePooling2D(),
    tf.keras.layers.Dense(2, activation="softmax"),
])
model.compile(optimizer=tf.compat.v1.train.GradientDescentOptimizer(0.1),
              loss="sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(x_train, y_train, batch_size=8, epochs=2, shuffle=False, verbose=0)
for epoch, loss in enumerate(history.history["loss"]):
    print("epoch %d loss %.9f" % (epoch, loss))
bn = model.layers[1]
for weight in (bn.moving_mean, bn.moving_variance):
    print(weight.name, np.array2string(tf.keras.backend.get_value(weight), precision=9,
                                       floatmode="fixed"))
