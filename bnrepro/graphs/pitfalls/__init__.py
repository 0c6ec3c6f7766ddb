"""The traps behind "my moving statistics look wrong", one runnable scenario each.

Each module is one trap: a graph builder returning a :class:`bnrepro.graphs.built.BuiltGraph`, the batches
and a printer that points at the trace line showing the trap; its config dataclass lives in
:mod:`bnrepro.config`. ``bnrepro run NAME`` traces it like the posts' scenarios, and
``bnrepro verify`` names the convention the trace follows (:mod:`bnrepro.check.diagnose`).
``docs/pitfalls.md`` tells each story.

Importing this package does not import TensorFlow: the table below is all ``--help`` and the
option checks need.
"""
from bnrepro.config import CubicConfig, FusedConfig, GhostBatchConfig, RenormConfig

# scenario name -> (module in this package, one-line summary for --help)
PITFALL_SCENARIOS = {
    "fused-variance": ("fused", "trap 1: the same 4 values through the fused (4-D) and non-fused "
                                "(2-D) kernels: unbiased vs biased moving variance"),
    "no-update-ops": ("update_ops", "trap 2: post 000 trained without the UPDATE_OPS dependency: "
                                    "moving statistics stay 0 and 1"),
    "training-not-fed": ("training_flag", "trap 3: post 000 with training never fed True: batch "
                                          "norm trains in inference mode"),
    "epsilon": ("epsilon", "trap 4: post 000 and how its inference output moves with each "
                           "framework's epsilon"),
    "ghost-batch": ("ghost_batch", "trap 7: virtual_batch_size (ghost batches): strided ghost "
                                   "batches, ignored when training is a tensor"),
    "renorm": ("renorm", "trap 7: renorm=True: moving_stddev, r/d clipping"),
}

# scenario name -> its config type, the ``config_type`` of the module's ``scenario()``
PITFALL_CONFIGS = {
    "fused-variance": FusedConfig,
    "no-update-ops": CubicConfig,
    "training-not-fed": CubicConfig,
    "epsilon": CubicConfig,
    "ghost-batch": GhostBatchConfig,
    "renorm": RenormConfig,
}
