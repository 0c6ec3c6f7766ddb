"""Channels-first batch norm, axis=1: a fused tf.layers batch norm on NCHW images and a non-fused
one on (batch, channels, length) sequences, a training placeholder and UPDATE_OPS."""
import random

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()
random.seed(30)
np.random.seed(30)
tf.compat.v1.set_random_seed(30)

images = tf.compat.v1.placeholder(tf.float32, [None, 3, 4, 4])  # NCHW
sequences = tf.compat.v1.placeholder(tf.float32, [None, 2, 5])  # (batch, channels, length)
is_training = tf.compat.v1.placeholder(tf.bool, [])
image_features = tf.compat.v1.layers.batch_normalization(images, axis=1, training=is_training,
                                                         momentum=0.9)
sequence_features = tf.compat.v1.layers.batch_normalization(sequences, axis=1,
                                                            training=is_training, momentum=0.8)
loss = (tf.reduce_mean(tf.square(image_features - 1.0))
        + tf.reduce_mean(tf.square(sequence_features + 0.5)))
with tf.control_dependencies(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)):
    train_op = tf.compat.v1.train.GradientDescentOptimizer(0.1).minimize(loss)

rng = np.random.RandomState(30)
with tf.compat.v1.Session() as sess:
    sess.run(tf.compat.v1.global_variables_initializer())
    for step in range(4):
        batch_images = rng.normal(2.0, 1.5, size=(4, 3, 4, 4)).astype(np.float32)
        batch_sequences = rng.normal([[0.0], [5.0]], [[1.0], [0.5]], size=(6, 2, 5)).astype(
            np.float32)
        _, value = sess.run([train_op, loss], {images: batch_images, sequences: batch_sequences,
                                               is_training: True})
        print("step %d loss %.9f" % (step, value))
    for v in tf.compat.v1.global_variables():
        if "moving_" in v.name:
            print(v.name, np.array2string(sess.run(v), precision=9, floatmode="fixed"))
