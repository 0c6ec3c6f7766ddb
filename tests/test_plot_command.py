"""``bnrepro plot``: the figures' data read back and checked against the trace and an
independent float32 simulation (tests/test_verify_streaming.py writes the traces), the marks where
a value is off its update, the binning of a long run in bounded memory, and the command's files
and one-line errors."""
import tracemalloc

import numpy as np
import pytest

from bnrepro.cli import main
from bnrepro.trace import open_trace, read_trace
from bnrepro.trace import plots
from bnrepro.plot_files import file_names
from test_verify_streaming import CHANNELS, MOMENTUM, write_run


def _recorded(trace, layer, name, first=0):
    return np.array([record["bn"][layer][name] for record in trace.steps[first:]])


def test_the_series_are_the_traces_values_and_the_momentum_formula(tmp_path):
    directory = str(write_run(tmp_path / "run", 300))
    series = plots.layer_series(open_trace(directory), channels=[1, 6])["bn2"]
    trace = read_trace(directory)
    assert series.binned == 1 and series.steps.tolist() == list(range(301))
    for statistic, batch in plots.PAIRS:
        stored = _recorded(trace, "bn2", statistic)
        np.testing.assert_array_equal(series.values[(statistic, "stored")], stored[:, [1, 6]])
        consumed = _recorded(trace, "bn2", batch, first=1)  # step 0 consumed nothing
        np.testing.assert_array_equal(series.values[(statistic, "batch")][1:], consumed[:, [1, 6]])
        assert np.isnan(series.values[(statistic, "batch")][0]).all()
        expected = MOMENTUM * stored[:-1] + (1 - MOMENTUM) * consumed  # float64, by hand
        np.testing.assert_allclose(series.values[(statistic, "predicted")][1:],
                                   expected[:, [1, 6]], rtol=1e-6)
        np.testing.assert_array_equal(series.band[statistic],
                                      np.stack([stored.min(axis=1), stored.max(axis=1)], axis=1))
    assert all(marks.count == 0 for marks in series.marks.values())


def test_a_value_off_its_update_and_a_run_that_did_not_train_are_marked(tmp_path):
    def change(step, layer, state):
        if layer == "bn1" and step == 120:
            state["moving_variance"] = state["moving_variance"] * np.float32(1.001)
    directory = write_run(tmp_path / "run", 250, change=change)
    series = plots.layer_series(open_trace(str(directory)))
    # the recorded value at 120 is off, and 121's (the run went on from the true one) is off the
    # prediction from the recorded 120
    assert series["bn1"].marks["off"].steps == [120, 121]
    assert series["bn2"].marks["off"].count == 0
    zoomed = plots.zoom_series(open_trace(str(directory)), series,
                               {"bn1": plots.zoom_window(series["bn1"])})
    figure = plots.plot_layer(series["bn1"], zoomed["bn1"], MOMENTUM)
    marked = [line.get_xdata()[0] for axis in figure.axes for line in axis.lines
              if line.get_gid() == "mark:off"]
    assert marked and set(marked) == {120, 121}
    zoom_axis = figure.axes[2]  # the zoom of moving_mean: around step 120
    (stored,) = [line for line in zoom_axis.lines if line.get_gid() == "stored:0"]
    assert stored.get_xdata().tolist() == list(range(70, 171))


def test_a_long_run_is_binned_and_its_memory_does_not_grow_with_the_steps(tmp_path,
                                                                          monkeypatch):
    monkeypatch.setattr(plots, "MAX_POINTS", 100)
    short = str(write_run(tmp_path / "short", 800))  # both of several whole chunks
    long = str(write_run(tmp_path / "long", 1600, seed=1))
    series = plots.layer_series(open_trace(long))["bn1"]
    assert series.binned == 17 and len(series.steps) == 95  # 1601 records, 17 a point
    assert series.steps[:3].tolist() == [16, 33, 50]  # each point is its bin's last record
    trace = read_trace(long)
    stored = _recorded(trace, "bn1", "moving_mean")
    np.testing.assert_array_equal(series.band["moving_mean"][1],
                                  [stored[17:34].min(), stored[17:34].max()])
    zoomed = plots.zoom_series(open_trace(long), {"bn1": series}, {"bn1": (500, 560)})["bn1"]
    assert zoomed.binned == 1 and zoomed.steps.tolist() == list(range(500, 561))
    np.testing.assert_array_equal(zoomed.values[("moving_mean", "stored")],
                                  stored[500:561][:, series.channels])
    peaks = []
    for directory in (short, long):
        tracemalloc.start()
        plots.layer_series(open_trace(directory))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] - peaks[0] < 2e5, peaks  # 800 more steps: under 200 KB more


@pytest.mark.parametrize("extension", ["png", "svg"])
def test_the_command_writes_one_figure_per_layer(tmp_path, capsys, extension):
    directory = write_run(tmp_path / "run", 30)
    out = tmp_path / "figures"
    assert main(["plot", str(directory), "--out", str(out), "--format", extension,
                 "--channels", "0,7"]) == 0
    assert sorted(path.name for path in out.iterdir() if not path.name.startswith(".")) == [
        f"bn1.{extension}", f"bn2.{extension}"]
    assert (out / f"bn1.{extension}").stat().st_size > 10_000
    assert "plot: 2/2 bn2 ->" in capsys.readouterr().out
    assert main(["plot", str(directory), "--out", str(out)]) == 2  # exists: --force
    assert "--force" in capsys.readouterr().err


@pytest.mark.parametrize("arguments, words", [
    (["--layer", "nope"], "no batch-norm layer 'nope'"),
    (["--channels", str(CHANNELS)], f"has {CHANNELS} channels"),
    (["--steps", "9:3"], "is not a step range"),
    (["--channels", "a"], "is not a list of channel indices"),
])
def test_bad_options_are_one_line_errors_and_write_nothing(tmp_path, capsys, arguments, words):
    directory = write_run(tmp_path / "run", 5)
    out = tmp_path / "figures"
    assert main(["plot", str(directory), "--out", str(out), *arguments]) == 2
    error = capsys.readouterr().err.strip()
    assert words in error and len(error.splitlines()) == 1
    assert not out.exists()


def test_file_names_of_layers_with_scopes():
    assert file_names(["stage1/block1/a/bn", "stage1_block1_a/bn", "x"], "png") == {
        "stage1/block1/a/bn": "stage1_block1_a_bn.png",
        "stage1_block1_a/bn": "stage1_block1_a_bn-2.png", "x": "x.png"}


def test_verify_draws_the_figures_when_asked(tmp_path, capsys):
    directory = write_run(tmp_path / "run", 20)
    assert main(["verify", str(directory), "--plot"]) == 0
    captured = capsys.readouterr()
    assert captured.out.rstrip().splitlines()[-1].startswith("PASS")
    assert "plot: 2/2 bn2 ->" in captured.err
    assert (tmp_path / "run-plots" / "bn1.png").stat().st_size > 10_000


def test_the_steps_taken_a_block_at_a_time_give_what_one_at_a_time_gives(tmp_path, monkeypatch):
    def change(step, layer, state):
        if layer == "bn1" and step in (7, 270):
            state["moving_mean"] = state["moving_mean"] + np.float32(1e-3)
    directory = str(write_run(tmp_path / "run", 300, change=change))
    stacked = plots.layer_series(open_trace(directory))
    monkeypatch.setattr(plots._Collector, "_simple", lambda self, record, previous: False)
    one_by_one = plots.layer_series(open_trace(directory))
    for layer, series in stacked.items():
        other = one_by_one[layer]
        np.testing.assert_array_equal(series.steps, other.steps)
        for key, values in series.values.items():
            np.testing.assert_array_equal(values, other.values[key], err_msg=str(key))
        for key, band in series.band.items():
            np.testing.assert_array_equal(band, other.band[key])
        assert {kind: marks.steps for kind, marks in series.marks.items()} == {
            kind: marks.steps for kind, marks in other.marks.items()}
    assert stacked["bn1"].marks["off"].steps == [7, 8, 270, 271]
