"""Batch norm by hand inside tf.compat.v1.variable_scope("bn1"): tf.nn.moments of the input
features, moving averages kept with moving_averages.assign_moving_average (its default
zero_debias=True) and added to UPDATE_OPS; the training output uses the batch statistics, the
inference output the moving ones."""
import random

import numpy as np
import tensorflow as tf
from tensorflow.python.training import moving_averages

tf.compat.v1.disable_v2_behavior()
random.seed(7)
np.random.seed(7)
tf.compat.v1.set_random_seed(7)

DECAY = 0.9
EPSILON = 1e-3

x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
y = tf.compat.v1.placeholder(tf.float32, [None, 1], name="y")

with tf.compat.v1.variable_scope("bn1"):
    params_shape = x.get_shape()[-1:]
    beta = tf.compat.v1.get_variable("beta", params_shape, initializer=tf.zeros_initializer())
    gamma = tf.compat.v1.get_variable("gamma", params_shape, initializer=tf.ones_initializer())
    moving_mean = tf.compat.v1.get_variable("moving_mean", params_shape,
                                            initializer=tf.zeros_initializer(), trainable=False)
    moving_variance = tf.compat.v1.get_variable("moving_variance", params_shape,
                                                initializer=tf.ones_initializer(),
                                                trainable=False)
    mean, variance = tf.nn.moments(x, [0], name="moments")
    update_moving_mean = moving_averages.assign_moving_average(moving_mean, mean, DECAY)
    update_moving_variance = moving_averages.assign_moving_average(moving_variance, variance,
                                                                   DECAY)
    tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.UPDATE_OPS, update_moving_mean)
    tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.UPDATE_OPS, update_moving_variance)
    train_out = tf.nn.batch_normalization(x, mean, variance, beta, gamma, EPSILON)
    test_out = tf.nn.batch_normalization(x, moving_mean, moving_variance, beta, gamma, EPSILON)

w = tf.compat.v1.get_variable("w", [4, 1], initializer=tf.compat.v1.glorot_uniform_initializer())
prediction = tf.matmul(train_out, w)
test_prediction = tf.matmul(test_out, w)
loss = tf.reduce_mean(tf.square(prediction - y))
test_loss = tf.reduce_mean(tf.square(test_prediction - y))
with tf.control_dependencies(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)):
    train_op = tf.compat.v1.train.GradientDescentOptimizer(0.1).minimize(loss)

rng = np.random.RandomState(7)
with tf.compat.v1.Session() as sess:
    sess.run(tf.compat.v1.global_variables_initializer())
    for step in range(5):
        xs = rng.normal(3.0, 2.0, size=(8, 4)).astype(np.float32)
        ys = xs[:, :1] - xs[:, 1:2]
        _, l = sess.run([train_op, loss], feed_dict={x: xs, y: ys})
        print("step %d loss %.9f" % (step, l))
    xs = rng.normal(3.0, 2.0, size=(8, 4)).astype(np.float32)
    print("test loss %.9f" % sess.run(test_loss, feed_dict={x: xs, y: xs[:, :1] - xs[:, 1:2]}))
    print(moving_mean.name, np.array2string(sess.run(moving_mean), precision=9, floatmode="fixed"))
    print(moving_variance.name, np.array2string(sess.run(moving_variance), precision=9,
                                                floatmode="fixed"))
