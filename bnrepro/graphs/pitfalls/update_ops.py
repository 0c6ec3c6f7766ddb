"""Trap 2: the train op built without the ``UPDATE_OPS`` control dependency.

Post 000's graph (:mod:`bnrepro.graphs.cubic`), trained by ``GradientDescentOptimizer.minimize(loss)`` built
*outside* ``tf.control_dependencies(tf.get_collection(UPDATE_OPS))``. Training looks fine: the
training-mode forward pass normalises with the batch statistics, so the loss and every weight follow
exactly the same path as with the dependency. But the moving averages never run::

    moving_mean_k = moving_mean_0 = 0,    moving_variance_k = moving_variance_0 = 1    for every k

and inference mode normalises with them: ``bn = gamma * (x - 0) / sqrt(1 + epsilon) + beta``.

How wrong inference is: had the updates run, the moving statistics would be (:func:`shadow_moving_statistics`)::

    shadow_k = momentum * shadow_(k-1) + (1 - momentum) * batch_statistic_k

and each step's inference output on its batch (data the net has not trained on yet: the trace's
``inference`` records use the variables before the step) would be
``gamma * (x - shadow_mean) / sqrt(shadow_variance + epsilon) + beta``. :func:`inference_errors`
gives the difference; the trace line that shows the trap is any step's ``bn`` with ``moving_mean``
``[0.0]`` and ``moving_variance`` ``[1.0]`` and no ``batch_mean``: the tracer records what an update
consumed, and no update ran. The batch statistics the update would have consumed are fetched with
the train op as ``metrics`` (``"<layer> batch_mean, not averaged in"``, :func:`unused_statistic_key`).
"""
from __future__ import annotations

import numpy as np

from bnrepro.check import formulas
from bnrepro.graphs.cubic import CubicConfig, build_cubic_graph, cubic_batches
from bnrepro.graphs.pitfalls.toy import inference_against_training, training_output_metrics
from bnrepro.graphs.tfv1 import tf1
from bnrepro.graphs.built import Scenario

LAYER = "batch_normalization"


def build_without_update_ops(config):
    """Post 000's graph whose train op is rebuilt without the control dependency on ``UPDATE_OPS``.

    (The graph still holds the post's own train op; it is simply never run.)
    """
    built = build_cubic_graph(config)
    with built.graph.as_default():
        built.train_op = tf1.train.GradientDescentOptimizer(config.learning_rate).minimize(
            built.loss, name="minimize_without_update_ops")
    built.metrics.update(training_output_metrics(built.batch_norms))
    built.metrics.update({unused_statistic_key(tap.name, statistic): tensor
                          for tap in built.batch_norms
                          for statistic, tensor in (("batch_mean", tap.batch_mean),
                                                    ("batch_variance", tap.batch_variance))})
    return built


def unused_statistic_key(layer, statistic):
    """The ``metrics`` key of a batch statistic (``batch_mean``, ``batch_variance``) the layer's
    update would have consumed in the training run."""
    return f"{layer} {statistic}, not averaged in"


def shadow_moving_statistics(steps, layer, momentum):
    """The moving statistics had the update run: ``{step: (moving_mean, moving_variance)}``.

    ``steps`` are trace step records in order, step 0 first; each later one's ``batch_mean`` /
    ``batch_variance`` (what the update would have consumed, in its ``metrics``) is averaged in
    with :func:`bnrepro.check.formulas.moving_average`.
    """
    shadow = {}
    for record in steps:
        state = record["bn"][layer]
        if record["step"] == 0:
            mean, variance = state["moving_mean"], state["moving_variance"]
        else:
            unused = {statistic: record["metrics"][unused_statistic_key(layer, statistic)]
                      for statistic in ("batch_mean", "batch_variance")}
            mean = formulas.moving_average(mean, unused["batch_mean"], momentum)
            variance = formulas.moving_average(variance, unused["batch_variance"], momentum)
        shadow[record["step"]] = (np.asarray(mean, dtype=np.float64),
                                  np.asarray(variance, dtype=np.float64))
    return shadow


def inference_errors(steps, layer, momentum, epsilon):
    """``{step: (recorded inference output, output with the shadow statistics)}`` for steps >= 1."""
    shadow = shadow_moving_statistics(steps, layer, momentum)
    by_step = {record["step"]: record for record in steps}
    errors = {}
    for step, record in by_step.items():
        if step == 0 or layer not in record.get("inference", {}) or step - 1 not in by_step:
            continue
        old = by_step[step - 1]["bn"][layer]
        pair = record["inference"][layer]
        mean, variance = shadow[step - 1]
        expected = formulas.normalize(pair["input"], mean, variance, old["gamma"], old["beta"],
                                      epsilon)
        errors[step] = (np.asarray(pair["output"], dtype=np.float64), expected)
    return errors


def print_no_update_ops_step(previous, record, write):
    """The stuck moving statistics beside the batch statistics the update never got, and the
    inference output on the step's batch beside the training output the net was trained with."""
    if record["step"] == 0:
        return
    state, metrics = record["bn"][LAYER], record["metrics"]
    write(f"step {record['step']}: moving_mean {np.ravel(state['moving_mean']).tolist()}, "
          f"moving_variance {np.ravel(state['moving_variance']).tolist()}; never averaged in: "
          f"batch_mean {np.ravel(metrics[unused_statistic_key(LAYER, 'batch_mean')]).tolist()}, "
          f"batch_variance "
          f"{np.ravel(metrics[unused_statistic_key(LAYER, 'batch_variance')]).tolist()}")
    write(f"  bn1 on the step's batch: {inference_against_training(record, LAYER)}")


def scenario():
    return Scenario("no-update-ops", CubicConfig, build_without_update_ops, cubic_batches,
                    print_no_update_ops_step)
