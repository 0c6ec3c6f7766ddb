"""The well-known StackOverflow batch_norm for convolutional layers: tf.nn.moments over [0, 1, 2],
a tf.train.ExponentialMovingAverage(decay=0.5) applied to the batch moments inside the training
branch of tf.cond, its averages used otherwise; applied to the images and to a conv layer."""
import random

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()
random.seed(29)
np.random.seed(29)
tf.compat.v1.set_random_seed(29)


def batch_norm(x, n_out, phase_train):
    with tf.compat.v1.variable_scope("bn"):
        beta = tf.Variable(tf.constant(0.0, shape=[n_out]), name="beta", trainable=True)
        gamma = tf.Variable(tf.constant(1.0, shape=[n_out]), name="gamma", trainable=True)
        batch_mean, batch_var = tf.nn.moments(x, [0, 1, 2], name="moments")
        ema = tf.compat.v1.train.ExponentialMovingAverage(decay=0.5)

        def mean_var_with_update():
            ema_apply_op = ema.apply([batch_mean, batch_var])
            with tf.control_dependencies([ema_apply_op]):
                return tf.identity(batch_mean), tf.identity(batch_var)

        mean, var = tf.cond(phase_train, mean_var_with_update,
                            lambda: (ema.average(batch_mean), ema.average(batch_var)))
        normed = tf.nn.batch_normalization(x, mean, var, beta, gamma, 1e-3)
    return normed, ema.average(batch_mean), ema.average(batch_var)


images = tf.compat.v1.placeholder(tf.float32, [None, 6, 6, 2])
labels = tf.compat.v1.placeholder(tf.float32, [None, 1])
phase_train = tf.compat.v1.placeholder(tf.bool, name="phase_train")
net, mean_average, var_average = batch_norm(images, 2, phase_train)
kernel = tf.Variable(tf.random.truncated_normal([3, 3, 2, 4], stddev=0.2))
net = tf.nn.conv2d(net, kernel, strides=[1, 1, 1, 1], padding="SAME")
net, mean_average_2, var_average_2 = batch_norm(net, 4, phase_train)
logit = tf.reduce_mean(tf.nn.relu(net), axis=[1, 2, 3])[:, None]
loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logit))
train_step = tf.compat.v1.train.AdamOptimizer(0.01).minimize(loss)

rng = np.random.RandomState(29)
with tf.compat.v1.Session() as sess:
    sess.run(tf.compat.v1.global_variables_initializer())
    for i in range(5):
        batch = rng.normal(1.0, 2.0, size=(4, 6, 6, 2)).astype(np.float32)
        target = (batch.mean(axis=(1, 2, 3)) > 1.0).astype(np.float32)[:, None]
        _, value = sess.run([train_step, loss], {images: batch, labels: target,
                                                 phase_train: True})
        print("step %d loss %.9f" % (i, value))
    batch = rng.normal(1.0, 2.0, size=(4, 6, 6, 2)).astype(np.float32)
    target = (batch.mean(axis=(1, 2, 3)) > 1.0).astype(np.float32)[:, None]
    print("test loss %.9f" % sess.run(loss, {images: batch, labels: target, phase_train: False}))
    for average in (mean_average, var_average, mean_average_2, var_average_2):
        print(average.name, np.array2string(sess.run(average), precision=9, floatmode="fixed"))
