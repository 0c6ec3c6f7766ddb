"""A running mean of a batch statistic kept by hand with tf.assign."""
import numpy as np
import tensorflow as tf

tf.compat.v1.disable_eager_execution()
rng = np.random.RandomState(0)
x = tf.compat.v1.placeholder(tf.float32, [None, 3])
decay = 0.95
running_mean = tf.Variable(tf.zeros([3]), trainable=False, name="running_mean")
update = tf.compat.v1.assign(running_mean, running_mean * decay + tf.reduce_mean(x, 0) * (1 - decay))

with tf.compat.v1.Session() as sess:
    sess.run(tf.compat.v1.global_variables_initializer())
    for step in range(5):
        sess.run(update, {x: rng.rand(4, 3).astype(np.float32) * 4 + 1})
    print("running mean", sess.run(running_mean))
