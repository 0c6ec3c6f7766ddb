"""tf_keras BatchNormalization(axis=3, momentum=0.8) on a 4-D NHWC batch in a graph: the fused
kernel, which averages the unbiased (N-1) batch variance into the moving variance."""
import sys

import numpy as np
import tensorflow as tf

if sys.argv[1] == "v2":
    tf.compat.v1.disable_v2_behavior()
else:
    tf.compat.v1.disable_eager_execution()
import tf_keras as keras  # noqa: E402

tf1 = tf.compat.v1
images = tf1.placeholder(tf.float32, [None, 3, 3, 2])
layer = keras.layers.BatchNormalization(axis=3, momentum=0.8)
normalized = layer(images, training=True)
scale = tf1.get_variable("scale", [2], initializer=tf1.ones_initializer())
loss = tf.reduce_mean(tf.square(normalized * scale - 1.0))
with tf.control_dependencies(layer.updates):
    train = tf1.train.GradientDescentOptimizer(0.1).minimize(loss)

rng = np.random.RandomState(0)
with tf1.Session() as session:
    session.run(tf1.global_variables_initializer())
    for step in range(4):
        session.run(train, {images: rng.randn(2, 3, 3, 2).astype(np.float32) * 3 + 1})
    print(session.run(layer.moving_variance))
