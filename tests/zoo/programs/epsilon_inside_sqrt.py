"""Batch norm written out in full, without tf.nn.batch_normalization: (x - mean) /
tf.sqrt(var + eps) * gamma + beta, with eps a Python constant added inside the square root; the
running statistics are updated with tf.compat.v1.assign ops put in UPDATE_OPS."""
import random

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()
random.seed(17)
np.random.seed(17)
tf.compat.v1.set_random_seed(17)

eps = 1e-5
momentum = 0.9

x = tf.compat.v1.placeholder(tf.float32, [None, 4])
y = tf.compat.v1.placeholder(tf.float32, [None, 1])
is_train = tf.compat.v1.placeholder(tf.bool, [])

gamma = tf.Variable(tf.ones([4]), name="bn_gamma")
beta = tf.Variable(tf.zeros([4]), name="bn_beta")
running_mean = tf.Variable(tf.zeros([4]), trainable=False, name="running_mean")
running_var = tf.Variable(tf.ones([4]), trainable=False, name="running_var")

sample_mean = tf.reduce_mean(x, axis=0)
sample_var = tf.reduce_mean(tf.square(x - sample_mean), axis=0)
tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.UPDATE_OPS, tf.compat.v1.assign(
    running_mean, momentum * running_mean + (1 - momentum) * sample_mean))
tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.UPDATE_OPS, tf.compat.v1.assign(
    running_var, momentum * running_var + (1 - momentum) * sample_var))

mean, var = tf.cond(is_train, lambda: (sample_mean, sample_var),
                    lambda: (tf.identity(running_mean), tf.identity(running_var)))
x_hat = (x - mean) / tf.sqrt(var + eps)
out = gamma * x_hat + beta
w = tf.Variable(tf.random.normal([4, 1], stddev=0.1), name="w")
loss = tf.reduce_mean(tf.square(tf.matmul(out, w) - y))
with tf.control_dependencies(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)):
    train = tf.compat.v1.train.GradientDescentOptimizer(0.1).minimize(loss)

rng = np.random.RandomState(17)
with tf.compat.v1.Session() as sess:
    sess.run(tf.compat.v1.global_variables_initializer())
    for i in range(6):
        xb = rng.uniform(-5.0, 5.0, size=(8, 4)).astype(np.float32)
        yb = np.abs(xb).sum(axis=1, keepdims=True)
        _, l = sess.run([train, loss], {x: xb, y: yb, is_train: True})
        print("iteration %d loss %.9f" % (i, l))
    xb = rng.uniform(-5.0, 5.0, size=(8, 4)).astype(np.float32)
    print("validation loss %.9f" % sess.run(loss, {x: xb, y: np.abs(xb).sum(axis=1, keepdims=True),
                                                   is_train: False}))
    print(running_mean.name, np.array2string(sess.run(running_mean), precision=9,
                                             floatmode="fixed"))
    print(running_var.name, np.array2string(sess.run(running_var), precision=9,
                                            floatmode="fixed"))
