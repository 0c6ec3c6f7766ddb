"""Trap 7a: ``virtual_batch_size`` (ghost batch norm), and two surprises in how tf_keras does it.

With ``virtual_batch_size = k`` a training batch of ``N`` samples is normalised in ``G = N / k``
ghost batches, each with its own biased moments, and the moving statistics are updated *once* per
step with the mean of the ghost batches' moments (:func:`bnrepro.check.layer_modes.ghost_batch_moments`)::

    moving_mean     = momentum * old + (1 - momentum) * (1 / G) * sum_j mean(x_j)
    moving_variance = momentum * old + (1 - momentum) * (1 / G) * sum_j var(x_j)

Surprise 1: tf_keras reshapes ``(N, C) -> (k, N / k, C)`` and reduces over axis 0, so ghost batch
``j`` is the *strided* samples ``x[j], x[j + G], ...``, not ``k`` consecutive ones.
For ``x = 1, 2, 4, 7`` and ``k = 2``: ghost batches ``{1, 4}`` and ``{2, 7}``, variances 2.25 and
6.25, so the moving variance (momentum 0) becomes 4.25, against 5.25 for the whole batch.

Surprise 2: the split happens only when ``training`` is a Python ``True``
(``[virtual_batch_size, -1] if training_value else [-1, 1]`` in tf_keras'
``BatchNormalizationBase.call``); with a ``training`` *tensor* (a placeholder, as in every post)
each "ghost batch" is the whole batch and the layer is plain batch norm (``--training tensor``).

The graph for ``--training python-bool`` calls the layer twice with shared variables, with
``training=True`` (the train op's path) and ``training=False``, and picks one with the fed
``training`` placeholder. The layer's variables have shape ``(1, 1, C)``. The trace line: any
step's ``bn`` ``batch_variance`` (what the update consumed), against the variance of the step's
``batch_input``.

The header declares ``"virtual_batch_size": k, "ghost_layout": "strided"`` for the layer when the
graph really splits the batch (:mod:`bnrepro.graphs.discover` reads it from the layer's reshape of its
input), so ``bnrepro verify`` checks the ghost batches' mean moments and passes; with
``--training tensor`` the header declares nothing and the trace verifies as the standard layer.
"""
from __future__ import annotations

import numpy as np

from bnrepro.check import formulas, layer_modes
from bnrepro.config import GHOST_TRAINING_MODES as TRAINING_MODES  # noqa: F401 (as before)
from bnrepro.config import GhostBatchConfig, check_ghost_config
from bnrepro.graphs.pitfalls.toy import build_toy_graph
from bnrepro.graphs.tfv1 import tf, tf1
from bnrepro.graphs.built import Scenario

LAYER = "batch_normalization"


def ghost_batches(config):
    """``steps`` batches ``(batch_size, channels)`` of N(1, 2^2) inputs and N(0, 1) targets."""
    check_ghost_config(config)
    rng = np.random.default_rng(config.seed)
    shape = (config.batch_size, config.channels)
    for _ in range(config.steps):
        yield (rng.normal(1.0, 2.0, shape).astype(np.float32),
               rng.normal(0.0, 1.0, shape).astype(np.float32))


def build_ghost_batch_graph(config):
    """One ghost-batch layer on ``h = x * w``; returns a :class:`BuiltGraph`."""
    check_ghost_config(config)
    options = dict(momentum=config.momentum, epsilon=config.epsilon,
                   virtual_batch_size=config.virtual_batch_size)

    def add_layers(h, training):
        if config.training == "tensor":
            return {LAYER: tf1.layers.batch_normalization(h, training=training, **options)}
        train_output = tf1.layers.batch_normalization(h, training=True, name=LAYER, **options)
        inference_output = tf1.layers.batch_normalization(h, training=False, name=LAYER,
                                                          reuse=True, **options)
        return {LAYER: tf.cond(training, lambda: train_output, lambda: inference_output)}

    return build_toy_graph((None, config.channels), add_layers, config.learning_rate)


def print_ghost_batch_step(previous, record, write):
    """The variance the update consumed against the whole batch's and the ghost batches'."""

    if record["step"] == 0:
        return
    state = record["bn"][LAYER]
    x = np.asarray(state["batch_input"], dtype=np.float64)
    write(f"step {record['step']}: the update consumed batch_variance "
          f"{np.round(np.ravel(state['batch_variance']), 6).tolist()}; the whole batch's "
          f"{np.round(formulas.batch_variance(x), 6).tolist()}")
    size = x.shape[0]
    for k in range(2, size):
        if size % k:
            continue
        for layout in layer_modes.GHOST_LAYOUTS:
            _, variance = layer_modes.ghost_batch_moments(x, k, layout)
            write(f"  ghost batches of {k} {layout} samples: mean variance "
                  f"{np.round(variance, 6).tolist()}")


def scenario():
    return Scenario("ghost-batch", GhostBatchConfig, build_ghost_batch_graph, ghost_batches,
                    print_ghost_batch_step)
