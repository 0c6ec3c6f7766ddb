"""``bnrepro tensorboard``: the event file read back with TensorBoard's own event reader, its
scalars equal to the trace's numbers, the update's error as a fraction of its bound above 1 only
where a value was moved, the histograms over all channels, and one-line errors."""
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

from bnrepro.check import tolerances
from bnrepro.cli import main
from bnrepro.trace import read_trace
from test_verify_streaming import CHANNELS, MOMENTUM, write_run


def _read(logdir):
    """``{tag: {step: value}}`` of every summary in ``logdir``."""
    reader = event_accumulator.EventAccumulator(str(logdir), size_guidance={
        event_accumulator.TENSORS: 0})
    reader.Reload()
    return {tag: {event.step: tensor_util.make_ndarray(event.tensor_proto)
                  for event in reader.Tensors(tag)} for tag in reader.Tags()["tensors"]}


def test_the_summaries_are_the_traces_numbers(tmp_path, capsys):
    def change(step, layer, state):
        if layer == "bn2" and step == 40:
            state["moving_mean"] = state["moving_mean"] + np.float32(1e-3)
    directory = write_run(tmp_path / "run", 60, change=change)
    logdir = tmp_path / "logs"
    assert main(["tensorboard", str(directory), "--logdir", str(logdir), "--channels", "2,5",
                 "--histogram-every", "10"]) == 0
    assert "tensorboard --logdir" in capsys.readouterr().out
    summaries = _read(logdir)
    trace = read_trace(str(directory))
    for record in trace.steps:
        step, state = record["step"], record["bn"]["bn2"]
        for channel in (2, 5):
            assert summaries[f"bn2/moving_variance/channel_{channel}"][step] == np.float32(
                state["moving_variance"][channel])
            if step:
                assert summaries[f"bn2/batch_mean/channel_{channel}"][step] == np.float32(
                    state["batch_mean"][channel])
    assert "bn2/moving_mean/channel_0" not in summaries and 0 not in summaries[
        "bn2/batch_mean/channel_2"]
    fractions = summaries["bn2/update_error_of_bound"]
    assert sorted(fractions) == list(range(1, 61))
    assert {step for step, value in fractions.items() if value > 1} == {40, 41}
    # step 40's fraction, from the trace by hand: the moved moving mean against its update
    old, new = trace.step(39)["bn"]["bn2"], trace.step(40)["bn"]["bn2"]
    predicted = MOMENTUM * old["moving_mean"] + (1 - MOMENTUM) * new["batch_mean"]
    bound = tolerances.moving_average_bound(old["moving_mean"], new["batch_mean"], MOMENTUM,
                                            predicted) + tolerances.flush_slack()
    assert fractions[40] == pytest.approx(np.max(np.abs(new["moving_mean"] - predicted) / bound),
                                          rel=1e-6)
    histogram = summaries["bn1/moving_mean"]
    assert sorted(histogram) == [0, 10, 20, 30, 40, 50, 60]
    assert histogram[30][:, 2].sum() == CHANNELS  # (left, right, count) buckets of all channels


@pytest.mark.parametrize("arguments, words", [
    (["--layer", "nope"], "no batch-norm layer 'nope'"),
    (["--channels", "99"], f"has {CHANNELS} channels"),
    (["--histogram-every", "0"], "--histogram-every must be at least 1"),
])
def test_bad_options_are_one_line_errors(tmp_path, capsys, arguments, words):
    directory = write_run(tmp_path / "run", 3)
    assert main(["tensorboard", str(directory), "--logdir", str(tmp_path / "logs"),
                 *arguments]) == 2
    error = capsys.readouterr().err.strip()
    assert words in error and len(error.splitlines()) == 1
    assert not (tmp_path / "logs").exists() or not list((tmp_path / "logs").iterdir())
