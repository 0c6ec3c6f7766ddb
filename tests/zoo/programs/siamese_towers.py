"""Siamese towers sharing their weights through scope.reuse_variables(): each tower starts with
batch norm on its input features, so the shared layer's moving statistics are updated twice in
every training run (left input and right input); contrastive loss."""
import random

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()
random.seed(5)
np.random.seed(5)
tf.compat.v1.set_random_seed(5)


def tower(inputs, is_training):
    net = tf.compat.v1.layers.batch_normalization(inputs, momentum=0.9, training=is_training,
                                                  name="input_bn")
    net = tf.compat.v1.layers.dense(net, 8, activation=tf.nn.relu, name="fc1")
    return tf.compat.v1.layers.dense(net, 2, name="embedding")


left = tf.compat.v1.placeholder(tf.float32, [None, 4], name="left")
right = tf.compat.v1.placeholder(tf.float32, [None, 4], name="right")
same = tf.compat.v1.placeholder(tf.float32, [None], name="same")
is_training = tf.compat.v1.placeholder(tf.bool, [], name="is_training")

with tf.compat.v1.variable_scope("siamese") as scope:
    left_embedding = tower(left, is_training)
    scope.reuse_variables()
    right_embedding = tower(right, is_training)

distance = tf.sqrt(tf.reduce_sum(tf.square(left_embedding - right_embedding), 1) + 1e-6)
margin = 1.0
contrastive = same * tf.square(distance) + (1.0 - same) * tf.square(
    tf.maximum(margin - distance, 0.0))
loss = tf.reduce_mean(contrastive) / 2

update_ops = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
with tf.control_dependencies(update_ops):
    train_step = tf.compat.v1.train.GradientDescentOptimizer(0.05).minimize(loss)

rng = np.random.RandomState(5)
# one thread, for results that do not change from run to run
session_conf = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1,
                                        inter_op_parallelism_threads=1)
with tf.compat.v1.Session(config=session_conf) as sess:
    sess.run(tf.compat.v1.global_variables_initializer())
    for step in range(5):
        x1 = rng.rand(8, 4).astype(np.float32) * 2
        x2 = rng.rand(8, 4).astype(np.float32) * 2 + 0.5
        y = rng.randint(0, 2, 8).astype(np.float32)
        _, value = sess.run([train_step, loss],
                            {left: x1, right: x2, same: y, is_training: True})
        print("step %d loss %.9f" % (step, value))
    x1 = rng.rand(8, 4).astype(np.float32) * 2
    x2 = rng.rand(8, 4).astype(np.float32) * 2 + 0.5
    print("test distances", np.array2string(
        sess.run(distance, {left: x1, right: x2, is_training: False}), precision=6,
        floatmode="fixed", max_line_width=200))
    for v in tf.compat.v1.global_variables():
        if "moving" in v.name:
            print(v.name, np.array2string(sess.run(v), precision=9, floatmode="fixed"))
