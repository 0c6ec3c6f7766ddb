"""The zoo (tests/zoo/README.md): realistic TF1 programs, each run in both graph modes, plain and
under the tracer, by ``tests/zoo/harness.py`` (one process per mode, the two modes in parallel).

For every program and mode:

* ``plain``: the program runs without error (a failure here is a bug of the program or harness);
* ``traced``: under the tracer it exits 0 and prints exactly what it printed plain;
* ``verdict``: ``bnrepro verify``'s verdict and diagnosis, and the layers the trace found (their
  number, momentum, the variance's own decay, epsilon, variance convention, mode), against
  :data:`EXPECTATIONS`, which says what each program really does;
* ``final``: the trace's last moving statistics equal the values the program printed itself, to
  the printed precision;
* ``numpy`` (programs whose batch norm normalises the data they feed): the moving statistics
  recomputed with NumPy from the batches the program drew (the draws are repeated here), with
  their float32 bounds (``expected_averages`` of tests/test_tracer.py, bnrepro.check.tolerances).

The expectations come from the programs, never from the tool. What fails today because of the
tool is marked in :data:`KNOWN_FAILURES` (strict xfail: a fix makes it XPASS, and the mark goes).

``BNREPRO_ZOO_RESULTS=DIR`` reuses the harness results in ``DIR/<mode>/results.json`` instead of
running the programs (the harness: ``python tests/zoo/harness.py --mode v1 --out DIR``);
``ZOO_NO_XFAIL=1`` drops the xfail marks, to see today's failures in full.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pytest

from bnrepro.check import formulas, tolerances
from bnrepro.check.verify import verify_trace
from bnrepro.trace import read_trace
from test_tracer import expected_averages, mean_of, variance_of
from zoo import harness

MODES = harness.MODES
NAMES = harness.program_names()


# --- what each program really does ------------------------------------------------------------

@dataclass(frozen=True)
class Layer:
    """A batch-norm layer as the program builds it. ``mean`` and ``variance`` name its moving
    statistics (TensorFlow names, as the program prints them)."""

    mean: str
    variance: str
    momentum: float
    epsilon: float
    variance_momentum: Optional[float] = None  # the variance's own decay, where it differs
    convention: Optional[str] = None  # the batch variance averaged: biased (/N), unbiased (/(N-1))
    zero_debias: bool = False
    ghost: Optional[int] = None  # virtual_batch_size
    renorm: bool = False
    library: bool = True  # a tf.layers / tf_keras layer (False: written by hand)


@dataclass(frozen=True)
class Expect:
    what: str  # what the program does, wrong if anything
    layers: tuple
    verdict: str = "PASS"  # or "FAIL: <the first failing check>"
    diagnosis: frozenset = frozenset()  # {(moving-mean variable, quantity, convention)}
    averages: dict = field(default_factory=dict)  # moving averages that are no layer: {variable: momentum}


B, U = formulas.BIASED, formulas.UNBIASED


def _tf_layer(name, momentum, epsilon=1e-3, convention=B, **more):
    return Layer(f"{name}/moving_mean:0", f"{name}/moving_variance:0", momentum, epsilon,
                 convention=convention, **more)


def _by_hand(mean, variance, momentum, epsilon, convention=B, **more):
    return Layer(mean, variance, momentum, epsilon, convention=convention, library=False, **more)


LIBRARY_LABEL = re.compile(r"tf\.layers|tf_keras|BatchNormalization")


EXPECTATIONS = {
    "assign_moving_average_in_scope": Expect(
        "tf.nn.moments + assign_moving_average (zero_debias=True) inside variable_scope('bn1')",
        (_by_hand("bn1/moving_mean:0", "bn1/moving_variance:0", 0.9, 1e-3, zero_debias=True),)),
    "assign_moving_average_no_debias_cond": Expect(
        "assign_moving_average(zero_debias=False) inside tf.cond's training branch, twice",
        (_by_hand("bn_input/moving_mean:0", "bn_input/moving_var:0", 0.9, 1e-3),
         _by_hand("bn_conv/moving_mean:0", "bn_conv/moving_var:0", 0.9, 1e-3))),
    "assign_moving_average_no_scope": Expect(
        "assign_moving_average (zero_debias=True) without a scope, twice",
        (_by_hand("moving_mean:0", "moving_var:0", 0.95, 1e-4, zero_debias=True),
         _by_hand("moving_mean_1:0", "moving_var_1:0", 0.95, 1e-4, zero_debias=True))),
    "build_after_first_run": Expect(
        "a new head and optimizer added to the graph after three training runs",
        (_tf_layer("features_bn", 0.8),)),
    "channels_first_axis1": Expect(
        "axis=1 batch norm: fused on NCHW images, not fused on (batch, channels, length)",
        (_tf_layer("batch_normalization", 0.9, 1e-3, U), _tf_layer("batch_normalization_1", 0.8))),
    "dcgan_discriminator_applied_twice": Expect(
        "DCGAN: the discriminator applied to real and to generated images (reuse), fused layers",
        (_tf_layer("g/bn0", 0.99, 1e-3, U), _tf_layer("d/bn1", 0.99, 1e-3, U))),
    "kfold_new_session_per_fold": Expect(
        "one graph, a new session per fold that initialises and trains from scratch",
        (_tf_layer("batch_normalization", 0.8),)),
    "cnn_placeholder_with_default": Expect(
        "fused tf.layers batch norm, training = placeholder_with_default(False)",
        (_tf_layer("batch_normalization", 0.8, 1e-5, U),
         _tf_layer("batch_normalization_1", 0.99, 1e-3, U))),
    "cnn_training_placeholder": Expect(
        "fused tf.layers batch norm after a conv, training = bool placeholder",
        (_tf_layer("batch_normalization", 0.9, 1e-3, U),)),
    "cond_assign_population": Expect(
        "moments and population tf.assign inside tf.cond's training branch, twice",
        (_by_hand("pop_mean:0", "pop_var:0", 0.9, 1e-3),
         _by_hand("pop_mean_1:0", "pop_var_1:0", 0.9, 1e-3))),
    "cond_decay_0997": Expect(
        "decay = tf.cond(is_training, 0.997, 1.0): evaluation runs the updates with decay 1",
        (_by_hand("pop_mean:0", "pop_var:0", 0.997, 1e-3),)),
    "contrib_style_mlp_saturated": Expect(
        "contrib-style forced updates in tf.cond, saturated sigmoids on 0-255 inputs",
        (_by_hand("bn1/moving_mean:0", "bn1/moving_variance:0", 0.9, 1e-3),
         _by_hand("bn2/moving_mean:0", "bn2/moving_variance:0", 0.9, 1e-3))),
    "dcgan_alternating": Expect(
        "generator and discriminator trained alternately, each run updating its own layers",
        (_tf_layer("generator/g_bn0", 0.9, 1e-5, U), _tf_layer("generator/g_bn1", 0.9, 1e-5, U),
         _tf_layer("discriminator/d_bn1", 0.9, 1e-5, U))),
    "ema_cond_conv": Expect(
        "ExponentialMovingAverage of the batch moments applied in tf.cond (shadows start at 0)",
        (_by_hand("bn/bn/moments/Squeeze/ExponentialMovingAverage:0",
                  "bn/bn/moments/Squeeze_1/ExponentialMovingAverage:0", 0.5, 1e-3),
         _by_hand("bn/bn_1/moments/Squeeze/ExponentialMovingAverage:0",
                  "bn/bn_1/moments/Squeeze_1/ExponentialMovingAverage:0", 0.5, 1e-3)),
        diagnosis=frozenset({
            ("bn/bn/moments/Squeeze/ExponentialMovingAverage:0", "initial value", "from zero"),
            ("bn/bn_1/moments/Squeeze/ExponentialMovingAverage:0", "initial value",
             "from zero")})),
    "ema_polyak_weights": Expect(
        "tf.layers batch norm and an ExponentialMovingAverage(0.9) of every trainable variable",
        (_tf_layer("batch_normalization", 0.9),),
        averages={f"{name}/ExponentialMovingAverage:0": 0.9 for name in (
            "batch_normalization/gamma", "batch_normalization/beta", "dense/kernel",
            "dense/bias", "dense_1/kernel", "dense_1/bias")}),
    "epsilon_inside_sqrt": Expect(
        "batch norm written out: (x - mean) / tf.sqrt(var + 1e-5)",
        (_by_hand("running_mean:0", "running_var:0", 0.9, 1e-5),)),
    "epsilon_tiny_assign_moving_average": Expect(
        "tf.nn.batch_normalization(variance_epsilon=1e-9) on data of variance 1e-6",
        (_by_hand("input_norm/pop_mean:0", "input_norm/pop_var:0", 0.95, 1e-9),)),
    "evaluation_every_step": Expect(
        "a validation run (training False) after every training run, same graph",
        (_tf_layer("batch_normalization", 0.9),)),
    "fused_batch_norm_by_hand": Expect(
        "tf.nn.fused_batch_norm's batch moments (unbiased variance) + assign_moving_average",
        (_by_hand("model/BatchNorm/mean/EMA:0", "model/BatchNorm/variance/EMA:0", 0.9, 1e-5,
                  U),)),
    "gan_discriminator_auto_reuse": Expect(
        "one batch norm (AUTO_REUSE) updated twice per discriminator run (real, pooled fake)",
        (_tf_layer("discriminator/d_bn0", 0.8),)),
    "ghost_batch_keras": Expect(
        "Keras BatchNormalization(virtual_batch_size=4), model.fit on batches of 16",
        (_tf_layer("batch_normalization", 0.9, ghost=4, convention=None),)),
    "keras_bn_axis3_graph": Expect(
        "Keras BatchNormalization(axis=3) on a conv output in a tf.Graph, layer.updates",
        (_tf_layer("batch_normalization", 0.85, 1e-3, U),)),
    "keras_conv_fit": Expect(
        "Keras Conv2D + BatchNormalization, model.fit",
        (_tf_layer("batch_normalization", 0.9, 1e-3, U),)),
    "keras_fit_validation": Expect(
        "Keras BatchNormalization on the input, model.fit with validation_data",
        (_tf_layer("batch_normalization", 0.8),)),
    "keras_momentum_zero": Expect(
        "Keras BatchNormalization(momentum=0) with zero initialisers",
        (_tf_layer("batch_normalization", 0.0),)),
    "keras_train_on_batch": Expect(
        "Keras functional model, train_on_batch loop, evaluate",
        (_tf_layer("batch_normalization", 0.75, 1e-4),)),
    "layers_forgot_update_ops_cnn": Expect(
        "tf.layers batch norm without the UPDATE_OPS dependency: the statistics never move",
        (_tf_layer("batch_normalization", 0.9, 1e-3, None),),
        verdict="FAIL: statistics move when training",
        diagnosis=frozenset({("batch_normalization/moving_mean:0", "moving_mean", "no update"),
                             ("batch_normalization/moving_mean:0", "moving_variance",
                              "no update")})),
    "layers_fused_false_images": Expect(
        "tf.layers batch norm with fused=False on 4-D images (biased variance)",
        (_tf_layer("batch_normalization", 0.95),)),
    "moments_two_decays": Expect(
        "population mean averaged with decay 0.9, variance with 0.99",
        (_by_hand("pop_mean:0", "pop_var:0", 0.9, 1e-3, variance_momentum=0.99),)),
    "monitored_training_session": Expect(
        "MonitoredTrainingSession with StopAtStepHook and FinalOpsHook",
        (_tf_layer("batch_normalization", 0.75),)),
    "renorm_layers": Expect(
        "tf.layers batch_normalization(renorm=True)",
        (_tf_layer("batch_normalization", 0.9, convention=None, renorm=True),)),
    "resnet_block": Expect(
        "ResNet stem and projection block: fused batch norm, decay 0.997, epsilon 1e-5",
        tuple(_tf_layer(name, 0.997, 1e-5, U) for name in (
            "batch_normalization", "batch_normalization_1", "batch_normalization_2",
            "batch_normalization_3"))),
    "saver_restore_inference": Expect(
        "Saver save, restore into a new session, inference",
        (_tf_layer("bn_input", 0.9), _tf_layer("bn_hidden", 0.9))),
    "siamese_towers": Expect(
        "one batch norm (reuse_variables) updated twice per run (left and right tower)",
        (_tf_layer("siamese/input_bn", 0.9),)),
    "tfdata_initializable": Expect(
        "initializable tf.data iterator, fused batch norm on the images",
        (_tf_layer("batch_normalization", 0.7, 1e-3, U),)),
    "tfdata_one_shot": Expect(
        "one-shot tf.data iterator, batch norm on the features",
        (_tf_layer("batch_normalization", 0.85),)),
    "two_graphs": Expect(
        "the same model in two tf.Graph()s, momentum 0.9 and 0.6",
        (_tf_layer("batch_normalization", 0.9), _tf_layer("batch_normalization", 0.6))),
}

# Under TF2 behaviour (the "eager" mode) with a tensor training flag, as model.fit passes it,
# tf_keras reshapes a virtual-batch input to [-1, 1, ...]: every "ghost batch" is the whole batch
# (tf_keras batch_normalization.py, "if tf.__internal__.tf2.enabled(): expanded_shape = [vbs, -1]
# if training_value else [-1, 1]"), so the layer averages the whole batch's biased variance.
MODE_EXPECTATIONS = {
    ("ghost_batch_keras", "eager"): Expect(
        "virtual_batch_size=4 under TF2 behaviour with model.fit: whole-batch statistics",
        (_tf_layer("batch_normalization", 0.9, ghost=None, convention=B),)),
}

# Programs whose own output depends on the order TensorFlow happens to run two updates of one
# variable in a run (nothing orders them): the lines that show those statistics may differ between
# two plain runs, so the plain and traced outputs are compared on the other lines only.
RACY_LINES = {
    "dcgan_discriminator_applied_twice": r"^d/bn1/",
    "siamese_towers": r"^(test distances|siamese/input_bn/)",
    "gan_discriminator_auto_reuse": r"^discriminator/d_bn0/",
}


def expectation(name, mode):
    return MODE_EXPECTATIONS.get((name, mode), EXPECTATIONS[name])


# --- what fails today because of the tool -----------------------------------------------------
# (program, mode, check) -> what the tool gets wrong; mode "*": both. check: plain, traced,
# verdict, final, numpy.

KNOWN_FAILURES = {}  # none today; an entry: (program, mode or "*", check) -> reason


def _cases(names, check):
    cases = []
    for name in names:
        for mode in MODES:
            reason = KNOWN_FAILURES.get((name, mode, check)) or KNOWN_FAILURES.get(
                (name, "*", check))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason and not os.environ.get("ZOO_NO_XFAIL") else []
            cases.append(pytest.param(name, mode, id=f"{name}-{mode}", marks=marks))
    return cases


# --- running the zoo ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """{mode: results.json} of the harness, both modes run at once (two processes)."""
    reuse = os.environ.get("BNREPRO_ZOO_RESULTS")
    if reuse:
        return harness.read_results(reuse)
    return harness.run_modes(str(tmp_path_factory.mktemp("zoo")))


def _entry(zoo, name, mode):
    entry = zoo[mode]["programs"].get(name)
    if entry is None:
        pytest.fail(f"the {mode} harness has no result for {name}: "
                    f"{zoo[mode].get('log', 'it stopped before this program')}")
    if "harness_error" in entry:
        pytest.fail(f"the harness failed on {name}:\n{entry['harness_error']}")
    return entry


_REPORTS = {}


def _traced(zoo, name, mode):
    """(trace, report) of the traced run."""
    entry = _entry(zoo, name, mode)
    traced = entry["traced"]
    if not traced.get("trace"):
        pytest.fail(f"no trace written (status {traced['status']}):\n{traced['error']}")
    key = (name, mode, traced["trace"])
    if key not in _REPORTS:
        trace = read_trace(traced["trace"])
        _REPORTS[key] = trace, verify_trace(trace)
    return _REPORTS[key]


# --- (a) (b): the program runs, and runs the same traced -----------------------------------------

@pytest.mark.parametrize("name,mode", _cases(NAMES, "plain"))
def test_the_program_runs_plain(zoo, name, mode):
    plain = _entry(zoo, name, mode)["plain"]
    assert plain["status"] == 0, plain["error"]
    assert plain["stdout"].strip(), "the program printed nothing"
    flags = zoo[mode]["flags"]
    assert plain["flags"] == flags, "the program changed the process' graph mode"
    assert flags["resource_variables"] is (mode == "eager")
    assert flags["control_flow_v2"] is (mode == "eager")


@pytest.mark.parametrize("name,mode", _cases(NAMES, "traced"))
def test_the_traced_program_prints_the_same(zoo, name, mode):
    entry = _entry(zoo, name, mode)
    plain, traced = entry["plain"], entry["traced"]
    assert traced["status"] == 0, traced["error"]
    assert "check it with: bnrepro verify" in traced["summary"], traced["summary"]
    expected, got = plain["stdout"], traced["stdout"]
    if name in RACY_LINES:
        racy = re.compile(RACY_LINES[name])
        assert len(got.splitlines()) == len(expected.splitlines())
        expected, got = ("\n".join(line for line in text.splitlines() if not racy.match(line))
                         for text in (expected, got))
    assert got == expected


# --- (c): verify's verdict and the layers found --------------------------------------------------

def _layer_names(trace):
    """trace layer name -> its moving mean's variable."""
    return {layer: entry.get("variables", {}).get("moving_mean")
            for layer, entry in trace.layers.items()}


def _close(got, want):
    return got is not None and abs(float(got) - want) <= 1e-6 * max(abs(want), 1e-30)


def _match_layers(trace, expected):
    """[(Layer, trace layer name or None)]: each expected layer with the found layer holding its
    moving mean (of equal momentum when several do)."""
    free = dict(_layer_names(trace))
    pairs = []
    for layer in expected:
        candidates = [name for name, mean in free.items() if mean == layer.mean]
        same_momentum = [name for name in candidates
                         if _close(trace.layers[name].get("momentum"), layer.momentum)]
        chosen = (same_momentum or candidates or [None])[0]
        if chosen is not None:
            del free[chosen]
        pairs.append((layer, chosen))
    return pairs


def _layer_problems(trace, report, expect):
    problems = []
    found = _layer_names(trace)
    if len(found) != len(expect.layers):
        problems.append(f"{len(found)} layers found ({sorted(found.values(), key=str)}), "
                        f"expected {len(expect.layers)}")
    for layer, name in _match_layers(trace, expect.layers):
        if name is None:
            problems.append(f"no layer found for {layer.mean}")
            continue
        entry = trace.layers[name]
        variance_momentum = entry.get("momentum_variance", entry.get("momentum"))
        checks = [
            ("moving variance", entry.get("variables", {}).get("moving_variance"),
             layer.variance, lambda got, want: got == want),
            ("momentum", entry.get("momentum"), layer.momentum, _close),
            ("variance momentum", variance_momentum,
             layer.momentum if layer.variance_momentum is None else layer.variance_momentum,
             _close),
            ("epsilon", entry.get("epsilon"), layer.epsilon, _close),
            ("zero_debias", bool(entry.get("zero_debias")), layer.zero_debias,
             lambda got, want: got == want),
            ("virtual_batch_size", entry.get("virtual_batch_size"), layer.ghost,
             lambda got, want: got == want),
            ("renorm", bool(entry.get("renorm")), layer.renorm, lambda got, want: got == want),
        ]
        kind = str(entry.get("kind"))
        if bool(LIBRARY_LABEL.search(kind)) is not layer.library:
            problems.append(f"layer {name} ({layer.mean}) labelled {kind!r}: "
                            + ("a tf.layers / tf_keras layer" if layer.library
                               else "written by hand, no library layer"))
        if layer.convention is not None:
            checks.append(("variance convention", report.variance_used.get(name),
                           layer.convention, lambda got, want: got == want))
        for what, got, want, same in checks:
            if not same(got, want):
                problems.append(f"layer {name} ({layer.mean}): {what} {got!r}, expected {want!r}")
    return problems


def _findings(trace, report):
    means = _layer_names(trace)
    return {(means.get(finding.layer, finding.layer), finding.quantity, finding.convention)
            for finding in report.diagnosis}


@pytest.mark.parametrize("name,mode", _cases(NAMES, "verdict"))
def test_the_verdict_and_the_layers_are_what_the_program_does(zoo, name, mode):
    trace, report = _traced(zoo, name, mode)
    expect = expectation(name, mode)
    verdict = report.verdict()
    shown = f"{expect.what}\n{_entry(zoo, name, mode)['traced']['summary']}\n{report.format()}"
    problems = _layer_problems(trace, report, expect)
    if expect.verdict == "PASS":
        if not (report.passed and verdict.startswith("PASS")):
            problems.append(f"verdict {verdict!r}, expected PASS")
        for check in report.checks:  # a PASS checks the updates every program makes
            if check.name in ("moving_mean update", "moving_variance update") and not (
                    check.compared):
                problems.append(f"PASS without checking any {check.name}")
    elif report.passed or not verdict.startswith(expect.verdict):
        problems.append(f"verdict {verdict!r}, expected {expect.verdict}")
    findings = _findings(trace, report)
    if findings != set(expect.diagnosis):
        problems.append(f"diagnosis {sorted(findings, key=str)}, expected "
                        f"{sorted(expect.diagnosis)}")
    averages = {entry.get("variable"): entry.get("momentum")
                for entry in trace.averages.values()}
    for variable, momentum in expect.averages.items():
        if not _close(averages.get(variable), momentum):
            problems.append(f"average {variable}: momentum {averages.get(variable)!r}, "
                            f"expected {momentum}")
    assert not problems, "\n".join(problems) + "\n\n" + shown


# --- (d): the trace's last statistics are what the program printed -------------------------------

_PRINTED = re.compile(r"^(\S+:\d+) \[+([^\[\]]*)\]+$")


def printed_statistics(stdout):
    """[(variable, [(value, half a unit of its last printed digit)])] of the lines
    ``name:0 [v v ...]`` a program prints (np.array2string, one line)."""
    found = []
    for line in stdout.splitlines():
        match = _PRINTED.match(line.strip())
        if match:
            numbers = []
            for token in match.group(2).split():
                mantissa, _, exponent = token.lower().partition("e")
                decimals = len(mantissa.partition(".")[2])
                numbers.append((float(token), 0.5 * 10.0 ** (int(exponent or 0) - decimals)))
            found.append((match.group(1), numbers))
    return found


def final_statistics(trace):
    """[(variable, last recorded value)] of every moving statistic and average in the trace."""
    finals = []
    for layer, entry in trace.layers.items():
        records = [record["bn"][layer] for record in trace.steps if layer in record.get("bn", {})]
        for quantity in ("moving_mean", "moving_variance"):
            variable = entry.get("variables", {}).get(quantity)
            if records and variable and quantity in records[-1]:
                finals.append((variable, np.asarray(records[-1][quantity], np.float64)))
    for name, entry in trace.averages.items():
        records = [record["averages"][name] for record in trace.steps
                   if name in record.get("averages", {})]
        if records and "value" in records[-1]:
            finals.append((entry.get("variable"), np.asarray(records[-1]["value"], np.float64)))
    return finals


def _printed_match(value, numbers):
    value = value.ravel()
    return value.size == len(numbers) and all(
        abs(got - printed) <= half * (1 + 1e-9) + 1e-15 * abs(printed)
        for got, (printed, half) in zip(value, numbers))


@pytest.mark.parametrize("name,mode", _cases(NAMES, "final"))
def test_the_last_recorded_statistics_are_what_the_program_printed(zoo, name, mode):
    entry = _entry(zoo, name, mode)
    printed = printed_statistics(entry["traced"]["stdout"])
    assert printed, "the program printed no statistics"
    trace, _ = _traced(zoo, name, mode)
    finals = final_statistics(trace)
    problems = []
    for variable, numbers in printed:
        candidates = [index for index, (name_, _) in enumerate(finals) if name_ == variable]
        matching = [index for index in candidates if _printed_match(finals[index][1], numbers)]
        if matching:
            del finals[matching[0]]
        elif candidates:
            problems.append(f"{variable}: printed {[n for n, _ in numbers]}, last recorded "
                            f"{[f[1].ravel().tolist() for f in finals if f[0] == variable]}")
        else:
            problems.append(f"{variable}: printed, but the trace records no such statistic")
    assert not problems, "\n".join(problems) + f"\n{entry['traced']['summary']}"


# --- (e): the moving statistics recomputed with NumPy from the fed batches -----------------------

@dataclass
class Fed:
    """One layer fed the program's own data: the batches it normalised (per training run: a list
    of the arrays its updates consumed, in any order when several), and how it averages them."""

    mean: str  # moving mean variable
    variance: str
    momentum: float
    runs: list  # [[batch, ...], ...]
    mean_initial: float = 0.0
    variance_initial: float = 1.0
    variance_momentum: Optional[float] = None
    ddof: int = 0  # the variance averaged: 0 biased, 1 unbiased (fused kernel)
    zero_debias: bool = False
    ghost: Optional[int] = None  # strided ghost batches of this size (tf_keras)
    variance_check: bool = True  # False: renorm (its moving variance follows moving_stddev)


def _draws(seed, count, draw):
    rng = np.random.RandomState(seed)
    return [draw(rng) for _ in range(count)]


def _slices(data, size, epochs):
    return [data[start:start + size] for _ in range(epochs) for start in range(0, len(data), size)]


def _single(batches):
    return [[batch] for batch in batches]


def _recipe_cnn_placeholder_with_default():
    def draw(rng):
        batch = rng.normal(0.5, 0.25, size=(8, 6, 6, 2)).astype(np.float32)
        rng.randint(0, 2, size=(8, 1))
        return batch
    return [Fed("batch_normalization/moving_mean:0", "batch_normalization/moving_variance:0",
                0.8, _single(_draws(2, 5, draw)), ddof=1)]


def _recipe_siamese_towers():
    def draw(rng):
        left = rng.rand(8, 4).astype(np.float32) * 2
        right = rng.rand(8, 4).astype(np.float32) * 2 + 0.5
        rng.randint(0, 2, 8)
        return [left, right]
    return [Fed("siamese/input_bn/moving_mean:0", "siamese/input_bn/moving_variance:0", 0.9,
                _draws(5, 5, draw))]


def _recipe_cond_assign_population():
    batches = _draws(6, 6, lambda rng: rng.uniform(-1.0, 3.0, size=(10, 3)).astype(np.float32))
    return [Fed("pop_mean:0", "pop_var:0", 0.9, _single(batches))]


def _recipe_assign_moving_average_in_scope():
    batches = _draws(7, 5, lambda rng: rng.normal(3.0, 2.0, size=(8, 4)).astype(np.float32))
    return [Fed("bn1/moving_mean:0", "bn1/moving_variance:0", 0.9, _single(batches),
                zero_debias=True)]


def _recipe_assign_moving_average_no_scope():
    batches = _draws(8, 6, lambda rng: rng.uniform(0.0, 10.0, size=(12, 3)).astype(np.float32))
    return [Fed("moving_mean:0", "moving_var:0", 0.95, _single(batches), zero_debias=True)]


def _recipe_assign_moving_average_no_debias_cond():
    batches = _draws(9, 5, lambda rng: rng.gamma(2.0, 1.5, size=(4, 5, 5, 2)).astype(np.float32))
    return [Fed("bn_input/moving_mean:0", "bn_input/moving_var:0", 0.9, _single(batches))]


def _recipe_renorm_layers():
    batches = _draws(10, 6, lambda rng: rng.normal([1.0, -2.0, 5.0], [1.0, 0.5, 2.0],
                                                   size=(8, 3)).astype(np.float32))
    return [Fed("batch_normalization/moving_mean:0", "batch_normalization/moving_variance:0",
                0.9, _single(batches), variance_check=False)]


def _recipe_keras_fit_validation():
    rng = np.random.RandomState(12)
    data = rng.normal([10.0, -3.0, 0.5, 100.0], [2.0, 1.0, 0.1, 20.0], size=(24, 4)).astype(
        np.float32)
    return [Fed("batch_normalization/moving_mean:0", "batch_normalization/moving_variance:0",
                0.8, _single(_slices(data, 8, 2)))]


def _recipe_keras_momentum_zero():
    batches = _draws(14, 4, lambda rng: rng.exponential(2.0, size=(6, 3)).astype(np.float32))
    return [Fed("batch_normalization/moving_mean:0", "batch_normalization/moving_variance:0",
                0.0, _single(batches), variance_initial=0.0)]


def _recipe_moments_two_decays():
    batches = _draws(15, 6, lambda rng: rng.lognormal(0.0, 0.5, size=(10, 4)).astype(np.float32))
    return [Fed("pop_mean:0", "pop_var:0", 0.9, _single(batches), variance_momentum=0.99)]


def _recipe_epsilon_tiny_assign_moving_average():
    def draw(rng):
        batch = rng.normal(0.0, 1e-3, size=(8, 3)).astype(np.float32) + np.float32(0.25)
        rng.randint(0, 3, size=8)
        return batch
    return [Fed("input_norm/pop_mean:0", "input_norm/pop_var:0", 0.95,
                _single(_draws(16, 5, draw)))]


def _recipe_epsilon_inside_sqrt():
    batches = _draws(17, 6, lambda rng: rng.uniform(-5.0, 5.0, size=(8, 4)).astype(np.float32))
    return [Fed("running_mean:0", "running_var:0", 0.9, _single(batches))]


def _recipe_cond_decay_0997():
    rng = np.random.RandomState(19)
    batches = []
    for step in range(6):
        batches.append(rng.normal(4.0, 3.0, size=(8, 3)).astype(np.float32))
        if step % 2 == 1:  # an evaluation batch: decay 1.0 leaves the statistics as they are
            rng.normal(4.0, 3.0, size=(8, 3))
    # the program's decay is a float32 tensor, both weights computed from it: m = float32(0.997)
    # and 1 - m = 0.0030000210 (exact in float32), not the decimal 0.003
    return [Fed("pop_mean:0", "pop_var:0", float(np.float32(0.997)), _single(batches))]


def _recipe_tfdata_one_shot():
    data = np.random.RandomState(21).uniform(-2.0, 6.0, size=(24, 3)).astype(np.float32)
    return [Fed("batch_normalization/moving_mean:0", "batch_normalization/moving_variance:0",
                0.85, _single(_slices(data, 8, 2)))]


def _recipe_tfdata_initializable():
    rng = np.random.RandomState(22)
    images = rng.beta(2.0, 5.0, size=(12, 4, 4, 3)).astype(np.float32) * 255.0
    return [Fed("batch_normalization/moving_mean:0", "batch_normalization/moving_variance:0",
                0.7, _single(_slices(images, 4, 2)), ddof=1)]


def _recipe_saver_restore_inference():
    batches = _draws(23, 5, lambda rng: rng.normal([0.0, 5.0, -5.0], [1.0, 2.0, 0.5],
                                                   size=(8, 3)).astype(np.float32))
    return [Fed("bn_input/moving_mean:0", "bn_input/moving_variance:0", 0.9, _single(batches))]


def _recipe_monitored_training_session():
    batches = _draws(24, 5, lambda rng: rng.normal(1.0, 4.0, size=(8, 4)).astype(np.float32))
    return [Fed("batch_normalization/moving_mean:0", "batch_normalization/moving_variance:0",
                0.75, _single(batches))]


def _recipe_two_graphs():
    batches = _draws(25, 5, lambda rng: rng.normal([3.0, -1.0], [1.0, 0.2], size=(6, 2)).astype(
        np.float32))
    return [Fed("batch_normalization/moving_mean:0", "batch_normalization/moving_variance:0",
                momentum, _single(batches)) for momentum in (0.9, 0.6)]


def _recipe_evaluation_every_step():
    rng = np.random.RandomState(26)
    rng.normal(2.0, 1.0, size=(10, 5))  # the validation batch, drawn first
    batches = [rng.normal(2.0, 1.0, size=(10, 5)).astype(np.float32) for _ in range(6)]
    return [Fed("batch_normalization/moving_mean:0", "batch_normalization/moving_variance:0",
                0.9, _single(batches))]


def _recipe_build_after_first_run():
    batches = _draws(27, 6, lambda rng: rng.uniform(0.0, 4.0, size=(8, 3)).astype(np.float32))
    return [Fed("features_bn/moving_mean:0", "features_bn/moving_variance:0", 0.8,
                _single(batches))]


def _recipe_ghost_batch_keras(mode):
    data = np.random.RandomState(28).normal([0.0, 10.0, -4.0], [1.0, 3.0, 2.0],
                                            size=(48, 3)).astype(np.float32)
    return [Fed("batch_normalization/moving_mean:0", "batch_normalization/moving_variance:0",
                0.9, _single(_slices(data, 16, 2)), ghost=4 if mode == "v1" else None)]


def _recipe_ema_cond_conv():
    batches = _draws(29, 5, lambda rng: rng.normal(1.0, 2.0, size=(4, 6, 6, 2)).astype(np.float32))
    return [Fed("bn/bn/moments/Squeeze/ExponentialMovingAverage:0",
                "bn/bn/moments/Squeeze_1/ExponentialMovingAverage:0", 0.5, _single(batches),
                variance_initial=0.0)]


def _recipe_ema_polyak_weights():
    batches = _draws(30, 5, lambda rng: rng.normal(2.0, 1.5, size=(8, 3)).astype(np.float32))
    return [Fed("batch_normalization/moving_mean:0", "batch_normalization/moving_variance:0",
                0.9, _single(batches))]


def _recipe_layers_forgot_update_ops_cnn():
    """No update runs: the statistics stay at their initial 0 and 1 (no run moves them)."""
    return [Fed("batch_normalization/moving_mean:0", "batch_normalization/moving_variance:0",
                0.9, [])]


def _recipe_fused_batch_norm_by_hand():
    def draw(rng):
        batch = rng.normal([1.0, -1.0], [0.5, 2.0], size=(4, 4, 4, 2)).astype(np.float32)
        rng.randint(0, 2, size=4)
        return batch
    return [Fed("model/BatchNorm/mean/EMA:0", "model/BatchNorm/variance/EMA:0", 0.9,
                _single(_draws(32, 5, draw)), ddof=1)]


def _recipe_layers_fused_false_images():
    batches = _draws(33, 6, lambda rng: rng.poisson(4.0, size=(5, 3, 3, 2)).astype(np.float32))
    return [Fed("batch_normalization/moving_mean:0", "batch_normalization/moving_variance:0",
                0.95, _single(batches))]


def _recipe_keras_train_on_batch():
    batches = _draws(34, 5, lambda rng: rng.chisquare(3.0, size=(8, 5)).astype(np.float32))
    return [Fed("batch_normalization/moving_mean:0", "batch_normalization/moving_variance:0",
                0.75, _single(batches))]


RECIPES = {name[len("_recipe_"):]: function for name, function in dict(globals()).items()
           if name.startswith("_recipe_")}


def _recipe(name, mode):
    function = RECIPES[name]
    return function(mode) if function.__code__.co_argcount else function()


def ghost_mean_of(batch, size):
    """The mean of the ghost batches' means (strided rows j, j + G, ... as tf_keras groups
    them, G = N / size), with its bound."""
    ghosts = _ghosts(batch, size)
    means = [mean_of(ghost) for ghost in ghosts]
    return (np.mean([m for m, _ in means], axis=0),
            np.mean([b for _, b in means], axis=0) + tolerances.accumulated_rounding(len(ghosts)) * np.mean(
                [np.abs(m) for m, _ in means], axis=0))


def ghost_variance_of(batch, size):
    """The mean of the ghost batches' biased variances, with its bound."""
    ghosts = _ghosts(batch, size)
    variances = [variance_of(ghost) for ghost in ghosts]
    return (np.mean([v for v, _ in variances], axis=0),
            np.mean([b for _, b in variances], axis=0) + tolerances.accumulated_rounding(len(ghosts)) * np.mean(
                [np.abs(v) for v, _ in variances], axis=0))


def _ghosts(batch, size):
    groups = len(batch) // size
    return [batch[j::groups] for j in range(groups)]


def _statistics(fed, quantity):
    if fed.ghost:
        return (lambda batch: ghost_mean_of(batch, fed.ghost)) if quantity == "moving_mean" \
            else (lambda batch: ghost_variance_of(batch, fed.ghost))
    return mean_of if quantity == "moving_mean" else (lambda batch: variance_of(batch, fed.ddof))


def _recorded_states(trace, variable, momentum, initial):
    """The recorded values of ``variable`` (a layer's moving statistic, or an average the trace
    did not pair into a layer) after each run that changed it, the repeats (runs that did not
    move it) and the initial state left out; ``None`` when the trace has no such statistic."""
    states = None
    candidates = [(layer, quantity) for layer, entry in trace.layers.items()
                  for quantity, name in entry.get("variables", {}).items() if name == variable]
    preferred = [(layer, quantity) for layer, quantity in candidates
                 if _close(trace.layers[layer].get("momentum"), momentum)]
    if candidates:
        layer, quantity = (preferred or candidates)[0]
        states = [np.asarray(record["bn"][layer][quantity], np.float64) for record in trace.steps
                  if quantity in record.get("bn", {}).get(layer, {})]
    for average, entry in trace.averages.items():
        if states is None and entry.get("variable") == variable:
            states = [np.asarray(record["averages"][average]["value"], np.float64)
                      for record in trace.steps
                      if "value" in record.get("averages", {}).get(average, {})]
    if states is None:
        return None
    changed = []
    for state in states:
        previous = changed[-1] if changed else np.full(state.shape, initial)
        if not np.array_equal(state, previous):
            changed.append(state)
    return changed


def _expected_chain(fed, quantity, momentum, initial, recorded):
    """Check ``recorded`` against the chain of averages; several updates in a run may run in
    either order (each run's recorded state must be one of the orders' results). Returns the
    problems."""
    statistic = _statistics(fed, quantity)
    if all(len(run) == 1 for run in fed.runs):
        expected, bounds = expected_averages([run[0] for run in fed.runs], momentum,
                                             np.full(1, initial), statistic,
                                             zero_debias=fed.zero_debias)
        alternatives = [[(value, bound)] for value, bound in zip(expected, bounds)]
    else:
        alternatives = None
    problems = []
    if len(recorded) != len(fed.runs):
        return [f"{quantity}: {len(recorded)} recorded changes, {len(fed.runs)} training runs "
                f"expected"]
    value, error = np.float64(initial), np.float64(0.0)
    for step, (run, got) in enumerate(zip(fed.runs, recorded), start=1):
        if alternatives is not None:
            options = alternatives[step - 1]
        else:  # several updates: every order, from our own previous value
            options = []
            for order in ([0, 1], [1, 0]) if len(run) == 2 else [list(range(len(run)))]:
                new, new_error = value, error
                for index in order:
                    consumed, consumed_error = statistic(run[index])
                    average = formulas.moving_average(new, consumed, momentum)
                    new_error = momentum * new_error + tolerances.moving_average_bound(
                        new, consumed, momentum, average, statistic_error=consumed_error)
                    new = average
                options.append((new, new_error + 4 * tolerances.UNIT_ROUNDOFF * np.abs(new),
                                new_error))
            if len(run) == 2:  # unordered updates may also both read the state before the run:
                # assign_sub(V, (V - b_i) * (1 - m)) with both deltas taken from the old V,
                # new = V - (V - b_1)(1 - m) - (V - b_2)(1 - m); or one may be lost: each alone
                alone = []
                for batch in run:
                    consumed, consumed_error = statistic(batch)
                    average = formulas.moving_average(value, consumed, momentum)
                    alone.append((average, momentum * error + tolerances.moving_average_bound(
                        value, consumed, momentum, average, statistic_error=consumed_error)))
                both = alone[0][0] + alone[1][0] - value
                both_error = alone[0][1] + alone[1][1] + error
                options.append((both, both_error + 4 * tolerances.UNIT_ROUNDOFF * (
                    np.abs(both) + np.abs(value)), both_error))
                options += [(average, bound + 4 * tolerances.UNIT_ROUNDOFF * np.abs(average),
                             bound) for average, bound in alone]
        fits = [option for option in options if np.all(np.abs(got - option[0]) <= option[1])]
        if not fits:
            problems.append(f"{quantity} after training run {step}: recorded {got.tolist()}, "
                            f"expected {[np.asarray(o[0]).tolist() for o in options]} "
                            f"(bounds {[np.asarray(o[1]).max() for o in options]})")
            break
        if alternatives is None:
            value, error = fits[0][0], fits[0][2]
    return problems


@pytest.mark.parametrize("name,mode", _cases(sorted(RECIPES), "numpy"))
def test_the_moving_statistics_follow_the_fed_batches(zoo, name, mode):
    trace, _ = _traced(zoo, name, mode)
    problems = []
    for fed in _recipe(name, mode):
        quantities = [("moving_mean", fed.mean, fed.momentum, fed.mean_initial)]
        if fed.variance_check:
            quantities.append(("moving_variance", fed.variance, fed.momentum
                               if fed.variance_momentum is None else fed.variance_momentum,
                               fed.variance_initial))
        for quantity, variable, momentum, initial in quantities:
            # two layers may share a variable name (two graphs): told apart by the mean's momentum
            recorded = _recorded_states(trace, variable, fed.momentum, initial)
            if recorded is None:
                problems.append(f"the trace records no {variable}")
                continue
            problems += [f"{variable}: {problem}" for problem in
                         _expected_chain(fed, quantity, momentum, initial, recorded)]
    assert not problems, "\n".join(problems)
