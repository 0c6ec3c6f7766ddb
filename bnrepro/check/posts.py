"""The numbers the posts printed, and where each one lives in our trace.

Post 000 prints its state before every training step; the printout it shows is the one before the
10th step: the variables after step 9 and, in inference mode on the 10th batch, ``hidden_tmp`` (the
layer's input) and ``bn1`` (its output). Post 001 prints after its single step; its kernels were
random; ``--hidden-kernel-init 1.4059724 --output-kernel-init -0.284`` reproduces everything it printed
(see :mod:`bnrepro.graphs.two_sample`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from bnrepro.check import tolerances
from bnrepro.errors import UserError


@dataclass(frozen=True)
class PrintedNumber:
    """One number a post printed, and how to read our value of it from a trace."""

    label: str
    printed: float
    locate: Callable  # Trace -> float


def _variable(step, name, index=0):
    return lambda trace: float(np.ravel(trace.step(step)["variables"][name])[index])


def _inference(step, layer, side, index):
    return lambda trace: float(np.ravel(trace.step(step)["inference"][layer][side])[index])


def _layer_state(step, layer, name):
    return lambda trace: float(np.ravel(trace.step(step)["bn"][layer][name])[0])


def _after(step, name, index):
    return lambda trace: float(np.ravel(trace.step(step)["after"][name])[index])


def _batch_input(step, index):
    return lambda trace: float(np.ravel(trace.step(step)["batch"]["inputs"])[index])


_BN = "batch_normalization"
POST_000 = [
    PrintedNumber("batch_xs[0] (10th batch)", 0.6108869734438016, _batch_input(10, 0)),
    PrintedNumber("batch_xs[1]", 0.9130110532378982, _batch_input(10, 1)),
    PrintedNumber("batch_xs[2]", 0.9666063677707588, _batch_input(10, 2)),
    PrintedNumber("Variable:0 (w)", 0.9991983, _variable(9, "Variable:0")),
    PrintedNumber("Variable_1:0 (b)", 1.0, _variable(9, "Variable_1:0")),
    PrintedNumber("batch_normalization/gamma:0", 0.9833956, _variable(9, f"{_BN}/gamma:0")),
    PrintedNumber("batch_normalization/beta:0", 0.12067804, _variable(9, f"{_BN}/beta:0")),
    PrintedNumber("batch_normalization/moving_mean:0", 0.9730693,
                  _variable(9, f"{_BN}/moving_mean:0")),
    PrintedNumber("batch_normalization/moving_variance:0", 0.41279468,
                  _variable(9, f"{_BN}/moving_variance:0")),
    PrintedNumber("Variable_2:0 (w2)", 1.2562904, _variable(9, "Variable_2:0")),
    PrintedNumber("Variable_3:0 (b2)", 1.5393883, _variable(9, "Variable_3:0")),
    PrintedNumber("hidden_tmp[0]", 1.6103973, _inference(10, _BN, "input", 0)),
    PrintedNumber("hidden_tmp[1]", 1.9122791, _inference(10, _BN, "input", 1)),
    PrintedNumber("hidden_tmp[2]", 1.9658315, _inference(10, _BN, "input", 2)),
    PrintedNumber("bn1[0]", 1.0949917, _inference(10, _BN, "output", 0)),
    PrintedNumber("bn1[1]", 1.5564928, _inference(10, _BN, "output", 1)),
    PrintedNumber("bn1[2]", 1.638361, _inference(10, _BN, "output", 2)),
]

_HIDDEN_BN = "hidden1/batch_normalization"
POST_001 = [
    PrintedNumber("weight of hidden layer (after the step)", 1.404974,
                  _variable(1, "hidden1/dense/kernel:0")),
    PrintedNumber("hidden_1[1]", 1.404974, _after(1, "hidden_1", 1)),
    PrintedNumber("moving mean", 0.3514931, _layer_state(1, _HIDDEN_BN, "moving_mean")),
    PrintedNumber("moving variance", 0.74709475, _layer_state(1, _HIDDEN_BN, "moving_variance")),
    PrintedNumber("gamma", 0.999, _layer_state(1, _HIDDEN_BN, "gamma")),
    PrintedNumber("beta", -0.001, _layer_state(1, _HIDDEN_BN, "beta")),
    PrintedNumber("bn_1[0]", -0.40697935, _after(1, "bn_1", 0)),
    PrintedNumber("bn_1[1]", 1.215785, _after(1, "bn_1", 1)),
    PrintedNumber("bn_1x[1]", 1.215785, _after(1, "bn_1x", 1)),
]

# post -> (scenario, its printed numbers)
POSTS = {
    "000 (x^3+1 regression)": ("cubic", POST_000),
    "001 (two-sample Adam step)": ("two-sample", POST_001),
}


def compare_printed(trace, printed_numbers):
    """Rows ``(label, printed, ours, difference, verdict)`` for every printed number; a number
    matches within :func:`bnrepro.check.tolerances.printed_match_bound` of what the post printed."""
    rows = []
    for number in printed_numbers:
        try:
            ours = number.locate(trace)
        except (KeyError, IndexError, TypeError, AttributeError):
            raise UserError(f"{trace.path} lacks the value of {number.label!r} "
                            "(was it run with the post's settings?)") from None
        difference = ours - number.printed
        verdict = "match" if tolerances.matches_printed(ours, number.printed) else "DIFFERS"
        rows.append((number.label, number.printed, ours, difference, verdict))
    return rows
