"""The classic mistake: a CNN with tf.layers.batch_normalization(training=is_training) whose
train op does not depend on UPDATE_OPS, so the moving statistics never move and evaluation
normalises with the initial 0 and 1."""
import random

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()
random.seed(31)
np.random.seed(31)
tf.compat.v1.set_random_seed(31)

x = tf.compat.v1.placeholder(tf.float32, [None, 6, 6, 1])
y = tf.compat.v1.placeholder(tf.int64, [None])
is_training = tf.compat.v1.placeholder(tf.bool)
conv = tf.compat.v1.layers.conv2d(x, 3, 3, padding="same")
conv = tf.compat.v1.layers.batch_normalization(conv, momentum=0.9, training=is_training)
conv = tf.nn.relu(conv)
logits = tf.compat.v1.layers.dense(tf.compat.v1.layers.flatten(conv), 2)
loss = tf.compat.v1.losses.sparse_softmax_cross_entropy(y, logits)
train_op = tf.compat.v1.train.AdamOptimizer(0.01).minimize(loss)
accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), y), tf.float32))

rng = np.random.RandomState(31)
with tf.compat.v1.Session() as sess:
    sess.run(tf.compat.v1.global_variables_initializer())
    for step in range(5):
        xs = rng.rand(8, 6, 6, 1).astype(np.float32) + 2.0
        ys = rng.randint(0, 2, size=8)
        _, value = sess.run([train_op, loss], {x: xs, y: ys, is_training: True})
        print("step %d loss %.9f" % (step, value))
    xs = rng.rand(8, 6, 6, 1).astype(np.float32) + 2.0
    ys = rng.randint(0, 2, size=8)
    print("test accuracy %.9f" % sess.run(accuracy, {x: xs, y: ys, is_training: False}))
    for v in tf.compat.v1.global_variables():
        if "moving_" in v.name:
            print(v.name, np.array2string(sess.run(v), precision=9, floatmode="fixed"))
