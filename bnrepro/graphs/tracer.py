"""Trace the moving statistics of any TF1-style program, unmodified: every run that moves them.

:class:`Tracer` watches the runs of a ``tf.compat.v1.Session``: ``Session.run`` (and so
``MonitoredTrainingSession``, which calls it) and the callables Keras' graph-mode ``fit`` makes with
``Session._make_callable_from_options``. For each graph it first finds the moving averages
(:func:`bnrepro.graphs.discover.discover`). For each run it adds to the run's fetches only tensors
the run computes anyway (:mod:`bnrepro.graphs.run_plan`): each consumed value whose assignment
runs, the input of each layer that runs, a momentum computed at run time. So the values are the
ones the update used, fetched in the same run, and what the run returns to the program is exactly
what it would have returned.

After a run that can change the averages (it runs an assignment or an optimizer), the tracked
variables are read (:class:`bnrepro.graphs.state_reader.StateReader`), unless the graph has reads of
them that the run orders after all of its updates (``tf.control_dependencies([train_op])``,
:func:`bnrepro.graphs.run_plan.state_after_run`): those are fetched with the run instead. A run is a
step of the trace when a tracked variable changed or when it trained (an optimizer's ``Apply*``
kernel ran), so that statistics that never move while the weights do show. Each step records the
statistics after it (the previous step's are the ones before), the consumed values, the layer inputs
(at the steps :func:`default_inputs_at` or the caller names), and what the run fetched and whether
it trained. A streamed trace's keep policy (:mod:`bnrepro.trace.keep`) drops most steps of a long
run: a dropped step fetches nothing extra, and when it trains (a step whatever it moves) its state
is not read either (:attr:`~bnrepro.graphs.run_plan.RunPlan.unread`): the state is read again before
the next run that records, and the last step's before its session closes.

The ways in, all through this tracer, are in :mod:`bnrepro.graphs.tracing`: ``bnrepro trace --out
DIR SCRIPT [ARGS...]``, ``with bnrepro.tracing("DIR"):`` and ``bnrepro.TraceHook("DIR")`` for
``MonitoredTrainingSession``.

The trace is ``bnrepro-trace/2`` (:mod:`bnrepro.trace`), streamed as the run goes or written when
tracing ends.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import tensorflow as tf  # not bnrepro.graphs.tfv1: its device set-up would change the traced program
from tensorflow.python.client import session as session_module

from bnrepro.graphs import discover as discovery
from bnrepro.graphs.run_plan import (base_role, build_plan, feed_names, fed_keys, fetch_names,
                                     identity_key)
from bnrepro.graphs.state_reader import StateReader
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


REF_VARIABLE_OPS = frozenset({"VariableV2", "Variable", "TemporaryVariable"})
MAX_IDENTITY_PLANS = 1024  # plans a graph keeps by fetched objects (_GraphState.plans_by_identity)


@dataclass
class _GraphState:
    """The tracer's view of one graph: its discovery, names in the trace, the last state read."""

    discovery: object
    prefix: str
    variables: dict = field(default_factory=dict)  # trace key -> tf.Variable
    last: Optional[dict] = None  # trace key -> value, the state after the last run
    plans: dict = field(default_factory=dict)  # run signature -> RunPlan
    reader: Optional[dict] = None  # trace key -> read tensor
    moving_keys: set = field(default_factory=set)  # the keys of the averaged variables
    version: int = -1  # graph.version when discovered: a higher one means the graph grew
    plans_by_identity: dict = field(default_factory=dict)  # identity_key -> (RunPlan, objects)
    readers: dict = field(default_factory=dict)  # id(session) -> StateReader of ``reader``
    # the graph has ref variables (``VariableV2``), which their updates change in place: an array
    # a callable returns can share such a buffer (a resource variable's update copies a buffer
    # that is still read, so arrays of resource variables keep their values)
    aliasing: bool = True
    # runs left unread since the state was last read (:attr:`RunPlan.unread`): ``last`` is older
    # than the state, and these layers and averages were updated since
    stale: bool = False
    unread_updated: set = field(default_factory=set)

    def read(self, values):
        """``values`` read now: the state after the last run, nothing unread since."""
        self.last, self.stale, self.unread_updated = values, False, set()


@dataclass
class _UnreadStep:
    """A step the keep policy drops whose state was not read (:attr:`RunPlan.unread`): held in
    case it is the run's last, whose record is then made from a read of the state before its
    session closes or the trace ends (:meth:`Tracer._resolve_held`)."""

    session: object  # held (not a weak reference): a session the program drops unclosed is read
    state: _GraphState
    plan: object
    call: str
    step: int
    index: int  # the run's number


class _Discard:
    """A sink that keeps nothing (:data:`DISCARD`)."""

    def write_step(self, record):
        pass

    def declare(self, declaration, initial=None):
        pass

    def finish(self, *arguments, **keywords):
        pass


DISCARD = _Discard()  # for a caller that writes records of its own (Tracer.last_record)


class Tracer:
    """Records the moving statistics of every run of every session while installed."""

    def __init__(self, *, inputs_every=None, program=None, inputs_at=None, sink=None, keep=None):
        """Which steps' records keep the layers' inputs: ``inputs_at(step)`` says for step
        ``step`` (a record's number, step 0 the initial state); else every ``inputs_every``-th;
        else :func:`default_inputs_at`. The batch statistics are kept at every step.

        ``sink``: where the records go. ``None`` keeps them all in :attr:`records` (written by
        :meth:`write` at the end). Otherwise the tracer keeps none of them (its memory does not
        grow with the steps) and streams them (:meth:`stream_to`): a :class:`TraceWriter`, or
        :data:`DISCARD` for a caller that writes records of its own from :attr:`last_record`
        (``bnrepro run``, ``compare``). ``keep``: a streamed trace's
        :class:`~bnrepro.trace.keep.KeepPolicy` (which steps it writes, and until when the layers'
        inputs); ``None`` writes every step."""
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
        self.records = [] if sink is None else None
        self.sink = sink
        self.keep = keep
        self.recorded = 0  # step records made, step 0 included
        self.written = 0  # step records handed to the sink
        self._held = None  # the last record the keep policy left out (written if it is the last)
        self.initial_record = None  # step 0: the state of the graphs at their first read
        self.last_record = None
        self._initial_handed = False  # step 0 has gone to the sink: later initial states declared
        self._declared = {"layers": set(), "averages": set(), "graphs": None, "notes": 0}
        self._discovered = False  # a graph discovered since the last declaration
        self.runs = 0  # every run seen
        self.moved_runs = 0
        self.trained_runs = 0
        self.unread_runs = 0  # trained runs the keep policy dropped, their state not read
        self._originals = None
        self.untraced = set()  # ids of the graphs the tracer failed on (:meth:`_failed`)
        self.notes = []  # what the tracer could not do, for the trace header and the summary
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
                           base._do_run, base.close)  # noqa: SLF001
        original_run, original_callable, original_do_run, original_close = self._originals
        tracer = self

        def run(session, fetches, feed_dict=None, options=None, run_metadata=None):
            return tracer._traced_run(original_run, session, fetches, feed_dict, options,
                                      run_metadata)

        def make_callable_from_options(session, callable_options):
            return tracer._traced_callable(original_callable, session, callable_options)

        def do_run(session, handle, target_list, fetch_list, feed_dict, options, run_metadata):
            return tracer._traced_do_run(original_do_run, session, handle, target_list,
                                         fetch_list, feed_dict, options, run_metadata)

        def close(session):
            tracer.before_close(session)
            return original_close(session)

        base.run = run
        base._make_callable_from_options = make_callable_from_options  # noqa: SLF001
        base._do_run = do_run  # noqa: SLF001
        base.close = close
        return self

    def uninstall(self):
        if self._originals is None:
            return
        base = session_module.BaseSession
        (base.run, base._make_callable_from_options,  # noqa: SLF001
         base._do_run, base.close) = self._originals  # noqa: SLF001
        self._originals = None

    def _raw_run(self, session, fetches, feed_dict=None):
        """A run of the tracer's own, not traced (the session's own ``run`` when not installed:
        a hook's session)."""
        if self._originals is None:
            return session.run(fetches, feed_dict)
        return self._originals[0](session, fetches, feed_dict)

    # --- one run ----------------------------------------------------------------------------------

    def _traced_run(self, original_run, session, fetches, feed_dict, options, run_metadata):
        state, plan = self.before_run(session, fetches, feed_dict)
        if plan is None:
            return original_run(session, fetches, feed_dict, options, run_metadata)
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
        try:
            state = self._graph_state(session.graph)
            full = None if state is None else self._plan(
                state, session.graph, list(callable_options.fetch) + list(callable_options.target),
                list(callable_options.feed))
        except Exception as error:  # noqa: BLE001
            self._failed(session.graph, "preparing a callable", error)
            full = None
        if full is None:
            return original_callable(session, callable_options)
        feeds = list(callable_options.feed)
        count = len(callable_options.fetch)
        plain = []  # the program's own callable, made when first needed

        def own():
            if not plain:
                plain.append(original_callable(session, callable_options))
            return plain[0]

        def extended(plan):
            """``(callable, keys of its extra fetches, fed keys -> feed index)``: the program's
            own callable when the plan fetches nothing more."""
            fed = {key: feeds.index(tensor.name) for key, tensor in plan.extra.items()
                   if tensor.name in feeds}  # a callable may not fetch what it is fed: the feed
            keys = [key for key in plan.extra if key not in fed]
            if not keys:
                return own(), keys, fed
            options = type(callable_options)()
            options.CopyFrom(callable_options)
            options.fetch.extend(plan.extra[key].name for key in keys)
            return original_callable(session, options), keys, fed

        # as Session.run's plans: a call whose record keeps no layer input does not fetch it; in TF1
        # control flow, one callable per combination of the fed predicates (made on first use).
        # Plans that fetch the same extra tensors share a callable: each callable is a set of runs
        # TensorFlow prepares anew (a dropped step, a pair's first: the program's own)
        calls = {}
        predicates = [feeds.index(name) for name in full.predicates]
        tracer = self

        def call_for(chosen):
            """``(chosen, callable, keys, fed)`` (:func:`extended`) of the plan ``chosen``."""
            extra = tuple(chosen.extra)  # the same keys: the same tensors (``full``'s)
            if extra not in calls:
                calls[extra] = extended(chosen)
            return (chosen, *calls[extra])

        def prepared(arguments):
            """``call_for``'s tuple for a call with ``arguments``, or ``None`` (untraced)."""
            if id(session.graph) in tracer.untraced:
                return None
            try:
                plan = full.given({name: arguments[index] for name, index
                                   in zip(full.predicates, predicates)}) if predicates else full
                tracer._note(plan.races)
                if state.last is None:
                    tracer.before_change(session, state, plan)
                chosen = tracer._inputs_plan(state, plan)  # noqa: SLF001
                tracer._refresh(session, state, chosen)  # noqa: SLF001
                return call_for(chosen)
            except Exception as error:  # noqa: BLE001
                tracer._failed(session.graph, "preparing a callable's call", error)
                return None

        def traced(*arguments, **keywords):
            chosen = prepared(arguments)
            if chosen is None:
                return own()(*arguments, **keywords)
            plan, call, keys, fed = chosen
            values = call(*arguments, **keywords)
            extra = dict(zip(keys, values[count:]))
            if fed:  # the program's own arrays
                extra.update({key: np.array(arguments[index], copy=True)
                              for key, index in fed.items()})
            tracer.after_run(session, state, plan, extra, "callable", fresh=not state.aliasing)
            return values[:count]

        return traced

    def before_run(self, session, fetches, feed_dict):
        """``(graph state, plan)`` of a run about to happen (the plan with the layer inputs its
        record may keep, :meth:`_inputs_plan`), its initial state read if need be;
        ``(None, None)`` when the run is not traced (its graph has no moving average, or the
        tracer failed on it: :meth:`_failed`)."""
        graph = session.graph
        try:
            state = self._graph_state(graph)
            if state is None:
                return None, None
            plan = self._run_plan(state, graph, fetches, feed_dict)
            self._note(plan.races)
            self.before_change(session, state, plan)
            chosen = self._inputs_plan(state, plan)
            self._refresh(session, state, chosen)
            return state, chosen
        except Exception as error:  # noqa: BLE001  the program's run goes on untraced
            self._failed(graph, "preparing a run", error)
            return None, None

    def _note(self, sentences):
        """Keep each of ``sentences`` once among the trace's notes."""
        if sentences:
            self.notes += [sentence for sentence in sentences if sentence not in self.notes]

    def _failed(self, graph, doing, error):
        """The tracer itself failed on ``graph``: say so in the trace and the summary, and leave the
        graph's runs untraced from now on (the program's runs are never the tracer's to break)."""
        self.untraced.add(id(graph))  # its state stays: it keeps the graph, and so its id, alive
        self._note([f"the tracer failed while {doing} ({type(error).__name__}: {error}); "
                    "that graph's later runs are not traced"])

    def before_change(self, session, state, plan):
        """Before the first run that may change the averages, read their initial state (step 0),
        if the variables are initialised: a session whose initialisation the tracer did not see
        (``MonitoredTrainingSession``'s scaffold) still starts its trace from the true state."""
        if state.last is None and plan.may_change:
            initial = self._read_state(session, state)
            if initial is not None:
                state.last = initial
                self._record_initial(state, initial)

    def _refresh(self, session, state, plan):
        """Before a run that reads the state after it, read it again if runs since the last read
        left it unread (:attr:`RunPlan.unread`), so that what this run moves, and whether it
        moved anything, is known exactly; the last unread step's record is made from it."""
        if not (state.stale and plan.reads_state and plan.may_change):
            return
        values = self._read_state(session, state)
        if values is None:
            return
        if isinstance(self._held, _UnreadStep) and self._held.state is state:
            self._held = self._unread_record(self._held, values)
        else:
            state.read(values)

    def before_close(self, session):
        """Before ``session`` closes: the record of a last step left unread in it
        (:meth:`_resolve_held`), while its state can be read."""
        held = self._held
        if isinstance(held, _UnreadStep) and held.session is session:
            self._resolve_held()

    def _resolve_held(self):
        """The record of the held step left unread, from a read of its state now (nothing since
        changed it: a run that changes it reads the state before, :meth:`_refresh`), or, when
        its session is closed, no record and a note."""
        held = self._held
        session = held.session
        values = None
        if not getattr(session, "_closed", True):  # noqa: SLF001
            try:
                values = self._read_state(session, held.state)
            except Exception:  # noqa: BLE001  a session that cannot run any more
                values = None
        if values is None:
            self._held = None
            self._note([f"the state after the last step ({held.step}) could not be read (its "
                        "session had closed): the trace ends at the last step it kept"])
            return
        self._held = self._unread_record(held, values)

    def _unread_record(self, held, values):
        """The record of the unread step ``held`` whose state after is ``values``: what moved is
        judged against the last state read, before the unread runs; ``set`` only for what none
        of them updated."""
        state = held.state
        changed = self._changed(state, values)
        record = self._record(state, held.plan, {}, values, held.call, bool(changed),
                              step=held.step, index=held.index)
        for name in changed - held.plan.updated - state.unread_updated:
            record["bn" if name in self.layers else "averages"][name]["set"] = True
        state.read(values)
        return record

    @staticmethod
    def _changed(state, values):
        """The names whose averaged variables in ``values`` differ from ``state.last``, bit for
        bit (a NaN that stays NaN has not moved); the bytes compare in a fraction of
        np.array_equal's time."""
        last = state.last
        return {key[0] for key in state.moving_keys
                if key not in last or values[key].tobytes() != last[key].tobytes()}

    def after_run(self, session, state, plan, extra, call, fresh=False):
        """:meth:`_after_run`, the tracer's failure noted (:meth:`_failed`), never raised."""
        try:
            self._after_run(session, state, plan, extra, call, fresh)
        except Exception as error:  # noqa: BLE001
            self._failed(state.discovery.graph, "recording a run", error)

    def _after_run(self, session, state, plan, extra, call, fresh=False):
        """Read the state after a run that may have changed it; record the run as a step when a
        tracked statistic moved or it trained. ``fresh``: the ``extra`` values are arrays that
        nothing changes (``session.run``'s own outputs; a callable's, fed values copied, in a
        graph without ref variables), kept as they are; otherwise they are copied (a callable's
        outputs can share a ref variable's buffer, a hook's fed values are the program's
        arrays)."""
        self.runs += 1
        if not plan.may_change and state.last is not None:
            return
        if not plan.reads_state:  # a trained step the keep policy drops: held unread
            state.stale = True
            state.unread_updated |= plan.updated
            self.trained_runs += 1
            self.unread_runs += 1
            self._held = _UnreadStep(session, state, plan, call, self.recorded,
                                     self.runs)
            self.recorded += 1
            return
        if plan.after is not None and state.last is not None and not state.stale:
            last = state.last
            after = {key: last[key] if text_key is None else extra[text_key]
                     for key, text_key in plan.after.items()}
        else:
            after = self._read_state(session, state)
        if after is None:
            return
        if state.last is None:
            state.last = after
            self._record_initial(state, after)
            if not plan.trained and not plan.averages:
                return
        changed = self._changed(state, after)
        moved = bool(changed)
        state.last = after
        if not moved and not plan.trained:
            return
        self.moved_runs += moved
        self.trained_runs += plan.trained
        record = self._record(state, plan, extra, after, call, moved, fresh)
        for name in changed - plan.updated:  # moved by no update of theirs: set (initialised,
            section = "bn" if name in self.layers else "averages"  # restored, assigned)
            record[section][name]["set"] = True
        self._add(record)

    # --- discovery and plans ----------------------------------------------------------------------

    def _graph_state(self, graph):
        """The graph's :class:`_GraphState`, discovered on first sight and again when it grew;
        ``None`` when it has no moving average. ``graph.version`` (it increases as operations
        are added) tells a grown graph at no cost; counting its operations costs O(ops) a run."""
        if id(graph) in self.untraced:
            return None
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
        self._discovered = True  # a streamed trace declares what the header gained
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
        state.aliasing = any(operation.type in REF_VARIABLE_OPS
                             for operation in found.graph.get_operations())
        state.plans, state.plans_by_identity, state.readers = {}, {}, {}

    def _run_plan(self, state, graph, fetches, feed_dict):
        """The :class:`~bnrepro.graphs.run_plan.RunPlan` of a ``session.run(fetches, feed_dict)``,
        given what it feeds the plan's predicates (TF1 control flow: what they let the run
        compute, :meth:`RunPlan.given`). A training loop passes the same tensors each run: looked
        up by those objects (:func:`identity_key`), the plan costs no flattening and resolving of
        the fetches and feeds, and its predicates' feed keys are found once; other runs go by
        their names (:meth:`_plan`)."""
        key, objects = identity_key(fetches, feed_dict)
        cached = None if key is None else state.plans_by_identity.get(key)
        if cached is None:
            plan = self._plan(state, graph, fetch_names(graph, fetches),
                              feed_names(graph, feed_dict))
            predicate_keys = tuple(fed_keys(graph, feed_dict, plan.predicates).items())
            if key is not None:
                if len(state.plans_by_identity) >= MAX_IDENTITY_PLANS:
                    state.plans_by_identity.clear()
                # the objects are kept so that their ids in the key cannot be reused by others
                state.plans_by_identity[key] = (plan, objects, predicate_keys)
        else:
            plan, _, predicate_keys = cached
        if plan.predicates:
            plan = plan.given({name: feed_dict[fed] for name, fed in predicate_keys})
        return plan

    def _plan(self, state, graph, fetches, feeds):
        """The :class:`~bnrepro.graphs.run_plan.RunPlan` of runs fetching ``fetches`` with ``feeds``
        fed, made once per graph and signature."""
        signature = (tuple(fetches), tuple(sorted(feeds)))
        plan = state.plans.get(signature)
        if plan is None:
            plan = state.plans[signature] = build_plan(state.discovery, state.prefix, graph,
                                                       fetches, feeds, state.variables)
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
        if not state.aliasing:
            return dict(zip(state.reader, values))
        # copies: a fetched ref variable's array can share the variable's buffer, which the next
        # update changes in place
        return {key: np.array(value) for key, value in zip(state.reader, values)}

    @staticmethod
    def _state_reader(session, state):
        """The :class:`StateReader` of ``state.reader`` in ``session``, made on first use (and
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
            return StateReader(session, list(state.reader.values()), state.readers)
        except (TypeError, ValueError, KeyError, tf.errors.OpError):
            return None  # a variable session.run resolves otherwise: a plain run reads it

    def _record_initial(self, state, values):
        """Step 0: the state of a graph at its first read. A later graph's initial state joins
        step 0's, or once step 0 has been streamed, goes out in a declaration (the reader joins
        it to step 0)."""
        record = {"step": 0, "bn": {}, "averages": {}}
        self._fill_state(record, values)
        if self.initial_record is None:
            self.initial_record = record
            self.last_record = record
            self.recorded = 1
            if self.records is not None:
                self.records.append(record)
        elif not self._initial_handed:
            self.initial_record["bn"].update(record["bn"])
            self.initial_record["averages"].update(record["averages"])
        else:
            self._declare(initial=record)

    def _inputs_plan(self, state, plan):
        """``plan`` with what the record this run may make keeps: every layer input, those that
        check an update (``lean``), none (``bare``: the inputs budget is spent), nothing but
        the state after the run (``unkept``: a step the keep policy drops; ``state_only``: the
        first step of a kept pair, whose record keeps only that), or nothing at all (``unread``:
        a dropped step that trains, so is a step whatever it moves, in a trace that streams
        through installed wrappers, whose ``close`` reads the state of a last step left
        unread)."""
        step = self.recorded
        if self.keep is not None and not self.keep.keeps(step):
            unread = (plan.trained and state.last is not None and self.records is None
                      and self._originals is not None)
            return plan.unread if unread else plan.unkept
        if self.keep is not None and self.keep.state_only(step):
            return plan.state_only
        if self._inputs_at(step):
            return plan
        return plan.lean if self._within_keep(step) else plan.bare

    def _inputs_at(self, step):
        """Whether record ``step`` keeps the layers' inputs: the inputs policy
        (:attr:`inputs_at`), and with a keep policy, a step it keeps while the trace is within
        its budget."""
        return self.inputs_at(step) and self._within_keep(step)

    def _within_keep(self, step):
        return self.keep is None or (self.keep.keeps(step) and self.keep.inputs_allowed(
            getattr(self.sink, "bytes", 0), step))  # records kept in memory: no bytes written

    def _keeps_input(self, required, size):
        """Whether this run's record keeps a layer input of ``size`` values, ``required`` when
        the update's consumed values are not fetched (the input checks it): not beyond
        :data:`MAX_INPUT_VALUES` when records are kept in memory; with a keep policy, at a kept
        step within the budget; then where required or the inputs policy says."""
        step = self.recorded
        if self.records is not None and size > MAX_INPUT_VALUES:
            return False
        return self._within_keep(step) and (required or self.inputs_at(step))

    def _add(self, record):
        """A step record made: kept, or streamed after step 0 and any declaration it needs (with
        a keep policy, the steps it keeps, and the last)."""
        self.recorded += 1
        self.last_record = record
        if self.records is not None:
            self.records.append(record)
            return
        if self.keep is not None and not self.keep.keeps(record["step"]):
            self._held = record
            return
        self._write(record)

    def _write(self, record):
        self._held = None
        self._hand_initial()
        self._declare()
        self.sink.write_step(record)
        self.written += 1

    def _hand_initial(self):
        if self.initial_record is not None and not self._initial_handed:
            self._declare()
            self.sink.write_step(self.initial_record)
            self.written += 1
            self._initial_handed = True

    def _declare(self, initial=None):
        """Stream what the header gained since the sink's header line or the last declaration
        (layers and averages found, the graphs searched, the tracer's notes) and ``initial``, a
        later graph's state at its first read, as one declaration; nothing when nothing is new."""
        declared = self._declared
        if not self._discovered and initial is None and len(self.notes) == declared["notes"]:
            return  # nothing new: each record asks, so this stays off the step's path
        self._discovered = False
        declaration = {}
        layers = {n: e for n, e in self.layers.items() if n not in declared["layers"]}
        averages = {n: e for n, e in self.averages.items() if n not in declared["averages"]}
        graphs = self._graphs_searched()
        if layers:
            declaration["layers"] = layers
        if averages:
            declaration["averages"] = averages
        if graphs != declared["graphs"]:
            declaration["graphs_searched"] = graphs
        if len(self.notes) > declared["notes"]:
            declaration["tracer_notes"] = self.notes[declared["notes"]:]
        if not declaration and initial is None:
            return
        declared["layers"].update(layers)
        declared["averages"].update(averages)
        declared["graphs"], declared["notes"] = graphs, len(self.notes)
        self.sink.declare(declaration, initial)

    def stream_to(self, sink):
        """Stream the records to ``sink`` (a :class:`TraceWriter` whose header line is
        :meth:`header` now): what the header lacks is declared as it is found."""
        self.sink, self.records = sink, None
        self._declared.update(layers=set(self.layers), averages=set(self.averages),
                              graphs=self._graphs_searched(), notes=len(self.notes))
        return self

    def finish(self, status="complete", reason=None):
        """End a streamed trace: step 0 if no step followed it, the last declarations, the end
        line."""
        if isinstance(self._held, _UnreadStep):
            self._resolve_held()
        if self._held is not None:  # the last step, which the keep policy would leave out
            self._write(self._held)
        self._hand_initial()
        self._declare()
        self.sink.finish(status, last_step=max(self.recorded - 1, 0), reason=reason)

    def _fill_state(self, record, values):
        for (name, role), value in values.items():
            if name in self.layers:
                record["bn"].setdefault(name, {})[role] = value
            else:
                record["averages"].setdefault(name, {})[role] = value

    def _record(self, state, plan, extra, after, call, moved, fresh=False, step=None, index=None):
        """The step record of a run: its state ``after``, what ``extra`` holds (the batch
        statistics, the layer inputs kept); a plan that
        :attr:`~bnrepro.graphs.run_plan.RunPlan.keeps_state_only` makes a record that says so
        (``run.state_only``)."""
        record = {"step": self.recorded if step is None else step, "run": {
            "call": call, "index": self.runs if index is None else index,
            "trained": plan.trained, "moved": moved,
            "fetched": plan.fetched}, "bn": {}, "averages": {}}
        if plan.keeps_state_only:
            record["run"]["state_only"] = True
        if plan.unfetchable:  # values the run may not compute: not fetched, and why
            record["run"]["not_fetched"] = sorted(set(plan.unfetchable.values()))
        self._fill_state(record, after)
        for text_key, value in extra.items():
            name, role, *after_the_run = plan.keys[text_key]
            if after_the_run:  # the state, in ``after``
                continue
            if base_role(role) == "batch_input" and not self._keeps_input(
                    text_key in plan.required_inputs, np.size(value)):
                continue
            value = np.asarray(value) if fresh else np.array(value, copy=True)
            axis = self.layers.get(name, {}).get("input_channel_axis")
            if axis is not None and base_role(role) == "batch_input":
                value = np.moveaxis(value, axis, -1)  # the trace's inputs are channel-last
            if name not in self.layers:
                target = record["averages"][name]  # roles "consumed" and "weight"
            else:
                target = record["bn"][name]
                if role.startswith("updates."):  # a shared layer: "updates.<index>.<role>"
                    _, index, role = role.split(".", 2)
                    target = target.setdefault("updates", {}).setdefault(int(index), {})
            if role.endswith("weight"):
                statistic = role[:-len(" weight")] or "value"
                target["momentum" if statistic in ("value", "batch_mean") else
                       "momentum_variance"] = 1.0 - np.float64(value)
            else:
                target[role] = value
        for name, trained in plan.layer_trained.items():  # whether the run trains the layer
            if name in record["bn"]:
                record["bn"][name]["trained"] = trained
        for name, ordered in plan.ordered.items():  # a shared layer's updates, in run order
            entry = record["bn"].get(name, {})
            if "updates" in entry:
                entry["updates"] = [entry["updates"][index] for index in sorted(entry["updates"])]
                entry["updates_ordered"] = ordered
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
        return self.last_record if self.recorded > count_before else None

    # --- the result ---------------------------------------------------------------------------------

    def header(self, scenario="trace", config=None):
        """The trace's header line: ``bnrepro-trace/2``, the layers and averages found so far."""
        header = make_header(scenario, config or {"program": self.program}, self.layers)
        header["format"] = FORMAT_2
        header["averages"] = self.averages
        header["graphs_searched"] = self._graphs_searched()
        if self.keep is not None:
            header["keep"] = self.keep.header_entry()
        if self.notes:
            header["tracer_notes"] = list(self.notes)
        return header

    def _graphs_searched(self):
        return [{"graph": state.prefix.rstrip(":") or "graph1",
                 "operations": state.discovery.operations, "layers": len(state.discovery.layers),
                 "averages": len(state.discovery.averages)} for state in self.graphs.values()]

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
            searched = len(self.graphs)
            lines.append(f"  no moving average found in the {searched} graph"
                         f"{'s' if searched != 1 else ''} the program ran")
        lines += [f"  note: {note}" for note in self.notes]
        steps = max(self.recorded - 1, 0)
        unread = (f" ({self.unread_runs} trained runs the trace leaves out not read)"
                  if self.unread_runs else "")
        lines.append(f"  {self.runs} runs: {self.moved_runs} moved the statistics{unread}, "
                     f"{self.trained_runs} trained; {steps} recorded as steps")
        if self.keep is not None and self.records is None:
            kept = max(self.written - 1, 0)
            lines.append(f"  the trace keeps {kept} of the {steps} steps and step 0: "
                         f"{self.keep.describe()}")
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
             "variables": {role: variable.name for role, variable in (
                 ("moving_mean", layer.mean.variable), ("moving_variance", layer.variance.variable),
                 ("gamma", layer.gamma), ("beta", layer.beta)) if variable is not None},
             **layer.mode.header_entry()}  # ghost batches, renorm
    if layer.channel_axis is not None:  # the program's channel axis; recorded channel-last
        entry["input_channel_axis"] = layer.channel_axis
    if layer.variance.training_momentum != layer.training_momentum:
        entry["momentum_variance"] = layer.variance.training_momentum
    return entry


def _average_header(average):
    kind = {"assign_sub": "moving average (assign_moving_average / ExponentialMovingAverage)",
            "weighted_sum": "moving average (tf.assign of a weighted sum)"}[average.update.form]
    return {"momentum": average.training_momentum, "kind": kind,
            "convention": "zero-debiased" if average.zero_debias else "standard",
            "zero_debias": average.zero_debias, "variable": average.variable.name,
            "consumed": average.update.consumed.name}
