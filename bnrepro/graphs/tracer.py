"""Trace the moving statistics of any TF1-style program, unmodified: every run that moves them.

:class:`Tracer` watches the runs of a ``tf.compat.v1.Session``: ``Session.run`` (and so
``MonitoredTrainingSession``, which calls it) and the callables Keras' graph-mode ``fit`` makes with
``Session._make_callable_from_options``. For each graph it first finds the moving averages
(:func:`bnrepro.graphs.discover.discover`). For each run it works out which operations the run executes
(everything its fetches and targets need, stopping at fed tensors) and adds to the run's fetches
only tensors among them: each consumed value whose assignment runs, the input of each layer that
runs, a momentum computed at run time. So the values are the ones the update used, fetched in the
same run, and no tensor is computed that the run would not have computed (an untaken ``tf.cond``
branch, an evaluation's unused moments). What the run returns to the program is exactly what it
would have returned.

After a run that can change the averages (it runs an assignment or an optimizer), one more run
reads the tracked variables (a callable made once per session, run in the calling thread). A run is a step of the trace when a tracked variable changed or when
it trained (an optimizer's ``Apply*`` kernel ran), so that statistics that never move while the
weights do show. Each step records the statistics after it (the previous step's are the ones
before), the consumed values, the layer inputs, and what the run fetched and whether it trained.

Three ways in, all the same tracer:

* ``bnrepro trace --out DIR SCRIPT [ARGS...]`` (:func:`trace_script`);
* ``with bnrepro.tracing("DIR") as tracer:`` around the program's own session code;
* ``bnrepro.TraceHook("DIR")``, a ``tf.compat.v1.train.SessionRunHook`` for
  ``MonitoredTrainingSession``, which adds its fetches through ``SessionRunArgs`` as TensorFlow's own
  hooks do.

The trace is ``bnrepro-trace/2`` (:mod:`bnrepro.trace`), written when tracing ends.
"""
from __future__ import annotations

import collections.abc
import contextlib
import os
import runpy
import sys
import threading
import traceback
import weakref
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from bnrepro.graphs import discover as discovery
from bnrepro.outdir import output_directory
import tensorflow as tf  # not bnrepro.graphs.tfv1: its device set-up would change the traced program

from tensorflow.core.protobuf import config_pb2
from tensorflow.python.client import pywrap_tf_session
from tensorflow.python.client import session as session_module
from tensorflow.python.framework import composite_tensor

tf1 = tf.compat.v1
from bnrepro.trace import FORMAT_2, TraceWriter, make_header

MAX_INPUT_VALUES = 1_000_000  # a layer input larger than this is left out of the trace
# By default a step's record keeps the layers' inputs for the first INPUTS_FIRST_STEPS steps and
# then every INPUTS_EVERY-th: a short script is checked from its inputs at every step, a long one
# neither holds a batch per step in memory (64 KiB for a 128x128 input) nor pays to fetch it
# (measured by scripts/tracer_overhead.py: some 5-8% of a small net's step when kept every step).
INPUTS_FIRST_STEPS = 100
INPUTS_EVERY = 100


def default_inputs_at(step):
    """Whether record ``step`` keeps the layers' inputs by default."""
    return step <= INPUTS_FIRST_STEPS or step % INPUTS_EVERY == 0
MAX_IDENTITY_PLANS = 1024  # plans a graph keeps by fetched objects (_GraphState.plans_by_identity)


@dataclass
class _RunPlan:
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
    lean: Optional["_RunPlan"] = None  # the same run without the layer inputs (itself if none)

    def arrange(self, fed):
        """Fill ``keys``' dependants: which extra tensors the run is fed (``fed``: fed tensor
        names) and which it computes; and ``lean``, the plan of a step whose record keeps no
        layer input, so that a run does not fetch an input it would throw away."""
        self.fed_extra = tuple(key for key, tensor in self.extra.items() if tensor.name in fed)
        computed = [(key, tensor) for key, tensor in self.extra.items()
                    if key not in self.fed_extra]
        self.computed_extra = (tuple(key for key, _ in computed),
                               tuple(tensor for _, tensor in computed))
        inputs = {key for key in self.extra if self.keys[key][1] == "batch_input"}
        if not inputs:
            self.lean = self
            return self
        self.lean = _RunPlan({key: tensor for key, tensor in self.extra.items()
                              if key not in inputs}, self.averages, [], self.trained,
                             self.may_change, self.fetched, keys=self.keys)
        self.lean.arrange(fed)
        return self


@dataclass
class _GraphState:
    """The tracer's view of one graph: its discovery, names in the trace, the last state read."""

    discovery: object
    prefix: str
    variables: dict = field(default_factory=dict)  # trace key -> tf.Variable
    last: Optional[dict] = None  # trace key -> value, the state after the last run
    plans: dict = field(default_factory=dict)  # run signature -> _RunPlan
    reader: Optional[dict] = None  # trace key -> read tensor
    moving_keys: set = field(default_factory=set)  # the keys of the averaged variables
    version: int = -1  # graph.version when discovered: a higher one means the graph grew
    plans_by_identity: dict = field(default_factory=dict)  # _identity_key -> (_RunPlan, objects)
    readers: dict = field(default_factory=dict)  # id(session) -> _StateReader of ``reader``


class _StateReader:
    """Reads a graph's tracked variables in one session: what ``session.run(variables)`` returns,
    as a list, through a ``Session::MakeCallable`` handle. This read follows every run that may
    change the statistics; run as a callable, in the calling thread, it costs a fraction of a
    ``session.run`` (no fetch mapping, no hand-over to TensorFlow's threads).

    ``BaseSession._make_callable_from_options`` makes the same callable but keeps the session alive
    for as long as the callable lives. This one holds the session weakly, so a session the program
    drops unclosed is freed as it would be untraced, and takes itself out of ``readers``
    (``id(session)`` -> reader, where it puts itself) when the session goes."""

    def __init__(self, session, variables, readers):
        self._handle = None
        graph = session.graph
        options = config_pb2.CallableOptions(fetch=[  # the tensors session.run fetches for them
            graph.as_graph_element(variable, allow_tensor=True, allow_operation=False).name
            for variable in variables])
        # in the calling thread: for a few reads, handing them to the inter-op threads and
        # waiting (often for a parked thread to wake) costs more than the reads
        options.run_options.inter_op_thread_pool = -1
        key = id(session)
        self.session = weakref.ref(session, lambda _: readers.pop(key, None))
        session._extend_graph()  # noqa: SLF001  as _make_callable_from_options: add new operations
        buffer = pywrap_tf_session.TF_NewBufferFromString(options.SerializeToString())
        try:
            self._handle = pywrap_tf_session.TF_SessionMakeCallable(
                session._session, buffer)  # noqa: SLF001
        finally:
            pywrap_tf_session.TF_DeleteBuffer(buffer)
        readers[key] = self

    def __call__(self):
        """The variables' values, in order (arrays that may share the variables' buffers)."""
        return pywrap_tf_session.TF_SessionRunCallable(
            self.session()._session, self._handle, [], None)  # noqa: SLF001

    def __del__(self):
        """Release the handle, as ``BaseSession._Callable`` does, while the session is open (a
        closed or deleted session has released it)."""
        session = self.session() if hasattr(self, "session") else None
        try:
            if (self._handle is not None and session is not None
                    and session._session is not None and not session._closed):  # noqa: SLF001
                pywrap_tf_session.TF_SessionReleaseCallable(session._session,  # noqa: SLF001
                                                            self._handle)
        except (AttributeError, TypeError):  # at interpreter exit
            pass


class Tracer:
    """Records the moving statistics of every run of every session while installed."""

    def __init__(self, *, inputs_every=None, program=None, inputs_at=None):
        """Which steps' records keep the layers' inputs: ``inputs_at(step)`` says for step
        ``step`` (a record's number, step 0 the initial state); else every ``inputs_every``-th;
        else :func:`default_inputs_at`. The batch statistics are kept at every step."""
        if inputs_at is None:
            inputs_at = default_inputs_at if inputs_every is None else (
                lambda step: step % inputs_every == 0)
        self.inputs_at = inputs_at
        self.program = program or []
        # id(graph) -> _GraphState; a state's discovery holds the graph's operations, so a traced
        # graph lives as long as the tracer and its id is not reused
        self.graphs = {}
        self.layers = {}  # trace name -> header entry
        self.averages = {}  # trace name -> header entry
        self.records = []
        self.runs = 0  # every run seen
        self.moved_runs = 0
        self.trained_runs = 0
        self._originals = None
        # per thread, the run in progress whose _do_run is to fetch a plan's extra tensors
        self._pending = threading.local()

    # --- installing -------------------------------------------------------------------------------

    def install(self):
        """Wrap ``BaseSession.run``, ``BaseSession._make_callable_from_options`` and
        ``BaseSession._do_run`` (where a traced run's extra tensors join its fetches)."""
        base = session_module.BaseSession
        if self._originals is not None:
            return self
        self._originals = (base.run, base._make_callable_from_options,  # noqa: SLF001
                           base._do_run)  # noqa: SLF001
        original_run, original_callable, original_do_run = self._originals
        tracer = self

        def run(session, fetches, feed_dict=None, options=None, run_metadata=None):
            return tracer._traced_run(original_run, session, fetches, feed_dict, options,
                                      run_metadata)

        def make_callable_from_options(session, callable_options):
            return tracer._traced_callable(original_callable, session, callable_options)

        def do_run(session, handle, target_list, fetch_list, feed_dict, options, run_metadata):
            return tracer._traced_do_run(original_do_run, session, handle, target_list,
                                         fetch_list, feed_dict, options, run_metadata)

        base.run = run
        base._make_callable_from_options = make_callable_from_options  # noqa: SLF001
        base._do_run = do_run  # noqa: SLF001
        return self

    def uninstall(self):
        if self._originals is None:
            return
        base = session_module.BaseSession
        (base.run, base._make_callable_from_options,  # noqa: SLF001
         base._do_run) = self._originals  # noqa: SLF001
        self._originals = None

    def _raw_run(self, session, fetches, feed_dict=None):
        """A run of the tracer's own, not traced (the session's own ``run`` when not installed:
        a hook's session)."""
        if self._originals is None:
            return session.run(fetches, feed_dict)
        return self._originals[0](session, fetches, feed_dict)

    # --- one run ----------------------------------------------------------------------------------

    def _traced_run(self, original_run, session, fetches, feed_dict, options, run_metadata):
        graph = session.graph
        state = self._graph_state(graph)
        if state is None:
            return original_run(session, fetches, feed_dict, options, run_metadata)
        plan = self._run_plan(state, graph, fetches, feed_dict)
        self.before_change(session, state, plan)
        if not self.inputs_at(len(self.records)):  # the record this run may make keeps no input
            plan = plan.lean
        pending = self._pending  # for _traced_do_run
        pending.session, pending.plan, pending.extra = session, plan if plan.extra else None, {}
        try:
            results = original_run(session, fetches, feed_dict, options, run_metadata)
        finally:
            extra, pending.session, pending.plan, pending.extra = pending.extra, None, None, None
        self.after_run(session, state, plan, extra, "Session.run", fresh=True)
        return results

    def _traced_do_run(self, original_do_run, session, handle, target_list, fetch_list, feed_dict,
                       options, run_metadata):
        """``BaseSession._do_run``, the one TensorFlow call of a ``session.run`` (its fetches
        resolved, its feeds converted): adds the extra tensors of the plan :meth:`_traced_run` left
        for this session's run in this thread, and leaves their values there (a fed one's is a copy
        of its fed value, which ``session.run`` would return). Added here rather than to
        ``session.run``'s fetches, they cost no fetch mapping (some 15 µs a tensor) and what
        ``session.run`` makes of the program's own fetches is untouched. Its outputs are arrays of
        their own (TensorFlow hands over a buffer only when nothing else holds it, else copies):
        kept without a copy."""
        pending = self._pending
        plan = getattr(pending, "plan", None)
        if plan is None or pending.session is not session or handle is not None:
            return original_do_run(session, handle, target_list, fetch_list, feed_dict, options,
                                   run_metadata)
        pending.plan = None  # this run's only
        keys, tensors = plan.computed_extra
        count = len(fetch_list)
        results = original_do_run(session, handle, target_list, [*fetch_list, *tensors],
                                  feed_dict, options, run_metadata)
        extra = dict(zip(keys, results[count:]))
        if plan.fed_extra:  # in the plan's order, as recorded
            fed = {reference.deref().name: value for reference, value in feed_dict.items()}
            extra = {key: extra[key] if key in extra else np.array(fed[tensor.name], copy=True)
                     for key, tensor in plan.extra.items()}
        pending.extra = extra
        return results[:count]

    def _traced_callable(self, original_callable, session, callable_options):
        state = self._graph_state(session.graph)
        if state is None:
            return original_callable(session, callable_options)
        full = self._plan(state, session.graph,
                          list(callable_options.fetch) + list(callable_options.target),
                          list(callable_options.feed))
        feeds = list(callable_options.feed)
        count = len(callable_options.fetch)

        def extended(plan):
            """``(plan, callable, keys of its extra fetches, fed keys -> feed index)``."""
            fed = {key: feeds.index(tensor.name) for key, tensor in plan.extra.items()
                   if tensor.name in feeds}  # a callable may not fetch what it is fed: the feed
            keys = [key for key in plan.extra if key not in fed]
            options = type(callable_options)()
            options.CopyFrom(callable_options)
            options.fetch.extend(plan.extra[key].name for key in keys)
            return plan, original_callable(session, options), keys, fed

        # as Session.run's plans: a call whose record keeps no layer input does not fetch it
        calls = {True: extended(full)}
        calls[False] = calls[True] if full.lean is full else extended(full.lean)
        tracer = self

        def traced(*arguments, **keywords):
            tracer.before_change(session, state, full)
            plan, call, keys, fed = calls[tracer.inputs_at(len(tracer.records))]
            values = call(*arguments, **keywords)
            extra = dict(zip(keys, values[count:]))
            extra.update({key: arguments[index] for key, index in fed.items()})
            tracer.after_run(session, state, plan, extra, "callable")
            return values[:count]

        return traced

    def before_run(self, session, fetches, feed_dict):
        """For :class:`TraceHook`: ``(graph state, plan)`` of a run about to happen."""
        state = self._graph_state(session.graph)
        if state is None:
            return None, None
        plan = self._run_plan(state, session.graph, fetches, feed_dict)
        self.before_change(session, state, plan)
        return state, plan

    def before_change(self, session, state, plan):
        """Before the first run that may change the averages, read their initial state (step 0),
        if the variables are initialised: a session whose initialisation the tracer did not see
        (``MonitoredTrainingSession``'s scaffold) still starts its trace from the true state."""
        if state.last is None and plan.may_change:
            initial = self._read_state(session, state)
            if initial is not None:
                state.last = initial
                self._record_initial(state, initial)

    def after_run(self, session, state, plan, extra, call, fresh=False):
        """Read the state after a run that may have changed it; record the run as a step when a
        tracked statistic moved or it trained. ``fresh``: the ``extra`` values are arrays nothing
        else holds (``session.run``'s own outputs, fed values copied), kept as they are; otherwise
        they are copied (a callable's outputs can share a variable's buffer, a hook's fed values
        are the program's arrays)."""
        self.runs += 1
        if not plan.may_change and state.last is not None:
            return
        after = self._read_state(session, state)
        if after is None:
            return
        if state.last is None:
            state.last = after
            self._record_initial(state, after)
            if not plan.trained and not plan.averages:
                return
        # bit for bit (a NaN that stays NaN has not moved); the bytes compare in a fraction of
        # np.array_equal's time
        last = state.last
        moved = any(key not in last or after[key].tobytes() != last[key].tobytes()
                    for key in state.moving_keys)
        state.last = after
        if not moved and not plan.trained:
            return
        self.moved_runs += moved
        self.trained_runs += plan.trained
        self.records.append(self._record(state, plan, extra, after, call, moved, fresh))

    # --- discovery and plans ----------------------------------------------------------------------

    def _graph_state(self, graph):
        """The graph's :class:`_GraphState`, discovered on first sight and again when it grew;
        ``None`` when it has no moving average. ``graph.version`` (it increases as operations
        are added) tells a grown graph at no cost; counting its operations costs O(ops) a run."""
        state = self.graphs.get(id(graph))
        if state is None or state.version != graph.version:
            version = graph.version
            found = discovery.discover(graph)
            if state is None:
                prefix = f"graph{len(self.graphs) + 1}:" if self.graphs else ""
                state = _GraphState(found, prefix)
                self.graphs[id(graph)] = state
            state.discovery, state.version = found, version
            self._register(state)
        return state if state.discovery.all_averages else None

    def _register(self, state):
        """Name the graph's layers and averages in the trace header and list their variables."""
        found = state.discovery
        for name, _ in state.variables:  # a grown graph is discovered afresh: its old names go
            self.layers.pop(name, None)
            self.averages.pop(name, None)
        state.variables, state.moving_keys = {}, set()
        for layer in found.layers:
            name = state.prefix + layer.name
            self.layers[name] = _layer_header(layer)
            for role, average in (("moving_mean", layer.mean), ("moving_variance", layer.variance)):
                state.variables[(name, role)] = average.variable
                state.moving_keys.add((name, role))
            if layer.mean.zero_debias:  # both averages step together
                state.variables[(name, "local_step")] = layer.mean.local_step
            for role, variable in (("gamma", layer.gamma), ("beta", layer.beta)):
                if variable is not None:
                    state.variables[(name, role)] = variable
        for average in found.averages:
            name = state.prefix + average.name
            self.averages[name] = _average_header(average)
            state.variables[(name, "value")] = average.variable
            state.moving_keys.add((name, "value"))
            if average.zero_debias:
                state.variables[(name, "local_step")] = average.local_step
        state.reader = dict(state.variables)  # fetching a variable adds no op (graphs may be final)
        state.plans, state.plans_by_identity, state.readers = {}, {}, {}

    def _run_plan(self, state, graph, fetches, feed_dict):
        """The :class:`_RunPlan` of a ``session.run(fetches, feed_dict)``. A training loop passes
        the same tensors each run: looked up by those objects (:func:`_identity_key`), the plan
        costs no flattening and resolving of the fetches and feeds; other runs go by their names
        (:meth:`_plan`)."""
        key, objects = _identity_key(fetches, feed_dict)
        if key is not None:
            cached = state.plans_by_identity.get(key)
            if cached is not None:
                return cached[0]
        plan = self._plan(state, graph, _fetch_names(graph, fetches), _feed_names(graph, feed_dict))
        if key is not None:
            if len(state.plans_by_identity) >= MAX_IDENTITY_PLANS:
                state.plans_by_identity.clear()
            # the objects are kept so that their ids in the key cannot be reused by others
            state.plans_by_identity[key] = (plan, objects)
        return plan

    def _plan(self, state, graph, fetches, feeds):
        """The :class:`_RunPlan` of runs fetching ``fetches`` with ``feeds`` fed (cached)."""
        signature = (tuple(fetches), tuple(sorted(feeds)))
        plan = state.plans.get(signature)
        if plan is not None:
            return plan
        executed = _executed(graph, fetches, set(feeds))
        fed = set(feeds)

        def computed(tensor):  # by the run itself, or fed to it
            return tensor.op.name in executed or tensor.name in fed

        extra, averages, layers = {}, [], []
        found = state.discovery
        for layer in found.layers:
            name = state.prefix + layer.name
            runs = [a for a in layer.averages if a.update.site.name in executed]
            for role, average in zip(("batch_mean", "batch_variance"), layer.averages):
                if average in runs and computed(average.update.consumed):
                    extra[(name, role)] = average.update.consumed
                    if average.update.weight_tensor is not None:
                        extra[(name, role + " weight")] = average.update.weight_tensor
            averages += runs
            if layer.inputs is not None and computed(layer.inputs):
                layers.append(layer)
                extra[(name, "batch_input")] = layer.inputs
        for average in found.averages:
            if average.update.site.name in executed:
                averages.append(average)
                extra[(state.prefix + average.name, "consumed")] = average.update.consumed
                if average.update.weight_tensor is not None:
                    extra[(state.prefix + average.name, "weight")] = average.update.weight_tensor
        trained = any(discovery.is_training_op(graph.get_operation_by_name(name))
                      for name in executed)
        assigns = any(graph.get_operation_by_name(name).type in discovery.ASSIGN | discovery.ASSIGN_SUB
                      | {"If", "StatelessIf", "NoOp"} for name in executed)
        plan = _RunPlan({str(key): tensor for key, tensor in extra.items()}, averages, layers,
                        trained, bool(averages) or trained or assigns, list(fetches)[:20],
                        keys=dict(zip((str(key) for key in extra), extra))).arrange(fed)
        state.plans[signature] = plan
        return plan

    # --- state and records ------------------------------------------------------------------------

    def _read_state(self, session, state):
        """The tracked variables' values, or ``None`` while they are not initialised."""
        reader = self._state_reader(session, state)
        try:
            values = reader() if reader is not None else self._raw_run(
                session, list(state.reader.values()))
        except (tf.errors.FailedPreconditionError, tf.errors.NotFoundError):
            return None
        # copies: a fetched variable's array can share the variable's buffer, which the next
        # update changes in place
        return {key: np.array(value) for key, value in zip(state.reader, values)}

    @staticmethod
    def _state_reader(session, state):
        """The :class:`_StateReader` of ``state.reader`` in ``session``, made on first use (and
        again after the graph grew: :meth:`_register` drops them); ``None`` for what is not an
        open, in-process ``BaseSession`` (a hook's session wrapper; a closed session: a plain run
        says why; a remote one, whose master may not run a callable in the calling thread)."""
        reader = state.readers.get(id(session))
        if reader is not None and reader.session() is session and not session._closed:  # noqa: SLF001
            return reader
        if (not isinstance(session, session_module.BaseSession) or session._closed  # noqa: SLF001
                or session.sess_str):
            return None
        try:
            return _StateReader(session, list(state.reader.values()), state.readers)
        except (TypeError, ValueError, KeyError, tf.errors.OpError):
            return None  # a variable session.run resolves otherwise: a plain run reads it

    def _record_initial(self, state, values):
        record = {"step": 0, "bn": {}, "averages": {}}
        self._fill_state(record, values)
        if not self.records:
            self.records.append(record)
        else:  # a second graph: its initial state joins the next record's
            self.records[0]["bn"].update(record["bn"])
            self.records[0]["averages"].update(record["averages"])

    def _fill_state(self, record, values):
        for (name, role), value in values.items():
            if name in self.layers:
                record["bn"].setdefault(name, {})[role] = value
            else:
                record["averages"].setdefault(name, {})[role] = value

    def _record(self, state, plan, extra, after, call, moved, fresh=False):
        record = {"step": len(self.records), "run": {
            "call": call, "index": self.runs, "trained": plan.trained, "moved": moved,
            "fetched": plan.fetched}, "bn": {}, "averages": {}}
        self._fill_state(record, after)
        for text_key, value in extra.items():
            name, role = plan.keys[text_key]
            if role == "batch_input" and (np.size(value) > MAX_INPUT_VALUES
                                          or not self.inputs_at(len(self.records))):
                continue
            value = np.asarray(value) if fresh else np.array(value, copy=True)
            if role.endswith("weight"):
                statistic = role[:-len(" weight")] or "value"
                target = record["bn"][name] if name in self.layers else record["averages"][name]
                target["momentum" if statistic in ("value", "batch_mean") else
                       "momentum_variance"] = 1.0 - np.float64(value)
                continue
            if name in self.layers:
                record["bn"][name][role] = value
            else:
                record["averages"][name]["consumed"] = value
        return record

    # --- for a program that writes its own trace ----------------------------------------------------

    def watch(self, graph):
        """Discover ``graph``'s layers and averages now, before its first run, so that
        :meth:`header` can be written first (``bnrepro run``, ``bnrepro compare``)."""
        self._graph_state(graph)
        return self

    def take_step(self, count_before):
        """The record of the run just made, when it was recorded as a step (``count_before``: how
        many records there were before it), else ``None``."""
        return self.records[-1] if len(self.records) > count_before else None

    # --- the result ---------------------------------------------------------------------------------

    def header(self, scenario="trace", config=None):
        """The trace's header line: ``bnrepro-trace/2``, the layers and averages found so far."""
        header = make_header(scenario, config or {"program": self.program}, self.layers)
        header["format"] = FORMAT_2
        header["averages"] = self.averages
        return header

    def write(self, directory, *, status="complete", reason=None, scenario="trace"):
        """Write ``trace.jsonl`` (and ``trace.csv``) of everything recorded into ``directory``."""
        with TraceWriter(directory, self.header(scenario)) as writer:
            for record in self.records:
                writer.write_step(record)
            writer.finish(status, last_step=max(len(self.records) - 1, 0), reason=reason)

    def summary(self):
        """What was found and recorded, in a few lines for the user."""
        lines = []
        for name, entry in self.layers.items():
            epsilon = "unknown" if entry["epsilon"] is None else f"{entry['epsilon']:g}"
            lines.append(f"  layer {name}: {entry['kind']}, momentum {_number(entry['momentum'])}, "
                         f"epsilon {epsilon}, {entry['convention']}")
        for name, entry in self.averages.items():
            lines.append(f"  average {name}: {entry['kind']}, momentum "
                         f"{_number(entry['momentum'])}, {entry['convention']}")
        if not lines:
            lines.append("  no moving average found in any graph the program ran")
        steps = max(len(self.records) - 1, 0)
        lines.append(f"  {self.runs} runs: {self.moved_runs} moved the statistics, "
                     f"{self.trained_runs} trained; {steps} recorded as steps")
        return "\n".join(lines)


def _number(value):
    return "computed at run time" if value is None else f"{value:g}"


def _layer_header(layer):
    convention = "unbiased (N-1) variance averaged: fused kernel" if layer.fused else \
        "biased (/N) variance averaged"
    if layer.mean.zero_debias:
        convention += "; zero-debiased (assign_moving_average's zero_debias=True)"
    entry = {"momentum": layer.training_momentum, "epsilon": layer.epsilon, "kind": layer.kind,
             "fused": layer.fused, "convention": convention,
             "zero_debias": layer.mean.zero_debias,
             "variables": {"moving_mean": layer.mean.variable.name,
                           "moving_variance": layer.variance.variable.name},
             **layer.mode.header_entry()}  # ghost batches, renorm
    if layer.variance.update.momentum != layer.momentum:
        entry["momentum_variance"] = layer.variance.update.momentum
    return entry


def _average_header(average):
    kind = {"assign_sub": "moving average (assign_moving_average / ExponentialMovingAverage)",
            "weighted_sum": "moving average (tf.assign of a weighted sum)"}[average.update.shape]
    return {"momentum": average.update.momentum, "kind": kind,
            "convention": "zero-debiased" if average.zero_debias else "standard",
            "zero_debias": average.zero_debias, "variable": average.variable.name,
            "consumed": average.update.consumed.name}


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


def _identity_key(fetches, feed_dict):
    """``(key, objects)``: a run's fetches and feed keys named by the objects themselves, for
    :meth:`Tracer._run_plan`; ``(None, None)`` unless the fetches are one plain element or a flat
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
    tensor: resolving those is :func:`_fetch_names`' job)."""
    ids = []
    for item in items:
        if isinstance(item, (tf.Tensor, tf.Operation, tf.Variable)):
            ids.append(id(item))
        elif type(item) is str:
            ids.append(item)
        else:
            return None
    return tuple(ids)


def _fetch_names(graph, fetches):
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


def _feed_names(graph, feed_dict):
    names = []
    for key in (feed_dict or {}):
        element = _graph_element(graph, key)
        if isinstance(element, tf.Tensor):
            names.append(element.name)
    return names


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


# --- the ways in ----------------------------------------------------------------------------------

@contextlib.contextmanager
def tracing(out, *, force=False, inputs_every=None, write=None):
    """Trace every session run inside the block; write the trace into ``out`` when it ends.

    ``with bnrepro.tracing("out/mine") as tracer: ...`` (then ``bnrepro verify out/mine``). An
    exception in the block is passed on after the trace of the runs before it is written (its end
    line says the run stopped and why). ``write``: where to print the summary (``None``: nowhere).
    """
    tracer = Tracer(inputs_every=inputs_every)
    with output_directory(out, force=force) as staging:
        tracer.install()
        try:
            yield tracer
        except BaseException as error:
            tracer.uninstall()
            tracer.write(staging, status="stopped",
                         reason=f"{type(error).__name__}: {error}".strip())
            pending = error
        else:
            tracer.uninstall()
            tracer.write(staging)
            pending = None
    if write is not None:
        write(tracer.summary())
    if pending is not None:
        raise pending


class TraceHook(tf1.train.SessionRunHook):
    """``tf.compat.v1.train.SessionRunHook`` that traces a ``MonitoredTrainingSession``'s runs into
    ``out``: ``before_run`` adds the fetches (``SessionRunArgs``), ``after_run`` records; the trace
    is written when the session ends."""

    def __init__(self, out, *, force=False, inputs_every=None):
        self.out, self.force = out, force
        self.tracer = Tracer(inputs_every=inputs_every)
        self._pending = None

    def before_run(self, run_context):
        arguments = run_context.original_args
        state, plan = self.tracer.before_run(run_context.session, arguments.fetches,
                                             arguments.feed_dict)
        self._pending = (state, plan)
        if plan is None or not plan.extra:
            return None
        return tf1.train.SessionRunArgs(plan.extra)

    def after_run(self, run_context, run_values):
        state, plan = self._pending
        if plan is not None:
            self.tracer.after_run(run_context.session, state, plan, run_values.results or {},
                                  "MonitoredSession hook")

    def end(self, session):
        with output_directory(self.out, force=self.force) as staging:
            self.tracer.write(staging)


def trace_script(script, arguments, out, *, force=False, inputs_every=None, write=print):
    """Run ``script`` as ``python script arguments`` would, traced; return its exit status.

    The script runs as ``__main__`` with its ``sys.argv`` and its folder first on ``sys.path``; its
    output is its own. A script that raises prints its own traceback (exit status 1) and the trace
    of the runs before the error is kept. The summary goes to ``write`` (stderr from the CLI).
    """
    path = os.path.abspath(script)
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [script, *arguments]
    sys.path.insert(0, os.path.dirname(path))
    status = 0
    tracer = Tracer(inputs_every=inputs_every, program=[script, *arguments])
    try:
        with output_directory(out, force=force) as staging:
            tracer.install()
            end, reason = "complete", None
            try:
                runpy.run_path(path, run_name="__main__")
            except SystemExit as exit_:
                status = _exit_status(exit_.code)
                if status:
                    end, reason = "stopped", f"the script exited with status {status}"
            except BaseException as error:  # the user's error: their traceback, our trace
                traceback.print_exc()
                status = 1
                end, reason = "stopped", f"the script raised {type(error).__name__}: {error}"
            finally:
                tracer.uninstall()
            tracer.write(staging, status=end, reason=reason)
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    if write is not None:
        write(f"bnrepro trace: {script}")
        write(tracer.summary())
        write(f"  check it with: bnrepro verify {out}")
    return status


def _exit_status(code):
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1
