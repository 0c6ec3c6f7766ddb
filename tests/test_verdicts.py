"""A verdict must be true: verify never passes a trace that is cut short, that diverged or that holds
non-finite values; its bounds follow the size of the numbers; a diagnosis names a convention only
when the numbers tell it apart from the declared one."""
import copy
import dataclasses
import json
import os
import shutil

import numpy as np
import pytest

from bnrepro.cli import main
from bnrepro.trace import ARRAYS_DIRECTORY, TRACE_FILE, read_trace
from bnrepro.check.verify import verify_trace


def _lines(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read().splitlines(keepends=True)


def _write(directory, lines, arrays_of=None):
    """``lines`` as ``directory/trace.jsonl``, with the chunk files of trace ``arrays_of``."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, TRACE_FILE), "w", encoding="utf-8") as handle:
        handle.writelines(lines)
    if arrays_of is not None:
        shutil.copytree(os.path.join(os.path.dirname(arrays_of.path), ARRAYS_DIRECTORY),
                        os.path.join(directory, ARRAYS_DIRECTORY))
    return str(directory)


def test_a_whole_trace_ends_with_its_end_line(cubic_trace):
    assert cubic_trace.end == {"status": "complete", "last_step": 10, "records": 11}
    assert _lines(cubic_trace.path)[-1] == \
        '{"end": {"status": "complete", "last_step": 10, "records": 11}}\n'
    assert verify_trace(cubic_trace).passed


def test_a_trace_cut_at_a_line_boundary_does_not_pass(cubic_trace, tmp_path, capsys):
    """``head -n 4 trace.jsonl``: the header and steps 0-2 of 10, every line whole."""
    path = _write(tmp_path / "cut", _lines(cubic_trace.path)[:4], cubic_trace)
    report = verify_trace(read_trace(path))
    assert report.formulas_hold and not report.passed
    assert main(["verify", path]) == 1
    verdict = capsys.readouterr().out.rstrip().splitlines()[-1]
    assert verdict.startswith("INCOMPLETE: the trace has no end line after step 2: it may have "
                              "been cut short")


def test_a_missing_middle_line_does_not_pass(cubic_trace, tmp_path):
    lines = _lines(cubic_trace.path)
    path = _write(tmp_path / "gap", lines[:5] + lines[6:], cubic_trace)  # step 4 left out
    report = verify_trace(read_trace(path))
    assert not report.passed
    assert "the end line counts 11 step records, the trace holds 10" in report.verdict()


def test_non_finite_values_are_named(cubic_trace):
    steps = copy.deepcopy(cubic_trace.steps)
    steps[6]["bn"]["batch_normalization"]["moving_variance"] = np.array([np.inf])
    steps[7]["loss"] = np.float64(np.nan)
    report = verify_trace(dataclasses.replace(cubic_trace, steps=steps))
    assert not report.passed and report.diverged
    finite = next(check for check in report.checks if check.name == "every value finite")
    assert finite.first_failure == "step 6, bn batch_normalization moving_variance, element (0,): inf"
    assert report.verdict().startswith("FAIL: DIVERGED (non-finite values: step 6")


@pytest.fixture(scope="module")
def diverged_compare(tmp_path_factory):
    """``bnrepro compare --methods bn --steps 30 --learning-rate 100``: NaN loss at step 17."""
    from bnrepro.config import EMBEDDED_DATA, CompareConfig
    from bnrepro.compare.run import run_compare

    out = tmp_path_factory.mktemp("diverged") / "out"
    config = CompareConfig(methods="bn", steps=30, learning_rate=100.0, data=EMBEDDED_DATA)
    return run_compare(config, str(out), write=lambda line: None, progress_stream=open(os.devnull, "w")), out


def test_a_diverged_run_is_named_not_passed(diverged_compare, capsys):
    comparison, out = diverged_compare
    diverged_at = comparison.runs[0].diverged_at
    assert diverged_at is not None
    trace = read_trace(str(out / "bn"))
    assert trace.end["status"] == "diverged" and trace.end["last_step"] == diverged_at
    report = comparison.verification
    assert not report.passed
    assert report.verdict().startswith(f"DIVERGED: the run diverged at step {diverged_at} (loss nan")
    assert main(["verify", str(out / "bn")]) == 1
    capsys.readouterr()


@pytest.fixture(scope="module")
def default_compare(tmp_path_factory):
    """The default comparison's bn layer (2-D, non-fused, epsilon 1e-5), 40 steps."""
    from bnrepro.config import EMBEDDED_DATA, CompareConfig
    from bnrepro.compare.run import run_compare

    out = tmp_path_factory.mktemp("default") / "out"
    config = CompareConfig(methods="bn", steps=40, data=EMBEDDED_DATA, trace_tensors_every=10)
    return run_compare(config, str(out), write=lambda line: None, progress_stream=open(os.devnull, "w")), out


def test_the_default_comparison_passes_without_a_spurious_diagnosis(default_compare):
    """epsilon 1e-5 and the old cuDNN floor 1.001e-5 cannot be told apart on these numbers (the
    outputs differ by about 5e-9 relative): no diagnosis may name either."""
    comparison, out = default_compare
    report = comparison.verification
    assert report.passed, report.format()
    assert report.diagnosis == [], report.format()
    with open(out / "results.md", encoding="utf-8") as handle:
        assert "diagnosis:" not in handle.read()


def test_the_bounds_follow_the_size_of_the_numbers(default_compare):
    """Scale a trace's moving variances down to about 1e-6 (and its batch variances with them):
    it still passes; then move one moving variance by 30% of itself (3e-7, far below the old
    absolute tolerance of 1e-6): it must fail."""
    comparison, out = default_compare
    trace = read_trace(str(out / "bn"))
    scale = 1e-6 / float(np.mean(trace.steps[1]["bn"]["layer1/batch_normalization"]["moving_variance"]))
    steps = copy.deepcopy(trace.steps)
    for record in steps:
        state = record["bn"]["layer1/batch_normalization"]
        for name in ("moving_variance", "batch_variance"):
            if name in state:
                state[name] = (state[name] * scale).astype(np.float32).astype(np.float64)
        state.pop("batch_input", None)
        record.pop("inference", None)
    scaled = dataclasses.replace(trace, steps=steps)
    assert verify_trace(scaled).passed, verify_trace(scaled).format()
    state = steps[5]["bn"]["layer1/batch_normalization"]
    assert float(np.max(state["moving_variance"])) < 1e-4
    state["moving_variance"] = state["moving_variance"].copy()
    state["moving_variance"][3] *= 1.3
    report = verify_trace(scaled)
    assert not report.passed
    failed = next(check for check in report.checks if not check.passed)
    assert failed.name == "moving_variance update" and failed.first_failure.startswith("step 5")


def test_the_flush_slack_is_the_smallest_normal_per_value_and_weight():
    """float32's smallest normal is 2^-126 = 1.1754944e-38 (IEEE 754 binary32: exponent -126,
    significand 1); the slack is count * gain of it."""
    from bnrepro.check import tolerances

    assert tolerances.SMALLEST_NORMAL == 2.0 ** -126
    assert np.float32(tolerances.SMALLEST_NORMAL) == np.float32(1.1754944e-38)
    assert tolerances.flush_slack() == 2.0 ** -126
    assert tolerances.flush_slack(5, 3.0) == 15 * 2.0 ** -126
    # every bound allows for it: an exact prediction (bound 0) of 1e-39 against TensorFlow's 0
    check = tolerances.Check("any")
    check.compare("here", [0.0], [1e-39], 0.0)
    assert check.passed


def _header_and_end(tmp_path, header, end):
    lines = [json.dumps(header), json.dumps({"end": end})]
    return _write(tmp_path / "nothing", [line + "\n" for line in lines])


GENERIC_HEADER = {"format": "bnrepro-trace/2", "scenario": "trace", "layers": {}, "averages": {},
                  "graphs_searched": [{"graph": "graph1", "operations": 44, "layers": 0,
                                       "averages": 0}]}


def test_a_trace_in_which_nothing_was_found_says_so_and_does_not_pass(tmp_path, capsys):
    """What ``bnrepro trace`` writes for a program without a moving average: a header listing no
    layer or average, and a complete end line counting 0 records."""
    path = _header_and_end(tmp_path, GENERIC_HEADER,
                           {"status": "complete", "last_step": 0, "records": 0})
    report = verify_trace(read_trace(path))
    assert not report.passed
    assert main(["verify", path]) == 1
    printed = capsys.readouterr().out
    assert "truncated" not in printed
    lines = printed.rstrip().splitlines()
    assert lines[-1] == ("NOTHING TO CHECK: no moving average was found in the graphs the "
                         "program ran; a trace with nothing in it is not a PASS")
    assert "graphs searched: graph1: 44 operations" in lines
    assert "  assign_sub(V, (V - x) * (1 - momentum))      as tf.layers and tf_keras batch norm, " \
        "assign_moving_average and ExponentialMovingAverage build it" in lines
    assert "  assign(V, V * momentum + x * (1 - momentum))  a tf.assign of the weighted sum" in lines
    assert "UPDATE_OPS" in printed


@pytest.mark.parametrize("header, end, verdict", [
    (dict(GENERIC_HEADER, layers={"bn": {"momentum": 0.9, "epsilon": 0.001}}),
     {"status": "complete", "last_step": 0, "records": 0},
     "NOTHING TO CHECK: the header lists 1 moving averages (bn) but no run recorded their state"),
    (GENERIC_HEADER, {"status": "stopped", "last_step": 0, "records": 0,
                      "reason": "the script raised ValueError: bad"},
     "NOTHING TO CHECK: the run stopped (the script raised ValueError: bad) before any step was "
     "recorded"),
], ids=["found-but-never-read", "stopped"])
def test_a_trace_without_steps_says_why(tmp_path, capsys, header, end, verdict):
    assert main(["verify", _header_and_end(tmp_path, header, end)]) == 1
    assert capsys.readouterr().out.rstrip().splitlines()[-1].startswith(verdict)


def test_a_header_alone_is_a_run_cut_short_before_its_first_steps(tmp_path, capsys):
    path = _write(tmp_path / "cut", [json.dumps(GENERIC_HEADER) + "\n"])
    assert main(["verify", path]) == 1
    assert capsys.readouterr().out.rstrip().splitlines()[-1] == (
        "INCOMPLETE: the trace ends after its header, with no step and no end line: the run was "
        "killed (or is still running) before it wrote its first steps; nothing to check")
