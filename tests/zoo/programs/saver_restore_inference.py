"""Train, save with tf.compat.v1.train.Saver, restore the checkpoint into a new session and run
inference with the training flag False: the moving statistics travel through the checkpoint."""
import os
import random
import shutil
import tempfile

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()
random.seed(23)
np.random.seed(23)
tf.compat.v1.set_random_seed(23)

x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
y = tf.compat.v1.placeholder(tf.float32, [None, 1], name="y")
training = tf.compat.v1.placeholder(tf.bool, [], name="training")
h = tf.compat.v1.layers.batch_normalization(x, momentum=0.9, training=training, name="bn_input")
h = tf.compat.v1.layers.dense(h, 5, activation=tf.nn.elu, name="hidden")
h = tf.compat.v1.layers.batch_normalization(h, momentum=0.9, training=training, name="bn_hidden")
prediction = tf.compat.v1.layers.dense(h, 1, name="output")
loss = tf.reduce_mean(tf.square(prediction - y))
with tf.control_dependencies(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)):
    train_op = tf.compat.v1.train.AdamOptimizer(0.05).minimize(loss)
saver = tf.compat.v1.train.Saver()

checkpoint_dir = tempfile.mkdtemp()
checkpoint_path = os.path.join(checkpoint_dir, "model.ckpt")
rng = np.random.RandomState(23)
with tf.compat.v1.Session() as sess:
    sess.run(tf.compat.v1.global_variables_initializer())
    for step in range(5):
        xs = rng.normal([0.0, 5.0, -5.0], [1.0, 2.0, 0.5], size=(8, 3)).astype(np.float32)
        ys = (xs[:, :1] * xs[:, 1:2]).astype(np.float32)
        _, value = sess.run([train_op, loss], {x: xs, y: ys, training: True})
        print("step %d loss %.9f" % (step, value))
    saver.save(sess, checkpoint_path)
    print("model saved")

with tf.compat.v1.Session() as sess:
    saver.restore(sess, checkpoint_path)
    xs = rng.normal([0.0, 5.0, -5.0], [1.0, 2.0, 0.5], size=(4, 3)).astype(np.float32)
    print("predictions", np.array2string(sess.run(prediction, {x: xs, training: False}).ravel(),
                                         precision=9, floatmode="fixed"))
    for v in tf.compat.v1.global_variables():
        if "moving_" in v.name:
            print(v.name, np.array2string(sess.run(v), precision=9, floatmode="fixed",
                                          max_line_width=200))
shutil.rmtree(checkpoint_dir)
