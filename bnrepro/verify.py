"""``bnrepro verify``: recompute a trace's batch-norm numbers with NumPy and say where they differ.

For every traced step ``k >= 1`` and every batch-norm layer (state of step ``k - 1`` = "old"):

* ``moving_mean update``:      ``moving_mean_k     = momentum * moving_mean_old     + (1 - momentum) * batch_mean_k``
* ``moving_variance update``:  ``moving_variance_k = momentum * moving_variance_old + (1 - momentum) * batch_variance_k``
* ``batch_mean from inputs``:  ``batch_mean_k = mean(batch_input_k)`` over all axes but the channel
* ``batch_variance from inputs``: ``batch_variance_k = var(batch_input_k)``, both the biased (/N) and
  the unbiased (/(N-1)) variance are tried and the one the trace follows is reported
* ``inference formula``:       ``output = gamma_old * (input - moving_mean_old) / sqrt(moving_variance_old + epsilon) + beta_old``

A layer whose header entry declares a mode (:class:`bnrepro.layer_modes.LayerMode`) is checked under
it, and the report says so (``mode of LAYER``):

* ghost batches (``virtual_batch_size = K``): the batch statistics from inputs are the mean of the
  ``G = N / K`` ghost batches' moments, ``batch_mean_k = (1/G) sum_j mean(x_j)``,
  ``batch_variance_k = (1/G) sum_j var(x_j)`` (:func:`bnrepro.layer_modes.ghost_rows`: strided as
  tf_keras groups them, or contiguous); the updates and the inference formula are the standard ones;
* renorm, with ``s_k = sqrt(batch_variance_k + epsilon)`` and the renorm momentum ``m_r``:

  - ``moving_variance update``: ``moving_variance_k = max(moving_stddev_k^2 - epsilon, 0)``, with
    ``moving_stddev_k = momentum * moving_stddev_old + (1 - momentum) * s_k`` and ``moving_stddev_old``
    the recorded variable ``LAYER/moving_stddev:0`` (else from the old moving variance,
    :func:`bnrepro.layer_modes.moving_stddev_after`);
  - ``moving_stddev update``: the recorded ``moving_stddev_k`` against the same formula;
  - ``renorm_mean, renorm_stddev``: ``renorm_mean_k = m_r * renorm_mean_old + (1 - m_r) * batch_mean_k``,
    ``renorm_stddev_k = m_r * renorm_stddev_old + (1 - m_r) * s_k`` (variables ``LAYER/renorm_mean:0``,
    ``LAYER/renorm_stddev:0``);
  - ``renorm r, d (clipped)``: the metrics ``LAYER renorm_r`` / ``LAYER renorm_d`` against
    ``r = clip(s_k / t, rmin, rmax)``, ``d = clip((batch_mean_k - renorm_mean_old) / t, -dmax, dmax)``,
    ``t = max(renorm_stddev_old, sqrt(epsilon))`` with the header's clipping;
  - the moving mean, the batch statistics and the inference formula are the standard ones.

  The renorm rows appear when a layer declares renorm; a row is ``not recorded`` when the trace lacks
  its values.

After the checks, :func:`bnrepro.diagnose.diagnose_trace` tries the known alternative conventions
(unbiased variance, momentum and 1 - momentum swapped, no update, inference mode, ghost batches,
renorm, other epsilons) and the report prints a ``diagnosis:`` line for each quantity that follows
one (docs/pitfalls.md). ``bnrepro verify`` exits 1 when a check fails, the diagnosis printed above
the ``FAIL`` line; a fused trace passes, with its diagnosis line.

Nothing here uses TensorFlow. A value passes when ``|got - expected| <= atol + rtol * |expected|``
(the tolerance below: TensorFlow computes in float32, whose relative rounding is about 6e-8 per
operation; the absolute part covers values near zero where a relative error means nothing).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from bnrepro import formulas
from bnrepro.layer_modes import LayerMode, moving_stddev_after, renorm_variable
from bnrepro.trace import read_trace


@dataclass(frozen=True)
class Tolerance:
    rtol: float = 1e-5
    atol: float = 1e-6

    def describe(self):
        return f"|got - expected| <= {self.atol:g} + {self.rtol:g} * |expected|"


TOLERANCE = Tolerance()


@dataclass
class Check:
    """The comparisons of one kind over the whole trace, and the first that failed."""

    name: str
    tolerance: Tolerance = TOLERANCE
    compared: int = 0
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    first_failure: Optional[str] = None

    @property
    def passed(self):
        return self.first_failure is None

    def compare(self, where, got, expected):
        """Compare arrays element-wise; remember the largest errors and the first failure."""
        got = np.asarray(got, dtype=np.float64)
        expected = np.asarray(expected, dtype=np.float64)
        if got.shape != expected.shape and got.size == expected.size:
            got = got.reshape(expected.shape)  # e.g. a ghost-batch layer's (1, 1, C) against (C,)
        error = np.abs(got - expected)
        self.compared += error.size
        if error.size == 0:
            return
        relative = error / np.maximum(np.abs(expected), self.tolerance.atol)
        self.max_abs_error = max(self.max_abs_error, float(np.nanmax(error, initial=0.0)))
        self.max_rel_error = max(self.max_rel_error, float(np.nanmax(relative, initial=0.0)))
        failing = ~(error <= self.tolerance.atol + self.tolerance.rtol * np.abs(expected))
        if failing.any() and self.first_failure is None:
            index = np.unravel_index(int(np.argmax(failing)), failing.shape)
            self.first_failure = (f"{where}, element {tuple(int(i) for i in index)}: "
                                  f"expected {float(expected[index])!r}, got {float(got[index])!r}")

    def fail(self, where, reason):
        """Count one comparison that could not be made, and why, as a failure."""
        self.compared += 1
        if self.first_failure is None:
            self.first_failure = f"{where}: {reason}"


@dataclass
class Report:
    """Every check of one trace, and which variance each layer's batch_variance follows."""

    path: str
    checks: list
    variance_used: dict = field(default_factory=dict)  # layer -> formulas.BIASED / UNBIASED / None
    modes: dict = field(default_factory=dict)  # layer -> LayerMode.describe(), declared modes only
    skipped: list = field(default_factory=list)
    diagnosis: list = field(default_factory=list)  # bnrepro.diagnose.Finding: other conventions

    @property
    def passed(self):
        return all(check.passed for check in self.checks) and any(c.compared for c in self.checks)

    def format(self):
        """The table a user reads, then the variance convention, then the verdict."""
        lines = [f"verify {self.path}",
                 f"{'check':<34} {'values':>7} {'max abs err':>12} {'max rel err':>12}  result"]
        for check in self.checks:
            result = "ok" if check.passed else "FAIL"
            if not check.compared:
                result = "not recorded"
            lines.append(f"{check.name:<34} {check.compared:>7} {check.max_abs_error:>12.3g} "
                         f"{check.max_rel_error:>12.3g}  {result}")
        for layer, mode in self.modes.items():
            lines.append(f"mode of {layer} (from the header): {mode}")
        for layer, convention in self.variance_used.items():
            label = formulas.VARIANCE_LABELS.get(convention, "neither biased nor unbiased")
            lines.append(f"batch_variance of {layer}: {label}")
        lines.extend(self.skipped)
        lines.extend(finding.format() for finding in self.diagnosis)
        failures = [check for check in self.checks if not check.passed]
        if failures:
            lines.append(f"FAIL: {failures[0].name}: {failures[0].first_failure}")
        elif not self.passed:
            lines.append("FAIL: nothing to compare (the trace has no consecutive steps)")
        else:
            lines.append(f"PASS: every value within {TOLERANCE.describe()}")
        return "\n".join(lines)


CHECK_NAMES = ("moving_mean update", "moving_variance update", "batch_mean from inputs",
               "batch_variance from inputs", "inference formula")
RENORM_CHECK_NAMES = ("moving_stddev update", "renorm_mean, renorm_stddev", "renorm r, d (clipped)")


def verify_trace(trace):
    """Run every check over a :class:`bnrepro.trace.Trace`; return a :class:`Report`."""
    modes = {layer: LayerMode.from_header(settings, layer) for layer, settings in trace.layers.items()}
    names = CHECK_NAMES + (RENORM_CHECK_NAMES if any(m.renorm for m in modes.values()) else ())
    checks = {name: Check(name) for name in names}
    report = Report(path=trace.path, checks=list(checks.values()),
                    modes={layer: m.describe() for layer, m in modes.items() if not m.standard})
    for layer, mode in modes.items():
        _verify_layer(trace, layer, mode, checks, report)
    from bnrepro.diagnose import diagnose_trace  # it uses this module's Check

    report.diagnosis = diagnose_trace(trace)
    return report


def _verify_layer(trace, layer, mode, checks, report):
    """One layer's comparisons, under its declared ``mode``, into ``checks``."""
    momentum, epsilon = trace.layers[layer]["momentum"], trace.layers[layer]["epsilon"]
    variance_checks = {convention: Check("batch_variance from inputs")
                       for convention in formulas.VARIANCE_CONVENTIONS}
    for record in trace.steps:
        previous = trace.step(record["step"] - 1)
        state = record["bn"][layer]
        where = f"step {record['step']}, layer {layer}"
        if previous is not None and "batch_mean" in state:
            old = previous["bn"][layer]
            old_stddev = moving_stddev_after(previous, layer, epsilon) if mode.renorm else None
            checks["moving_mean update"].compare(
                where, state["moving_mean"],
                formulas.moving_average(old["moving_mean"], state["batch_mean"], momentum))
            checks["moving_variance update"].compare(
                where, state["moving_variance"],
                mode.moving_variance(old["moving_variance"], old_stddev, state["batch_variance"],
                                     momentum, epsilon))
            if mode.renorm:
                _verify_renorm(checks, where, mode, record, previous, layer, momentum, epsilon,
                               old_stddev)
        if "batch_input" in state:
            try:
                moments = {convention: mode.moments(state["batch_input"], convention)
                           for convention in formulas.VARIANCE_CONVENTIONS}
            except ValueError as error:  # the declared ghost batches do not split the batch
                checks["batch_mean from inputs"].fail(where, str(error))
                moments = {}
            if moments:
                checks["batch_mean from inputs"].compare(where, state["batch_mean"],
                                                         moments[formulas.BIASED][0])
            for convention, pair in moments.items():
                if pair is not None:  # None: N - 1 = 0, the unbiased variance does not exist
                    variance_checks[convention].compare(where, state["batch_variance"], pair[1])
        if previous is not None and layer in record.get("inference", {}):
            old = previous["bn"][layer]
            pair = record["inference"][layer]
            checks["inference formula"].compare(
                where, pair["output"],
                formulas.normalize(pair["input"], old["moving_mean"], old["moving_variance"],
                                   old["gamma"], old["beta"], epsilon))
    if variance_checks[formulas.BIASED].compared:
        followed = _variance_followed(variance_checks)
        report.variance_used[layer] = followed
        _merge(checks["batch_variance from inputs"], variance_checks[followed or formulas.BIASED])


def _verify_renorm(checks, where, mode, record, previous, layer, momentum, epsilon, old_stddev):
    """Renorm's own variables and corrections, with ``s = sqrt(batch_variance + epsilon)``::

        moving_stddev = momentum * moving_stddev_old + (1 - momentum) * s
        renorm_mean   = m_r * renorm_mean_old   + (1 - m_r) * batch_mean
        renorm_stddev = m_r * renorm_stddev_old + (1 - m_r) * s
        r, d          = LayerMode.corrections(batch_mean, batch_variance, renorm_mean_old,
                                              renorm_stddev_old, epsilon)   (clipped)

    each compared when the trace records it (``variables`` and ``metrics``).
    """
    state = record["bn"][layer]
    stddev = np.sqrt(np.asarray(state["batch_variance"]) + epsilon)
    recorded = renorm_variable(record, layer, "moving_stddev")
    if recorded is not None:
        checks["moving_stddev update"].compare(
            where, recorded, formulas.moving_average(old_stddev, stddev, momentum))
    old_mean = renorm_variable(previous, layer, "renorm_mean")
    old_renorm_stddev = renorm_variable(previous, layer, "renorm_stddev")
    if old_mean is None or old_renorm_stddev is None:
        return
    for name, old, value in (("renorm_mean", old_mean, state["batch_mean"]),
                             ("renorm_stddev", old_renorm_stddev, stddev)):
        new = renorm_variable(record, layer, name)
        if new is not None:
            checks["renorm_mean, renorm_stddev"].compare(
                f"{where}, {name}", new, formulas.moving_average(old, value, mode.renorm_momentum))
    corrections = mode.corrections(state["batch_mean"], state["batch_variance"], old_mean,
                                   old_renorm_stddev, epsilon)
    for name, expected in zip(("renorm_r", "renorm_d"), corrections):
        got = record.get("metrics", {}).get(f"{layer} {name}")
        if got is not None:
            checks["renorm r, d (clipped)"].compare(f"{where}, {name}", got, expected)


def _variance_followed(variance_checks):
    """Of the conventions whose comparisons all passed, the closest (smallest largest relative
    error; biased first on a tie), or ``None``. Closest, not first passing: variances as small as
    the absolute tolerance (1e-6) pass under both, though only one of them is what was computed."""
    passed = [convention for convention in formulas.VARIANCE_CONVENTIONS
              if variance_checks[convention].passed]
    return min(passed, key=lambda convention: variance_checks[convention].max_rel_error,
               default=None)


def _merge(total, part):
    """Add one layer's comparisons into the trace-wide check."""
    total.compared += part.compared
    total.max_abs_error = max(total.max_abs_error, part.max_abs_error)
    total.max_rel_error = max(total.max_rel_error, part.max_rel_error)
    if total.first_failure is None:
        total.first_failure = part.first_failure


def verify_path(path):
    """Read the trace at ``path`` (file or output directory) and verify it."""
    return verify_trace(read_trace(path))
