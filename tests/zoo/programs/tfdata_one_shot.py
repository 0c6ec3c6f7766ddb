"""A regression network fed by tf.data instead of feed_dict: Dataset.from_tensor_slices, batch,
repeat and a one-shot iterator; batch norm on the input features (training=True) with the
UPDATE_OPS dependency."""
import random

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()
random.seed(21)
np.random.seed(21)
tf.compat.v1.set_random_seed(21)

rng = np.random.RandomState(21)
features = rng.uniform(-2.0, 6.0, size=(24, 3)).astype(np.float32)
targets = (features ** 2).sum(axis=1, keepdims=True).astype(np.float32)

dataset = tf.data.Dataset.from_tensor_slices((features, targets)).batch(8).repeat()
iterator = tf.compat.v1.data.make_one_shot_iterator(dataset)
next_x, next_y = iterator.get_next()

net = tf.compat.v1.layers.batch_normalization(next_x, momentum=0.85, training=True)
net = tf.compat.v1.layers.dense(net, 10, activation=tf.nn.relu)
prediction = tf.compat.v1.layers.dense(net, 1)
loss = tf.compat.v1.losses.mean_squared_error(next_y, prediction)
update_ops = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
with tf.control_dependencies(update_ops):
    train_op = tf.compat.v1.train.AdamOptimizer(0.01).minimize(loss)

with tf.compat.v1.Session() as sess:
    sess.run(tf.compat.v1.global_variables_initializer())
    for step in range(6):
        _, loss_value = sess.run([train_op, loss])
        print("step %d, loss %.9f" % (step, loss_value))
    for v in tf.compat.v1.global_variables():
        if "moving_" in v.name:
            print(v.name, np.array2string(sess.run(v), precision=9, floatmode="fixed"))
