"""Batch renormalization with tf.compat.v1.layers.batch_normalization(renorm=True) on the input
features of a small regression network, training placeholder and UPDATE_OPS."""
import random

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()
random.seed(10)
np.random.seed(10)
tf.compat.v1.set_random_seed(10)

inputs = tf.compat.v1.placeholder(tf.float32, [None, 3])
targets = tf.compat.v1.placeholder(tf.float32, [None, 1])
training = tf.compat.v1.placeholder(tf.bool, [])

normalized = tf.compat.v1.layers.batch_normalization(
    inputs, training=training, momentum=0.9, renorm=True, renorm_momentum=0.9,
    renorm_clipping={"rmax": 3.0, "rmin": 1.0 / 3.0, "dmax": 5.0})
hidden = tf.compat.v1.layers.dense(normalized, 6, activation=tf.nn.tanh)
output = tf.compat.v1.layers.dense(hidden, 1)
loss = tf.compat.v1.losses.mean_squared_error(targets, output)
update_ops = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
with tf.control_dependencies(update_ops):
    train_op = tf.compat.v1.train.GradientDescentOptimizer(0.05).minimize(loss)

rng = np.random.RandomState(10)
with tf.compat.v1.Session() as sess:
    sess.run(tf.compat.v1.global_variables_initializer())
    for step in range(6):
        batch = rng.normal([1.0, -2.0, 5.0], [1.0, 0.5, 2.0], size=(8, 3)).astype(np.float32)
        target = np.sin(batch).sum(axis=1, keepdims=True)
        _, mse = sess.run([train_op, loss], {inputs: batch, targets: target, training: True})
        print("step %d mse %.9f" % (step, mse))
    batch = rng.normal([1.0, -2.0, 5.0], [1.0, 0.5, 2.0], size=(8, 3)).astype(np.float32)
    print("test mse %.9f" % sess.run(loss, {inputs: batch,
                                            targets: np.sin(batch).sum(axis=1, keepdims=True),
                                            training: False}))
    for v in tf.compat.v1.global_variables():
        if "moving_mean" in v.name or "moving_variance" in v.name:
            print(v.name, np.array2string(sess.run(v), precision=9, floatmode="fixed"))
