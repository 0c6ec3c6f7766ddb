"""Keras model.fit in graph mode (v2 behaviour disabled), batch norm first."""
import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()
tf.keras.utils.set_random_seed(0)  # Python, NumPy and TensorFlow
rng = np.random.RandomState(0)
data = (rng.rand(12, 3) * 4 + 1).astype(np.float32)
targets = data.sum(1, keepdims=True)
model = tf.keras.Sequential([tf.keras.layers.BatchNormalization(momentum=0.7, input_shape=(3,)),
                             tf.keras.layers.Dense(1)])
model.compile(optimizer=tf.compat.v1.train.GradientDescentOptimizer(0.01), loss="mse")
history = model.fit(data, targets, batch_size=4, epochs=2, shuffle=False, verbose=0)
print("losses", ["%.5f" % value for value in history.history["loss"]])
