"""Batch norm by hand: tf.nn.moments, assign_moving_average (0.9, not debiased), and an epsilon the
graph does not hold as a constant (a placeholder with a default): the trace's epsilon is unknown."""
import sys

import numpy as np
import tensorflow as tf
from tensorflow.python.training import moving_averages

if sys.argv[1] == "v2":
    tf.compat.v1.disable_v2_behavior()
else:
    tf.compat.v1.disable_eager_execution()
tf1 = tf.compat.v1

x = tf1.placeholder(tf.float32, [None, 3])
mean, variance = tf.nn.moments(x, [0])
moving_mean = tf1.get_variable("moving_mean", [3], initializer=tf1.zeros_initializer(),
                               trainable=False)
moving_variance = tf1.get_variable("moving_variance", [3], initializer=tf1.ones_initializer(),
                                   trainable=False)
update_mean = moving_averages.assign_moving_average(moving_mean, mean, 0.9, zero_debias=False)
update_variance = moving_averages.assign_moving_average(moving_variance, variance, 0.9,
                                                        zero_debias=False)
epsilon = tf1.placeholder_with_default(1e-3, ())
normalized = tf.nn.batch_normalization(x, mean, variance, None, None, epsilon)
scale = tf1.get_variable("scale", [3], initializer=tf1.ones_initializer())
loss = tf.reduce_mean(tf.square(normalized * scale - 1.0))
with tf.control_dependencies([update_mean, update_variance]):
    train = tf1.train.GradientDescentOptimizer(0.1).minimize(loss)

rng = np.random.RandomState(0)
with tf1.Session() as session:
    session.run(tf1.global_variables_initializer())
    for step in range(4):
        session.run(train, {x: rng.randn(8, 3).astype(np.float32) * 2 + 1})
    print(session.run(moving_variance))
