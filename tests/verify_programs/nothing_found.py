"""A linear regression without any moving average: nothing for bnrepro to trace."""
import sys

import numpy as np
import tensorflow as tf

if sys.argv[1] == "v2":
    tf.compat.v1.disable_v2_behavior()
else:
    tf.compat.v1.disable_eager_execution()
tf1 = tf.compat.v1

x = tf1.placeholder(tf.float32, [None, 3])
w = tf1.get_variable("w", [3, 1], initializer=tf1.zeros_initializer())
loss = tf.reduce_mean(tf.square(tf.matmul(x, w) - 1.0))
train = tf1.train.GradientDescentOptimizer(0.1).minimize(loss)

rng = np.random.RandomState(0)
with tf1.Session() as session:
    session.run(tf1.global_variables_initializer())
    for step in range(3):
        session.run(train, {x: rng.randn(4, 3).astype(np.float32)})
    print(session.run(w).ravel())
