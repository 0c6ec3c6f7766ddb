"""Post 001's training step (``two-sample``) in NumPy: ``hidden_1 = x·k1``, ``bn_1 = BN(hidden_1)``,
``bn_1x = relu(bn_1)``, ``predx = bn_1x·k2``, ``pred = BN(predx)``, ``loss = mean((pred - y)^2)``,
then one step of ``tf.compat.v1.train.AdamOptimizer``
(:func:`bnrepro.check.reference.layers.adam_update`).
"""
from __future__ import annotations

import numpy as np

from bnrepro.check.reference.layers import (ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON, StepResult,
                                            adam_update, as_float64, batch_norm_backward,
                                            batch_norm_layer, batch_norm_layer_updates,
                                            batch_norm_names, layer_variable, require)

HIDDEN_LAYER = "hidden1/batch_normalization"
OUTPUT_LAYER = "output/batch_normalization"
HIDDEN_KERNEL = "hidden1/dense/kernel:0"
OUTPUT_KERNEL = "output/dense/kernel:0"


# --- post 001: two-sample -------------------------------------------------------------------------

TWO_SAMPLE_TRAINABLE = (HIDDEN_KERNEL, layer_variable(HIDDEN_LAYER, "gamma"),
                        layer_variable(HIDDEN_LAYER, "beta"), OUTPUT_KERNEL,
                        layer_variable(OUTPUT_LAYER, "gamma"), layer_variable(OUTPUT_LAYER, "beta"))


def two_sample_step(variables, inputs, targets, *, momentum, epsilon, learning_rate,
                    beta1=ADAM_BETA1, beta2=ADAM_BETA2, adam_epsilon=ADAM_EPSILON):
    """Post 001's training step from ``variables`` (including Adam's slots and powers: see
    :func:`~bnrepro.check.reference.layers.initial_adam_state`) on one batch; both layers use ``momentum`` and ``epsilon``.

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
    statistics as in :func:`~bnrepro.check.reference.layers.moving_averages`. Returns a :class:`~bnrepro.check.reference.layers.StepResult`.
    """
    require(variables, [HIDDEN_KERNEL, OUTPUT_KERNEL] + batch_norm_names(HIDDEN_LAYER)
            + batch_norm_names(OUTPUT_LAYER))
    x = as_float64(inputs)
    y = as_float64(targets)
    k1, k2 = as_float64(variables[HIDDEN_KERNEL]), as_float64(variables[OUTPUT_KERNEL])

    hidden_1 = x @ k1
    bn_1, hidden_cache = batch_norm_layer(variables, HIDDEN_LAYER, hidden_1, epsilon)
    bn_1x = np.maximum(bn_1, 0.0)
    predx = bn_1x @ k2
    pred, output_cache = batch_norm_layer(variables, OUTPUT_LAYER, predx, epsilon)
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
    new_variables = {name: as_float64(value) for name, value in variables.items()}
    new_variables.update(adam_update(variables, gradients, learning_rate, beta1=beta1,
                                     beta2=beta2, epsilon=adam_epsilon))
    for layer, cache in ((HIDDEN_LAYER, hidden_cache), (OUTPUT_LAYER, output_cache)):
        new_variables.update(batch_norm_layer_updates(variables, layer, cache, momentum))
    return StepResult(new_variables, loss, gradients)
