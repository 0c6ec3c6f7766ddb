"""Polyak averaging next to batch norm: tf.layers batch norm on the input (UPDATE_OPS before the
optimizer) and an ExponentialMovingAverage(0.9) of every trainable variable applied after each
optimizer step; the averaged weights are what an evaluation would restore."""
import random

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()
random.seed(30)
np.random.seed(30)
tf.compat.v1.set_random_seed(30)

x = tf.compat.v1.placeholder(tf.float32, [None, 3])
y = tf.compat.v1.placeholder(tf.float32, [None, 1])
is_training = tf.compat.v1.placeholder(tf.bool, [])
net = tf.compat.v1.layers.batch_normalization(x, momentum=0.9, training=is_training)
net = tf.compat.v1.layers.dense(net, 4, activation=tf.nn.relu)
out = tf.compat.v1.layers.dense(net, 1)
loss = tf.reduce_mean(tf.square(out - y))

update_ops = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
with tf.control_dependencies(update_ops):
    opt_op = tf.compat.v1.train.GradientDescentOptimizer(0.05).minimize(loss)
ema = tf.compat.v1.train.ExponentialMovingAverage(decay=0.9)
with tf.control_dependencies([opt_op]):
    train_op = ema.apply(tf.compat.v1.trainable_variables())

rng = np.random.RandomState(30)
with tf.compat.v1.Session() as sess:
    sess.run(tf.compat.v1.global_variables_initializer())
    for step in range(5):
        xs = rng.normal(2.0, 1.5, size=(8, 3)).astype(np.float32)
        ys = np.maximum(xs, 0).sum(axis=1, keepdims=True)
        _, value = sess.run([train_op, loss], {x: xs, y: ys, is_training: True})
        print("step %d loss %.9f" % (step, value))
    for v in tf.compat.v1.global_variables():
        if "moving_" in v.name or v.name == "dense_1/bias/ExponentialMovingAverage:0":
            print(v.name, np.array2string(sess.run(v), precision=9, floatmode="fixed"))
