"""An MLP with batch norm written by hand, contrib style: the population updates run as control
dependencies of the training output, and both tf.cond branches are built outside the cond, so an
evaluation run (is_training False) also runs the updates while its own output reads the population
statistics, in no fixed order. Its printed test cost changes from run to run, traced or not:

    for i in 1 2 3 4 5 6 7 8; do python scripts/unordered_evaluation.py | tail -1; done

`bnrepro trace` names the unordered reads in its summary and in the trace header (tracer_notes).
"""
import numpy as np
import tensorflow as tf
tf.compat.v1.disable_v2_behavior()
tf.compat.v1.set_random_seed(7)
rng = np.random.RandomState(0)
x = tf.compat.v1.placeholder(tf.float32, [None, 784])
y = tf.compat.v1.placeholder(tf.float32, [None, 10])
is_training = tf.compat.v1.placeholder(tf.bool, [])
w1 = tf.Variable(tf.random.normal([784, 100]))
z1 = tf.matmul(x, w1)
gamma = tf.Variable(tf.ones([100])); beta = tf.Variable(tf.zeros([100]))
pop_mean = tf.Variable(tf.zeros([100]), trainable=False)
pop_var = tf.Variable(tf.ones([100]), trainable=False)
batch_mean, batch_var = tf.nn.moments(z1, [0])
decay = 0.999
train_mean = tf.compat.v1.assign(pop_mean, pop_mean * decay + batch_mean * (1 - decay))
train_var = tf.compat.v1.assign(pop_var, pop_var * decay + batch_var * (1 - decay))
with tf.control_dependencies([train_mean, train_var]):
    train_out = tf.nn.batch_normalization(z1, batch_mean, batch_var, beta, gamma, 1e-3)
test_out = tf.nn.batch_normalization(z1, pop_mean, pop_var, beta, gamma, 1e-3)
h = tf.nn.sigmoid(tf.cond(is_training, lambda: train_out, lambda: test_out))
w2 = tf.Variable(tf.random.normal([100, 10]))
logits = tf.matmul(h, w2)
cost = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=logits))
train = tf.compat.v1.train.GradientDescentOptimizer(0.5).minimize(cost)
with tf.compat.v1.Session() as sess:
    sess.run(tf.compat.v1.global_variables_initializer())
    for step in range(5):
        xb = (rng.rand(100, 784) * 255).astype(np.float32)
        yb = np.eye(10, dtype=np.float32)[rng.randint(0, 10, 100)]
        _, c = sess.run([train, cost], {x: xb, y: yb, is_training: True})
        print("cost %.9f" % c)
    print("test cost %.9f" % sess.run(cost, {x: xb, y: yb, is_training: False}))
