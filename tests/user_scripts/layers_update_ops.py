"""Batch norm on the input, tf.layers style: a training placeholder and the UPDATE_OPS dependency."""
import numpy as np
import tensorflow as tf

tf.compat.v1.disable_eager_execution()
tf.keras.utils.set_random_seed(0)  # Python, NumPy and TensorFlow
rng = np.random.RandomState(0)
x = tf.compat.v1.placeholder(tf.float32, [None, 3])
y = tf.compat.v1.placeholder(tf.float32, [None, 1])
is_training = tf.compat.v1.placeholder(tf.bool, [])
normalized = tf.compat.v1.layers.batch_normalization(x, training=is_training, momentum=0.8)
output = tf.compat.v1.layers.dense(tf.nn.relu(normalized), 1)
loss = tf.reduce_mean(tf.square(output - y))
update_ops = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
with tf.control_dependencies(update_ops):
    train = tf.compat.v1.train.GradientDescentOptimizer(0.05).minimize(loss)

with tf.compat.v1.Session() as sess:
    sess.run(tf.compat.v1.global_variables_initializer())
    for step in range(5):
        batch = rng.rand(8, 3).astype(np.float32) * 4 + 1
        _, value = sess.run([train, loss], {x: batch, y: batch.sum(1, keepdims=True),
                                            is_training: True})
        print("step", step, "loss %.6f" % value)
    test = rng.rand(4, 3).astype(np.float32)
    print("test loss %.6f" % sess.run(loss, {x: test, y: test.sum(1, keepdims=True),
                                              is_training: False}))
