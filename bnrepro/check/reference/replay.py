"""Replaying a trace with the NumPy steps: from its step-0 variables and each step's recorded batch,
every variable the reference predicts is compared with the one TensorFlow stored after that step,
and held to :func:`bnrepro.check.tolerances.reference_tolerance`.

How close it gets: TensorFlow computes in float32, the reference in float64 from the same float32
starting values, so every variable agrees to float32 rounding (about 1e-7 relative) except Adam's
slots of gradients that pass back through post 001's two-example batch norm: with N = 2 its output
hardly depends on its input (``x_hat = +-sqrt(variance / (variance + epsilon))``), so the gradient
is a difference of nearly equal float32 terms and TensorFlow's value carries a relative error of a
few 1e-5 (twice that in ``v``, which holds the gradient squared).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bnrepro.check import tolerances
from bnrepro.check.reference.cubic import CUBIC_LAYER, cubic_step
from bnrepro.check.reference.layers import ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON, as_float64
from bnrepro.check.reference.two_sample import HIDDEN_LAYER, OUTPUT_LAYER, two_sample_step
from bnrepro.errors import UserError

# --- replaying a trace ----------------------------------------------------------------------------


def _layer_hyperparameters(header, expected_layers):
    """``(momentum, epsilon)`` shared by the header's batch-norm layers, which must be exactly
    ``expected_layers``."""
    layers = header["layers"]
    if set(layers) != set(expected_layers):
        raise UserError(f"scenario {header['scenario']!r} has the batch-norm layers "
                        f"{sorted(expected_layers)}, the trace lists {sorted(layers)}")
    values = {(float(entry["momentum"]), float(entry["epsilon"])) for entry in layers.values()}
    if len(values) != 1:
        raise UserError("the reference uses one momentum and epsilon for all layers; the trace's "
                        f"layers differ: {layers}")
    return values.pop()


def _cubic_from_header(header, variables, inputs, targets):
    momentum, epsilon = _layer_hyperparameters(header, [CUBIC_LAYER])
    return cubic_step(variables, inputs, targets, momentum=momentum, epsilon=as_fed(epsilon),
                      learning_rate=as_fed(header["config"]["learning_rate"]))


def _two_sample_from_header(header, variables, inputs, targets):
    momentum, epsilon = _layer_hyperparameters(header, [HIDDEN_LAYER, OUTPUT_LAYER])
    return two_sample_step(variables, inputs, targets, momentum=momentum, epsilon=as_fed(epsilon),
                           learning_rate=as_fed(header["config"]["learning_rate"]),
                           beta1=as_fed(ADAM_BETA1), beta2=as_fed(ADAM_BETA2),
                           adam_epsilon=as_fed(ADAM_EPSILON))


# header["scenario"] -> fn(header, variables, inputs, targets) -> StepResult
REFERENCE_STEPS = {"cubic": _cubic_from_header, "two-sample": _two_sample_from_header}


def reference_step(header, variables, inputs, targets):
    """The reference step for the scenario and hyper-parameters a trace header names."""
    scenario = header.get("scenario")
    if scenario not in REFERENCE_STEPS:
        raise UserError(f"no NumPy reference for scenario {scenario!r}; "
                        f"it knows {', '.join(REFERENCE_STEPS)}")
    return REFERENCE_STEPS[scenario](header, variables, inputs, targets)


def as_fed(value):
    """``value`` as TensorFlow holds it: rounded to float32, returned in float64 (an array, or a
    Python float for a scalar).

    Replay applies it to the batch (fed through float32 placeholders), the learning rate (a float32
    tensor; post 001 feeds it through the placeholder ``lx``), epsilon, and Adam's ``beta1``,
    ``beta2`` and ``epsilon``, which the optimizer casts to float32: ``1 - float32(0.999)`` is
    ``0.00099998713``, not ``0.001``, which would otherwise show as a 1.3e-5 relative error in every
    ``Adam_1`` slot. Momentum is left alone: the layer computes ``1 - momentum`` in Python before
    casting, so float64 ``1 - momentum`` is the closer value.
    """
    rounded = np.asarray(value, dtype=np.float32).astype(np.float64)
    return float(rounded) if rounded.ndim == 0 else rounded


@dataclass
class StepComparison:
    """The reference's step ``step`` against the trace's: predicted and traced variables (every one
    the trace stores), per-variable max errors, the loss both ways, and the reference gradients."""

    step: int
    variables: dict
    traced_variables: dict
    loss: float
    traced_loss: float
    gradients: dict
    errors: dict = field(default_factory=dict)  # name -> (max abs error, max rel error)

    @property
    def max_abs_error(self):
        return max(error[0] for error in self.errors.values())

    @property
    def max_rel_error(self):
        return max(error[1] for error in self.errors.values())

    @property
    def worst_variable(self):
        """The variable with the largest relative error."""
        return max(self.errors, key=lambda name: self.errors[name][1])

    @property
    def loss_errors(self):
        """``(abs, rel)`` error of the reference loss against the trace's."""
        return tolerances.max_errors(self.loss, self.traced_loss)

    def disagreements(self):
        """``[(name, max-norm relative error, tolerance)]`` for the loss and every variable beyond
        its tolerance (:func:`bnrepro.check.tolerances.reference_tolerance`)."""
        found = []
        loss_error = tolerances.norm_relative_error(self.loss, self.traced_loss)
        if not loss_error <= tolerances.REFERENCE_TOLERANCE:
            found.append(("loss", loss_error, tolerances.REFERENCE_TOLERANCE))
        for name, traced in self.traced_variables.items():
            error = tolerances.norm_relative_error(self.variables[name], traced)
            allowed = tolerances.reference_tolerance(name)
            if not error <= allowed:
                found.append((name, error, allowed))
        return found


def agrees(comparisons):
    """Whether the reference agrees with TensorFlow at every step (no disagreements)."""
    return bool(comparisons) and not any(c.disagreements() for c in comparisons)


def _compare(step, result, traced_step):
    traced = {name: as_float64(value) for name, value in traced_step["variables"].items()}
    missing = sorted(set(traced) - set(result.variables))
    if missing:
        raise UserError(f"step {step}: the reference does not model the trace's variables "
                        f"{', '.join(missing)}")
    predicted = {name: result.variables[name] for name in traced}
    errors = {name: tolerances.max_errors(predicted[name], traced[name]) for name in traced}
    return StepComparison(step=step, variables=predicted, traced_variables=traced,
                          loss=result.loss, traced_loss=float(traced_step["loss"]),
                          gradients=result.gradients, errors=errors)


def replay(trace, *, chained=True):
    """Re-run every traced step with the NumPy reference; returns one :class:`StepComparison` per
    step ``k >= 1``.

    ``chained=True`` starts from step 0's variables and feeds each step the reference's own result
    (errors accumulate as in a free run); ``chained=False`` starts every step from the trace's
    variables after step ``k - 1`` (the error of one step alone). Each step's batch is the recorded
    one, rounded to float32 as the placeholder rounds it. The trace must hold every step
    (``record_every=1``).
    """
    scenario = trace.header.get("scenario")
    if scenario not in REFERENCE_STEPS:
        raise UserError(f"{trace.path}: no NumPy reference for scenario {scenario!r}; there is one "
                        f"for the traces of {', '.join(f'bnrepro run {n}' for n in REFERENCE_STEPS)}")
    steps = sorted(trace.steps, key=lambda record: record["step"])
    numbers = [record["step"] for record in steps]
    if numbers != list(range(len(steps))):
        raise UserError(f"{trace.path}: replay needs every step from 0 recorded, found steps "
                        f"{numbers[:10]}{'...' if len(numbers) > 10 else ''}")
    variables = {name: as_float64(value) for name, value in steps[0]["variables"].items()}
    comparisons = []
    for previous, record in zip(steps, steps[1:]):
        if not chained:
            variables = {name: as_float64(value) for name, value in previous["variables"].items()}
        batch = record["batch"]
        result = reference_step(trace.header, variables, as_fed(batch["inputs"]),
                                as_fed(batch["targets"]))
        comparisons.append(_compare(record["step"], result, record))
        variables = result.variables
    return comparisons


def error_summary(comparisons):
    """Per step: the max absolute and relative error over every variable, the variable with the
    largest relative error, the loss both ways, and the reference gradients (name -> float64
    array). With the cubic trace this shows ``Variable_1:0``'s gradient at zero (up to float64
    rounding) on every step."""
    return [{"step": comparison.step,
             "max_abs_error": comparison.max_abs_error,
             "max_rel_error": comparison.max_rel_error,
             "worst_variable": comparison.worst_variable,
             "loss": comparison.loss,
             "traced_loss": comparison.traced_loss,
             "gradients": comparison.gradients}
            for comparison in comparisons]


def format_replay(comparisons):
    """The replay as a table a reader can scan: per step the loss both ways and the largest error
    over every variable, then each gradient that is zero at every step (e.g. post 000's bias before
    batch norm)."""
    lines = [f"{'step':>4} {'TF loss':>12} {'NumPy loss':>12} {'max abs err':>12} "
             f"{'max rel err':>12}  worst variable"]
    for comparison in comparisons:
        lines.append(f"{comparison.step:>4} {comparison.traced_loss:>12.8g} {comparison.loss:>12.8g} "
                     f"{comparison.max_abs_error:>12.3g} {comparison.max_rel_error:>12.3g}  "
                     f"{comparison.worst_variable}")
    if comparisons:
        largest = max(abs(float(np.max(np.abs(c.gradients[name])))) for c in comparisons
                      for name in c.gradients)
        for name in comparisons[0].gradients:
            biggest = max(float(np.max(np.abs(c.gradients[name]))) for c in comparisons)
            if biggest <= 1e-12 * max(largest, 1.0):
                lines.append(f"gradient of {name} is zero at every step (largest |dL/d{name}| "
                             f"{biggest:.2g}): it never moves")
        worst = max(comparisons, key=lambda c: c.max_rel_error)
        lines.append(f"largest error over all {len(comparisons)} steps: {worst.max_rel_error:.3g} "
                     f"relative, {max(c.max_abs_error for c in comparisons):.3g} absolute "
                     f"({worst.worst_variable}, step {worst.step})")
    lines.append(format_agreement(comparisons))
    return "\n".join(lines)


def format_agreement(comparisons):
    """The verdict line: ``reference: AGREES ...`` or ``reference: DISAGREES ...`` with the first
    variable beyond its tolerance."""
    rule = (f"max |NumPy - TF| <= {tolerances.REFERENCE_TOLERANCE:g} * max |TF| per variable, "
            f"{tolerances.ADAM_SLOT_TOLERANCE:g} for Adam's slots")
    for comparison in comparisons:
        for name, error, allowed in comparison.disagreements():
            return (f"reference: DISAGREES at step {comparison.step}: {name} off by {error:.3g} "
                    f"of its largest value (allowed {allowed:g}; {rule})")
    if not comparisons:
        return "reference: DISAGREES: no step to compare"
    return f"reference: AGREES at every step ({rule})"
