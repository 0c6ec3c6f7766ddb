"""Batch norm by hand with tf.train.ExponentialMovingAverage applied inside a tf.cond on a training
flag (a common 2016-2017 recipe)."""
import numpy as np
import tensorflow as tf

tf.compat.v1.disable_eager_execution()
rng = np.random.RandomState(0)
x = tf.compat.v1.placeholder(tf.float32, [None, 3])
training = tf.compat.v1.placeholder(tf.bool, [])
batch_mean, batch_variance = tf.nn.moments(x, [0])
ema = tf.compat.v1.train.ExponentialMovingAverage(decay=0.5)


def mean_var_with_update():
    ema_apply_op = ema.apply([batch_mean, batch_variance])
    with tf.control_dependencies([ema_apply_op]):
        return tf.identity(batch_mean), tf.identity(batch_variance)


mean, variance = tf.cond(training, mean_var_with_update,
                         lambda: (ema.average(batch_mean), ema.average(batch_variance)))
normed = tf.nn.batch_normalization(x, mean, variance, None, None, 1e-3)

with tf.compat.v1.Session() as sess:
    sess.run(tf.compat.v1.global_variables_initializer())
    for step in range(4):
        batch = rng.rand(5, 3).astype(np.float32) * 4 + 1
        sess.run(normed, {x: batch, training: True})
    print("evaluated", sess.run(normed, {x: batch, training: False})[0])
