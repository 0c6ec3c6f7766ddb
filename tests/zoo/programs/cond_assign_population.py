"""Batch norm written by hand, as the well-known 2016 tutorial and its StackOverflow follow-ups do:
tf.nn.moments and the population tf.assign()s inside the training branch of tf.cond, then
tf.nn.batch_normalization; the first layer normalises the input features, the second a hidden
layer."""
import random

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()
random.seed(6)
np.random.seed(6)
tf.compat.v1.set_random_seed(6)
epsilon = 1e-3


def batch_norm_wrapper(inputs, is_training, decay=0.9):
    size = inputs.get_shape()[-1]
    scale = tf.Variable(tf.ones([size]), name="scale")
    beta = tf.Variable(tf.zeros([size]), name="beta")
    pop_mean = tf.Variable(tf.zeros([size]), trainable=False, name="pop_mean")
    pop_var = tf.Variable(tf.ones([size]), trainable=False, name="pop_var")

    def training():
        batch_mean, batch_var = tf.nn.moments(inputs, [0])
        train_mean = tf.compat.v1.assign(pop_mean, pop_mean * decay + batch_mean * (1 - decay))
        train_var = tf.compat.v1.assign(pop_var, pop_var * decay + batch_var * (1 - decay))
        with tf.control_dependencies([train_mean, train_var]):
            return tf.nn.batch_normalization(inputs, batch_mean, batch_var, beta, scale, epsilon)

    def testing():
        return tf.nn.batch_normalization(inputs, pop_mean, pop_var, beta, scale, epsilon)

    return tf.cond(is_training, training, testing)


x = tf.compat.v1.placeholder(tf.float32, shape=[None, 3])
y_ = tf.compat.v1.placeholder(tf.float32, shape=[None, 2])
is_training = tf.compat.v1.placeholder(tf.bool)

bn0 = batch_norm_wrapper(x, is_training)
w1 = tf.Variable(tf.compat.v1.truncated_normal([3, 5], stddev=0.5))
z1 = tf.matmul(bn0, w1)
bn1 = batch_norm_wrapper(z1, is_training)
l1 = tf.nn.sigmoid(bn1)
w2 = tf.Variable(tf.compat.v1.truncated_normal([5, 2], stddev=0.5))
b2 = tf.Variable(tf.zeros([2]))
y = tf.nn.softmax(tf.matmul(l1, w2) + b2)
cross_entropy = -tf.reduce_sum(y_ * tf.math.log(y))
train_step = tf.compat.v1.train.GradientDescentOptimizer(0.01).minimize(cross_entropy)
correct_prediction = tf.equal(tf.argmax(y, 1), tf.argmax(y_, 1))
accuracy = tf.reduce_mean(tf.cast(correct_prediction, tf.float32))

rng = np.random.RandomState(6)
sess = tf.compat.v1.InteractiveSession()
sess.run(tf.compat.v1.global_variables_initializer())
for i in range(6):
    batch_xs = rng.uniform(-1.0, 3.0, size=(10, 3)).astype(np.float32)
    batch_ys = np.eye(2, dtype=np.float32)[(batch_xs.sum(1) > 3).astype(int)]
    _, ce = sess.run([train_step, cross_entropy],
                     feed_dict={x: batch_xs, y_: batch_ys, is_training: True})
    print("step", i, "cross entropy %.9f" % ce)
test_xs = rng.uniform(-1.0, 3.0, size=(10, 3)).astype(np.float32)
test_ys = np.eye(2, dtype=np.float32)[(test_xs.sum(1) > 3).astype(int)]
print("accuracy %.9f" % accuracy.eval(feed_dict={x: test_xs, y_: test_ys, is_training: False}))
for v in tf.compat.v1.global_variables():
    if v.name.startswith("pop_"):
        print(v.name, np.array2string(v.eval(), precision=9, floatmode="fixed", max_line_width=200))
sess.close()
