"""verify's diagnosis names the convention each trace follows: a table over every scenario (and a
PyTorch run when PyTorch is installed), then hand-made one-step traces for each candidate.

Hand-made traces: one step on x = 0, 4 (mean 2, biased variance 4, unbiased 8) from moving_mean 0,
moving_variance 1, momentum 0.75 (so that momentum and 1 - momentum differ):

    standard  moving_mean = 0.75 * 0 + 0.25 * 2 = 0.5    moving_variance = 0.75 * 1 + 0.25 * 4 = 1.75
    unbiased                                              moving_variance = 0.75 * 1 + 0.25 * 8 = 2.75
    swapped   moving_mean = 0.25 * 0 + 0.75 * 2 = 1.5    moving_variance = 0.25 * 1 + 0.75 * 4 = 3.25
    pytorch   moving_mean = 1.5                          moving_variance = 0.25 * 1 + 0.75 * 8 = 6.25
    no update moving_mean = 0                            moving_variance = 1
"""
import copy
import dataclasses
import importlib.util
import os
import warnings

import numpy as np
import pytest

from bnrepro.cli import main
from bnrepro.check.diagnose import conventions_followed, diagnose_trace
from bnrepro.check.formulas import fitted_epsilon
from bnrepro.trace import Trace
from bnrepro.check.verify import verify_trace

BN = "batch_normalization"
FUSED = "fused/batch_normalization"

# (scenario, overrides, {(layer, quantity): convention}, verify passes?)
SCENARIO_TABLE = [
    ("cubic", {}, {}, True),
    ("cubic", {"momentum": 1.0}, {(BN, "moving statistics"): "frozen by design"}, True),
    ("cubic", {"momentum": 0.0}, {}, True),  # the moving statistics are the last batch's
    ("two-sample", {"hidden_kernel_init": 1.4059724, "output_kernel_init": -0.284}, {}, True),
    ("fused-variance", {}, {(FUSED, "moving_variance"): "unbiased",
                            (FUSED, "batch statistics"): "unbiased"}, True),
    # variances of about 1e-6, told apart by bounds that follow their size (1.67e-6 unbiased
    # against a biased 1.25e-6); but with epsilon 1e-7, Keras 2.2's N / (N - 1 - epsilon) is the
    # unbiased N / (N - 1) to 3e-8 relative: the moving variance fits both and names neither
    ("fused-variance", {"values": "0,0.001,0.002,0.003", "epsilon": 1e-7},
     {(FUSED, "moving_variance"): None, (FUSED, "batch statistics"): "unbiased"}, True),
    ("no-update-ops", {}, {(BN, "moving_mean"): "no update", (BN, "moving_variance"): "no update"},
     False),
    ("training-not-fed", {}, {(BN, "moving_mean"): "no update", (BN, "moving_variance"): "no update",
                              (BN, "batch statistics"): "inference mode"}, False),
    ("epsilon", {}, {}, True),
    ("ghost-batch", {}, {}, True),  # the header declares virtual_batch_size: checked under it
    ("ghost-batch", {"virtual_batch_size": 4}, {}, True),
    ("ghost-batch", {"training": "tensor"}, {}, True),
    ("renorm", {}, {}, True),  # the header declares renorm
]


@pytest.mark.parametrize("name, overrides, expected, passes", SCENARIO_TABLE,
                         ids=[f"{row[0]}{'-' + '-'.join(map(str, row[1].values())) if row[1] else ''}"
                              for row in SCENARIO_TABLE])
def test_verify_names_each_scenarios_convention(scenario_trace, name, overrides, expected, passes):
    trace = scenario_trace(name, **overrides)
    if name == "fused-variance":  # the numbers alone, without the header's "fused": true
        trace = _with_header(trace, FUSED, {"fused": None})
    report = verify_trace(trace)
    assert conventions_followed(report.diagnosis) == expected, report.format()
    assert report.passed == passes, report.format()
    for finding in report.diagnosis:
        assert finding.format() in report.format()


@pytest.mark.parametrize("overrides", [{}, {"values": "0,0.001,0.002,0.003", "epsilon": 1e-7}])
def test_a_layer_the_header_declares_fused_is_expected_to_average_the_unbiased_variance(
        scenario_trace, overrides):
    trace = scenario_trace("fused-variance", **overrides)
    assert trace.layers[FUSED]["fused"] is True
    report = verify_trace(trace)
    assert conventions_followed(report.diagnosis) == {} and report.passed, report.format()
    assert "batch_variance of fused/batch_normalization: unbiased (/(N-1))" in report.format()


NO_MODE = {"virtual_batch_size": None, "ghost_layout": None, "renorm": None}  # None: key removed


def _with_header(trace, layer, edit):
    """``trace`` read with ``layer``'s header entry updated by ``edit`` (keys set to None removed)."""
    header = copy.deepcopy(trace.header)
    entry = header["layers"][layer]
    entry.update(edit)
    for key in [key for key, value in entry.items() if value is None]:
        del entry[key]
    return dataclasses.replace(trace, header=header, steps=trace.steps)


# (scenario, overrides, header edit, {(layer, quantity): convention}, the check that fails)
DECLARATION_TABLE = [
    ("ghost-batch", {}, NO_MODE, {(BN, "moving_variance"): "ghost 2 strided",
                                  (BN, "batch statistics"): "ghost 2 strided"},
     "batch_variance from inputs"),
    ("ghost-batch", {"virtual_batch_size": 4}, NO_MODE,
     {(BN, "moving_variance"): "ghost 4 strided", (BN, "batch statistics"): "ghost 4 strided"},
     "batch_variance from inputs"),
    ("ghost-batch", {}, {"virtual_batch_size": 4}, {(BN, "moving_variance"): "ghost 2 strided",
                                                    (BN, "batch statistics"): "ghost 2 strided"},
     "batch_variance from inputs"),
    ("ghost-batch", {}, {"ghost_layout": "contiguous"},
     {(BN, "moving_variance"): "ghost 2 strided", (BN, "batch statistics"): "ghost 2 strided"},
     "batch_variance from inputs"),
    ("ghost-batch", {"training": "tensor"}, {"virtual_batch_size": 2},
     {(BN, "moving_variance"): "standard", (BN, "batch statistics"): "standard"},
     "batch_variance from inputs"),
    ("renorm", {}, NO_MODE, {(BN, "moving_variance"): "renorm"}, "moving_variance update"),
    ("cubic", {}, {"renorm": {"momentum": 0.9}}, {(BN, "moving_variance"): "standard"},
     "moving_variance update"),
]


@pytest.mark.parametrize("name, overrides, edit, expected, failing", DECLARATION_TABLE,
                         ids=["ghost-undeclared", "ghost-4-undeclared", "ghost-declared-4",
                              "ghost-declared-contiguous", "ghost-tensor-declared-2",
                              "renorm-undeclared", "cubic-declared-renorm"])
def test_a_mode_the_header_does_not_declare_fails_with_the_diagnosis(scenario_trace, name,
                                                                     overrides, edit, expected,
                                                                     failing):
    """The trace follows one mode, the header declares another (or none): the check fails and the
    diagnosis names what the trace follows, saying so when that is the standard layer."""
    report = verify_trace(_with_header(scenario_trace(name, **overrides), BN, edit))
    assert not report.passed
    assert failing in {check.name for check in report.checks if not check.passed}
    assert conventions_followed(report.diagnosis) == expected, report.format()
    lines = report.format().splitlines()
    assert lines[-1].startswith("FAIL: ")  # after the diagnosis lines:
    assert [line for line in lines if line.startswith("diagnosis:")] == [
        finding.format() for finding in report.diagnosis]
    for finding in report.diagnosis:
        if finding.convention == "standard":
            assert "as the header declares" in finding.message


def test_epsilon_diagnosis_on_post_000_read_with_the_posts_epsilon(scenario_trace):
    """Post 000's run read as if epsilon were the 1e-5 it writes: the outputs follow 1e-3."""
    trace = scenario_trace("epsilon")
    misread = dataclasses.replace(trace, header=copy.deepcopy(trace.header), steps=trace.steps)
    misread.header["layers"][BN]["epsilon"] = 1e-5
    report = verify_trace(misread)
    assert not report.passed
    assert conventions_followed(report.diagnosis) == {(BN, "inference output"): "epsilon 0.001"}
    assert "epsilon = 0.001 (tf.layers / tf_keras / Keras 3 default)" in report.format()


def _load_script(name):
    path = os.path.join(os.path.dirname(__file__), "..", "scripts", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def pytorch_trace_path(tmp_path_factory):
    pytest.importorskip("torch", reason="PyTorch is an optional extra (pip install 'bnrepro[torch]')")
    out = tmp_path_factory.mktemp("pytorch") / "run"
    return _load_script("pytorch_trace").write_pytorch_trace(str(out))


def test_verify_names_pytorchs_convention(pytorch_trace_path, capsys):
    assert main(["verify", pytorch_trace_path]) == 1
    printed = capsys.readouterr().out
    assert "moving_mean follows momentum and 1 - momentum swapped" in printed
    assert "unbiased (N-1) variance: PyTorch's BatchNorm convention" in printed
    from bnrepro.trace import read_trace

    assert conventions_followed(diagnose_trace(read_trace(pytorch_trace_path))) == {
        ("bn", "moving_mean"): "swapped", ("bn", "moving_variance"): "pytorch",
        ("bn", "batch statistics"): "unbiased"}


def test_cli_exit_status_and_printed_diagnosis(scenario_trace, capsys):
    """1 with the diagnosis when a standard check fails; 0 when they pass (the fused trace too,
    whose header declares the fused kernel; without that declaration the diagnosis names it)."""
    assert main(["verify", scenario_trace("no-update-ops").path]) == 1
    assert "moving_mean never moves" in capsys.readouterr().out
    fused = scenario_trace("fused-variance")
    assert main(["verify", fused.path]) == 0
    assert ("batch_variance of fused/batch_normalization: unbiased (/(N-1))"
            in capsys.readouterr().out)
    undeclared = verify_trace(_with_header(fused, FUSED, {"fused": None}))
    assert undeclared.passed
    assert ("moving_variance follows the unbiased (N-1) batch variance: fused batch norm"
            in undeclared.format())


def test_momentum_1_freezes_the_statistics_by_design(scenario_trace, capsys):
    """``bnrepro run cubic --momentum 1``: moving = 1 * old + 0 * batch, so the statistics stay at 0
    and 1 while training. verify passes it, says why 'statistics move when training' was not
    checked (frozen by design, not an update left out of training), and NumPy warns of nothing
    (zero-debiasing's 1 - momentum^t is 0 there)."""
    trace = scenario_trace("cubic", momentum=1.0)
    assert all(record["bn"][BN]["moving_mean"].tolist() == [0.0]
               and record["bn"][BN]["moving_variance"].tolist() == [1.0] for record in trace.steps)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["verify", trace.path]) == 0
    out = capsys.readouterr().out
    assert "statistics move when training            0" in out and "not checked" in out, out
    assert ("diagnosis: batch_normalization: moving_mean and moving_variance are frozen by design "
            "at every training step (10): momentum 1 makes each update moving = 1 * old + 0 * "
            "batch = old") in out, out
    assert "UPDATE_OPS" not in out and "not part of the training run" not in out, out
    assert out.rstrip().splitlines()[-1].startswith("PASS"), out


# --- hand-made traces ----------------------------------------------------------------------------

def _one_step(moving_mean, moving_variance, consumed_variance, *, batch_mean=2.0, momentum=0.75,
              inference=None, epsilon=1e-3, batch_input=((0.0,), (4.0,))):
    state0 = {"moving_mean": np.array([0.0]), "moving_variance": np.array([1.0]),
              "gamma": np.array([1.0]), "beta": np.array([0.0])}
    state1 = dict(state0, moving_mean=np.array([moving_mean]),
                  moving_variance=np.array([moving_variance]), batch_mean=np.array([batch_mean]),
                  batch_variance=np.array([consumed_variance]), batch_input=np.array(batch_input))
    step1 = {"step": 1, "bn": {"bn": state1}}
    if inference is not None:
        step1["inference"] = {"bn": inference}
    header = {"format": "bnrepro-trace/1", "layers": {"bn": {"momentum": momentum,
                                                             "epsilon": epsilon}}}
    return Trace(path="hand-made", header=header, steps=[{"step": 0, "bn": {"bn": state0}}, step1])


@pytest.mark.parametrize("moving_mean, moving_variance, consumed, expected", [
    (0.5, 1.75, 4.0, {}),
    (0.5, 2.75, 8.0, {("bn", "moving_variance"): "unbiased", ("bn", "batch statistics"): "unbiased"}),
    (1.5, 3.25, 4.0, {("bn", "moving_mean"): "swapped", ("bn", "moving_variance"): "swapped"}),
    (1.5, 6.25, 8.0, {("bn", "moving_mean"): "swapped", ("bn", "moving_variance"): "pytorch",
                      ("bn", "batch statistics"): "unbiased"}),
    (0.0, 1.0, 4.0, {("bn", "moving_mean"): "no update", ("bn", "moving_variance"): "no update"}),
    (0.7, 9.0, 4.0, {("bn", "moving_mean"): None, ("bn", "moving_variance"): None}),
], ids=["standard", "unbiased", "swapped", "pytorch", "no-update", "unknown"])
def test_hand_made_one_step_traces(moving_mean, moving_variance, consumed, expected):
    findings = diagnose_trace(_one_step(moving_mean, moving_variance, consumed))
    assert conventions_followed(findings) == expected
    for finding in findings:
        if finding.convention is None:
            assert "no known convention explains" in finding.message


def test_hand_made_inference_mode_trace():
    """The update consumed the old moving statistics (0, 1), not the batch's (2, 4)."""
    findings = diagnose_trace(_one_step(0.0, 1.0, 1.0, batch_mean=0.0))
    assert conventions_followed(findings)[("bn", "batch statistics")] == "inference mode"


@pytest.mark.parametrize("epsilon_used, moving_variance, expected", [
    (1e-3, 1.0, {}), (1e-5, 1.0, None), (1e-5, 1e-5, "epsilon 1e-05"),
    (1.001e-5, 1e-5, "epsilon 1.001e-05"), (0.5, 1.0, None)])
def test_hand_made_epsilon(epsilon_used, moving_variance, expected):
    """Inference on 1, 3 with moving mean 0 and ``moving_variance`` before the step, gamma 1,
    beta 0: the output is x / sqrt(moving_variance + epsilon).

    With moving variance 1, epsilon 1e-5 gives 1 / sqrt(1.00001) = 0.999995 against 0.9995 for the
    header's 1e-3, but 1e-5 and the old cuDNN floor 1.001e-5 differ by 5e-9, far inside float32
    rounding (about 1e-6 here): the numbers fit both, and the finding names neither. With moving
    variance 1e-5, 1 / sqrt(2e-5) = 223.607 and 1 / sqrt(2.001e-5) = 223.551 differ by 2.5e-4
    relative: each is named."""
    x = np.array([[1.0], [3.0]])
    output = x / np.sqrt(moving_variance + epsilon_used)
    trace = _one_step(0.5, 1.75, 4.0, inference={"input": x, "output": output})
    trace.steps[0]["bn"]["bn"]["moving_variance"] = np.array([moving_variance])
    trace.steps[1]["bn"]["bn"]["moving_variance"] = np.array([0.75 * moving_variance + 0.25 * 4.0])
    findings = diagnose_trace(trace)
    followed = conventions_followed(findings)
    if expected == {}:
        assert followed == {}
        return
    assert followed == {("bn", "inference output"): expected}
    if expected is None and epsilon_used == 0.5:
        assert "solving the formula for epsilon gives 0.5" in findings[0].message
    elif expected is None:
        assert "the numbers do not tell apart: epsilon 1e-05; epsilon 1.001e-05" in \
            findings[0].message


def test_fitted_epsilon_solves_the_inference_formula():
    """gamma 2, beta 1, moving (0.5, 3), epsilon 0.25: output = 2 * (x - 0.5) / sqrt(3.25) + 1."""
    x = np.array([0.0, 1.0, 2.0])
    output = 2.0 * (x - 0.5) / np.sqrt(3.25) + 1.0
    assert fitted_epsilon(x, output, 0.5, 3.0, 2.0, 1.0) == pytest.approx(0.25)
    assert fitted_epsilon(np.array([0.5]), np.array([1.0]), 0.5, 3.0, 2.0, 1.0) is None


def test_variances_as_small_as_the_tolerance_are_told_apart(scenario_trace):
    """Both /N and /(N-1) pass the 1e-6 absolute tolerance on variances of 1e-6; verify reports the
    one the values follow (relative errors 5e-8 and 0.33), for each layer."""
    from bnrepro.check import formulas

    report = verify_trace(scenario_trace("fused-variance", values="0,0.001,0.002,0.003",
                                         epsilon=1e-7))
    assert report.variance_used == {FUSED: formulas.UNBIASED,
                                    "non_fused/batch_normalization": formulas.BIASED}


def _zero_start_trace(momentum, kind):
    """``bnrepro-trace/2``, one layer started from moving (0, 0) (zero initialisers), one update on
    x = 0, 4 (mean 2, variance 4). By hand: momentum 0 gives (2, 4), the start leaves no trace;
    momentum 0.5 gives (1, 2), where the usual start (0, 1) would give a variance of 2.5."""
    from bnrepro.trace import end_record

    mean, variance = (1 - momentum) * 2.0, (1 - momentum) * 4.0
    state = {"moving_mean": np.array([0.0]), "moving_variance": np.array([0.0])}
    steps = [{"step": 0, "bn": {"bn": state}, "averages": {}},
             {"step": 1, "run": {"call": "Session.run", "index": 1, "trained": True, "moved": True,
                                 "fetched": []}, "averages": {},
              "bn": {"bn": {"moving_mean": np.array([mean]), "moving_variance": np.array([variance]),
                            "batch_mean": np.array([2.0]), "batch_variance": np.array([4.0]),
                            "batch_input": np.array([[0.0], [4.0]])}}}]
    header = {"format": "bnrepro-trace/2", "layers": {"bn": {
        "momentum": momentum, "epsilon": 0.001, "kind": kind, "fused": False,
        "zero_debias": False}}, "averages": {}}
    return Trace(path="hand-made", header=header, steps=steps,
                 end=end_record("complete", 1, 2)["end"])


@pytest.mark.parametrize("kind", ["batch norm (tf_keras)", "tf.nn.moments"])
def test_a_zero_start_is_named_only_when_the_numbers_show_it(kind):
    report = verify_trace(_zero_start_trace(0.0, kind))
    assert report.passed and report.diagnosis == [], report.format()
    report = verify_trace(_zero_start_trace(0.5, kind))
    assert report.passed
    assert conventions_followed(report.diagnosis) == {("bn", "initial value"): "from zero"}
    cause = "zero initialisers" if kind.startswith("batch norm") else \
        "an ExponentialMovingAverage of tensors: its shadows start at zero"
    assert report.diagnosis[0].message == (
        f"moving_mean and moving_variance started from 0 ({cause}, without debiasing); after its "
        "1 updates the initial 0 still weighs 0.5")
