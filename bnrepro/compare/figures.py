"""The figures of ``bnrepro compare``: one per method like the post's, all methods overlaid, and
what normalisation does to the first layer's pre-activation.

Input is one :class:`Curves` (and one :class:`PreActivations`) per method, prepared by
:mod:`bnrepro.compare`; drawing uses matplotlib's object API on the Agg canvas, so no display and
no global pyplot state are involved, and the same input gives the same PNG bytes.

The marks of "steps to 90% train accuracy" are drawn where :mod:`bnrepro.compare` says (the step of
its results table), as line artists with ``gid`` ``"target-mark:<method>"`` (tests find them there).
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Optional

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter

DPI = 100
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
TARGET_MARK = "target-mark"  # gid of a 90% mark: f"{TARGET_MARK}:{method}"
BEFORE_COLOR = "0.35"  # x·w + b before batch or layer norm, in the pre-activation figure
BAND = (10, 90)  # percentiles of the units drawn as a band in the pre-activation figure
ZOOM_MARGIN = 0.005  # accuracy above and below the zoomed curves
LEGEND_ROOM = 0.6  # room below the zoomed test accuracies for the legend, a fraction of their range


@dataclass
class Curves:
    """One method's history as arrays: per-step batch values (raw and smoothed) and test values."""

    method: str
    steps: np.ndarray
    train_loss: np.ndarray
    train_accuracy: np.ndarray
    train_loss_smooth: np.ndarray
    train_accuracy_smooth: np.ndarray
    test_steps: np.ndarray
    test_loss: np.ndarray
    test_accuracy: np.ndarray
    smoothing: int
    diverged_at: Optional[int] = None


@dataclass
class PreActivations:
    """One method's first-layer statistics per unit over each recorded step's training batch.

    ``steps`` (S,); the others (S, units): the batch mean and standard deviation (/N) of each unit
    of ``x·w + b`` (``pre_*``) and of what relu receives (``relu_*``: after the normaliser's gain
    and bias for bn and ln, the same tensor as ``x·w + b`` for none, wn and wn-init).
    """

    method: str
    steps: np.ndarray
    pre_mean: np.ndarray
    pre_std: np.ndarray
    relu_mean: np.ndarray
    relu_std: np.ndarray

    @classmethod
    def from_records(cls, method, records):
        """From ``bnrepro.compare``'s records: ``{"step", "pre_activation": {"mean", "std"},
        "relu_input": {"mean", "std"}}`` per recorded step."""
        def stack(name, statistic):
            return np.array([record[name][statistic] for record in records], dtype=np.float64)

        return cls(method=method, steps=np.array([record["step"] for record in records]),
                   pre_mean=stack("pre_activation", "mean"), pre_std=stack("pre_activation", "std"),
                   relu_mean=stack("relu_input", "mean"), relu_std=stack("relu_input", "std"))

    @property
    def same(self):
        """Whether relu receives ``x·w + b`` itself (equal numbers at every recorded step)."""
        return (np.array_equal(self.pre_mean, self.relu_mean)
                and np.array_equal(self.pre_std, self.relu_std))


def _new_figure(width, height, rows, columns, **subplots):
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False, **subplots)
    for axis in axes.ravel():
        axis.grid(True, alpha=0.3)
        axis.set_xlabel("training step")
    return figure, axes


def _mark_divergence(axis, curves, color):
    if curves.diverged_at is not None:
        axis.axvline(curves.diverged_at, color=color, linestyle=":", linewidth=1.5,
                     label=f"{curves.method}: NaN loss at step {curves.diverged_at}")


def _mark_target(axis, curves, step, color, label=None, drop_line=False):
    """The method's "steps to 90%" mark: a dot on its smoothed train accuracy at ``step``."""
    if step is None:
        return
    index = np.flatnonzero(curves.steps == step)
    if index.size == 0:
        raise ValueError(f"{curves.method}: step {step} is not among its training steps")
    value = curves.train_accuracy_smooth[index[0]]
    if drop_line:
        axis.plot([step, step], [0, value], color=color, linestyle=":", linewidth=1.2)
    axis.plot([step], [value], linestyle="none", marker="o", markersize=7, markerfacecolor=color,
              markeredgecolor="black", markeredgewidth=0.8, zorder=5, label=label,
              gid=f"{TARGET_MARK}:{curves.method}")


def _target_line(axis, target):
    axis.axhline(target, color="black", linestyle="--", linewidth=0.8, alpha=0.6)


def plot_method(curves, path, title, *, target=None, target_step=None):
    """Loss and accuracy against steps, train (the step's batch) and test, like the post's figures;
    ``target_step``: the step the results table gives for reaching ``target`` train accuracy
    (marked on the smoothed curve). Returns the figure."""
    figure, axes = _new_figure(10, 4, 1, 2)
    panels = ((axes[0, 0], "loss (cross-entropy, log scale)", curves.train_loss, curves.train_loss_smooth,
               curves.test_loss),
              (axes[0, 1], "accuracy", curves.train_accuracy, curves.train_accuracy_smooth,
               curves.test_accuracy))
    for axis, label, raw, smooth, test in panels:
        axis.plot(curves.steps, raw, color=COLORS[0], alpha=0.25, linewidth=0.8,
                  label="train (batch)")
        axis.plot(curves.steps, smooth, color=COLORS[0], linewidth=1.8,
                  label=f"train (mean of the last {curves.smoothing} batches)")
        axis.plot(curves.test_steps, test, color=COLORS[1], marker="o", markersize=3,
                  linewidth=1.8, label="test")
        _mark_divergence(axis, curves, "black")
        axis.set_ylabel(label)
    if target is not None:
        _target_line(axes[0, 1], target)
        _mark_target(axes[0, 1], curves, target_step, COLORS[0],
                     f"{target:.0%} train accuracy at step {target_step}"
                     if target_step is not None else None)
    for axis, _, _, _, _ in panels:
        axis.legend(fontsize=9)
    axes[0, 0].set_yscale("log")
    axes[0, 1].set_ylim(0, 1)
    figure.suptitle(title, fontsize=12)
    figure.savefig(path)
    return figure


def _finite(values):
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


def zoom_of_train_accuracy(all_curves, target, target_steps):
    """``(x_max, y_min, y_max)`` of the zoomed train-accuracy panel: from ``target - 0.1`` to 1,
    over four times the latest step at which a method reached ``target`` (all steps if none did)."""
    last = max((int(curves.steps[-1]) for curves in all_curves if len(curves.steps)), default=1)
    reached = [step for step in target_steps.values() if step is not None]
    x_max = min(last, max(4 * max(reached), 20)) if reached else last
    return x_max, target - 0.1, 1 + ZOOM_MARGIN


def zoom_of_test_accuracy(all_curves, spread=0.1):
    """``(y_min, y_max, close)`` of the zoomed test-accuracy panel, or ``None`` without test values.

    ``close``: the methods whose final test accuracy is within ``spread`` of the best one (on a 0-1
    axis they overlap); the range holds their test accuracy over the second half of the run, and
    :data:`LEGEND_ROOM` more below it, where the legend goes."""
    finals = {curves.method: _finite(curves.test_accuracy)[-1] for curves in all_curves
              if _finite(curves.test_accuracy).size}
    if not finals:
        return None
    best = max(finals.values())
    close = [method for method, final in finals.items() if final >= best - spread]
    lows, highs = [], []
    for curves in all_curves:
        if curves.method in close:
            half = curves.test_steps >= curves.test_steps[-1] / 2
            lows.append(_finite(curves.test_accuracy[half]).min())
            highs.append(_finite(curves.test_accuracy).max())
    y_min, y_max = min(lows) - ZOOM_MARGIN, max(highs) + ZOOM_MARGIN
    if y_max - y_min < 0.02:  # a readable range even when every method ends alike
        middle = (y_max + y_min) / 2
        y_min, y_max = middle - 0.01, middle + 0.01
    return y_min - LEGEND_ROOM * (y_max - y_min), y_max, close


def _zoom_box(axis, x_range, y_range):
    """The zoomed region drawn on the full-range panel."""
    (x_min, x_max), (y_min, y_max) = x_range, y_range
    axis.add_patch(Rectangle((x_min, y_min), x_max - x_min, y_max - y_min, fill=False,
                             edgecolor="0.3", linestyle="--", linewidth=1.0, zorder=4))
    axis.annotate("zoomed below", (x_max, y_min), xytext=(-4, -4), textcoords="offset points",
                  ha="right", va="top", fontsize=8, color="0.3")


def plot_overlay(all_curves, path, title, *, target=None, target_steps=None):
    """Every method in one figure: smoothed train loss and test loss; train and test accuracy on
    0-1, then zoomed so that methods ending close together can be told apart. ``target_steps``:
    method -> the step the results table gives for reaching ``target`` train accuracy (``None``:
    not reached), marked on the train-accuracy panels. Returns the figure."""
    target_steps = target_steps or {}
    smoothing = all_curves[0].smoothing if all_curves else 0
    window = f"mean of the last {smoothing} batches"
    figure, axes = _new_figure(11, 11.5, 3, 2)
    (train_loss, test_loss), (train_accuracy, test_accuracy), (train_zoomed, test_zoomed) = axes
    zoom = zoom_of_test_accuracy(all_curves)
    for index, curves in enumerate(all_curves):
        color = COLORS[index % len(COLORS)]
        for axis, x, y in ((train_loss, curves.steps, curves.train_loss_smooth),
                           (test_loss, curves.test_steps, curves.test_loss),
                           (train_accuracy, curves.steps, curves.train_accuracy_smooth),
                           (test_accuracy, curves.test_steps, curves.test_accuracy)):
            axis.plot(x, y, color=color, linewidth=1.8, label=curves.method)
            _mark_divergence(axis, curves, color)
        train_zoomed.plot(curves.steps, curves.train_accuracy_smooth, color=color, linewidth=1.8,
                          label=_zoom_label(True, curves, target, target_steps, zoom))
        test_zoomed.plot(curves.test_steps, curves.test_accuracy, color=color, linewidth=1.8,
                         label=_zoom_label(False, curves, target, target_steps, zoom))
        if target is not None:
            step = target_steps.get(curves.method)
            _mark_target(train_accuracy, curves, step, color)
            _mark_target(train_zoomed, curves, step, color, drop_line=True)
    train_loss.set_ylabel(f"train loss ({window}, log scale)")
    test_loss.set_ylabel("test loss (log scale)")
    train_accuracy.set_ylabel(f"train accuracy ({window})")
    test_accuracy.set_ylabel("test accuracy")
    train_zoomed.set_ylabel(f"train accuracy ({window}), zoomed")
    test_zoomed.set_ylabel("test accuracy, zoomed")
    for axis in (train_loss, test_loss):
        axis.set_yscale("log")
    for axis in (train_accuracy, test_accuracy):
        axis.set_ylim(0, 1)
    if target is not None:
        x_max, y_min, y_max = zoom_of_train_accuracy(all_curves, target, target_steps)
        for axis in (train_accuracy, train_zoomed):
            _target_line(axis, target)
        train_zoomed.set_xlim(0, x_max)
        train_zoomed.set_ylim(y_min, y_max)
        _zoom_box(train_accuracy, (0, x_max), (y_min, min(y_max, 1)))
        train_zoomed.set_title(f"dots: the step each method first reaches {target:.0%} "
                               "(results table)", fontsize=9)
    if zoom is not None:
        y_min, y_max, _ = zoom
        test_zoomed.set_ylim(y_min, y_max)
        last = max(float(curves.test_steps[-1]) for curves in all_curves if len(curves.test_steps))
        _zoom_box(test_accuracy, (0, last), (y_min, y_max))
        test_zoomed.set_title("test set; the legend gives each method's final test accuracy",
                              fontsize=9)
    legends = ((train_loss, f"train: {window}", "best"), (test_loss, "test set", "best"),
               (train_accuracy, f"train: {window}", "best"), (test_accuracy, "test set", "best"),
               (train_zoomed, f"train: {window}", "lower right"),
               (test_zoomed, None, "lower right"))
    for axis, legend_title, location in legends:
        axis.legend(fontsize=9, title=legend_title, title_fontsize=9, loc=location)
    figure.suptitle(title, fontsize=12)
    figure.savefig(path)
    return figure


def _zoom_label(train, curves, target, target_steps, zoom):
    """The legend entry of a method in a zoomed panel: its step to ``target`` or final accuracy."""
    if train:
        if target is None:
            return curves.method
        step = target_steps.get(curves.method)
        return (f"{curves.method}: {target:.0%} at step {step}" if step is not None
                else f"{curves.method}: {target:.0%} not reached")
    finals = _finite(curves.test_accuracy)
    if not finals.size:
        return f"{curves.method}: no test value"
    below = zoom is not None and curves.method not in zoom[2]
    return f"{curves.method}: {finals[-1]:.3f}" + (" (below)" if below else "")


def _plain_log_ticks(axis):
    """Log-scale y ticks written 0.01, 0.1, 1 (not 10^-2); over less than 1.5 decades also 0.2,
    0.3, 0.5, 2, ..., over less than half a decade every minor tick (few major ticks show then)."""
    def minor(value, _):
        low, high = axis.get_ylim()
        digits = ("123456789" if high / low < 10 ** 0.5 else "235" if high / low < 10 ** 1.5
                  else "")
        return f"{value:g}" if f"{value:.0e}"[0] in digits else ""

    axis.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.yaxis.set_minor_formatter(FuncFormatter(minor))


def preactivation_caption(every, units, batch_size, bn_trace=True):
    """What :func:`plot_preactivations` shows, in one paragraph (the figure's caption);
    ``bn_trace``: bn's numbers are those of its trace (not with the post's own batch norm)."""
    traced = (" (for bn, the batch_mean and batch_variance its moving averages consume, the "
              "numbers bn/trace.jsonl records)") if bn_trace else ""
    return (f"Each of the {units} units of the first layer, at step 1 and every {every}th training "
            f"step: its mean and standard deviation (/N) over that step's training batch of "
            f"{batch_size}, fetched in the training step's own session.run (the weights before "
            f"that step's update). Line: the median over the units; band: the {BAND[0]}th to "
            f"{BAND[1]}th percentile of the units. Grey: x·w + b before batch or layer "
            f"norm{traced}. Colour: what relu receives, after the normaliser and its gain and "
            "bias; for none, wn and wn-init that is x·w + b itself (weight norm normalises the "
            "weights, w = g·v/||v||, not the activations).")


def _band(axis, steps, values, color, label):
    """Median over the units as a line, the :data:`BAND` percentiles as a shaded band."""
    low, middle, high = np.percentile(values, (BAND[0], 50, BAND[1]), axis=1)
    axis.fill_between(steps, low, high, color=color, alpha=0.22, linewidth=0)
    axis.plot(steps, middle, color=color, linewidth=1.8, label=label)


def plot_preactivations(all_stats, path, title, caption):
    """One column per method, rows: the per-unit batch mean and batch standard deviation of the
    first layer's pre-activation over training (median over the units and the 10-90% band);
    ``x·w + b`` in grey where a normaliser follows it (bn, ln), what relu receives in the method's
    colour. Returns the figure."""
    columns = max(len(all_stats), 1)
    figure, axes = _new_figure(max(3.1 * columns + 0.8, 9.0), 7.2, 2, columns, sharex=True,
                               sharey="row")
    for index, stats in enumerate(all_stats):
        color = COLORS[index % len(COLORS)]
        mean_axis, std_axis = axes[0, index], axes[1, index]
        mean_axis.set_title(stats.method, fontsize=11, color=color, fontweight="bold")
        if len(stats.steps) == 0:  # diverged before its first record
            mean_axis.text(0.5, 0.5, "nothing recorded", transform=mean_axis.transAxes,
                           ha="center")
            continue
        if stats.same:
            pairs = ((stats.relu_mean, stats.relu_std, color, "x·w + b = the input to relu"),)
        else:
            pairs = ((stats.pre_mean, stats.pre_std, BEFORE_COLOR,
                      f"x·w + b, before {stats.method}"),
                     (stats.relu_mean, stats.relu_std, color,
                      f"input to relu: after {stats.method}, gain, bias"))
        for means, stds, line_color, label in pairs:
            _band(mean_axis, stats.steps, means, line_color, label)
            _band(std_axis, stats.steps, stds, line_color, label)
        mean_axis.axhline(0, color="black", linewidth=0.8, alpha=0.5)
        std_axis.axhline(1, color="black", linewidth=0.8, alpha=0.5)
        mean_axis.legend(fontsize=8, loc="upper left")
        mean_axis.set_xlabel("")
    axes[0, 0].set_ylabel("per-unit mean over the batch")
    axes[1, 0].set_ylabel("per-unit std over the batch (log scale)")
    axes[1, 0].set_yscale("log")
    _plain_log_ticks(axes[1, 0])
    figure.suptitle(title, fontsize=12)
    figure.supxlabel(textwrap.fill(caption, width=int(13 * figure.get_figwidth())), fontsize=9,
                     x=0.01, ha="left")
    figure.savefig(path)
    return figure
