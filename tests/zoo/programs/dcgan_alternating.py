"""A DCGAN-style generator (dense, transposed convolutions, batch norm) and discriminator
(convolutions, batch norm, leaky ReLU) on 8x8 images, trained alternately with two Adam
optimizers (beta1 0.5), each waiting for its own network's UPDATE_OPS. The discriminator scores
real and generated images concatenated into one batch."""
import random

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()
random.seed(20)
np.random.seed(20)
tf.compat.v1.set_random_seed(20)

BATCH = 4
Z_DIM = 8


def lrelu(x, leak=0.2):
    return tf.maximum(x, leak * x)


def generator(z, training):
    with tf.compat.v1.variable_scope("generator"):
        h0 = tf.compat.v1.layers.dense(z, 2 * 2 * 8, name="g_h0_lin")
        h0 = tf.reshape(h0, [-1, 2, 2, 8])
        h0 = tf.nn.relu(tf.compat.v1.layers.batch_normalization(
            h0, training=training, momentum=0.9, epsilon=1e-5, name="g_bn0"))
        h1 = tf.compat.v1.layers.conv2d_transpose(h0, 4, 5, strides=2, padding="same",
                                                  name="g_h1")
        h1 = tf.nn.relu(tf.compat.v1.layers.batch_normalization(
            h1, training=training, momentum=0.9, epsilon=1e-5, name="g_bn1"))
        h2 = tf.compat.v1.layers.conv2d_transpose(h1, 1, 5, strides=2, padding="same",
                                                  name="g_h2")
        return tf.nn.tanh(h2)


def discriminator(images, training):
    with tf.compat.v1.variable_scope("discriminator"):
        h0 = lrelu(tf.compat.v1.layers.conv2d(images, 4, 5, strides=2, padding="same",
                                              name="d_h0_conv"))
        h1 = tf.compat.v1.layers.conv2d(h0, 8, 5, strides=2, padding="same", name="d_h1_conv")
        h1 = lrelu(tf.compat.v1.layers.batch_normalization(
            h1, training=training, momentum=0.9, epsilon=1e-5, name="d_bn1"))
        return tf.compat.v1.layers.dense(tf.compat.v1.layers.flatten(h1), 1, name="d_h2_lin")


inputs = tf.compat.v1.placeholder(tf.float32, [BATCH, 8, 8, 1], name="real_images")
z = tf.compat.v1.placeholder(tf.float32, [None, Z_DIM], name="z")
G = generator(z, training=True)
logits = discriminator(tf.concat([inputs, G], axis=0), training=True)
D_logits, D_logits_ = tf.split(logits, 2, axis=0)

d_loss_real = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
    logits=D_logits, labels=tf.ones_like(D_logits)))
d_loss_fake = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
    logits=D_logits_, labels=tf.zeros_like(D_logits_)))
d_loss = d_loss_real + d_loss_fake
g_loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
    logits=D_logits_, labels=tf.ones_like(D_logits_)))

t_vars = tf.compat.v1.trainable_variables()
d_vars = [var for var in t_vars if "d_" in var.name]
g_vars = [var for var in t_vars if "g_" in var.name]
d_updates = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS, scope="discriminator")
g_updates = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS, scope="generator")
with tf.control_dependencies(d_updates):
    d_optim = tf.compat.v1.train.AdamOptimizer(0.0002, beta1=0.5).minimize(d_loss,
                                                                          var_list=d_vars)
with tf.control_dependencies(g_updates):
    g_optim = tf.compat.v1.train.AdamOptimizer(0.0002, beta1=0.5).minimize(g_loss,
                                                                          var_list=g_vars)

rng = np.random.RandomState(20)
data = np.tanh(rng.normal(0.0, 1.0, size=(12, 8, 8, 1))).astype(np.float32)
with tf.compat.v1.Session() as sess:
    tf.compat.v1.global_variables_initializer().run()
    for idx in range(3):
        batch_images = data[idx * BATCH:(idx + 1) * BATCH]
        batch_z = rng.uniform(-1, 1, [BATCH, Z_DIM]).astype(np.float32)
        _, errD = sess.run([d_optim, d_loss], feed_dict={inputs: batch_images, z: batch_z})
        _, errG = sess.run([g_optim, g_loss], feed_dict={inputs: batch_images, z: batch_z})
        print("[%2d] d_loss: %.9f, g_loss: %.9f" % (idx, errD, errG))
    for v in tf.compat.v1.global_variables():
        if "moving_" in v.name:
            print(v.name, np.array2string(sess.run(v), precision=9, floatmode="fixed",
                                          max_line_width=200))
