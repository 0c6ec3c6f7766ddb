"""A batch-norm helper without any variable scope, used twice (the input features, then a hidden
layer): tf.Variable statistics, tf.nn.moments, moving_averages.assign_moving_average with its
default zero_debias=True, the updates forced by control dependencies on the layer's output."""
import random

import numpy as np
import tensorflow as tf
from tensorflow.python.training import moving_averages

tf.compat.v1.disable_v2_behavior()
random.seed(8)
np.random.seed(8)
tf.compat.v1.set_random_seed(8)


def batch_norm(inputs, decay=0.95, epsilon=1e-4):
    size = int(inputs.get_shape()[-1])
    offset = tf.Variable(tf.zeros([size]), name="offset")
    scale = tf.Variable(tf.ones([size]), name="scale")
    moving_mean = tf.Variable(tf.zeros([size]), trainable=False, name="moving_mean")
    moving_var = tf.Variable(tf.ones([size]), trainable=False, name="moving_var")
    mean, var = tf.nn.moments(inputs, axes=[0])
    update_mean = moving_averages.assign_moving_average(moving_mean, mean, decay)
    update_var = moving_averages.assign_moving_average(moving_var, var, decay)
    with tf.control_dependencies([update_mean, update_var]):
        return tf.nn.batch_normalization(inputs, mean, var, offset, scale, epsilon)


x = tf.compat.v1.placeholder(tf.float32, [None, 3])
labels = tf.compat.v1.placeholder(tf.float32, [None, 1])
h = batch_norm(x)
w1 = tf.Variable(tf.random.normal([3, 4], stddev=0.5))
h = tf.nn.relu(batch_norm(tf.matmul(h, w1)))
w2 = tf.Variable(tf.random.normal([4, 1], stddev=0.5))
logits = tf.matmul(h, w2)
loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))
train = tf.compat.v1.train.AdamOptimizer(0.05).minimize(loss)

rng = np.random.RandomState(8)
sess = tf.compat.v1.Session()
sess.run(tf.compat.v1.global_variables_initializer())
for epoch in range(6):
    batch = rng.uniform(0.0, 10.0, size=(12, 3)).astype(np.float32)
    target = (batch[:, :1] > batch[:, 1:2]).astype(np.float32)
    _, cost = sess.run([train, loss], {x: batch, labels: target})
    print("epoch", epoch, "cost %.9f" % cost)
for v in tf.compat.v1.global_variables():
    if v.name.startswith(("moving_mean", "moving_var")) and "/" not in v.name:
        print(v.name, np.array2string(sess.run(v), precision=9, floatmode="fixed"))
sess.close()
