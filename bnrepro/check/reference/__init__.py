"""Both posts' training steps re-done in NumPy (float64), forward and backward by hand, to replay a
trace and hold every variable TensorFlow stored to its tolerance.

:mod:`~bnrepro.check.reference.layers` holds the pieces (batch norm in training mode and its
backward pass, the moving averages, sigmoid, gradient descent, Adam, the variables' names);
:mod:`~bnrepro.check.reference.cubic` is post 000's step, :mod:`~bnrepro.check.reference.two_sample`
post 001's; :mod:`~bnrepro.check.reference.replay` replays a trace with them and reports. Nothing
here imports TensorFlow. The names below are the ones scripts and the notebook use.
"""
from bnrepro.check.reference.cubic import (CUBIC_B, CUBIC_B2, CUBIC_LAYER, CUBIC_TRAINABLE,
                                           CUBIC_W, CUBIC_W2, cubic_step)
from bnrepro.check.reference.layers import (ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON, BETA1_POWER,
                                            BETA2_POWER, adam_slot_names, adam_update, as_float64,
                                            batch_norm_backward, batch_norm_forward,
                                            initial_adam_state, layer_variable)
from bnrepro.check.reference.replay import (StepComparison, agrees, error_summary,
                                            format_agreement, format_replay, reference_step,
                                            replay)
from bnrepro.check.reference.two_sample import (HIDDEN_KERNEL, HIDDEN_LAYER, OUTPUT_KERNEL,
                                                OUTPUT_LAYER, TWO_SAMPLE_TRAINABLE,
                                                two_sample_step)

__all__ = ["ADAM_BETA1", "ADAM_BETA2", "ADAM_EPSILON", "BETA1_POWER", "BETA2_POWER", "CUBIC_B",
           "CUBIC_B2", "CUBIC_LAYER", "CUBIC_TRAINABLE", "CUBIC_W", "CUBIC_W2", "HIDDEN_KERNEL",
           "HIDDEN_LAYER", "OUTPUT_KERNEL", "OUTPUT_LAYER", "StepComparison", "TWO_SAMPLE_TRAINABLE",
           "adam_slot_names", "adam_update", "agrees", "as_float64", "batch_norm_backward",
           "batch_norm_forward", "cubic_step", "error_summary", "format_agreement", "format_replay",
           "initial_adam_state", "layer_variable", "reference_step", "replay", "two_sample_step"]
