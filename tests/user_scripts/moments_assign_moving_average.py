"""Batch norm by hand: tf.nn.moments, moving averages with assign_moving_average (its default
zero_debias=True), tf.nn.batch_normalization."""
import numpy as np
import tensorflow as tf
from tensorflow.python.training import moving_averages

tf.compat.v1.disable_eager_execution()
rng = np.random.RandomState(0)
x = tf.compat.v1.placeholder(tf.float32, [None, 3])
mean, variance = tf.nn.moments(x, axes=[0])
moving_mean = tf.compat.v1.get_variable("moving_mean", [3], initializer=tf.zeros_initializer(),
                                        trainable=False)
moving_variance = tf.compat.v1.get_variable("moving_variance", [3],
                                            initializer=tf.ones_initializer(), trainable=False)
update_mean = moving_averages.assign_moving_average(moving_mean, mean, 0.9)
update_variance = moving_averages.assign_moving_average(moving_variance, variance, 0.9)
with tf.control_dependencies([update_mean, update_variance]):
    normalized = tf.nn.batch_normalization(x, mean, variance, None, None, 1e-3)
inference = tf.nn.batch_normalization(x, moving_mean, moving_variance, None, None, 1e-3)

with tf.compat.v1.Session() as sess:
    sess.run(tf.compat.v1.global_variables_initializer())
    for step in range(4):
        batch = rng.rand(6, 3).astype(np.float32) * 4 + 1
        sess.run(normalized, {x: batch})
    print("moving mean", sess.run(moving_mean))
