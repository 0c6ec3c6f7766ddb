"""Pictures of a trace: each layer's moving statistics against the batch statistics that fed them.

For each step ``k`` whose state before it is kept, per channel::

    predicted_k = momentum * moving_(k-1) + (1 - momentum) * batch_k

(the momentum the header gives, or the one recorded at the step), so a reader sees the moving
average lag behind the batch values and the prediction land on TensorFlow's values. ``batch_k``
is what the update consumed (``batch_mean`` / ``batch_variance``; of a run that updated the layer
several times, the last update), else the moments of the layer's input (the variance the header
declares, :func:`bnrepro.check.records.consumed`), else nothing is drawn for the step. A
zero-debiased layer, and a renorm layer's moving variance, follow other formulas: their prediction
is not drawn (``bnrepro verify`` checks them).

:func:`layer_series` reads the trace once, a block at a time (a trace from
:func:`bnrepro.trace.open_trace` is not held in memory) and keeps at most :data:`MAX_POINTS`
points per series: a longer run is cut into that many bins of consecutive records, each drawn at
its last record holding the layer, with the band of all channels over the whole bin (the smallest
and the largest moving value). Memory does not grow with the steps. The zoom keeps every step of
its window (at most :data:`MAX_ZOOM_STEPS`), read in a second pass when the run was binned.

Marked steps (vertical lines, and counted in the title):

* ``off``: a moving statistic further from its prediction than the float32 bound of the update
  (:func:`bnrepro.check.tolerances.moving_average_bound`, the bound ``bnrepro verify`` holds it
  to), in any channel;
* ``moved, not trained``: a run that moved the statistics without training (an evaluation that
  ran the update);
* ``set``: statistics changed without their update (an initializer, a restore).

Figures are built without pyplot (no backend, no screen needed); ``figure.savefig(path)`` writes
one, a notebook shows it.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
from matplotlib.figure import Figure

from bnrepro.check import formulas, records, tolerances
from bnrepro.check.layer_modes import LayerMode
from bnrepro.check.chain import Chain

PAIRS = (("moving_mean", "batch_mean"), ("moving_variance", "batch_variance"))
SERIES_KINDS = ("stored", "batch", "predicted")
MAX_POINTS = 2000  # points per series; a longer run is binned
MAX_ZOOM_STEPS = 2000  # steps the zoom keeps
ZOOM_AROUND = 50  # the default zoom: this many steps either side of the first marked step
FIRST_STEPS = 200  # ... else the run's first steps (a run no longer than this has no zoom)
MAX_MARKS = 200  # marked steps kept per kind (all of them counted)
SHOWN_CHANNELS = 3  # channels drawn by default: the first, the middle and the last
MARK_KINDS = {"off": "tab:red", "moved, not trained": "tab:orange", "set": "tab:purple"}


@dataclass
class Marks:
    """Marked steps of one kind: the first :data:`MAX_MARKS` and how many in all."""

    steps: list = field(default_factory=list)
    count: int = 0

    def add(self, step):
        self.count += 1
        if len(self.steps) < MAX_MARKS:
            self.steps.append(step)


@dataclass
class LayerSeries:
    """One layer's figure data: the drawn ``channels``; per point, its step (``steps``, ``(P,)``),
    per statistic and kind (``stored``, ``batch``, ``predicted``) the chosen channels' values
    (``values[(statistic, kind)]``, ``(P, channels)``, NaN where the step has none) and the band
    of all channels (``band[statistic]``, ``(P, 2)``: smallest, largest); ``binned``: how many
    consecutive records a point stands for (1: every step); the marked steps by kind."""

    layer: str
    channels: list
    total_channels: int
    steps: np.ndarray
    values: dict
    band: dict
    binned: int
    marks: dict


class _Collector:
    """One layer's points, taken a record at a time (:meth:`take`) and closed into a
    :class:`LayerSeries` (:meth:`series`); records ``binned`` at a time make one point."""

    def __init__(self, layer, settings, channels, binned, steps=None):
        self.layer, self.settings, self.channels, self.binned = layer, settings, channels, binned
        self.mode = LayerMode.from_header(settings, layer)
        # the layer's updates are the momentum formula with the header's momenta: its common
        # steps may be taken a block at a time (_simple)
        self.stackable = (not settings.get("zero_debias") and not self.mode.renorm and all(
            records.momentum_of(settings, {}, statistic) is not None
            for statistic in ("moving_mean", "moving_variance")))
        self.window = steps  # (first, last) step numbers taken, or None: all
        self.points = []  # (step, {(statistic, kind): values}, {statistic: (low, high)})
        self.marks = {kind: Marks() for kind in MARK_KINDS}
        self.total_channels = None
        self._bin, self._sample, self._band = None, None, None

    def take_block(self, rows):
        """Take ``(index, record, previous)`` rows in order (record number ``index`` of the
        trace, holding the layer; ``previous``: the record of its state before, ``None``: not
        kept): runs of :meth:`_simple` rows a block at a time (:func:`stacked_step_values`), the
        others one by one (:func:`step_values`), the same values either way."""
        rows = [row for row in rows if self.window is None
                or self.window[0] <= row[1]["step"] <= self.window[1]]
        run = []
        for row in rows:
            if self._simple(row[1], row[2]):
                run.append(row)
                continue
            self._take_run(run)
            run = []
            index, record, previous = row
            state = record["bn"][self.layer]
            values, fraction = step_values(
                state, None if previous is None else previous["bn"][self.layer], self.settings,
                self.mode)
            self._take(index, record, values, fraction)
        self._take_run(run)

    def _simple(self, record, previous):
        """A step whose update consumed recorded batch statistics with the header's momentum."""
        state = record["bn"][self.layer]
        return (previous is not None and self.stackable and "batch_mean" in state
                and "batch_variance" in state and not state.keys() & _NOT_STACKED)

    def _take_run(self, run):
        if not run:
            return
        states = [record["bn"][self.layer] for _, record, _ in run]
        olds = [previous["bn"][self.layer] for _, _, previous in run]
        values, fractions = stacked_step_values(states, olds, self.settings)
        for row, (index, record, _) in enumerate(run):
            self._take(index, record, _Row(values, row), fractions[row])

    def _take(self, index, record, values, fraction):
        """One record's values (``{(statistic, kind): (C,) values}``, or a :class:`_Row` of
        stacked ones) and update's fraction of its bound, into the marks and the bins."""
        step, state = record["step"], record["bn"][self.layer]
        self.total_channels = np.size(state["moving_mean"])
        self._mark(record, state)
        if fraction > 1.0:
            self.marks["off"].add(step)
        position = index // self.binned
        if position != self._bin:
            self._close_bin()
            self._bin, self._band = position, {}
        self._sample = (step, values)
        for statistic, _ in PAIRS:
            stored = values[(statistic, "stored")]
            low, high = self._band.get(statistic, (math.inf, -math.inf))
            self._band[statistic] = (min(low, float(np.min(stored))),
                                     max(high, float(np.max(stored))))

    def _mark(self, record, state):
        run = record.get("run", {})
        if state.get("set"):
            self.marks["set"].add(record["step"])
        elif run.get("moved") and not run.get("trained"):
            self.marks["moved, not trained"].add(record["step"])

    def _close_bin(self):
        if self._sample is not None:
            step, values = self._sample
            self.points.append((step, {key: values[key][self.channels] for key in
                                       ((statistic, kind) for statistic, _ in PAIRS
                                        for kind in SERIES_KINDS)}, dict(self._band)))
        self._sample = None

    def series(self):
        self._close_bin()
        count, shown = len(self.points), len(self.channels)
        values = {(statistic, kind): np.array([point[1][(statistic, kind)]
                                               for point in self.points]).reshape(count, shown)
                  for statistic, _ in PAIRS for kind in SERIES_KINDS}
        band = {statistic: np.array([point[2][statistic] for point in self.points]).reshape(
            count, 2) for statistic, _ in PAIRS}
        return LayerSeries(self.layer, list(self.channels), self.total_channels or 0,
                           np.array([point[0] for point in self.points], dtype=np.int64), values,
                           band, self.binned, self.marks)


def step_values(state, old, settings, mode):
    """One step of a layer: ``({(statistic, kind): (C,) values}, fraction)``, per moving
    statistic its ``stored`` value, the ``batch`` statistic its update consumed and the
    ``predicted`` one (NaN where the step has none: see the module docstring), and the largest
    ``|stored - predicted| / bound`` over both statistics and every channel, the bound the update's
    float32 rounding (:func:`bnrepro.check.tolerances.moving_average_bound`, with the consumed
    value's own when computed from the input, and :func:`~bnrepro.check.tolerances.flush_slack`);
    above 1 the step is off its update (NaN: nothing predicted)."""
    values, fraction = {}, np.nan
    updates = records.updates(state, old)
    convention = formulas.UNBIASED if settings.get("fused") else formulas.BIASED
    for statistic, consumed_name in PAIRS:
        stored = np.asarray(state[statistic], dtype=np.float64).ravel()
        batch = predicted = None
        if updates and not state.get("set"):
            try:
                consumed = records.consumed(updates[-1], consumed_name, convention, mode)
            except ValueError:  # declared ghost batches that do not split the batch
                consumed = None
            if consumed is not None:
                batch = np.ravel(consumed[0])
                momentum = records.momentum_of(settings, state, statistic, updates[-1])
                if old is not None and len(updates) == 1 and momentum is not None \
                        and _predicts(settings, mode, statistic):
                    before = np.asarray(old[statistic], dtype=np.float64).ravel()
                    predicted = formulas.moving_average(before, batch, momentum)
                    bound = tolerances.moving_average_bound(
                        before, batch, momentum, predicted,
                        statistic_error=np.ravel(consumed[1])) + tolerances.flush_slack()
                    with np.errstate(invalid="ignore"):
                        ratio = np.abs(stored - predicted) / bound
                    worst = float(np.max(np.where(np.isfinite(ratio), ratio, np.inf)))  # NaN: off
                    fraction = worst if np.isnan(fraction) else max(fraction, worst)
        values[(statistic, "stored")] = stored
        for kind, series in (("batch", batch), ("predicted", predicted)):
            values[(statistic, kind)] = np.full(stored.shape, np.nan) if series is None else series
    return values, fraction


class _Row:
    """Row ``row`` of :func:`stacked_step_values`' arrays, read as one step's values."""

    def __init__(self, values, row):
        self.values, self.row = values, row

    def __getitem__(self, key):
        return self.values[key][self.row]


_NOT_STACKED = {"set", records.UPDATES, records.MEAN_MOMENTUM, records.VARIANCE_MOMENTUM}


def stacked_step_values(states, olds, settings):
    """:func:`step_values` of steps that each consumed their recorded ``batch_mean`` and
    ``batch_variance`` in one update with the header's momentum, from ``olds`` (the states
    before), with one array row per step: ``({(statistic, kind): (S, C)}, (S,) fractions)``."""
    values, fractions = {}, np.full(len(states), -np.inf)
    for statistic, consumed_name in PAIRS:
        stored = np.stack([np.ravel(state[statistic]) for state in states]).astype(np.float64)
        before = np.stack([np.ravel(old[statistic]) for old in olds]).astype(np.float64)
        batch = np.stack([np.ravel(state[consumed_name]) for state in states]).astype(np.float64)
        momentum = records.momentum_of(settings, {}, statistic)
        predicted = formulas.moving_average(before, batch, momentum)
        bound = tolerances.moving_average_bound(before, batch, momentum, predicted,
                                                statistic_error=0.0) + tolerances.flush_slack()
        with np.errstate(invalid="ignore"):
            ratio = np.abs(stored - predicted) / bound
        fractions = np.maximum(fractions, np.max(np.where(np.isfinite(ratio), ratio, np.inf),
                                                 axis=1))
        values[(statistic, "stored")] = stored
        values[(statistic, "batch")] = batch
        values[(statistic, "predicted")] = predicted
    return values, fractions


def _predicts(settings, mode, statistic):
    """Whether the momentum formula is the layer's update of ``statistic`` (not for a
    zero-debiased layer, nor a renorm layer's moving variance)."""
    return not settings.get("zero_debias") and not (mode.renorm and statistic == "moving_variance")


def default_channels(count):
    """The first, the middle and the last channel (fewer when the layer has fewer)."""
    return sorted({0, count // 2, count - 1})[:SHOWN_CHANNELS]


def layers_asked(trace, layers=None):
    """``layers`` (default: every layer of the header) as a list; :class:`ValueError` names one
    the trace does not have."""
    layers = list(trace.layers) if layers is None else list(layers)
    unknown = [layer for layer in layers if layer not in trace.layers]
    if unknown:
        raise ValueError(f"no batch-norm layer {unknown[0]!r} in the trace; there are: "
                         f"{', '.join(trace.layers) or 'none'}")
    return layers


def channels_asked(layer, state, channels=None):
    """The channels drawn of ``layer`` (its first ``state``): ``channels`` (a list, or per layer
    ``{layer: list}``), default :func:`default_channels`; :class:`ValueError` names one the layer
    does not have."""
    count = np.size(state["moving_mean"])
    if isinstance(channels, dict):
        channels = channels.get(layer)
    chosen = default_channels(count) if channels is None else list(channels)
    if not all(0 <= channel < count for channel in chosen):
        raise ValueError(f"layer {layer} has {count} channels: channel {max(chosen)} does not "
                         "exist")
    return chosen


def layer_series(trace, layers=None, channels=None, steps=None, binned=None):
    """``{layer: LayerSeries}`` of ``layers`` (default: every layer of the header), in one pass
    over the trace: every record (between ``steps = (first, last)`` step numbers, or per layer
    ``{layer: (first, last)}``) when there are at most :data:`MAX_POINTS`, else bins of
    consecutive records (``binned``: the records a point stands for, instead). ``channels``: the channel indices drawn (default:
    :func:`default_channels`). :class:`ValueError` names a layer or a channel the trace does not
    have."""
    layers = layers_asked(trace, layers)
    binned = binned or max(1, math.ceil(len(trace.steps) / MAX_POINTS))
    collectors = {}
    chain = Chain(trace.steps_are_runs)
    index, rows = 0, {}  # the block's (index, record, previous) of each layer
    for block in trace.blocks():
        for record in block:
            for layer in layers:
                if layer not in record["bn"]:
                    continue
                if layer not in collectors:
                    chosen = channels_asked(layer, record["bn"][layer], channels)
                    window = steps.get(layer) if isinstance(steps, dict) else steps
                    collectors[layer] = _Collector(layer, trace.layers[layer], chosen, binned,
                                                   window)
                rows.setdefault(layer, []).append((index, record, chain.before(record, layer)))
            chain.advance(record)
            index += 1
        for layer, taken in rows.items():
            collectors[layer].take_block(taken)
        rows = {}
    return {layer: collectors[layer].series() for layer in layers if layer in collectors}


def zoom_window(series, zoom=None):
    """The zoom's ``(first, last)`` steps: ``zoom``, else around the first marked step
    (:data:`ZOOM_AROUND` either side), else the first :data:`FIRST_STEPS` steps; ``None`` for a
    run too short to need one."""
    if zoom is not None:
        return zoom
    if len(series.steps) == 0 or series.steps[-1] - series.steps[0] <= FIRST_STEPS:
        return None
    marked = [steps.steps[0] for steps in series.marks.values() if steps.steps]
    if marked:
        first = min(marked)
        return max(0, first - ZOOM_AROUND), first + ZOOM_AROUND
    start = max(0, int(series.steps[0]) - series.binned + 1)  # the first point's bin starts there
    return start, start + FIRST_STEPS


def zoom_series(trace, series, windows):
    """``{layer: the series of its window}`` for ``series`` (``{layer: LayerSeries}``) and
    ``windows`` (``{layer: (first, last)}``, at most :data:`MAX_ZOOM_STEPS` steps kept of each):
    the points there, read again from the trace (one pass for every layer) for the layers whose
    whole run was binned."""
    windows = {layer: (first, min(last, first + MAX_ZOOM_STEPS - 1))
               for layer, (first, last) in windows.items()}
    again = {layer: window for layer, window in windows.items() if series[layer].binned > 1}
    zoomed = {}
    if again:
        zoomed = layer_series(trace, list(again), {layer: series[layer].channels
                                                    for layer in again}, again, binned=1)
    for layer, (first, last) in windows.items():
        if layer not in zoomed:
            whole = series[layer]
            keep = (whole.steps >= first) & (whole.steps <= last)
            zoomed[layer] = dataclasses.replace(
                whole, steps=whole.steps[keep],
                values={key: value[keep] for key, value in whole.values.items()},
                band={key: value[keep] for key, value in whole.band.items()})
    return zoomed


def plot_layer(series, zoom=None, momentum=None):
    """The figure of one layer: a column per moving statistic; the whole run, and under it the
    ``zoom`` (a :class:`LayerSeries` of a window) when given."""
    rows = 1 if zoom is None else 2
    figure = Figure(figsize=(12, 4 * rows), layout="constrained")
    axes = np.asarray(figure.subplots(rows, 2, squeeze=False))
    for column, (statistic, batch_statistic) in enumerate(PAIRS):
        for row, part in enumerate([series] + ([zoom] if zoom is not None else [])):
            _draw(axes[row, column], part, statistic, batch_statistic, momentum,
                  "zoom" if row else "whole run")
    marks = ", ".join(f"{kind} at {marks.count}" for kind, marks in series.marks.items()
                      if marks.count)
    figure.suptitle(f"{series.layer}: channels {', '.join(map(str, series.channels))} of "
                    f"{series.total_channels}" + (f"; marked steps: {marks}" if marks else ""))
    return figure


def _draw(axis, series, statistic, batch_statistic, momentum, part):
    colors = ("tab:blue", "tab:green", "tab:brown", "tab:pink", "tab:olive")
    steps = series.steps
    band = series.band[statistic]
    if len(steps):
        axis.fill_between(steps, band[:, 0], band[:, 1], color="0.85", gid="band",
                          label=f"all {series.total_channels} channels (smallest to largest)")
    few = len(steps) <= FIRST_STEPS
    for number, channel in enumerate(series.channels):
        color = colors[number % len(colors)]
        axis.plot(steps, series.values[(statistic, "stored")][:, number], "-",
                  color=color, gid=f"stored:{channel}", label=f"{statistic}[{channel}] stored")
        axis.plot(steps, series.values[(statistic, "batch")][:, number],
                  "o" if few else ".", color=color, alpha=0.35, markersize=4 if few else 2,
                  gid=f"batch:{channel}", label=f"{batch_statistic}[{channel}]")
        axis.plot(steps, series.values[(statistic, "predicted")][:, number], "x" if few else ":",
                  color="black", alpha=0.7, gid=f"predicted:{channel}",
                  label=f"{momentum:g} * previous + {1 - momentum:g} * {batch_statistic}"
                  if number == 0 and momentum is not None else None)
    low, high = (steps[0], steps[-1]) if len(steps) else (0, 0)
    for kind, color in MARK_KINDS.items():
        shown = [step for step in series.marks[kind].steps if low <= step <= high]
        for number, step in enumerate(shown):
            axis.axvline(step, color=color, alpha=0.6, linewidth=1, gid=f"mark:{kind}",
                         label=kind if number == 0 else None)
    binned = f", a point per {series.binned} records" if series.binned > 1 else ""
    axis.set_title(f"{statistic}: {part}{binned}")
    axis.set_xlabel("step")
    axis.set_ylabel(statistic)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="upper left")  # "best" searches every point: seconds a figure


def moving_statistic_series(trace, layer, statistic, channel=0):
    """Arrays over the steps with the batch statistic and the state before kept: ``steps``, the
    batch statistic, the stored moving statistic, and the momentum formula's prediction of it
    (one channel; for the notebook)."""
    series = layer_series(trace, [layer], [channel])[layer]
    predicted = series.values[(statistic, "predicted")][:, 0]
    keep = ~np.isnan(predicted)
    return (series.steps[keep].astype(np.float64), series.values[(statistic, "batch")][keep, 0],
            series.values[(statistic, "stored")][keep, 0], predicted[keep])


def plot_moving_statistics(trace, layer=None, channel=0):
    """A figure with one panel per moving statistic of ``layer`` (default: the first): the whole
    run of one channel (for the notebook)."""
    layer = layer or next(iter(trace.layers))
    series = layer_series(trace, [layer], [channel])[layer]
    return plot_layer(series, momentum=trace.layers[layer].get("momentum"))
