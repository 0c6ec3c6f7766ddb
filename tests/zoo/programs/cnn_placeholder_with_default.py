"""Batch norm as the first layer of a CNN (a learned normalisation of the raw images), then
conv, batch norm, ReLU, global average pooling and a logistic output. The training flag is a
placeholder_with_default(False): training runs feed True, evaluation leaves it out."""
import random

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()
random.seed(2)
np.random.seed(2)
tf.compat.v1.set_random_seed(2)

x = tf.compat.v1.placeholder(tf.float32, shape=(None, 6, 6, 2))
y = tf.compat.v1.placeholder(tf.float32, shape=(None, 1))
training = tf.compat.v1.placeholder_with_default(False, shape=(), name="training")

net = tf.compat.v1.layers.batch_normalization(x, momentum=0.8, epsilon=1e-5, training=training)
net = tf.compat.v1.layers.conv2d(net, 3, (3, 3), padding="valid")
net = tf.compat.v1.layers.batch_normalization(net, training=training)
net = tf.nn.relu(net)
net = tf.reduce_mean(net, axis=[1, 2])
logits = tf.compat.v1.layers.dense(net, 1)
loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=logits))

extra_update_ops = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
with tf.control_dependencies(extra_update_ops):
    train_step = tf.compat.v1.train.MomentumOptimizer(0.1, momentum=0.9).minimize(loss)

rng = np.random.RandomState(2)
sess = tf.compat.v1.Session()
sess.run(tf.compat.v1.global_variables_initializer())
for i in range(5):
    batch_x = rng.normal(0.5, 0.25, size=(8, 6, 6, 2)).astype(np.float32)
    batch_y = rng.randint(0, 2, size=(8, 1)).astype(np.float32)
    _, l = sess.run([train_step, loss], feed_dict={x: batch_x, y: batch_y, training: True})
    print("iteration %d: loss = %.9f" % (i, l))
eval_x = rng.normal(0.5, 0.25, size=(8, 6, 6, 2)).astype(np.float32)
eval_y = rng.randint(0, 2, size=(8, 1)).astype(np.float32)
print("eval loss = %.9f" % sess.run(loss, feed_dict={x: eval_x, y: eval_y}))
for v in tf.compat.v1.global_variables():
    if v.name.split("/")[-1].startswith("moving"):
        print(v.name, np.array2string(sess.run(v), precision=9, floatmode="fixed"))
sess.close()
