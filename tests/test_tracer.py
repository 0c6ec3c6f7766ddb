"""``bnrepro trace`` on programs written as users write them (tests/user_scripts/README.md).

Each program runs twice, plainly (as ``python PROGRAM``) and traced (as ``bnrepro trace --out DIR
PROGRAM`` runs it: ``bnrepro.graphs.tracing.trace_script``), in both TF1 graph modes, all programs
of a mode in one process (tests/zoo/harness.py, as the zoo's): ``eager``, ``disable_eager_execution()``
(resource variables, ``If``); and ``v1``, ``disable_v2_behavior()`` first, as TF1 code runs (ref
variables, ``Switch``/``Merge``). Its own output must be the same. Each program normalises batches
it draws from ``numpy.random.RandomState(0)``, so the moving statistics it should end with are
recomputed here with NumPy from the same batches, step by step, with their float32 rounding bounds
(:mod:`bnrepro.check.tolerances`), independently of TensorFlow and of ``bnrepro verify``; then verify's
verdict and diagnosis are checked against what each program does wrong.
"""
import os

import numpy as np
import pytest

from bnrepro.check import formulas, tolerances
from bnrepro.check.diagnose import conventions_followed
from bnrepro.trace import read_trace
from bnrepro.check.verify import verify_trace
from zoo import harness

SCRIPTS = os.path.join(os.path.dirname(__file__), "user_scripts")
TRACED = ["layers_update_ops", "layers_forgot_update_ops", "keras_layer_graph", "keras_fit",
          "moments_assign_moving_average", "moments_ema_cond", "plain_assign",
          "evaluation_moves", "monitored_session_hooks"]
SELF_TRACED = ["monitored_session"]  # writes its own trace through bnrepro.TraceHook


@pytest.fixture(scope="module")
def harness_runs(tmp_path_factory):
    """{mode: the harness' results}: every program of tests/user_scripts run plainly and traced,
    in each mode's own process, the two modes at once."""
    return harness.run_modes(str(tmp_path_factory.mktemp("traced")), programs=SCRIPTS,
                             self_traced=SELF_TRACED, timeout=300)


def test_each_mode_is_the_graph_mode_it_names(harness_runs):
    """``v1``: ref variables and TF1 control flow (``Switch``/``Merge``); ``eager``: resource
    variables and ``If``; graph mode in both."""
    for mode in harness.MODES:
        assert harness_runs[mode]["flags"] == {"eager": False,
                                               "resource_variables": mode == "eager",
                                               "control_flow_v2": mode == "eager"}, mode


@pytest.fixture(params=harness.MODES)
def runs(request, harness_runs):
    """name -> {"plain": {"status", "stdout", ...}, "traced": {... "summary"}, "trace": path}:
    each program's runs in one graph mode (``v1``: v2 behaviour disabled; ``eager``: eager
    execution disabled only)."""
    results = harness_runs[request.param]
    if set(results["programs"]) != set(TRACED + SELF_TRACED):
        pytest.fail(f"the {request.param} harness ran {sorted(results['programs'])}: "
                    f"{results.get('log', '')}")
    programs = {}
    for name, entry in results["programs"].items():
        if "harness_error" in entry:
            pytest.fail(f"the harness failed on {name}:\n{entry['harness_error']}")
        traced = entry.get("traced", {})
        programs[name] = {**entry, "trace": entry.get("trace") or traced.get("trace"),
                          "flags": results["flags"]}
    return programs


def _batches(count, shape, draw):
    rng = np.random.RandomState(0)
    return [draw(rng, shape) for _ in range(count)]


def _uniform_batches(count, shape):
    return _batches(count, shape, lambda rng, size: (rng.rand(*size).astype(np.float32) * 4 + 1))


def expected_averages(batches, momentum, initial, statistic, *, zero_debias=False):
    """The moving average of ``statistic(batch)`` after each batch, from ``initial``, with the
    bound its float32 computation carries (each step's :func:`moving_average_bound`, the earlier
    steps' carried with weight ``momentum``)::

        value_t = momentum * value_(t-1) + (1 - momentum) * statistic(batch_t)

    ``zero_debias``: the average is kept from 0 and divided by ``1 - momentum^t``.
    """
    value = np.zeros_like(initial) if zero_debias else np.asarray(initial, dtype=np.float64)
    error = np.zeros_like(value)
    values, bounds = [], []
    for step, batch in enumerate(batches, start=1):
        consumed, consumed_error = statistic(batch)
        new = formulas.moving_average(value, consumed, momentum)
        error = momentum * error + tolerances.moving_average_bound(
            value, consumed, momentum, new, statistic_error=consumed_error)
        value = new
        scale = 1.0 - momentum ** step if zero_debias else 1.0
        values.append(value / scale)
        bounds.append(error / scale + 4 * tolerances.UNIT_ROUNDOFF * np.abs(value / scale))
    return values, bounds


def mean_of(batch, ddof=0):
    axes = formulas.reduction_axes(batch)
    return formulas.batch_mean(batch), tolerances.mean_bound(batch, axes)


def variance_of(batch, ddof=0):
    axes = formulas.reduction_axes(batch)
    convention = formulas.UNBIASED if ddof else formulas.BIASED
    return formulas.batch_variance(batch, convention), tolerances.variance_bound(batch, axes, ddof)


def _recorded(trace, layer, quantity):
    return [record["bn"][layer][quantity] for record in trace.steps[1:]]


def _assert_sequence(got, expected, bounds):
    assert len(got) == len(expected)
    for step, (value, want, bound) in enumerate(zip(got, expected, bounds), start=1):
        assert np.all(np.abs(value - want) <= bound), (step, value, want, bound)


# --- every program ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", TRACED)
def test_the_programs_output_is_unchanged_and_the_summary_follows(runs, name):
    plain, traced = runs[name]["plain"], runs[name]["traced"]
    assert plain["status"] == 0, plain["error"]
    assert traced["status"] == 0, traced["error"]
    assert traced["stdout"] == plain["stdout"]
    assert traced["summary"].startswith("bnrepro trace: ")
    assert f"bnrepro verify {runs[name]['trace']}" in traced["summary"]
    assert plain["flags"] == traced["flags"] == runs[name]["flags"], "a program changed the mode"


# --- each program's statistics, recomputed -----------------------------------------------------------

def test_tf_layers_with_update_ops(runs):
    trace = read_trace(runs["layers_update_ops"]["trace"])
    entry = trace.layers["batch_normalization"]
    assert (entry["momentum"], entry["epsilon"], entry["fused"]) == (0.8, 0.001, False)
    batches = _uniform_batches(5, (8, 3))
    for quantity, statistic, initial in (("moving_mean", mean_of, 0.0),
                                         ("moving_variance", variance_of, 1.0)):
        expected, bounds = expected_averages(batches, 0.8, np.full(3, initial), statistic)
        _assert_sequence(_recorded(trace, "batch_normalization", quantity), expected, bounds)
    assert [record["run"]["trained"] for record in trace.steps[1:]] == [True] * 5
    report = verify_trace(trace)
    assert report.passed and report.diagnosis == [], report.format()


def test_forgotten_update_ops_fail_with_their_diagnosis(runs):
    trace = read_trace(runs["layers_forgot_update_ops"]["trace"])
    for record in trace.steps:
        layer = record["bn"]["batch_normalization"]
        assert np.all(layer["moving_mean"] == 0) and np.all(layer["moving_variance"] == 1)
    report = verify_trace(trace)
    assert not report.passed
    assert report.verdict().startswith("FAIL: statistics move when training: step 1")
    assert conventions_followed(report.diagnosis) == {
        ("batch_normalization", "moving_mean"): "no update",
        ("batch_normalization", "moving_variance"): "no update"}


def test_keras_layer_on_images_takes_the_fused_kernel(runs):
    """4-D input: the fused kernel averages the unbiased variance (N = 4 * 2 * 2 = 16 per channel)."""
    trace = read_trace(runs["keras_layer_graph"]["trace"])
    entry = trace.layers["batch_normalization"]
    assert (entry["momentum"], entry["epsilon"], entry["fused"]) == (0.9, 0.001, True)
    batches = _batches(4, (4, 2, 2, 3), lambda rng, size: rng.normal(2.0, 3.0, size).astype(
        np.float32))
    expected, bounds = expected_averages(batches, 0.9, np.zeros(3), mean_of)
    _assert_sequence(_recorded(trace, "batch_normalization", "moving_mean"), expected, bounds)
    expected, bounds = expected_averages(batches, 0.9, np.ones(3),
                                         lambda batch: variance_of(batch, ddof=1))
    _assert_sequence(_recorded(trace, "batch_normalization", "moving_variance"), expected, bounds)
    report = verify_trace(trace)
    assert report.passed and report.diagnosis == [], report.format()
    assert report.variance_used == {"batch_normalization": formulas.UNBIASED}


def test_keras_fit_in_graph_mode(runs):
    """Six batches of 4 in order (two epochs of 12 examples, no shuffling), through the callables
    ``fit`` makes; momentum 0.7."""
    trace = read_trace(runs["keras_fit"]["trace"])
    data = (np.random.RandomState(0).rand(12, 3) * 4 + 1).astype(np.float32)
    batches = [data[start:start + 4] for _ in range(2) for start in (0, 4, 8)]
    expected, bounds = expected_averages(batches, 0.7, np.zeros(3), mean_of)
    _assert_sequence(_recorded(trace, "batch_normalization", "moving_mean"), expected, bounds)
    assert {record["run"]["call"] for record in trace.steps[1:]} == {"callable"}
    report = verify_trace(trace)
    assert report.passed and report.diagnosis == [], report.format()


def test_moments_with_zero_debiased_assign_moving_average(runs):
    trace = read_trace(runs["moments_assign_moving_average"]["trace"])
    (name, entry), = trace.layers.items()
    assert entry["zero_debias"] and entry["momentum"] == 0.9 and entry["epsilon"] == 0.001
    batches = _uniform_batches(4, (6, 3))
    for quantity, statistic in (("moving_mean", mean_of), ("moving_variance", variance_of)):
        expected, bounds = expected_averages(batches, 0.9, np.zeros(3), statistic,
                                             zero_debias=True)
        _assert_sequence(_recorded(trace, name, quantity), expected, bounds)
    assert [float(record["bn"][name]["local_step"]) for record in trace.steps] == [0, 1, 2, 3, 4]
    report = verify_trace(trace)
    assert report.passed and report.diagnosis == [], report.format()


def test_exponential_moving_average_in_a_cond_starts_from_zero(runs):
    trace = read_trace(runs["moments_ema_cond"]["trace"])
    (name, entry), = trace.layers.items()
    assert entry["momentum"] == 0.5 and not entry["zero_debias"]
    batches = _uniform_batches(4, (5, 3))
    expected, bounds = expected_averages(batches, 0.5, np.zeros(3), mean_of)
    _assert_sequence(_recorded(trace, name, "moving_mean"), expected, bounds)
    report = verify_trace(trace)
    assert report.passed, report.format()
    assert conventions_followed(report.diagnosis) == {(name, "initial value"): "from zero"}
    assert "the initial 0 still weighs 0.0625" in report.format()  # 0.5^4


def test_plain_assign_is_an_average_of_its_own(runs):
    trace = read_trace(runs["plain_assign"]["trace"])
    assert trace.layers == {} and list(trace.averages) == ["running_mean"]
    assert trace.averages["running_mean"]["momentum"] == 0.95
    batches = _uniform_batches(5, (4, 3))
    expected, bounds = expected_averages(batches, 0.95, np.zeros(3), mean_of)
    got = [record["averages"]["running_mean"]["value"] for record in trace.steps[1:]]
    _assert_sequence(got, expected, bounds)
    assert verify_trace(trace).passed


def test_an_evaluation_that_moves_the_statistics_is_named(runs):
    """Training and evaluation batches alternate, and both runs move the statistics."""
    trace = read_trace(runs["evaluation_moves"]["trace"])
    batches = _uniform_batches(6, (8, 3))
    expected, bounds = expected_averages(batches, 0.9, np.zeros(3), mean_of)
    _assert_sequence(_recorded(trace, "batch_normalization", "moving_mean"), expected, bounds)
    assert [record["run"]["trained"] for record in trace.steps[1:]] == [True, False] * 3
    report = verify_trace(trace)
    assert report.passed
    assert conventions_followed(report.diagnosis) == {
        ("batch_normalization", "runs"): "moved without training"}
    assert "moved in 3 runs that did not train (steps 2, 4, 6)" in report.format()


def test_monitored_training_session_through_the_hook(runs):
    plain = runs["monitored_session"]["plain"]
    assert plain["status"] == 0 and plain["stdout"] == "done\n", plain["error"]
    trace = read_trace(runs["monitored_session"]["trace"])
    batches = _uniform_batches(4, (8, 3))
    expected, bounds = expected_averages(batches, 0.6, np.zeros(3), mean_of)
    _assert_sequence(_recorded(trace, "batch_normalization", "moving_mean"), expected, bounds)
    assert {record["run"]["call"] for record in trace.steps[1:]} == {"MonitoredSession hook"}
    assert verify_trace(trace).passed


def test_monitored_training_session_with_tensorflows_own_hooks(runs):
    """Under ``bnrepro trace``: the session merges the hooks' fetches into a dict keyed by the hook
    objects, which must be walked as ``session.run`` walks it (unsorted) without changing the run."""
    traced = runs["monitored_session_hooks"]["traced"]
    assert traced["status"] == 0 and len(traced["stdout"].splitlines()) == 5, traced["error"]
    trace = read_trace(runs["monitored_session_hooks"]["trace"])
    batches = _uniform_batches(5, (8, 3))
    for quantity, statistic, initial in (("moving_mean", mean_of, 0.0),
                                         ("moving_variance", variance_of, 1.0)):
        expected, bounds = expected_averages(batches, 0.7, np.full(3, initial), statistic)
        _assert_sequence(_recorded(trace, "batch_normalization", quantity), expected, bounds)
    assert verify_trace(trace).passed


# --- the Python API and explain ------------------------------------------------------------------

def test_tracing_keeps_the_runs_before_an_error(tmp_path):
    """``with bnrepro.tracing(out)``: an exception in the block is passed on, and the trace of the
    runs before it is written, its end line saying why it stopped (verify: INCOMPLETE)."""
    import bnrepro
    from bnrepro.graphs.tfv1 import tf, tf1

    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, (None, 1))
        tf1.layers.batch_normalization(x, training=True, momentum=0.5)
        updates = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
        with pytest.raises(ZeroDivisionError):
            with bnrepro.tracing(str(tmp_path / "out")) as tracer:
                with tf1.Session() as session:
                    session.run(tf1.global_variables_initializer())
                    session.run(updates, {x: [[2.0], [4.0]]})  # mean 3, variance 1
                    1 / 0
    assert tracer.recorded == 2 and tracer.records is None  # streamed: none kept in memory
    trace = read_trace(str(tmp_path / "out"))
    assert trace.end["status"] == "stopped" and "ZeroDivisionError" in trace.end["reason"]
    layer = trace.steps[1]["bn"]["batch_normalization"]
    assert layer["moving_mean"].tolist() == [1.5] and layer["moving_variance"].tolist() == [1.0]
    report = verify_trace(trace)
    assert report.formulas_hold and report.verdict().startswith("INCOMPLETE: the run stopped")


def test_a_long_trace_keeps_the_layer_input_for_the_first_steps_then_every_hundredth(tmp_path):
    """By default (``bnrepro trace``, ``bnrepro.tracing``) the trace keeps steps 1-100, then the
    pairs (k - 1, k) of every 100th step and the last (of 199 and the last their state only);
    the batch statistics at the others, the layer's input at steps 1-100 and then every 100th,
    so that a long run neither holds a batch per step nor fetches one it would not keep."""
    import bnrepro
    from bnrepro.graphs.tfv1 import tf, tf1

    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, (None, 2))
        tf1.layers.batch_normalization(x, training=True, momentum=0.5)
        updates = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
        with bnrepro.tracing(str(tmp_path / "out")) as tracer:
            with tf1.Session() as session:
                session.run(tf1.global_variables_initializer())
                for step in range(1, 206):
                    session.run(updates, {x: [[step, 0.0], [step + 2.0, 1.0]]})
    trace = read_trace(str(tmp_path / "out"))
    steps = [record["step"] for record in trace.steps]
    assert steps == list(range(101)) + [199, 200, 205] and tracer.recorded == 206
    layers = {record["step"]: record["bn"]["batch_normalization"] for record in trace.steps[1:]}
    with_input = [step for step, layer in layers.items() if "batch_input" in layer]
    assert with_input == list(range(1, 101)) + [200]
    for step in (199, 205):  # a pair's first step, the last: their state only (their runs
        state_only = layers.pop(step)  # fetched nothing more)
        assert "batch_mean" not in state_only and state_only["moving_mean"].shape == (2,)
    assert all(layer["batch_mean"].tolist() == [step + 1.0, 0.5]
               for step, layer in layers.items())
    assert verify_trace(trace).passed


def test_explain_writes_out_averages_and_zero_debiased_layers(runs):
    from bnrepro.check.explain import explain_step

    text = explain_step(read_trace(runs["plain_assign"]["trace"]), 2)
    assert text.startswith("Step 2 of trace, average running_mean (momentum 0.95)")
    assert "value = momentum * old + (1 - momentum) * consumed" in text
    text = explain_step(read_trace(runs["moments_assign_moving_average"]["trace"]), 2)
    assert "moving_mean (zero-debiased, t = 2)" in text
    for line in text.splitlines():
        if "difference" in line:
            assert abs(float(line.rsplit("difference ", 1)[1])) < 1e-5, line


@pytest.mark.parametrize("use_resource", [False, True])
def test_a_callable_records_each_steps_values_with_ref_and_resource_variables(tmp_path,
                                                                            use_resource):
    """A session callable (as Keras' graph functions make) returns arrays that may share a
    variable's buffer. A ref variable's update changes that buffer in place, so the tracer copies;
    a resource variable's update copies a buffer that is still read, so it need not. Either way
    every record holds its own step's values: the running mean after step k and the batch mean the
    update consumed at step k (momentum 0.5, batches of known means)."""
    import bnrepro
    from tensorflow.core.protobuf import config_pb2
    from bnrepro.graphs.tfv1 import tf, tf1

    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, (None, 2))
        running = tf1.get_variable("running_mean", initializer=tf.zeros([2]), trainable=False,
                                   use_resource=use_resource)
        update = tf1.assign(running, running * 0.5 + tf.reduce_mean(x, 0) * 0.5)
        with bnrepro.tracing(str(tmp_path / "out")) as tracer:
            with tf1.Session() as session:
                session.run(tf1.global_variables_initializer())
                step = session._make_callable_from_options(  # noqa: SLF001
                    config_pb2.CallableOptions(feed=[x.name], target=[update.op.name]))
                for batch_mean in (2.0, 4.0, 8.0, 16.0):
                    step(np.array([[batch_mean - 1, 0.0], [batch_mean + 1, 2.0]], np.float32))
    state = next(iter(tracer.graphs.values()))
    assert state.aliasing is not use_resource
    averages = [record["averages"]["running_mean"]
                for record in read_trace(str(tmp_path / "out")).steps[1:]]
    # exact in float32: halves and sums of small powers of two
    assert [average["value"].tolist() for average in averages] == [
        [1.0, 0.5], [2.5, 0.75], [5.25, 0.875], [10.625, 0.9375]]
    assert [average["consumed"].tolist() for average in averages] == [
        [2.0, 1.0], [4.0, 1.0], [8.0, 1.0], [16.0, 1.0]]


def _trained_layer(after_reads):
    """A batch-norm layer trained by gradient descent after ``UPDATE_OPS`` (resource variables),
    with reads of its four variables ordered after ``after_reads`` ("train": the train op,
    "updates": the moving-average updates only, None: no reads)."""
    from bnrepro.graphs.tfv1 import tf, tf1

    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(0)
        x = tf1.placeholder(tf.float32, (None, 3))
        y = tf1.layers.batch_normalization(x, training=True, momentum=0.5)
        loss = tf.reduce_mean(tf.square(y - 1.0) * tf.constant([1.0, 2.0, 3.0]))
        updates = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
        with tf.control_dependencies(updates):
            train = tf1.train.GradientDescentOptimizer(0.1).minimize(loss)
        if after_reads:
            with tf.control_dependencies([train] if after_reads == "train" else updates):
                for variable in tf1.global_variables():
                    tf.raw_ops.ReadVariableOp(resource=variable.handle, dtype=tf.float32)
    return graph, x, train


@pytest.mark.parametrize("after_reads", ["train", "updates"])
def test_reads_after_the_train_op_give_the_state_without_a_second_call(tmp_path, after_reads):
    """Reads ordered after every update of their variable (``tf.control_dependencies([train_op])``)
    are fetched with the training run as the state after the step, with no second call; reads
    ordered after the moving averages' updates but not gamma's and beta's are not used (the state
    is read after the run). The records are the same as without any such reads."""
    import bnrepro
    from bnrepro.graphs import state_reader
    from bnrepro.graphs.tfv1 import tf1

    rng = np.random.RandomState(0)
    batches = [rng.rand(4, 3).astype(np.float32) for _ in range(6)]
    recorded, reads = {}, {}
    original = state_reader.StateReader.__call__
    for variant in (after_reads, None):
        graph, x, train = _trained_layer(variant)
        count = [0]

        def counted(reader, count=count):
            count[0] += 1
            return original(reader)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(state_reader.StateReader, "__call__", counted)
            with graph.as_default(), bnrepro.tracing(str(tmp_path / str(variant))) as tracer:
                with tf1.Session() as session:
                    session.run(tf1.global_variables_initializer())
                    for batch in batches:
                        session.run(train, {x: batch})
        recorded[variant] = read_trace(str(tmp_path / str(variant))).steps
        reads[variant] = count[0]
    # around the initialiser's run (before it: not initialised yet; after it: the initial state),
    # then after every step unless the step's own reads give the state
    assert reads[None] == 2 + len(batches)
    assert reads[after_reads] == (2 if after_reads == "train" else 2 + len(batches))
    assert len(recorded[after_reads]) == len(recorded[None]) == 1 + len(batches)
    for with_reads, without in zip(recorded[after_reads], recorded[None]):
        layer = with_reads["bn"]["batch_normalization"]
        expected = without["bn"]["batch_normalization"]
        assert layer.keys() == expected.keys() >= {"moving_mean", "gamma", "beta"}
        for quantity, value in expected.items():
            assert np.array_equal(layer[quantity], value), quantity
    # gamma and beta moved at every step: the records are each step's own values
    assert len({record["bn"]["batch_normalization"]["gamma"].tobytes()
                for record in recorded[after_reads]}) == 1 + len(batches)
