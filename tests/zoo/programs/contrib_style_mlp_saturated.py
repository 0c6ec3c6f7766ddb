"""An MNIST-style MLP with contrib-style batch norm (updates_collections=None: the moving-average
updates forced as control dependencies of the training branch's outputs, both tf.cond branches
built from tensors computed outside the cond), random-normal weights on 0-255 pixel values and
sigmoids, so the first layer saturates; the cost is printed with %.9f."""
import random

import numpy as np
import tensorflow as tf
from tensorflow.python.training import moving_averages

tf.compat.v1.disable_v2_behavior()
random.seed(18)
np.random.seed(18)
tf.compat.v1.set_random_seed(18)


def batch_norm(inputs, is_training, scope, decay=0.9, epsilon=1e-3):
    with tf.compat.v1.variable_scope(scope):
        shape = inputs.get_shape()[-1:]
        beta = tf.compat.v1.get_variable("beta", shape, initializer=tf.zeros_initializer())
        gamma = tf.compat.v1.get_variable("gamma", shape, initializer=tf.ones_initializer())
        moving_mean = tf.compat.v1.get_variable("moving_mean", shape,
                                                initializer=tf.zeros_initializer(),
                                                trainable=False)
        moving_variance = tf.compat.v1.get_variable("moving_variance", shape,
                                                    initializer=tf.ones_initializer(),
                                                    trainable=False)
        mean, variance = tf.nn.moments(inputs, [0])

        def force_updates():
            update_mean = moving_averages.assign_moving_average(moving_mean, mean, decay,
                                                                zero_debias=False)
            update_variance = moving_averages.assign_moving_average(moving_variance, variance,
                                                                    decay, zero_debias=False)
            with tf.control_dependencies([update_mean, update_variance]):
                return tf.identity(mean), tf.identity(variance)

        mean, variance = tf.cond(is_training, force_updates,
                                 lambda: (tf.identity(moving_mean), tf.identity(moving_variance)))
        return tf.nn.batch_normalization(inputs, mean, variance, beta, gamma, epsilon)


n_input, n_hidden_1, n_hidden_2, n_classes = 16, 8, 6, 4
x = tf.compat.v1.placeholder("float", [None, n_input])
y = tf.compat.v1.placeholder("float", [None, n_classes])
is_training = tf.compat.v1.placeholder(tf.bool)
weights = {
    "h1": tf.Variable(tf.random.normal([n_input, n_hidden_1])),
    "h2": tf.Variable(tf.random.normal([n_hidden_1, n_hidden_2])),
    "out": tf.Variable(tf.random.normal([n_hidden_2, n_classes])),
}
biases = {
    "b1": tf.Variable(tf.random.normal([n_hidden_1])),
    "b2": tf.Variable(tf.random.normal([n_hidden_2])),
    "out": tf.Variable(tf.random.normal([n_classes])),
}
layer_1 = tf.nn.sigmoid(tf.add(tf.matmul(x, weights["h1"]), biases["b1"]))
layer_1 = batch_norm(layer_1, is_training, "bn1")
layer_2 = tf.nn.sigmoid(tf.add(tf.matmul(layer_1, weights["h2"]), biases["b2"]))
layer_2 = batch_norm(layer_2, is_training, "bn2")
pred = tf.matmul(layer_2, weights["out"]) + biases["out"]
cost = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(logits=pred, labels=y))
optimizer = tf.compat.v1.train.AdamOptimizer(learning_rate=0.01).minimize(cost)

rng = np.random.RandomState(18)
with tf.compat.v1.Session() as sess:
    sess.run(tf.compat.v1.global_variables_initializer())
    for epoch in range(6):
        batch_x = rng.randint(0, 256, size=(16, n_input)).astype(np.float32)
        batch_y = np.eye(n_classes, dtype=np.float32)[rng.randint(0, n_classes, size=16)]
        _, c = sess.run([optimizer, cost], feed_dict={x: batch_x, y: batch_y, is_training: True})
        print("Epoch:", "%04d" % (epoch + 1), "cost=", "{:.9f}".format(c))
    test_x = rng.randint(0, 256, size=(16, n_input)).astype(np.float32)
    test_y = np.eye(n_classes, dtype=np.float32)[rng.randint(0, n_classes, size=16)]
    correct = tf.equal(tf.argmax(pred, 1), tf.argmax(y, 1))
    accuracy = tf.reduce_mean(tf.cast(correct, "float"))
    print("Accuracy: %.9f" % accuracy.eval({x: test_x, y: test_y, is_training: False}))
    for v in tf.compat.v1.global_variables():
        if "moving_" in v.name:
            print(v.name, np.array2string(sess.run(v), precision=9, floatmode="fixed",
                                          max_line_width=200))
