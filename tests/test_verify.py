"""verify passes on real traces and each of its checks fails when its value is perturbed."""
import copy
import dataclasses
import os

import numpy as np
import pytest

from bnrepro.check import formulas
from bnrepro.trace import Trace, end_record
from bnrepro.check.verify import verify_trace


@pytest.mark.parametrize("fixture", ["cubic_trace", "two_sample_trace", "two_sample_long_trace"])
def test_real_traces_pass(request, fixture):
    report = verify_trace(request.getfixturevalue(fixture))
    assert report.passed, report.format()
    assert all(check.compared > 0 for check in report.checks)
    assert set(report.variance_used.values()) == {formulas.BIASED}


def _perturbed(trace, step, *path):
    """A deep copy of ``trace`` with one value of ``step`` moved by 1e-3 (relative)."""
    copied = dataclasses.replace(trace, header=trace.header, steps=copy.deepcopy(trace.steps))
    container = copied.step(step)
    for key in path[:-1]:
        container = container[key]
    array = np.array(container[path[-1]], dtype=np.float64)
    array.flat[0] += 1e-3 * max(1.0, abs(array.flat[0]))
    container[path[-1]] = array
    return copied


LAYER = "batch_normalization"


@pytest.mark.parametrize("path, failing_check", [
    (("bn", LAYER, "moving_mean"), "moving_mean update"),
    (("bn", LAYER, "moving_variance"), "moving_variance update"),
    (("bn", LAYER, "batch_mean"), "batch_mean from inputs"),
    (("bn", LAYER, "batch_variance"), "batch_variance from inputs"),
    (("bn", LAYER, "batch_input"), "batch_mean from inputs"),
    (("inference", LAYER, "output"), "inference formula"),
    (("inference", LAYER, "input"), "inference formula"),
])
def test_each_check_fails_on_a_perturbed_value(cubic_trace, path, failing_check):
    report = verify_trace(_perturbed(cubic_trace, 4, *path))
    assert not report.passed
    failed = {check.name for check in report.checks if not check.passed}
    assert failing_check in failed
    assert "step 4" in next(c.first_failure for c in report.checks if c.name == failing_check)
    assert "FAIL" in report.format()


def _hand_made(path, header, steps):
    """A :class:`Trace` of hand-made steps (the traces below), as read from a file, ending with the
    end line of a finished run."""
    return Trace(path=path, header=header, steps=steps,
                 end=end_record("complete", steps[-1]["step"], len(steps))["end"])


def _synthetic_trace(batch_variance_convention, *, swapped=False):
    """One step on x = [0, 4], momentum 0.75 (so that momentum and 1 - momentum differ), from
    moving_mean 0, moving_variance 1. Worked by hand: mean 2; biased variance (4 + 4) / 2 = 4,
    unbiased 8 / 1 = 8; so, the standard update (momentum weighs the old value)::

        moving_mean     = 0.75 * 0 + 0.25 * 2   = 0.5
        moving_variance = 0.75 * 1 + 0.25 * var = 1.75 (biased) or 2.75 (unbiased)

    ``swapped``: the update with momentum and 1 - momentum swapped (momentum weighs the new value,
    PyTorch's convention)::

        moving_mean     = 0.25 * 0 + 0.75 * 2   = 1.5
        moving_variance = 0.25 * 1 + 0.75 * var = 3.25 (biased) or 6.25 (unbiased)
    """
    variance = {formulas.BIASED: 4.0, formulas.UNBIASED: 8.0}[batch_variance_convention]
    moving = {(False, 4.0): (0.5, 1.75), (False, 8.0): (0.5, 2.75),
              (True, 4.0): (1.5, 3.25), (True, 8.0): (1.5, 6.25)}[swapped, variance]
    state0 = {"moving_mean": np.array([0.0]), "moving_variance": np.array([1.0]),
              "gamma": np.array([1.0]), "beta": np.array([0.0])}
    state1 = dict(state0, moving_mean=np.array([moving[0]]), moving_variance=np.array([moving[1]]),
                  batch_mean=np.array([2.0]), batch_variance=np.array([variance]),
                  batch_input=np.array([[0.0], [4.0]]))
    header = {"format": "bnrepro-trace/1", "layers": {"bn": {"momentum": 0.75, "epsilon": 0.001}}}
    return _hand_made("synthetic", header,
                      [{"step": 0, "bn": {"bn": state0}}, {"step": 1, "bn": {"bn": state1}}])


@pytest.mark.parametrize("convention", formulas.VARIANCE_CONVENTIONS)
def test_reports_which_variance_the_trace_follows(convention):
    from bnrepro.check.diagnose import conventions_followed

    report = verify_trace(_synthetic_trace(convention))
    assert report.passed, report.format()
    assert report.variance_used == {"bn": convention}
    assert formulas.VARIANCE_LABELS[convention] in report.format()
    assert ("bn", "moving_mean") not in conventions_followed(report.diagnosis)  # the standard one


@pytest.mark.parametrize("convention, followed", [
    (formulas.BIASED, {("bn", "moving_mean"): "swapped", ("bn", "moving_variance"): "swapped"}),
    (formulas.UNBIASED, {("bn", "moving_mean"): "swapped", ("bn", "moving_variance"): "pytorch",
                         ("bn", "batch statistics"): "unbiased"}),
])
def test_a_trace_with_momentum_and_1_minus_momentum_swapped_fails_and_is_named(convention,
                                                                              followed):
    """The swapped trace's moving statistics (1.5 and 3.25 or 6.25, :func:`_synthetic_trace`) are
    not the standard update's (0.5 and 1.75 or 2.75): verify fails both updates, and the diagnosis
    names the swapped convention (with the unbiased variance: PyTorch's)."""
    from bnrepro.check.diagnose import conventions_followed

    report = verify_trace(_synthetic_trace(convention, swapped=True))
    assert report.passed is False, report.format()
    assert {c.name for c in report.checks if not c.passed} == {"moving_mean update",
                                                                "moving_variance update"}
    assert "expected 0.5, got 1.5" in report.format()  # 0.25 * 2, not 0.75 * 2 (swapped)
    assert conventions_followed(report.diagnosis) == followed


def test_a_trace_without_consecutive_steps_does_not_pass():
    trace = _synthetic_trace(formulas.BIASED)
    trace.steps = trace.steps[1:]
    del trace.steps[0]["bn"]["bn"]["batch_input"]
    assert not verify_trace(trace).passed


# --- the layer's other modes: ghost batches and renorm, declared in the header -------------------

RENORM_CHECKS = ("moving_stddev update", "renorm_mean, renorm_stddev", "renorm r, d (clipped)")


@pytest.mark.parametrize("name, overrides, mode", [
    ("ghost-batch", {}, "ghost batches of 2 strided samples (virtual_batch_size=2)"),
    ("ghost-batch", {"virtual_batch_size": 4},
     "ghost batches of 4 strided samples (virtual_batch_size=4)"),
    ("renorm", {}, "renorm (renorm_momentum 0.9, clipping rmin 0.667, rmax 1.5, dmax 0.5)"),
], ids=["ghost-2", "ghost-4", "renorm"])
def test_real_traces_of_the_other_modes_pass_under_the_declared_mode(scenario_trace, capsys, name,
                                                                     overrides, mode):
    from bnrepro.cli import main

    trace = scenario_trace(name, **overrides)
    report = verify_trace(trace)
    assert report.passed, report.format()
    assert all(check.compared > 0 for check in report.checks)
    assert (set(RENORM_CHECKS) <= {c.name for c in report.checks}) == (name == "renorm")
    assert report.diagnosis == []
    assert main(["verify", trace.path]) == 0
    printed = capsys.readouterr().out
    assert f"mode of {LAYER} (from the header): {mode}\n" in printed
    assert printed.rstrip().splitlines()[-1].startswith(
        "PASS: every recorded value is within its float32 rounding bound (bnrepro.check.tolerances; "
        "the largest error is ")


@pytest.mark.parametrize("name, path, failing_check", [
    ("ghost-batch", ("bn", LAYER, "batch_variance"), "batch_variance from inputs"),
    ("ghost-batch", ("bn", LAYER, "batch_input"), "batch_variance from inputs"),
    ("ghost-batch", ("bn", LAYER, "moving_variance"), "moving_variance update"),
    ("renorm", ("bn", LAYER, "moving_variance"), "moving_variance update"),
    ("renorm", ("variables", f"{LAYER}/moving_stddev:0"), "moving_stddev update"),
    ("renorm", ("variables", f"{LAYER}/renorm_mean:0"), "renorm_mean, renorm_stddev"),
    ("renorm", ("variables", f"{LAYER}/renorm_stddev:0"), "renorm_mean, renorm_stddev"),
    ("renorm", ("metrics", f"{LAYER} renorm_r"), "renorm r, d (clipped)"),
    ("renorm", ("metrics", f"{LAYER} renorm_d"), "renorm r, d (clipped)"),
], ids=lambda value: value[-1] if isinstance(value, tuple) else None)
def test_each_mode_check_fails_on_a_perturbed_value(scenario_trace, name, path, failing_check):
    report = verify_trace(_perturbed(scenario_trace(name), 2, *path))
    assert not report.passed
    failure = next(c.first_failure for c in report.checks if c.name == failing_check)
    assert failure is not None and failure.startswith("step 2"), report.format()


@pytest.mark.parametrize("name, renorm_or_size, failing_check, reason", [
    ("ghost-batch", 3, "batch_mean from inputs", "virtual_batch_size 3 does not divide the batch 8"),
    ("renorm", {"momentum": 0.9, "clipping": {"dmax": 0.5}}, "renorm r, d (clipped)", "renorm_r"),
    ("renorm", {"momentum": 0.9, "clipping": {"rmin": 0.667, "rmax": 1.5}}, "renorm r, d (clipped)",
     "renorm_d"),
    ("renorm", {"momentum": 0.99, "clipping": {"rmin": 0.667, "rmax": 1.5, "dmax": 0.5}},
     "renorm_mean, renorm_stddev", "renorm_mean"),
], ids=["ghost-3-of-8", "renorm-r-unclipped", "renorm-d-unclipped", "renorm-momentum-0.99"])
def test_a_wrong_mode_parameter_in_the_header_fails(scenario_trace, name, renorm_or_size,
                                                    failing_check, reason):
    """r is clipped to 0.667 or 1.5 and d to 0.5 at some steps of the renorm run
    (tests/test_pitfalls.py), so dropping a bound changes the expected values there."""
    trace = scenario_trace(name)
    header = copy.deepcopy(trace.header)
    key = "virtual_batch_size" if name == "ghost-batch" else "renorm"
    header["layers"][LAYER][key] = renorm_or_size
    report = verify_trace(dataclasses.replace(trace, header=header, steps=trace.steps))
    assert not report.passed
    failure = next(c.first_failure for c in report.checks if c.name == failing_check)
    assert failure is not None and reason in failure, report.format()


def test_a_ghost_batch_trace_without_its_inputs_passes_with_no_diagnosis(scenario_trace):
    """Without batch_input nothing is recomputed from the inputs: the updates are checked with the
    recorded (ghost) statistics, which is what the declared mode consumes too."""
    trace = scenario_trace("ghost-batch")
    steps = copy.deepcopy(trace.steps)
    for record in steps:
        record["bn"][LAYER].pop("batch_input", None)
    report = verify_trace(dataclasses.replace(trace, header=trace.header, steps=steps))
    assert report.passed and report.diagnosis == [], report.format()


def test_renorm_passes_without_moving_stddev_in_the_trace(scenario_trace):
    """Without the renorm variables verify derives moving_stddev from moving_variance
    (layer_modes.moving_stddev_after); the rows that need them say "not recorded"."""
    trace = scenario_trace("renorm")
    steps = copy.deepcopy(trace.steps)
    for record in steps:
        record["variables"] = {name: value for name, value in record["variables"].items()
                               if "renorm" not in name and "moving_stddev" not in name}
    report = verify_trace(dataclasses.replace(trace, header=trace.header, steps=steps))
    assert report.passed, report.format()
    compared = {check.name: check.compared for check in report.checks}
    assert compared["moving_variance update"] == 6
    assert compared["moving_stddev update"] == compared["renorm_mean, renorm_stddev"] == 0
    assert "moving_stddev update                     0            0            0         0  " \
        "not recorded" in report.format()


def _ghost_trace(layout_declared, layout_followed):
    """One step on x = 1, 2, 4, 7 with K = 2, momentum 0.75, from moving (0, 1). Worked by hand:

    strided ghost batches {1, 4}, {2, 7}: variances 2.25, 6.25, mean 4.25;
    contiguous ones {1, 2}, {4, 7}: variances 0.25, 2.25, mean 1.25; both means 3.5, so
    moving_mean = 0.75 * 0 + 0.25 * 3.5 = 0.875 and moving_variance = 0.75 * 1 + 0.25 * 4.25 =
    1.8125 (strided) or 0.75 + 0.25 * 1.25 = 1.0625 (contiguous); the whole batch's variance would
    be 5.25 (0.75 + 0.25 * 5.25 = 2.0625). Swapped, the mean would be 0.25 * 0 + 0.75 * 3.5 = 2.625.
    """
    variance = {"strided": 4.25, "contiguous": 1.25}[layout_followed]
    state0 = {"moving_mean": np.array([0.0]), "moving_variance": np.array([1.0]),
              "gamma": np.array([1.0]), "beta": np.array([0.0])}
    state1 = dict(state0, moving_mean=np.array([0.875]),
                  moving_variance=np.array([{"strided": 1.8125, "contiguous": 1.0625}[layout_followed]]),
                  batch_mean=np.array([3.5]), batch_variance=np.array([variance]),
                  batch_input=np.array([[1.0], [2.0], [4.0], [7.0]]))
    entry = {"momentum": 0.75, "epsilon": 0.001}
    if layout_declared is not None:
        entry.update(virtual_batch_size=2, ghost_layout=layout_declared)
    header = {"format": "bnrepro-trace/1", "layers": {"bn": entry}}
    return _hand_made("hand-made", header,
                      [{"step": 0, "bn": {"bn": state0}}, {"step": 1, "bn": {"bn": state1}}])


@pytest.mark.parametrize("declared, followed, passes", [
    ("strided", "strided", True), ("contiguous", "contiguous", True),
    ("contiguous", "strided", False), ("strided", "contiguous", False), (None, "strided", False),
])
def test_hand_made_ghost_batch_traces(declared, followed, passes):
    from bnrepro.check.diagnose import conventions_followed

    report = verify_trace(_ghost_trace(declared, followed))
    assert report.passed == passes, report.format()
    if passes:
        assert report.modes == {"bn": f"ghost batches of 2 {declared} samples (virtual_batch_size=2)"}
        assert report.diagnosis == []
    else:
        assert {c.name for c in report.checks if not c.passed} == {"batch_variance from inputs"}
        assert conventions_followed(report.diagnosis) == {
            ("bn", "moving_variance"): f"ghost 2 {followed}",
            ("bn", "batch statistics"): f"ghost 2 {followed}"}


def _renorm_trace(*, declared=True, variables=True):
    """Two renorm steps, worked by hand: epsilon 0.41, momentum 0.875, renorm momentum 0.75 (each
    different from 1 - itself and from the other), clipping rmax 1.5, dmax 0.5; from moving (0, 1),
    so moving_stddev = renorm_stddev = sqrt(1) = 1 and renorm_mean = 0 (s = sqrt(var + 0.41),
    t = max(renorm_stddev_old, sqrt(0.41) = 0.64)).

    step 1, x = 0, 4: mean 2, var 4, s = sqrt(4.41) = 2.1, t = 1;
        moving_mean 0.875 * 0 + 0.125 * 2 = 0.25; moving_stddev 0.875 * 1 + 0.125 * 2.1 = 1.1375,
        moving_variance 1.1375^2 - 0.41 = 1.29390625 - 0.41 = 0.88390625 (the standard update would
        give 0.875 * 1 + 0.125 * 4 = 1.375);
        renorm_mean 0.75 * 0 + 0.25 * 2 = 0.5, renorm_stddev 0.75 * 1 + 0.25 * 2.1 = 1.275;
        r = 2.1 / 1 clipped to 1.5, d = 2 / 1 clipped to 0.5.
    step 2, x = 0, 1.85: mean 0.925, var 0.855625, s = sqrt(1.265625) = 1.125, t = 1.275;
        moving_mean 0.875 * 0.25 + 0.125 * 0.925 = 0.21875 + 0.115625 = 0.334375;
        moving_stddev 0.875 * 1.1375 + 0.125 * 1.125 = 0.9953125 + 0.140625 = 1.1359375 (its old
        value sqrt(0.88390625 + 0.41) = 1.1375 from step 1's variance when not recorded),
        moving_variance 1.1359375^2 - 0.41 = 1.29035400390625 - 0.41 = 0.88035400390625;
        renorm_mean 0.75 * 0.5 + 0.25 * 0.925 = 0.375 + 0.23125 = 0.60625,
        renorm_stddev 0.75 * 1.275 + 0.25 * 1.125 = 0.95625 + 0.28125 = 1.2375;
        r = 1.125 / 1.275 = 15/17, d = (0.925 - 0.5) / 1.275 = 1/3 (neither clipped).
    """
    rows = [  # x, mean, var, moving_mean, moving_variance, moving_stddev, renorm_mean, renorm_stddev, r, d
        ([0.0, 4.0], 2.0, 4.0, 0.25, 0.88390625, 1.1375, 0.5, 1.275, 1.5, 0.5),
        ([0.0, 1.85], 0.925, 0.855625, 0.334375, 0.88035400390625, 1.1359375, 0.60625, 1.2375,
         15 / 17, 1 / 3),
    ]
    state = {"moving_mean": np.array([0.0]), "moving_variance": np.array([1.0]),
             "gamma": np.array([1.0]), "beta": np.array([0.0])}
    steps = [{"step": 0, "bn": {"bn": state},
              "variables": {"bn/moving_stddev:0": [1.0], "bn/renorm_mean:0": [0.0],
                            "bn/renorm_stddev:0": [1.0]}}]
    for step, (x, mean, var, mm, mv, ms, rm, rs, r, d) in enumerate(rows, start=1):
        steps.append({"step": step, "bn": {"bn": dict(
            state, moving_mean=np.array([mm]), moving_variance=np.array([mv]),
            batch_mean=np.array([mean]), batch_variance=np.array([var]),
            batch_input=np.array(x).reshape(2, 1))},
            "variables": {"bn/moving_stddev:0": [ms], "bn/renorm_mean:0": [rm],
                          "bn/renorm_stddev:0": [rs]},
            "metrics": {"bn renorm_r": [r], "bn renorm_d": [d]}})
    if not variables:
        for record in steps:
            record.pop("variables")
            record.pop("metrics", None)
    entry = {"momentum": 0.875, "epsilon": 0.41}
    if declared:
        entry["renorm"] = {"momentum": 0.75, "clipping": {"rmax": 1.5, "dmax": 0.5}}
    return _hand_made("hand-made", {"format": "bnrepro-trace/1", "layers": {"bn": entry}}, steps)


@pytest.mark.parametrize("variables", [True, False], ids=["recorded", "derived"])
def test_hand_made_renorm_trace_passes(variables):
    report = verify_trace(_renorm_trace(variables=variables))
    assert report.passed, report.format()
    compared = {check.name: check.compared for check in report.checks}
    assert compared["moving_variance update"] == 2
    assert compared["renorm r, d (clipped)"] == (4 if variables else 0)
    assert compared["renorm_mean, renorm_stddev"] == (4 if variables else 0)
    assert report.modes == {"bn": "renorm (renorm_momentum 0.75, clipping rmax 1.5, dmax 0.5)"}


def test_hand_made_renorm_trace_undeclared_fails_with_the_diagnosis():
    from bnrepro.check.diagnose import conventions_followed

    for variables in (True, False):
        report = verify_trace(_renorm_trace(declared=False, variables=variables))
        assert [c.name for c in report.checks if not c.passed] == ["moving_variance update"]
        assert "expected 1.375, got 0.88390625" in report.format()  # 0.875 * 1 + 0.125 * 4
        assert conventions_followed(report.diagnosis) == {("bn", "moving_variance"): "renorm"}


# --- issue 18: what real programs' traces hold --------------------------------------------------

def _generic_trace(entry, updates, *, initial=(0.0, 1.0), extra=None):
    """A ``bnrepro-trace/2`` trace of one layer ``bn`` (header ``entry``), from moving (``initial``),
    one step per item of ``updates``: ``(moving_mean, moving_variance, {what the update consumed and
    the step's own keys})``, each a training run."""
    state = {"moving_mean": np.array([initial[0]]), "moving_variance": np.array([initial[1]]),
             "gamma": np.array([1.0]), "beta": np.array([0.0])}
    steps = [{"step": 0, "bn": {"bn": state}, "averages": {}}]
    for step, (mean, variance, consumed) in enumerate(updates, start=1):
        steps.append({"step": step, "run": {"call": "Session.run", "index": step, "trained": True,
                                            "moved": True, "fetched": []},
                      "bn": {"bn": dict(state, moving_mean=np.array([mean]),
                                        moving_variance=np.array([variance]), **consumed)},
                      "averages": {}, **(extra or {}).get(step, {})})
    header = {"format": "bnrepro-trace/2", "layers": {"bn": {
        "momentum": 0.75, "epsilon": 0.001, "fused": False, "zero_debias": False, **entry}},
        "averages": {}}
    return _hand_made("hand-made", header, steps)


def _consumed(x, *, ddof=0):
    """What an update of x (one channel) consumed: its mean, variance (/N, or /(N-1) with
    ``ddof=1``) as written by hand by the callers, and the input itself."""
    x = np.array(x, dtype=np.float64).reshape(-1, 1)
    return {"batch_mean": x.mean(axis=0), "batch_variance": x.var(axis=0, ddof=ddof),
            "batch_input": x}


def test_an_unknown_epsilon_checks_the_rest_and_says_what_it_did_not():
    """epsilon null (not found in the graph). One step on x = 0, 4, momentum 0.75, from (0, 1):
    moving_mean 0.25 * 2 = 0.5, moving_variance 0.75 + 0.25 * 4 = 1.75, checked; the inference
    pair (input 2, output 1) needs epsilon: not checked, and said so (it crashed: TypeError)."""
    trace = _generic_trace({"epsilon": None}, [(0.5, 1.75, _consumed([0.0, 4.0]))],
                           extra={1: {"inference": {"bn": {"input": np.array([[2.0]]),
                                                           "output": np.array([[1.0]])}}}})
    report = verify_trace(trace)
    compared = {check.name: check.compared for check in report.checks}
    assert compared["moving_mean update"] == compared["moving_variance update"] == 1
    assert compared["batch_mean from inputs"] == compared["batch_variance from inputs"] == 1
    assert compared["inference formula"] == 0
    assert report.passed and report.diagnosis == [], report.format()
    text = report.format()
    assert "inference formula                        0            0            0         0  " \
        "not checked" in text
    assert ("not checked for bn: the inference formula (1 steps) and which epsilon it follows "
            "(the diagnosis' epsilons): its epsilon is unknown") in text
    from bnrepro.check.explain import explain_step
    lines = explain_step(trace, 1, "bn").splitlines()
    assert lines[0] == "Step 1 of ?, layer bn (momentum 0.75, epsilon unknown), channel 0"
    assert lines[-1] == "   not computed: epsilon is unknown (TensorFlow: 1)"


def test_an_unknown_epsilon_in_a_wrong_trace_still_fails_and_diagnoses():
    """The same step with momentum and 1 - momentum swapped (moving_mean 0.75 * 2 = 1.5,
    moving_variance 0.25 + 0.75 * 4 = 3.25): the checks that need no epsilon fail, the diagnosis
    names the convention without the candidates that need epsilon (Keras 2.2's, renorm)."""
    from bnrepro.check.diagnose import conventions_followed

    report = verify_trace(_generic_trace({"epsilon": None}, [(1.5, 3.25, _consumed([0.0, 4.0]))]))
    assert not report.passed
    assert "expected 0.5, got 1.5" in report.format()
    assert conventions_followed(report.diagnosis) == {("bn", "moving_mean"): "swapped",
                                                      ("bn", "moving_variance"): "swapped"}


@pytest.mark.parametrize("where", ["header", "step"])
def test_the_variance_average_takes_its_own_momentum(where):
    """Mean averaged with 0.75, variance with 0.5 (x = 0, 4, from (0, 1)): moving_mean 0.25 * 2 =
    0.5, moving_variance 0.5 * 1 + 0.5 * 4 = 2.5 (the mean's momentum would give 1.75). Step 2,
    x = 1, 3 (mean 2, variance 1): moving_mean 0.75 * 0.5 + 0.25 * 2 = 0.875, moving_variance
    0.5 * 2.5 + 0.5 * 1 = 1.75. The header's momentum_variance, or one recorded per step (a
    momentum computed at run time, header null)."""
    from bnrepro.check.explain import explain_step

    updates = [(0.5, 2.5, _consumed([0.0, 4.0])), (0.875, 1.75, _consumed([1.0, 3.0]))]
    if where == "header":
        trace = _generic_trace({"momentum_variance": 0.5}, updates)
    else:
        for _, _, consumed in updates:
            consumed.update(momentum=np.float64(0.75), momentum_variance=np.float64(0.5))
        trace = _generic_trace({"momentum": None, "momentum_variance": None}, updates)
    report = verify_trace(trace)
    assert report.passed and report.diagnosis == [], report.format()
    lines = explain_step(trace, 2, "bn").splitlines()
    assert "    = 0.5 * 2.5 + (1 - 0.5) * 1 = 1.75    TensorFlow: 1.75    difference 0" in lines
    assert "    = 0.75 * 0.5 + (1 - 0.75) * 2 = 0.875    TensorFlow: 0.875    difference 0" in lines


def test_a_wrong_variance_momentum_fails():
    """The header says 0.9 for the variance; the trace follows 0.5 (2.5, test above): with 0.9,
    0.9 * 1 + 0.1 * 4 = 1.3 is expected."""
    trace = _generic_trace({"momentum_variance": 0.9}, [(0.5, 2.5, _consumed([0.0, 4.0]))])
    report = verify_trace(trace)
    assert not report.passed
    assert "moving_variance update: step 1, layer bn, element (0,): expected 1.29999" in \
        report.format()


def test_a_fused_layer_without_its_input_is_checked_with_the_unbiased_variance_it_consumed():
    """The header declares the fused kernel; the input was not recorded, the consumed variance is
    the unbiased one: x = 0, 4 has var /(N-1) = 8, so moving_variance 0.75 * 1 + 0.25 * 8 = 2.75.
    The update passes, nothing contradicts the header (no "standard update" finding), and the
    report says the batch statistics were not checked against the inputs, and why."""
    consumed = _consumed([0.0, 4.0], ddof=1)
    del consumed["batch_input"]
    report = verify_trace(_generic_trace({"fused": True}, [(0.5, 2.75, consumed)]))
    assert report.passed and report.diagnosis == [], report.format()
    assert ("not checked for bn: batch_mean and batch_variance from the layer's inputs: the "
            "layer's input was not recorded; the moving-average updates were checked with the "
            "batch statistics they consumed (the fused kernel's unbiased (N-1) variance, as the "
            "header declares)") in report.format()


def test_a_layer_declared_fused_that_averages_the_biased_variance_is_named_from_the_numbers():
    """With the input (x = 0, 4) the numbers tell /N (4) from /(N-1) (8): a trace that averaged 4
    (moving_variance 1.75) is named biased, against the header's fused."""
    from bnrepro.check.diagnose import conventions_followed

    report = verify_trace(_generic_trace({"fused": True}, [(0.5, 1.75, _consumed([0.0, 4.0]))]))
    assert report.variance_used == {"bn": formulas.BIASED}
    assert conventions_followed(report.diagnosis) == {("bn", "moving_variance"): "standard",
                                                      ("bn", "batch statistics"): "standard"}
    assert "not the unbiased (N-1) variance of the fused kernel the header declares" in \
        report.format()


def test_values_tensorflow_flushed_to_zero_are_within_their_bounds():
    """TensorFlow on CPU flushes float32 subnormals (below 2^-126 = 1.1754944e-38) to zero. One
    step, momentum 0.5, from (0, 1), on x = 1.5e-38, 2.5e-38 (normal): batch_mean 2e-38, so
    moving_mean = 0.5 * 0 + 0.5 * 2e-38 = 1e-38, subnormal: TensorFlow stores 0. The batch
    variance, 2.5e-77 in float64, is 0 in float32 too; moving_variance = 0.5 * 1 + 0.5 * 0 = 0.5."""
    x = np.array([[1.5e-38], [2.5e-38]], dtype=np.float32).astype(np.float64)
    consumed = {"batch_mean": np.array([2e-38], dtype=np.float32).astype(np.float64),
                "batch_variance": np.array([0.0]), "batch_input": x}
    report = verify_trace(_generic_trace({"momentum": 0.5}, [(0.0, 0.5, consumed)]))
    assert report.passed and report.diagnosis == [], report.format()


def test_a_difference_far_above_the_subnormals_still_fails():
    """The same step on x = 1.5e-36, 2.5e-36: moving_mean 1e-36 (normal, 85 times the smallest
    normal), stored as 0, is a failure."""
    x = np.array([[1.5e-36], [2.5e-36]], dtype=np.float32).astype(np.float64)
    consumed = {"batch_mean": np.array([2e-36], dtype=np.float32).astype(np.float64),
                "batch_variance": np.array([0.0]), "batch_input": x}
    report = verify_trace(_generic_trace({"momentum": 0.5}, [(0.0, 0.5, consumed)]))
    assert not report.passed
    assert "FAIL: moving_mean update: step 1, layer bn, element (0,): expected 1.00000003" in \
        report.format()


def _two_updates(order=(0, 1), swapped=False):
    """One run that updated the layer twice (momentum 0.75, from (0, 1)): first x = 0, 4 (mean 2,
    variance 4), then x = 2, 4 (mean 3, variance 1). By hand::

        moving_mean     0.75 * 0 + 0.25 * 2 = 0.5,     0.75 * 0.5 + 0.25 * 3 = 1.125
        moving_variance 0.75 * 1 + 0.25 * 4 = 1.75,    0.75 * 1.75 + 0.25 * 1 = 1.5625

    (in the other order: 0.75 then 0.75 * 0.75 + 0.25 * 2 = 1.0625; only the second update:
    0.75). ``swapped`` (0.25 weighs the old): 0.25 * 0 + 0.75 * 2 = 1.5, 0.25 * 1.5 + 0.75 * 3 =
    2.625; variance 0.25 + 3 = 3.25, 0.8125 + 0.75 = 1.5625."""
    updates = [_consumed([0.0, 4.0]), _consumed([2.0, 4.0])]
    state = (2.625, 1.5625) if swapped else (1.125, 1.5625)
    return _generic_trace({}, [(*state, {"updates": [updates[i] for i in order]})])


def test_a_layer_updated_twice_in_one_run_is_checked_through_both_updates():
    from bnrepro.check.explain import explain_step

    trace = _two_updates()
    report = verify_trace(trace)
    assert report.passed and report.diagnosis == [], report.format()
    compared = {check.name: check.compared for check in report.checks}
    assert compared["moving_mean update"] == 1 and compared["batch_mean from inputs"] == 2
    lines = explain_step(trace, 1, "bn").splitlines()
    assert "the run updated the layer 2 times; each update in the order it ran, from the state " \
        "before the run:" in lines
    assert "    = 0.75 * 0 + (1 - 0.75) * 2 = 0.5    (TensorFlow's not recorded: the next update " \
        "starts from it)" in lines
    assert "    = 0.75 * 0.5 + (1 - 0.75) * 3 = 1.125    TensorFlow: 1.125    difference 0" in lines
    assert "    = 0.75 * 1.75 + (1 - 0.75) * 1 = 1.5625    TensorFlow: 1.5625    difference 0" \
        in lines


def test_updates_in_the_wrong_order_fail():
    report = verify_trace(_two_updates(order=(1, 0)))
    assert not report.passed
    assert "FAIL: moving_mean update: step 1, layer bn, element (0,): expected 1.0625, got 1.125" \
        in report.format()


def test_a_chain_of_updates_is_diagnosed_through_every_update():
    from bnrepro.check.diagnose import conventions_followed

    report = verify_trace(_two_updates(swapped=True))
    assert not report.passed
    assert conventions_followed(report.diagnosis) == {("bn", "moving_mean"): "swapped"}


def test_a_trace_with_several_updates_is_written_and_read_back(tmp_path):
    """Through the writer (the CSV export, and a chunk holding every array) and the reader: 50
    zeros and 50 fours (mean 2, variance 4), then 50 twos and 50 fours (mean 3, variance 1), the
    numbers of :func:`_two_updates`; every line validates against the schema."""
    import json

    import jsonschema

    import bnrepro
    from bnrepro.trace import TraceWriter, read_trace

    trace = _two_updates()
    for update, (low, high) in zip(trace.steps[1]["bn"]["bn"]["updates"], [(0.0, 4.0), (2.0, 4.0)]):
        update["batch_input"] = np.repeat([low, high], 50).reshape(100, 1)
    trace.steps[1]["bn"]["bn"]["updates_ordered"] = True  # as the tracer writes it
    with TraceWriter(str(tmp_path), trace.header, csv=True) as writer:
        for record in trace.steps:
            writer.write_step(record)
        writer.finish()
    read = read_trace(str(tmp_path))
    updates = read.steps[1]["bn"]["bn"]["updates"]
    assert read.steps[1]["bn"]["bn"]["updates_ordered"] is True
    assert [float(u["batch_mean"][0]) for u in updates] == [2.0, 3.0]
    assert updates[1]["batch_input"].shape == (100, 1)
    report = verify_trace(read)
    assert report.passed, report.format()
    loaded = bnrepro.load_trace(str(tmp_path)).layers["bn"]
    assert [float(u["batch_variance"][0]) for u in loaded["updates"][1]] == [4.0, 1.0]
    assert loaded["moving_mean"].tolist() == [[0.0], [1.125]]
    with open(tmp_path / "trace.csv", encoding="utf-8") as handle:
        assert "1,bn,bn,updates.2.batch_variance,0,1.0\n" in handle.read()
    with open(tmp_path / "trace.jsonl", encoding="utf-8") as handle:
        lines = [json.loads(line) for line in handle]
    assert lines[2]["arrays"] == "trace_arrays/000001.npz"
    assert [update["batch_input"] for update in lines[2]["bn"]["bn"]["updates"]] == [
        {"row": 0}, {"row": 1}]  # member bn|bn|updates|batch_input, one row per update
    with np.load(tmp_path / "trace_arrays" / "000001.npz") as stored:
        assert stored["bn|bn|updates|batch_input"].shape == (2, 100, 1)
    with open(os.path.join(os.path.dirname(bnrepro.__file__), "trace", "schema.json"),
              encoding="utf-8") as handle:
        validator = jsonschema.Draft202012Validator(json.load(handle))
    assert all(validator.is_valid(line) for line in lines)


def test_the_tracers_notes_are_shown():
    """A note the tracer left in the header (a run it left untraced, and why) is printed."""
    trace = _two_updates()
    trace.header["tracer_notes"] = ["run 3 was not traced: the tracer failed while planning it"]
    text = verify_trace(trace).format()
    assert "\ntracer note: run 3 was not traced: the tracer failed while planning it\n" in text


@pytest.mark.parametrize("zero_debias", [False, True], ids=["standard", "zero-debiased"])
def test_an_updates_list_of_one_is_the_one_update(zero_debias):
    """``updates`` holding a single update is read as the step's one update. x = 0, 4 (mean 2,
    variance 4), momentum 0.75: standard from (0, 1): 0.5, 1.75; zero-debiased with local_step
    0 -> 1: (0.75 * v * (1 - 0.75^0) + 0.25 * 2) / (1 - 0.75) = 2, and 4 for the variance."""
    state = {"updates": [_consumed([0.0, 4.0])]}
    if zero_debias:
        state["local_step"] = np.array(1.0)
    trace = _generic_trace({"zero_debias": zero_debias},
                           [(2.0, 4.0, state) if zero_debias else (0.5, 1.75, state)])
    if zero_debias:
        trace.steps[0]["bn"]["bn"]["local_step"] = np.array(0.0)
    report = verify_trace(trace)
    assert report.passed and report.diagnosis == [], report.format()
    assert {c.name: c.compared for c in report.checks}["moving_variance update"] == 1


@pytest.mark.parametrize("recorded, followed", [
    ((1.125, 1.5625), ("in the order 1, 2", "in the order 1, 2")),
    ((1.0625, 1.75), ("in the order 2, 1", "in the order 2, 1")),
    ((1.25, 1.5625), ("all reading the state before the run", "in the order 1, 2")),
    ((0.75, 1.0), ("update 2 alone (the others' writes lost)",) * 2),
])
def test_updates_the_run_orders_no_way_pass_in_any_way_they_may_have_combined(recorded,
                                                                              followed):
    """The updates of :func:`_two_updates` (x = 0, 4 then x = 2, 4; momentum 0.75, from (0, 1)),
    with ``updates_ordered`` false. By hand: in order 1, 2 (1.125, 1.5625); 2, 1: moving_mean
    0.25 * 3 = 0.75 then 0.75 * 0.75 + 0.25 * 2 = 1.0625, moving_variance 0.75 + 0.25 * 1 = 1
    then 0.75 + 0.25 * 4 = 1.75; both reading (0, 1): 0 + 0.25 (2 - 0) + 0.25 (3 - 0) = 1.25 and
    1 + 0.25 (4 - 1) + 0.25 (1 - 1) = 1.75; update 2 alone: 0.75 and 1. The mean and the
    variance race each on their own: a run may give one of them in one way, the other in another
    (the first outcome tried that holds is named: the variance's 1.75 is also order 2, 1's)."""
    trace = _generic_trace({}, [(*recorded, {"updates": [_consumed([0.0, 4.0]),
                                                         _consumed([2.0, 4.0])],
                                             "updates_ordered": False})])
    report = verify_trace(trace)
    assert report.passed and report.diagnosis == [], report.format()
    from bnrepro.check.explain import explain_step
    assert "the run updated the layer 2 times in no order it fixes; each update in the order " \
        "listed" in explain_step(trace, 1, "bn")
    assert report.skipped[-1].endswith(f"is named): moving_mean {followed[0]} at steps 1; "
                                       f"moving_variance {followed[1]} at steps 1"), report.skipped


def test_unordered_updates_that_fit_no_way_fail():
    """0.5 * 1.125: no order, nor both reading the old state, nor one alone gives it."""
    trace = _generic_trace({}, [(0.5625, 1.5625, {"updates": [_consumed([0.0, 4.0]),
                                                             _consumed([2.0, 4.0])],
                                                 "updates_ordered": False})])
    report = verify_trace(trace)
    assert not report.passed
    assert "expected 1.125, got 0.5625" in report.format()
    assert report.skipped[-1].endswith("moving_mean none of them at steps 1; moving_variance in "
                                       "the order 1, 2 at steps 1")


def _input_only(recorded, *, fused=True, keep_input=True):
    """One update whose consumed values were not fetched (the tracer leaves a fused kernel's
    alone): the step holds the state after it and, with ``keep_input``, the layer's input x = 0, 4
    (mean 2, /N variance 4, /(N-1) variance 8). By hand, momentum 0.75 from (0, 1): moving_mean
    0.5; moving_variance 0.75 + 0.25 * 8 = 2.75 (unbiased) or 0.75 + 0.25 * 4 = 1.75 (biased)."""
    consumed = {"batch_input": np.array([[0.0], [4.0]])} if keep_input else {}
    return _generic_trace({"fused": fused}, [(*recorded, consumed)])


def test_an_update_without_its_consumed_values_is_checked_from_the_layers_input():
    from bnrepro.check.explain import explain_step

    trace = _input_only((0.5, 2.75))
    report = verify_trace(trace)
    assert report.passed and report.diagnosis == [], report.format()
    compared = {check.name: check.compared for check in report.checks}
    assert compared["moving_mean update"] == compared["moving_variance update"] == 1
    assert report.variance_used == {"bn": formulas.UNBIASED}
    assert ("not checked for bn: batch_mean and batch_variance from the layer's inputs: the values "
            "1 updates consumed were not recorded") in report.format()
    lines = explain_step(trace, 1, "bn").splitlines()
    assert "batch_variance = sum((x - 2)^2) / 1 = 8    (TensorFlow's not recorded)" in lines
    assert "    = 0.75 * 1 + (1 - 0.75) * 8 = 2.75    TensorFlow: 2.75    difference 0" in lines


def test_the_variance_an_update_without_its_consumed_values_averaged_is_named_from_the_numbers():
    """Declared fused, but the moving variance averaged the biased 4 (1.75): named biased, and the
    diagnosis says it is not what the header declares; undeclared, 2.75 is named unbiased."""
    from bnrepro.check.diagnose import conventions_followed

    report = verify_trace(_input_only((0.5, 1.75)))
    assert report.variance_used == {"bn": formulas.BIASED}
    assert conventions_followed(report.diagnosis) == {("bn", "moving_variance"): "standard"}
    assert "not the unbiased (N-1) variance of the fused kernel the header declares" in \
        report.format()
    report = verify_trace(_input_only((0.5, 2.75), fused=False))
    assert report.variance_used == {"bn": formulas.UNBIASED}
    assert conventions_followed(report.diagnosis) == {("bn", "moving_variance"): "unbiased"}


def test_an_update_from_the_input_that_fits_no_variance_fails():
    report = verify_trace(_input_only((0.5, 3.0)))
    assert not report.passed
    assert "FAIL: moving_variance update: step 1, layer bn, element (0,): expected 2.75, got 3.0" \
        in report.format()


def test_statistics_that_moved_with_nothing_to_check_them_do_not_pass():
    """Neither the consumed values nor the input: the statistics moved and nothing could check
    how; "every value finite" and "they moved" are not a pass."""
    report = verify_trace(_input_only((0.5, 2.75), keep_input=False))
    assert not report.passed
    assert report.verdict() == ("FAIL: nothing to compare: no moving-average update, batch "
                                "statistic or inference output of the trace could be checked")
    assert ("not checked for bn: the moving-average updates of 1 steps: the statistics moved, but "
            "neither the values the update consumed nor the layer's input were recorded") in \
        report.format()


def test_a_run_that_trains_another_network_only_is_no_missing_update(tmp_path):
    """A GAN: the discriminator's step updates its layer twice (:func:`_two_updates`: 1.125,
    1.5625) and trains it; the generator's step runs the layer without training it (``"trained":
    false``) and leaves its statistics: no "did not move" failure, no "no update" diagnosis. The
    same step with the layer trained (``true``) is the failure it was. Written and read back, the
    flags stay true/false."""
    from bnrepro.trace import TraceWriter, read_trace

    trace = _two_updates()
    trace.steps[1]["bn"]["bn"]["trained"] = True
    generator_step = copy.deepcopy(trace.steps[1])
    generator_step["step"] = 2
    for name in ("updates", "trained"):
        generator_step["bn"]["bn"].pop(name)
    generator_step["bn"]["bn"]["trained"] = False
    trace.steps.append(generator_step)
    trace.end = end_record("complete", 2, 3)["end"]
    with TraceWriter(str(tmp_path), trace.header) as writer:
        for record in trace.steps:
            writer.write_step(record)
        writer.finish()
    read = read_trace(str(tmp_path))
    assert read.steps[2]["bn"]["bn"]["trained"] is False
    report = verify_trace(read)
    assert report.passed and report.diagnosis == [], report.format()
    read.steps[2]["bn"]["bn"]["trained"] = True
    report = verify_trace(read)
    assert not report.passed
    assert "FAIL: statistics move when training: step 2, layer bn: the run trained" in \
        report.format()


def test_statistics_set_without_their_update_start_the_next_step_afresh():
    """x = [1, 3]: mean 2, variance (/N) 1. From (0, 1) with momentum 0.75 an update gives
    (0.25 * 2, 0.75 + 0.25 * 1) = (0.5, 1.0). Step 2 sets the statistics back to (0, 1) without
    their update (a new session's initializer: ``set``); step 3's update starts from there and
    gives (0.5, 1.0) again, which only that old state explains (from (0.5, 1.0) it would be
    0.875)."""
    update = _consumed([1.0, 3.0])
    trace = _generic_trace({}, [(0.5, 1.0, update), (0.0, 1.0, {"set": True}), (0.5, 1.0, update)])
    report = verify_trace(trace)
    assert report.passed and report.diagnosis == [], report.format()
    assert any("the change at steps 2: the run set the statistics" in line
               for line in report.skipped), report.skipped
    wrong = _generic_trace({}, [(0.5, 1.0, update), (0.0, 1.0, {"set": True}),
                                (0.875, 1.0, update)])
    assert not verify_trace(wrong).passed


def _coverage_lines(report, layer):
    (coverage,) = [entry for entry in report.coverage if entry.layer == layer]
    return coverage.lines()


def test_the_coverage_of_a_post_trace_is_every_quantity_at_every_step(cubic_trace):
    """``bnrepro run`` records the batch, the input, an inference pair and every variable at each
    of the post's 10 steps: every quantity is checked at all of them, gamma and beta both in the
    inference formula and against the variables read after the step."""
    report = verify_trace(cubic_trace)
    assert _coverage_lines(report, LAYER) == [
        f"coverage of {LAYER} (10 steps):",
        "  moving_mean, moving_variance updates: 10 of 10 steps",
        "  batch_mean, batch_variance from inputs: 10 of 10 steps",
        "  inference formula: 10 of 10 steps",
        "  gamma, beta: 10 of 10 steps (in the inference formula at 10; against the variables read "
        "after the step at 10)"]
    assert "\n".join(_coverage_lines(report, LAYER)) in report.format()


def _five_steps(inputs_at, inference_at):
    """Five updates of x_k = (0, 2k) (mean k, biased variance k^2) with momentum 0.75 from (0, 1),
    the input kept at ``inputs_at``; an inference pair (input 0) at ``inference_at``, output
    ``-m / sqrt(v + 0.001)`` with the state before the step. Worked with the formulas in float64."""
    updates, extra, mean, variance = [], {}, 0.0, 1.0
    for step in range(1, 6):
        if step in inference_at:
            extra[step] = {"inference": {"bn": {"input": np.array([[0.0]]), "output": np.array(
                [[-mean / np.sqrt(variance + 0.001)]])}}}
        consumed = _consumed([0.0, 2.0 * step])
        if step not in inputs_at:
            del consumed["batch_input"]
        mean, variance = 0.75 * mean + 0.25 * step, 0.75 * variance + 0.25 * step ** 2
        updates.append((mean, variance, consumed))
    return _generic_trace({}, updates, extra=extra)


def test_the_coverage_says_at_how_many_steps_each_quantity_was_checked_and_why_not_the_others():
    report = verify_trace(_five_steps(inputs_at={1, 2}, inference_at={3}))
    assert report.passed, report.format()
    assert _coverage_lines(report, "bn") == [
        "coverage of bn (5 steps):",
        "  moving_mean, moving_variance updates: 5 of 5 steps",
        "  batch_mean, batch_variance from inputs: 2 of 5 steps (3: the layer's input was not kept)",
        "  inference formula: 1 of 5 steps (4: no inference record)",
        "  gamma, beta: 1 of 5 steps (in the inference formula at 1; 4: no inference record, and "
        "no variables read after the step)"]


def test_a_gamma_no_check_reads_passes_and_the_coverage_says_it_was_not_checked_there():
    """gamma changed at step 4 enters no formula (step 5 has no inference pair): verify cannot see
    it, and its coverage line says that gamma was checked at 1 of 5 steps, not at step 4."""
    trace = _five_steps(inputs_at={1, 2, 3, 4, 5}, inference_at={3})
    trace.step(4)["bn"]["bn"]["gamma"] = np.array([1.5])
    report = verify_trace(trace)
    assert report.passed
    assert _coverage_lines(report, "bn")[-1].startswith("  gamma, beta: 1 of 5 steps")


def test_gamma_and_beta_read_twice_are_checked_at_every_step_that_has_the_variables():
    """With the variables read after each step (``bnrepro run``, ``compare``) and their names in
    the header, gamma and beta are checked at every step: one changed at step 4 fails there."""
    variables = {step: {"variables": {"bn/gamma:0": np.array([1.0]), "bn/beta:0": np.array([0.0])}}
                 for step in range(6)}
    trace = _five_steps(inputs_at={1, 2, 3, 4, 5}, inference_at={3})
    trace.header["layers"]["bn"]["variables"] = {"gamma": "bn/gamma:0", "beta": "bn/beta:0"}
    for record in trace.steps:
        record.update(variables[record["step"]])
    report = verify_trace(trace)
    assert report.passed, report.format()
    assert _coverage_lines(report, "bn")[-1] == (
        "  gamma, beta: 5 of 5 steps (in the inference formula at 1; against the variables read "
        "after the step at 5)")
    trace.step(4)["bn"]["bn"]["gamma"] = np.array([1.5])
    failed = {c.name: c.first_failure for c in verify_trace(trace).checks if not c.passed}
    assert failed["gamma, beta as read twice"].startswith("step 4, layer bn, gamma")


def _averages_trace(ema_values, decayed_values):
    """Two averages of their own over two steps (``bnrepro-trace/2``), worked by hand:

    * ``ema``, zero-debiased with momentum 0.5, consuming 2 then 4: ``biased_t = 0.5 biased_(t-1)
      + 0.5 c_t`` from 0 (1, then 2.5) and ``value_t = biased_t / (1 - 0.5^t)``: 2, then 2.5 / 0.75
      = 10/3, its ``local_step`` 1, 2;
    * ``decayed``, its momentum computed at run time and recorded per step (0.9, then 0.8),
      consuming 10 then 5: 0.1 * 10 = 1, then 0.8 * 1 + 0.2 * 5 = 1.8.
    """
    header = {"format": "bnrepro-trace/2", "layers": {}, "averages": {
        "ema": {"momentum": 0.5, "zero_debias": True},
        "decayed": {"momentum": None, "zero_debias": False}}}
    steps = [{"step": 0, "bn": {}, "averages": {
        "ema": {"value": np.array([0.0]), "local_step": np.array(0.0)},
        "decayed": {"value": np.array([0.0])}}}]
    for step, (consumed, ema, momentum, decayed_consumed, decayed) in enumerate(
            [(2.0, ema_values[0], 0.9, 10.0, decayed_values[0]),
             (4.0, ema_values[1], 0.8, 5.0, decayed_values[1])], start=1):
        steps.append({"step": step, "run": {"call": "Session.run", "index": step, "trained": False,
                                            "moved": True, "fetched": []}, "bn": {}, "averages": {
            "ema": {"value": np.array([ema]), "consumed": np.array([consumed]),
                    "local_step": np.array(float(step))},
            "decayed": {"value": np.array([decayed]), "consumed": np.array([decayed_consumed]),
                        "momentum": momentum}}})
    return _hand_made("averages", header, steps)


def test_averages_of_their_own_zero_debiased_or_with_a_momentum_per_step_are_checked():
    report = verify_trace(_averages_trace((2.0, 10.0 / 3.0), (1.0, 1.8)))
    assert report.passed, report.format()
    check = next(c for c in report.checks if c.name == "moving average update")
    assert check.compared == 4


@pytest.mark.parametrize("ema, decayed, where", [
    ((2.0, 10.0 / 3.0 * (1 + 1e-5)), (1.0, 1.8), "step 2, average ema"),
    ((2.0 * (1 + 1e-5), 10.0 / 3.0), (1.0, 1.8), "step 1, average ema"),
    ((2.0, 10.0 / 3.0), (1.0, 1.8 * (1 + 1e-5)), "step 2, average decayed"),
    ((2.0, 2.5), (1.0, 1.8), "step 2, average ema"),  # not debiased: the biased average
    ((2.0, 10.0 / 3.0), (1.0, 0.9 * 1.0 + 0.1 * 5.0), "step 2, average decayed"),  # first momentum
])
def test_an_average_of_its_own_off_its_formula_fails_where_it_is(ema, decayed, where):
    failed = {c.name: c.first_failure for c in verify_trace(_averages_trace(ema, decayed)).checks
              if not c.passed}
    assert failed["moving average update"].startswith(where), failed
