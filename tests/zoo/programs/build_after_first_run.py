"""A program that keeps building its graph after the first runs: three steps train a batch-norm
feature layer with a first head, then a second, randomly initialised head and its own optimizer
are added to the graph (initialised alone) and three more steps train the features with it."""
import random

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()
random.seed(27)
np.random.seed(27)
tf.compat.v1.set_random_seed(27)

x = tf.compat.v1.placeholder(tf.float32, [None, 3])
y = tf.compat.v1.placeholder(tf.float32, [None, 1])
training = tf.compat.v1.placeholder(tf.bool, [])
features = tf.compat.v1.layers.batch_normalization(x, momentum=0.8, training=training,
                                                   name="features_bn")
features = tf.compat.v1.layers.dense(features, 4, activation=tf.nn.tanh, name="features")
head = tf.compat.v1.layers.dense(features, 1, name="head")
loss = tf.reduce_mean(tf.square(head - y))
with tf.control_dependencies(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)):
    train = tf.compat.v1.train.GradientDescentOptimizer(0.05).minimize(loss)

rng = np.random.RandomState(27)
sess = tf.compat.v1.Session()
sess.run(tf.compat.v1.global_variables_initializer())
for step in range(3):
    xs = rng.uniform(0.0, 4.0, size=(8, 3)).astype(np.float32)
    _, value = sess.run([train, loss], {x: xs, y: xs.prod(axis=1, keepdims=True), training: True})
    print("first head step %d loss %.9f" % (step, value))

# a new head, built after those runs
before = set(tf.compat.v1.global_variables())
new_head = tf.compat.v1.layers.dense(features, 1, name="new_head",
                                     kernel_initializer=tf.compat.v1.random_normal_initializer())
new_loss = tf.reduce_mean(tf.abs(new_head - y))
with tf.control_dependencies(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)):
    new_train = tf.compat.v1.train.AdamOptimizer(0.01).minimize(new_loss)
sess.run(tf.compat.v1.variables_initializer(
    [v for v in tf.compat.v1.global_variables() if v not in before]))
for step in range(3):
    xs = rng.uniform(0.0, 4.0, size=(8, 3)).astype(np.float32)
    _, value = sess.run([new_train, new_loss], {x: xs, y: xs.prod(axis=1, keepdims=True),
                                                training: True})
    print("new head step %d loss %.9f" % (step, value))
xs = rng.uniform(0.0, 4.0, size=(8, 3)).astype(np.float32)
print("eval loss %.9f" % sess.run(new_loss, {x: xs, y: xs.prod(axis=1, keepdims=True),
                                             training: False}))
for v in tf.compat.v1.global_variables():
    if "moving_" in v.name:
        print(v.name, np.array2string(sess.run(v), precision=9, floatmode="fixed"))
sess.close()
