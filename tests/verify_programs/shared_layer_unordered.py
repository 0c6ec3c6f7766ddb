"""One tf.layers.batch_normalization layer (momentum 0.9) applied to two batches in one run, as a
GAN's discriminator is applied to real and generated data (reuse=tf.AUTO_REUSE): the run updates
the moving statistics twice, and nothing orders the two updates (as in most GANs)."""
import sys

import numpy as np
import tensorflow as tf

if sys.argv[1] == "v2":
    tf.compat.v1.disable_v2_behavior()
else:
    tf.compat.v1.disable_eager_execution()
tf1 = tf.compat.v1

real = tf1.placeholder(tf.float32, [None, 2])
fake = tf1.placeholder(tf.float32, [None, 2])


def discriminator(inputs):
    with tf1.variable_scope("discriminator", reuse=tf1.AUTO_REUSE):
        return tf1.layers.batch_normalization(inputs, training=True, momentum=0.9, name="bn")


on_real = discriminator(real)
on_fake = discriminator(fake)
scale = tf1.get_variable("scale", [2], initializer=tf1.ones_initializer())
loss = tf.reduce_mean(tf.square(on_real * scale - 1.0)) + tf.reduce_mean(tf.square(on_fake * scale))
with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)):
    train = tf1.train.GradientDescentOptimizer(0.1).minimize(loss)

rng = np.random.RandomState(0)
with tf1.Session() as session:
    session.run(tf1.global_variables_initializer())
    for step in range(3):
        session.run(train, {real: rng.randn(4, 2).astype(np.float32) + 2,
                            fake: rng.randn(4, 2).astype(np.float32) - 1})
    print(session.run(tf1.global_variables("discriminator")))
