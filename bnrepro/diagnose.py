"""The diagnosis ``bnrepro verify`` prints: which known convention a trace follows, when not the standard one.

The standard convention is ``tf.compat.v1.layers.batch_normalization`` without the fused kernel: for
every step ``k`` with the state of step ``k - 1`` as "old", ``momentum`` and ``epsilon`` from the
trace's header, and the batch statistics of the layer's input ``x`` (``batch_input``)::

    moving_mean_k     = momentum * moving_mean_old     + (1 - momentum) * mean(x)
    moving_variance_k = momentum * moving_variance_old + (1 - momentum) * var(x)      (biased, /N)
    output            = gamma * (input - moving_mean_old) / sqrt(moving_variance_old + epsilon) + beta

For each layer and each of ``moving_mean``, ``moving_variance``, the recorded batch statistics and
the inference output, the candidates below are tried in order over every traced step; the first one
that matches every value (within :data:`bnrepro.verify.TOLERANCE`) is what the trace follows. A
finding is reported when that is not the standard one, or when nothing known matches. A layer whose
header entry declares a mode (``virtual_batch_size``, ``renorm``: :class:`bnrepro.layer_modes.LayerMode`)
expects that mode instead: its candidate is tried first and is not reported, and the standard
convention is reported when the trace follows it instead of the declared mode. The moving
statistics are recomputed from ``batch_input`` when the trace has it (the whole chain from the
layer's input), otherwise from the recorded ``batch_mean`` / ``batch_variance``.

Moving-statistic candidates, with ``m = momentum``, ``s`` the batch statistic:

* ``unbiased``: ``m * old + (1 - m) * var_(N-1)(x)`` (the fused kernel, 4-D input);
* ``swapped``: ``(1 - m) * old + m * s`` (momentum read as the weight of the new value);
* ``pytorch``: ``(1 - m) * old + m * var_(N-1)(x)`` (PyTorch's ``BatchNorm``);
* ``no update``: ``old`` (the update ops never ran);
* ``ghost k``: ``m * old + (1 - m) * mean_j var(x_j)`` over ghost batches of ``k`` samples
  (``virtual_batch_size``; strided as tf_keras splits them, or contiguous);
* ``renorm``: ``moving_stddev = m * moving_stddev_old + (1 - m) * sqrt(var(x) + epsilon)``,
  ``moving_variance = moving_stddev^2 - epsilon`` (``moving_stddev_old`` recorded, or
  :func:`bnrepro.layer_modes.moving_stddev_after`).

Nothing here uses TensorFlow.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from bnrepro import formulas, layer_modes
from bnrepro.conventions import KNOWN_EPSILONS
from bnrepro.layer_modes import LayerMode

STANDARD = "standard"


@dataclass(frozen=True)
class Finding:
    """What one layer's quantity follows: ``convention`` (a candidate key) and a sentence for users."""

    layer: str
    quantity: str  # "moving_mean", "moving_variance", "batch statistics", "inference output"
    convention: Optional[str]  # None: no known convention matches
    message: str

    def format(self):
        return f"diagnosis: {self.layer}: {self.message}"


@dataclass(frozen=True)
class Candidate:
    """A known convention: ``expected(step)`` gives the values it predicts (``None``: not applicable)."""

    key: str
    message: str
    expected: Callable


@dataclass
class _Step:
    """What one traced step offers the candidates."""

    old: dict  # the layer's state after the previous step
    new: dict  # ... after this step, with the batch statistics this step's update consumed
    previous: dict  # the previous step's record
    inference: Optional[dict]
    layer: str
    momentum: float
    epsilon: float

    @property
    def inputs(self):
        return self.new.get("batch_input")

    def mean(self):
        return formulas.batch_mean(self.inputs) if self.inputs is not None else self.new.get(
            "batch_mean")

    def variance(self, convention=formulas.BIASED):
        if self.inputs is None:
            return self.new.get("batch_variance") if convention == formulas.BIASED else None
        if convention == formulas.UNBIASED and formulas.values_per_channel(self.inputs) < 2:
            return None
        return formulas.batch_variance(self.inputs, convention)


def _tf(step, value, statistic):
    """``momentum * old + (1 - momentum) * value`` (TF's direction)."""
    return None if value is None else formulas.moving_average(step.old[statistic], value, step.momentum)


def _swapped(step, value, statistic):
    """``(1 - momentum) * old + momentum * value`` (PyTorch's direction)."""
    return None if value is None else formulas.moving_average(step.old[statistic], value,
                                                              1.0 - step.momentum)


MEAN_CANDIDATES = (
    Candidate(STANDARD, "moving_mean follows the standard update",
              lambda s: _tf(s, s.mean(), "moving_mean")),
    Candidate("swapped", "moving_mean follows momentum and 1 - momentum swapped: momentum is the "
                         "weight of the new batch value (PyTorch's convention)",
              lambda s: _swapped(s, s.mean(), "moving_mean")),
    Candidate("no update", "moving_mean never moves: the update op did not run (UPDATE_OPS left "
                           "out of the train op, or training was False)",
              lambda s: s.old["moving_mean"]),
)


GHOST_SIZES = range(2, 65)


def _moments_under(step, mode):
    """``(mean, variance)`` the step's update consumes under ``mode``, or ``None``: from
    ``batch_input``, the batch's moments or the ghost batches' mean moments (``None`` when
    ``virtual_batch_size`` does not divide the batch); without it, as recorded."""
    if not mode.ghost or step.inputs is None:
        return step.mean(), step.variance()
    if np.shape(step.inputs)[0] % mode.virtual_batch_size:
        return None
    return mode.moments(step.inputs)


def _moving_variance_under(step, mode):
    """The moving variance ``mode`` predicts (:meth:`LayerMode.moving_variance`), or ``None``."""
    moments = _moments_under(step, mode)
    if moments is None or moments[1] is None:
        return None
    old_stddev = (layer_modes.moving_stddev_after(step.previous, step.layer, step.epsilon)
                  if mode.renorm else None)
    return mode.moving_variance(step.old["moving_variance"], old_stddev, moments[1], step.momentum,
                                step.epsilon)


def _batch_statistics_under(step, mode):
    moments = _moments_under(step, mode)
    return None if moments is None else _stacked(*moments)


UNDER_MODE = {"moving_variance": _moving_variance_under, "batch statistics": _batch_statistics_under}


def _ghost_candidates(quantity):
    """One candidate per ghost-batch size ``k`` and layout, for the moving variance (``quantity``
    "moving_variance") or the recorded batch statistics ("batch statistics"); each applies when
    ``k`` splits the batch into two or more ghost batches."""
    subject = "moving_variance follows" if quantity == "moving_variance" else \
        "the batch statistics are"
    candidates = []
    for layout in layer_modes.GHOST_LAYOUTS:
        for size in GHOST_SIZES:
            mode = LayerMode(virtual_batch_size=size, ghost_layout=layout)

            def expected(step, mode=mode):
                if step.inputs is None or np.shape(step.inputs)[0] == mode.virtual_batch_size:
                    return None
                return UNDER_MODE[quantity](step, mode)
            candidates.append(Candidate(
                mode.key, f"{subject} the mean of the moments of ghost batches of {size} {layout} "
                          f"samples (virtual_batch_size={size})", expected))
    return tuple(candidates)


def _declared_candidate(mode, quantity):
    """The candidate of the mode the header declares, for a quantity the mode changes, or ``None``."""
    changed = mode.ghost or (mode.renorm and quantity == "moving_variance")
    if quantity not in UNDER_MODE or not changed:
        return None
    return Candidate(mode.key, f"{quantity} follows {mode.describe()}",
                     lambda step: UNDER_MODE[quantity](step, mode))


VARIANCE_CANDIDATES = (
    Candidate(STANDARD, "moving_variance follows the standard update (biased /N variance)",
              lambda s: _tf(s, s.variance(), "moving_variance")),
    Candidate("unbiased", "moving_variance follows the unbiased (N-1) batch variance: fused batch "
                          "norm (4-D input, or fused=True)",
              lambda s: _tf(s, s.variance(formulas.UNBIASED), "moving_variance")),
    Candidate("swapped", "moving_variance follows momentum and 1 - momentum swapped with the biased "
                         "variance",
              lambda s: _swapped(s, s.variance(), "moving_variance")),
    Candidate("pytorch", "moving_variance follows momentum and 1 - momentum swapped with the "
                         "unbiased (N-1) variance: PyTorch's BatchNorm convention",
              lambda s: _swapped(s, s.variance(formulas.UNBIASED), "moving_variance")),
    Candidate("no update", "moving_variance never moves: the update op did not run (UPDATE_OPS "
                           "left out of the train op, or training was False)",
              lambda s: s.old["moving_variance"]),
    Candidate("renorm", "moving_variance follows batch renorm: the layer averages moving_stddev = "
                        "sqrt(var + epsilon) and sets moving_variance = moving_stddev^2 - epsilon",
              lambda s: _moving_variance_under(s, LayerMode(renorm=True))),
) + _ghost_candidates("moving_variance")


def _recorded(step):
    return np.concatenate([np.ravel(step.new["batch_mean"]), np.ravel(step.new["batch_variance"])])


def _stacked(mean, variance):
    if mean is None or variance is None:
        return None
    return np.concatenate([np.ravel(mean), np.ravel(variance)])


BATCH_CANDIDATES = (
    Candidate(STANDARD, "the batch statistics are the batch's biased moments",
              lambda s: _stacked(s.mean(), s.variance())),
    Candidate("unbiased", "batch_variance is the unbiased (N-1) variance (what the fused kernel "
                          "and PyTorch average into the moving variance)",
              lambda s: _stacked(s.mean(), s.variance(formulas.UNBIASED))),
    Candidate("inference mode", "the batch statistics the update consumed are the old moving "
                                "statistics, not the batch's: the layer ran in inference mode in "
                                "the training run (training was never fed True)",
              lambda s: _stacked(s.old["moving_mean"], s.old["moving_variance"])),
) + _ghost_candidates("batch statistics")


def _epsilon_candidate(epsilon, who):
    return Candidate(f"epsilon {epsilon:g}", f"the inference output follows epsilon = {epsilon:g} "
                                             f"({who}), not the header's",
                     lambda s: None if s.inference is None else formulas.normalize(
                         s.inference["input"], s.old["moving_mean"], s.old["moving_variance"],
                         s.old["gamma"], s.old["beta"], epsilon))


INFERENCE_CANDIDATES = (
    Candidate(STANDARD, "the inference output follows the header's epsilon",
              lambda s: None if s.inference is None else formulas.normalize(
                  s.inference["input"], s.old["moving_mean"], s.old["moving_variance"],
                  s.old["gamma"], s.old["beta"], s.epsilon)),
) + tuple(_epsilon_candidate(epsilon, who) for epsilon, who in KNOWN_EPSILONS.items())


def fitted_epsilon(inputs, outputs, moving_mean, moving_variance, gamma, beta):
    """Solve the inference formula for epsilon, element by element, and take the median::

        epsilon = (gamma * (input - moving_mean) / (output - beta))^2 - moving_variance

    Elements whose ``output - beta`` is within 1e-3 of zero carry no information and are skipped;
    returns ``None`` when none is left.
    """
    inputs, outputs = np.asarray(inputs, dtype=np.float64), np.asarray(outputs, dtype=np.float64)
    shifted = outputs - beta
    usable = np.abs(shifted) > 1e-3
    if not usable.any():
        return None
    ratio = gamma * (inputs - moving_mean) / np.where(usable, shifted, 1.0)
    estimates = ratio * ratio - moving_variance
    return float(np.median(estimates[usable]))


QUANTITIES = (
    ("moving_mean", MEAN_CANDIDATES, lambda s: s.new["moving_mean"]),
    ("moving_variance", VARIANCE_CANDIDATES, lambda s: s.new["moving_variance"]),
    ("batch statistics", BATCH_CANDIDATES,
     lambda s: _recorded(s) if s.inputs is not None and "batch_mean" in s.new else None),
    ("inference output", INFERENCE_CANDIDATES,
     lambda s: None if s.inference is None else s.inference["output"]),
)


def _steps(trace, layer):
    settings = trace.layers[layer]
    for record in trace.steps:
        previous = trace.step(record["step"] - 1)
        if previous is None:
            continue
        yield _Step(old=previous["bn"][layer], new=record["bn"][layer], previous=previous,
                    inference=record.get("inference", {}).get(layer), layer=layer,
                    momentum=settings["momentum"], epsilon=settings["epsilon"])


def _best_match(steps, candidates, observed):
    """The candidate that predicts every observed value most closely (smallest largest relative
    error; the earlier one on a tie), ``(None, compared)`` if none predicts them all. Closest, not
    first: values as small as the absolute tolerance (variances of 1e-6) fit several candidates."""
    from bnrepro.verify import Check

    pairs = [(step, observed(step)) for step in steps]
    pairs = [(step, value) for step, value in pairs if value is not None]
    if not pairs:
        return None, 0
    fitting = []  # (largest relative error, candidate) of every candidate that predicts them all
    for candidate in candidates:
        check = Check(candidate.key)
        applicable = True
        for step, value in pairs:
            expected = candidate.expected(step)
            if expected is None:
                applicable = False
                break
            check.compare("", value, expected)
            if not check.passed:
                break
        if applicable and check.passed:
            fitting.append((check.max_rel_error, candidate))
    best = min(fitting, key=lambda item: item[0], default=(None, None))[1]
    return best, len(pairs)


def diagnose_trace(trace):
    """Every finding for every layer of a :class:`bnrepro.trace.Trace`: a list of :class:`Finding`."""
    findings = []
    for layer in trace.layers:
        mode = LayerMode.from_header(trace.layers[layer], layer)
        steps = list(_steps(trace, layer))
        for quantity, candidates, observed in QUANTITIES:
            declared = _declared_candidate(mode, quantity)
            if declared is not None:
                candidates = (declared,) + candidates
            expected_key = STANDARD if declared is None else declared.key
            candidate, compared = _best_match(steps, candidates, observed)
            if not compared or (candidate is not None and candidate.key == expected_key):
                continue
            if candidate is not None:
                message = candidate.message
                if declared is not None and candidate.key == STANDARD:
                    message += f", not {mode.describe()} as the header declares"
                findings.append(Finding(layer, quantity, candidate.key, message))
                continue
            message = f"no known convention explains the {quantity}"
            if quantity == "inference output":
                epsilon = _fit_epsilon(steps)
                if epsilon is not None:
                    message += f" (solving the formula for epsilon gives {epsilon:.4g})"
            findings.append(Finding(layer, quantity, None, message))
    return findings


def _fit_epsilon(steps):
    estimates = [fitted_epsilon(s.inference["input"], s.inference["output"], s.old["moving_mean"],
                                s.old["moving_variance"], s.old["gamma"], s.old["beta"])
                 for s in steps if s.inference is not None]
    estimates = [e for e in estimates if e is not None]
    return float(np.median(estimates)) if estimates else None


def conventions_followed(findings):
    """``{(layer, quantity): convention}`` for the findings, for tables and tests."""
    return {(finding.layer, finding.quantity): finding.convention for finding in findings}
