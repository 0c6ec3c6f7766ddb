"""Post 000: regress f = x^3 + 1 with one hidden unit and batch normalisation.

The graph is the post's: ``hidden_tmp = x·w + b``, ``bn1 = batch_normalization(hidden_tmp,
momentum=0.9)``, ``hidden = sigmoid(bn1)``, ``f = sigmoid(hidden·w2 + b2)``, L1 loss
``mean(|f_ - f|)``, gradient descent; every weight starts at one and the batches come from Python's
``random`` after ``random.seed(0)``. Variable names are TensorFlow's defaults, as the post prints them:
``Variable:0`` (w), ``Variable_1:0`` (b), ``Variable_2:0`` (w2), ``Variable_3:0`` (b2).
"""
from __future__ import annotations

import random

import numpy as np

from bnrepro.config import CubicConfig
from bnrepro.graphs.built import BuiltGraph, Scenario, batch_norm_taps
from bnrepro.graphs.tfv1 import tf, tf1


def target_function(x1):
    """The function the post trains: f = x^3 + 1."""
    return x1 * x1 * x1 + 1


def cubic_batches(config):
    """Yield ``(inputs, targets)`` per epoch as the post draws them: x ~ random.random(), f = x^3 + 1.

    Both are lists of one-element lists, shape (batch_size, 1), in the post's order of calls.
    """
    generator = random.Random(config.seed)
    for _ in range(config.epochs):
        inputs = [[generator.random()] for _ in range(config.batch_size)]
        targets = [[target_function(x1)] for (x1,) in inputs]
        yield inputs, targets


def build_cubic_graph(config):
    """The post's graph in a fresh ``tf.Graph``; returns a :class:`BuiltGraph`."""
    graph = tf.Graph()
    with graph.as_default():
        training = tf1.placeholder_with_default(False, shape=(), name="training")
        x = tf1.placeholder(tf.float32, shape=(None, 1))
        ones = config.initial_value
        w = tf.Variable(tf.fill([1, 1], ones))
        b = tf.Variable(tf.fill([1], ones))
        hidden_tmp = tf.matmul(x, w) + b
        bn1 = tf1.layers.batch_normalization(
            hidden_tmp, training=training, momentum=config.momentum, epsilon=config.epsilon
        )
        hidden = tf.sigmoid(bn1)
        w2 = tf.Variable(tf.fill([1, 1], ones))
        b2 = tf.Variable(tf.fill([1], ones))
        f = tf.sigmoid(tf.matmul(hidden, w2) + b2)
        f_ = tf1.placeholder(tf.float32, shape=(None, 1))
        loss = tf.reduce_mean(tf.abs(f_ - f))
        trainer = tf1.train.GradientDescentOptimizer(config.learning_rate)
        extra_update_ops = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
        with tf.control_dependencies(extra_update_ops):
            trainer_op = trainer.minimize(loss)
    return BuiltGraph(
        graph=graph,
        inputs=x,
        targets=f_,
        training=training,
        loss=loss,
        train_op=trainer_op,
        batch_norms=batch_norm_taps(graph, {"batch_normalization": bn1}),
        printed_after={"result_loss": loss},
    )


def print_cubic_step(previous, record, write):
    """Print a step the way the post does: before the update, the batch, every variable, then
    ``hidden_tmp`` and ``bn1`` in inference mode; after it, ``result_loss``.

    ``previous`` is the state before the step (the previous record), ``record`` the step itself.
    The block opens with a line the post did not print, saying which step it is and what it shows:
    ``step 10 (its batch; before the update: the variables after step 9, hidden_tmp and bn1 in
    inference mode; after it: result_loss):``.
    """
    if record["step"] == 0:
        return
    state = ("the initial variables" if previous["step"] == 0
             else f"the variables after step {previous['step']}")
    write(f"step {record['step']} (its batch; before the update: {state}, hidden_tmp and bn1 in "
          f"inference mode; after it: result_loss):")
    write(str(record["batch"]["inputs"]))
    for name, value in previous["variables"].items():
        write(f"{name} {np.asarray(value, dtype=np.float32)}")
    (layer,) = record["inference"].values()
    write(str(np.asarray(layer["input"], dtype=np.float32)))
    write(str(np.asarray(layer["output"], dtype=np.float32)))
    write(f"result_loss: {np.float32(record['after']['result_loss'])}")


def scenario():
    """Post 000 as ``bnrepro run cubic`` runs it."""
    return Scenario("cubic", CubicConfig, build_cubic_graph, cubic_batches, print_cubic_step)
