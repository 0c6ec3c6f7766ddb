"""Post 000's training step (``cubic``) in NumPy: ``hidden_tmp = x·w + b``, ``bn1 = BN(hidden_tmp)``,
``hidden = sigmoid(bn1)``, ``f = sigmoid(hidden·w2 + b2)``, ``loss = mean(|f_ - f|)``, then plain
gradient descent ``variable <- variable - learning_rate * gradient``.

Why the gradient of the pre-batch-norm bias ``b`` (``Variable_1:0``) is zero: batch norm subtracts
the batch mean, so adding a constant ``c`` to every ``hidden_tmp`` shifts ``mean`` by ``c`` too and
leaves ``x - mean``, ``variance`` and therefore ``y`` unchanged. The loss does not depend on ``b``;
in the backward pass this shows as ``sum(dx) = 0`` over the batch (see
:func:`bnrepro.check.reference.layers.batch_norm_backward`), and ``dL/db = sum(dx)``. TensorFlow's
trace keeps ``b`` at its initial value for the same reason.
"""
from __future__ import annotations

import numpy as np

from bnrepro.check.reference.layers import (StepResult, as_float64, batch_norm_backward,
                                            batch_norm_layer, batch_norm_layer_updates,
                                            batch_norm_names, gradient_descent, layer_variable,
                                            require, sigmoid)

# --- variable names (TensorFlow's, as the traces store them) --------------------------------------

CUBIC_LAYER = "batch_normalization"
CUBIC_W = "Variable:0"
CUBIC_B = "Variable_1:0"
CUBIC_W2 = "Variable_2:0"
CUBIC_B2 = "Variable_3:0"


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
    mean and biased variance with ``momentum``. Returns a
    :class:`~bnrepro.check.reference.layers.StepResult`.
    """
    names = [CUBIC_W, CUBIC_B, CUBIC_W2, CUBIC_B2] + batch_norm_names(CUBIC_LAYER)
    require(variables, names)
    x = as_float64(inputs)
    f_ = as_float64(targets)
    w, b = as_float64(variables[CUBIC_W]), as_float64(variables[CUBIC_B])
    w2, b2 = as_float64(variables[CUBIC_W2]), as_float64(variables[CUBIC_B2])

    hidden_tmp = x @ w + b
    bn1, cache = batch_norm_layer(variables, CUBIC_LAYER, hidden_tmp, epsilon)
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
    new_variables = {name: as_float64(value) for name, value in variables.items()}
    new_variables.update(gradient_descent(variables, gradients, learning_rate))
    new_variables.update(batch_norm_layer_updates(variables, CUBIC_LAYER, cache, momentum))
    return StepResult(new_variables, loss, gradients)
