"""``bnrepro verify``: recompute a trace's batch-norm numbers with NumPy and say where they differ.

For every traced step ``k >= 1`` and every batch-norm layer (state of step ``k - 1`` = "old"):

* ``moving_mean update``:      ``moving_mean_k     = momentum * moving_mean_old     + (1 - momentum) * batch_mean_k``
* ``moving_variance update``:  ``moving_variance_k = momentum * moving_variance_old + (1 - momentum) * batch_variance_k``
* ``batch_mean from inputs``:  ``batch_mean_k = mean(batch_input_k)`` over all axes but the channel
* ``batch_variance from inputs``: ``batch_variance_k = var(batch_input_k)``, both the biased (/N) and
  the unbiased (/(N-1)) variance are tried and the one the trace follows is reported
* ``inference formula``:       ``output = gamma_old * (input - moving_mean_old) / sqrt(moving_variance_old + epsilon) + beta_old``

Each average takes its own momentum (the variance's ``momentum_variance`` when its decay differs,
:func:`bnrepro.check.records.momentum_of`). A run that updated the layer several times
(``"updates"``) is checked through each update in the order it ran, the bound carried along
(:func:`_combined`); when the run orders those updates no way (``"updates_ordered": false``), each
statistic is checked against every order, all updates reading the state before the run, and each
update alone (:func:`_outcomes`), and the report names the first that holds. An update whose
consumed values were not recorded but whose layer input was is checked with the input's moments
(the variance the header declares first: ``/(N-1)`` for a fused layer; the one that holds is
named). What cannot be checked is said in a ``not checked for LAYER: what: why`` line and not
counted: with an unknown epsilon (header ``null``) the inference formula and the diagnosis'
epsilons; without the layer's input, the batch statistics from it; with a momentum computed at
run time and not recorded, the updates. A whole trace without steps (nothing found, nothing ran)
is ``NOTHING TO CHECK``, not a pass (exit status 1), with what was searched and what to check.

A layer whose header entry declares a mode (:class:`bnrepro.check.layer_modes.LayerMode`) is checked under
it, and the report says so (``mode of LAYER``):

* ghost batches (``virtual_batch_size = K``): the batch statistics from inputs are the mean of the
  ``G = N / K`` ghost batches' moments, ``batch_mean_k = (1/G) sum_j mean(x_j)``,
  ``batch_variance_k = (1/G) sum_j var(x_j)`` (:func:`bnrepro.check.layer_modes.ghost_rows`: strided as
  tf_keras groups them, or contiguous); the updates and the inference formula are the standard ones;
* renorm, with ``s_k = sqrt(batch_variance_k + epsilon)`` and the renorm momentum ``m_r``:

  - ``moving_variance update``: ``moving_variance_k = max(moving_stddev_k^2 - epsilon, 0)``, with
    ``moving_stddev_k = momentum * moving_stddev_old + (1 - momentum) * s_k`` and ``moving_stddev_old``
    the recorded variable ``LAYER/moving_stddev:0`` (else from the old moving variance,
    :func:`bnrepro.check.layer_modes.moving_stddev_after`);
  - ``moving_stddev update``: the recorded ``moving_stddev_k`` against the same formula;
  - ``renorm_mean, renorm_stddev``: ``renorm_mean_k = m_r * renorm_mean_old + (1 - m_r) * batch_mean_k``,
    ``renorm_stddev_k = m_r * renorm_stddev_old + (1 - m_r) * s_k`` (variables ``LAYER/renorm_mean:0``,
    ``LAYER/renorm_stddev:0``);
  - ``renorm r, d (clipped)``: the metrics ``LAYER renorm_r`` / ``LAYER renorm_d`` against
    ``r = clip(s_k / t, rmin, rmax)``, ``d = clip((batch_mean_k - renorm_mean_old) / t, -dmax, dmax)``,
    ``t = max(renorm_stddev_old, sqrt(epsilon))`` with the header's clipping;
  - the moving mean, the batch statistics and the inference formula are the standard ones.

  The renorm rows appear when a layer declares renorm; a row is ``not recorded`` when the trace lacks
  its values.

After the checks, :func:`bnrepro.check.diagnose.diagnose_trace` tries the known alternative conventions
(unbiased variance, momentum and 1 - momentum swapped, no update, inference mode, ghost batches,
renorm, other epsilons) and the report prints a ``diagnosis:`` line for each quantity that follows
one (docs/pitfalls.md). ``bnrepro verify`` exits 1 when a check fails, the diagnosis printed above
the ``FAIL`` line; a fused trace passes, with its diagnosis line.

Every comparison has its own bound: how far TensorFlow's float32 result may be from the exact
formula on the same operands, from the operands' sizes (:mod:`bnrepro.check.tolerances`, with the
derivations; each allows for the float32 subnormals TensorFlow flushes to zero,
:func:`bnrepro.check.tolerances.flush_slack`). A value passes when ``|got - expected| <= bound``;
the report gives, per check, the largest error and the largest fraction of its bound used.

Beyond the formulas, a trace passes only when it is whole and finite: every recorded number finite
(a diverged run is named, with the step), and the end line present and consistent (a trace cut
short, e.g. by ``head -n 4``, does not pass: :data:`bnrepro.trace` explains the end line).

Nothing here uses TensorFlow.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from bnrepro.check import coverage as covered, formulas, records, tolerances
from bnrepro.check.diagnose import Diagnosis, frozen_by_momentum
from bnrepro.check.layer_modes import LayerMode, moving_stddev_with_bound, renorm_variable
from bnrepro.check.tolerances import Check
from bnrepro.check.chain import Chain


FINITE_CHECK = "every value finite"


@dataclass
class Report:
    """Every check of one trace, which variance each layer's batch_variance follows, and how the
    trace ends."""

    path: str
    checks: list
    variance_used: dict = field(default_factory=dict)  # layer -> BIASED / UNBIASED / AMBIGUOUS / None
    modes: dict = field(default_factory=dict)  # layer -> LayerMode.describe(), declared modes only
    skipped: list = field(default_factory=list)  # "not checked for LAYER: what: why" lines
    not_checked: set = field(default_factory=set)  # checks left out for a reason (skipped says it)
    diagnosis: list = field(default_factory=list)  # bnrepro.check.diagnose.Finding: other conventions
    ending: Optional[str] = None  # why the trace is not a whole, finished run (None: it is)
    diverged: bool = False  # the run ended with non-finite values
    nothing: Optional[str] = None  # why a whole trace holds no step (NOTHING TO CHECK)
    notes: list = field(default_factory=list)  # the tracer's notes (header "tracer_notes")
    coverage: list = field(default_factory=list)  # bnrepro.check.coverage.Coverage per layer
    kept: Optional[str] = None  # how many of the run's steps a trace with a keep policy holds

    @property
    def formulas_hold(self):
        """Every check passed and there was something to compare: a recorded value held to a
        formula (that every value is finite, or that the statistics moved, is not enough)."""
        return all(check.passed for check in self.checks) and any(
            c.compared for c in self.checks if c.name not in (FINITE_CHECK, MOVES_CHECK))

    @property
    def passed(self):
        return self.formulas_hold and self.ending is None

    def format(self):
        """The table a user reads, then the variance convention, then the verdict."""
        notes = [f"tracer note: {note}" for note in self.notes]
        if self.nothing is not None:
            return "\n".join([f"verify {self.path}", *notes, *self.skipped, self.verdict()])
        lines = [f"verify {self.path}",
                 f"{'check':<34} {'values':>7} {'max abs err':>12} {'max rel err':>12} "
                 f"{'of bound':>9}  result"]
        for check in self.checks:
            result = "ok" if check.passed else "FAIL"
            if not check.compared:
                result = "not checked" if check.name in self.not_checked else "not recorded"
            lines.append(f"{check.name:<34} {check.compared:>7} {check.max_abs_error:>12.3g} "
                         f"{check.max_rel_error:>12.3g} {check.max_bound_fraction:>9.2g}  {result}")
        for layer, mode in self.modes.items():
            lines.append(f"mode of {layer} (from the header): {mode}")
        for layer, convention in self.variance_used.items():
            label = formulas.VARIANCE_LABELS.get(convention, "neither biased nor unbiased")
            if convention == AMBIGUOUS:
                label = ("biased or unbiased: both within their bounds, the numbers do not tell "
                         "them apart")
            lines.append(f"batch_variance of {layer}: {label}")
        lines.extend(notes)
        if self.kept is not None:
            lines.append(self.kept)
        for layer in self.coverage:
            lines.extend(layer.lines())
        if any(layer.count(covered.FROM_INPUTS) for layer in self.coverage):
            lines.append(BATCH_STATISTICS_BOUND)
        lines.extend(self.skipped)
        lines.extend(finding.format() for finding in self.diagnosis)
        lines.append(self.verdict())
        return "\n".join(lines)

    def verdict(self):
        """The last line: PASS, FAIL, DIVERGED, INCOMPLETE or NOTHING TO CHECK, and why."""
        if self.nothing is not None and self.ending is not None:
            return f"INCOMPLETE: {self.nothing}; nothing to check"
        if self.nothing is not None:
            return f"NOTHING TO CHECK: {self.nothing}; a trace with nothing in it is not a PASS"
        failures = [check for check in self.checks if not check.passed]
        if failures:
            prefix = f"DIVERGED ({self.ending}); " if self.diverged else ""
            return f"FAIL: {prefix}{failures[0].name}: {failures[0].first_failure}"
        if not self.formulas_hold:
            return ("FAIL: nothing to compare: no moving-average update, batch statistic or "
                    "inference output of the trace could be checked")
        held = "every recorded value is within its float32 rounding bound"
        if self.diverged:
            return f"DIVERGED: {self.ending}; before it, {held}"
        if self.ending is not None:
            return f"INCOMPLETE: {self.ending}; {held}, but steps may be missing"
        largest = max(check.max_bound_fraction for check in self.checks)
        return (f"PASS: {held} (bnrepro.check.tolerances; the largest error is {largest:.2g} of its "
                "bound)")


AMBIGUOUS = "ambiguous"
CHECK_NAMES = ("moving_mean update", "moving_variance update", "batch_mean from inputs",
               "batch_variance from inputs", "inference formula")
RENORM_CHECK_NAMES = ("moving_stddev update", "renorm_mean, renorm_stddev", "renorm r, d (clipped)")
MOVES_CHECK = "statistics move when training"
AVERAGE_CHECK = "moving average update"
SCALE_AND_OFFSET_CHECK = "gamma, beta as read twice"
BATCH_STATISTICS_BOUND = (
    "bounds of the batch statistics from inputs: the mean's and the two-pass variance's (the mean, "
    "then the mean of squared differences from it), the computation of tf.nn.moments and of the "
    "fused kernel, the only ones bnrepro trace pairs into a layer (bnrepro.check.tolerances)")


def verify_trace(trace, *, vectorised=True):
    """Run every check over a :class:`bnrepro.trace.Trace` in one pass over its steps, a block at
    a time (memory independent of the number of steps for a trace from
    :func:`bnrepro.trace.open_trace`); return a :class:`Report`. ``vectorised``: the steps of the
    common case (:meth:`_LayerChecks.simple`) are checked a block at a time with arrays of one row
    per step, the same comparisons as one step at a time (``False``)."""
    if not trace.steps:
        report = _nothing_to_check(trace)
        report.notes = list(trace.header.get("tracer_notes", []))
        return report
    modes = {layer: LayerMode.from_header(settings, layer) for layer, settings in trace.layers.items()}
    names = CHECK_NAMES + (RENORM_CHECK_NAMES if any(m.renorm for m in modes.values()) else ())
    if trace.steps_are_runs:
        names += (MOVES_CHECK,) + ((AVERAGE_CHECK,) if trace.averages else ())
    if any({"gamma", "beta"} & set(settings.get("variables", {}))
           for settings in trace.layers.values()):
        names += (SCALE_AND_OFFSET_CHECK,)  # kept when a step has variables read after it
    checks = {name: Check(name) for name in (FINITE_CHECK,) + names}
    report = Report(path=trace.path, checks=list(checks.values()),
                    modes={layer: m.describe() for layer, m in modes.items() if not m.standard},
                    notes=list(trace.header.get("tracer_notes", [])))
    layers = {layer: _LayerChecks(trace, layer, mode, vectorised) for layer, mode in modes.items()}
    averages = {name: _AverageChecks(name, settings, vectorised)
                for name, settings in trace.averages.items()}
    chain, diagnosis = Chain(trace.steps_are_runs), Diagnosis(trace)
    steps, variables = _StepsSeen(), False
    for block in trace.blocks():
        before, averages_before = [], []
        for record in block:
            before.append({name: chain.before(record, name) for name in record["bn"]})
            averages_before.append({name: chain.before(record, name, "averages")
                                    for name in record.get("averages", {})})
            chain.advance(record)
            steps.add(record["step"])
            variables = variables or "variables" in record
        _verify_finite(block, checks[FINITE_CHECK])
        for layer, layer_checks in layers.items():
            layer_checks.feed([(record, previous[layer]) for record, previous in
                               zip(block, before) if layer in record["bn"]])
        for name, average_checks in averages.items():
            average_checks.feed([(record, previous[name]) for record, previous in
                                 zip(block, averages_before) if name in previous])
        diagnosis.feed(block)
    for layer_checks in layers.values():
        layer_checks.finish(checks, report)
    for average_checks in averages.values():
        _merge(checks[AVERAGE_CHECK], average_checks.check)
    if SCALE_AND_OFFSET_CHECK in checks and not variables:
        report.checks.remove(checks.pop(SCALE_AND_OFFSET_CHECK))
    report.kept = _kept(trace)
    report.ending = describe_ending(trace, steps.last)
    report.diverged = not checks[FINITE_CHECK].passed or (
        trace.end is not None and trace.end["status"] == "diverged")
    if report.diverged and report.ending is None:
        report.ending = f"non-finite values: {checks[FINITE_CHECK].first_failure}"
    report.diagnosis = diagnosis.findings()
    return report


class _StepsSeen:
    """The largest step number seen."""

    def __init__(self):
        self.last = None

    def add(self, step):
        self.last = step if self.last is None else max(self.last, step)


UPDATE_SHAPES = (
    "  assign_sub(V, (V - x) * (1 - momentum))      as tf.layers and tf_keras batch norm, "
    "assign_moving_average and ExponentialMovingAverage build it",
    "  assign(V, V * momentum + x * (1 - momentum))  a tf.assign of the weighted sum",
)


def _nothing_to_check(trace):
    """The report of a whole trace without a step (``bnrepro trace`` of a program in whose graphs
    nothing was found, or whose runs never read the state): verdict ``NOTHING TO CHECK``, not a
    pass, with what was searched, what is found and what to check."""
    report = Report(path=trace.path, checks=[])
    end = trace.end
    names = list(trace.layers) + list(trace.averages)
    searched = trace.header.get("graphs_searched") or []
    graphs = "; ".join(f"{graph.get('graph', '?')}: {graph.get('operations', '?')} operations"
                       for graph in searched)
    if end is None:
        report.nothing = ("the trace ends after its header, with no step and no end line: the run "
                          "was killed (or is still running) before it wrote its first steps")
        report.ending = "the trace has no end line and no step: it was cut short"
    elif end["status"] != "complete":
        reason = f" ({end['reason']})" if end.get("reason") else ""
        report.nothing = f"the run {end['status']}{reason} before any step was recorded"
    elif names:
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        report.nothing = (f"the header lists {len(names)} moving averages ({shown}) but no run "
                          "recorded their state")
        report.skipped = ["the tracer records a graph's state at its first run after the "
                          "variables are initialised, then every run that moves a statistic or "
                          "trains: the program ran none (did it run its training after "
                          "initialising, in that graph, while traced?)"]
    else:
        report.nothing = "no moving average was found in the graphs the program ran"
        report.skipped = [
            f"graphs searched: {graphs or 'none (the program ran no session run while traced)'}",
            "bnrepro trace finds, by the graph's structure, an assignment that mixes a "
            "non-trainable variable's old value V with a tensor x the run computes, in either "
            "shape:", *UPDATE_SHAPES,
            "what to check: are the moving averages built in a TF1 graph that session.run (or "
            "Keras' graph-mode fit) runs, not eagerly or in a tf.function? do the training runs "
            "run the updates (tf.GraphKeys.UPDATE_OPS as a control dependency of the train op, or "
            "the layer's updates)? did the runs happen while traced (bnrepro trace SCRIPT, or "
            "inside bnrepro.tracing)?"]
    return report


def _kept(trace):
    """``steps kept: ...`` for a trace whose header declares a keep policy (``bnrepro trace`` of
    a long run: every step up to ``first``, then the pairs (k - 1, k) of every ``every``-th), or
    ``None``."""
    keep = trace.header.get("keep")
    if not isinstance(keep, dict) or trace.end is None:
        return None
    return (f"steps kept: {len(trace.steps)} of the run's {trace.end['last_step'] + 1} (step 0 "
            f"included), by the trace's keep policy (every step up to {keep.get('first')}, then "
            f"the pairs (k - 1, k) of every k divisible by {keep.get('every')}): each step's "
            "update is checked where the step before it is kept")


def describe_ending(trace, last=None):
    """Why ``trace`` is not a whole, finished run, or ``None``: no end line (cut short?), an end
    line whose counts disagree with the steps present, or a run that diverged or stopped.
    ``last``: the largest step number (else read from the steps)."""
    end, steps = trace.end, trace.steps
    if last is None:
        last = max(record["step"] for record in steps)
    if end is None:
        return (f"the trace has no end line after step {last}: it may have been cut short "
                "(bnrepro writes {\"end\": ...} as the last line when a run ends)")
    if end["records"] != len(steps):
        return (f"the end line counts {end['records']} step records, the trace holds "
                f"{len(steps)}: lines are missing")
    reason = f" ({end['reason']})" if end.get("reason") else ""
    if end["status"] == "diverged":
        return f"the run diverged at step {end['last_step']}{reason}"
    if end["status"] != "complete":
        return f"the run {end['status']} at step {end['last_step']}{reason}"
    if last != end["last_step"]:
        return (f"the run ended at step {end['last_step']}, the last recorded step is {last}: "
                "lines are missing")
    return None


def _verify_finite(block, check):
    """Every number of every record (layer state, inference, variables, loss, metrics) is finite;
    the first that is not is named with its step and place. A block's numbers are tested
    together; where one is not finite, record by record."""
    try:
        numbers = np.concatenate([np.ravel(np.asarray(value, dtype=np.float64))
                                  for record in block for _, value in _numbers(record)] or [[]])
    except (TypeError, ValueError):  # not numbers (null in a line): found record by record
        numbers = np.array([np.nan])
    if np.isfinite(numbers).all():
        check.compared += numbers.size
        return
    for record in block:
        for place, value in _numbers(record):
            array = np.asarray(value, dtype=np.float64)
            check.compared += array.size
            if not np.isfinite(array).all() and check.first_failure is None:
                index = np.unravel_index(int(np.argmin(np.isfinite(array))), array.shape)
                check.first_failure = (f"step {record['step']}, {' '.join(place)}, element "
                                       f"{tuple(int(i) for i in index)}: {float(array[index])!r}")


def _numbers(record):
    """``(place, value)`` for every number-bearing entry of a step record, ``place`` the words
    that name it."""
    for section in ("bn", "inference", "averages"):
        for layer, quantities in record.get(section, {}).items():
            for quantity, value in quantities.items():
                if quantity == records.UPDATES:
                    for number, update in enumerate(value, start=1):
                        for name, item in update.items():
                            yield (section, layer, "update", str(number), name), item
                    continue
                if not isinstance(value, bool):  # a flag (trained, updates_ordered) is no number
                    yield (section, layer, quantity), value
    for section in ("variables", "metrics", "after"):
        for name, value in record.get(section, {}).items():
            if isinstance(value, (int, float, list, np.ndarray, np.generic)):
                yield (section, name), value
    if "loss" in record:
        yield ("loss",), record["loss"]


class _LayerChecks:
    """One layer's comparisons over the trace, under its declared ``mode``, fed a block of steps at
    a time (:meth:`feed`); at the end (:meth:`finish`) merged into the trace's checks, in the
    header's order of the layers, with what could not be checked (an unknown epsilon or momentum,
    inputs not recorded) in ``report.skipped``."""

    def __init__(self, trace, layer, mode, vectorised=True):
        self.layer, self.mode = layer, mode
        self.settings = settings = trace.layers[layer]
        self.checks = {name: Check(name) for name in CHECK_NAMES + RENORM_CHECK_NAMES + (
            MOVES_CHECK, SCALE_AND_OFFSET_CHECK)}
        self.variance_checks = {convention: Check("batch_variance from inputs")
                                for convention in formulas.VARIANCE_CONVENTIONS}
        self.unchecked = {}  # what was not checked -> why, in the order met
        self.unordered = {}  # "statistic outcome" of a run's unordered updates -> the steps
        # steps whose update ran; updates with inputs; inference pairs; updates whose consumed
        # values were not recorded (taken from the input); steps that moved the statistics with
        # neither what the update consumed nor the input
        self.ran = self.inputs = self.inference = self.derived = self.blind = 0
        self.held = None  # the variances with which every update from the layer's input held
        self.set_steps = []  # steps whose run set the statistics without their update (the
        # first MAX_STEPS_SHOWN and one more, for "...")
        self.not_checked = set()
        self.coverage = covered.Coverage(layer)
        self.seen = False  # the layer's first state (no formula's result) was met
        self.momenta = {statistic: records.momentum_of(settings, {}, statistic)
                        for statistic in ("moving_mean", "moving_variance")}
        self.vectorised = vectorised and mode.standard and not settings.get("zero_debias") \
            and None not in self.momenta.values()
        self.frozen = self.vectorised and frozen_by_momentum(settings, {})

    def feed(self, steps):
        """Check ``steps``, ``(record, previous)`` pairs in order (``previous``: the record of the
        state before, or ``None``): runs of :meth:`simple` steps together, the others one by
        one."""
        run = []
        for record, previous in steps:
            if self.vectorised and self.simple(record, previous):
                run.append((record, previous))
                continue
            if run:
                self.simple_steps(run)
                run = []
            self.step(record, previous)
        if run:
            self.simple_steps(run)

    def simple(self, record, previous):
        """Whether a step is the common case, checked a block at a time: a state before it, one
        update whose consumed ``batch_mean`` and ``batch_variance`` are recorded, no layer input,
        no momentum recorded (the header's), no inference record, no variables read after it, not
        set (and the layer not zero-debiased, of the standard mode: :meth:`__init__`)."""
        state = record["bn"][self.layer]
        return (previous is not None and "batch_mean" in state and "batch_variance" in state
                and not state.keys() & _NOT_SIMPLE and "variables" not in record
                and self.layer not in record.get("inference", ()))

    def simple_steps(self, steps):
        """What :meth:`step` does for :meth:`simple` steps, with one array row per step: the
        moving-average updates from the recorded batch statistics, that the statistics moved at
        the steps that trained, the coverage."""
        self.seen = True
        layer, count = self.layer, len(steps)
        states = [record["bn"][layer] for record, _ in steps]
        olds = [previous["bn"][layer] for _, previous in steps]
        numbers = [record["step"] for record, _ in steps]

        def places(row):
            return f"step {numbers[row]}, layer {layer}"
        moved = np.zeros(count, dtype=bool)
        for statistic, consumed in PAIRS:
            old = np.stack([state[statistic] for state in olds])
            new = np.stack([state[statistic] for state in states])
            value, bound = _combined(old, [(np.stack([state[consumed] for state in states]),
                                            0.0)], [self.momenta[statistic]])
            self.checks[f"{statistic} update"].compare_rows(places, new, value, bound)
            moved |= np.any(new != old, axis=tuple(range(1, new.ndim)))
        self.ran += count
        trained = [state.get("trained", record.get("run", {}).get("trained"))
                   for (record, _), state in zip(steps, states)]
        if self.frozen and any(trained):
            self.not_checked.add(MOVES_CHECK)
        elif not self.frozen:
            still = [row for row, flag in enumerate(trained) if flag and not moved[row]]
            check = self.checks[MOVES_CHECK]
            check.compared += sum(bool(flag) for flag in trained)
            if still and check.first_failure is None:
                check.first_failure = _not_moved(places(still[0]))
        without = [state for state in states if not {"gamma", "beta"} & state.keys()]
        missed = {covered.FROM_INPUTS: "the layer's input was not kept",
                  covered.INFERENCE: "no inference record"}
        self.coverage.add_steps(count - len(without), checked=(covered.UPDATES,), missed={
            **missed, covered.SCALE_AND_OFFSET: NO_SCALE_AND_OFFSET_READ})
        self.coverage.add_steps(len(without), checked=(covered.UPDATES,), missed={
            **missed, covered.SCALE_AND_OFFSET: NO_SCALE_AND_OFFSET})

    def step(self, record, previous):
        """One step's comparisons (``previous``: the record of the state before, or ``None``)."""
        layer, settings, mode, checks = self.layer, self.settings, self.mode, self.checks
        coverage, epsilon = self.coverage, settings["epsilon"]
        state = record["bn"][layer]
        step = record["step"]
        initial, self.seen = not self.seen, True  # the layer's first state: no formula's result
        if not initial:
            coverage.add_step(step)
            _verify_scale_and_offset(checks, coverage, settings, record, layer)
        if state.get("set"):  # changed without its update: the next step starts from here
            if len(self.set_steps) <= MAX_STEPS_SHOWN:
                self.set_steps.append(step)
            for quantity in covered.QUANTITIES:
                coverage.miss(quantity, step, "the run set the statistics without their update")
            return
        state_only = record.get("run", {}).get("state_only", False)
        if state_only:  # nothing of the step but its state: the next step's check starts from it
            for quantity in covered.QUANTITIES:
                coverage.miss(quantity, step, STATE_ONLY)
        if previous is None and not initial:
            for quantity in (covered.UPDATES, covered.INFERENCE, covered.SCALE_AND_OFFSET):
                coverage.miss(quantity, step, "the state before the step was not recorded")
        links = records.updates(state, None if previous is None else previous["bn"][layer])
        where = f"step {step}, layer {layer}"
        self.ran += bool(links)
        moved_unseen = bool(previous is not None and not links and not state_only
                            and records.moved(previous["bn"][layer], state))
        self.blind += moved_unseen
        if not links:
            for quantity in (covered.UPDATES, covered.FROM_INPUTS):
                coverage.miss(quantity, step, (
                    "the statistics moved, but neither what the update consumed nor the input "
                    "was recorded") if moved_unseen else "the run did not update the layer")
        self.derived += sum("batch_mean" not in link for link in links)
        if previous is not None and links:
            followed = _verify_updates(checks, where, settings, mode, previous, record, layer,
                                       links, self.unchecked, coverage)
            if "variance from inputs" in followed:
                fits = followed.pop("variance from inputs")
                self.held = fits if self.held is None else self.held & fits
            for statistic, label in followed.items():
                if label is not None:
                    steps = self.unordered.setdefault(f"{statistic} {label}", [])
                    if len(steps) <= MAX_STEPS_SHOWN:
                        steps.append(step)
        # the layer's own flag: a run that trains another network only (a GAN's other half) runs
        # this layer without training it
        trained = previous is not None and state.get("trained",
                                                     record.get("run", {}).get("trained"))
        if trained and frozen_by_momentum(settings, state):  # momentum 1: moving = old by design
            self.not_checked.add(MOVES_CHECK)  # the diagnosis says so
        elif trained:
            still = not records.moved(previous["bn"][layer], state)
            checks[MOVES_CHECK].compared += 1
            if still and checks[MOVES_CHECK].first_failure is None:
                checks[MOVES_CHECK].first_failure = _not_moved(where)
        for number, link in enumerate(links, start=1):
            if "batch_input" in link and "batch_mean" in link:
                self.inputs += 1
                coverage.check(covered.FROM_INPUTS, step)
                _verify_from_inputs(checks, self.variance_checks,
                                    _update_place(where, number, links), mode, link)
        if links and not any("batch_input" in link and "batch_mean" in link for link in links):
            coverage.miss(covered.FROM_INPUTS, step, (
                "what the update consumed was not recorded: the update was checked with the "
                "input's moments") if any("batch_input" in link for link in links) else
                "the layer's input was not kept")
        if previous is not None and layer in record.get("inference", {}):
            self.inference += 1
            if epsilon is not None:
                coverage.check(covered.INFERENCE, step)
                coverage.check(covered.SCALE_AND_OFFSET, step, covered.IN_INFERENCE)
                _verify_inference(checks["inference formula"], where, previous["bn"][layer],
                                  record["inference"][layer], epsilon)
            else:
                coverage.miss(covered.INFERENCE, step, "the epsilon is unknown")
        elif not initial:
            coverage.miss(covered.INFERENCE, step, "no inference record")
        coverage.miss(covered.SCALE_AND_OFFSET, step, NO_SCALE_AND_OFFSET_READ
                      if {"gamma", "beta"} & set(state) else NO_SCALE_AND_OFFSET)

    def finish(self, total, report):
        """Merge this layer's comparisons into the trace's ``total`` checks (those it has); what
        was not checked, the variance convention and the coverage into ``report``."""
        layer, settings, unchecked = self.layer, self.settings, self.unchecked
        variance_checks, epsilon = self.variance_checks, settings["epsilon"]
        report.coverage.append(self.coverage)
        report.not_checked |= self.not_checked
        if epsilon is None:
            what = "which epsilon the inference output follows (the diagnosis' epsilons)"
            if self.inference:
                what = (f"the inference formula ({self.inference} steps) and which epsilon it "
                        "follows (the diagnosis' epsilons)")
                report.not_checked.add("inference formula")
            unchecked[what] = ("its epsilon is unknown: null in the header, not found in the "
                               "graph (bnrepro trace reads it from the fused kernel's attribute "
                               "or the constant tf.nn.batch_normalization adds)")
        if self.set_steps:
            unchecked[f"the change at steps {_steps_text(self.set_steps)}"] = (
                "the run set the statistics without their moving-average update (an initializer "
                "in a new session, a Saver restore, an assignment); the steps after start from "
                "there")
        if self.blind:
            unchecked[f"the moving-average updates of {self.blind} steps"] = (
                "the statistics moved, but neither the values the update consumed nor the "
                "layer's input were recorded")
        if self.ran and not self.inputs and not self.derived:
            consumed = ("the fused kernel's unbiased (N-1) variance, as the header declares"
                        if settings.get("fused") else "as recorded")
            unchecked["batch_mean and batch_variance from the layer's inputs"] = (
                "the layer's input was not recorded; the moving-average updates were checked "
                f"with the batch statistics they consumed ({consumed})")
        if self.derived:
            unchecked["batch_mean and batch_variance from the layer's inputs"] = (
                f"the values {self.derived} updates consumed were not recorded (the tracer does "
                "not fetch them, see the runs' not_fetched); those updates were checked with the "
                "moments of the layer's input instead, the variance named below")
            held = self.held
            if held is not None and not variance_checks[formulas.BIASED].compared:
                report.variance_used[layer] = (AMBIGUOUS if len(held) > 1 else
                                               next(iter(held)) if held else None)
        report.skipped.extend(f"not checked for {layer}: {what}: {why}" for what, why in
                              unchecked.items())
        if self.unordered:
            report.skipped.append(
                f"updates of {layer}: runs that update it several times order those updates no "
                "way, so TensorFlow may run them in any order or let each read the state before "
                "another wrote it; each such run was checked against every order, all reading "
                "the state before the run, and each alone (the first that holds is named): "
                + "; ".join(f"{label} at steps {_steps_text(steps)}"
                            for label, steps in self.unordered.items()))
        if variance_checks[formulas.BIASED].compared:
            followed = _variance_followed(variance_checks)
            report.variance_used[layer] = followed
            merged = followed if followed in variance_checks else formulas.BIASED
            _merge(self.checks["batch_variance from inputs"], variance_checks[merged])
        for name, check in total.items():
            if name in self.checks:
                _merge(check, self.checks[name])


MAX_STEPS_SHOWN = 8  # a message lists at most this many step numbers, then "..."
_NOT_SIMPLE = {"set", records.UPDATES, "batch_input", records.MEAN_MOMENTUM,
               records.VARIANCE_MOMENTUM}
NO_SCALE_AND_OFFSET_READ = "no inference record, and no variables read after the step"
STATE_ONLY = "only the state after the step was kept (a kept pair's first step, or the last)"
NO_SCALE_AND_OFFSET = "the layer has no gamma or beta"


def _not_moved(where):
    return (f"{where}: the run trained (an optimizer ran) but the moving statistics did not "
            "move: their update is not part of the training run")


def _steps_text(steps):
    """Up to :data:`MAX_STEPS_SHOWN` step numbers, ``...`` after them when there are more."""
    return (", ".join(map(str, steps[:MAX_STEPS_SHOWN]))
            + (", ..." if len(steps) > MAX_STEPS_SHOWN else ""))


def _update_place(where, number, links):
    """``where``, with ``update i of k`` when the run updated the layer ``k > 1`` times."""
    return where if len(links) == 1 else f"{where}, update {number} of {len(links)}"


def _verify_updates(checks, where, settings, mode, previous, record, layer, links, unchecked,
                    coverage):
    """A step's moving-average updates: ``moving_mean`` and ``moving_variance`` from the state
    before the run through each update in the order they ran (:func:`_combined`); when the run
    orders them no way, each statistic (its updates race on their own) through the first of
    :func:`_outcomes` that holds it. What an update consumed is the recorded ``batch_mean`` /
    ``batch_variance``, or where the trace has only the layer's input, its moments
    (:func:`bnrepro.check.records.consumed`; the variance the header declares first, ``/(N-1)`` for
    a fused layer, then the other). A zero-debiased or renorm layer has its own formulas (one
    recorded update per run). The step is counted in ``coverage`` as checked, or why not. Returns ``{statistic: label of the outcome}`` (``None`` for ordered
    updates) and, for the variance computed from the input, the conventions with which it held
    (``"variance from inputs"``)."""
    old, state = previous["bn"][layer], records.flattened(record["bn"][layer])
    momenta = {statistic: [records.momentum_of(settings, state, statistic, link) for link in links]
               for statistic in ("moving_mean", "moving_variance")}
    unknown = [statistic for statistic, values in momenta.items() if None in values]
    step = record["step"]
    if unknown:
        unchecked[f"the {' and '.join(unknown)} updates"] = (
            "the momentum is computed at run time and was not recorded at some steps")
        coverage.miss(covered.UPDATES, step, "the momentum was not recorded")
    derived = any("batch_mean" not in link for link in links)
    if (len(links) > 1 or derived) and (settings.get("zero_debias") or mode.renorm):
        unchecked["the updates of a zero-debiased or renorm layer at some steps"] = (
            "they are checked one recorded update per run, with the values it consumed")
        coverage.miss(covered.UPDATES, step, "a zero-debiased or renorm layer updated several "
                      "times or without what it consumed")
        return {}
    if not unknown:
        coverage.check(covered.UPDATES, step)
    if settings.get("zero_debias"):
        if not unknown:
            _verify_zero_debiased(checks, where, old, state,
                                  {name: values[0] for name, values in momenta.items()})
        return {}
    pairs = PAIRS
    if mode.renorm:
        pairs = pairs[:1]
        epsilon = settings["epsilon"]
        if epsilon is None:
            unchecked["the moving_variance update (renorm)"] = (
                "renorm averages sqrt(batch_variance + epsilon), and epsilon is unknown")
        elif "moving_variance" not in unknown:
            old_stddev, old_stddev_error = moving_stddev_with_bound(previous, layer, epsilon)
            _verify_renorm(checks, where, mode, record, state, previous, layer,
                           momenta["moving_variance"][0], epsilon, old_stddev, old_stddev_error)
    declared = formulas.UNBIASED if settings.get("fused") else formulas.BIASED
    conventions = (declared,) + tuple(c for c in formulas.VARIANCE_CONVENTIONS if c != declared)
    outcomes = _outcomes(len(links), records.ordered(record["bn"][layer]))
    followed = {}
    for statistic, name in pairs:
        if statistic in unknown:
            continue
        tried = conventions if derived and statistic == "moving_variance" else conventions[:1]
        try:
            fits = [_fitting_outcome(outcomes, old[statistic], state[statistic], links, name,
                                     momenta[statistic], convention, mode)
                    for convention in tried]
        except ValueError as error:  # the declared ghost batches do not split the batch
            checks[f"{statistic} update"].fail(where, str(error))
            continue
        label, value, bound = next((fit for fit in fits if fit[0] != NO_FIT), fits[0])
        checks[f"{statistic} update"].compare(where, state[statistic], value, bound)
        followed[statistic] = label if len(outcomes) > 1 else None
        if len(tried) > 1:
            followed["variance from inputs"] = {convention for convention, fit in zip(tried, fits)
                                                if fit[0] != NO_FIT}
    return followed


NO_FIT = "none of them"


def _fitting_outcome(outcomes, old, recorded, links, name, momenta, convention, mode):
    """``(label, value, bound)`` of the first outcome whose value holds ``recorded`` (label
    :data:`NO_FIT` and the first outcome's value and bound when none does),
    the consumed values ``name`` of ``links`` as recorded or from their inputs under
    ``convention``; ``(NO_FIT, nan, 0)`` when the unbiased variance does not exist."""
    consumed = [records.consumed(link, name, convention, mode) for link in links]
    if None in consumed:
        return NO_FIT, np.full(np.shape(recorded), np.nan), 0.0
    first = None
    for label, concurrent, indices in outcomes:
        value, bound = _combined(old, [consumed[i] for i in indices],
                                 [momenta[i] for i in indices], concurrent)
        if _holds(recorded, value, bound):
            return label, value, bound
        first = first or (value, bound)
    return (NO_FIT, *first)


PAIRS = (("moving_mean", "batch_mean"), ("moving_variance", "batch_variance"))
MAX_ORDERS = 5  # the updates of a run that orders them no way: every order tried up to this many


def _outcomes(count, ordered):
    """The ways a run's ``count`` updates may have combined: ``(label, concurrent, indices)``.
    In the order listed, when the run orders them (``label`` ``None``); otherwise every order (up
    to :data:`MAX_ORDERS` updates; beyond, the one listed), all of them reading the state before
    the run (``concurrent``), and each alone (the others' writes lost)."""
    listed = tuple(range(count))
    if ordered or count == 1:
        return [(None, False, listed)]
    orders = itertools.permutations(listed) if count <= MAX_ORDERS else [listed]
    return ([(f"in the order {', '.join(str(i + 1) for i in order)}", False, order)
             for order in orders]
            + [("all reading the state before the run", True, listed)]
            + [(f"update {i + 1} alone (the others' writes lost)", False, (i,)) for i in listed])


def _combined(old, consumed, momenta, concurrent=False):
    """``(value, bound)``: the state after a run's updates, from the state ``old`` before it, each
    update consuming ``(c_i, e_i)`` (a value and its bound: 0 as recorded, or the bound of its
    computation from the layer's input). In sequence (each update reads what the one before it
    wrote)::

        v_0 = old,   v_i = m_i * v_(i-1) + (1 - m_i) * c_i,
        b_0 = 0,     b_i = moving_average_bound(v_(i-1), c_i, m_i, v_i, statistic_error=e_i,
                                                old_error=b_(i-1))

    (:func:`bnrepro.check.tolerances.moving_average_bound`; one update is the standard check);
    ``concurrent``, every update having read ``old`` before any wrote (``assign_sub`` applies each
    one's ``(old - c_i) * (1 - m_i)``)::

        v_i = v_(i-1) + (1 - m_i) * (c_i - old),
        b_i = b_(i-1) + moving_average_bound(old, c_i, m_i, v_i, statistic_error=e_i)
    """
    old = np.asarray(old, dtype=np.float64)
    value, bound = old, 0.0
    for (statistic, error), momentum in zip(consumed, momenta):
        if concurrent:
            value = value + formulas.moving_average(old, statistic, momentum) - old
            bound = bound + tolerances.moving_average_bound(old, statistic, momentum, value,
                                                            statistic_error=error)
        else:
            new = formulas.moving_average(value, statistic, momentum)
            bound = tolerances.moving_average_bound(value, statistic, momentum, new,
                                                    statistic_error=error, old_error=bound)
            value = new
    return value, bound


def _holds(recorded, expected, bound):
    """Whether every recorded value is within its bound of the expected one (as a check holds it)."""
    probe = Check("")
    probe.compare("", recorded, expected, bound)
    return probe.passed


def _verify_from_inputs(checks, variance_checks, where, mode, update):
    """An update's consumed ``batch_mean`` and ``batch_variance`` against the moments of its
    ``batch_input`` (under ``mode``: ghost batches), the variance both biased and unbiased."""
    try:
        moments = {convention: records.moments_with_bounds(update["batch_input"], convention, mode)
                   for convention in formulas.VARIANCE_CONVENTIONS}
    except ValueError as error:  # the declared ghost batches do not split the batch
        checks["batch_mean from inputs"].fail(where, str(error))
        return
    mean, bound = moments[formulas.BIASED][0]
    checks["batch_mean from inputs"].compare(where, update["batch_mean"], mean, bound)
    for convention, pair in moments.items():
        if pair is not None:  # None: N - 1 = 0, the unbiased variance does not exist
            variance_checks[convention].compare(where, update["batch_variance"], *pair[1])


def _verify_scale_and_offset(checks, coverage, settings, record, layer):
    """The layer's ``gamma`` and ``beta`` as the tracer read them against the same variables in the
    step's ``variables`` (``bnrepro run`` and ``compare`` read every variable after the step): two
    reads of one variable after one run, equal bit for bit."""
    names = settings.get("variables", {})
    state, variables = record["bn"][layer], record.get("variables", {})
    compared = [(role, names[role]) for role in ("gamma", "beta")
                if role in state and names.get(role) in variables]
    for role, name in compared:
        checks[SCALE_AND_OFFSET_CHECK].compare(f"step {record['step']}, layer {layer}, {role}",
                                               state[role], variables[name], 0.0)
    if compared:
        coverage.check(covered.SCALE_AND_OFFSET, record["step"], covered.AS_VARIABLES)


def _verify_inference(check, where, old, pair, epsilon):
    """``output = gamma_old * (input - moving_mean_old) / sqrt(moving_variance_old + epsilon) +
    beta_old``."""
    expected = formulas.normalize(pair["input"], old["moving_mean"], old["moving_variance"],
                                  old["gamma"], old["beta"], epsilon)
    check.compare(where, pair["output"], expected, tolerances.normalize_bound(
        pair["input"], old["moving_mean"], old["moving_variance"], old["gamma"], old["beta"],
        epsilon, expected))


def _verify_zero_debiased(checks, where, old, state, momenta):
    """A zero-debiased layer's moving mean and variance
    (:func:`bnrepro.check.formulas.zero_debiased_average`), with the ``local_step`` before and after
    and each average's momentum (``momenta[statistic]``)."""
    if "local_step" not in state or "local_step" not in old:
        checks["moving_mean update"].fail(where, "a zero-debiased average without its local_step")
        return
    steps = float(np.ravel(old["local_step"])[0]), float(np.ravel(state["local_step"])[0])
    for statistic, consumed in (("moving_mean", "batch_mean"), ("moving_variance", "batch_variance")):
        momentum = momenta[statistic]
        biased_old, biased_new, expected = formulas.zero_debiased_average(
            old[statistic], state[consumed], momentum, *steps)
        checks[f"{statistic} update"].compare(
            where, state[statistic], expected, tolerances.zero_debiased_bound(
                old[statistic], state[consumed], momentum, *steps, biased_old, biased_new,
                expected))


class _AverageChecks:
    """The comparisons of one average that pairs with no other (``bnrepro-trace/2``), fed a block
    of ``(record, previous)`` pairs at a time: each value against ``momentum * old + (1 -
    momentum) * consumed`` (zero-debiased where the header says so), the steps with the header's
    momentum a block at a time, one array row per step (:meth:`_LayerChecks.feed`)."""

    def __init__(self, name, settings, vectorised=True):
        self.name, self.settings = name, settings
        self.check = Check(AVERAGE_CHECK)
        self.vectorised = vectorised and not settings.get("zero_debias") \
            and settings.get("momentum") is not None

    def feed(self, steps):
        run = []
        for record, previous in steps:
            state = record["averages"][self.name]
            if previous is None or "consumed" not in state:
                continue
            if self.vectorised and "momentum" not in state:
                run.append((record, previous))
                continue
            self._simple_steps(run)
            run = []
            self._step(record, previous)
        self._simple_steps(run)

    def _step(self, record, previous):
        name, settings = self.name, self.settings
        state, old = record["averages"][name], previous["averages"][name]
        momentum = state.get("momentum", settings["momentum"])
        where = f"step {record['step']}, average {name}"
        if settings.get("zero_debias"):
            steps = (float(np.ravel(old["local_step"])[0]), float(np.ravel(state["local_step"])[0]))
            biased_old, biased_new, expected = formulas.zero_debiased_average(
                old["value"], state["consumed"], momentum, *steps)
            bound = tolerances.zero_debiased_bound(old["value"], state["consumed"], momentum,
                                                   *steps, biased_old, biased_new, expected)
        else:
            expected = formulas.moving_average(old["value"], state["consumed"], momentum)
            bound = tolerances.moving_average_bound(old["value"], state["consumed"], momentum,
                                                    expected)
        self.check.compare(where, state["value"], expected, bound)

    def _simple_steps(self, steps):
        """:meth:`_step` of steps with the header's momentum, one array row per step."""
        if not steps:
            return
        name = self.name
        states = [record["averages"][name] for record, _ in steps]
        old = np.stack([previous["averages"][name]["value"] for _, previous in steps])
        value, bound = _combined(old, [(np.stack([state["consumed"] for state in states]), 0.0)],
                                 [float(self.settings["momentum"])])
        self.check.compare_rows(lambda row: f"step {steps[row][0]['step']}, average {name}",
                                np.stack([state["value"] for state in states]), value, bound)


def _verify_renorm(checks, where, mode, record, state, previous, layer, momentum, epsilon,
                   old_stddev, old_stddev_error):
    """Renorm's moving variance, its own variables and corrections, with
    ``s = sqrt(batch_variance + epsilon)``::

        moving_stddev   = momentum * moving_stddev_old + (1 - momentum) * s
        moving_variance = max(moving_stddev^2 - epsilon, 0)
        renorm_mean     = m_r * renorm_mean_old   + (1 - m_r) * batch_mean
        renorm_stddev   = m_r * renorm_stddev_old + (1 - m_r) * s
        r, d            = LayerMode.corrections(batch_mean, batch_variance, renorm_mean_old,
                                                renorm_stddev_old, epsilon)   (clipped)

    each compared when the trace records it (``variables`` and ``metrics``), each against the bound
    the float32 roundings of its chain give (:mod:`bnrepro.check.tolerances`).
    """
    variance = np.asarray(state["batch_variance"], dtype=np.float64)
    stddev = np.sqrt(variance + epsilon)
    moving_stddev = formulas.moving_average(old_stddev, stddev, momentum)
    moving_variance = mode.moving_variance(None, old_stddev, variance, momentum, epsilon)
    stddev_error, moving_stddev_error, moving_variance_error = tolerances.renorm_bounds(
        old_stddev, variance, momentum, epsilon, moving_stddev, moving_variance,
        old_stddev_error=old_stddev_error)
    checks["moving_variance update"].compare(where, state["moving_variance"], moving_variance,
                                             moving_variance_error)
    recorded = renorm_variable(record, layer, "moving_stddev")
    if recorded is not None:
        checks["moving_stddev update"].compare(where, recorded, moving_stddev,
                                               moving_stddev_error)
    old_mean = renorm_variable(previous, layer, "renorm_mean")
    old_renorm_stddev = renorm_variable(previous, layer, "renorm_stddev")
    if old_mean is None or old_renorm_stddev is None:
        return
    for name, old, value, value_error in (
            ("renorm_mean", old_mean, state["batch_mean"], 0.0),
            ("renorm_stddev", old_renorm_stddev, stddev, stddev_error)):
        new = renorm_variable(record, layer, name)
        if new is not None:
            expected = formulas.moving_average(old, value, mode.renorm_momentum)
            checks["renorm_mean, renorm_stddev"].compare(
                f"{where}, {name}", new, expected, tolerances.moving_average_bound(
                    old, value, mode.renorm_momentum, expected, statistic_error=value_error))
    r, d = mode.corrections(state["batch_mean"], variance, old_mean, old_renorm_stddev, epsilon)
    scale = np.maximum(old_renorm_stddev, np.sqrt(epsilon))
    scale_error = tolerances.UNIT_ROUNDOFF * 2.0 * scale
    shift = np.asarray(state["batch_mean"], dtype=np.float64) - old_mean
    bounds = {
        "renorm_r": tolerances.quotient_bound(stddev, scale, r, numerator_error=stddev_error,
                                              denominator_error=scale_error),
        "renorm_d": tolerances.quotient_bound(
            shift, scale, d, denominator_error=scale_error,
            numerator_error=tolerances.UNIT_ROUNDOFF * (np.abs(state["batch_mean"])
                                                        + np.abs(old_mean))),
    }
    for name, expected in zip(("renorm_r", "renorm_d"), (r, d)):
        got = record.get("metrics", {}).get(f"{layer} {name}")
        if got is not None:
            checks["renorm r, d (clipped)"].compare(f"{where}, {name}", got, expected,
                                                    bounds[name])


def _variance_followed(variance_checks):
    """The variance convention whose comparisons all passed: ``BIASED`` or ``UNBIASED`` when only
    one did, :data:`AMBIGUOUS` when both did (the numbers do not tell them apart: large batches,
    or variances small against the squared mean), ``None`` when neither."""
    passed = [convention for convention in formulas.VARIANCE_CONVENTIONS
              if variance_checks[convention].compared and variance_checks[convention].passed]
    if len(passed) > 1:
        return AMBIGUOUS
    return passed[0] if passed else None


def _merge(total, part):
    """Add one layer's comparisons into the trace-wide check."""
    total.compared += part.compared
    total.max_abs_error = max(total.max_abs_error, part.max_abs_error)
    total.max_rel_error = max(total.max_rel_error, part.max_rel_error)
    total.max_bound_fraction = max(total.max_bound_fraction, part.max_bound_fraction)
    if total.first_failure is None:
        total.first_failure = part.first_failure
