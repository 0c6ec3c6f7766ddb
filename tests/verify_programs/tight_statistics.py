"""Batch norm as programs write it, on 128-example batches whose mean is large against their spread
(about 30 against 1, where a one-pass variance loses digits): a tf.layers layer (two-pass
tf.nn.moments, momentum 0.99), the same moments averaged by assign_moving_average with
zero_debias=True, a fused tf.layers layer on images (its input kept, its unbiased variance), and
an ExponentialMovingAverage of a weight (an average of its own). Five training steps."""
import sys

import numpy as np
import tensorflow as tf
from tensorflow.python.training import moving_averages

if sys.argv[1] == "v2":
    tf.compat.v1.disable_v2_behavior()
else:
    tf.compat.v1.disable_eager_execution()
tf1 = tf.compat.v1

x = tf1.placeholder(tf.float32, [128, 4])
images = tf1.placeholder(tf.float32, [32, 2, 2, 3])
weight = tf1.get_variable("weight", [4], initializer=tf1.ones_initializer())
scaled = x * weight

layer = tf1.layers.batch_normalization(scaled, training=True, momentum=0.99, name="layers_bn")

with tf1.variable_scope("debiased"):
    mean, variance = tf.nn.moments(scaled, [0])
    moving_mean = tf1.get_variable("moving_mean", [4], initializer=tf1.zeros_initializer(),
                                   trainable=False)
    moving_variance = tf1.get_variable("moving_variance", [4], initializer=tf1.zeros_initializer(),
                                       trainable=False)
    debiased_updates = [
        moving_averages.assign_moving_average(moving_mean, mean, 0.9, zero_debias=True),
        moving_averages.assign_moving_average(moving_variance, variance, 0.9, zero_debias=True)]
    by_hand = tf.nn.batch_normalization(scaled, mean, variance, None, None, 1e-3)

fused = tf1.layers.batch_normalization(images, training=True, momentum=0.9, fused=True,
                                       name="fused_bn")
loss = (tf.reduce_mean(tf.square(layer - 1.0)) + tf.reduce_mean(tf.square(by_hand - 1.0))
        + tf.reduce_mean(tf.square(fused - 1.0)))
optimizer = tf1.train.GradientDescentOptimizer(0.01)
with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS) + debiased_updates):
    step = optimizer.minimize(loss)
average = tf1.train.ExponentialMovingAverage(0.9)
with tf.control_dependencies([step]):
    train = average.apply([weight])

rng = np.random.RandomState(0)
with tf1.Session() as session:
    session.run(tf1.global_variables_initializer())
    for _ in range(5):
        batch = (rng.randn(128, 4) * [1.0, 0.5, 2.0, 1.0] + [30.0, -20.0, 5.0, 0.0])
        picture = rng.randn(32, 2, 2, 3) * 0.5 + 10.0
        session.run(train, {x: batch.astype(np.float32), images: picture.astype(np.float32)})
    print(session.run(moving_variance))
