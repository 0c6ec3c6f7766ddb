"""Every check of ``bnrepro verify`` is tight: on real traces the true values pass, and one value
moved by a few times its float32 rounding bound fails, with the check that holds it named.

Each case moves one element of one recorded value by ``delta``, a size written here from the
rounding count of the computation TensorFlow performed (``u = 2^-24``, float32's unit roundoff), not
taken from :mod:`bnrepro.check.tolerances`: were a bound loosened tenfold, the moved value would
pass and the test fail. Each case also reads the bound verify applied from its failure message and
requires ``delta <= 10 * bound``: the check catches errors within ten times its bound.

The traces: ``tests/verify_programs/tight_statistics.py`` in both graph modes (128-example batches
whose mean is large against their spread: a ``tf.layers`` layer, a zero-debiased
``assign_moving_average`` layer, a fused layer checked from its input, an
``ExponentialMovingAverage``), post 000's cubic net on 128-example batches (the inference formula,
gamma and beta as read twice), and the ghost-batch and renorm scenarios.
"""
import copy
import dataclasses
import re

import numpy as np
import pytest

from bnrepro.check.verify import verify_trace
from bnrepro.trace import read_trace
from conftest import GRAPH_MODES

U = 2.0 ** -24


def _moved(trace, step, path, delta):
    """``(copy of trace, size)``: element 0 of the value at ``path`` of ``step`` moved by ``size =
    delta(record, value)`` (the record and the value as float64, before the move)."""
    copied = dataclasses.replace(trace, steps=copy.deepcopy(trace.steps))
    record = copied.step(step)
    container = record
    for key in path[:-1]:
        container = container[key]
    value = np.array(container[path[-1]], dtype=np.float64)
    size = float(delta(record, value.copy()))
    value.flat[0] += size
    container[path[-1]] = value
    return copied, size


def _assert_tight(trace, step, path, check, delta):
    """``trace`` passes; moved at ``path`` by ``delta`` it fails ``check`` at ``step``, whose bound
    there is at least a tenth of ``delta``."""
    report = verify_trace(trace)
    assert report.passed, report.format()
    moved, size = _moved(trace, step, path, delta)
    failed = {c.name: c.first_failure for c in verify_trace(moved).checks if not c.passed}
    assert check in failed, (check, size, failed)
    assert f"step {step}" in failed[check]
    bound = float(re.search(r"\(bound ([0-9.e+-]+)\)", failed[check]).group(1))
    assert size <= 10 * bound, (size, bound, failed[check])


def _first(value):
    return abs(float(np.ravel(value)[0]))


def _mean_magnitude(record, layer):
    """``mean |x|`` of channel 0 of the layer's recorded input."""
    x = np.asarray(record["bn"][layer]["batch_input"], dtype=np.float64)
    return float(np.mean(np.abs(x.reshape(-1, x.shape[-1])[:, 0])))


@pytest.fixture(scope="module")
def tight(verify_program_traces):
    return {mode: read_trace(verify_program_traces[mode, "tight_statistics"])
            for mode in GRAPH_MODES}


# An update of the moving statistics, in either form TensorFlow writes it (tf.layers'
# ``old - (old - s) * (1 - m)``, the fused kernel's ``(1 - m) old + m s``), rounds about 4 times on
# operands of the value's size: 40u |value| is ten such roundings.
MOVING = lambda record, value: 40 * U * _first(value)  # noqa: E731


@pytest.mark.parametrize("mode", GRAPH_MODES)
@pytest.mark.parametrize("layer, statistic", [
    ("layers_bn", "moving_mean"), ("layers_bn", "moving_variance"),
])
def test_a_moving_statistic_off_by_ten_roundings_fails(tight, mode, layer, statistic):
    _assert_tight(tight[mode], 3, ("bn", layer, statistic), f"{statistic} update", MOVING)


@pytest.mark.parametrize("mode", GRAPH_MODES)
@pytest.mark.parametrize("statistic", ["moving_mean", "moving_variance"])
def test_a_fused_moving_statistic_off_by_ten_times_its_batch_statistics_roundings_fails(
        tight, mode, statistic):
    """The fused layer's update consumed the batch's mean and unbiased variance, not recorded:
    verify takes them from the input, with the bounds of their computation (``N + 1`` roundings of
    ``mean |x|``, ``N + 5`` of the variance, ``N = 128``), weighted by ``1 - m = 0.1`` in the
    update; ten times that and the update's own 4 roundings fails (at most ten times the bound)."""
    def delta(record, value):
        x = np.asarray(record["bn"]["fused_bn"]["batch_input"], dtype=np.float64)
        channel = x.reshape(-1, x.shape[-1])[:, 0]
        consumed = ((128 + 1) * np.mean(np.abs(channel)) if statistic == "moving_mean"
                    else (128 + 5) * np.var(channel, ddof=1))
        return 10 * U * (0.1 * consumed + 4 * _first(value))
    _assert_tight(tight[mode], 3, ("bn", "fused_bn", statistic), f"{statistic} update", delta)


@pytest.mark.parametrize("mode", GRAPH_MODES)
def test_a_batch_mean_off_by_five_times_its_sums_rounding_fails(tight, mode):
    """``reduce_mean`` over 128 values: the sum's 127 roundings and the division's 2, relative to
    ``mean |x|``; five times that is 0.004% of a mean of 30."""
    _assert_tight(tight[mode], 2, ("bn", "layers_bn", "batch_mean"), "batch_mean from inputs",
                  lambda record, value: 5 * 129 * U * _mean_magnitude(record, "layers_bn"))


@pytest.mark.parametrize("mode", GRAPH_MODES)
@pytest.mark.parametrize("layer", ["layers_bn", "debiased"])
def test_a_batch_variance_off_by_5e_5_relative_fails_on_128_examples(tight, mode, layer):
    """The issue's figure: 5e-5 relative in one batch variance of a 128-example batch whose mean
    (30) is 30 times its spread fails (the two-pass variance rounds about N + 3 times relative to
    itself, 7.8e-6; the one-pass bound it replaced allowed 1e-2 here)."""
    _assert_tight(tight[mode], 4, ("bn", layer, "batch_variance"), "batch_variance from inputs",
                  lambda record, value: 5e-5 * _first(value))


@pytest.mark.parametrize("mode", GRAPH_MODES)
@pytest.mark.parametrize("statistic", ["moving_mean", "moving_variance"])
def test_a_zero_debiased_statistic_off_by_five_times_its_roundings_fails(tight, mode, statistic):
    """``V_t = biased_t / (1 - m^t)``: the biased average's 4 roundings and its recovery's 3 are
    divided by ``1 - m^t`` (0.271 at t = 3), ``m^t`` rounds ``t + 2`` times: about
    ``(7 / 0.271 + 6) u |V|``; five times that fails."""
    _assert_tight(tight[mode], 3, ("bn", "debiased", statistic), f"{statistic} update",
                  lambda record, value: 5 * (7 / 0.271 + 6) * U * _first(value))


@pytest.mark.parametrize("mode", GRAPH_MODES)
def test_an_average_of_its_own_off_by_ten_roundings_fails(tight, mode):
    (name,) = tight[mode].averages
    _assert_tight(tight[mode], 3, ("averages", name, "value"), "moving average update", MOVING)


# --- post 000's net on 128-example batches: the inference formula, gamma and beta -----------------

@pytest.fixture(scope="module")
def cubic(scenario_trace):
    return scenario_trace("cubic", batch_size=128, epochs=4)


def test_an_inference_output_off_by_five_times_its_roundings_fails(cubic):
    """``gamma * (x - m) / sqrt(v + eps) + beta`` rounds about 10 times relative to its terms
    ``|gamma| (|x| + |m|) / sqrt(v + eps) + |beta| + |output|``; five times that fails."""
    def delta(record, value):
        old = cubic.step(record["step"] - 1)["bn"]["batch_normalization"]
        x = _first(record["inference"]["batch_normalization"]["input"])
        terms = (_first(old["gamma"]) * (x + _first(old["moving_mean"]))
                 / np.sqrt(_first(old["moving_variance"]) + 1e-3) + _first(old["beta"]))
        return 5 * 10 * U * (terms + _first(value))
    _assert_tight(cubic, 3, ("inference", "batch_normalization", "output"), "inference formula",
                  delta)


@pytest.mark.parametrize("role", ["gamma", "beta"])
def test_gamma_and_beta_are_the_variables_read_after_the_step_bit_for_bit(cubic, role):
    """Two reads of one variable after one run are equal: one float32 unit in the last place off
    fails at a step without an inference record of its own (gamma and beta at every step)."""
    report = verify_trace(cubic)
    assert report.passed
    moved, _ = _moved(cubic, 2, ("bn", "batch_normalization", role),
                      lambda record, value: float(np.spacing(np.float32(_first(value)))))
    failed = {c.name: c.first_failure for c in verify_trace(moved).checks if not c.passed}
    assert "step 2" in failed["gamma, beta as read twice"]


def test_a_ghost_batch_variance_off_by_five_times_its_roundings_fails(scenario_trace):
    """Ghost batches of 2 samples, 4 of them: each variance rounds about ``2 + 3`` times, their
    average ``4 + 1``: ``10 u`` of the variance; five times that fails."""
    trace = scenario_trace("ghost-batch")
    (layer,) = trace.layers
    _assert_tight(trace, 2, ("bn", layer, "batch_variance"), "batch_variance from inputs",
                  lambda record, value: 5 * 10 * U * _first(value))


def test_a_ghost_batch_mean_off_by_five_times_its_roundings_fails(scenario_trace):
    """Each ghost batch's mean of 2 samples rounds ``2 + 1`` times, their average of 4 ``4 + 1``:
    ``8 u`` of ``mean |x|``; five times that fails."""
    trace = scenario_trace("ghost-batch")
    (layer,) = trace.layers
    _assert_tight(trace, 2, ("bn", layer, "batch_mean"), "batch_mean from inputs",
                  lambda record, value: 5 * 8 * U * _mean_magnitude(record, layer))


@pytest.mark.parametrize("path, check, roundings", [
    (("bn", "{layer}", "moving_variance"), "moving_variance update", 20),
    (("variables", "{layer}/moving_stddev:0"), "moving_stddev update", 10),
    (("variables", "{layer}/renorm_mean:0"), "renorm_mean, renorm_stddev", 10),
    (("variables", "{layer}/renorm_stddev:0"), "renorm_mean, renorm_stddev", 10),
    (("metrics", "{layer} renorm_r"), "renorm r, d (clipped)", 10),
    (("metrics", "{layer} renorm_d"), "renorm r, d (clipped)", 10),
])
def test_each_renorm_value_off_by_five_times_its_roundings_fails(scenario_trace, path, check,
                                                               roundings):
    """Renorm's chain: ``s = sqrt(var + eps)``, the moving standard deviation averaged (about 4
    roundings and, through ``s``, the variance's), ``moving_variance = stddev^2 - eps`` (twice the
    standard deviation's relative error, against a variance that may be much smaller than
    ``stddev^2``: 20u of it); ``r = s / t`` a quotient of rounded values. Five times ``roundings *
    u`` of the value's size fails."""
    trace = scenario_trace("renorm")
    (layer,) = trace.layers
    path = tuple(part.format(layer=layer) for part in path)
    _assert_tight(trace, 3, path, check, lambda record, value: 5 * roundings * U * max(
        _first(value), 1.0 if check == "moving_variance update" else 0.0))
