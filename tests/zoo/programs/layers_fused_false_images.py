"""tf.layers batch norm on 4-D images with fused=False (the non-fused graph averages the biased
variance over batch, height and width), first layer of a small CNN, training placeholder."""
import random

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()
random.seed(33)
np.random.seed(33)
tf.compat.v1.set_random_seed(33)

images = tf.compat.v1.placeholder(tf.float32, [None, 3, 3, 2])
targets = tf.compat.v1.placeholder(tf.float32, [None, 1])
train_mode = tf.compat.v1.placeholder(tf.bool, [])
net = tf.compat.v1.layers.batch_normalization(images, momentum=0.95, fused=False,
                                              training=train_mode)
net = tf.compat.v1.layers.conv2d(net, 2, 2, activation=tf.nn.relu)
net = tf.compat.v1.layers.dense(tf.compat.v1.layers.flatten(net), 1)
loss = tf.reduce_mean(tf.square(net - targets))
with tf.control_dependencies(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)):
    train = tf.compat.v1.train.GradientDescentOptimizer(0.01).minimize(loss)

rng = np.random.RandomState(33)
with tf.compat.v1.Session() as sess:
    sess.run(tf.compat.v1.global_variables_initializer())
    for step in range(6):
        batch = rng.poisson(4.0, size=(5, 3, 3, 2)).astype(np.float32)
        _, value = sess.run([train, loss], {images: batch, targets: batch.max(axis=(1, 2))[:, :1],
                                            train_mode: True})
        print("step %d loss %.9f" % (step, value))
    for v in tf.compat.v1.global_variables():
        if "moving_" in v.name:
            print(v.name, np.array2string(sess.run(v), precision=9, floatmode="fixed"))
