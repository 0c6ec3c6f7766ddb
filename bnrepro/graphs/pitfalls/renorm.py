"""Trap 7b: ``renorm=True`` (batch renormalisation): the layer averages a standard deviation.

With renorm the layer keeps, besides ``moving_mean`` / ``moving_variance``, a ``moving_stddev`` and
the training-side averages ``renorm_mean`` / ``renorm_stddev``. One training step, with
``s = max(renorm_stddev_old, sqrt(epsilon))`` (:mod:`bnrepro.check.layer_modes`)::

    r      = clip(sqrt(var + epsilon) / s, rmin, rmax)
    d      = clip((mean - renorm_mean_old) / s, -dmax, dmax)
    output = gamma * ((x - mean) / sqrt(var + epsilon) * r + d) + beta
    renorm_mean     = renorm_momentum * renorm_mean_old   + (1 - renorm_momentum) * mean
    renorm_stddev   = renorm_momentum * renorm_stddev_old + (1 - renorm_momentum) * sqrt(var + epsilon)
    moving_mean     = momentum * moving_mean_old   + (1 - momentum) * mean
    moving_stddev   = momentum * moving_stddev_old + (1 - momentum) * sqrt(var + epsilon)
    moving_variance = max(moving_stddev^2 - epsilon, 0)

so ``moving_variance`` does *not* follow ``momentum * old + (1 - momentum) * var``: the square of an
average of standard deviations is not the average of the variances (and step 1 starts from
``moving_stddev = sqrt(1) = 1``, not ``sqrt(1 + epsilon)``). The header declares the layer's
``"renorm": {"momentum": ..., "clipping": {"rmin", "rmax", "dmax"}}``, so ``bnrepro verify`` checks
the moving variance through ``moving_stddev``, the renorm averages and the clipped ``r`` and ``d``,
and passes (without the declaration it fails the standard moving-variance check and names the
renorm convention). ``r`` and ``d`` are in the trace's
``metrics`` (``<layer> renorm_r`` / ``renorm_d``), ``moving_stddev``, ``renorm_mean`` and
``renorm_stddev`` in its ``variables``. The batches drift (mean ``drift * step``, standard deviation
``1 + spread * step``) so that the clipping bites.
"""
from __future__ import annotations

import numpy as np

from bnrepro.config import RenormConfig
from bnrepro.graphs.pitfalls.toy import build_toy_graph
from bnrepro.graphs.tfv1 import tf1
from bnrepro.graphs.built import Scenario

LAYER = "batch_normalization"
CORRECTIONS = ("renorm_r", "renorm_d")


def renorm_batches(config):
    """``steps`` drifting batches ``(batch_size, 1)``; targets N(0, 1)."""
    rng = np.random.default_rng(config.seed)
    for step in range(1, config.steps + 1):
        inputs = rng.normal(config.drift * step, 1.0 + config.spread * step, (config.batch_size, 1))
        yield inputs.astype(np.float32), rng.normal(0.0, 1.0, (config.batch_size, 1)).astype(np.float32)


def build_renorm_graph(config):
    """One renorm layer on ``h = x * w``, its ``r`` and ``d`` fetched with the train op."""
    def add_layers(h, training):
        return {LAYER: tf1.layers.batch_normalization(
            h, training=training, momentum=config.momentum, epsilon=config.epsilon, renorm=True,
            renorm_momentum=config.renorm_momentum,
            renorm_clipping={"rmin": config.rmin, "rmax": config.rmax, "dmax": config.dmax})}

    def corrections(graph, taps):
        return {f"{tap.name} {name}": graph.get_tensor_by_name(f"{tap.name}/{name}:0")
                for tap in taps for name in CORRECTIONS}

    return build_toy_graph((None, 1), add_layers, config.learning_rate, corrections)


def print_renorm_step(previous, record, write):
    """r, d and the renorm variables after the step."""
    if record["step"] == 0:
        return
    metrics, variables = record["metrics"], record["variables"]
    state = record["bn"][LAYER]

    def value(array):
        return np.round(np.ravel(array), 6).tolist()

    write(f"step {record['step']}: r {value(metrics[f'{LAYER} renorm_r'])} "
          f"d {value(metrics[f'{LAYER} renorm_d'])}; batch mean {value(state['batch_mean'])} "
          f"variance {value(state['batch_variance'])}")
    write(f"  moving_stddev {value(variables[f'{LAYER}/moving_stddev:0'])} -> moving_variance "
          f"{value(state['moving_variance'])}; renorm_mean "
          f"{value(variables[f'{LAYER}/renorm_mean:0'])} renorm_stddev "
          f"{value(variables[f'{LAYER}/renorm_stddev:0'])}")


def scenario():
    return Scenario("renorm", RenormConfig, build_renorm_graph, renorm_batches, print_renorm_step)
