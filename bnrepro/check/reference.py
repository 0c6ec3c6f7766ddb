"""Both posts' training steps re-done in NumPy (float64), forward and backward by hand.

Nothing here imports TensorFlow: a trace written by ``bnrepro run`` is replayed step by step from its
step-0 variables and each step's recorded batch, and every variable the reference predicts is compared
with the one TensorFlow stored after that step.

Shapes: ``N`` examples, ``C`` channels (units); batch statistics reduce over the batch axis,
``(N, C) -> (C,)``. Kernels are ``(C_in, C_out)``, biases and batch-norm parameters ``(C,)``.

Batch norm in training mode (shared by both scenarios, :func:`batch_norm_forward`)::

    mean     = sum(x) / N                              # (N, C) -> (C,)
    variance = sum((x - mean)^2) / N                   # biased, (N, C) -> (C,)
    x_hat    = (x - mean) / sqrt(variance + epsilon)
    y        = gamma * x_hat + beta
    moving_mean     <- momentum * moving_mean     + (1 - momentum) * mean
    moving_variance <- momentum * moving_variance + (1 - momentum) * variance

Post 000 (``cubic``, :func:`cubic_step`): ``hidden_tmp = x·w + b``, ``bn1 = BN(hidden_tmp)``,
``hidden = sigmoid(bn1)``, ``f = sigmoid(hidden·w2 + b2)``, ``loss = mean(|f_ - f|)``, then plain
gradient descent ``variable <- variable - learning_rate * gradient``.

Post 001 (``two-sample``, :func:`two_sample_step`): ``hidden_1 = x·k1``, ``bn_1 = BN(hidden_1)``,
``bn_1x = relu(bn_1)``, ``predx = bn_1x·k2``, ``pred = BN(predx)``, ``loss = mean((pred - y)^2)``,
then one step of ``tf.compat.v1.train.AdamOptimizer`` (:func:`adam_update`).

Why the gradient of the pre-batch-norm bias ``b`` (``Variable_1:0``) is zero: batch norm subtracts
the batch mean, so adding a constant ``c`` to every ``hidden_tmp`` shifts ``mean`` by ``c`` too and
leaves ``x - mean``, ``variance`` and therefore ``y`` unchanged. The loss does not depend on ``b``;
in the backward pass this shows as ``sum(dx) = 0`` over the batch (see :func:`batch_norm_backward`),
and ``dL/db = sum(dx)``. TensorFlow's trace keeps ``b`` at its initial value for the same reason.

How close it gets: TensorFlow computes in float32, the reference in float64 from the same float32
starting values, so every variable agrees to float32 rounding (about 1e-7 relative) except Adam's
slots of gradients that pass back through post 001's two-example batch norm: with N = 2 its output
hardly depends on its input (``x_hat = +-sqrt(variance / (variance + epsilon))``), so the gradient
is a difference of nearly equal float32 terms and TensorFlow's value carries a relative error of a
few 1e-5 (twice that in ``v``, which holds the gradient squared).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from bnrepro.check import formulas, tolerances
from bnrepro.errors import UserError

# --- variable names (TensorFlow's, as the traces store them) --------------------------------------

CUBIC_LAYER = "batch_normalization"
CUBIC_W = "Variable:0"
CUBIC_B = "Variable_1:0"
CUBIC_W2 = "Variable_2:0"
CUBIC_B2 = "Variable_3:0"

HIDDEN_LAYER = "hidden1/batch_normalization"
OUTPUT_LAYER = "output/batch_normalization"
HIDDEN_KERNEL = "hidden1/dense/kernel:0"
OUTPUT_KERNEL = "output/dense/kernel:0"

BETA1_POWER = "beta1_power:0"
BETA2_POWER = "beta2_power:0"

# tf.compat.v1.train.AdamOptimizer's defaults.
ADAM_BETA1 = 0.9
ADAM_BETA2 = 0.999
ADAM_EPSILON = 1e-8


def layer_variable(layer, role):
    """The TensorFlow name of a batch-norm layer's variable, e.g. ``batch_normalization/gamma:0``."""
    return f"{layer}/{role}:0"


def adam_slot_names(variable):
    """TensorFlow's names of Adam's two slots for ``variable``: ``(m, v)``.

    ``hidden1/dense/kernel:0`` -> ``hidden1/dense/kernel/Adam:0`` (m, first moment) and
    ``hidden1/dense/kernel/Adam_1:0`` (v, second moment).
    """
    stem = variable[:-2] if variable.endswith(":0") else variable
    return f"{stem}/Adam:0", f"{stem}/Adam_1:0"


class StepResult(NamedTuple):
    """One reference training step: every variable after it, the loss before it (what the training
    run fetches), and the gradient of that loss for every trainable variable (TensorFlow names)."""

    variables: dict
    loss: float
    gradients: dict


# --- shared pieces --------------------------------------------------------------------------------


def _f64(value):
    return np.asarray(value, dtype=np.float64)


def _require(variables, names):
    missing = [name for name in names if name not in variables]
    if missing:
        raise UserError(f"reference step needs the variables {', '.join(missing)}")


@dataclass(frozen=True)
class BatchNormCache:
    """What the batch-norm backward pass needs from the forward pass (all float64)."""

    centered: np.ndarray  # x - mean, (N, C)
    inverse_std: np.ndarray  # 1 / sqrt(variance + epsilon), (C,)
    x_hat: np.ndarray  # (N, C)
    gamma: np.ndarray  # (C,)
    mean: np.ndarray  # batch mean, (C,)
    variance: np.ndarray  # biased batch variance, (C,)


def batch_norm_forward(x, gamma, beta, epsilon):
    """Batch norm in training mode; returns ``(y, cache)``::

        mean     = sum(x) / N
        variance = sum((x - mean)^2) / N          (biased: what TF normalises with and averages)
        x_hat    = (x - mean) / sqrt(variance + epsilon)
        y        = gamma * x_hat + beta
    """
    x = _f64(x)
    count = x.shape[0]
    mean = np.sum(x, axis=0) / count  # (N, C) -> (C,)
    centered = x - mean
    variance = np.sum(centered * centered, axis=0) / count  # (N, C) -> (C,)
    inverse_std = 1.0 / np.sqrt(variance + epsilon)
    x_hat = centered * inverse_std
    y = _f64(gamma) * x_hat + _f64(beta)
    return y, BatchNormCache(centered, inverse_std, x_hat, _f64(gamma), mean, variance)


def batch_norm_backward(dy, cache):
    """Backward pass of :func:`batch_norm_forward`; returns ``(dx, dgamma, dbeta)``::

        dbeta  = sum(dy)
        dgamma = sum(dy * x_hat)
        dx_hat = dy * gamma
        dvar   = sum(dx_hat * (x - mean)) * (-1/2) * (variance + epsilon)^(-3/2)
        dmean  = -sum(dx_hat) / sqrt(variance + epsilon) + dvar * (-2/N) * sum(x - mean)
        dx     = dx_hat / sqrt(variance + epsilon) + dvar * 2 (x - mean) / N + dmean / N

    (sums over the batch, ``(N, C) -> (C,)``). Summing ``dx`` over the batch, the first and third
    terms cancel and so do the second and the last part of ``dmean``: ``sum(dx) = 0``, because
    ``y`` does not change when the same constant is added to every ``x``.
    """
    dy = _f64(dy)
    count = dy.shape[0]
    dbeta = np.sum(dy, axis=0)  # (N, C) -> (C,)
    dgamma = np.sum(dy * cache.x_hat, axis=0)  # (N, C) -> (C,)
    dx_hat = dy * cache.gamma
    dvar = np.sum(dx_hat * cache.centered, axis=0) * -0.5 * cache.inverse_std**3  # (N, C) -> (C,)
    dmean = (-np.sum(dx_hat, axis=0) * cache.inverse_std  # (N, C) -> (C,)
             + dvar * (-2.0 / count) * np.sum(cache.centered, axis=0))  # (N, C) -> (C,)
    dx = dx_hat * cache.inverse_std + dvar * 2.0 * cache.centered / count + dmean / count
    return dx, dgamma, dbeta


def moving_averages(moving_mean, moving_variance, cache, momentum):
    """``moving_mean <- momentum * moving_mean + (1 - momentum) * mean`` and the same for
    ``moving_variance`` with the biased batch variance; returns the two new values."""
    return (formulas.moving_average(moving_mean, cache.mean, momentum),
            formulas.moving_average(moving_variance, cache.variance, momentum))


def _batch_norm_layer(variables, layer, x, epsilon):
    """Forward through the layer named ``layer`` with its ``gamma`` and ``beta`` from ``variables``."""
    return batch_norm_forward(x, variables[layer_variable(layer, "gamma")],
                              variables[layer_variable(layer, "beta")], epsilon)


def _batch_norm_layer_updates(variables, layer, cache, momentum):
    """The layer's new moving statistics, by variable name."""
    mean_name = layer_variable(layer, "moving_mean")
    variance_name = layer_variable(layer, "moving_variance")
    new_mean, new_variance = moving_averages(variables[mean_name], variables[variance_name], cache,
                                             momentum)
    return {mean_name: new_mean, variance_name: new_variance}


def _batch_norm_names(layer):
    return [layer_variable(layer, role)
            for role in ("gamma", "beta", "moving_mean", "moving_variance")]


def sigmoid(u):
    """``1 / (1 + exp(-u))``; its derivative is ``sigmoid(u) * (1 - sigmoid(u))``."""
    return 1.0 / (1.0 + np.exp(-u))


def gradient_descent(variables, gradients, learning_rate):
    """``variable <- variable - learning_rate * gradient`` for every variable in ``gradients``."""
    return {name: _f64(variables[name]) - learning_rate * gradient
            for name, gradient in gradients.items()}


def adam_update(variables, gradients, learning_rate, *, beta1=ADAM_BETA1, beta2=ADAM_BETA2,
                epsilon=ADAM_EPSILON):
    """One step of ``tf.compat.v1.train.AdamOptimizer``; returns the updated variables, slots and
    powers by TensorFlow name. ``beta1_power:0`` and ``beta2_power:0`` hold ``beta1^t`` and
    ``beta2^t`` for the step ``t`` about to run (they start at ``beta1`` and ``beta2``)::

        lr_t     = learning_rate * sqrt(1 - beta2_power) / (1 - beta1_power)
        m        = beta1 * m + (1 - beta1) * gradient              (slot <variable>/Adam:0)
        v        = beta2 * v + (1 - beta2) * gradient^2            (slot <variable>/Adam_1:0)
        variable = variable - lr_t * m / (sqrt(v) + epsilon)
        beta1_power = beta1_power * beta1;  beta2_power = beta2_power * beta2
    """
    _require(variables, [BETA1_POWER, BETA2_POWER]
             + [slot for name in gradients for slot in adam_slot_names(name)])
    beta1_power = _f64(variables[BETA1_POWER])
    beta2_power = _f64(variables[BETA2_POWER])
    lr_t = learning_rate * np.sqrt(1.0 - beta2_power) / (1.0 - beta1_power)
    updated = {}
    for name, gradient in gradients.items():
        m_name, v_name = adam_slot_names(name)
        m = beta1 * _f64(variables[m_name]) + (1.0 - beta1) * gradient
        v = beta2 * _f64(variables[v_name]) + (1.0 - beta2) * gradient * gradient
        updated[name] = _f64(variables[name]) - lr_t * m / (np.sqrt(v) + epsilon)
        updated[m_name] = m
        updated[v_name] = v
    updated[BETA1_POWER] = beta1_power * beta1
    updated[BETA2_POWER] = beta2_power * beta2
    return updated


def initial_adam_state(variables, trainable, *, beta1=ADAM_BETA1, beta2=ADAM_BETA2):
    """``variables`` plus Adam's state as TensorFlow initialises it: zero slots for every name in
    ``trainable``, ``beta1_power = beta1`` and ``beta2_power = beta2``."""
    state = {name: _f64(value) for name, value in variables.items()}
    for name in trainable:
        for slot in adam_slot_names(name):
            state[slot] = np.zeros_like(_f64(variables[name]))
    state[BETA1_POWER] = np.float64(beta1)
    state[BETA2_POWER] = np.float64(beta2)
    return state


# --- post 000: cubic ------------------------------------------------------------------------------

CUBIC_TRAINABLE = (CUBIC_W, CUBIC_B, layer_variable(CUBIC_LAYER, "gamma"),
                   layer_variable(CUBIC_LAYER, "beta"), CUBIC_W2, CUBIC_B2)


def cubic_step(variables, inputs, targets, *, momentum, epsilon, learning_rate):
    """Post 000's training step from ``variables`` (TensorFlow name -> value) on one batch.

    Forward::

        hidden_tmp = x·w + b                                   (N, 1)
        bn1        = gamma * (hidden_tmp - mean) / sqrt(variance + epsilon) + beta
        hidden     = sigmoid(bn1)
        f          = sigmoid(hidden·w2 + b2)
        loss       = mean(|f_ - f|)

    Backward (``sign(0) = 0`` as TensorFlow's gradient of ``abs``)::

        df         = -sign(f_ - f) / N
        dz2        = df * f * (1 - f)                          (z2 = hidden·w2 + b2)
        dw2        = hidden^T · dz2;   db2 = sum(dz2)
        dhidden    = dz2 · w2^T
        dbn1       = dhidden * hidden * (1 - hidden)
        dhidden_tmp, dgamma, dbeta = batch_norm_backward(dbn1)
        dw         = x^T · dhidden_tmp;  db = sum(dhidden_tmp) = 0   (see the module docstring)

    Update: gradient descent on w, b, gamma, beta, w2, b2; the moving statistics take the batch's
    mean and biased variance with ``momentum``. Returns a :class:`StepResult`.
    """
    names = [CUBIC_W, CUBIC_B, CUBIC_W2, CUBIC_B2] + _batch_norm_names(CUBIC_LAYER)
    _require(variables, names)
    x = _f64(inputs)
    f_ = _f64(targets)
    w, b = _f64(variables[CUBIC_W]), _f64(variables[CUBIC_B])
    w2, b2 = _f64(variables[CUBIC_W2]), _f64(variables[CUBIC_B2])

    hidden_tmp = x @ w + b
    bn1, cache = _batch_norm_layer(variables, CUBIC_LAYER, hidden_tmp, epsilon)
    hidden = sigmoid(bn1)
    f = sigmoid(hidden @ w2 + b2)
    loss = float(np.mean(np.abs(f_ - f)))

    df = -np.sign(f_ - f) / f.size
    dz2 = df * f * (1.0 - f)
    dw2 = hidden.T @ dz2  # (N, 1)^T (N, 1) -> (1, 1)
    db2 = np.sum(dz2, axis=0)  # (N, 1) -> (1,)
    dhidden = dz2 @ w2.T
    dbn1 = dhidden * hidden * (1.0 - hidden)
    dhidden_tmp, dgamma, dbeta = batch_norm_backward(dbn1, cache)
    dw = x.T @ dhidden_tmp  # (N, 1)^T (N, 1) -> (1, 1)
    db = np.sum(dhidden_tmp, axis=0)  # (N, 1) -> (1,)

    gradients = {CUBIC_W: dw, CUBIC_B: db, layer_variable(CUBIC_LAYER, "gamma"): dgamma,
                 layer_variable(CUBIC_LAYER, "beta"): dbeta, CUBIC_W2: dw2, CUBIC_B2: db2}
    new_variables = {name: _f64(value) for name, value in variables.items()}
    new_variables.update(gradient_descent(variables, gradients, learning_rate))
    new_variables.update(_batch_norm_layer_updates(variables, CUBIC_LAYER, cache, momentum))
    return StepResult(new_variables, loss, gradients)


# --- post 001: two-sample -------------------------------------------------------------------------

TWO_SAMPLE_TRAINABLE = (HIDDEN_KERNEL, layer_variable(HIDDEN_LAYER, "gamma"),
                        layer_variable(HIDDEN_LAYER, "beta"), OUTPUT_KERNEL,
                        layer_variable(OUTPUT_LAYER, "gamma"), layer_variable(OUTPUT_LAYER, "beta"))


def two_sample_step(variables, inputs, targets, *, momentum, epsilon, learning_rate,
                    beta1=ADAM_BETA1, beta2=ADAM_BETA2, adam_epsilon=ADAM_EPSILON):
    """Post 001's training step from ``variables`` (including Adam's slots and powers: see
    :func:`initial_adam_state`) on one batch; both layers use ``momentum`` and ``epsilon``.

    Forward::

        hidden_1 = x·k1                       (no bias)
        bn_1     = BN(hidden_1)               (hidden1/batch_normalization)
        bn_1x    = relu(bn_1)
        predx    = bn_1x·k2                   (no bias)
        pred     = BN(predx)                  (output/batch_normalization)
        loss     = mean((pred - y)^2)

    Backward (relu's gradient at 0 is 0, as TensorFlow's)::

        dpred    = 2 (pred - y) / (N * C)
        dpredx, dgamma_2, dbeta_2 = batch_norm_backward(dpred)
        dk2      = bn_1x^T · dpredx;   dbn_1x = dpredx · k2^T
        dbn_1    = dbn_1x * (bn_1 > 0)
        dhidden_1, dgamma_1, dbeta_1 = batch_norm_backward(dbn_1)
        dk1      = x^T · dhidden_1

    Update: :func:`adam_update` on k1, gamma_1, beta_1, k2, gamma_2, beta_2; both layers' moving
    statistics as in :func:`moving_averages`. Returns a :class:`StepResult`.
    """
    _require(variables, [HIDDEN_KERNEL, OUTPUT_KERNEL] + _batch_norm_names(HIDDEN_LAYER)
             + _batch_norm_names(OUTPUT_LAYER))
    x = _f64(inputs)
    y = _f64(targets)
    k1, k2 = _f64(variables[HIDDEN_KERNEL]), _f64(variables[OUTPUT_KERNEL])

    hidden_1 = x @ k1
    bn_1, hidden_cache = _batch_norm_layer(variables, HIDDEN_LAYER, hidden_1, epsilon)
    bn_1x = np.maximum(bn_1, 0.0)
    predx = bn_1x @ k2
    pred, output_cache = _batch_norm_layer(variables, OUTPUT_LAYER, predx, epsilon)
    loss = float(np.mean((pred - y) ** 2))

    dpred = 2.0 * (pred - y) / pred.size
    dpredx, dgamma_2, dbeta_2 = batch_norm_backward(dpred, output_cache)
    dk2 = bn_1x.T @ dpredx  # (N, C1)^T (N, C2) -> (C1, C2)
    dbn_1x = dpredx @ k2.T
    dbn_1 = dbn_1x * (bn_1 > 0.0)
    dhidden_1, dgamma_1, dbeta_1 = batch_norm_backward(dbn_1, hidden_cache)
    dk1 = x.T @ dhidden_1  # (N, C0)^T (N, C1) -> (C0, C1)

    gradients = {HIDDEN_KERNEL: dk1, layer_variable(HIDDEN_LAYER, "gamma"): dgamma_1,
                 layer_variable(HIDDEN_LAYER, "beta"): dbeta_1, OUTPUT_KERNEL: dk2,
                 layer_variable(OUTPUT_LAYER, "gamma"): dgamma_2,
                 layer_variable(OUTPUT_LAYER, "beta"): dbeta_2}
    new_variables = {name: _f64(value) for name, value in variables.items()}
    new_variables.update(adam_update(variables, gradients, learning_rate, beta1=beta1,
                                     beta2=beta2, epsilon=adam_epsilon))
    for layer, cache in ((HIDDEN_LAYER, hidden_cache), (OUTPUT_LAYER, output_cache)):
        new_variables.update(_batch_norm_layer_updates(variables, layer, cache, momentum))
    return StepResult(new_variables, loss, gradients)


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


def max_errors(predicted, traced):
    """``(max absolute error, max relative error)`` of ``predicted`` against ``traced`` over all
    elements. Relative error is ``|predicted - traced| / |traced|``; where ``traced`` is 0 it is 0 if
    ``predicted`` is 0 too and infinite otherwise."""
    predicted, traced = _f64(predicted), _f64(traced)
    if predicted.shape != traced.shape:
        raise UserError(f"reference shape {predicted.shape} differs from the trace's {traced.shape}")
    difference = np.abs(predicted - traced)
    magnitude = np.abs(traced)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(magnitude > 0, difference / magnitude,
                            np.where(difference > 0, np.inf, 0.0))
    return float(np.max(difference, initial=0.0)), float(np.max(relative, initial=0.0))


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
        return max_errors(self.loss, self.traced_loss)

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
    traced = {name: _f64(value) for name, value in traced_step["variables"].items()}
    missing = sorted(set(traced) - set(result.variables))
    if missing:
        raise UserError(f"step {step}: the reference does not model the trace's variables "
                        f"{', '.join(missing)}")
    predicted = {name: result.variables[name] for name in traced}
    errors = {name: max_errors(predicted[name], traced[name]) for name in traced}
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
    variables = {name: _f64(value) for name, value in steps[0]["variables"].items()}
    comparisons = []
    for previous, record in zip(steps, steps[1:]):
        if not chained:
            variables = {name: _f64(value) for name, value in previous["variables"].items()}
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


def replay_path(path):
    """Read the trace at ``path`` and replay it; returns ``(trace, comparisons)``."""
    from bnrepro.trace import read_trace

    trace = read_trace(path)
    return trace, replay(trace)
