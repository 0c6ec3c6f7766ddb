"""Images fed through an initializable tf.data iterator (placeholders for the arrays, one
iterator.initializer run per epoch, OutOfRangeError ends the epoch); batch norm first on the
images (tf.layers, fused kernel) with a training placeholder; the test set goes through the same
iterator with the flag False."""
import random

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()
random.seed(22)
np.random.seed(22)
tf.compat.v1.set_random_seed(22)

rng = np.random.RandomState(22)
train_images = rng.beta(2.0, 5.0, size=(12, 4, 4, 3)).astype(np.float32) * 255.0
train_labels = rng.randint(0, 2, size=12).astype(np.int64)
test_images = rng.beta(2.0, 5.0, size=(8, 4, 4, 3)).astype(np.float32) * 255.0
test_labels = rng.randint(0, 2, size=8).astype(np.int64)

images_placeholder = tf.compat.v1.placeholder(tf.float32, [None, 4, 4, 3])
labels_placeholder = tf.compat.v1.placeholder(tf.int64, [None])
dataset = tf.data.Dataset.from_tensor_slices((images_placeholder, labels_placeholder)).batch(4)
iterator = tf.compat.v1.data.make_initializable_iterator(dataset)
images, labels = iterator.get_next()
is_training = tf.compat.v1.placeholder(tf.bool, shape=[])

net = tf.compat.v1.layers.batch_normalization(images, momentum=0.7, training=is_training)
net = tf.compat.v1.layers.conv2d(net, 4, 3, activation=tf.nn.relu)
logits = tf.compat.v1.layers.dense(tf.compat.v1.layers.flatten(net), 2)
loss = tf.compat.v1.losses.sparse_softmax_cross_entropy(labels, logits)
update_ops = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
with tf.control_dependencies(update_ops):
    train_op = tf.compat.v1.train.GradientDescentOptimizer(0.05).minimize(loss)

with tf.compat.v1.Session() as sess:
    sess.run(tf.compat.v1.global_variables_initializer())
    for epoch in range(2):
        sess.run(iterator.initializer, feed_dict={images_placeholder: train_images,
                                                  labels_placeholder: train_labels})
        losses = []
        while True:
            try:
                _, value = sess.run([train_op, loss], feed_dict={is_training: True})
                losses.append(value)
            except tf.errors.OutOfRangeError:
                break
        print("epoch %d losses %s" % (epoch, " ".join("%.9f" % v for v in losses)))
    sess.run(iterator.initializer, feed_dict={images_placeholder: test_images,
                                              labels_placeholder: test_labels})
    test_losses = []
    while True:
        try:
            test_losses.append(sess.run(loss, feed_dict={is_training: False}))
        except tf.errors.OutOfRangeError:
            break
    print("test loss %.9f" % np.mean(test_losses))
    for v in tf.compat.v1.global_variables():
        if "moving_" in v.name:
            print(v.name, np.array2string(sess.run(v), precision=9, floatmode="fixed"))
