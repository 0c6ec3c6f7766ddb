"""Training with tf.compat.v1.train.MonitoredTrainingSession: a global step, StopAtStepHook and
a FinalOpsHook that fetches the moving statistics when the session ends; batch norm on the fed
features."""
import random

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()
random.seed(24)
np.random.seed(24)
tf.compat.v1.set_random_seed(24)

global_step = tf.compat.v1.train.get_or_create_global_step()
x = tf.compat.v1.placeholder(tf.float32, [None, 4])
y = tf.compat.v1.placeholder(tf.float32, [None, 1])
net = tf.compat.v1.layers.batch_normalization(x, momentum=0.75, training=True)
net = tf.compat.v1.layers.dense(net, 6, activation=tf.nn.relu)
logits = tf.compat.v1.layers.dense(net, 1)
loss = tf.compat.v1.losses.sigmoid_cross_entropy(y, logits)
update_ops = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
with tf.control_dependencies(update_ops):
    train_op = tf.compat.v1.train.GradientDescentOptimizer(0.5).minimize(
        loss, global_step=global_step)
moving = [v for v in tf.compat.v1.global_variables() if "moving_" in v.name]
final_hook = tf.compat.v1.train.FinalOpsHook({v.name: v for v in moving})
hooks = [tf.compat.v1.train.StopAtStepHook(last_step=5), final_hook]

rng = np.random.RandomState(24)
step = 0
with tf.compat.v1.train.MonitoredTrainingSession(hooks=hooks) as mon_sess:
    while not mon_sess.should_stop():
        xs = rng.normal(1.0, 4.0, size=(8, 4)).astype(np.float32)
        ys = (xs.sum(axis=1, keepdims=True) > 4).astype(np.float32)
        _, value = mon_sess.run([train_op, loss], feed_dict={x: xs, y: ys})
        print("step %d loss %.9f" % (step, value))
        step += 1
for name in sorted(final_hook.final_ops_values):
    print(name, np.array2string(final_hook.final_ops_values[name], precision=9,
                                floatmode="fixed"))
