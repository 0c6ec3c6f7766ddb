"""Batch norm by hand whose population mean and variance are averaged with different decays
(0.9 for the mean, 0.99 for the variance), written with tf.compat.v1.assign and run with the train
op through tf.control_dependencies."""
import random

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()
random.seed(15)
np.random.seed(15)
tf.compat.v1.set_random_seed(15)

MEAN_DECAY = 0.9
VARIANCE_DECAY = 0.99

x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
t = tf.compat.v1.placeholder(tf.float32, [None], name="t")
gamma = tf.Variable(tf.ones([4]), name="gamma")
beta = tf.Variable(tf.zeros([4]), name="beta")
pop_mean = tf.Variable(tf.zeros([4]), trainable=False, name="pop_mean")
pop_var = tf.Variable(tf.ones([4]), trainable=False, name="pop_var")

batch_mean, batch_var = tf.nn.moments(x, [0])
update_mean = tf.compat.v1.assign(pop_mean,
                                  pop_mean * MEAN_DECAY + batch_mean * (1 - MEAN_DECAY))
update_var = tf.compat.v1.assign(pop_var,
                                 pop_var * VARIANCE_DECAY + batch_var * (1 - VARIANCE_DECAY))
normalized = tf.nn.batch_normalization(x, batch_mean, batch_var, beta, gamma, 1e-3)
weights = tf.Variable(tf.random.uniform([4, 1], -0.5, 0.5), name="weights")
prediction = tf.squeeze(tf.matmul(normalized, weights), axis=1)
loss = tf.reduce_mean(tf.square(prediction - t))
optimizer = tf.compat.v1.train.GradientDescentOptimizer(0.1)
with tf.control_dependencies([update_mean, update_var]):
    train_op = optimizer.minimize(loss)

rng = np.random.RandomState(15)
with tf.compat.v1.Session() as sess:
    sess.run(tf.compat.v1.global_variables_initializer())
    for step in range(6):
        xs = rng.lognormal(0.0, 0.5, size=(10, 4)).astype(np.float32)
        ts = xs @ np.array([1.0, -1.0, 0.5, 0.0], np.float32)
        _, value = sess.run([train_op, loss], feed_dict={x: xs, t: ts})
        print("step %d loss %.9f" % (step, value))
    print(pop_mean.name, np.array2string(sess.run(pop_mean), precision=9, floatmode="fixed"))
    print(pop_var.name, np.array2string(sess.run(pop_var), precision=9, floatmode="fixed"))
