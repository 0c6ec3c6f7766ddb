"""Branches of verify's diagnosis and variance naming that the real traces do not reach, on
hand-made traces of one layer ``bn`` worked out by hand: Keras 2.2's moving variance, a
zero-debiased average without its ``local_step``, variances the numbers cannot tell apart, and the
end line's step count. (Written against mutants of ``scripts/mutation_test.py`` that every other
test let pass.)"""
import types

import numpy as np
import pytest

from bnrepro.check import formulas
from bnrepro.check.diagnose import conventions_followed, diagnose_trace
from bnrepro.check.verify import AMBIGUOUS, describe_ending, verify_trace
from bnrepro.trace import Trace, end_record


def _trace(updates, *, momentum=0.75, epsilon=1e-3, zero_debias=False, initial=(0.0, 1.0),
           local_steps=None):
    """``bnrepro-trace/2``, layer ``bn`` from moving (``initial``), one training step per
    ``(moving_mean, moving_variance, consumed)`` of ``updates``; ``local_steps``: the
    zero-debiased average's ``local_step`` at each step from step 0, or none recorded."""
    state = {"moving_mean": np.array([initial[0]]), "moving_variance": np.array([initial[1]]),
             "gamma": np.array([1.0]), "beta": np.array([0.0])}
    steps = [{"step": 0, "bn": {"bn": dict(state)}, "averages": {}}]
    for step, (mean, variance, consumed) in enumerate(updates, start=1):
        steps.append({"step": step, "run": {"call": "Session.run", "index": step, "trained": True,
                                            "moved": True, "fetched": []}, "averages": {},
                      "bn": {"bn": dict(state, moving_mean=np.array([mean]),
                                        moving_variance=np.array([variance]), **consumed)}})
    if local_steps is not None:
        for record, local_step in zip(steps, local_steps):
            record["bn"]["bn"]["local_step"] = np.array(float(local_step))
    header = {"format": "bnrepro-trace/2", "averages": {}, "layers": {"bn": {
        "momentum": momentum, "epsilon": epsilon, "fused": False, "zero_debias": zero_debias}}}
    return Trace(path="hand-made", header=header, steps=steps,
                 end=end_record("complete", steps[-1]["step"], len(steps))["end"])


def _consumed(x, variance=None):
    """An update of ``x`` (one channel): its mean and biased variance as computed by hand by the
    callers (``variance``), or only the input when ``variance`` is None."""
    x = np.array(x, dtype=np.float64).reshape(-1, 1)
    if variance is None:
        return {"batch_input": x}
    return {"batch_mean": x.mean(axis=0), "batch_variance": np.array([variance]), "batch_input": x}


def test_keras_2_2s_moving_variance_is_named():
    """x = 0, 4 (mean 2, biased variance 4, N = 2), epsilon 1e-3, momentum 0.75 from (0, 1):
    Keras 2.2 averages 4 * N / (N - 1 - epsilon) = 8 / 0.999 = 8.008008..., so moving_variance =
    0.75 + 0.25 * 8.008008 = 2.752002002; the unbiased variance (8) gives 2.75, and 8 / 1.001 =
    7.992 gives 2.748: neither fits."""
    trace = _trace([(0.5, 0.75 + 2.0 / 0.999, _consumed([0.0, 4.0], 4.0))])
    report = verify_trace(trace)
    assert not report.passed
    assert conventions_followed(report.diagnosis) == {("bn", "moving_variance"): "keras 2.2"}
    assert ("moving_variance follows Keras 2.2's batch variance times N / (N - 1 - epsilon)"
            in report.format())
    # without epsilon Keras 2.2's variance is not tried: nothing is named
    unknown = _trace([(0.5, 0.75 + 2.0 / 0.999, _consumed([0.0, 4.0], 4.0))], epsilon=None)
    assert conventions_followed(diagnose_trace(unknown)) == {("bn", "moving_variance"): None}


# x = 0, 4 (mean 2, variance 4), then x = 0, 8 (mean 4, variance 16); momentum 0.5. Zero-debiased:
# the biased averages from 0: mean 0.5 * 2 = 1, then 0.5 * 1 + 0.5 * 4 = 2.5; variance 2, then
# 0.5 * 2 + 0.5 * 16 = 9; divided by 1 - 0.5^t: (2, 2.5 / 0.75 = 10/3) and (4, 9 / 0.75 = 12).
# The standard average from (0, 1) gives (1, 2.5) and (2.5, 9.25); t counted from 1 instead of 0
# (biased_old = old * (1 - 0.5)) gives 1 / 0.75 = 4/3 at step 1.
DEBIASED = [(2.0, 4.0, _consumed([0.0, 4.0], 4.0)),
            (10.0 / 3.0, 12.0, _consumed([0.0, 8.0], 16.0))]


@pytest.mark.parametrize("local_steps", [None, (0, 1, 2)], ids=["no-local_step", "local_step"])
def test_a_zero_debiased_average_is_named_with_or_without_its_local_step(local_steps):
    """The diagnosis counts the updates when ``local_step`` is not recorded: 1 at step 1, 2 at step
    2, as the recorded one does."""
    trace = _trace(DEBIASED, momentum=0.5, local_steps=local_steps)
    assert conventions_followed(diagnose_trace(trace)) == {
        ("bn", "moving_mean"): "zero-debiased", ("bn", "moving_variance"): "zero-debiased"}
    standard = _trace([(1.0, 2.5, DEBIASED[0][2]), (2.5, 9.25, DEBIASED[1][2])], momentum=0.5,
                      local_steps=local_steps)
    assert conventions_followed(diagnose_trace(standard)) == {}


def test_a_declared_zero_debiased_average_passes_with_its_local_step():
    trace = _trace(DEBIASED, momentum=0.5, zero_debias=True, local_steps=(0, 1, 2))
    report = verify_trace(trace)
    assert report.passed and report.diagnosis == [], report.format()
    compared = {check.name: check.compared for check in report.checks}
    assert compared["moving_mean update"] == compared["moving_variance update"] == 2
    # local_step 4 -> 5 and 5 -> 6 (an average restored at step 4) changes the values: 1 - 0.5^4
    # = 0.9375 recovers biased_old = 0; biased 1 / (1 - 0.5^5) = 1.0323 at step 1: fails
    restored = _trace(DEBIASED, momentum=0.5, zero_debias=True, local_steps=(4, 5, 6))
    assert not verify_trace(restored).passed


@pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "from-input"])
def test_a_constant_batch_fits_both_variances_and_is_named_ambiguous(recorded):
    """x = 3, 3: mean 3, variance 0 biased and unbiased alike; momentum 0.75 from (0, 1): 0.75,
    0.75. The variance is named as neither: both hold."""
    trace = _trace([(0.75, 0.75, _consumed([3.0, 3.0], 0.0 if recorded else None))])
    report = verify_trace(trace)
    assert report.passed, report.format()
    assert report.variance_used == {"bn": AMBIGUOUS}
    assert ("batch_variance of bn: biased or unbiased: both within their bounds, the numbers do not "
            "tell them apart") in report.format()


@pytest.mark.parametrize("variance, used", [(4.0, formulas.BIASED), (8.0, formulas.UNBIASED)])
def test_a_batch_variance_the_numbers_tell_apart_is_named(variance, used):
    """x = 0, 4: 4 biased, 8 unbiased; momentum 0.75 from (0, 1)."""
    trace = _trace([(0.5, 0.75 + 0.25 * variance, _consumed([0.0, 4.0], variance))])
    report = verify_trace(trace)
    assert report.variance_used == {"bn": used}
    assert f"batch_variance of bn: {formulas.VARIANCE_LABELS[used]}" in report.format()


def _ending(last_steps, records, last_step, status="complete"):
    return describe_ending(types.SimpleNamespace(
        steps=[{"step": step} for step in last_steps],
        end={"records": records, "last_step": last_step, "status": status}))


def test_the_end_lines_last_step_must_be_the_last_recorded_one():
    assert _ending([0, 1, 2], 3, 2) is None
    for last_step in (1, 3):
        assert _ending([0, 1, 2], 3, last_step) == (
            f"the run ended at step {last_step}, the last recorded step is 2: lines are missing")
    assert _ending([0, 1, 2], 2, 2) == ("the end line counts 2 step records, the trace holds 3: "
                                        "lines are missing")
    assert _ending([0, 1], 2, 1, "diverged") == "the run diverged at step 1"
    assert _ending([0, 1], 2, 1, "interrupted") == "the run interrupted at step 1"
    assert describe_ending(types.SimpleNamespace(steps=[{"step": 0}, {"step": 4}], end=None)) \
        .startswith("the trace has no end line after step 4: ")


@pytest.mark.parametrize("local_steps", [None, "old only"], ids=["none", "before-only"])
def test_a_declared_zero_debiased_average_without_its_local_step_fails_and_says_why(local_steps):
    trace = _trace(DEBIASED, momentum=0.5, zero_debias=True,
                   local_steps=None if local_steps is None else (0, 1, 2))
    if local_steps == "old only":
        del trace.steps[2]["bn"]["bn"]["local_step"]  # recorded before step 2, not after it
    failed = {c.name: c.first_failure for c in verify_trace(trace).checks if not c.passed}
    step = 1 if local_steps is None else 2
    assert failed["moving_mean update"] == (
        f"step {step}, layer bn: a zero-debiased average without its local_step")
