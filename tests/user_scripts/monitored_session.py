"""A MonitoredTrainingSession loop with a global step, traced through bnrepro's SessionRunHook."""
import sys

import numpy as np
import tensorflow as tf

import bnrepro

tf.compat.v1.disable_eager_execution()
tf.keras.utils.set_random_seed(0)  # Python, NumPy and TensorFlow
rng = np.random.RandomState(0)
x = tf.compat.v1.placeholder(tf.float32, [None, 3])
y = tf.compat.v1.placeholder(tf.float32, [None, 1])
normalized = tf.compat.v1.layers.batch_normalization(x, training=True, momentum=0.6)
loss = tf.reduce_mean(tf.square(tf.compat.v1.layers.dense(normalized, 1) - y))
global_step = tf.compat.v1.train.get_or_create_global_step()
with tf.control_dependencies(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)):
    train = tf.compat.v1.train.GradientDescentOptimizer(0.05).minimize(loss, global_step)

hook = bnrepro.TraceHook(sys.argv[1], force=True)
with tf.compat.v1.train.MonitoredTrainingSession(hooks=[hook]) as sess:
    for step in range(4):
        batch = rng.rand(8, 3).astype(np.float32) * 4 + 1
        sess.run(train, {x: batch, y: batch.sum(1, keepdims=True)})
print("done")
