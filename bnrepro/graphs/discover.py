"""Find every moving average in a TensorFlow graph, from its operations: what ``bnrepro trace`` follows.

A moving average is an assignment to a non-trainable variable ``V`` whose value mixes ``V``'s old value
with a tensor ``x`` the run computes (the *consumed* value). Every way of keeping moving statistics
in TF1-style code builds one of two shapes:

* ``assign_sub(V, (V - x) * d)``, i.e. ``V <- V - (V - x) d = (1 - d) V + d x``, momentum ``1 - d``:
  ``tf.compat.v1.layers.batch_normalization`` and tf_keras' ``BatchNormalization`` (fused or not),
  ``moving_averages.assign_moving_average`` and ``tf.compat.v1.train.ExponentialMovingAverage``
  (which calls it);
* ``assign(V, V * m + x * (1 - m))`` in any order of the terms: the plain ``tf.assign`` users write.

``assign_moving_average``'s default ``zero_debias=True`` applies the first shape to ``V/biased`` and
then assigns ``V = V/biased / (1 - m^t)`` with ``t`` in ``V/local_step``: the average on ``V`` is
*zero-debiased* (the initial value never matters).

The assignment may sit in the graph itself, inside a ``tf.cond`` of TF2 control flow (an ``If`` op,
whose branches are functions of the graph's library: a ``training`` tensor, an EMA applied inside a
``tf.cond``), or inside a TF1 ``cond`` context (``Switch``/``Merge``, as in Keras ``fit`` with v2
behaviour disabled). In each case the consumed value and the variable are traced back to tensors of
the graph itself, which a ``session.run`` can fetch whenever it runs the assignment: the value that
enters the ``If`` op or the ``Switch``, not one inside a branch that may not be taken.

The reading of operations (in the graph or a branch's function body) is
:mod:`bnrepro.graphs.graph_values`, the two shapes of an update :mod:`bnrepro.graphs.updates`; this
module finds the averages and pairs them into layers.

Averages pair into a layer when their consumed values are the mean and the variance of one
``tf.nn.moments`` (or the batch mean and variance outputs of one ``FusedBatchNorm``): the layer's
input is the tensor those moments reduce. A layer's epsilon is read from the ``FusedBatchNorm``
op's attribute or from the constant ``tf.nn.batch_normalization`` adds to the variance; gamma and
beta are the variables that scale and shift in the same kernel or formula, when it has them. An
average that pairs with nothing is followed on its own. Momentum (or decay) comes from the graph's
constants; where it is computed at run time (``ExponentialMovingAverage(num_updates=...)``), the
tensor is fetched with the run.

A fused layer whose ``training`` is a tensor runs its kernel inside a ``tf.cond`` (an ``If`` op):
its batch mean and variance are outputs of that op, found in the branch that trains, and its
momentum is ``tf.cond(training, momentum, 1.0)``, computed at run time
(:attr:`Layer.training_momentum` reads the constant of the training branch).

Two tf_keras options change what a layer's update consumes; both are recognised from the graph, and
the layer's mode (:attr:`Layer.mode`, a :class:`bnrepro.check.layer_modes.LayerMode`) set:

* ghost batches (``virtual_batch_size=K``): the layer reshapes its input ``(N, ..., C)`` to
  ``(K, N / K, ..., C)`` (to ``(N, 1, ..., C)`` when ``training`` is not a Python ``True``: one
  "ghost batch", the standard layer), takes the moments over axis 0 and averages them over the
  ghost axis 1: the consumed mean and variance are means of per-ghost-batch moments, and the layer's
  input is the tensor reshaped;
* batch renormalisation (``renorm=True``): the variance's update averages ``sqrt(variance +
  epsilon)`` into ``moving_stddev`` and assigns ``moving_stddev^2 - epsilon`` to ``moving_variance``,
  which is no moving average of its own (:attr:`Update.stddev` names the averaged variable); the
  renorm momentum is the ``renorm_mean`` average's, the clipping bounds are the constants that clip
  the layer's ``renorm_r`` and ``renorm_d``.

Such a layer is one of :attr:`Discovery.layers` like any other (its two averages paired into it),
with its mode set; a trace header declares it (:attr:`Discovery.mode_layers` lists these layers).
A renorm layer's own averages of ``moving_stddev``, ``renorm_mean`` and ``renorm_stddev`` stay
among :attr:`Discovery.averages`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np
import tensorflow as tf  # not bnrepro.graphs.tfv1: its device set-up would change the traced program

from bnrepro.graphs.graph_values import (ADD, ASSIGN, ASSIGN_SUB, PASS_THROUGH,  # noqa: F401
                                         TRAINING_OP_PREFIXES, FunctionBody, GraphValue, Value,
                                         branch_bodies)
from bnrepro.graphs.updates import (Update, match_assign_sub, momentum_of, scalar_constant,
                                    shortest_float32, update_of, variable_name)
from bnrepro.check.layer_modes import STRIDED, LayerMode


# --- the graph's averages and layers ----------------------------------------------------------------

@dataclass
class Average:
    """A moving average found in the graph (see :class:`Update`), with its variable object."""

    name: str  # the variable's op name
    variable: object  # tf.Variable
    update: Update
    biased: Optional[object] = None  # zero-debias: the variables V/biased and V/local_step
    local_step: Optional[object] = None
    others: list = field(default_factory=list)  # further updates of the variable (a shared layer)

    @property
    def every_update(self):
        return [self.update, *self.others]

    def applied(self, update):
        """This average as seen by one of its updates."""
        return replace(self, update=update, others=[])

    @property
    def zero_debias(self):
        return self.local_step is not None

    @property
    def training_momentum(self):
        """The update's momentum, or where that is computed at run time as ``tf.cond(training, m,
        1.0)``, the constant ``m`` of the training branch (:func:`_momentum_when_true`)."""
        if self.update.momentum is not None:
            return self.update.momentum
        return _momentum_when_true(self.update.weight_tensor)


@dataclass
class Layer:
    """Averages of one batch's mean and variance: a batch-norm layer (tf_keras, or by hand)."""

    name: str
    mean: Average
    variance: Average
    inputs: Optional[object] = None  # tf.Tensor the moments reduce
    epsilon: Optional[float] = None
    fused: bool = False
    gamma: Optional[object] = None
    beta: Optional[object] = None
    kind: str = "tf.nn.moments"  # what keeps the statistics (:func:`_kind`)
    mode: LayerMode = field(default_factory=LayerMode)  # ghost batches, renorm (standard: neither)
    moving_stddev: Optional[object] = None  # renorm: the tf.Variable the variance update averages
    channel_axis: Optional[int] = None  # of ``inputs``, when not the last: recorded channel-last
    # the layer's applications, itself first: more than one when it normalises several inputs,
    # each application then updating the moving statistics once (its own consumed values, input)
    applications: list = field(default_factory=list)

    @property
    def averages(self):
        return (self.mean, self.variance)

    @property
    def momentum(self):
        return self.mean.update.momentum

    @property
    def training_momentum(self):
        """The momentum the mean's update applies when it runs (:attr:`Average.training_momentum`;
        tf_keras' fused layer with a ``training`` tensor computes it as ``tf.cond(training, m,
        1.0)``)."""
        return self.mean.training_momentum


@dataclass
class Discovery:
    """Everything :func:`discover` found in one graph."""

    graph: object
    operations: int  # how many operations the graph had (a grown graph is looked at again)
    layers: list = field(default_factory=list)  # every layer, ghost-batch and renorm ones included
    averages: list = field(default_factory=list)  # the averages that pair with nothing

    @property
    def all_averages(self):
        return [a for layer in self.layers for a in layer.averages] + list(self.averages)

    @property
    def mode_layers(self):
        """The layers built with ``virtual_batch_size`` or ``renorm`` (:attr:`Layer.mode`)."""
        return [layer for layer in self.layers if not layer.mode.standard]


def _assignment_sites(graph):
    """``(assignment Value, the graph op that runs it)`` for every assignment in the graph and in
    the branches of its ``If`` ops."""
    for operation in graph.get_operations():
        if operation.type in ASSIGN_SUB | ASSIGN and len(operation.inputs) >= 2:
            yield _OpValue(operation), operation
        elif operation.type in ("If", "StatelessIf"):
            for body in branch_bodies(graph, operation):
                for assignment in body.assignments():
                    yield assignment, operation


class _OpValue(Value):
    """An operation without outputs (an assignment) seen as a :class:`Value`."""

    def __init__(self, operation):
        self.operation = operation
        self.op_type, self.op_name = operation.type, operation.name

    def inputs(self):
        return [GraphValue(t) for t in self.operation.inputs]


def discover(graph):
    """Every moving average and batch-norm layer of ``graph``: a :class:`Discovery`."""
    variables = {}
    with graph.as_default():
        for variable in tf.compat.v1.global_variables():
            variables[variable.op.name] = variable
    sites = list(_assignment_sites(graph))
    updates = {}  # variable name -> every update of it (a layer applied twice updates it twice)
    for assignment, site in sites:
        update = update_of(assignment, site)
        if (update is not None and update.variable in variables
                and not variables[update.variable].trainable):
            updates.setdefault(update.variable, []).append(update)
    averages = {}
    debiased = _zero_debiased(sites, variables)
    for name, found in updates.items():
        update, *others = found
        if name in debiased:
            owner, local_step = debiased[name]
            for each in found:
                each.zero_debias, each.variable = True, owner
            averages[owner] = Average(owner, variables[owner], update, biased=variables[name],
                                      local_step=variables[local_step], others=others)
            continue
        averages.setdefault(name, Average(name, variables[name], update, others=others))
    renorm_variances = _renorm_variance_averages(sites, variables)
    layers, paired = _pair_into_layers(graph, averages, renorm_variances, variables)
    unpaired = [average for name, average in averages.items()
                if name not in paired and average.update.consumed is not None]
    return Discovery(graph, len(graph.get_operations()), layers, unpaired)


def _zero_debiased(sites, variables):
    """``biased -> (V, local_step)`` (variable op names) for each assignment
    ``V = biased / (1 - m^local_step)``: ``assign_moving_average``'s zero-debias, which keeps the
    average on ``biased`` and ``local_step`` counts its updates (found by this structure, whatever
    the variables' names and scopes)."""
    found = {}
    for assignment, _ in sites:
        if assignment.op_type not in ASSIGN:
            continue
        target, value = assignment.inputs()[:2]
        owner = variable_name(target)
        if owner not in variables or value.op_type != "RealDiv":
            continue
        numerator, denominator = value.inputs()
        biased = _updated_variable(numerator)
        if biased not in variables or denominator.op_type != "Sub":
            continue
        one, power = denominator.inputs()
        if scalar_constant(one) != 1.0 or power.op_type != "Pow":
            continue
        local_step = _updated_variable(power.inputs()[1])
        if local_step in variables:
            found.setdefault(biased, (owner, local_step))
    return found


def _updated_variable(value):
    """The variable ``value`` reads: :func:`variable_name`, or through a ref variable's assignment,
    whose output is the variable after it (TF1: ``AssignSub:0``, ``AssignAdd:0``)."""
    if value.op_type in ("Assign", "AssignSub", "AssignAdd"):
        value = value.inputs()[0]
    return variable_name(value)


@dataclass
class _Statistic:
    """What a consumed tensor is: the batch ``mean`` or ``variance`` of one ``tf.nn.moments`` (or
    fused kernel) identified by ``key``, whose input is ``x``. ``tensor``: the moments' own output
    (``Mean``), for the epsilon search; ``ghost``: the consumed value is its mean over the ghost axis
    (``x`` is then tf_keras' ghost-batch reshape of the layer's input)."""

    statistic: str
    key: str
    x: object  # tf.Tensor
    fused: bool = False
    fused_epsilon: Optional[float] = None
    tensor: Optional[object] = None
    ghost: bool = False
    scale: Optional[Value] = None  # a fused kernel's scale and offset inputs
    offset: Optional[Value] = None
    channel_axis: Optional[int] = None  # of ``x``, when it is not the last (NCHW, axis=1)


def _moments_source(tensor, depth=0):
    """What a consumed tensor is a batch statistic of (:class:`_Statistic`), or ``None``. Follows
    identities, squeezes and the ``tf.cond`` that picks the batch statistic in training mode, into
    the training branch of a ``tf.cond`` that runs a fused kernel, and through tf_keras' mean over
    the ghost axis."""
    if tensor is None or depth > 12:
        return None
    operation = tensor.op
    if operation.type in PASS_THROUGH | {"Squeeze", "Reshape"}:
        return _moments_source(operation.inputs[0], depth + 1)
    if operation.type == "Merge":  # TF1 cond: the branch that holds the batch statistic
        for branch in operation.inputs:
            found = _moments_source(branch, depth + 1)
            if found is not None:
                return found
        return None
    if operation.type in ("If", "StatelessIf"):
        for candidate in operation.inputs[1:]:
            found = _moments_source(candidate, depth + 1)
            if found is not None:
                return found
        return _fused_in_true_branch(operation, tensor.value_index)
    if (operation.type.startswith("FusedBatchNorm") and tensor.value_index in (1, 2)
            and operation.get_attr("is_training")):  # in inference, outputs 1, 2 are its inputs
        return _Statistic("mean" if tensor.value_index == 1 else "variance", operation.name,
                          _outside(operation.inputs[0]), fused=True,
                          fused_epsilon=operation.get_attr("epsilon"),
                          scale=GraphValue(operation.inputs[1]),
                          offset=GraphValue(operation.inputs[2]),
                          channel_axis=1 if operation.get_attr("data_format") == b"NCHW" else None)
    if operation.type == "Mean":
        source = operation.inputs[0]
        squared = source.op.type == "SquaredDifference"
        if source.op.type == "Square" and source.op.inputs[0].op.type == "Sub":
            source, squared = source.op.inputs[0], True  # mean((x - mean)^2), written by hand
        if squared:
            x, mean = source.op.inputs
            mean_found = _moments_source(mean, depth + 1)
            key = mean_found.key if mean_found else operation.name
            return _Statistic("variance", key, x, tensor=tensor,
                              channel_axis=_kept_axis(operation))
        ghost = _ghost_mean(operation, source, depth)
        if ghost is not None:
            return ghost
        return _Statistic("mean", operation.name, source, tensor=tensor,
                          channel_axis=_kept_axis(operation))
    return None


def _kept_axis(mean):
    """The one axis a ``Mean`` over all the others keeps, when it is not the last (a layer with
    ``axis=1``: moments over ``[0, 2, 3]``); ``None`` otherwise."""
    rank = mean.inputs[0].shape.rank
    axes = tf.get_static_value(mean.inputs[1])
    if rank is None or axes is None:
        return None
    kept = set(range(rank)) - {int(axis) % rank for axis in np.ravel(axes)}
    return kept.pop() if len(kept) == 1 and kept != {rank - 1} else None


def _outside(tensor):
    """``tensor``, or where it is a ``tf.cond`` branch's ``Switch`` of a tensor of the graph (TF1
    control flow), that tensor: computed whenever the cond runs."""
    outside = GraphValue(tensor).outer()
    return tensor if outside is None else outside


def _moments_in_branch(value, site, depth=0):
    """What a consumed value computed inside a TF2 ``tf.cond`` branch is (``tf.nn.moments`` there:
    ``Mean``, and ``Mean`` of ``SquaredDifference`` for the variance), when the tensor the moments
    reduce comes into the branch from the graph (an argument of the ``If`` op ``site``): a
    :class:`_Statistic` whose ``x`` is that graph tensor, else ``None``."""
    if value is None or depth > 12:
        return None
    if value.op_type in PASS_THROUGH | {"Squeeze", "Reshape"}:
        inputs = value.inputs()
        return _moments_in_branch(inputs[0], site, depth + 1) if inputs else None
    if value.op_type != "Mean":
        return None
    source = value.inputs()[0]
    statistic, x = "mean", source
    if source.op_type == "SquaredDifference":
        statistic, x = "variance", source.inputs()[0]
        mean = _moments_in_branch(source.inputs()[1], site, depth + 1)
        key = mean.key if mean is not None else f"{site.name}/{value.op_name}"
    else:
        key = f"{site.name}/{value.op_name}"
    outside = x.outer()
    return None if outside is None else _Statistic(statistic, key, outside)


def _ghost_mean(operation, source, depth):
    """tf_keras' ghost batches: ``operation`` (a ``Mean``) averages over axis 1 a batch statistic of
    the input reshaped to ``(K, N / K, ..., C)`` (one rank more than the input); that statistic,
    marked ``ghost``, or ``None``."""
    axes = scalar_constant(GraphValue(operation.inputs[1]))
    if axes != 1:
        return None
    inner = _moments_source(source, depth + 1)
    if inner is None or inner.ghost or _ghost_reshape(inner.x) is None:
        return None
    return _Statistic(inner.statistic, inner.key, inner.x, inner.fused, inner.fused_epsilon,
                      inner.tensor, ghost=True)


def _ghost_reshape(x):
    """``(layer input, K or None)`` when ``x`` is a reshape adding one axis after the batch axis,
    ``(N, ..., C) -> (K, N / K, ..., C)``: ``K`` when the graph really splits the batch (a known
    first axis and a second one other than 1; tf_keras reshapes to ``(N, 1, ..., C)`` unless
    ``training`` is a Python ``True``), else ``None``; ``None`` when ``x`` is no such reshape."""
    if x.op.type != "Reshape":
        return None
    source = x.op.inputs[0]
    shape = x.shape
    if shape.rank is None or source.shape.rank is None or shape.rank != source.shape.rank + 1:
        return None
    ghosts, per_ghost = shape.as_list()[:2]  # plain ints or None in both TensorShape versions
    if per_ghost != 1 and ghosts is not None:
        return source, ghosts
    return source, None


def _then_body(operation):
    """The true branch of an ``If`` op as a :class:`FunctionBody`, or ``None``."""
    function = operation.graph._get_function(operation.get_attr("then_branch").name)  # noqa: SLF001
    if function is None:
        return None
    definition = getattr(function, "definition", None) or function.cached_definition
    return FunctionBody(definition, [GraphValue(t) for t in operation.inputs[1:]])


def _returned(body, index):
    """What a branch body returns as its output ``index``: ``(node name, output name)``."""
    reference = body.definition.ret[body.definition.signature.output_arg[index].name]
    node, _, rest = reference.partition(":")
    return node, rest.partition(":")[0]


def _fused_in_true_branch(operation, index):
    """Output ``index`` of an ``If`` op whose true branch returns a fused kernel's batch mean or
    variance there (tf_keras' fused layer with a ``training`` tensor): that statistic, whose input is
    the ``If``'s input the kernel normalises, or ``None``."""
    body = _then_body(operation)
    if body is None:
        return None
    node, output = _returned(body, index)
    definition = body.nodes.get(node)
    if (definition is None or not definition.op.startswith("FusedBatchNorm")
            or output not in ("batch_mean", "batch_variance")):
        return None
    x = body.value(definition.input[0]).outer()
    if x is None:
        return None
    scale, offset = (body.value(name) for name in definition.input[1:3])
    return _Statistic("mean" if output == "batch_mean" else "variance", f"{operation.name}/{node}",
                      x, fused=True, fused_epsilon=definition.attr["epsilon"].f, scale=scale,
                      offset=offset,
                      channel_axis=1 if definition.attr["data_format"].s == b"NCHW" else None)


def _momentum_when_true(weight_tensor):
    """For a weight ``1 - m`` with ``m = tf.cond(predicate, constant, ...)`` (an ``If`` op, or TF1's
    ``Merge``): the constant ``m`` takes when the predicate holds (the training branch), as the
    shortest decimal; else ``None``."""
    if weight_tensor is None or weight_tensor.op.type != "Sub":
        return None
    one, momentum = weight_tensor.op.inputs
    if scalar_constant(GraphValue(one)) != 1.0:
        return None
    while momentum.op.type in PASS_THROUGH:
        momentum = momentum.op.inputs[0]
    if momentum.op.type in ("Merge", "RefMerge"):  # TF1 cond: the input from the true branch
        for branch in momentum.op.inputs:
            context = getattr(branch.op, "_control_flow_context", None)
            if getattr(context, "branch", None) == 1:
                value = scalar_constant(GraphValue(branch))
                return None if value is None else shortest_float32(value)
        return None
    if momentum.op.type not in ("If", "StatelessIf"):
        return None
    body = _then_body(momentum.op)
    if body is None:
        return None
    node, _ = _returned(body, momentum.value_index)
    value = scalar_constant(body.value(node)) if node in body.nodes else None
    return None if value is None else shortest_float32(value)


def _renorm_variance_averages(sites, variables):
    """``name -> Average`` for each renorm layer's moving variance (shape ``"renorm"``, see
    :class:`Update`): an assignment ``V = relu(W * W - epsilon)`` where ``W`` is read after an
    ``assign_sub(W, (W - sqrt(x + epsilon)) * d)`` run by the same op (the same ``If``, or both in
    the graph itself). The consumed value is ``x``, the momentum ``W``'s."""
    def site_key(site):
        return site.name if site.type in ("If", "StatelessIf") else None

    stddevs = {}  # (W, site key) -> (x, weight of the new value)
    for assignment, site in sites:
        if assignment.op_type not in ASSIGN_SUB:
            continue
        matched = match_assign_sub(assignment)
        if matched is None or matched[1].op_type != "Sqrt":
            continue
        stddev, root, weight = matched
        radicand = root.inputs()[0]
        if radicand.op_type not in ADD:
            continue
        for value, constant in (radicand.inputs(), radicand.inputs()[::-1]):
            if scalar_constant(constant) is not None and value.outer() is not None:
                stddevs.setdefault((stddev, site_key(site)), (value.outer(), weight))
                break
    averages = {}
    for assignment, site in sites:
        if assignment.op_type not in ASSIGN:
            continue
        target, value = assignment.inputs()[:2]
        variable = variable_name(target)
        if value.op_type == "Relu":
            value = value.inputs()[0]
        if variable is None or value.op_type != "Sub":
            continue
        square, epsilon = value.inputs()
        if square.op_type != "Mul" or scalar_constant(epsilon) is None:
            continue
        factors = {_updated_variable(factor) for factor in square.inputs()}
        if len(factors) != 1 or None in factors:
            continue
        (stddev,) = factors
        found = stddevs.get((stddev, site_key(site)))
        if (found is None or variable not in variables or stddev not in variables
                or variables[variable].trainable):
            continue
        consumed, weight = found
        constant = scalar_constant(weight)
        if constant is None:
            continue
        update = Update(variable, consumed, momentum_of(weight, constant), form="renorm",
                        site=site, stddev=stddev)
        averages.setdefault(variable, Average(variable, variables[variable], update))
    return averages


def _preferred(candidates, role):
    """Of the averages that consume one statistic, the one named ``.../<role>`` (tf_keras' moving
    statistic, not a renorm average of the same mean), else the last found."""
    for candidate in candidates:
        if candidate[0].name.endswith("/" + role):
            return candidate
    return candidates[-1]


def _pair_into_layers(graph, averages, renorm_variances, variables):
    """Pair averages whose consumed values are the mean and the variance of the same moments:
    ``(layers, names of the averages paired into layers)``; a ghost-batch or renorm layer has its
    mode set (:attr:`Layer.mode`)."""
    by_key = {}
    for name, whole in list(averages.items()) + list(renorm_variances.items()):
        for update in whole.every_update:
            average = whole.applied(update) if whole.others else whole
            found = (_moments_source(update.consumed) if update.consumed is not None
                     else _moments_in_branch(update.consumed_value, update.site))
            if found is not None:
                by_key.setdefault(found.key, {}).setdefault(found.statistic, []).append(
                    (average, found))
    layers, paired = [], set()
    for key, statistics in by_key.items():
        if set(statistics) != {"mean", "variance"}:
            continue
        mean, mean_found = _preferred(statistics["mean"], "moving_mean")
        variance, variance_found = _preferred(statistics["variance"], "moving_variance")
        renorm = variance.update.form == "renorm"
        if mean.update.form == "renorm" or mean_found.ghost != variance_found.ghost:
            continue
        x, virtual_batch_size = mean_found.x, None
        if mean_found.ghost:
            x, virtual_batch_size = _ghost_reshape(x)
        scope = _common_scope(mean.name, variance.name)
        layer = Layer(name=scope or key.rsplit("/", 1)[0], mean=mean, variance=variance, inputs=x,
                      fused=mean_found.fused, kind=_kind(mean, variance, mean_found.fused),
                      channel_axis=None if mean_found.ghost else mean_found.channel_axis)
        layer.epsilon, gamma, beta = _normalisation(
            graph, layer, mean_found, [found.tensor.op.name for found in (mean_found, variance_found)
                                       if (renorm or mean_found.ghost) and found.tensor is not None])
        layer.gamma, layer.beta = variables.get(gamma), variables.get(beta)
        layers.append(layer)
        paired.update((mean.name, variance.name))
        if not (renorm or mean_found.ghost):
            continue
        options = {}
        if renorm:
            layer.moving_stddev = variables[variance.update.stddev]
            renorm_mean = averages.get(f"{scope}/renorm_mean")
            if renorm_mean is not None and renorm_mean.update.momentum is not None:
                options["renorm_momentum"] = renorm_mean.update.momentum
            options.update(renorm=True, **_renorm_clipping(graph, layer.name))
        layer.mode = LayerMode(virtual_batch_size=virtual_batch_size, ghost_layout=STRIDED,
                               **options)
    return _shared(layers), paired


def _shared(layers):
    """One layer per pair of moving variables: a layer applied to several inputs (``reuse``: a GAN
    discriminator on real and fake, siamese towers) is paired once per application; the first
    stands for the layer, with every application in :attr:`Layer.applications`."""
    by_variables = {}
    for layer in layers:
        key = (layer.mean.name, layer.variance.name)
        if key in by_variables:
            by_variables[key].applications.append(layer)
        else:
            layer.applications = [layer]
            by_variables[key] = layer
    return list(by_variables.values())


KERAS_KIND = "batch norm (tf.layers / tf_keras BatchNormalization"


def _kind(mean, variance, fused):
    """What keeps a layer's statistics, from what the graph and its variables are: tf_keras (and
    ``tf.compat.v1.layers``, which is tf_keras) makes its moving statistics ``ON_READ`` variables
    aggregated by ``MEAN``; otherwise the update's own shape says how it was written."""
    kernel = "fused kernel" if fused else "tf.nn.moments"
    if all(_keras_statistic(average.variable) for average in (mean, variance)):
        return f"{KERAS_KIND}, {'fused kernel' if fused else 'not fused'})"
    if mean.zero_debias:
        return f"{kernel} + assign_moving_average (zero-debiased)"
    if mean.update.form == "weighted_sum":
        return f"{kernel} + tf.assign of a weighted sum (written by hand)"
    return (f"{kernel} + assign_sub moving averages (assign_moving_average, "
            "ExponentialMovingAverage or by hand)")


def _keras_statistic(variable):
    return (getattr(variable, "synchronization", None) == tf.VariableSynchronization.ON_READ
            and getattr(variable, "aggregation", None) == tf.VariableAggregation.MEAN)


def _renorm_clipping(graph, scope):
    """The bounds clipping a renorm layer's ``r`` and ``d``: ``{"rmin", "rmax", "dmax"}`` (those the
    graph has), the constants of the ``maximum`` / ``minimum`` ops between ``<scope>/renorm_r``
    (``renorm_d``) and the ratio they clip, through the ``tf.cond`` on ``training``."""
    bounds = {}
    for name, lower, upper in (("renorm_r", "rmin", "rmax"), ("renorm_d", None, "dmax")):
        try:
            tensor = graph.get_operation_by_name(f"{scope}/{name}").inputs[0]
        except (KeyError, ValueError, IndexError):
            continue
        for _ in range(12):
            operation = tensor.op
            if operation.type in PASS_THROUGH:
                tensor = operation.inputs[0]
            elif operation.type in ("If", "StatelessIf"):
                body = _then_body(operation)
                node, _ = _returned(body, tensor.value_index) if body is not None else (None, None)
                if body is None or node not in body.arguments:
                    break
                tensor = body.arguments[node].tensor
            elif operation.type in ("Maximum", "Minimum"):
                values = [scalar_constant(GraphValue(t)) for t in operation.inputs]
                if values[1] is None:
                    break
                bound = shortest_float32(values[1])
                if operation.type == "Minimum":
                    bounds[upper] = bound
                elif lower is not None:
                    bounds[lower] = bound
                else:
                    bounds.setdefault(upper, -bound)
                tensor = operation.inputs[0]
            else:
                break
    return bounds


def _common_scope(first, second):
    """The name scope two variables share (``a/b/moving_mean``, ``a/b/moving_variance`` -> ``a/b``)."""
    parts = []
    for left, right in zip(first.split("/")[:-1], second.split("/")[:-1]):
        if left != right:
            break
        parts.append(left)
    return "/".join(parts)


def _normalisation(graph, layer, found, statistics=()):
    """``(epsilon, gamma, beta)`` of the layer, the two variables as op names (or ``None``).

    A fused kernel (``found``, its batch statistic): its ``epsilon`` attribute and its scale and
    offset inputs. Else ``tf.nn.batch_normalization``'s ``inv = rsqrt(variance + epsilon) * gamma``,
    ``output = x * inv + (beta - mean * inv)``: the ``Rsqrt`` whose radicand adds a constant to a
    variance read from the layer's moving variance (its inference path) or, in training mode, to
    the batch variance (or to ``statistics``, the per-ghost-batch moments); gamma the variable that
    multiplies it, beta the one ``mean * inv`` is taken from. ``None`` for what the graph has not."""
    if found.fused_epsilon is not None:
        return (shortest_float32(found.fused_epsilon),
                *(None if value is None else _variable_in(value) for value in (found.scale,
                                                                               found.offset)))
    update = layer.variance.update
    if update.consumed is None:  # computed in a TF2 cond branch: the normalisation is beside it,
        epsilon = _epsilon_in_branch(update.consumed_value)  # or after the cond (its output)
        if epsilon is not None:
            return epsilon, None, None
    consumed = update.consumed.op.name if update.consumed is not None else update.site.name
    names = {layer.variance.name, consumed, *statistics}
    roots = [op for op in graph.get_operations() if op.type == "Rsqrt"]
    # then Sqrt: (x - mean) / sqrt(var + eps) written by hand
    roots += [op for op in graph.get_operations() if op.type == "Sqrt"]
    for operation in roots:
        addition = operation.inputs[0].op
        if addition.type not in ADD:
            continue
        for value, constant in (addition.inputs, addition.inputs[::-1]):
            epsilon = scalar_constant(GraphValue(constant))
            if epsilon is not None and _depends_on(value, names):
                return (shortest_float32(epsilon),
                        *(_scale_and_offset(operation.outputs[0]) if operation.type == "Rsqrt"
                          else (None, None)))
    return None, None, None


def _epsilon_in_branch(variance):
    """The constant added to ``variance`` (a value in a TF2 ``tf.cond`` branch's function) before
    an ``Rsqrt`` or ``Sqrt`` of that function, or ``None``."""
    body = getattr(variance, "body", None)
    if body is None:
        return None
    for name, node in body.nodes.items():
        if node.op not in ("Rsqrt", "Sqrt"):
            continue
        addition = body.value(name).inputs()[0]
        if addition.op_type not in ADD:
            continue
        for value, constant in (addition.inputs(), addition.inputs()[::-1]):
            epsilon = scalar_constant(constant)
            if epsilon is not None and _value_depends_on(value, variance.op_name):
                return shortest_float32(epsilon)
    return None


def _value_depends_on(value, name, depth=0):
    """Whether ``value`` (in the graph or a function body) is computed from the node ``name``."""
    if value.op_name == name:
        return True
    return depth < 4 and any(_value_depends_on(item, name, depth + 1) for item in value.inputs())


def _scale_and_offset(rsqrt):
    """``(gamma, beta)`` variable names around ``rsqrt`` in ``tf.nn.batch_normalization``'s graph
    (see :func:`_normalisation`); ``None`` for one it does not have (``scale=None``, ``center``
    off)."""
    def variable_factor(multiplication, other_than):
        for tensor in multiplication.inputs:
            if tensor is not other_than:
                name = _variable_in(GraphValue(tensor))
                if name is not None:
                    return name
        return None

    gamma, inv = None, rsqrt
    for consumer in rsqrt.consumers():
        if consumer.type == "Mul":
            gamma = variable_factor(consumer, rsqrt)
            if gamma is not None:
                inv = consumer.outputs[0]
                break
    for consumer in inv.consumers():
        if consumer.type != "Mul":
            continue
        for user in consumer.outputs[0].consumers():
            if user.type == "Sub" and user.inputs[1] is consumer.outputs[0]:
                beta = _variable_in(GraphValue(user.inputs[0]))
                if beta is not None:
                    return gamma, beta
    return gamma, None


def _variable_in(value):
    """The variable ``value`` reads, or that one term or factor of it reads (renorm scales gamma by
    ``r`` and shifts beta by ``gamma * d``): its op name, or ``None``."""
    name = variable_name(value)
    if name is None and value.op_type in ("Reshape", "ExpandDims"):  # gamma broadcast (axis=1)
        return _variable_in(value.inputs()[0])
    if name is not None or value.op_type not in ADD | {"Mul"}:
        return name
    return next((name for name in map(variable_name, value.inputs()) if name is not None), None)


def _depends_on(tensor, names, depth=0):
    """Whether ``tensor`` is computed from an op named in ``names`` (a few levels up)."""
    if depth > 8:
        return False
    if tensor.op.name in names or variable_name(GraphValue(tensor)) in names:
        return True
    return any(_depends_on(t, names, depth + 1) for t in tensor.op.inputs)


def is_training_op(operation):
    """Whether ``operation`` updates trainable weights (an optimizer's ``Apply*`` kernel)."""
    return operation.type.startswith(TRAINING_OP_PREFIXES)
