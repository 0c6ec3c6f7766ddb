"""The smallest trainable graph around batch-norm layers, for the traps that need no post's net.

``h = x * w`` (``w`` one weight per channel, initialised to one), then the scenario's batch-norm
layers on ``h``, loss ``sum over layers of mean((output - target)^2)``, plain gradient descent under
the ``UPDATE_OPS`` control dependency. The weight is there so that the train op has something to
train; the traps live in the layers.
"""
from __future__ import annotations

import numpy as np

from bnrepro.graphs.built import BuiltGraph, batch_norm_taps
from bnrepro.graphs.tfv1 import tf, tf1


def build_toy_graph(input_shape, add_layers, learning_rate, extra_metrics=None):
    """A fresh graph: placeholders of ``input_shape`` (``None`` for the batch axis), ``h = x * w``.

    ``add_layers(h, training)`` adds the batch-norm layers (``tf.compat.v1.layers.batch_normalization``)
    and returns ``{layer name: the tensor it returned}``; the taps come from the graph
    (:func:`bnrepro.graphs.built.batch_norm_taps`). Each layer's training-mode output is fetched with the
    train op (trace ``metrics``, key ``"<layer> training output"``), as are
    ``extra_metrics(graph, taps)`` (name -> tensor).
    """
    graph = tf.Graph()
    with graph.as_default():
        training = tf1.placeholder_with_default(False, shape=(), name="training")
        x = tf1.placeholder(tf.float32, shape=input_shape, name="x")
        target = tf1.placeholder(tf.float32, shape=input_shape, name="target")
        w = tf1.get_variable("w", shape=input_shape[-1:], initializer=tf1.ones_initializer())
        h = x * w  # (N, ..., C)
        outputs_by_layer = add_layers(h, training)
        loss = tf.add_n([tf.reduce_mean(tf.square(tf.reshape(output, tf.shape(x)) - target))
                         for output in outputs_by_layer.values()])
        with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)):
            train_op = tf1.train.GradientDescentOptimizer(learning_rate).minimize(loss)
        taps = batch_norm_taps(graph, outputs_by_layer)
        metrics = training_output_metrics(taps)
        if extra_metrics is not None:
            metrics.update(extra_metrics(graph, taps))
    return BuiltGraph(graph=graph, inputs=x, targets=target, training=training, loss=loss,
                      train_op=train_op, batch_norms=taps, metrics=metrics)


def training_output_metrics(taps):
    """``{"<layer> training output": output}``: fetched with the train op (the trace's ``metrics``),
    each layer's output as the training run computed it, with the variables before the step."""
    return {training_output_key(tap.name): tap.outputs for tap in taps}


def training_output_key(layer):
    return f"{layer} training output"


def inference_against_training(record, layer):
    """``"inference [...], training [...], max difference d"``: a step's inference-mode output of
    ``layer`` (trace ``inference``) beside its training-run output (trace ``metrics``), both with
    the variables before the step."""
    inference = np.ravel(record["inference"][layer]["output"])
    training = np.ravel(record["metrics"][training_output_key(layer)])
    return (f"inference {np.round(inference, 6).tolist()}, training {np.round(training, 6).tolist()},"
            f" max difference {float(np.max(np.abs(inference - training))):.4g}")
