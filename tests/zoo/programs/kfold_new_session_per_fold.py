"""Cross-validation as it is often written: one graph, and for each fold a new Session that runs
the initializer and trains from scratch (tf.layers batch norm, training placeholder, UPDATE_OPS)."""
import random

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()
random.seed(29)
np.random.seed(29)
tf.compat.v1.set_random_seed(29)

x = tf.compat.v1.placeholder(tf.float32, [None, 3])
y = tf.compat.v1.placeholder(tf.float32, [None, 1])
is_training = tf.compat.v1.placeholder(tf.bool, [])
hidden = tf.compat.v1.layers.batch_normalization(x, training=is_training, momentum=0.8)
prediction = tf.compat.v1.layers.dense(tf.nn.relu(hidden), 1)
loss = tf.reduce_mean(tf.square(prediction - y))
with tf.control_dependencies(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)):
    train_op = tf.compat.v1.train.GradientDescentOptimizer(0.05).minimize(loss)
init = tf.compat.v1.global_variables_initializer()
moving_mean = [v for v in tf.compat.v1.global_variables() if "moving_mean" in v.name][0]

rng = np.random.RandomState(29)
data = rng.normal([1.0, -2.0, 3.0], [1.0, 0.5, 2.0], size=(24, 3)).astype(np.float32)
targets = data.sum(axis=1, keepdims=True)
folds = np.split(np.arange(24), 3)
for fold, held_out in enumerate(folds):
    train_rows = np.setdiff1d(np.arange(24), held_out)
    with tf.compat.v1.Session() as sess:
        sess.run(init)
        for step in range(3):
            rows = train_rows[step * 5:(step + 1) * 5]
            _, value = sess.run([train_op, loss], {x: data[rows], y: targets[rows],
                                                   is_training: True})
            print("fold %d step %d loss %.9f" % (fold, step, value))
        held = sess.run(loss, {x: data[held_out], y: targets[held_out], is_training: False})
        print("fold %d held-out loss %.9f" % (fold, held))
        final_mean = sess.run(moving_mean)
        print("fold %d moving mean %s" % (fold, np.array2string(final_mean, precision=9,
                                                                floatmode="fixed")))
print(moving_mean.name, np.array2string(final_mean, precision=9, floatmode="fixed"))
