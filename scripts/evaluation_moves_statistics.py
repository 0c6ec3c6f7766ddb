#!/usr/bin/env python3
"""A user-style TF1 program with a classic batch-norm bug, for ``bnrepro plot``'s README figure.

A 2-layer MLP with ``tf.compat.v1.layers.batch_normalization`` trains on a synthetic regression
(inputs drawn with NumPy, not a real data set) for 1,000 steps. The updates of the moving
statistics are attached to the loss (``tf.control_dependencies(UPDATE_OPS)`` around it, so that
"any run of the loss updates them"), and every 250 steps it evaluates the loss on a held-out
batch feeding ``training: True``: that run updates the moving statistics with the held-out
batch's statistics (drawn from another distribution), so they jump at steps that did not train.
Run it plain
(``python scripts/evaluation_moves_statistics.py``) or traced::

    bnrepro trace --out out/evaluation scripts/evaluation_moves_statistics.py
    bnrepro plot out/evaluation          # figures in out/evaluation-plots/

It prints the evaluation loss each time; nothing of bnrepro is imported.
"""
import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()
tf1 = tf.compat.v1
tf1.set_random_seed(0)
rng = np.random.RandomState(0)

x = tf1.placeholder(tf.float32, [None, 8], name="x")
y = tf1.placeholder(tf.float32, [None, 1], name="y")
training = tf1.placeholder(tf.bool, [], name="training")
hidden = x
for number in (1, 2):
    hidden = tf1.layers.dense(hidden, 16, name=f"dense{number}")
    hidden = tf.nn.relu(tf1.layers.batch_normalization(hidden, training=training, momentum=0.99,
                                                       name=f"bn{number}"))
with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)):
    loss = tf1.losses.mean_squared_error(y, tf1.layers.dense(hidden, 1, name="out"))
train = tf1.train.AdamOptimizer(1e-3).minimize(loss)

weights = rng.randn(8, 1).astype(np.float32)


def batch(size, shift=0.0):
    inputs = (rng.randn(size, 8) + shift).astype(np.float32)
    return inputs, inputs @ weights + 0.1 * rng.randn(size, 1).astype(np.float32)


held_out = batch(256, shift=1.5)  # another distribution than the training batches
with tf1.Session() as session:
    session.run(tf1.global_variables_initializer())
    for step in range(1, 1001):
        inputs, targets = batch(32)
        session.run(train, {x: inputs, y: targets, training: True})
        if step % 250 == 0:  # the bug: training=True in the evaluation run
            value = session.run(loss, {x: held_out[0], y: held_out[1], training: True})
            print(f"step {step}: evaluation loss {value:.4f}")
