"""The NumPy reference (bnrepro.check.reference) against hand derivations and against real TensorFlow traces.

The first group needs no TensorFlow: finite differences, the zero pre-batch-norm bias gradient, the
Adam and moving-average formulas, the error handling. The second group builds each scenario's graph
once per test session (the fixtures in conftest.py) and replays its trace.
"""
import subprocess
import sys

import numpy as np
import pytest

from bnrepro.check import reference as ref
from bnrepro.check.reference import two_sample as two_sample_reference
from bnrepro.errors import UserError
from bnrepro.trace import Trace, read_trace

# TensorFlow runs in float32, the reference in float64, so agreement is float32 rounding carried
# through the steps: over the 10 chained cubic steps the worst variable is about 1.3e-7 relative.
CUBIC_RTOL = 1e-6
# Float64 rounding of the batch-norm backward pass (sum(dx) cancels exactly in exact arithmetic).
ZERO_GRADIENT_ATOL = 1e-12


# --- no TensorFlow --------------------------------------------------------------------------------


def central_difference(function, value, step=1e-6):
    """d function / d value element by element, (f(v + h) - f(v - h)) / 2h, float64."""
    value = np.asarray(value, dtype=np.float64)
    gradient = np.zeros_like(value)
    for index in np.ndindex(value.shape):
        plus, minus = value.copy(), value.copy()
        plus[index] += step
        minus[index] -= step
        gradient[index] = (function(plus) - function(minus)) / (2 * step)
    return gradient


def test_batch_norm_backward_matches_central_difference():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3))
    gamma = rng.normal(size=3)
    beta = rng.normal(size=3)
    upstream = rng.normal(size=(5, 3))  # L = sum(upstream * y), so dL/dy = upstream
    epsilon = 0.001

    def loss(x=x, gamma=gamma, beta=beta):
        y, _ = ref.batch_norm_forward(x, gamma, beta, epsilon)
        return np.sum(upstream * y)

    _, cache = ref.batch_norm_forward(x, gamma, beta, epsilon)
    dx, dgamma, dbeta = ref.batch_norm_backward(upstream, cache)
    np.testing.assert_allclose(dx, central_difference(lambda v: loss(x=v), x), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(dgamma, central_difference(lambda v: loss(gamma=v), gamma), rtol=1e-7)
    np.testing.assert_allclose(dbeta, central_difference(lambda v: loss(beta=v), beta), rtol=1e-7)
    # A constant added to every x changes nothing: the input gradient sums to zero per channel.
    np.testing.assert_allclose(dx.sum(axis=0), 0.0, atol=ZERO_GRADIENT_ATOL)


def _cubic_variables(rng):
    return {
        ref.CUBIC_W: rng.normal(size=(1, 1)), ref.CUBIC_B: rng.normal(size=1),
        "batch_normalization/gamma:0": 1.0 + 0.1 * rng.normal(size=1),
        "batch_normalization/beta:0": 0.1 * rng.normal(size=1),
        "batch_normalization/moving_mean:0": np.zeros(1),
        "batch_normalization/moving_variance:0": np.ones(1),
        ref.CUBIC_W2: rng.normal(size=(1, 1)), ref.CUBIC_B2: rng.normal(size=1),
    }


CUBIC_HYPER = {"momentum": 0.9, "epsilon": 0.001, "learning_rate": 0.5}


def test_cubic_step_gradients_match_central_difference_and_bias_gradient_is_zero():
    rng = np.random.default_rng(1)
    variables = _cubic_variables(rng)
    inputs = rng.random((4, 1))
    targets = inputs**3 + 1
    result = ref.cubic_step(variables, inputs, targets, **CUBIC_HYPER)
    assert set(result.gradients) == set(ref.CUBIC_TRAINABLE)
    for name in ref.CUBIC_TRAINABLE:
        def loss(value, name=name):
            return ref.cubic_step({**variables, name: value}, inputs, targets, **CUBIC_HYPER).loss
        np.testing.assert_allclose(result.gradients[name], central_difference(loss, variables[name]),
                                   rtol=1e-6, atol=1e-10, err_msg=name)
    # Batch norm subtracts the batch mean, so the pre-batch-norm bias b cannot change the loss.
    np.testing.assert_allclose(result.gradients[ref.CUBIC_B], 0.0, atol=ZERO_GRADIENT_ATOL)
    # Plain gradient descent, and the moving statistics from the batch's mean and biased variance.
    np.testing.assert_allclose(result.variables[ref.CUBIC_W2],
                               variables[ref.CUBIC_W2] - 0.5 * result.gradients[ref.CUBIC_W2])
    hidden_tmp = inputs @ variables[ref.CUBIC_W] + variables[ref.CUBIC_B]
    np.testing.assert_allclose(result.variables["batch_normalization/moving_mean:0"],
                               0.1 * hidden_tmp.mean())
    np.testing.assert_allclose(result.variables["batch_normalization/moving_variance:0"],
                               0.9 + 0.1 * hidden_tmp.var())


def test_two_sample_step_gradients_match_central_difference():
    rng = np.random.default_rng(2)
    variables = {ref.HIDDEN_KERNEL: np.array([[1.3]]), ref.OUTPUT_KERNEL: np.array([[0.8]])}
    for layer in (ref.HIDDEN_LAYER, ref.OUTPUT_LAYER):
        variables[ref.layer_variable(layer, "gamma")] = 1.0 + 0.1 * rng.normal(size=1)
        variables[ref.layer_variable(layer, "beta")] = 0.1 * rng.normal(size=1)
        variables[ref.layer_variable(layer, "moving_mean")] = np.zeros(1)
        variables[ref.layer_variable(layer, "moving_variance")] = np.ones(1)
    variables = ref.initial_adam_state(variables, ref.TWO_SAMPLE_TRAINABLE)
    inputs = np.array([[0.0], [1.0], [0.4]])
    targets = np.array([[3.0], [4.0], [3.5]])
    hyper = {"momentum": 0.5, "epsilon": 0.001, "learning_rate": 0.001}
    result = ref.two_sample_step(variables, inputs, targets, **hyper)
    for name in ref.TWO_SAMPLE_TRAINABLE:
        def loss(value, name=name):
            return ref.two_sample_step({**variables, name: value}, inputs, targets, **hyper).loss
        # h = 1e-4: the kernels' gradients are ~1e-5 against a loss of ~10 (batch norm makes the
        # loss nearly scale-invariant), so h = 1e-6 would leave ~1e-9 of float64 rounding in them.
        numeric = central_difference(loss, variables[name], step=1e-4)
        np.testing.assert_allclose(result.gradients[name], numeric, rtol=1e-6, atol=1e-12,
                                   err_msg=name)
    assert result.variables[ref.BETA1_POWER] == pytest.approx(0.81)
    assert result.variables[ref.BETA2_POWER] == pytest.approx(0.999**2)


def test_adam_first_step_by_hand():
    gradient, learning_rate = 2.0, 0.01
    state = ref.initial_adam_state({"w:0": np.array([1.0])}, ["w:0"])
    updated = ref.adam_update(state, {"w:0": np.array([gradient])}, learning_rate)
    m, v = 0.1 * gradient, 0.001 * gradient**2
    lr_t = learning_rate * np.sqrt(1 - 0.999) / (1 - 0.9)
    assert updated["w/Adam:0"] == pytest.approx(m, rel=1e-15)
    assert updated["w/Adam_1:0"] == pytest.approx(v, rel=1e-15)
    assert updated["w:0"] == pytest.approx(1.0 - lr_t * m / (np.sqrt(v) + 1e-8), rel=1e-15)
    assert 1.0 - updated["w:0"][0] == pytest.approx(learning_rate, rel=1e-6)  # ~lr * sign(g)


def _fake_trace(scenario, step_numbers):
    header = {"scenario": scenario, "config": {"learning_rate": 0.5},
              "layers": {"batch_normalization": {"momentum": 0.9, "epsilon": 0.001}}}
    variables = _cubic_variables(np.random.default_rng(3))
    steps = [{"step": number, "variables": variables, "loss": 0.0,
              "batch": {"inputs": [[0.5]] * 3, "targets": [[1.125]] * 3}}
             for number in step_numbers]
    return Trace(path="fake.jsonl", header=header, steps=steps)


def test_unknown_scenario_and_gaps_are_user_errors():
    with pytest.raises(UserError, match="no NumPy reference for scenario 'mnist'"):
        ref.replay(_fake_trace("mnist", [0, 1]))
    with pytest.raises(UserError, match="every step from 0"):
        ref.replay(_fake_trace("cubic", [0, 5, 10]))
    with pytest.raises(UserError, match="needs the variables"):
        ref.cubic_step({}, [[0.5]], [[1.125]], **CUBIC_HYPER)


def test_reference_does_not_import_tensorflow():
    code = "import sys, bnrepro.check.reference; print('tensorflow' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert output.stdout.strip() == "False"


# --- against TensorFlow traces --------------------------------------------------------------------


@pytest.fixture(params=["two_sample_trace", "two_sample_long_trace"])
def any_two_sample_trace(request):
    """Post 001's kernels (one step), and random kernels (five steps); see conftest.py."""
    return request.getfixturevalue(request.param)


def test_cubic_replay_reproduces_every_variable_and_loss(cubic_trace):
    comparisons = ref.replay(cubic_trace)
    assert [c.step for c in comparisons] == list(range(1, 11))
    for comparison in comparisons:
        assert set(comparison.errors) == set(cubic_trace.step(0)["variables"])
        assert comparison.max_rel_error < CUBIC_RTOL, (comparison.step, comparison.worst_variable)
        assert comparison.loss_errors[1] < CUBIC_RTOL
    for row in ref.error_summary(comparisons):
        assert abs(row["gradients"][ref.CUBIC_B][0]) < ZERO_GRADIENT_ATOL
    assert np.asarray(cubic_trace.steps[-1]["variables"][ref.CUBIC_B]).tolist() == [1.0]


def test_two_sample_replay_reproduces_every_variable_and_loss(any_two_sample_trace):
    two_sample_trace = any_two_sample_trace
    comparisons = ref.replay(two_sample_trace)
    assert [c.step for c in comparisons] == [r["step"] for r in two_sample_trace.steps[1:]]
    names = set(two_sample_trace.step(0)["variables"])
    assert {ref.BETA1_POWER, ref.BETA2_POWER} <= names
    assert {slot for name in ref.TWO_SAMPLE_TRAINABLE for slot in ref.adam_slot_names(name)} <= names
    for comparison in comparisons:
        assert set(comparison.errors) == names
        assert comparison.disagreements() == [], comparison.step
    assert ref.agrees(comparisons)
    assert ref.format_replay(comparisons).endswith("reference: AGREES at every step (max |NumPy - "
                                                   "TF| <= 0.0001 * max |TF| per variable, 0.01 "
                                                   "for Adam's slots)")


def test_every_variable_is_held_at_its_own_scale(two_sample_trace):
    """Adam's v slot of the hidden kernel after post 001's step is 3.8e-11 (its m 2e-5): an absolute
    floor of 1e-6 would let it be anything. Moving it by 2% of its own size must be a
    disagreement."""
    comparison = ref.replay(two_sample_trace)[0]
    slot = "hidden1/dense/kernel/Adam_1:0"
    assert float(np.max(np.abs(comparison.traced_variables[slot]))) < 1e-9
    comparison.variables[slot] = comparison.variables[slot] * 1.02
    assert [name for name, _, _ in comparison.disagreements()] == [slot]


def test_adam_without_bias_correction_disagrees(two_sample_trace, monkeypatch, capsys):
    """With Adam's bias correction left out (lr_t = learning_rate), the first step moves every
    weight by lr instead of lr * sqrt(1 - 0.999) / (1 - 0.9) = 0.316 lr: the reference must say
    so, and ``bnrepro reference`` exit 1."""
    from bnrepro.cli import main

    def uncorrected(variables, gradients, learning_rate, **options):
        powers = {ref.BETA1_POWER: 0.0, ref.BETA2_POWER: 0.0}  # 1 - power = 1: no correction
        updated = original({**variables, **powers}, gradients, learning_rate, **options)
        updated[ref.BETA1_POWER] = ref.as_float64(variables[ref.BETA1_POWER]) * ref.ADAM_BETA1
        updated[ref.BETA2_POWER] = ref.as_float64(variables[ref.BETA2_POWER]) * ref.ADAM_BETA2
        return updated

    original = ref.adam_update
    monkeypatch.setattr(two_sample_reference, "adam_update", uncorrected)  # where the step uses it
    comparisons = ref.replay(two_sample_trace)
    assert not ref.agrees(comparisons)
    assert main(["reference", two_sample_trace.path]) == 1
    assert "reference: DISAGREES at step 1: hidden1/dense/kernel:0" in capsys.readouterr().out


def test_a_trace_without_a_reference_is_one_line(tmp_path, capsys):
    """``bnrepro reference`` on a trace of another scenario (compare's bn trace) names the
    scenarios that have a reference, in one line, exit 2."""
    from bnrepro.cli import main
    from bnrepro.trace import FORMAT

    path = tmp_path / "trace.jsonl"
    path.write_text('{"format": "%s", "scenario": "mnist-bn", "layers": {"bn": {"momentum": 0.99, '
                    '"epsilon": 1e-05}}}\n{"step": 0, "bn": {"bn": {"moving_mean": [0.0], '
                    '"moving_variance": [1.0], "gamma": [1.0], "beta": [0.0]}}}\n' % FORMAT)
    assert main(["reference", str(path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "no NumPy reference for scenario 'mnist-bn'" in error
    assert "bnrepro run cubic, bnrepro run two-sample" in error
