"""A tf.keras BatchNormalization layer with momentum=0 and zero initialisers: its moving
statistics are always the last training batch's statistics. The training flag is a placeholder
passed to the layer; the updates come from layer.updates."""
import random

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()
random.seed(14)
np.random.seed(14)
tf.compat.v1.set_random_seed(14)

x = tf.compat.v1.placeholder(tf.float32, [None, 3])
y = tf.compat.v1.placeholder(tf.float32, [None, 1])
training = tf.compat.v1.placeholder(tf.bool, [])
bn = tf.keras.layers.BatchNormalization(momentum=0.0, moving_mean_initializer="zeros",
                                        moving_variance_initializer="zeros")
h = bn(x, training=training)
out = tf.keras.layers.Dense(1)(h)
loss = tf.reduce_mean(tf.square(out - y))
with tf.control_dependencies(bn.updates):
    train = tf.compat.v1.train.GradientDescentOptimizer(0.1).minimize(loss)

rng = np.random.RandomState(14)
with tf.compat.v1.Session() as sess:
    sess.run(tf.compat.v1.global_variables_initializer())
    for step in range(4):
        batch = rng.exponential(2.0, size=(6, 3)).astype(np.float32)
        _, value = sess.run([train, loss], {x: batch, y: batch[:, :1] * 2, training: True})
        print("step %d loss %.9f" % (step, value))
    batch = rng.exponential(2.0, size=(6, 3)).astype(np.float32)
    print("eval loss %.9f" % sess.run(loss, {x: batch, y: batch[:, :1] * 2, training: False}))
    mean, variance = sess.run([bn.moving_mean, bn.moving_variance])
    print(bn.moving_mean.name, np.array2string(mean, precision=9, floatmode="fixed"))
    print(bn.moving_variance.name, np.array2string(variance, precision=9, floatmode="fixed"))
