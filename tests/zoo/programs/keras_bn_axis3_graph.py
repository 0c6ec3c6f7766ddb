"""tf.keras Conv2D and BatchNormalization(axis=3) used as plain layers inside a tf.Graph, with a
compat.v1 optimizer; the batch-norm updates are taken from layer.updates (Keras layers do not
add them to UPDATE_OPS)."""
import random

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()

graph = tf.Graph()
with graph.as_default():
    random.seed(13)
    np.random.seed(13)
    tf.compat.v1.set_random_seed(13)
    images = tf.compat.v1.placeholder(tf.float32, [None, 5, 5, 2])
    labels = tf.compat.v1.placeholder(tf.float32, [None, 1])
    conv = tf.keras.layers.Conv2D(3, 3, padding="same")
    bn = tf.keras.layers.BatchNormalization(axis=3, momentum=0.85)
    features = tf.nn.relu(bn(conv(images), training=True))
    logits = tf.keras.layers.Dense(1)(tf.keras.layers.GlobalAveragePooling2D()(features))
    loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))
    with tf.control_dependencies(bn.updates):
        train_op = tf.compat.v1.train.RMSPropOptimizer(0.01).minimize(loss)
    init = tf.compat.v1.global_variables_initializer()

rng = np.random.RandomState(13)
with tf.compat.v1.Session(graph=graph) as sess:
    sess.run(init)
    for step in range(5):
        batch = rng.rand(4, 5, 5, 2).astype(np.float32) * 3
        target = (batch.mean(axis=(1, 2, 3)) > 1.5).astype(np.float32).reshape(-1, 1)
        _, value = sess.run([train_op, loss], {images: batch, labels: target})
        print("step", step, "loss %.9f" % value)
    print(bn.moving_mean.name, np.array2string(sess.run(bn.moving_mean), precision=9,
                                               floatmode="fixed"))
    print(bn.moving_variance.name, np.array2string(sess.run(bn.moving_variance), precision=9,
                                                   floatmode="fixed"))
