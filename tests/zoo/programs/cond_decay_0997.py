"""Hand-written batch norm whose decay is chosen by a training flag: decay = tf.cond(is_training,
0.997, 1.0), so the same update ops run in every session run and leave the population statistics
unchanged when evaluating (decay 1)."""
import random

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()
random.seed(19)
np.random.seed(19)
tf.compat.v1.set_random_seed(19)

x = tf.compat.v1.placeholder(tf.float32, [None, 3])
y = tf.compat.v1.placeholder(tf.float32, [None, 1])
is_training = tf.compat.v1.placeholder(tf.bool, [])

decay = tf.cond(is_training, lambda: tf.constant(0.997), lambda: tf.constant(1.0))
pop_mean = tf.compat.v1.get_variable("pop_mean", [3], initializer=tf.zeros_initializer(),
                                     trainable=False)
pop_var = tf.compat.v1.get_variable("pop_var", [3], initializer=tf.ones_initializer(),
                                    trainable=False)
batch_mean, batch_var = tf.nn.moments(x, [0])
update_mean = tf.compat.v1.assign(pop_mean, pop_mean * decay + batch_mean * (1 - decay))
update_var = tf.compat.v1.assign(pop_var, pop_var * decay + batch_var * (1 - decay))
mean, var = tf.cond(is_training, lambda: (batch_mean, batch_var),
                    lambda: (tf.identity(pop_mean), tf.identity(pop_var)))
normalized = tf.nn.batch_normalization(x, mean, var, None, None, 1e-3)
prediction = tf.compat.v1.layers.dense(normalized, 1)
loss = tf.reduce_mean(tf.square(prediction - y))
train_op = tf.compat.v1.train.GradientDescentOptimizer(0.1).minimize(loss)

rng = np.random.RandomState(19)
with tf.compat.v1.Session() as sess:
    sess.run(tf.compat.v1.global_variables_initializer())
    for step in range(6):
        xs = rng.normal(4.0, 3.0, size=(8, 3)).astype(np.float32)
        ys = xs.sum(axis=1, keepdims=True)
        _, l, _, _ = sess.run([train_op, loss, update_mean, update_var],
                              {x: xs, y: ys, is_training: True})
        print("step %d loss %.9f" % (step, l))
        if step % 2 == 1:
            xs = rng.normal(4.0, 3.0, size=(8, 3)).astype(np.float32)
            l, _, _ = sess.run([loss, update_mean, update_var],
                               {x: xs, y: xs.sum(axis=1, keepdims=True), is_training: False})
            print("  eval loss %.9f" % l)
    print(pop_mean.name, np.array2string(sess.run(pop_mean), precision=9, floatmode="fixed"))
    print(pop_var.name, np.array2string(sess.run(pop_var), precision=9, floatmode="fixed"))
