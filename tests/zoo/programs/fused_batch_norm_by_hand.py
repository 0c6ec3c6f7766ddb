"""Batch norm built on tf.compat.v1.nn.fused_batch_norm, as tensorpack-style layer libraries do:
the training call returns the batch mean and variance, which assign_moving_average(zero_debias=
False) folds into the moving statistics (registered in UPDATE_OPS); inference calls the fused
kernel with the moving statistics."""
import random

import numpy as np
import tensorflow as tf
from tensorflow.python.training import moving_averages

tf.compat.v1.disable_v2_behavior()
random.seed(32)
np.random.seed(32)
tf.compat.v1.set_random_seed(32)


def BatchNorm(inputs, training, momentum=0.9, epsilon=1e-5, scope="BatchNorm"):
    with tf.compat.v1.variable_scope(scope):
        channels = inputs.get_shape().as_list()[-1]
        beta = tf.compat.v1.get_variable("beta", [channels], initializer=tf.zeros_initializer())
        gamma = tf.compat.v1.get_variable("gamma", [channels], initializer=tf.ones_initializer())
        moving_mean = tf.compat.v1.get_variable("mean/EMA", [channels],
                                                initializer=tf.zeros_initializer(),
                                                trainable=False)
        moving_var = tf.compat.v1.get_variable("variance/EMA", [channels],
                                               initializer=tf.ones_initializer(),
                                               trainable=False)
        if training:
            xn, batch_mean, batch_var = tf.compat.v1.nn.fused_batch_norm(
                inputs, gamma, beta, epsilon=epsilon, is_training=True)
            update_mean = moving_averages.assign_moving_average(
                moving_mean, batch_mean, momentum, zero_debias=False, name="mean_ema_op")
            update_var = moving_averages.assign_moving_average(
                moving_var, batch_var, momentum, zero_debias=False, name="var_ema_op")
            tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.UPDATE_OPS, update_mean)
            tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.UPDATE_OPS, update_var)
        else:
            xn, _, _ = tf.compat.v1.nn.fused_batch_norm(
                inputs, gamma, beta, mean=moving_mean, variance=moving_var, epsilon=epsilon,
                is_training=False)
        return xn


images = tf.compat.v1.placeholder(tf.float32, [None, 4, 4, 2])
labels = tf.compat.v1.placeholder(tf.int32, [None])
with tf.compat.v1.variable_scope("model"):
    train_logits = tf.compat.v1.layers.dense(
        tf.compat.v1.layers.flatten(BatchNorm(images, training=True)), 2, name="fc")
with tf.compat.v1.variable_scope("model", reuse=True):
    eval_logits = tf.compat.v1.layers.dense(
        tf.compat.v1.layers.flatten(BatchNorm(images, training=False)), 2, name="fc")
loss = tf.compat.v1.losses.sparse_softmax_cross_entropy(labels, train_logits)
eval_loss = tf.compat.v1.losses.sparse_softmax_cross_entropy(labels, eval_logits)
with tf.control_dependencies(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)):
    train_op = tf.compat.v1.train.MomentumOptimizer(0.1, 0.9).minimize(loss)

rng = np.random.RandomState(32)
with tf.compat.v1.Session() as sess:
    sess.run(tf.compat.v1.global_variables_initializer())
    for step in range(5):
        batch = rng.normal([1.0, -1.0], [0.5, 2.0], size=(4, 4, 4, 2)).astype(np.float32)
        target = rng.randint(0, 2, size=4)
        _, value = sess.run([train_op, loss], {images: batch, labels: target})
        print("step %d loss %.9f" % (step, value))
    batch = rng.normal([1.0, -1.0], [0.5, 2.0], size=(4, 4, 4, 2)).astype(np.float32)
    target = rng.randint(0, 2, size=4)
    print("eval loss %.9f" % sess.run(eval_loss, {images: batch, labels: target}))
    for v in tf.compat.v1.global_variables():
        if v.name.endswith("EMA:0"):
            print(v.name, np.array2string(sess.run(v), precision=9, floatmode="fixed"))
