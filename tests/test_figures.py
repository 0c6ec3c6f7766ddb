"""``bnrepro compare``'s figures: the files, the pre-activation statistics behind preactivations.png
(against NumPy from the batch and the weights the step's forward pass read), the 90% marks (against
the results table and a running mean of history.csv worked out here), the zoomed accuracy panels,
and the same input giving the same PNG bytes."""
import csv
import io
import re
import struct

import numpy as np
import pytest

import bnrepro.compare.figures as plots
from bnrepro.compare.training import PREACTIVATION_EVERY, batch_schedule, train_method
from bnrepro.compare.report import TARGET_ACCURACY
from bnrepro.config import CompareConfig
from bnrepro.compare.run import load_data, run_compare
from bnrepro.compare.figures import Curves, PreActivations, plot_method, plot_overlay, plot_preactivations
from bnrepro.trace import read_trace

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LAYER = "layer1/batch_normalization"
FIGURES = ["compare.png", "preactivations.png"]
# TensorFlow computes x·w + b and its moments in float32 (784-term sums of values up to ~1)
TOLERANCE = dict(rtol=1e-5, atol=2e-6)


def _quiet(line):
    pass


def _png_size(path):
    """(width, height) from the PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    return struct.unpack(">II", data[16:24])


class _Captured:
    """Wraps a plotting function of bnrepro.compare.figures to keep the figures it returns."""

    def __init__(self, function):
        self.function, self.figures = function, []

    def __call__(self, *args, **kwargs):
        figure = self.function(*args, **kwargs)
        self.figures.append(figure)
        return figure


def _compare(tmp_path_factory, monkeypatch_factory, name, **options):
    out = tmp_path_factory.mktemp(name) / "compare"
    config = CompareConfig(eval_every=10, data="embedded", **options)
    captured = {function: _Captured(getattr(plots, function))
                for function in ("plot_overlay", "plot_method", "plot_preactivations")}
    with monkeypatch_factory() as patch:
        for function, wrapper in captured.items():
            patch.setattr(plots, function, wrapper)
        comparison = run_compare(config, str(out), write=_quiet, progress_stream=io.StringIO())
    return out, comparison, {function: wrapper.figures for function, wrapper in captured.items()}


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """``bnrepro compare --steps 40 --methods none,bn --eval-every 10 --trace-tensors-every 20``."""
    return _compare(tmp_path_factory, pytest.MonkeyPatch.context, "short", methods="none,bn",
                    steps=40, trace_tensors_every=20)


@pytest.fixture(scope="module")
def reaching_run(tmp_path_factory):
    """150 steps of wn-init and bn, which reach 90% train accuracy (seed 0: steps 60 and 105)."""
    return _compare(tmp_path_factory, pytest.MonkeyPatch.context, "reaching",
                    methods="wn-init,bn", steps=150)


def _records(comparison, method):
    run = next(run for run in comparison.runs if run.method == method)
    return {record["step"]: record for record in run.preactivations}


# --- the files ----------------------------------------------------------------------------------

def test_every_figure_is_a_png_and_results_md_lists_them(short_run):
    out, _, _ = short_run
    for name in FIGURES + ["none.png", "bn.png"]:
        width, height = _png_size(out / name)
        assert width >= 800 and height >= 350, (name, width, height)  # pixels
    results = (out / "results.md").read_text()
    for name in FIGURES + ["none.png", "bn.png"]:
        assert f"[{name}]({name})" in results
    assert "[preactivations.png](preactivations.png): Each of the 128 units of the first" in results
    assert "before batch or layer norm" in results and "what relu receives" in results


# --- the pre-activation statistics --------------------------------------------------------------

def test_statistics_are_recorded_at_step_1_every_10th_and_the_last(short_run):
    _, comparison, _ = short_run
    assert PREACTIVATION_EVERY == 10
    for method in ("none", "bn"):
        records = _records(comparison, method)
        assert sorted(records) == [1, 10, 20, 30, 40]
        for record in records.values():
            for name in ("pre_activation", "relu_input"):
                assert record[name]["mean"].shape == record[name]["std"].shape == (128,)
    none = PreActivations.from_records("none", list(_records(comparison, "none").values()))
    bn = PreActivations.from_records("bn", list(_records(comparison, "bn").values()))
    assert none.same and not bn.same  # relu receives x·w + b itself only without a normaliser


@pytest.fixture(scope="module")
def kept_weights(short_run):
    """The short run's methods trained again, keeping the first layer's w and b at steps 20 and 40
    as those steps' forward passes read them."""
    _, comparison, _ = short_run
    config, data = comparison.config, load_data(comparison.config)
    runs = {method: train_method(method, config, data, evaluate_test=False,
                                 preactivation_every=PREACTIVATION_EVERY, keep_weights_at=(20, 40))
            for method in ("none", "bn")}
    return config, data, runs


def _numpy_pre_activation(config, data, record):
    """a = x·w + b in float64 from step k's batch (the batch schedule) and the kept weights."""
    indices = batch_schedule(config, len(data.train_labels))[record["step"] - 1]
    x = data.train_images[indices].astype(np.float64)
    return x @ record["weights"]["w"].astype(np.float64) + record["weights"]["b"]


@pytest.mark.parametrize("method", ["none", "bn"])
def test_the_rerun_records_the_same_statistics_as_the_compare_run(short_run, kept_weights, method):
    _, comparison, _ = short_run
    _, _, runs = kept_weights
    rerun = {record["step"]: record for record in runs[method].preactivations}
    for step, record in _records(comparison, method).items():
        for name in ("pre_activation", "relu_input"):
            for statistic in ("mean", "std"):
                np.testing.assert_array_equal(rerun[step][name][statistic],
                                              record[name][statistic])


@pytest.mark.parametrize("method", ["none", "bn"])
@pytest.mark.parametrize("step", [20, 40])
def test_pre_activation_statistics_equal_numpy_from_the_batch_and_weights(short_run, kept_weights,
                                                                          method, step):
    """Per unit j: mean_n a[n, j] and sqrt(mean_n (a[n, j] - mean)^2), a = x·w + b."""
    _, comparison, _ = short_run
    config, data, runs = kept_weights
    kept = next(record for record in runs[method].preactivations if record["step"] == step)
    assert kept["weights"]["w"].shape == (784, 128) and kept["weights"]["b"].shape == (128,)
    a = _numpy_pre_activation(config, data, kept)
    recorded = _records(comparison, method)[step]["pre_activation"]
    np.testing.assert_allclose(recorded["mean"], a.mean(axis=0), **TOLERANCE)
    np.testing.assert_allclose(recorded["std"], a.std(axis=0), **TOLERANCE)
    if method == "none":  # relu receives a itself
        np.testing.assert_array_equal(_records(comparison, method)[step]["relu_input"]["mean"],
                                      recorded["mean"])


@pytest.mark.parametrize("step", [20, 40])
def test_bn_statistics_are_its_trace_and_numpy_after_normalisation(short_run, kept_weights, step):
    """bn's pre-normalisation numbers are the batch_mean and batch_variance its trace recorded in
    the same run; what relu receives is gamma * (a - mean)/sqrt(var + epsilon) + beta with gamma,
    beta before the step (the trace's state after step k - 1)."""
    out, comparison, _ = short_run
    config, data, runs = kept_weights
    record = _records(comparison, "bn")[step]
    trace = read_trace(str(out / "bn"))
    traced = trace.step(step)["bn"][LAYER]
    np.testing.assert_array_equal(record["pre_activation"]["mean"], traced["batch_mean"])
    np.testing.assert_array_equal(record["pre_activation"]["std"],
                                  np.sqrt(traced["batch_variance"].astype(np.float64)))
    # the layer's input the trace kept at this step, and x·w + b from the kept weights
    a = _numpy_pre_activation(config, data, next(
        kept for kept in runs["bn"].preactivations if kept["step"] == step))
    np.testing.assert_allclose(traced["batch_input"], a, rtol=1e-5, atol=1e-5)
    before = trace.step(step - 1)["bn"][LAYER]
    z = (before["gamma"] * (a - a.mean(axis=0)) / np.sqrt(a.var(axis=0) + config.epsilon)
         + before["beta"])
    np.testing.assert_allclose(record["relu_input"]["mean"], z.mean(axis=0), **TOLERANCE)
    np.testing.assert_allclose(record["relu_input"]["std"], z.std(axis=0), **TOLERANCE)


def test_wn_init_starts_each_unit_at_mean_0_and_std_1(reaching_run):
    """The data-dependent init standardises x·w + b on the first batch, which is step 1's: the
    statistics of step 1 are read before its update."""
    _, comparison, _ = reaching_run
    first = _records(comparison, "wn-init")[1]["pre_activation"]
    np.testing.assert_allclose(first["mean"], 0.0, atol=1e-5)
    np.testing.assert_allclose(first["std"], 1.0, rtol=1e-5)
    assert not np.allclose(_records(comparison, "wn-init")[150]["pre_activation"]["std"], 1.0,
                           rtol=1e-3)


def test_faithful_wn_init_leaves_out_step_1(tmp_path):
    """Its step 1 runs the post's init-inside-the-forward-pass graph, not the recorded one."""
    config = CompareConfig(methods="wn-init", steps=12, units=16, eval_every=6, faithful=True,
                           data="embedded")
    run = train_method("wn-init", config, load_data(config), evaluate_test=False,
                       preactivation_every=PREACTIVATION_EVERY)
    assert [record["step"] for record in run.preactivations] == [10, 12]


# --- the 90% marks --------------------------------------------------------------------------------

def _table_steps(results):
    """method -> "steps to 90% train accuracy" from results.md's table (None: not reached)."""
    steps = {}
    for line in results.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 7 and re.fullmatch(r"[a-z][a-z-]*", cells[0]) and cells[0] != "method":
            steps[cells[0]] = None if cells[4] == "not reached" else int(cells[4])
    return steps


def _steps_by_hand(out, method):
    """The first step >= 10 at which the mean of the last 10 batch accuracies reaches 0.9."""
    with open(out / "history.csv", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle)
                if row["method"] == method and row["train_accuracy"]]
    steps = np.array([int(row["step"]) for row in rows])
    accuracy = np.array([float(row["train_accuracy"]) for row in rows])
    means = np.convolve(accuracy, np.ones(10) / 10, mode="valid")  # means[i]: batches i..i+9
    reached = np.flatnonzero(means >= 0.9)
    return int(steps[reached[0] + 9]) if reached.size else None


def _marks(figure):
    """method -> the x positions of its 90% marks, over every panel of ``figure``."""
    marks = {}
    for axis in figure.axes:
        for line in axis.lines:
            gid = line.get_gid() or ""
            if gid.startswith(plots.TARGET_MARK + ":"):
                marks.setdefault(gid.split(":", 1)[1], []).extend(line.get_xdata())
    return marks


def test_the_90_percent_marks_sit_at_the_steps_of_the_results_table(reaching_run):
    out, comparison, figures = reaching_run
    table = _table_steps((out / "results.md").read_text())
    assert table == {"wn-init": 60, "bn": 105}  # seed 0, as in the README
    for method, step in table.items():
        assert _steps_by_hand(out, method) == step
    [overlay] = figures["plot_overlay"]
    assert _marks(overlay) == {method: [step, step] for method, step in table.items()}  # 2 panels
    for figure in figures["plot_method"]:
        [method] = _marks(figure)
        assert _marks(figure)[method] == [table[method]]
    legend = [text.get_text() for text in overlay.axes[4].get_legend().get_texts()]
    assert legend == ["wn-init: 90% at step 60", "bn: 90% at step 105"]


def test_a_method_that_does_not_reach_90_percent_has_no_mark(short_run):
    out, _, figures = short_run
    assert _table_steps((out / "results.md").read_text()) == {"none": None, "bn": None}
    [overlay] = figures["plot_overlay"]
    assert _marks(overlay) == {}
    legend = [text.get_text() for text in overlay.axes[4].get_legend().get_texts()]
    assert legend == ["none: 90% not reached", "bn: 90% not reached"]


# --- drawing, on curves made up here --------------------------------------------------------------

def _curves(method, final, rise_step, steps=400, diverged_at=None):
    """Made-up curves: train accuracy 0.5 until ``rise_step``, then 0.95; test accuracy rising to
    ``final`` in the second half."""
    step = np.arange(1, steps + 1, dtype=np.float64)
    accuracy = np.where(step < rise_step, 0.5, 0.95)
    test_steps = np.arange(0, steps + 1, 25, dtype=np.float64)
    test = np.minimum(final, 0.1 + test_steps / steps * 2 * final)
    smooth = np.convolve(accuracy, np.ones(10) / 10)[:steps] * 10 / np.minimum(step, 10)
    return Curves(method=method, steps=step, train_loss=1 - accuracy, train_accuracy=accuracy,
                  train_loss_smooth=1 - smooth, train_accuracy_smooth=smooth,
                  test_steps=test_steps, test_loss=1 - test, test_accuracy=test, smoothing=10,
                  diverged_at=diverged_at)


def test_the_zoomed_test_panel_separates_close_methods_and_names_the_one_below(tmp_path):
    all_curves = [_curves("a", 0.93, 50), _curves("b", 0.94, 80), _curves("c", 0.60, 1000)]
    figure = plot_overlay(all_curves, tmp_path / "o.png", "made up", target=TARGET_ACCURACY,
                          target_steps={"a": 59, "b": 89, "c": None})
    full, zoomed = figure.axes[3], figure.axes[5]
    assert full.get_ylim() == (0, 1)
    low, high = zoomed.get_ylim()
    assert 0.9 < low < 0.93 and 0.94 < high < 0.95  # 0.93 and 0.94 a third of the panel apart
    legend = [text.get_text() for text in zoomed.get_legend().get_texts()]
    assert legend == ["a: 0.930", "b: 0.940", "c: 0.600 (below)"]
    assert figure.axes[4].get_xlim() == (0, 4 * 89)  # the train zoom: four times the last mark
    assert "mean of the last 10 batches" in figure.axes[2].get_ylabel()
    legend_title = figure.axes[0].get_legend().get_title().get_text()
    assert legend_title == "train: mean of the last 10 batches"
    with pytest.raises(ValueError, match="step 1000 is not among its training steps"):
        plot_overlay(all_curves, tmp_path / "bad.png", "made up", target=TARGET_ACCURACY,
                     target_steps={"a": 1000})


def test_the_same_input_gives_the_same_png_bytes(tmp_path):
    all_curves = [_curves("a", 0.93, 50), _curves("b", 0.94, 80, diverged_at=300)]
    rng = np.random.default_rng(0)
    stats = [PreActivations(method, np.arange(1, 41, 10), *rng.normal(size=(4, 4, 128)))
             for method in ("a", "b")]
    for stat in stats:
        stat.pre_std, stat.relu_std = np.abs(stat.pre_std), np.abs(stat.relu_std)
    for attempt in ("first", "second"):
        plot_overlay(all_curves, tmp_path / f"{attempt}-overlay.png", "t", target=0.9,
                     target_steps={"a": 59, "b": 89})
        plot_method(all_curves[0], tmp_path / f"{attempt}-a.png", "t", target=0.9, target_step=59)
        plot_preactivations(stats, tmp_path / f"{attempt}-pre.png", "t", "a caption")
    for name in ("overlay", "a", "pre"):
        assert ((tmp_path / f"first-{name}.png").read_bytes()
                == (tmp_path / f"second-{name}.png").read_bytes())


def test_the_preactivation_figure_draws_x_w_plus_b_once_when_relu_receives_it(tmp_path):
    rng = np.random.default_rng(1)
    mean, std = rng.normal(size=(3, 128)), rng.uniform(0.5, 2, size=(3, 128))
    same = PreActivations("none", np.array([1, 10, 20]), mean, std, mean, std)
    normalised = PreActivations("bn", np.array([1, 10, 20]), mean, std, mean * 0, std * 0 + 1)
    figure = plot_preactivations([same, normalised], tmp_path / "p.png", "title", "caption")
    labels = [[text.get_text() for text in axis.get_legend().get_texts()]
              for axis in figure.axes[:2]]
    assert labels == [["x·w + b = the input to relu"],
                      ["x·w + b, before bn", "input to relu: after bn, gain, bias"]]
    # the median over the units at each step is the middle line
    np.testing.assert_allclose(figure.axes[0].lines[0].get_ydata(), np.median(mean, axis=1))
    assert figure.axes[2].get_yscale() == "log"  # the standard deviations
