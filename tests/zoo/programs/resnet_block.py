"""A ResNet v1 stem and one projection building block written as the official TF1 ResNet model
writes them: conv + fused batch norm (decay 0.997, epsilon 1e-5), a training placeholder,
MomentumOptimizer after UPDATE_OPS."""
import random

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()

_BATCH_NORM_DECAY = 0.997
_BATCH_NORM_EPSILON = 1e-5


def batch_norm(inputs, training):
    return tf.compat.v1.layers.batch_normalization(
        inputs=inputs, axis=3, momentum=_BATCH_NORM_DECAY, epsilon=_BATCH_NORM_EPSILON,
        center=True, scale=True, training=training, fused=True)


def conv2d_fixed_padding(inputs, filters, kernel_size, strides):
    return tf.compat.v1.layers.conv2d(
        inputs=inputs, filters=filters, kernel_size=kernel_size, strides=strides,
        padding=("SAME" if strides == 1 else "VALID"), use_bias=False,
        kernel_initializer=tf.compat.v1.variance_scaling_initializer())


def building_block(inputs, filters, training, projection_shortcut, strides):
    shortcut = inputs
    if projection_shortcut is not None:
        shortcut = projection_shortcut(inputs)
        shortcut = batch_norm(shortcut, training)
    inputs = conv2d_fixed_padding(inputs, filters, 3, strides)
    inputs = batch_norm(inputs, training)
    inputs = tf.nn.relu(inputs)
    inputs = conv2d_fixed_padding(inputs, filters, 3, 1)
    inputs = batch_norm(inputs, training)
    inputs += shortcut
    return tf.nn.relu(inputs)


random.seed(3)
np.random.seed(3)
tf.compat.v1.set_random_seed(3)
features = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 3])
labels = tf.compat.v1.placeholder(tf.int32, [None])
training = tf.compat.v1.placeholder(tf.bool, name="training")

net = conv2d_fixed_padding(features, 4, 3, 1)
net = tf.nn.relu(batch_norm(net, training))


def projection(inputs):
    return conv2d_fixed_padding(inputs, 8, 1, 1)


net = building_block(net, 8, training, projection, 1)
net = tf.reduce_mean(net, [1, 2])
logits = tf.compat.v1.layers.dense(net, 4)
cross_entropy = tf.compat.v1.losses.sparse_softmax_cross_entropy(labels=labels, logits=logits)
optimizer = tf.compat.v1.train.MomentumOptimizer(learning_rate=0.1, momentum=0.9)
update_ops = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
with tf.control_dependencies(update_ops):
    train_op = optimizer.minimize(cross_entropy)

rng = np.random.RandomState(3)
with tf.compat.v1.Session() as sess:
    sess.run(tf.compat.v1.global_variables_initializer())
    for step in range(4):
        batch = rng.rand(6, 8, 8, 3).astype(np.float32)
        target = rng.randint(0, 4, 6)
        _, loss = sess.run([train_op, cross_entropy],
                           {features: batch, labels: target, training: True})
        print("step", step, "cross entropy %.9f" % loss)
    batch = rng.rand(6, 8, 8, 3).astype(np.float32)
    target = rng.randint(0, 4, 6)
    print("eval cross entropy %.9f" % sess.run(cross_entropy,
                                               {features: batch, labels: target, training: False}))
    for v in tf.compat.v1.global_variables():
        if "moving_mean" in v.name or "moving_variance" in v.name:
            print(v.name, np.array2string(sess.run(v), precision=9, floatmode="fixed",
                                          max_line_width=200))
