"""Trap 1: the fused kernel averages the unbiased batch variance into the moving variance.

The same values go through two layers in one graph: as one ``(1, 2, 2, 1)`` image (4-D: the layer
takes the fused kernel, scope ``fused``) and as a ``(4, 1)`` column (2-D: the non-fused kernel,
scope ``non_fused``). Both normalise the training batch with the biased variance, but the moving
variance is updated with::

    fused:      moving_variance = momentum * old + (1 - momentum) * sum((x - mean)^2) / (N - 1)
    non-fused:  moving_variance = momentum * old + (1 - momentum) * sum((x - mean)^2) / N

For ``x = 1, 2, 4, 7`` (mean 3.5, squared deviations 6.25 + 2.25 + 0.25 + 12.25 = 21) and momentum 0,
one step leaves 21 / 3 = 7 fused and 21 / 4 = 5.25 non-fused. The trace line that shows it is step
1's ``bn``: ``fused/batch_normalization`` ``moving_variance`` and ``batch_variance`` (the value the
fused update consumed) against ``non_fused/batch_normalization``'s.

Epsilon: older TensorFlow raised the fused kernel's epsilon to at least 1.001e-5 (cuDNN's minimum,
``min_epsilon`` in ``tf.nn.fused_batch_norm``); TensorFlow 2.21 passes it through unchanged, so
``--epsilon 1e-7`` gives the same training outputs on both paths (the printout checks this).
"""
from __future__ import annotations

import numpy as np

from bnrepro.check import formulas
from bnrepro.config import FUSED_IMAGE_SHAPE as IMAGE_SHAPE
from bnrepro.config import FusedConfig
from bnrepro.config import fused_image_values as image_values
from bnrepro.check.conventions import CUDNN_MIN_EPSILON
from bnrepro.graphs.pitfalls.toy import build_toy_graph, training_output_key
from bnrepro.graphs.tfv1 import tf, tf1
from bnrepro.graphs.built import Scenario

FUSED_LAYER = "fused/batch_normalization"
NON_FUSED_LAYER = "non_fused/batch_normalization"


def fused_batches(config):
    """The one image ``steps`` times: inputs ``(1, 2, 2, 1)``, targets zero."""
    image = np.asarray(image_values(config), dtype=np.float32).reshape((1,) + IMAGE_SHAPE)
    for _ in range(config.steps):
        yield image, np.zeros_like(image)


def build_fused_graph(config):
    """Both kernels on the same values; returns a :class:`BuiltGraph` with two layers."""
    image_values(config)

    def add_layers(h, training):
        with tf1.variable_scope("fused"):
            fused = tf1.layers.batch_normalization(
                h, training=training, momentum=config.momentum,
                epsilon=config.epsilon)  # (N, 2, 2, 1): fused kernel
        with tf1.variable_scope("non_fused"):
            column = tf.reshape(h, (-1, IMAGE_SHAPE[-1]))  # (N, 2, 2, 1) -> (4N, 1)
            non_fused = tf1.layers.batch_normalization(
                column, training=training, momentum=config.momentum,
                epsilon=config.epsilon)  # 2-D: non-fused kernel
        return {FUSED_LAYER: fused, NON_FUSED_LAYER: non_fused}

    return build_toy_graph((None,) + IMAGE_SHAPE, add_layers, config.learning_rate)


def print_fused_step(previous, record, write):
    """Both layers' moving variance beside the biased and unbiased variance of the step's input, and
    the epsilon each layer's training output implies (solving the normalisation for epsilon)."""
    if record["step"] == 0:
        return
    write(f"step {record['step']}")
    for layer in (FUSED_LAYER, NON_FUSED_LAYER):
        state, old = record["bn"][layer], previous["bn"][layer]
        x = np.asarray(state["batch_input"], dtype=np.float64)
        values = x.reshape(-1, x.shape[-1])[:, 0]  # (N, ..., C) -> (N*H*W,) of channel 0
        mean, biased = formulas.batch_mean(x), formulas.batch_variance(x)
        unbiased = formulas.batch_variance(x, formulas.UNBIASED)
        output = np.asarray(record["metrics"][training_output_key(layer)], dtype=np.float64)
        implied = formulas.fitted_epsilon(x, output, mean, biased, old["gamma"], old["beta"])
        write(f"  {layer}, input {values.tolist()}:")
        write(f"    moving_variance {_first(state['moving_variance']):.8g} (the update consumed "
              f"{_first(state['batch_variance']):.8g}; biased /N {_first(biased):.8g}, "
              f"unbiased /(N-1) {_first(unbiased):.8g})")
        write(f"    training output {np.round(np.ravel(output), 7).tolist()}, normalised with the "
              f"biased variance and epsilon {'(not resolvable)' if implied is None else f'{implied:.3g}'}"
              f" (the old fused floor: {CUDNN_MIN_EPSILON:g})")


def _first(array):
    return float(np.ravel(array)[0])


def scenario():
    return Scenario("fused-variance", FusedConfig, build_fused_graph, fused_batches, print_fused_step)
