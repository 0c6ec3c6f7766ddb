"""What a traced run adds to its fetches: the operations the run executes (everything its fetches
and targets need, stopping at fed tensors), and among them the consumed values of the moving
averages whose assignments run, the layers' inputs, a momentum computed at run time.

Only tensors the run computes anyway (or is fed) are added, so no tensor is computed that the run
would not have computed: an untaken ``tf.cond`` branch, an evaluation's unused moments.
"""
from __future__ import annotations

import collections.abc
import functools
from dataclasses import dataclass, field, replace
from typing import Optional

import tensorflow as tf  # not bnrepro.graphs.tfv1: its device set-up would change the traced program
from tensorflow.python.framework import composite_tensor

from bnrepro.graphs import discover as discovery
from bnrepro.graphs import liveness


@dataclass
class RunPlan:
    """What the tracer adds to one kind of run: its extra fetches and what they are."""

    extra: dict  # key -> tf.Tensor
    averages: list  # discovery.Average whose update runs
    layers: list  # discovery.Layer whose input the run computes
    trained: bool
    may_change: bool  # runs an assignment or an optimizer: read the state afterwards
    fetched: list  # the names of what the program fetched, for the record
    fed_extra: tuple = ()  # the keys of ``extra`` whose tensor the run is fed: the fed value
    computed_extra: tuple = ()  # (keys, tensors) of the rest of ``extra``: fetched with the run
    keys: dict = field(default_factory=dict)  # key of ``extra`` -> (trace name, role)
    lean: Optional["RunPlan"] = None  # the same run without the layer inputs the inputs
    # policy may leave out, those that check an update kept (itself if none)
    bare: Optional["RunPlan"] = None  # ... without any layer input (the inputs budget is spent)
    # ... without any extra tensor but its own reads of the state after it: a step the keep
    # policy drops (its record is not written; the state after it is still read)
    unkept: Optional["RunPlan"] = None
    # ... without any extra tensor, the state after it not read (``reads_state`` false): a step
    # the keep policy drops that trains, so that it is a step whatever it moves; the tracer reads
    # the state again before the next run that records (``Tracer._refresh``)
    unread: Optional["RunPlan"] = None
    # ... without any extra tensor, the state after it read by the tracer's own read (``after``
    # None): the first step of a kept pair, whose record keeps only that state
    # (``KeepPolicy.state_only``); its run's fetches are those of ``unread``, which TensorFlow has
    # prepared for the dropped steps before it
    state_only: Optional["RunPlan"] = None
    reads_state: bool = True
    # ``state_only``, ``unkept`` or ``unread`` itself: its record keeps only the state after the
    # run, and says so
    keeps_state_only: bool = False
    # the tracked state after the run without reading it again (:func:`state_after_run`): tracked
    # key -> key of ``extra`` holding its value, or None (the run cannot change it); None: read it
    after: Optional[dict] = None
    # TF1 control flow (:mod:`bnrepro.graphs.liveness`): key of ``extra`` -> the conditions on fed
    # predicates under which the run computes it (those always computed are not here)
    conditional: dict = field(default_factory=dict)
    # key -> why it is not fetched: the run may not compute it (a predicate known only in the run)
    unfetchable: dict = field(default_factory=dict)
    fed: frozenset = frozenset()
    # :func:`unordered_reads` of the run: (sentence, conditions on fed predicates or None)
    race_conditions: list = field(default_factory=list)
    # a shared layer's trace name -> whether the run orders its updates (:func:`_in_order`)
    ordered: dict = field(default_factory=dict)
    # layer trace name -> whether the run's optimizer trains that layer (:func:`_trains_layer`)
    layer_trained: dict = field(default_factory=dict)
    # trace names of the layers and averages whose moving-average update the run executes
    updated: frozenset = frozenset()
    # keys of layer inputs kept at every step: the update's own values are not fetched
    # (:func:`fusable`), the input is what checks it
    required_inputs: frozenset = frozenset()
    _variants: dict = field(default_factory=dict, repr=False)

    @functools.cached_property  # a training loop asks at every run; the fields do not change
    def predicates(self):
        """The fed tensors (names) whose values decide which of the extra tensors a run computes."""
        return sorted({name for conditions in [*self.conditional.values(),
                                               *(c for _, c in self.race_conditions if c)]
                       for name, _ in conditions})

    @functools.cached_property
    def races(self):
        """The sentences of the runs this plan stands for: those :meth:`given` kept, or that
        hold whatever is fed (conditions on predicates not known before the run included)."""
        return [sentence for sentence, conditions in self.race_conditions
                if conditions is None or not conditions]

    def given(self, fed_values):
        """The plan of a run whose fed predicates have ``fed_values`` (name -> value): the extra
        tensors the run computes, the others left out (one plan per combination, made once)."""
        if not self.predicates:
            return self
        taken = tuple(liveness.truth(fed_values[name]) for name in self.predicates)
        variant = self._variants.get(taken)
        if variant is None:
            values = dict(zip(self.predicates, taken))
            dropped = {key for key, conditions in self.conditional.items()
                       if not liveness.holds(conditions, values)}
            variant = replace(
                self, extra={key: tensor for key, tensor in self.extra.items()
                             if key not in dropped},
                conditional={}, lean=None, bare=None, unkept=None, unread=None, state_only=None,
                _variants={},
                race_conditions=[(sentence, liveness.ALWAYS) for sentence, conditions
                                 in self.race_conditions
                                 if conditions is None or liveness.holds(conditions, values)]
            ).arrange(self.fed)
            self._variants[taken] = variant
        return variant

    def arrange(self, fed):
        """Fill ``keys``' dependants: which extra tensors the run is fed (``fed``: fed tensor
        names) and which it computes; ``lean``, the plan of a step whose record keeps no layer
        input but those that check an update (:func:`fusable`), ``bare``, of a step whose record
        keeps none (the inputs budget is spent), ``unkept``, of a step the keep policy drops
        (nothing fetched but the state after it), ``unread``, of such a step that trains
        (nothing fetched, the state not read), and ``state_only``, of the first step of a kept
        pair (nothing fetched, the state read after it), so that a run does not fetch what it
        would throw away."""
        self.fed = frozenset(fed)
        self.fed_extra = tuple(key for key, tensor in self.extra.items() if tensor.name in fed)
        computed = [(key, tensor) for key, tensor in self.extra.items()
                    if key not in self.fed_extra]
        self.computed_extra = (tuple(key for key, _ in computed),
                               tuple(tensor for _, tensor in computed))
        if not self.reads_state:  # nothing fetched: nothing to leave out
            self.lean = self.bare = self.unkept = self.unread = self.state_only = self
            return self
        every_input = {key for key in self.extra
                       if base_role(self.keys[key][1]) == "batch_input"}
        self.lean = self._without(every_input - self.required_inputs, fed)
        self.bare = self._without(every_input, fed)
        state_reads = {key for key in (self.after or {}).values() if key is not None}
        self.unkept = replace(self._without(set(self.extra) - state_reads, fed),
                              keeps_state_only=True)
        nothing = self._without(set(self.extra), fed)
        self.unread = replace(nothing, reads_state=False, keeps_state_only=True,
                              unread=None).arrange(fed)
        self.state_only = replace(nothing, after=None, keeps_state_only=True)
        return self

    def _without(self, keys, fed):
        """This plan without the extra tensors ``keys`` (itself when there are none)."""
        if not keys:
            return self
        return replace(
            self, extra={key: tensor for key, tensor in self.extra.items() if key not in keys},
            layers=[], conditional={key: conditions for key, conditions
                                    in self.conditional.items() if key not in keys},
            required_inputs=self.required_inputs - keys, lean=None, bare=None, unkept=None,
            unread=None, state_only=None, _variants={}).arrange(fed)


IN_BRANCH_NOTE = ("batch statistics computed inside a TF2 tf.cond branch (an If op's function) "
                  "cannot be fetched; the layer's input, kept at every step, checks the update "
                  "instead")
FUSABLE_NOTE = ("a fused kernel's batch statistics are not fetched: fetching them would keep "
                "TensorFlow's graph rewrites (remapper, oneDNN) from fusing the kernel with the "
                "activation after it, which changes the program's numbers; the layer's input, kept "
                "at every step, checks the update instead")


def fusable(tensor):
    """Whether fetching ``tensor`` can change how TensorFlow computes the run: an output of a
    training ``FusedBatchNorm`` kernel, which the graph rewrites (Grappler's remapper, oneDNN) may
    fuse with a following ``Relu`` (or ``Add`` + ``Relu``) into one kernel, unless a fetch keeps
    the kernel's node as it is; the fused kernel rounds differently. Measured on
    ``tests/zoo/programs/dcgan_alternating.py``: moving means 4e-6 apart when its outputs were
    fetched, the same numbers when only the layers' inputs were, or with oneDNN's rewrites off.
    The layer's input is the output of a node that fusions keep (the last of ``Conv2D`` +
    ``BiasAdd``)."""
    return tensor.op.type.startswith("FusedBatchNorm")


def _every_average(layer):
    """The averages of every application of ``layer``."""
    return [average for application in layer.applications or [layer]
            for average in application.averages]


def _trained_variables(graph, executed):
    """The op names of the variables the run's optimizer kernels (``Apply*``) update."""
    names = set()
    for name in executed:
        operation = graph.get_operation_by_name(name)
        if discovery.is_training_op(operation) and operation.inputs:
            variable = discovery.variable_name(discovery.GraphValue(operation.inputs[0]))
            names.add(variable or name)
    return names


def _trains_layer(layer, trained_variables, trainable, executed):
    """Whether a run whose optimizer updates ``trained_variables`` trains ``layer``: its gamma or
    beta, or, for a layer without either, a trainable variable its input is computed from. A run
    that trains another network only (a GAN's discriminator step runs the generator's layers, its
    optimizer's ``var_list`` leaving them alone) does not. ``None`` when nothing tells (no gamma
    or beta, no trainable variable before the layer): the run's own flag stands."""
    own = {variable.op.name for variable in (layer.gamma, layer.beta) if variable is not None}
    if own:
        return bool(own & trained_variables)
    if layer.inputs is None:
        return None
    upstream = _needed(layer.inputs.op, executed) & trainable
    return bool(upstream & trained_variables) if upstream else None


def base_role(role):
    """A record role without a shared layer's ``updates.<index>.``: ``batch_input``, ..."""
    return role.rsplit(".", 1)[-1]


def build_plan(found, prefix, graph, fetches, feeds, variables=None):
    """The :class:`RunPlan` of runs fetching ``fetches`` (names) with ``feeds`` (tensor names) fed,
    for the layers and averages ``found`` (:class:`~bnrepro.graphs.discover.Discovery`) named in the
    trace with ``prefix``: only what such a run computes is added to it, and the reads that give the
    tracked ``variables`` (trace key -> variable) after the run (:func:`state_after_run`), if the
    graph has them."""
    executed = _executed(graph, fetches, set(feeds))
    fed = set(feeds)

    def computed(tensor):  # by the run itself, or fed to it
        return tensor.op.name in executed or tensor.name in fed

    extra, averages, layers, ordered = {}, [], [], {}
    unfetchable, required_inputs = {}, set()
    for layer in found.layers:
        name = prefix + layer.name
        applications = layer.applications or [layer]
        if len(applications) > 1:  # a shared layer: its updates in the order they run
            applications, ordered[name] = _in_order(
                [a for a in applications if a.mean.update.site.name in executed], executed)
        for index, application in enumerate(applications):
            # a shared layer's roles are "updates.<index>.<role>" (bnrepro.trace: record["bn"])
            within = f"updates.{index}." if name in ordered else ""
            runs = [a for a in application.averages if a.update.site.name in executed]
            for role, average in zip(("batch_mean", "batch_variance"), application.averages):
                consumed = average.update.consumed
                if average in runs and (consumed is None or computed(consumed)):
                    if consumed is None or fusable(consumed):
                        unfetchable[str((name, within + role))] = (
                            FUSABLE_NOTE if consumed is not None else IN_BRANCH_NOTE)
                        required_inputs.add(str((name, within + "batch_input")))
                        continue
                    extra[(name, within + role)] = average.update.consumed
                    if average.update.weight_tensor is not None:
                        extra[(name, within + role + " weight")] = average.update.weight_tensor
            averages += runs
            if application.inputs is not None and computed(application.inputs):
                layers.append(application)
                extra[(name, within + "batch_input")] = application.inputs
    for average in found.averages:
        if average.update.site.name in executed:
            averages.append(average)
            extra[(prefix + average.name, "consumed")] = average.update.consumed
            if average.update.weight_tensor is not None:
                extra[(prefix + average.name, "weight")] = average.update.weight_tensor
    trained_variables = _trained_variables(graph, executed)
    trained = bool(trained_variables)
    with graph.as_default():
        trainable = {variable.op.name for variable in tf.compat.v1.trainable_variables()}
    layer_trained = {prefix + layer.name: _trains_layer(layer, trained_variables, trainable,
                                                        executed)
                     for layer in found.layers if trained}
    layer_trained = {name: flag for name, flag in layer_trained.items() if flag is not None}
    assigns = any(graph.get_operation_by_name(name).type in discovery.ASSIGN | discovery.ASSIGN_SUB
                  | {"If", "StatelessIf", "NoOp"} for name in executed)
    alive = liveness.Liveness(fed)
    conditional = {}
    for key, tensor in list(extra.items()):
        conditions = alive.alive_when(tensor)
        if conditions == liveness.ALWAYS:
            continue
        if conditions is None:
            unfetchable[str(key)] = (f"{tensor.name} is not fetched: the run may not compute it "
                                     "(inside a tf.cond whose predicate the run computes itself)")
        if conditions is None or conditions == liveness.NEVER:
            del extra[key]
        else:
            conditional[str(key)] = conditions
    after = state_after_run(variables or {}, executed, fed)
    if after is not None:
        for key, tensor in after.items():
            if tensor is not None:
                extra[(*key, "after the run")] = tensor
        after = {key: None if tensor is None else str((*key, "after the run"))
                 for key, tensor in after.items()}
    plan = RunPlan({str(key): tensor for key, tensor in extra.items()}, averages, layers,
                   trained, bool(averages) or trained or assigns, list(fetches)[:20],
                   keys=dict(zip((str(key) for key in extra), extra)), after=after,
                   conditional=conditional, unfetchable=unfetchable, ordered=ordered,
                   required_inputs=frozenset(required_inputs) & set(map(str, extra)),
                   layer_trained=layer_trained,
                   updated=frozenset(prefix + layer.name for layer in found.layers
                                     if any(a in averages for a in _every_average(layer)))
                   | frozenset(prefix + a.name for a in found.averages if a in averages)
                   ).arrange(fed)
    plan.race_conditions = unordered_reads([average.variable for average in averages], executed,
                                           alive)
    return plan


# --- reads a run does not order against its updates ------------------------------------------------

def _in_order(applications, executed):
    """A shared layer's applications that run, in the order their updates run: ``(sorted, True)``
    when each one's update needs the one before (through inputs or control inputs), else ``(as
    found, False)``: the run orders them no way, and the thread schedule decides."""
    needs = {id(a): _needed(a.mean.update.site, executed) for a in applications}
    ranked = sorted(applications, key=lambda a: len(needs[id(a)]))
    chained = all(earlier.mean.update.site.name in needs[id(later)]
                  for earlier, later in zip(ranked, ranked[1:]))
    return (ranked, True) if chained else (applications, False)


def unordered_reads(variables, executed, alive):
    """For each of ``variables`` (tf.Variable) the run both updates and reads elsewhere, in no
    fixed order against the update (neither needs the other): ``(sentence, conditions)``, the
    sentence naming the reading operation, the conditions (:mod:`bnrepro.graphs.liveness`) those
    under which the run executes both (``None``: not known before the run).

    The result of such a read depends on the executor's thread schedule (a ref variable's update
    even changes in place the buffer a pending reader uses), so the program's own numbers can
    differ from run to run, traced or not: an evaluation that reads the moving statistics while
    the same run updates them (``tf.cond`` branches built outside the cond)."""
    found = []
    for variable in {id(variable): variable for variable in variables}.values():
        writers, readers = _writers_and_readers(variable, executed, alive)
        seen = set()
        for writer in writers:
            before, after = _needed(writer, executed), _needing(writer, executed)
            for reader, path in sorted(readers, key=lambda pair: pair[0].name):
                if reader.name in before or reader.name in after:
                    continue
                conditions = _both(alive, reader, path, writer, variable)
                if conditions == liveness.NEVER or conditions in seen:
                    continue
                seen.add(conditions)
                found.append((f"{reader.name} uses {variable.op.name} while {writer.name} updates "
                              "it in the same run, in no fixed order: unless the update leaves it "
                              "unchanged, that run's results depend on thread scheduling",
                              conditions))
    return found


def _writers_and_readers(variable, executed, alive):
    """The executed operations that assign ``variable``, and ``(operation, path conditions)`` for
    those that use its value: reached through ``Identity`` (a ref variable's read forwards its
    buffer, a resource handle's is the handle) and TF1 ``Switch``/``Merge``, the value reaching
    the operation only under the conditions of the ``Switch`` outputs on its way."""
    source = getattr(variable, "handle", None)
    source = variable.op.outputs[0] if source is None or source.dtype != tf.resource else source
    writers, readers, stack, seen = [], [], [(source, liveness.ALWAYS)], set()
    while stack:
        tensor, path = stack.pop()
        for consumer in tensor.consumers():
            if consumer.name in seen or consumer.name not in executed:
                continue
            seen.add(consumer.name)
            if consumer.type in WRITES:
                writers.append(consumer)
            elif consumer.type in ("Identity", "RefIdentity") or consumer.type in liveness.MERGE:
                stack.append((consumer.outputs[0], path))
            elif consumer.type in liveness.SWITCH:
                stack += [(output, _and(path, alive.alive_when(output)))
                          for output in consumer.outputs]
            elif not _ignores(consumer.type, consumer.get_attr, _input_index(consumer, tensor)):
                readers.append((consumer, path))
    return writers, readers


def _input_index(operation, tensor):
    return next((index for index, item in enumerate(operation.inputs) if item.name == tensor.name),
                None)


def _ignores(op_type, attribute, index):
    """Whether an operation of ``op_type`` (attributes by ``attribute(name)``) leaves its input
    ``index`` unread: a training ``FusedBatchNorm`` takes the moving mean and variance (inputs 3
    and 4, as tf_keras passes them) but with an ``exponential_avg_factor`` of 1 (all but V3's
    own in-kernel averaging) computes from the batch alone."""
    if not op_type.startswith("FusedBatchNorm") or index not in (3, 4):
        return False
    try:
        training = attribute("is_training")
    except (ValueError, KeyError):
        return False
    try:
        factor = attribute("exponential_avg_factor")
    except (ValueError, KeyError):
        factor = 1.0
    return bool(training) and factor == 1.0


def _and(*parts):
    """Conditions that all hold: ``NEVER`` if one never does, ``None`` if one is unknown."""
    if liveness.NEVER in parts:
        return liveness.NEVER
    if None in parts:
        return None
    return liveness.joined(parts)


WRITES = discovery.ASSIGN | discovery.ASSIGN_SUB | {"AssignAdd", "AssignAddVariableOp"}


def _both(alive, reader, path, writer, variable):
    """The conditions under which a run executes the writer and the reader reads the variable
    (``path``: the conditions on the way from it; ``NEVER``: the two branches of one
    ``tf.cond``; ``None``: not known before the run); a TF2 ``If`` reads it only in the branches
    whose function uses it."""
    return _and(path, _reads_when(alive, reader, variable), _runs_when(alive, writer))


def _runs_when(alive, operation):
    return alive.alive_when(operation.outputs[0]) if operation.outputs else alive.runs_when(
        operation)


def _reads_when(alive, reader, variable):
    """When ``reader`` uses ``variable``: when it runs, or for an ``If`` op when it takes a branch
    whose function uses the argument carrying the variable."""
    runs = _runs_when(alive, reader)
    if reader.type not in ("If", "StatelessIf") or runs in (None, liveness.NEVER):
        return runs
    handle = getattr(variable, "handle", None)
    arguments = [index for index, tensor in enumerate(reader.inputs[1:])
                 if handle is not None and _carries(tensor, handle)]
    reading = [value for attribute, value in (("then_branch", True), ("else_branch", False))
               if _body_uses(reader, attribute, arguments)]
    if len(reading) != 1:
        return runs if reading else liveness.NEVER
    predicate = alive.predicate(reader.inputs[0])
    if predicate is None:
        return None
    name, seen_value = predicate
    if name is None:  # a constant predicate
        return runs if seen_value == reading[0] else liveness.NEVER
    return liveness.joined([runs, {(name, seen_value == reading[0])}])


def _carries(tensor, handle):
    """Whether ``tensor`` is ``handle`` itself or through ``Identity``."""
    while tensor is not handle and tensor.op.type == "Identity" and tensor.op.inputs:
        tensor = tensor.op.inputs[0]
    return tensor is handle


def _body_uses(operation, attribute, arguments):
    """Whether the branch function ``attribute`` of an ``If`` op uses any of its ``arguments``
    (indices among the op's inputs after the predicate)."""
    function = operation.graph._get_function(operation.get_attr(attribute).name)  # noqa: SLF001
    if function is None:
        return True
    definition = getattr(function, "definition", None) or function.cached_definition
    names = {definition.signature.input_arg[index].name for index in arguments
             if index < len(definition.signature.input_arg)}

    def node_attribute(node):
        def read(name):
            if name not in node.attr:
                raise KeyError(name)
            value = node.attr[name]  # a NodeDef's AttrValue: b for a bool, f for a float
            return value.b if value.WhichOneof("value") == "b" else value.f
        return read

    consumers = {}  # node (or argument) name -> [(consuming node, input index)]
    for node in definition.node_def:
        for index, reference in enumerate(node.input):
            consumers.setdefault(reference.split(":")[0].lstrip("^"), []).append((node, index))
    returned = {reference.split(":")[0] for reference in definition.ret.values()}
    stack, seen = list(names), set()
    while stack:  # through reads of the handle, to what uses the value (or the branch returns)
        name = stack.pop()
        if name in returned:
            return True
        for node, index in consumers.get(name, []):
            if node.op in ("ReadVariableOp", "Identity"):
                if node.name not in seen:
                    seen.add(node.name)
                    stack.append(node.name)
            elif node.op != "OptionalFromValue" and not _ignores(node.op, node_attribute(node),
                                                                   index):
                return True  # (OptionalFromValue hands the same read to the gradient's branch)
    return False


def _needed(operation, executed):
    """The executed operations ``operation`` needs (inputs and control inputs, transitively)."""
    return _reachable(operation, executed, lambda current: [
        tensor.op for tensor in current.inputs] + list(current.control_inputs))


def _needing(operation, executed):
    """The executed operations that need ``operation`` (its consumers, transitively)."""
    return _reachable(operation, executed, lambda current: [
        consumer for tensor in current.outputs for consumer in tensor.consumers()]
        + list(current._control_outputs))  # noqa: SLF001


def _reachable(operation, executed, neighbours):
    """The names of ``operation`` and of the executed operations ``neighbours`` leads to from it."""
    stack, seen = [operation], set()
    while stack:
        current = stack.pop()
        if current.name in seen or current.name not in executed:
            continue
        seen.add(current.name)
        stack += neighbours(current)
    return seen


# --- the state after a run, from the run itself ------------------------------------------------

HANDLE_READS = frozenset({"ReadVariableOp", "VarIsInitializedOp", "VariableShape"})
MAX_READS_TRIED = 8  # reads of one variable looked at as its read after the run


def state_after_run(variables, executed, fed):
    """Per tracked key, where its variable's value after a run comes from without a second call:
    ``None`` when none of the run's operations can change it (its value before the run stands),
    else a ``ReadVariableOp`` that every operation of the run that can change it precedes, through
    inputs or control inputs, and that needs nothing the run does not execute (a read under
    ``tf.control_dependencies([train_op])``). ``None`` as a whole when a variable has neither (a
    ref variable, whose updates are not ordered before a read of it this way; an update no read
    follows): then the tracer reads the state after the run.

    An operation that can change a resource variable is any executed one its handle reaches,
    through ``Identity``, other than a read (an assignment, an optimizer's ``ResourceApply*``, a
    ``tf.cond``'s ``If`` that may assign in a branch). A resource variable's read is a snapshot:
    a later update copies a buffer that is still read, so the value fetched is the one read."""
    sources, alive = {}, liveness.Liveness(fed)
    for key, variable in variables.items():
        handle = getattr(variable, "handle", None)
        if handle is None or handle.dtype != tf.resource:
            return None
        users = _handle_users(handle)
        writers = {operation.name for operation in users if operation.name in executed
                   and operation.type not in HANDLE_READS and operation.type != "Identity"}
        if not writers:
            sources[key] = None
            continue
        reads = [operation for operation in users if operation.type == "ReadVariableOp"
                 and operation.name not in executed][:MAX_READS_TRIED]
        source = next((read.outputs[0] for read in reads
                       if _follows(read, writers, executed, fed)
                       and alive.alive_when(read.outputs[0]) == liveness.ALWAYS), None)
        if source is None:
            return None
        sources[key] = source
    return sources


def _handle_users(handle):
    """The operations a resource handle reaches, directly or through ``Identity``."""
    users, stack, seen = [], [handle], set()
    while stack:
        tensor = stack.pop()
        for consumer in tensor.consumers():
            if consumer.name in seen:
                continue
            seen.add(consumer.name)
            users.append(consumer)
            if consumer.type == "Identity":
                stack.append(consumer.outputs[0])
    return users


def _follows(read, writers, executed, fed):
    """Whether every operation ``read`` needs (:func:`_executed` of it) is executed by the run,
    and every one of ``writers`` is among them."""
    needed = _executed(read.graph, [read.name], fed) - {read.name}
    return needed <= executed and writers <= needed


# --- which operations a run executes --------------------------------------------------------------

def _graph_element(graph, item):
    try:
        return graph.as_graph_element(item, allow_tensor=True, allow_operation=True)
    except (TypeError, ValueError, KeyError):
        pass
    for attribute in ("op",):
        candidate = getattr(item, attribute, None)
        if isinstance(candidate, tf.Operation):
            return candidate
    return None


def identity_key(fetches, feed_dict):
    """``(key, objects)``: a run's fetches and feed keys named by the objects themselves, for
    :meth:`bnrepro.graphs.tracer.Tracer._run_plan`; ``(None, None)`` unless the fetches are one plain element or a flat
    list or tuple of them and every feed key is one. Whoever keeps the key keeps ``objects``: only a
    live object's ``id`` is its own."""
    fetched = tuple(fetches) if isinstance(fetches, (list, tuple)) else (fetches,)
    fed = tuple(feed_dict) if feed_dict else ()
    fetch_ids, feed_ids = _element_ids(fetched), _element_ids(fed)
    if fetch_ids is None or feed_ids is None:
        return None, None
    return (fetch_ids, feed_ids), (fetched, fed)


def _element_ids(items):
    """Per item its ``id`` (a tensor, an operation, a variable: its graph element is fixed) or the
    name itself (a string); ``None`` when an item is anything else (a nested structure, a sparse
    tensor: resolving those is :func:`fetch_names`' job)."""
    ids = []
    for item in items:
        if isinstance(item, (tf.Tensor, tf.Operation, tf.Variable)):
            ids.append(id(item))
        elif type(item) is str:
            ids.append(item)
        else:
            return None
    return tuple(ids)


def fetch_names(graph, fetches):
    """The names of the graph elements in a ``session.run`` fetch structure."""
    names = []
    for item in _fetch_leaves(fetches):
        element = _graph_element(graph, item)
        if element is not None:
            names.append(element.name)
    return names


def _fetch_leaves(fetches):
    """The leaves of a fetch structure, walked as ``session.run`` walks it: lists, tuples and
    named tuples in order, mappings by their values in their own order (never sorted: a
    ``MonitoredSession`` keys its hooks' fetches by the hook objects), ``attrs`` classes by their
    fields, composite tensors (a ``SparseTensor``) by their component tensors."""
    if isinstance(fetches, (list, tuple)):
        return [leaf for item in fetches for leaf in _fetch_leaves(item)]
    if isinstance(fetches, collections.abc.Mapping):
        return [leaf for item in fetches.values() for leaf in _fetch_leaves(item)]
    fields = getattr(type(fetches), "__attrs_attrs__", None)
    if fields is not None:
        return [leaf for item in fields for leaf in _fetch_leaves(getattr(fetches, item.name))]
    if isinstance(fetches, composite_tensor.CompositeTensor):
        return tf.nest.flatten(fetches, expand_composites=True)
    return [fetches]


def feed_names(graph, feed_dict):
    names = []
    for key in (feed_dict or {}):
        name = _fed_name(graph, key)
        if name is not None:
            names.append(name)
    return names


def _fed_name(graph, key):
    """The name of the tensor a ``feed_dict`` key feeds, or ``None``."""
    element = _graph_element(graph, key)
    return element.name if isinstance(element, tf.Tensor) else None


def fed_keys(graph, feed_dict, names):
    """The keys of ``feed_dict`` that feed the tensors named in ``names``: name -> key."""
    wanted, keys = set(names), {}
    for key in (feed_dict or {}):
        name = _fed_name(graph, key)
        if name in wanted:
            keys[name] = key
    return keys


def _executed(graph, fetches, fed):
    """The names of every operation a run fetching ``fetches`` (tensor or op names) executes:
    everything they need through inputs and control inputs, not past a fed tensor."""
    stack, seen = [], set()
    for name in fetches:
        element = graph.as_graph_element(name, allow_tensor=True, allow_operation=True)
        operation = element if isinstance(element, tf.Operation) else element.op
        if isinstance(element, tf.Tensor) and element.name in fed:
            continue
        stack.append(operation)
    while stack:
        operation = stack.pop()
        if operation.name in seen:
            continue
        seen.add(operation.name)
        for tensor in operation.inputs:
            if tensor.name not in fed:
                stack.append(tensor.op)
        stack.extend(operation.control_inputs)
    return seen
