"""verify's verdict on the traces of real TF1 programs (issue 18, verify's side): an unknown epsilon,
different decays for the mean and the variance, subnormals TensorFlow flushes to zero, the fused
kernel's unbiased variance (with and without the layer's input), momentum 0 with zero initialisers,
a program in which nothing is found, and a layer updated twice in one run (in an order the program
fixes, and in none).

Each program in ``tests/verify_programs/`` runs traced in both modes (``disable_v2_behavior()`` and
``disable_eager_execution()``), all of one mode in one interpreter (``trace_all.py``, the fixture
``verify_program_traces`` of ``conftest.py``). Each feeds its
layer batches drawn from ``numpy.random.RandomState(0)``, so the moving statistics it should end
with are recomputed here with NumPy from the same draws (``np.mean``, ``np.var``), with the bounds
of :mod:`bnrepro.check.tolerances`, independently of verify; then verify's verdict, diagnosis and
what it says it did not check are held to what each program does.
"""
import copy
import dataclasses

import numpy as np
import pytest

from bnrepro.check import tolerances
from bnrepro.check.verify import verify_trace
from bnrepro.cli import main
from bnrepro.trace import read_trace
from conftest import GRAPH_MODES

MODES = GRAPH_MODES


@pytest.fixture(scope="module")
def traces(verify_program_traces):
    return verify_program_traces


def _draws(count, draw):
    rng = np.random.RandomState(0)
    return [draw(rng) for _ in range(count)]


def _averaged(batches, momentum, initial, statistic):
    """``value_t = momentum * value_(t-1) + (1 - momentum) * statistic(batch_t)`` from ``initial``,
    after each batch, with its float32 bound carried (old errors weighted by momentum)."""
    value, error, values, bounds = np.asarray(initial, dtype=np.float64), 0.0, [], []
    for batch in batches:
        consumed, consumed_error = statistic(batch)
        new = momentum * value + (1.0 - momentum) * consumed
        error = tolerances.moving_average_bound(value, consumed, momentum, new,
                                                statistic_error=consumed_error, old_error=error)
        value = new
        values.append(value)
        bounds.append(error)
    return values, bounds


def _mean(batch):
    x = np.asarray(batch, dtype=np.float64)
    axes = tuple(range(x.ndim - 1))
    return x.mean(axis=axes), tolerances.mean_bound(x, axes)


def _variance(ddof):
    def variance(batch):
        x = np.asarray(batch, dtype=np.float64)
        axes = tuple(range(x.ndim - 1))
        return x.var(axis=axes, ddof=ddof), tolerances.variance_bound(x, axes, ddof)
    return variance


def _assert_recorded(trace, layer, quantity, expected):
    values, bounds = expected
    got = [record["bn"][layer][quantity] for record in trace.steps[1:]]
    assert len(got) == len(values)
    for step, (value, want, bound) in enumerate(zip(got, values, bounds), start=1):
        assert np.all(np.abs(value - want) <= bound), (quantity, step, value, want, bound)


def _assert_moving_statistics(trace, layer, batches, momenta, initial, ddof=0):
    """The recorded moving mean and variance after each step against :func:`_averaged` of the
    batches' means and variances (``/ (N - ddof)``), with ``momenta`` = (the mean's, the
    variance's) and ``initial`` = (the mean's, the variance's) start."""
    _assert_recorded(trace, layer, "moving_mean",
                     _averaged(batches, momenta[0], initial[0], _mean))
    _assert_recorded(trace, layer, "moving_variance",
                     _averaged(batches, momenta[1], initial[1], _variance(ddof)))


def _only_layer(trace):
    (layer, entry), = trace.layers.items()
    return layer, entry


def _verify_passes(path, capsys):
    """verify's report, after ``bnrepro verify PATH`` exited 0 and printed a PASS."""
    assert main(["verify", path]) == 0
    assert capsys.readouterr().out.rstrip().splitlines()[-1].startswith("PASS: ")
    return verify_trace(read_trace(path))


@pytest.mark.parametrize("mode", MODES)
def test_an_unknown_epsilon_is_said_and_the_rest_checked(traces, capsys, mode):
    """The epsilon is a placeholder_with_default: not a constant of the graph. verify crashed on
    it (TypeError in diagnose.py); now the updates and the batch statistics are checked and the
    report says what needed epsilon."""
    trace = read_trace(traces[mode, "epsilon_unknown"])
    layer, entry = _only_layer(trace)
    assert entry["epsilon"] is None and entry["momentum"] == 0.9
    batches = _draws(4, lambda rng: rng.randn(8, 3).astype(np.float32) * 2 + 1)
    _assert_moving_statistics(trace, layer, batches, (0.9, 0.9), (np.zeros(3), np.ones(3)))
    report = _verify_passes(traces[mode, "epsilon_unknown"], capsys)
    compared = {check.name: check.compared for check in report.checks}
    assert compared["moving_variance update"] == 12 and compared["batch_variance from inputs"] == 12
    assert report.diagnosis == []
    assert report.skipped == [
        f"not checked for {layer}: which epsilon the inference output follows (the diagnosis' "
        "epsilons): its epsilon is unknown: null in the header, not found in the graph (bnrepro "
        "trace reads it from the fused kernel's attribute or the constant "
        "tf.nn.batch_normalization adds)"]


@pytest.mark.parametrize("mode", MODES)
def test_the_variance_keeps_its_own_decay(traces, capsys, mode):
    """0.9 for the mean, 0.99 for the variance: the header records both, and verify applies
    each (it applied 0.9 to the variance: a false FAIL)."""
    trace = read_trace(traces[mode, "two_decays"])
    layer, entry = _only_layer(trace)
    assert (entry["momentum"], entry["momentum_variance"]) == (0.9, 0.99)
    batches = _draws(4, lambda rng: rng.randn(8, 3).astype(np.float32) * 2 + 1)
    _assert_moving_statistics(trace, layer, batches, (0.9, 0.99), (np.zeros(3), np.ones(3)))
    report = _verify_passes(traces[mode, "two_decays"], capsys)
    assert report.diagnosis == [] and report.skipped == []


@pytest.mark.parametrize("mode", MODES)
def test_subnormals_flushed_to_zero_pass(traces, capsys, mode):
    """Inputs of 1e-38 to 4e-38: 0.1 * their mean is below float32's smallest normal, and
    TensorFlow keeps the moving mean at exactly 0 where NumPy has about 2.5e-39 (a false FAIL
    before the bounds allowed for it)."""
    trace = read_trace(traces[mode, "subnormal_inputs"])
    layer, _ = _only_layer(trace)
    batches = _draws(4, lambda rng: (rng.uniform(1, 4, (6, 2)) * 1e-38).astype(np.float32))
    numpy_means, _ = _averaged(batches, 0.9, np.zeros(2), _mean)
    recorded = [record["bn"][layer]["moving_mean"] for record in trace.steps[1:]]
    assert all(np.all(value == 0.0) for value in recorded)
    assert 0 < np.min(numpy_means[0]) and np.max(numpy_means[-1]) < 2.0 ** -126  # subnormal
    report = _verify_passes(traces[mode, "subnormal_inputs"], capsys)
    assert report.diagnosis == []


@pytest.mark.parametrize("mode", MODES)
def test_the_fused_kernels_unbiased_variance(traces, capsys, mode):
    """BatchNormalization(axis=3) on (2, 3, 3, 2) batches: the fused kernel averages the variance
    over N = 18 values divided by 17, and the numbers name it, whether the trace holds what the
    update consumed (then the update is checked with it and it against the input) or only the
    layer's input (the tracer may leave a fused kernel's outputs alone: the update is checked
    with the input's moments). Without the input, the update checked with what it consumed still
    passes, nothing contradicts the header's fused, and the report says what it could not check;
    with neither, the trace does not pass."""
    path = traces[mode, "keras_fused_conv"]
    trace = read_trace(path)
    layer, entry = _only_layer(trace)
    assert entry["fused"] is True and entry["momentum"] == 0.8
    batches = _draws(4, lambda rng: rng.randn(2, 3, 3, 2).astype(np.float32) * 3 + 1)
    _assert_moving_statistics(trace, layer, batches, (0.8, 0.8), (np.zeros(2), np.ones(2)),
                              ddof=1)
    report = _verify_passes(path, capsys)
    assert report.variance_used == {layer: "unbiased"} and report.diagnosis == []
    compared = {check.name: check.compared for check in report.checks}
    assert compared["moving_variance update"] == 8
    recorded = all("batch_variance" in record["bn"][layer] for record in trace.steps[1:])
    if not recorded:
        assert "the values 4 updates consumed were not recorded" in report.skipped[0]
    steps = copy.deepcopy(trace.steps)
    for record in steps:
        record["bn"][layer].pop("batch_input", None)
    report = verify_trace(dataclasses.replace(trace, steps=steps))
    if recorded:
        assert report.passed and report.diagnosis == [], report.format()
        assert report.skipped == [
            f"not checked for {layer}: batch_mean and batch_variance from the layer's inputs: the "
            "layer's input was not recorded; the moving-average updates were checked with the "
            "batch statistics they consumed (the fused kernel's unbiased (N-1) variance, as the "
            "header declares)"]
    else:
        assert not report.passed and "nothing to compare" in report.verdict()


@pytest.mark.parametrize("mode", MODES)
def test_momentum_zero_from_zero_has_no_diagnosis(traces, capsys, mode):
    """momentum 0: each update replaces the statistics with the batch's moments, so a zero start
    leaves no trace in the numbers, and no "started from 0" diagnosis may be made."""
    trace = read_trace(traces[mode, "keras_momentum_zero"])
    layer, _ = _only_layer(trace)
    batches = _draws(4, lambda rng: rng.randn(5, 3).astype(np.float32))
    _assert_moving_statistics(trace, layer, batches, (0.0, 0.0), (np.zeros(3), np.zeros(3)))
    report = _verify_passes(traces[mode, "keras_momentum_zero"], capsys)
    assert report.diagnosis == [], report.format()


@pytest.mark.parametrize("mode", MODES)
def test_a_program_without_moving_averages_has_nothing_to_check(traces, capsys, mode):
    path = traces[mode, "nothing_found"]
    assert main(["verify", path]) == 1
    printed = capsys.readouterr().out.rstrip().splitlines()
    assert printed[-1] == ("NOTHING TO CHECK: no moving average was found in the graphs the "
                           "program ran; a trace with nothing in it is not a PASS")
    assert printed[1].startswith("graphs searched: ")


@pytest.mark.parametrize("mode", MODES)
def test_a_layer_updated_twice_in_a_run(traces, capsys, mode):
    """One layer on the real batch (randn + 2), then on the fake one (randn - 1), in each run:
    moving_mean_t = 0.9 (0.9 m_(t-1) + 0.1 mean(real_t)) + 0.1 mean(fake_t)."""
    trace = read_trace(traces[mode, "shared_layer"])
    layer, _ = _only_layer(trace)
    assert any("updates" in record["bn"].get(layer, {}) for record in trace.steps)
    batches = []
    for real, fake in _draws(3, lambda rng: (rng.randn(4, 2).astype(np.float32) + 2,
                                             rng.randn(4, 2).astype(np.float32) - 1)):
        batches += [real, fake]
    for quantity, initial, statistic in (("moving_mean", np.zeros(2), _mean),
                                         ("moving_variance", np.ones(2), _variance(0))):
        values, bounds = _averaged(batches, 0.9, initial, statistic)
        _assert_recorded(trace, layer, quantity, (values[1::2], bounds[1::2]))
    report = _verify_passes(traces[mode, "shared_layer"], capsys)
    assert report.diagnosis == []


@pytest.mark.parametrize("mode", MODES)
def test_a_layer_updated_twice_in_a_run_in_no_fixed_order(traces, capsys, mode):
    """As above without the dependency between the two updates: TensorFlow may run them in either
    order, or let both read the state before the run. Each step's state, from the recorded one
    before it, is one of those outcomes (momentum 0.9, the real and fake batches' moments r, f)::

        real then fake: 0.9 (0.9 m + 0.1 r) + 0.1 f     fake then real: 0.9 (0.9 m + 0.1 f) + 0.1 r
        both reading m: m + 0.1 (r - m) + 0.1 (f - m)

    and verify passes, saying which it found."""
    path = traces[mode, "shared_layer_unordered"]
    trace = read_trace(path)
    layer, _ = _only_layer(trace)
    assert all(record["bn"][layer]["updates_ordered"] is False for record in trace.steps[1:])
    draws = _draws(3, lambda rng: (rng.randn(4, 2).astype(np.float32) + 2,
                                   rng.randn(4, 2).astype(np.float32) - 1))
    for record, previous, (real, fake) in zip(trace.steps[1:], trace.steps, draws):
        for quantity, statistic in (("moving_mean", _mean), ("moving_variance", _variance(0))):
            old, r, f = previous["bn"][layer][quantity], statistic(real)[0], statistic(fake)[0]
            outcomes = [0.9 * (0.9 * old + 0.1 * r) + 0.1 * f, 0.9 * (0.9 * old + 0.1 * f) + 0.1 * r,
                        old + 0.1 * (r - old) + 0.1 * (f - old)]
            assert any(np.allclose(record["bn"][layer][quantity], outcome, rtol=1e-5, atol=1e-6)
                       for outcome in outcomes), (quantity, record["step"])
    report = _verify_passes(path, capsys)
    assert report.diagnosis == []
    assert "each such run was checked against every order" in report.skipped[-1]
