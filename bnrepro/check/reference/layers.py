"""The pieces both posts' NumPy steps are made of (float64, forward and backward by hand): batch
norm in training mode, its moving averages, sigmoid, gradient descent and Adam, and the names of
the variables as TensorFlow stores them in a trace.

Shapes: ``N`` examples, ``C`` channels (units); batch statistics reduce over the batch axis,
``(N, C) -> (C,)``. Kernels are ``(C_in, C_out)``, biases and batch-norm parameters ``(C,)``.

Batch norm in training mode (:func:`batch_norm_forward`)::

    mean     = sum(x) / N                              # (N, C) -> (C,)
    variance = sum((x - mean)^2) / N                   # biased, (N, C) -> (C,)
    x_hat    = (x - mean) / sqrt(variance + epsilon)
    y        = gamma * x_hat + beta
    moving_mean     <- momentum * moving_mean     + (1 - momentum) * mean
    moving_variance <- momentum * moving_variance + (1 - momentum) * variance
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from bnrepro.check import formulas
from bnrepro.errors import UserError

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


def as_float64(value):
    return np.asarray(value, dtype=np.float64)


def require(variables, names):
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
    x = as_float64(x)
    count = x.shape[0]
    mean = np.sum(x, axis=0) / count  # (N, C) -> (C,)
    centered = x - mean
    variance = np.sum(centered * centered, axis=0) / count  # (N, C) -> (C,)
    inverse_std = 1.0 / np.sqrt(variance + epsilon)
    x_hat = centered * inverse_std
    y = as_float64(gamma) * x_hat + as_float64(beta)
    return y, BatchNormCache(centered, inverse_std, x_hat, as_float64(gamma), mean, variance)


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
    dy = as_float64(dy)
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


def batch_norm_layer(variables, layer, x, epsilon):
    """Forward through the layer named ``layer`` with its ``gamma`` and ``beta`` from ``variables``."""
    return batch_norm_forward(x, variables[layer_variable(layer, "gamma")],
                              variables[layer_variable(layer, "beta")], epsilon)


def batch_norm_layer_updates(variables, layer, cache, momentum):
    """The layer's new moving statistics, by variable name."""
    mean_name = layer_variable(layer, "moving_mean")
    variance_name = layer_variable(layer, "moving_variance")
    new_mean, new_variance = moving_averages(variables[mean_name], variables[variance_name], cache,
                                             momentum)
    return {mean_name: new_mean, variance_name: new_variance}


def batch_norm_names(layer):
    return [layer_variable(layer, role)
            for role in ("gamma", "beta", "moving_mean", "moving_variance")]


def sigmoid(u):
    """``1 / (1 + exp(-u))``; its derivative is ``sigmoid(u) * (1 - sigmoid(u))``."""
    return 1.0 / (1.0 + np.exp(-u))


def gradient_descent(variables, gradients, learning_rate):
    """``variable <- variable - learning_rate * gradient`` for every variable in ``gradients``."""
    return {name: as_float64(variables[name]) - learning_rate * gradient
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
    require(variables, [BETA1_POWER, BETA2_POWER]
            + [slot for name in gradients for slot in adam_slot_names(name)])
    beta1_power = as_float64(variables[BETA1_POWER])
    beta2_power = as_float64(variables[BETA2_POWER])
    lr_t = learning_rate * np.sqrt(1.0 - beta2_power) / (1.0 - beta1_power)
    updated = {}
    for name, gradient in gradients.items():
        m_name, v_name = adam_slot_names(name)
        m = beta1 * as_float64(variables[m_name]) + (1.0 - beta1) * gradient
        v = beta2 * as_float64(variables[v_name]) + (1.0 - beta2) * gradient * gradient
        updated[name] = as_float64(variables[name]) - lr_t * m / (np.sqrt(v) + epsilon)
        updated[m_name] = m
        updated[v_name] = v
    updated[BETA1_POWER] = beta1_power * beta1
    updated[BETA2_POWER] = beta2_power * beta2
    return updated


def initial_adam_state(variables, trainable, *, beta1=ADAM_BETA1, beta2=ADAM_BETA2):
    """``variables`` plus Adam's state as TensorFlow initialises it: zero slots for every name in
    ``trainable``, ``beta1_power = beta1`` and ``beta2_power = beta2``."""
    state = {name: as_float64(value) for name, value in variables.items()}
    for name in trainable:
        for slot in adam_slot_names(name):
            state[slot] = np.zeros_like(as_float64(variables[name]))
    state[BETA1_POWER] = np.float64(beta1)
    state[BETA2_POWER] = np.float64(beta2)
    return state
