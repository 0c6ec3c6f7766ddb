"""``bnrepro trace`` streams: a long run's trace is written as it goes, so a run killed outright
(``SIGKILL``, out of memory) leaves a trace every reader opens (the steps of its written chunks, no
end line: INCOMPLETE), and ``SIGTERM`` ends the run with a whole trace whose end line says so. Both
graph modes: ``disable_v2_behavior()`` and ``disable_eager_execution()`` alone."""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from bnrepro.check.verify import verify_trace
from bnrepro.cli import main
from bnrepro.outdir import unfinished_outputs
from bnrepro.trace import read_trace
from conftest import GRAPH_MODES

# one tf.layers layer and a loss in the graph mode argv[1] names (v2: disable_v2_behavior())
MODEL = '''
import sys
import numpy as np
import tensorflow as tf
if sys.argv[1] == "v2":
    tf.compat.v1.disable_v2_behavior()
else:
    tf.compat.v1.disable_eager_execution()
tf1 = tf.compat.v1
x = tf1.placeholder(tf.float32, [None, 3])
y = tf1.layers.batch_normalization(x, training=True, momentum=0.9)
loss = tf.reduce_mean(tf.square(y * tf1.get_variable("w", [3]) - 1.0))
global_step = tf1.train.get_or_create_global_step()
with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)):
    train = tf1.train.GradientDescentOptimizer(0.01).minimize(loss, global_step)
rng = np.random.RandomState(0)
'''
PROGRAM = MODEL + '''
with tf1.Session() as session:
    session.run(tf1.global_variables_initializer())
    for step in range(1, 100001):
        session.run(train, {x: rng.randn(8, 3).astype(np.float32) * 2 + 1})
        if step % 50 == 0:
            print("step", step, flush=True)
'''


def _traced_until(tmp_path, mode, steps, signal_number):
    """Run ``PROGRAM`` under ``bnrepro trace`` (its 100,000 steps would take minutes), send it
    ``signal_number`` once it has printed ``step <steps>``; return ``(out, exit status)``."""
    script = tmp_path / "long_training.py"
    script.write_text(PROGRAM)
    out = tmp_path / f"out_{mode}"
    environment = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen([sys.executable, "-m", "bnrepro", "trace", "--out", str(out),
                                "--keep-every", "1", str(script), mode], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=environment)
    try:
        for line in process.stdout:
            if line.split() == ["step", str(steps)]:
                break
        process.send_signal(signal_number)
        process.communicate(timeout=120)
    finally:
        process.kill()
    return out, process.returncode


def _passes_but_for_its_end(trace):
    report = verify_trace(trace)
    assert report.formulas_hold, report.format()
    assert report.verdict().startswith("INCOMPLETE: "), report.verdict()
    return report


@pytest.mark.parametrize("mode", GRAPH_MODES)
def test_a_run_killed_outright_leaves_a_trace_every_reader_opens(tmp_path, capsys, mode):
    out, status = _traced_until(tmp_path, mode, 700, signal.SIGKILL)
    assert status == -signal.SIGKILL
    assert not out.exists()
    (left,) = unfinished_outputs(str(out))
    trace = read_trace(left)
    assert trace.end is None and 256 <= len(trace.steps) <= 701
    assert [record["step"] for record in trace.steps] == list(range(len(trace.steps)))
    layer = trace.steps[-1]["bn"]["batch_normalization"]
    assert np.all(np.isfinite(layer["moving_mean"])) and layer["batch_mean"].shape == (3,)
    report = _passes_but_for_its_end(trace)
    assert "no end line" in report.verdict()
    assert main(["verify", str(out)]) == 2  # names where the trace is
    assert f"left {left}: bnrepro verify {left}" in capsys.readouterr().err
    assert main(["verify", left]) == 1


@pytest.mark.parametrize("mode", GRAPH_MODES)
def test_sigterm_ends_the_run_with_a_whole_trace_that_says_so(tmp_path, mode):
    out, status = _traced_until(tmp_path, mode, 300, signal.SIGTERM)
    assert status == 128 + signal.SIGTERM
    assert unfinished_outputs(str(out)) == []
    trace = read_trace(str(out))
    assert trace.end["status"] == "stopped" and "SIGTERM" in trace.end["reason"]
    assert trace.end["records"] == len(trace.steps) >= 301
    _passes_but_for_its_end(trace)


def _trace_in_process(out, steps, keep):
    """``steps`` training runs of one tf.layers layer (momentum 0.5, batches of mean k and k + 1
    per channel at run k), traced with ``keep``; the trace read back."""
    import bnrepro
    from bnrepro.graphs.tfv1 import tf, tf1

    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, (None, 2))
        tf1.layers.batch_normalization(x, training=True, momentum=0.5)
        updates = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
        with bnrepro.tracing(out, keep=keep), tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            for step in range(1, steps + 1):
                session.run(updates, {x: [[step - 1.0, step], [step + 1.0, step + 2.0]]})
    return read_trace(out)


def test_a_long_runs_trace_keeps_its_first_steps_then_checkable_pairs_and_the_last(tmp_path):
    """Every step up to 10, then the pairs (k - 1, k) of every 5th step, and the last (33): each
    pair's second step is checked against its first, of which only the state after it is kept
    (as of the last); the others' state before is not kept."""
    from bnrepro.trace.keep import KeepPolicy

    trace = _trace_in_process(str(tmp_path / "out"), 33, KeepPolicy(10, 5, None))
    kept = [record["step"] for record in trace.steps]
    assert kept == list(range(11)) + [14, 15, 19, 20, 24, 25, 29, 30, 33]
    assert trace.end["last_step"] == 33 and trace.header["keep"]["every"] == 5
    state_only = [record["step"] for record in trace.steps
                  if record.get("run", {}).get("state_only")]
    assert state_only == [14, 19, 24, 29, 33]
    layers = [record["bn"]["batch_normalization"] for record in trace.steps]
    assert all("batch_mean" not in layers[kept.index(step)] for step in state_only)
    assert layers[kept.index(15)]["batch_mean"].tolist() == [15.0, 16.0]
    # the state after run k, by hand: m_k = 0.5 m_(k-1) + 0.5 (k, k + 1), m_0 = 0; TensorFlow's
    # m - (m - b) * 0.5 rounds once a run (half a float32 ulp, 2^-24 relative), each earlier
    # rounding halved by every later run: within 2^-23 relative
    moving_mean = np.zeros(2)
    for step in range(1, 34):
        moving_mean = 0.5 * moving_mean + 0.5 * np.array([step, step + 1.0])
        if step in kept:
            np.testing.assert_allclose(layers[kept.index(step)]["moving_mean"], moving_mean,
                                       rtol=2.0 ** -23, atol=0, err_msg=f"step {step}")
    report = verify_trace(trace)
    assert report.passed, report.format()
    assert report.kept.startswith("steps kept: 20 of the run's 34 (step 0 included)")
    (coverage,) = report.coverage
    assert coverage.lines()[1:3] == [
        "  moving_mean, moving_variance updates: 14 of 19 steps (5: only the state after the step "
        "was kept (a kept pair's first step, or the last))",
        "  batch_mean, batch_variance from inputs: 14 of 19 steps (5: only the state after the "
        "step was kept (a kept pair's first step, or the last))"]


def test_a_last_step_after_a_kept_one_is_its_state_only_and_verify_says_so(tmp_path):
    """A run of 31 steps under the pairs of every 5th: the last step (31), which the policy would
    drop, keeps its state only, its predecessor (30) kept: verify counts it as kept for its state,
    not as an update whose consumed values went unrecorded; its state is the hand-computed one."""
    from bnrepro.trace.keep import KeepPolicy

    trace = _trace_in_process(str(tmp_path / "out"), 31, KeepPolicy(10, 5, None))
    assert [record["step"] for record in trace.steps][-3:] == [29, 30, 31]
    last = trace.steps[-1]
    assert last["run"]["state_only"] and last["run"]["moved"]
    assert "batch_mean" not in last["bn"]["batch_normalization"]
    moving_mean = np.zeros(2)  # m_k = 0.5 m_(k-1) + 0.5 (k, k + 1), as in the test above
    for step in range(1, 32):
        moving_mean = 0.5 * moving_mean + 0.5 * np.array([step, step + 1.0])
    np.testing.assert_allclose(last["bn"]["batch_normalization"]["moving_mean"], moving_mean,
                               rtol=2.0 ** -23, atol=0)
    report = verify_trace(trace)
    assert report.passed, report.format()
    assert not any("neither" in line for line in report.skipped), report.skipped
    (coverage,) = report.coverage
    assert coverage.lines()[1] == (
        "  moving_mean, moving_variance updates: 14 of 19 steps (5: only the state after the step "
        "was kept (a kept pair's first step, or the last))")


def test_the_layers_inputs_stop_when_the_trace_reaches_its_budget(tmp_path):
    """A budget of 2,000 bytes: the first steps keep the layer's input (the inputs policy keeps
    them at steps 1-100), until the trace holds 2,000 bytes; the batch statistics are kept at every
    step, and verify says at how many steps it checked them from the inputs."""
    from bnrepro.trace.keep import KeepPolicy

    trace = _trace_in_process(str(tmp_path / "out"), 60, KeepPolicy(1000, 100, 2000))
    assert len(trace.steps) == 61
    with_input = [record["step"] for record in trace.steps[1:]
                  if "batch_input" in record["bn"]["batch_normalization"]]
    assert 1 <= len(with_input) < 60 and with_input == list(range(1, len(with_input) + 1))
    report = verify_trace(trace)
    assert report.passed, report.format()
    (coverage,) = report.coverage
    assert coverage.lines()[2] == (
        f"  batch_mean, batch_variance from inputs: {len(with_input)} of 60 steps "
        f"({60 - len(with_input)}: the layer's input was not kept)")


HOOKED_PROGRAM = MODEL + '''
import bnrepro
from bnrepro.trace.keep import KeepPolicy
pairs = sys.argv[5:] == ["pairs"]  # steps up to 5, then the pairs of every 10th; else every step
hook = bnrepro.TraceHook(sys.argv[2], force=True, keep=KeepPolicy(5, 10, None) if pairs else None)
moving_mean = next(v for v in tf1.global_variables() if "moving_mean" in v.name)
with tf1.train.MonitoredTrainingSession(hooks=[hook]) as session:
    for step in range(1, int(sys.argv[3]) + 1):
        session.run(train, {x: rng.randn(8, 3).astype(np.float32) * 2 + 1})
        if step == int(sys.argv[4]):
            raise RuntimeError("the training loop failed at step " + sys.argv[4])
    if pairs:  # the moving mean after the last step, as the program reads it
        print(" ".join(repr(float(value)) for value in session.run(moving_mean)))
print("done")
'''


def _hooked_run(tmp_path, mode, steps, fail_at=0, keep=()):
    script = tmp_path / "hooked.py"
    script.write_text(HOOKED_PROGRAM)
    out = tmp_path / f"hooked_{mode}_{fail_at}{'_'.join(keep)}"
    environment = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, str(script), mode, str(out), str(steps), str(fail_at),
                           *keep], capture_output=True, text=True, env=environment, timeout=300)
    return out, done


@pytest.mark.parametrize("mode", GRAPH_MODES)
def test_the_session_hook_streams_and_a_session_that_fails_leaves_its_steps(tmp_path, mode):
    out, done = _hooked_run(tmp_path, mode, 400)
    assert done.returncode == 0 and done.stdout == "done\n", done.stderr
    whole = verify_trace(read_trace(str(out)))
    assert whole.passed and len(read_trace(str(out)).steps) == 401, whole.format()
    failed, done = _hooked_run(tmp_path, mode, 400, fail_at=300)
    assert done.returncode == 1 and "failed at step 300" in done.stderr
    assert not failed.exists()
    (left,) = unfinished_outputs(str(failed))
    trace = read_trace(left)  # the first chunk's lines (256 with the declaration) were written
    steps = [record["step"] for record in trace.steps]
    assert trace.end is None and steps == list(range(len(steps))) and 200 < len(steps) < 300
    _passes_but_for_its_end(trace)


@pytest.mark.parametrize("mode", GRAPH_MODES)
def test_the_session_hook_keeps_the_pairs_and_their_first_steps_state(tmp_path, mode):
    """The hook under a keep policy (steps up to 5, then the pairs of every 10th, 33 steps): the
    dropped steps and the pairs' first steps fetch nothing more (the hook's runs read the state
    after them); the trace holds the kept steps, of 9, 19, 29 and the last (33) the state only,
    the last one's moving mean what the program reads after its loop; verify passes."""
    out, done = _hooked_run(tmp_path, mode, 33, keep=("pairs",))
    assert done.returncode == 0 and done.stdout.endswith("done\n"), done.stderr
    trace = read_trace(str(out))
    assert [record["step"] for record in trace.steps] == list(range(6)) + [9, 10, 19, 20, 29,
                                                                           30, 33]
    assert [record["step"] for record in trace.steps[1:]
            if record["run"].get("state_only")] == [9, 19, 29, 33]
    (layer,) = trace.steps[-1]["bn"].values()
    assert layer["moving_mean"].tolist() == [float(value)
                                             for value in done.stdout.split("\n")[0].split()]
    report = verify_trace(trace)
    assert report.passed, report.format()


def test_a_fused_layers_input_is_fetched_only_at_the_steps_the_trace_keeps(tmp_path):
    """A fused layer (4-D input): its consumed batch statistics are not fetched, its input checks
    the update, so the input is fetched at every kept step whose update is checked; at a step the
    keep policy drops, or keeps for its state only (a pair's first), the run fetches no input at
    all (it would be thrown away: the cost of a long run)."""
    import bnrepro
    from bnrepro.graphs.run_plan import base_role
    from bnrepro.graphs.tfv1 import tf, tf1
    from bnrepro.trace.keep import KeepPolicy

    fetched_inputs = {}  # the step a run may become -> whether it fetches a layer input
    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, (4, 3, 3, 2))
        tf1.layers.batch_normalization(x, training=True, momentum=0.5, fused=True)
        updates = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
        with bnrepro.tracing(str(tmp_path / "out"), keep=KeepPolicy(3, 10, None)) as tracer, \
                tf1.Session() as session:
            planned = tracer.before_run

            def spy(*arguments):
                state, plan = planned(*arguments)
                if plan is not None:
                    fetched_inputs[tracer.recorded] = any(
                        base_role(plan.keys[key][1]) == "batch_input" for key in plan.extra)
                return state, plan
            tracer.before_run = spy
            session.run(tf1.global_variables_initializer())
            rng = np.random.RandomState(0)
            for _ in range(25):
                session.run(updates, {x: rng.randn(4, 3, 3, 2).astype(np.float32)})
    kept = {0, 1, 2, 3, 9, 10, 19, 20}  # of the pairs' first steps (9, 19) only the state
    assert {step for step, fetched in fetched_inputs.items() if fetched} == kept - {0, 9, 19}
    assert set(fetched_inputs) >= set(range(1, 25))
    trace = read_trace(str(tmp_path / "out"))
    assert [record["step"] for record in trace.steps] == sorted(kept | {25})
    report = verify_trace(trace)
    assert report.passed, report.format()


def test_the_first_steps_keep_inputs_within_a_sixth_of_the_budget():
    from bnrepro.trace.keep import KeepPolicy

    policy = KeepPolicy(1000, 100, 3000)
    assert policy.inputs_allowed(499, step=100) and not policy.inputs_allowed(500, step=100)
    assert policy.inputs_allowed(2999, step=101) and not policy.inputs_allowed(3000, step=101)
    assert "(in the first 100 steps under 500 bytes)" in policy.describe()


def test_inputs_spent_in_the_first_steps_leave_the_rest_of_the_budget_for_later_ones(tmp_path):
    """A budget of 12,000 bytes (a step's statistics are 48 bytes of arrays, its input 16): steps
    1-100 keep the input until the trace holds 2,000 bytes (some 30 steps), the later steps the
    policy names (every 100th) while it holds less than 12,000 (step 200)."""
    from bnrepro.trace.keep import KeepPolicy

    trace = _trace_in_process(str(tmp_path / "out"), 210, KeepPolicy(1000, 100, 12000))
    with_input = [record["step"] for record in trace.steps[1:]
                  if "batch_input" in record["bn"]["batch_normalization"]]
    early = [step for step in with_input if step <= 100]
    assert early == list(range(1, len(early) + 1)) and len(early) < 100
    assert [step for step in with_input if step > 100] == [200]
    assert verify_trace(trace).passed
