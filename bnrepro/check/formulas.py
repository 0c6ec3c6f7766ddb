"""Batch normalisation's formulas in NumPy (float64), as the posts write them and TensorFlow computes them.

Arrays have the channel (normalised feature) on the last axis; statistics reduce over every other
axis, ``(N, C) -> (C,)`` or ``(N, H, W, C) -> (C,)``.
"""
from __future__ import annotations

import numpy as np

BIASED = "biased"  # divide by N
UNBIASED = "unbiased"  # divide by N - 1 (Bessel's correction)
VARIANCE_CONVENTIONS = (BIASED, UNBIASED)
VARIANCE_LABELS = {BIASED: "biased (/N)", UNBIASED: "unbiased (/(N-1))"}


def reduction_axes(x):
    """Every axis but the last (the channel axis)."""
    return tuple(range(np.ndim(x) - 1))


def values_per_channel(x):
    """N: how many values each channel's statistics average over."""
    return int(np.prod(np.shape(x)[:-1]))


def batch_mean(x):
    """``mean = sum(x) / N`` per channel; ``(N, ..., C) -> (C,)``."""
    return np.mean(np.asarray(x, dtype=np.float64), axis=reduction_axes(x))


def batch_variance(x, convention=BIASED):
    """``var = sum((x - mean)^2) / N`` (biased) or ``/ (N - 1)`` (unbiased); ``(N, ..., C) -> (C,)``."""
    ddof = 1 if convention == UNBIASED else 0
    return np.var(np.asarray(x, dtype=np.float64), axis=reduction_axes(x), ddof=ddof)


def moving_average(old, batch_statistic, momentum):
    """``new = momentum * old + (1 - momentum) * batch_statistic`` (TF/Keras convention: momentum is
    the weight of the old value)."""
    return momentum * np.asarray(old, dtype=np.float64) + (1.0 - momentum) * np.asarray(
        batch_statistic, dtype=np.float64)


def normalize(x, mean, variance, gamma, beta, epsilon):
    """``gamma * (x - mean) / sqrt(variance + epsilon) + beta``, broadcast over the channel axis.

    With the moving statistics this is batch norm in inference mode; with the batch statistics
    (biased variance) it is training mode.
    """
    x = np.asarray(x, dtype=np.float64)
    return gamma * (x - mean) / np.sqrt(np.asarray(variance, dtype=np.float64) + epsilon) + beta


def zero_debiased_average(old, statistic, momentum, old_step, step):
    """A zero-debiased moving average (``assign_moving_average(..., zero_debias=True)``): the
    biased average ``b_t = momentum * b_(t-1) + (1 - momentum) * statistic`` from ``b_0 = 0``, and
    the value ``v_t = b_t / (1 - momentum^t)``, so from the previous value
    ``v_(t-1) = b_(t-1) / (1 - momentum^(t-1))``::

        v_t = (momentum * v_(t-1) * (1 - momentum^(t-1)) + (1 - momentum) * statistic)
              / (1 - momentum^t)

    ``t`` is the average's ``local_step`` after the update (``old_step`` before it). Returns
    ``(biased_old, biased_new, v_t)``.
    """
    old = np.asarray(old, dtype=np.float64)
    biased_old = old * (1.0 - momentum ** float(old_step))
    biased_new = moving_average(biased_old, statistic, momentum)
    return biased_old, biased_new, biased_new / (1.0 - momentum ** float(step))


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
