"""The normalised output itself depends on the moving-average update, so a run that only evaluates
the loss also moves the statistics (the trap of tensorflow#41979)."""
import numpy as np
import tensorflow as tf

tf.compat.v1.disable_eager_execution()
tf.keras.utils.set_random_seed(0)  # Python, NumPy and TensorFlow
rng = np.random.RandomState(0)
x = tf.compat.v1.placeholder(tf.float32, [None, 3])
y = tf.compat.v1.placeholder(tf.float32, [None, 1])
normalized = tf.compat.v1.layers.batch_normalization(x, training=True, momentum=0.9)
with tf.control_dependencies(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)):
    normalized = tf.identity(normalized)
loss = tf.reduce_mean(tf.square(tf.compat.v1.layers.dense(normalized, 1) - y))
train = tf.compat.v1.train.GradientDescentOptimizer(0.05).minimize(loss)

with tf.compat.v1.Session() as sess:
    sess.run(tf.compat.v1.global_variables_initializer())
    for step in range(3):
        batch = rng.rand(8, 3).astype(np.float32) * 4 + 1
        sess.run(train, {x: batch, y: batch.sum(1, keepdims=True)})
        test = rng.rand(8, 3).astype(np.float32) * 4 + 1
        print("step %d test loss %.5f" % (step, sess.run(loss, {x: test, y: test.sum(1, keepdims=True)})))
