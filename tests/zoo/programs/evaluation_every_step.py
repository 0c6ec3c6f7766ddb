"""A classifier evaluated on a validation batch after every training step through the same graph
(tf.layers batch norm on the input, the training placeholder False for validation)."""
import random

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()
random.seed(26)
np.random.seed(26)
tf.compat.v1.set_random_seed(26)

x = tf.compat.v1.placeholder(tf.float32, [None, 5])
y = tf.compat.v1.placeholder(tf.int64, [None])
mode = tf.compat.v1.placeholder(tf.bool, name="mode")
net = tf.compat.v1.layers.batch_normalization(x, momentum=0.9, training=mode)
net = tf.compat.v1.layers.dense(net, 8, activation=tf.nn.relu)
logits = tf.compat.v1.layers.dense(net, 3)
loss = tf.compat.v1.losses.sparse_softmax_cross_entropy(y, logits)
accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), y), tf.float32))
update_ops = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
with tf.control_dependencies(update_ops):
    train_op = tf.compat.v1.train.AdamOptimizer(0.02).minimize(loss)

rng = np.random.RandomState(26)
valid_x = rng.normal(2.0, 1.0, size=(10, 5)).astype(np.float32)
valid_y = (valid_x[:, 0] > 2.0).astype(np.int64) + (valid_x[:, 1] > 2.5)
with tf.compat.v1.Session() as sess:
    sess.run(tf.compat.v1.global_variables_initializer())
    for step in range(6):
        batch_x = rng.normal(2.0, 1.0, size=(10, 5)).astype(np.float32)
        batch_y = (batch_x[:, 0] > 2.0).astype(np.int64) + (batch_x[:, 1] > 2.5)
        _, train_loss = sess.run([train_op, loss], {x: batch_x, y: batch_y, mode: True})
        valid_loss, valid_acc = sess.run([loss, accuracy], {x: valid_x, y: valid_y, mode: False})
        print("step %d train loss %.9f valid loss %.9f valid acc %.3f"
              % (step, train_loss, valid_loss, valid_acc))
    for v in tf.compat.v1.global_variables():
        if "moving_" in v.name:
            print(v.name, np.array2string(sess.run(v), precision=9, floatmode="fixed",
                                          max_line_width=200))
