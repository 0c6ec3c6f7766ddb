"""Hand-written batch norm with a tiny epsilon: tf.nn.batch_normalization(...,
variance_epsilon=1e-9), population statistics kept with assign_moving_average(zero_debias=False)
and a boolean training placeholder choosing batch or population statistics."""
import random

import numpy as np
import tensorflow as tf
from tensorflow.python.training import moving_averages

tf.compat.v1.disable_v2_behavior()
random.seed(16)
np.random.seed(16)
tf.compat.v1.set_random_seed(16)

features = tf.compat.v1.placeholder(tf.float32, [None, 3], name="features")
labels = tf.compat.v1.placeholder(tf.int32, [None], name="labels")
phase_train = tf.compat.v1.placeholder(tf.bool, [], name="phase_train")

with tf.compat.v1.variable_scope("input_norm"):
    offset = tf.compat.v1.get_variable("offset", [3], initializer=tf.zeros_initializer())
    scale = tf.compat.v1.get_variable("scale", [3], initializer=tf.ones_initializer())
    pop_mean = tf.compat.v1.get_variable("pop_mean", [3], initializer=tf.zeros_initializer(),
                                         trainable=False)
    pop_var = tf.compat.v1.get_variable("pop_var", [3], initializer=tf.ones_initializer(),
                                        trainable=False)
    mean, var = tf.nn.moments(features, [0])
    update_ops = [moving_averages.assign_moving_average(pop_mean, mean, 0.95, zero_debias=False),
                  moving_averages.assign_moving_average(pop_var, var, 0.95, zero_debias=False)]
    use_mean = tf.cond(phase_train, lambda: mean, lambda: tf.identity(pop_mean))
    use_var = tf.cond(phase_train, lambda: var, lambda: tf.identity(pop_var))
    normalized = tf.nn.batch_normalization(features, use_mean, use_var, offset, scale,
                                           variance_epsilon=1e-9)

logits = tf.compat.v1.layers.dense(normalized, 3)
loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                     logits=logits))
with tf.control_dependencies(update_ops):
    train_op = tf.compat.v1.train.AdamOptimizer(0.02).minimize(loss)

rng = np.random.RandomState(16)
with tf.compat.v1.Session() as sess:
    sess.run(tf.compat.v1.global_variables_initializer())
    for step in range(5):
        batch = rng.normal(0.0, 1e-3, size=(8, 3)).astype(np.float32) + np.float32(0.25)
        target = rng.randint(0, 3, size=8)
        _, value = sess.run([train_op, loss],
                            {features: batch, labels: target, phase_train: True})
        print("step %d loss %.9f" % (step, value))
    batch = rng.normal(0.0, 1e-3, size=(8, 3)).astype(np.float32) + np.float32(0.25)
    target = rng.randint(0, 3, size=8)
    print("test loss %.9f" % sess.run(loss, {features: batch, labels: target,
                                             phase_train: False}))
    for v in (pop_mean, pop_var):
        print(v.name, np.array2string(sess.run(v), precision=9, floatmode="fixed"))
