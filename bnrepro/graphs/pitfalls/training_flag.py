"""Trap 3: ``training`` is a ``placeholder_with_default(False)`` and the training run never feeds it.

Post 000's graph (:mod:`bnrepro.graphs.cubic`) builds ``training = tf.placeholder_with_default(False, ())``
and passes it to the layer; here the training run feeds ``True`` to another placeholder
(``training_fed_to_nothing``) instead, as a script does that forgets ``training: True`` in its
``feed_dict``. The layer's ``training`` keeps its default, so during *training*::

    batch statistics consumed  = smart_cond(False, moments(x), moving statistics) = the moving statistics
    output                     = gamma * (x - moving_mean) / sqrt(moving_variance + epsilon) + beta
    moving_mean_k              = moving_mean_0 = 0,   moving_variance_k = moving_variance_0 = 1

(the update ``If(training, assign, no-op)`` takes its no-op branch). The net still trains, but as a
net without batch normalisation: a fixed ``gamma * x / sqrt(1 + epsilon) + beta``. The trace line
that shows it: any step's ``bn`` with ``batch_mean`` ``[0.0]`` and ``batch_variance`` ``[1.0]`` (the
moving statistics, not the batch's), and ``metrics`` training output equal to the ``inference``
output.
"""
from __future__ import annotations

import numpy as np

from bnrepro.graphs.cubic import CubicConfig, build_cubic_graph, cubic_batches
from bnrepro.graphs.pitfalls.toy import inference_against_training, training_output_metrics
from bnrepro.graphs.tfv1 import tf1
from bnrepro.graphs.built import Scenario

LAYER = "batch_normalization"


def build_training_never_fed(config):
    """Post 000's graph, with the ``training`` the runner feeds connected to nothing."""
    built = build_cubic_graph(config)
    with built.graph.as_default():
        built.training = tf1.placeholder_with_default(False, shape=(), name="training_fed_to_nothing")
    built.metrics.update(training_output_metrics(built.batch_norms))
    return built


def print_training_not_fed_step(previous, record, write):
    """What the update consumed against the batch's own mean, and training output against inference."""
    if record["step"] == 0:
        return
    state = record["bn"][LAYER]
    batch_mean = np.mean(np.asarray(state["batch_input"], dtype=np.float64))
    write(f"step {record['step']}: the update consumed batch_mean "
          f"{np.ravel(state['batch_mean']).tolist()}, batch_variance "
          f"{np.ravel(state['batch_variance']).tolist()} (the moving statistics); the batch's "
          f"mean is {batch_mean:.7g}")
    write(f"  bn1 (the same in both modes): {inference_against_training(record, LAYER)}")


def scenario():
    return Scenario("training-not-fed", CubicConfig, build_training_never_fed, cubic_batches,
                    print_training_not_fed_step)
