"""The comparison's results: curves, summaries, ``history.csv`` and ``results.md``."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import Optional

import numpy as np

HISTORY_FILE = "history.csv"
RESULTS_FILE = "results.md"
OVERLAY_FIGURE = "compare.png"
PREACTIVATION_FIGURE = "preactivations.png"
HISTORY_COLUMNS = ("method", "step", "train_loss", "train_accuracy", "test_loss", "test_accuracy")
TARGET_ACCURACY = 0.9  # "steps to 90% train accuracy"
SMOOTHING_STEPS = 10  # ... of the mean batch accuracy over this many steps (one batch is noisy)


def running_mean(values, window):
    """``mean(values[k - window + 1 .. k])`` for every k (over fewer values before step ``window``)."""
    values = np.asarray(values, dtype=np.float64)
    sums = np.concatenate([[0.0], np.cumsum(values)])  # sums[k] = values[0] + ... + values[k - 1]
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def curves(run):
    """A :class:`~bnrepro.compare.figures.Curves` from a run's history rows."""
    from bnrepro.compare.figures import Curves

    train = [row for row in run.rows if row["train_loss"] is not None]
    test = [row for row in run.rows if row["test_loss"] is not None]

    def column(rows, name):
        return np.array([row[name] for row in rows], dtype=np.float64)

    train_loss, train_accuracy = column(train, "train_loss"), column(train, "train_accuracy")
    return Curves(method=run.method, steps=column(train, "step"), train_loss=train_loss,
                  train_accuracy=train_accuracy,
                  train_loss_smooth=running_mean(train_loss, SMOOTHING_STEPS),
                  train_accuracy_smooth=running_mean(train_accuracy, SMOOTHING_STEPS),
                  test_steps=column(test, "step"), test_loss=column(test, "test_loss"),
                  test_accuracy=column(test, "test_accuracy"), smoothing=SMOOTHING_STEPS,
                  diverged_at=run.diverged_at)


@dataclass
class Summary:
    """The numbers of one method in ``results.md``."""

    method: str
    final_test_accuracy: Optional[float]
    final_test_loss: Optional[float]
    best_test_accuracy: Optional[float]
    best_step: Optional[int]
    steps_to_target: Optional[int]
    diverged_at: Optional[int]
    ms_per_step: float


def summarize(run):
    """Final and best test accuracy, and the first step at which the mean batch accuracy of the last
    :data:`SMOOTHING_STEPS` steps reaches :data:`TARGET_ACCURACY` (``None``: never)."""
    lines = curves(run)
    reached = np.flatnonzero((lines.train_accuracy_smooth >= TARGET_ACCURACY)
                             & (lines.steps >= SMOOTHING_STEPS))
    tested = len(lines.test_steps) > 0
    best = int(np.argmax(lines.test_accuracy)) if tested else None
    return Summary(
        method=run.method,
        final_test_accuracy=float(lines.test_accuracy[-1]) if tested else None,
        final_test_loss=float(lines.test_loss[-1]) if tested else None,
        best_test_accuracy=float(lines.test_accuracy[best]) if tested else None,
        best_step=int(lines.test_steps[best]) if tested else None,
        steps_to_target=int(lines.steps[reached[0]]) if reached.size else None,
        diverged_at=run.diverged_at, ms_per_step=run.ms_per_step)


def _cell(value, form="{:.4f}"):
    return "–" if value is None else form.format(value)


def results_table(summaries, timing=True):
    """The Markdown table of ``results.md``; ``timing=False`` leaves out the ms-per-step column
    (the one number that changes from run to run)."""
    timing_header, timing_rule = (" ms per step |", " ---: |") if timing else ("", "")
    lines = ["| method | final test accuracy | best test accuracy (step) | final test loss "
             f"| steps to {TARGET_ACCURACY:.0%} train accuracy |{timing_header} diverged |",
             f"| --- | ---: | ---: | ---: | ---: |{timing_rule} --- |"]
    for item in summaries:
        best = "–" if item.best_test_accuracy is None else (
            f"{item.best_test_accuracy:.4f} ({item.best_step})")
        reached = "not reached" if item.steps_to_target is None else str(item.steps_to_target)
        diverged = "no" if item.diverged_at is None else f"NaN loss at step {item.diverged_at}"
        milliseconds = f" {item.ms_per_step:.2f} |" if timing else ""
        lines.append(f"| {item.method} | {_cell(item.final_test_accuracy)} | {best} "
                     f"| {_cell(item.final_test_loss)} | {reached} |{milliseconds} {diverged} |")
    return "\n".join(lines)


def write_history(path, runs):
    """``history.csv``: one row per method and step; test columns empty where not evaluated."""
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_COLUMNS)
        writer.writeheader()
        for run in runs:
            for row in run.rows:
                writer.writerow({key: "" if value is None else value for key, value in row.items()})


def describe_config(config):
    """One line: the settings that shape the curves."""
    code = "the post's code as written (--faithful)" if config.faithful else "corrected code"
    return (f"{config.steps} steps, batch {config.batch_size}, learning rate {config.learning_rate}, "
            f"{config.units} hidden units, weight init {config.weight_init}, bias init "
            f"{config.bias_init}, bn momentum {config.momentum}, epsilon {config.epsilon}, "
            f"seed {config.seed}; {code}")


def _evaluation(config):
    """How the test set is evaluated, in words."""
    batches = ("all at once" if config.eval_batch_size is None else
               f"in batches of {config.eval_batch_size} (a smaller remainder left out)")
    if config.faithful:
        return (f"{batches}; ln in batches of exactly {config.batch_size} (its gain and bias "
                "need that size); bn normalises with each test batch's own statistics")
    return f"{batches}; bn in inference mode (the moving statistics)"


def results_markdown(comparison):
    """``results.md``: the settings, the table, what its columns mean, the figures, the trace check."""
    from bnrepro.compare.figures import preactivation_caption

    config = comparison.config
    lines = ["# bnrepro compare: normalisation methods on MNIST (post 002)", "",
             f"Data: {comparison.data_source}.", "", f"Settings: {describe_config(config)}.", "",
             comparison.table, "",
             f"Test loss and accuracy: every {config.eval_every} steps, {_evaluation(config)}. "
             f"Steps to {TARGET_ACCURACY:.0%}: the first step at which the mean accuracy of the "
             f"last {SMOOTHING_STEPS} training batches reaches {TARGET_ACCURACY:.0%}. ms per step: "
             "wall time of the training loop (including test evaluations and, for bn, writing "
             "the trace) divided by the steps.", "",
             f"Figures: [{OVERLAY_FIGURE}]({OVERLAY_FIGURE}) (all methods), "
             + ", ".join(f"[{run.method}.png]({run.method}.png)" for run in comparison.runs)
             + f", [{PREACTIVATION_FIGURE}]({PREACTIVATION_FIGURE}) (the first layer's "
             "pre-activation per unit).", "",
             f"[{PREACTIVATION_FIGURE}]({PREACTIVATION_FIGURE}): "
             + preactivation_caption(comparison.preactivation_every, config.units, config.batch_size,
                                     comparison.verification is not None), ""]
    if comparison.verification is not None:
        lines += ["Batch-norm trace `bn/trace.jsonl` (`bnrepro verify`):", "", "```",
                  comparison.verification.format(), "```", ""]
    return "\n".join(lines)
