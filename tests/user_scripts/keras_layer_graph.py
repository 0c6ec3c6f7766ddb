"""A Keras BatchNormalization layer on images in a tf.compat.v1 graph; its update ops are in
layer.updates (not in UPDATE_OPS), so the train op depends on those."""
import numpy as np
import tensorflow as tf

tf.compat.v1.disable_eager_execution()
tf.keras.utils.set_random_seed(0)  # Python, NumPy and TensorFlow
rng = np.random.RandomState(0)
images = tf.compat.v1.placeholder(tf.float32, [None, 2, 2, 3])
labels = tf.compat.v1.placeholder(tf.float32, [None, 1])
bn = tf.keras.layers.BatchNormalization(momentum=0.9)
features = bn(images, training=True)
logits = tf.keras.layers.Dense(1)(tf.keras.layers.Flatten()(features))
loss = tf.reduce_mean(tf.square(logits - labels))
with tf.control_dependencies(bn.updates):
    train = tf.compat.v1.train.AdamOptimizer(0.01).minimize(loss)

with tf.compat.v1.Session() as sess:
    sess.run(tf.compat.v1.global_variables_initializer())
    for step in range(4):
        batch = rng.normal(2.0, 3.0, (4, 2, 2, 3)).astype(np.float32)
        _, value = sess.run([train, loss], {images: batch, labels: batch.mean((1, 2, 3))[:, None]})
        print("step %d loss %.5f" % (step, value))
