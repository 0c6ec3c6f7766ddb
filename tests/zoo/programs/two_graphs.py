"""The same model built in two tf.Graph()s (batch-norm momentum 0.9 and 0.6), each with its own
session, trained on the same batches one after the other, then compared."""
import random

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()
random.seed(25)
np.random.seed(25)


def build(momentum):
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(25)
        x = tf.compat.v1.placeholder(tf.float32, [None, 2])
        y = tf.compat.v1.placeholder(tf.float32, [None, 1])
        h = tf.compat.v1.layers.batch_normalization(x, momentum=momentum, training=True)
        out = tf.compat.v1.layers.dense(h, 1)
        loss = tf.reduce_mean(tf.square(out - y))
        with tf.control_dependencies(tf.compat.v1.get_collection(
                tf.compat.v1.GraphKeys.UPDATE_OPS)):
            train = tf.compat.v1.train.GradientDescentOptimizer(0.1).minimize(loss)
        init = tf.compat.v1.global_variables_initializer()
        moving = [v for v in tf.compat.v1.global_variables() if "moving_" in v.name]
    return graph, x, y, loss, train, init, moving


rng = np.random.RandomState(25)
batches = [rng.normal([3.0, -1.0], [1.0, 0.2], size=(6, 2)).astype(np.float32) for _ in range(5)]
for momentum in (0.9, 0.6):
    graph, x, y, loss, train, init, moving = build(momentum)
    sess = tf.compat.v1.Session(graph=graph)
    sess.run(init)
    for i, batch in enumerate(batches):
        _, value = sess.run([train, loss], {x: batch, y: batch[:, :1] - batch[:, 1:]})
        print("momentum %.1f step %d loss %.9f" % (momentum, i, value))
    for v in moving:
        print(v.name, np.array2string(sess.run(v), precision=9, floatmode="fixed"))
    sess.close()
