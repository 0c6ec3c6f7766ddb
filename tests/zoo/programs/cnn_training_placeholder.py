"""A small CNN classifier with tf.layers: conv, batch norm with a boolean training placeholder,
max pooling and a dense softmax layer; the train op waits for UPDATE_OPS; the test accuracy is
evaluated with the flag False."""
import random

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()
random.seed(1)
np.random.seed(1)
tf.compat.v1.set_random_seed(1)

images = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 1], name="images")
labels = tf.compat.v1.placeholder(tf.int64, [None], name="labels")
is_training = tf.compat.v1.placeholder(tf.bool, [], name="is_training")

conv1 = tf.compat.v1.layers.conv2d(images, filters=4, kernel_size=3, padding="same",
                                   use_bias=False)
bn1 = tf.compat.v1.layers.batch_normalization(conv1, momentum=0.9, training=is_training)
pool1 = tf.compat.v1.layers.max_pooling2d(tf.nn.relu(bn1), pool_size=2, strides=2)
logits = tf.compat.v1.layers.dense(tf.compat.v1.layers.flatten(pool1), 3)

loss = tf.compat.v1.losses.sparse_softmax_cross_entropy(labels=labels, logits=logits)
correct = tf.equal(tf.argmax(logits, 1), labels)
accuracy = tf.reduce_mean(tf.cast(correct, tf.float32))

update_ops = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
with tf.control_dependencies(update_ops):
    train_op = tf.compat.v1.train.AdamOptimizer(learning_rate=0.01).minimize(loss)

rng = np.random.RandomState(0)
train_images = rng.rand(48, 8, 8, 1).astype(np.float32)
train_labels = rng.randint(0, 3, size=48)
test_images = rng.rand(16, 8, 8, 1).astype(np.float32)
test_labels = rng.randint(0, 3, size=16)

with tf.compat.v1.Session() as sess:
    sess.run(tf.compat.v1.global_variables_initializer())
    for step in range(6):
        start = step * 8
        feed = {images: train_images[start:start + 8], labels: train_labels[start:start + 8],
                is_training: True}
        _, loss_value = sess.run([train_op, loss], feed_dict=feed)
        print("step %d, loss %.9f" % (step, loss_value))
    test_accuracy, test_loss = sess.run([accuracy, loss], feed_dict={
        images: test_images, labels: test_labels, is_training: False})
    print("test accuracy %.9f, loss %.9f" % (test_accuracy, test_loss))
    for variable in tf.compat.v1.global_variables():
        if "moving_" in variable.name:
            print(variable.name, np.array2string(sess.run(variable), precision=9,
                                                 floatmode="fixed"))
