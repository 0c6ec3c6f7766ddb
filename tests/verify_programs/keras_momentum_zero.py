"""tf_keras BatchNormalization(momentum=0) with zero initialisers for both moving statistics: each
update replaces them with the batch's moments, whatever they started from."""
import sys

import numpy as np
import tensorflow as tf

if sys.argv[1] == "v2":
    tf.compat.v1.disable_v2_behavior()
else:
    tf.compat.v1.disable_eager_execution()
import tf_keras as keras  # noqa: E402

tf1 = tf.compat.v1
x = tf1.placeholder(tf.float32, [None, 3])
layer = keras.layers.BatchNormalization(momentum=0.0, moving_mean_initializer="zeros",
                                        moving_variance_initializer="zeros")
normalized = layer(x, training=True)
scale = tf1.get_variable("scale", [3], initializer=tf1.ones_initializer())
loss = tf.reduce_mean(tf.square(normalized * scale - 1.0))
with tf.control_dependencies(layer.updates):
    train = tf1.train.GradientDescentOptimizer(0.1).minimize(loss)

rng = np.random.RandomState(0)
with tf1.Session() as session:
    session.run(tf1.global_variables_initializer())
    for step in range(4):
        session.run(train, {x: rng.randn(5, 3).astype(np.float32)})
    print(session.run(layer.moving_mean))
