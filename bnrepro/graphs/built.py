"""What every scenario graph exposes, and the taps that say where each batch-norm layer's numbers live.

A scenario builder writes its graph the way the post does (``tf.compat.v1`` placeholders,
``tf.compat.v1.layers.batch_normalization`` called as the post calls it, the train op under the
``UPDATE_OPS`` control dependency) and returns a :class:`BuiltGraph`. Its batch-norm layers are
described afterwards, from the graph alone: :func:`batch_norm_taps` finds each layer with
:func:`bnrepro.graphs.discover.discover` (its variables, momentum, epsilon, the tensors its moving-average
update consumes, its input and its mode) and takes from the builder only the tensor the layer
returned, which the post prints.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from bnrepro.check.layer_modes import LayerMode
from bnrepro.graphs.tfv1 import tf, tf1

from bnrepro.graphs.discover import discover  # noqa: E402 (after bnrepro.graphs.tfv1 has set TensorFlow up)


@dataclass(frozen=True)
class BatchNormTap:
    """One ``tf.compat.v1.layers.batch_normalization`` layer and the tensors that explain it.

    Training mode normalises with the batch statistics and updates the moving ones::

        output          = gamma * (x - batch_mean) / sqrt(batch_variance + epsilon) + beta
        moving_mean     <- momentum * moving_mean     + (1 - momentum) * batch_mean
        moving_variance <- momentum * moving_variance + (1 - momentum) * batch_variance

    Inference mode uses the moving statistics::

        output = gamma * (x - moving_mean) / sqrt(moving_variance + epsilon) + beta

    ``batch_mean`` and ``batch_variance`` are the exact tensors the two update ops consume (for the
    non-fused layer, ``smart_cond(training, moments, moving statistic)``; for the fused kernel, its
    second and third outputs; with ghost batches, the means of the ghost batches' moments; with
    renorm, the variance whose ``sqrt(variance + epsilon)`` is averaged into ``moving_stddev``), so
    fetching them beside the train op shows what the update used. ``inputs`` is the layer's input,
    the tensor those moments are taken of; ``outputs`` the tensor the layer returned.

    ``mode`` is the layer's mode as the graph shows it (:class:`bnrepro.check.layer_modes.LayerMode`; the
    tracer's trace header declares it): ghost batches only when the graph splits the batch, renorm
    when the variance's update averages a ``moving_stddev`` (:mod:`bnrepro.graphs.discover`).

    :func:`batch_norm_taps` builds the taps of a graph.
    """

    name: str  # the layer's variable scope, e.g. "hidden1/batch_normalization"
    inputs: tf.Tensor
    outputs: tf.Tensor
    momentum: float
    epsilon: float
    variables: dict  # "gamma" | "beta" | "moving_mean" | "moving_variance" (| renorm's) -> tf.Variable
    batch_mean: tf.Tensor
    batch_variance: tf.Tensor
    mode: LayerMode = LayerMode()


@dataclass
class BuiltGraph:
    """A scenario's graph: placeholders, loss, train op and its batch-norm layers.

    ``printed_after`` holds the tensors the post prints after a training step (evaluated in inference
    mode, with the step's inputs and targets fed); ``extra_feed`` holds placeholders the post feeds
    on every run (post 001 feeds its learning rate).
    """

    graph: tf.Graph
    inputs: tf.Tensor
    targets: tf.Tensor
    training: tf.Tensor
    loss: tf.Tensor
    train_op: tf.Operation
    batch_norms: list
    printed_after: dict = field(default_factory=dict)
    extra_feed: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)


def batch_norm_taps(graph, outputs_by_layer):
    """A :class:`BatchNormTap` for each ``layer name -> the tensor the layer returned`` of
    ``outputs_by_layer`` (in its order), everything else read from ``graph``.

    The layer is the one :func:`bnrepro.graphs.discover.discover` finds under that name (a
    ``tf.compat.v1.layers.batch_normalization`` layer's variable scope, e.g.
    ``"hidden1/batch_normalization"``): its variables (every ``<name>/<role>`` variable of the
    graph, ``gamma``, ``beta``, ``moving_mean``, ``moving_variance`` and, with renorm,
    ``moving_stddev``, ``renorm_mean``, ``renorm_stddev``), its momentum and epsilon as the graph
    computes them, the tensors its two updates consume, the tensor its moments are taken of (for
    ghost batches, the input the layer reshapes) and its mode. :class:`ValueError` when a name is no
    layer of the graph, or the graph does not give the layer's momentum or epsilon.
    """
    if not outputs_by_layer:
        return []
    found = {layer.name: layer for layer in discover(graph).layers}
    with graph.as_default():
        variables = {variable.op.name: variable for variable in tf1.global_variables()}
    taps = []
    for name, outputs in outputs_by_layer.items():
        layer = found.get(name)
        if layer is None:
            raise ValueError(f"no batch-norm layer {name!r} in the graph; it has "
                             f"{', '.join(sorted(found)) or 'none'}")
        momentum, epsilon = layer.training_momentum, layer.epsilon
        if momentum is None or epsilon is None or layer.gamma is None or layer.beta is None:
            raise ValueError(f"batch-norm layer {name!r}: the graph gives momentum {momentum}, "
                             f"epsilon {epsilon}, gamma {layer.gamma}, beta {layer.beta}")
        by_role = {variable_name.rsplit("/", 1)[-1]: variable
                   for variable_name, variable in variables.items()
                   if variable_name.rsplit("/", 1)[0] == name}
        by_role.update(gamma=layer.gamma, beta=layer.beta, moving_mean=layer.mean.variable,
                       moving_variance=layer.variance.variable)
        taps.append(BatchNormTap(
            name=name,
            inputs=layer.inputs,
            outputs=outputs,
            momentum=float(momentum),
            epsilon=float(epsilon),
            variables=by_role,
            batch_mean=layer.mean.update.consumed,
            batch_variance=layer.variance.update.consumed,
            mode=layer.mode,
        ))
    return taps


@dataclass(frozen=True)
class Scenario:
    """A runnable experiment (a post's, or a trap's): its configuration type, its graph builder
    (config -> :class:`BuiltGraph`), its batches (config -> iterable of ``(inputs, targets)``) and
    the printer of its post-style lines (``print_step(previous, record, write)``)."""

    name: str
    config_type: type
    build: Callable
    batches: Callable
    print_step: Optional[Callable] = None
