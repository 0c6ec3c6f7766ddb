"""A Keras functional model (BatchNormalization on the input, Dense layers) trained with a loop
of model.train_on_batch in graph mode and evaluated with model.evaluate."""
import random

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()
random.seed(34)
np.random.seed(34)
tf.compat.v1.set_random_seed(34)

inputs = tf.keras.Input(shape=(5,))
h = tf.keras.layers.BatchNormalization(momentum=0.75, epsilon=1e-4)(inputs)
h = tf.keras.layers.Dense(6, activation="tanh")(h)
outputs = tf.keras.layers.Dense(1)(h)
model = tf.keras.Model(inputs, outputs)
model.compile(optimizer=tf.compat.v1.train.GradientDescentOptimizer(0.05), loss="mse")

rng = np.random.RandomState(34)
for step in range(5):
    xb = rng.chisquare(3.0, size=(8, 5)).astype(np.float32)
    yb = np.log1p(xb).sum(axis=1, keepdims=True)
    print("step %d loss %.9f" % (step, model.train_on_batch(xb, yb)))
xv = rng.chisquare(3.0, size=(8, 5)).astype(np.float32)
print("evaluate %.9f" % model.evaluate(xv, np.log1p(xv).sum(axis=1, keepdims=True), verbose=0))
bn = model.layers[1]
print(bn.moving_mean.name, np.array2string(tf.keras.backend.get_value(bn.moving_mean),
                                           precision=9, floatmode="fixed", max_line_width=200))
print(bn.moving_variance.name, np.array2string(tf.keras.backend.get_value(bn.moving_variance),
                                               precision=9, floatmode="fixed",
                                               max_line_width=200))
