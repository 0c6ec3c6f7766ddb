"""Each trap shows itself in its scenario's trace, checked against hand derivations, plain NumPy written
here (not bnrepro.check.formulas / layer_modes), the numbers of the issue and post 000's printout, and the
conventions table against the installed sources.

Tolerances: TensorFlow computes in float32; values of order 1-10 agree with float64 to ~1e-6.
"""
import os
import sysconfig
from importlib import metadata

import numpy as np
import pytest

from bnrepro.check import layer_modes
from bnrepro.check.conventions import CONVENTIONS, by_framework, format_table

ATOL = 1e-6  # float32 values of order 1 against float64 references
FUSED = "fused/batch_normalization"
NON_FUSED = "non_fused/batch_normalization"
BN = "batch_normalization"


def first(array):
    return float(np.ravel(array)[0])


# --- trap 1: fused vs non-fused ------------------------------------------------------------------

def test_fused_kernel_averages_the_unbiased_variance(scenario_trace):
    """x = 1, 2, 4, 7: mean 3.5, squared deviations 6.25 + 2.25 + 0.25 + 12.25 = 21; momentum 0, so
    one step leaves 21 / 3 = 7 (fused, N - 1) and 21 / 4 = 5.25 (non-fused, N)."""
    step = scenario_trace("fused-variance").step(1)
    assert first(step["bn"][FUSED]["moving_variance"]) == pytest.approx(7.0, abs=ATOL)
    assert first(step["bn"][NON_FUSED]["moving_variance"]) == pytest.approx(5.25, abs=ATOL)
    assert first(step["bn"][FUSED]["batch_variance"]) == pytest.approx(7.0, abs=ATOL)  # consumed
    assert first(step["bn"][FUSED]["moving_mean"]) == pytest.approx(3.5, abs=ATOL)
    # The issue's four values gave 7.7773 fused and 5.8330 non-fused: the same ratio N / (N - 1).
    ratio = first(step["bn"][FUSED]["moving_variance"]) / first(step["bn"][NON_FUSED]["moving_variance"])
    assert ratio == pytest.approx(7.7773 / 5.8330, abs=1e-4) == pytest.approx(4 / 3, abs=1e-4)


def test_both_kernels_normalise_the_training_batch_with_the_biased_variance(scenario_trace):
    """(x - 3.5) / sqrt(5.25 + 0.001): (1 - 3.5) / 2.29150... = -1.0909855..."""
    metrics = scenario_trace("fused-variance").step(1)["metrics"]
    x = np.array([1.0, 2.0, 4.0, 7.0])
    expected = (x - 3.5) / np.sqrt(5.25 + 0.001)
    assert expected[0] == pytest.approx(-1.0909855, abs=1e-7)
    for layer in (FUSED, NON_FUSED):
        np.testing.assert_allclose(np.ravel(metrics[f"{layer} training output"]), expected, atol=ATOL)


def test_fused_kernel_keeps_a_tiny_epsilon_on_tensorflow_2_21(scenario_trace):
    """Older TensorFlow raised the fused epsilon to 1.001e-5; 2.21 (CPU) does not. Values 0, 1, 2,
    3 (x 1e-3) have biased variance 1.25e-6, so epsilon matters: element 0 is
    -1.5e-3 / sqrt(1.25e-6 + 1e-7) = -1.29099 with 1e-7, but -0.44701 with the floor."""
    step = scenario_trace("fused-variance", values="0,0.001,0.002,0.003", epsilon=1e-7).step(1)
    x = np.array([0.0, 1e-3, 2e-3, 3e-3])
    with_requested = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    with_floor = (x - x.mean()) / np.sqrt(x.var() + 1.001e-5)
    assert with_requested[0] == pytest.approx(-1.29099, abs=1e-5)
    assert with_floor[0] == pytest.approx(-0.44701, abs=1e-5)
    for layer in (FUSED, NON_FUSED):
        output = np.ravel(step["metrics"][f"{layer} training output"])
        np.testing.assert_allclose(output, with_requested, atol=1e-5)


# --- trap 2: UPDATE_OPS left out -----------------------------------------------------------------

def test_without_update_ops_the_moving_statistics_never_move(scenario_trace):
    trace = scenario_trace("no-update-ops")
    for record in trace.steps:
        assert first(record["bn"][BN]["moving_mean"]) == 0.0  # exactly the initial values
        assert first(record["bn"][BN]["moving_variance"]) == 1.0


def test_without_update_ops_training_is_unchanged_and_inference_is_wrong(scenario_trace, cubic_trace):
    """The training path does not read the moving statistics, so every weight matches post 000's run
    with UPDATE_OPS; inference on each step's (not yet trained on) batch does not."""
    broken = scenario_trace("no-update-ops")
    for step in range(1, 11):
        for name in ("Variable:0", "Variable_2:0", f"{BN}/gamma:0", f"{BN}/beta:0"):
            np.testing.assert_allclose(broken.step(step)["variables"][name],
                                       cubic_trace.step(step)["variables"][name], atol=ATOL)
    # The moving statistics the update would have kept are the fixed run's own.
    from bnrepro.graphs.pitfalls.update_ops import inference_errors, shadow_moving_statistics

    shadow = shadow_moving_statistics(broken.steps, BN, momentum=0.9)
    assert shadow[10][0] == pytest.approx(cubic_trace.step(10)["bn"][BN]["moving_mean"], abs=ATOL)
    assert shadow[10][1] == pytest.approx(cubic_trace.step(10)["bn"][BN]["moving_variance"], abs=ATOL)
    # Inference error at step 10 (post 000's printed bn1 is the fixed run's): above 0.5 everywhere.
    output, expected = inference_errors(broken.steps, BN, momentum=0.9, epsilon=0.001)[10]
    np.testing.assert_allclose(expected.ravel(), [1.0949917, 1.5564928, 1.638361], atol=ATOL)
    assert np.min(np.abs(output.ravel() - [1.0949917, 1.5564928, 1.638361])) > 0.3


# --- trap 3: training never fed ------------------------------------------------------------------

def test_training_never_fed_normalises_with_the_moving_statistics(scenario_trace):
    """The layer stays in inference mode: it consumes the moving statistics (0, 1), they never move,
    and the training output is gamma * x / sqrt(1 + 0.001) + beta."""
    trace = scenario_trace("training-not-fed")
    for step in range(1, 11):
        state, old = trace.step(step)["bn"][BN], trace.step(step - 1)["bn"][BN]
        assert first(state["batch_mean"]) == 0.0 and first(state["batch_variance"]) == 1.0
        assert first(state["moving_mean"]) == 0.0 and first(state["moving_variance"]) == 1.0
        x = np.ravel(state["batch_input"])
        assert abs(np.mean(x)) > 1.0  # the batch's own mean is far from 0
        expected = first(old["gamma"]) * x / np.sqrt(1.001) + first(old["beta"])
        np.testing.assert_allclose(np.ravel(trace.step(step)["metrics"][f"{BN} training output"]),
                                   expected, atol=ATOL)


# --- trap 4: epsilon ----------------------------------------------------------------------------

POST_000_BN1 = [1.0949917, 1.5564928, 1.638361]  # printed by post 000 before its 10th step


def test_only_the_layer_default_epsilon_reproduces_post_000(scenario_trace):
    from bnrepro.graphs.pitfalls.epsilon import epsilon_rows

    trace = scenario_trace("epsilon")
    rows = {epsilon: output for epsilon, _, output, _ in epsilon_rows(trace.step(9), trace.step(10))}
    np.testing.assert_allclose(np.ravel(rows[1e-3]), POST_000_BN1, atol=ATOL)
    assert first(rows[1e-5]) == pytest.approx(1.09616, abs=1e-5)  # the seeds README's number
    assert np.max(np.abs(np.ravel(rows[1e-5]) - POST_000_BN1)) > 1e-3


# --- trap 7: ghost batches and renorm ------------------------------------------------------------

def test_ghost_batches_hand_example():
    """x = 1, 2, 4, 7, k = 2: tf_keras' strided ghost batches {1, 4} and {2, 7} have variances 2.25
    and 6.25 (mean 4.25); consecutive ones {1, 2} and {4, 7} have 0.25 and 2.25 (mean 1.25)."""
    x = np.array([[1.0], [2.0], [4.0], [7.0]])
    assert layer_modes.ghost_batch_moments(x, 2)[1][0] == pytest.approx(4.25)
    assert layer_modes.ghost_batch_moments(x, 2, layer_modes.CONTIGUOUS)[1][0] == pytest.approx(1.25)
    assert layer_modes.ghost_batch_moments(x, 2)[0][0] == pytest.approx(3.5)
    # (1 - 2.5) / sqrt(2.25 + 0.001)
    assert layer_modes.ghost_batch_normalize(x, 2, 1.0, 0.0, 0.001)[0, 0] == pytest.approx(
        -1.5 / np.sqrt(2.251))


def _declared(entry):
    """What a header's layer entry declares for verify's checks: momentum, epsilon and the mode
    (the tracer's entry also says the layer's kind, convention, variables, fused or not)."""
    return {key: value for key, value in entry.items()
            if key in ("momentum", "epsilon", "virtual_batch_size", "ghost_layout", "renorm")}


def test_ghost_batch_trace_follows_strided_ghost_batches(scenario_trace):
    trace = scenario_trace("ghost-batch")
    assert _declared(trace.layers[BN]) == {"momentum": 0.9, "epsilon": 0.001,
                                           "virtual_batch_size": 2, "ghost_layout": "strided"}
    assert trace.layers[BN]["fused"] is False  # declared: verify checks under it
    for step in range(1, 4):
        state, old = trace.step(step)["bn"][BN], trace.step(step - 1)["bn"][BN]
        x = np.asarray(state["batch_input"])  # (8, 1)
        strided = x.reshape(2, 4, 1)  # tf_keras: (k, N / k, C), moments over axis 0
        variance = strided.var(axis=0).mean(axis=0)
        assert first(state["batch_variance"]) == pytest.approx(variance[0], abs=ATOL)
        assert abs(variance[0] - x.var()) > 0.1  # not the whole batch's
        expected = 0.9 * first(old["moving_variance"]) + 0.1 * variance[0]
        assert first(state["moving_variance"]) == pytest.approx(expected, abs=ATOL)
        centred = (strided - strided.mean(axis=0)) / np.sqrt(strided.var(axis=0) + 0.001)
        output = np.asarray(trace.step(step)["metrics"][f"{BN} training output"])
        np.testing.assert_allclose(output, first(old["gamma"]) * centred.reshape(8, 1)
                                   + first(old["beta"]), atol=1e-5)


def test_ghost_batches_are_ignored_when_training_is_a_tensor(scenario_trace):
    trace = scenario_trace("ghost-batch", training="tensor")
    # The header says what the graph does (no ghost batches), not what the option asked for.
    assert _declared(trace.layers[BN]) == {"momentum": 0.9, "epsilon": 0.001}
    for step in range(1, 4):
        state = trace.step(step)["bn"][BN]
        assert first(state["batch_variance"]) == pytest.approx(np.var(state["batch_input"]), abs=ATOL)


def test_renorm_trace_shows_clipped_corrections_and_moving_stddev(scenario_trace):
    """r = clip(sqrt(var + eps) / s, 0.667, 1.5), d = clip((mean - renorm_mean) / s, -0.5, 0.5),
    s = max(renorm_stddev, sqrt(eps)); moving_variance = moving_stddev^2 - eps."""
    trace = scenario_trace("renorm")
    assert trace.layers[BN]["renorm"] == {"momentum": 0.9,
                                          "clipping": {"rmin": 0.667, "rmax": 1.5, "dmax": 0.5}}
    clipped = 0
    for step in range(1, 7):
        record, before = trace.step(step), trace.step(step - 1)["variables"]
        state = record["bn"][BN]
        x = np.ravel(state["batch_input"])
        stddev = np.sqrt(x.var() + 0.001)
        s = max(first(before[f"{BN}/renorm_stddev:0"]), np.sqrt(0.001))
        r = min(max(stddev / s, 0.667), 1.5)
        d = min(max((x.mean() - first(before[f"{BN}/renorm_mean:0"])) / s, -0.5), 0.5)
        assert first(record["metrics"][f"{BN} renorm_r"]) == pytest.approx(r, abs=1e-5)
        assert first(record["metrics"][f"{BN} renorm_d"]) == pytest.approx(d, abs=1e-5)
        clipped += r in (0.667, 1.5) or abs(d) == 0.5
        moving_stddev = 0.9 * first(before[f"{BN}/moving_stddev:0"]) + 0.1 * stddev
        assert first(record["variables"][f"{BN}/moving_stddev:0"]) == pytest.approx(moving_stddev,
                                                                                      abs=1e-5)
        assert first(state["moving_variance"]) == pytest.approx(moving_stddev ** 2 - 0.001, abs=1e-5)
    assert clipped >= 2  # the drifting batches make the clipping bite


def test_renorm_moving_stddev_follows_from_the_moving_variance(scenario_trace):
    """What verify assumes when a trace lacks moving_stddev: it starts at sqrt(moving_variance)
    (sqrt(1) = 1, the initializer), and after each update moving_stddev = sqrt(moving_variance +
    epsilon), to the last float32 bit on this run."""
    trace = scenario_trace("renorm")
    epsilon = np.float32(0.001)
    for record in trace.steps:
        recorded = np.float32(first(record["variables"][f"{BN}/moving_stddev:0"]))
        variance = np.float32(first(record["bn"][BN]["moving_variance"]))
        derived = np.sqrt(variance) if record["step"] == 0 else np.sqrt(variance + epsilon)
        assert derived == recorded, record["step"]


# --- trap 6: the conventions table ---------------------------------------------------------------

SITE_PACKAGES = sysconfig.get_paths()["purelib"]
DEPENDENCIES = {"tf_keras", "keras", "tensorflow"}  # installed with bnrepro
CITATIONS = [(c.framework, citation) for c in CONVENTIONS for citation in c.citations]


def check_citation(citation):
    """The cited line, at its line number when the installed version is the one cited; anywhere in
    the file otherwise (Keras 3 is not pinned: a newer release may move lines, not the convention)."""
    with open(os.path.join(SITE_PACKAGES, citation.path), encoding="utf-8") as handle:
        lines = [line.strip() for line in handle.read().splitlines()]
    if metadata.version(citation.package).split("+")[0].startswith(citation.version):
        assert lines[citation.line - 1] == citation.text
    else:
        assert citation.text in lines


@pytest.mark.parametrize("framework, citation", [
    pytest.param(framework, citation, id=f"{citation.package}:{citation.line}")
    for framework, citation in CITATIONS if citation.package in DEPENDENCIES])
def test_each_citation_is_the_installed_source_line(framework, citation):
    check_citation(citation)


@pytest.mark.parametrize("citation", [c for _, c in CITATIONS if c.package == "torch"],
                         ids=lambda c: f"torch:{c.line}")
def test_each_pytorch_citation_is_the_installed_source_line(citation):
    pytest.importorskip("torch", reason="PyTorch is an optional extra (pip install 'bnrepro[torch]')")
    check_citation(citation)
    # Flax's citations were read from its wheel and are not installed: not checked here.


def test_pytorch_behaves_as_its_row_says():
    """One BatchNorm1d step on x = 0, 4 (mean 2, biased variance 4, unbiased 8) from (0, 1):
    running_mean = 0.9 * 0 + 0.1 * 2 = 0.2, running_var = 0.9 * 1 + 0.1 * 8 = 1.7."""
    torch = pytest.importorskip("torch", reason="PyTorch is an optional extra")
    row = by_framework("PyTorch")
    bn = torch.nn.BatchNorm1d(1)
    assert (bn.momentum, bn.eps) == (row.momentum, row.epsilon)
    output = bn(torch.tensor([[0.0], [4.0]]))
    assert float(bn.running_mean[0]) == pytest.approx(0.2)
    assert float(bn.running_var[0]) == pytest.approx(1.7)
    assert float(output[0, 0].detach()) == pytest.approx(-2.0 / np.sqrt(4.0 + 1e-5), abs=1e-6)  # biased
    assert row.tf_momentum() == pytest.approx(0.9)


def test_keras_3_behaves_as_its_row_says():
    """Keras 3, one training call on x = 0, 4 from (0, 1), momentum 0.99:
    moving_mean = 0.01 * 2 = 0.02, moving_variance = 0.99 + 0.01 * 4 (biased) = 1.03."""
    import keras

    row = by_framework("Keras 3")
    layer = keras.layers.BatchNormalization()
    assert (layer.momentum, layer.epsilon) == (row.momentum, row.epsilon)
    layer(np.array([[0.0], [4.0]], dtype=np.float32), training=True)
    assert float(np.ravel(layer.moving_mean.numpy())[0]) == pytest.approx(0.02, abs=1e-6)
    assert float(np.ravel(layer.moving_variance.numpy())[0]) == pytest.approx(1.03, abs=1e-6)


def test_the_table_lists_every_framework_the_issue_names():
    assert [c.framework for c in CONVENTIONS] == [
        "TF 1.x tf.layers", "tf_keras (Keras 2)", "Keras 3", "PyTorch", "Flax (linen)"]
    table = format_table()
    assert "| PyTorch | `torch.nn.BatchNorm1d / 2d / 3d` | 0.1 (new value) | 0.9 | 1e-05 |" in table
    with pytest.raises(KeyError, match="Flax"):
        by_framework("MXNet")


def test_docs_hold_the_generated_table():
    """docs/pitfalls.md carries format_table()'s output verbatim."""
    path = os.path.join(os.path.dirname(__file__), "..", "docs", "pitfalls.md")
    with open(path, encoding="utf-8") as handle:
        assert format_table() in handle.read()


@pytest.mark.parametrize("argv, message", [
    (["run", "fused-variance", "--values", "1,2,3"], "exactly four numbers"),
    (["run", "fused-variance", "--values", "1,two,3,4"], "four comma-separated numbers"),
    (["run", "ghost-batch", "--training", "maybe"], "--training must be one of python-bool, tensor"),
    (["run", "ghost-batch", "--virtual-batch-size", "3"], "must be positive and divide --batch-size 8"),
])
def test_bad_pitfall_options_are_one_line_errors(tmp_path, capsys, argv, message):
    from bnrepro.cli import main

    assert main(argv + ["--out", str(tmp_path / "out"), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_help_lists_every_trap(capsys):
    from bnrepro.cli import main

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    printed = capsys.readouterr().out
    for name in ("fused-variance", "no-update-ops", "training-not-fed", "epsilon", "ghost-batch",
                 "renorm"):
        assert name in printed
