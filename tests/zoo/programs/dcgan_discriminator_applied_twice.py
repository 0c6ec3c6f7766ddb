"""DCGAN as its best-known TF1 ports write it: the discriminator applied twice, to real and to
generated images (variable_scope reuse), fused batch norm in both networks with training=True, one
UPDATE_OPS dependency for both optimizers, each optimizer with its own var_list."""
import random

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()
random.seed(31)
np.random.seed(31)
tf.compat.v1.set_random_seed(31)


def generator(z):
    with tf.compat.v1.variable_scope("g"):
        h = tf.reshape(tf.compat.v1.layers.dense(z, 4 * 4 * 4, name="lin"), [-1, 4, 4, 4])
        h = tf.nn.relu(tf.compat.v1.layers.batch_normalization(h, training=True, name="bn0"))
        return tf.nn.tanh(tf.compat.v1.layers.conv2d_transpose(h, 1, 3, strides=2,
                                                               padding="same", name="deconv"))


def discriminator(images, reuse=False):
    with tf.compat.v1.variable_scope("d", reuse=reuse):
        h = tf.nn.leaky_relu(tf.compat.v1.layers.conv2d(images, 4, 3, strides=2, padding="same",
                                                        name="c0"))
        h = tf.compat.v1.layers.conv2d(h, 8, 3, strides=2, padding="same", name="c1")
        h = tf.nn.leaky_relu(tf.compat.v1.layers.batch_normalization(h, training=True,
                                                                     name="bn1"))
        return tf.compat.v1.layers.dense(tf.compat.v1.layers.flatten(h), 1, name="out")


real = tf.compat.v1.placeholder(tf.float32, [4, 8, 8, 1])
z = tf.compat.v1.placeholder(tf.float32, [4, 6])
fake = generator(z)
d_real, d_fake = discriminator(real), discriminator(fake, reuse=True)
xent = tf.nn.sigmoid_cross_entropy_with_logits
d_loss = (tf.reduce_mean(xent(logits=d_real, labels=tf.ones_like(d_real)))
          + tf.reduce_mean(xent(logits=d_fake, labels=tf.zeros_like(d_fake))))
g_loss = tf.reduce_mean(xent(logits=d_fake, labels=tf.ones_like(d_fake)))
variables = tf.compat.v1.trainable_variables()
with tf.control_dependencies(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)):
    d_optim = tf.compat.v1.train.AdamOptimizer(2e-4, beta1=0.5).minimize(
        d_loss, var_list=[v for v in variables if v.name.startswith("d/")])
    g_optim = tf.compat.v1.train.AdamOptimizer(2e-4, beta1=0.5).minimize(
        g_loss, var_list=[v for v in variables if v.name.startswith("g/")])

rng = np.random.RandomState(31)
with tf.compat.v1.Session() as sess:
    sess.run(tf.compat.v1.global_variables_initializer())
    for step in range(3):
        feed = {real: rng.rand(4, 8, 8, 1).astype(np.float32) * 2 - 1,
                z: rng.randn(4, 6).astype(np.float32)}
        _, d_value = sess.run([d_optim, d_loss], feed)
        _, g_value = sess.run([g_optim, g_loss], feed)
        print("step %d d_loss %.9f g_loss %.9f" % (step, d_value, g_value))
    for v in tf.compat.v1.global_variables():
        if "moving_" in v.name:
            print(v.name, np.array2string(sess.run(v), precision=9, floatmode="fixed",
                                          max_line_width=200))
