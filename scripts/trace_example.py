"""A small TF1-style training program of the kind bnrepro trace is for (README, "Trace your own
script"): a dense layer, tf.compat.v1.layers.batch_normalization with a training placeholder, the
UPDATE_OPS dependency, gradient descent; then an evaluation with training=False.

    bnrepro trace --out out/example scripts/trace_example.py
    bnrepro trace --out out/example-bug --force scripts/trace_example.py --forget-update-ops

It knows nothing of bnrepro. ``--forget-update-ops`` builds the train op without the UPDATE_OPS
dependency, the mistake behind most "my moving mean never changes" questions.
"""
import argparse

import numpy as np
import tensorflow as tf

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--steps", type=int, default=20, help="training steps [default: 20]")
parser.add_argument("--forget-update-ops", action="store_true",
                    help="leave the UPDATE_OPS dependency out of the train op")
arguments = parser.parse_args()

tf.compat.v1.disable_eager_execution()
tf.keras.utils.set_random_seed(0)
rng = np.random.RandomState(0)
x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
y = tf.compat.v1.placeholder(tf.float32, [None, 1], name="y")
training = tf.compat.v1.placeholder_with_default(False, [], name="training")
hidden = tf.compat.v1.layers.dense(x, 8)
hidden = tf.compat.v1.layers.batch_normalization(hidden, training=training, momentum=0.9)
prediction = tf.compat.v1.layers.dense(tf.nn.relu(hidden), 1)
loss = tf.reduce_mean(tf.square(prediction - y))
optimizer = tf.compat.v1.train.GradientDescentOptimizer(0.05)
if arguments.forget_update_ops:
    train = optimizer.minimize(loss)
else:
    with tf.control_dependencies(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)):
        train = optimizer.minimize(loss)


def batch(size):
    inputs = rng.normal(1.0, 2.0, (size, 4)).astype(np.float32)
    return inputs, (inputs ** 2).sum(1, keepdims=True) / 4


with tf.compat.v1.Session() as session:
    session.run(tf.compat.v1.global_variables_initializer())
    for step in range(1, arguments.steps + 1):
        inputs, targets = batch(32)
        _, value = session.run([train, loss], {x: inputs, y: targets, training: True})
        if step % 5 == 0:
            print(f"step {step:3d}  training loss {value:.4f}")
    inputs, targets = batch(256)
    print(f"evaluation loss (moving statistics) {session.run(loss, {x: inputs, y: targets}):.4f}")
