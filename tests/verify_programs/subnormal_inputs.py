"""tf.layers.batch_normalization (momentum 0.9) on inputs of about 1e-38, just above float32's
smallest normal: (1 - momentum) * mean is subnormal, and TensorFlow on CPU flushes it to zero."""
import sys

import numpy as np
import tensorflow as tf

if sys.argv[1] == "v2":
    tf.compat.v1.disable_v2_behavior()
else:
    tf.compat.v1.disable_eager_execution()
tf1 = tf.compat.v1

x = tf1.placeholder(tf.float32, [None, 2])
normalized = tf1.layers.batch_normalization(x, training=True, momentum=0.9)
scale = tf1.get_variable("scale", [2], initializer=tf1.ones_initializer())
loss = tf.reduce_mean(tf.square(normalized * scale - 1.0))
with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)):
    train = tf1.train.GradientDescentOptimizer(0.1).minimize(loss)

rng = np.random.RandomState(0)
with tf1.Session() as session:
    session.run(tf1.global_variables_initializer())
    for step in range(4):
        session.run(train, {x: (rng.uniform(1, 4, (6, 2)) * 1e-38).astype(np.float32)})
    print(session.run(tf1.global_variables("batch_normalization")))
