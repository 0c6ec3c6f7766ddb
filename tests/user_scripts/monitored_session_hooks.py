"""A MonitoredTrainingSession loop with TensorFlow's own hooks (stop at a step, log the loss)."""
import numpy as np
import tensorflow as tf

tf.compat.v1.disable_eager_execution()
tf.keras.utils.set_random_seed(0)  # Python, NumPy and TensorFlow
rng = np.random.RandomState(0)
x = tf.compat.v1.placeholder(tf.float32, [None, 3])
y = tf.compat.v1.placeholder(tf.float32, [None, 1])
normalized = tf.compat.v1.layers.batch_normalization(x, training=True, momentum=0.7)
loss = tf.reduce_mean(tf.square(tf.compat.v1.layers.dense(normalized, 1) - y))
global_step = tf.compat.v1.train.get_or_create_global_step()
with tf.control_dependencies(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)):
    train = tf.compat.v1.train.GradientDescentOptimizer(0.05).minimize(loss, global_step)

hooks = [tf.compat.v1.train.StopAtStepHook(last_step=5),
         tf.compat.v1.train.LoggingTensorHook({"loss": loss}, every_n_iter=2)]
with tf.compat.v1.train.MonitoredTrainingSession(hooks=hooks, log_step_count_steps=None) as sess:
    while not sess.should_stop():
        batch = rng.rand(8, 3).astype(np.float32) * 4 + 1
        value, _ = sess.run([loss, train], {x: batch, y: batch.sum(1, keepdims=True)})
        print(f"loss {value:.6f}")
