"""Trap 4: which epsilon? Post 000 writes 1e-5; ``tf.layers`` uses 1e-3; others differ again.

Post 000's scenario (:mod:`bnrepro.graphs.cubic`, ``--epsilon`` as run, default the layer's 1e-3), printed
with the inference output ``bn1`` recomputed for each epsilon of the conventions table
(:data:`bnrepro.check.conventions.KNOWN_EPSILONS`)::

    bn1(epsilon) = gamma * (hidden_tmp - moving_mean) / sqrt(moving_variance + epsilon) + beta

with the variables before the step, beside what TensorFlow printed. Only the epsilon the layer ran
with reproduces it: with post 000's numbers before its 10th step, 1e-5 gives ``bn1[0]`` 1.09616
instead of the printed 1.0949917. The trace line: step 10's ``inference`` output.
"""
from __future__ import annotations

import numpy as np

from bnrepro.check import formulas
from bnrepro.check.conventions import KNOWN_EPSILONS
from bnrepro.graphs.cubic import CubicConfig, build_cubic_graph, cubic_batches
from bnrepro.graphs.built import Scenario

LAYER = "batch_normalization"


def epsilon_rows(previous, record, layer=LAYER):
    """``[(epsilon, who uses it, bn1 with it, bn1 minus TensorFlow's)]`` for one step's inference
    record (``previous`` holds the variables before the step)."""
    old = previous["bn"][layer]
    pair = record["inference"][layer]
    printed = np.asarray(pair["output"], dtype=np.float64)
    rows = []
    for epsilon, who in KNOWN_EPSILONS.items():
        output = formulas.normalize(pair["input"], old["moving_mean"], old["moving_variance"],
                                    old["gamma"], old["beta"], epsilon)
        rows.append((epsilon, who, output, output - printed))
    return rows


def print_epsilon_step(previous, record, write):
    """TensorFlow's inference output, then one line per epsilon."""
    if record["step"] == 0:
        return
    printed = np.ravel(record["inference"][LAYER]["output"])
    write(f"step {record['step']}: bn1 (inference, as TensorFlow computed it) "
          f"{np.round(printed, 7).tolist()}")
    for epsilon, who, output, difference in epsilon_rows(previous, record):
        write(f"  epsilon {epsilon:<9g} {np.round(np.ravel(output), 7).tolist()}  max |difference| "
              f"{float(np.max(np.abs(difference))):.3g}  ({who})")


def scenario():
    return Scenario("epsilon", CubicConfig, build_cubic_graph, cubic_batches, print_epsilon_step)
