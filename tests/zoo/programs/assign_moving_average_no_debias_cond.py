"""The batch_norm helper many TF1 repositories carry: variables in a variable_scope, tf.nn.moments
over [0, 1, 2] and assign_moving_average(zero_debias=False) inside the training branch of tf.cond,
tf.nn.batch_normalization after; used on the raw images and after a convolution."""
import random

import numpy as np
import tensorflow as tf
from tensorflow.python.training import moving_averages

tf.compat.v1.disable_v2_behavior()
random.seed(9)
np.random.seed(9)
tf.compat.v1.set_random_seed(9)


def batch_norm(x, is_training, scope, decay=0.9, epsilon=1e-3):
    with tf.compat.v1.variable_scope(scope):
        channels = x.get_shape()[-1]
        beta = tf.compat.v1.get_variable("beta", [channels], initializer=tf.zeros_initializer())
        gamma = tf.compat.v1.get_variable("gamma", [channels], initializer=tf.ones_initializer())
        moving_mean = tf.compat.v1.get_variable("moving_mean", [channels],
                                                initializer=tf.zeros_initializer(),
                                                trainable=False)
        moving_var = tf.compat.v1.get_variable("moving_var", [channels],
                                               initializer=tf.ones_initializer(),
                                               trainable=False)

        def mean_var_with_update():
            mean, var = tf.nn.moments(x, axes=[0, 1, 2], name="moments")
            update_mean = moving_averages.assign_moving_average(moving_mean, mean, decay,
                                                                zero_debias=False)
            update_var = moving_averages.assign_moving_average(moving_var, var, decay,
                                                               zero_debias=False)
            with tf.control_dependencies([update_mean, update_var]):
                return tf.identity(mean), tf.identity(var)

        mean, var = tf.cond(is_training, mean_var_with_update,
                            lambda: (tf.identity(moving_mean), tf.identity(moving_var)))
        return tf.nn.batch_normalization(x, mean, var, beta, gamma, epsilon)


images = tf.compat.v1.placeholder(tf.float32, [None, 5, 5, 2])
targets = tf.compat.v1.placeholder(tf.float32, [None])
is_training = tf.compat.v1.placeholder(tf.bool, [])
net = batch_norm(images, is_training, "bn_input")
kernel = tf.compat.v1.get_variable("conv/kernel", [3, 3, 2, 3],
                                   initializer=tf.compat.v1.truncated_normal_initializer(stddev=0.3))
net = tf.nn.conv2d(net, kernel, strides=[1, 1, 1, 1], padding="VALID")
net = tf.nn.relu(batch_norm(net, is_training, "bn_conv"))
score = tf.reduce_mean(net, axis=[1, 2, 3])
loss = tf.reduce_mean(tf.square(score - targets))
train_op = tf.compat.v1.train.GradientDescentOptimizer(0.2).minimize(loss)

rng = np.random.RandomState(9)
with tf.compat.v1.Session() as sess:
    sess.run(tf.compat.v1.global_variables_initializer())
    for step in range(5):
        batch = rng.gamma(2.0, 1.5, size=(4, 5, 5, 2)).astype(np.float32)
        _, value = sess.run([train_op, loss], {images: batch, targets: batch.std(axis=(1, 2, 3)),
                                               is_training: True})
        print("step %d, loss %.9f" % (step, value))
    batch = rng.gamma(2.0, 1.5, size=(4, 5, 5, 2)).astype(np.float32)
    print("eval loss %.9f" % sess.run(loss, {images: batch, targets: batch.std(axis=(1, 2, 3)),
                                             is_training: False}))
    for v in tf.compat.v1.global_variables():
        if "moving_" in v.name:
            print(v.name, np.array2string(sess.run(v), precision=9, floatmode="fixed"))
