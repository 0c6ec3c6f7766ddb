"""A trained step the keep policy drops is not read at all (``RunPlan.unread``): its run fetches
nothing extra and the state after it is not read, so a long run's dropped steps cost it nothing.
What stays exact: the state is read again before the next run that records (what that run moved,
and whether it set a variable, are judged against the true state before it), and the last step,
which the trace keeps, is read before its session closes, or at the trace's end when the program
drops its session unclosed. Both graph modes, a GAN-like program: two train ops, each with a
batch-norm layer of its own, alternating, and an evaluation run that moves nothing."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bnrepro.check.verify import verify_trace
from bnrepro.trace import read_trace
from conftest import GRAPH_MODES

PROGRAM = '''
import sys
import numpy as np
import tensorflow as tf
import bnrepro
from bnrepro.trace.keep import KeepPolicy

mode, out, ending, finals = sys.argv[1:5]
if mode == "v2":
    tf.compat.v1.disable_v2_behavior()
else:
    tf.compat.v1.disable_eager_execution()
tf1 = tf.compat.v1
x = tf1.placeholder(tf.float32, [None, 3])
training = tf1.placeholder(tf.bool, [])
train_ops, outputs = {}, {}
for name in ("generator", "discriminator"):
    with tf1.variable_scope(name):
        y = tf1.layers.batch_normalization(x, training=training, momentum=0.9)
        loss = tf.reduce_mean(tf.square(y * tf1.get_variable("w", [3]) - 1.0))
    with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS, name)):
        train_ops[name] = tf1.train.GradientDescentOptimizer(0.01).minimize(
            loss, var_list=tf1.trainable_variables(name))
    outputs[name] = y
moving = [v for v in tf1.global_variables() if "moving" in v.name]
rng = np.random.RandomState(0)
keep = KeepPolicy(5, 10, None)
with bnrepro.tracing(out, keep=keep, write=print):
    session = tf1.Session()
    session.run(tf1.global_variables_initializer())
    for run in range(1, 58):
        batch = {x: rng.randn(8, 3).astype(np.float32) * 2 + 1, training: True}
        session.run(train_ops["generator" if run % 2 else "discriminator"], batch)
        if run == 33:  # an evaluation in the dropped steps, its updates attached: moves nothing
            session.run([outputs["generator"], tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)],
                        {x: batch[x], training: False})
    np.savez(finals, **{v.name: value for v, value in zip(moving, session.run(moving))})
    if ending == "close":
        session.close()
    elif ending == "with":
        with session:
            pass
'''


def _run(tmp_path, mode, ending):
    script = tmp_path / "gan_like.py"
    script.write_text(PROGRAM)
    out, finals = tmp_path / f"out_{mode}_{ending}", tmp_path / f"finals_{mode}_{ending}.npz"
    environment = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, str(script), mode, str(out), ending, str(finals)],
                          capture_output=True, text=True, env=environment, timeout=300)
    assert done.returncode == 0, done.stderr
    return read_trace(str(out)), dict(np.load(finals)), done.stdout


@pytest.mark.parametrize("mode", GRAPH_MODES)
@pytest.mark.parametrize("ending", ["close", "unclosed"])
def test_dropped_trained_steps_are_not_read_and_what_is_kept_stays_exact(tmp_path, mode, ending):
    trace, finals, summary = _run(tmp_path, mode, ending)
    kept = list(range(6)) + [step for pair in range(10, 57, 10) for step in (pair - 1, pair)]
    assert [record["step"] for record in trace.steps] == kept + [57]
    # every dropped step trained and was left unread: steps 6-56 but the 10 of the pairs, and 57
    # until its record was made at the session's close or the trace's end
    assert "(42 trained runs the trace leaves out not read)" in summary, summary
    assert trace.end["last_step"] == 57 and trace.end["status"] == "complete"
    # the evaluation (run 33) moved nothing: no step; nothing is said to be set
    assert all(record["run"]["trained"] for record in trace.steps[1:])
    assert not any(entry.get("set") for record in trace.steps for entry in record["bn"].values())
    last = trace.steps[-1]["bn"]
    for name, value in finals.items():
        layer, role = name.rsplit("/", 1)
        assert np.array_equal(last[layer][role.split(":")[0]], value), name
    report = verify_trace(trace)
    assert report.passed, report.format()
    assert report.verdict().startswith("PASS"), report.verdict()


def test_a_last_step_whose_session_closed_unseen_is_said_to_be_lost(tmp_path):
    """The tracer uninstalled, then the session closed: the last step left unread cannot be
    read; the trace ends at the last step it kept and its notes say so."""
    import bnrepro
    from bnrepro.graphs.tfv1 import tf, tf1
    from bnrepro.trace.keep import KeepPolicy

    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, (None, 2))
        y = tf1.layers.batch_normalization(x, training=True, momentum=0.5)
        with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)):
            train = tf1.train.GradientDescentOptimizer(0.1).minimize(tf.reduce_sum(y * y))
        session = tf1.Session()
        with bnrepro.tracing(str(tmp_path / "out"), keep=KeepPolicy(3, 10, None)) as tracer:
            session.run(tf1.global_variables_initializer())
            for step in range(1, 8):
                session.run(train, {x: [[step, 1.0], [0.0, step]]})
            tracer.uninstall()
            session.close()
    trace = read_trace(str(tmp_path / "out"))
    assert [record["step"] for record in trace.steps] == [0, 1, 2, 3]
    assert trace.end["last_step"] == 7
    assert any("the state after the last step (7) could not be read" in note
               for note in json.loads(json.dumps(trace.header["tracer_notes"]))), trace.header


CALLABLE_PROGRAM = '''
import sys
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2
from tensorflow.python.client import session as session_module
import bnrepro
from bnrepro.trace.keep import KeepPolicy

mode, out = sys.argv[1:3]
if mode == "v2":
    tf.compat.v1.disable_v2_behavior()
else:
    tf.compat.v1.disable_eager_execution()
tf1 = tf.compat.v1
made = []  # the fetches of every callable made, the tracer's included
original = session_module.BaseSession._make_callable_from_options
def counting(session, options):
    made.append(sorted(options.fetch))
    return original(session, options)
session_module.BaseSession._make_callable_from_options = counting
x = tf1.placeholder(tf.float32, [None, 2])
y = tf1.layers.batch_normalization(x, training=True, momentum=0.5)
with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)):
    train = tf1.train.GradientDescentOptimizer(0.1).minimize(tf.reduce_sum(y * y))
with bnrepro.tracing(out, keep=KeepPolicy(10, 20, None)), tf1.Session() as session:
    session.run(tf1.global_variables_initializer())
    step = session._make_callable_from_options(  # as Keras' graph functions do
        config_pb2.CallableOptions(feed=[x.name], target=[train.name]))
    for run in range(1, 46):
        step(np.array([[run - 1.0, 0.0], [run + 1.0, 2.0]], np.float32))
print(len(made), sum(1 for fetches in made if not fetches))
'''


@pytest.mark.parametrize("mode", GRAPH_MODES)
def test_a_callables_dropped_and_pair_first_steps_run_the_programs_own_callable(tmp_path, mode):
    """A program's callable (Keras' graph functions) called 45 times, steps up to 10 kept, then
    the pairs of every 20th: the steps that fetch nothing more (the dropped ones, a pair's first,
    the last) all run the program's own callable, so TensorFlow prepares two sets of runs (with
    the tracer's fetches, without), not one per kind of step; the batch means at the pairs'
    second steps are the fed ones."""
    script = tmp_path / "callable.py"
    script.write_text(CALLABLE_PROGRAM)
    out = tmp_path / f"out_{mode}"
    environment = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, str(script), mode, str(out)], capture_output=True,
                          text=True, env=environment, timeout=300)
    assert done.returncode == 0, done.stderr
    # the program's own callable (no fetch) and the tracer's (with the batch statistics)
    assert done.stdout.split() == ["2", "1"], done.stdout
    trace = read_trace(str(out))
    steps = [record["step"] for record in trace.steps]
    assert steps == list(range(11)) + [19, 20, 39, 40, 45]
    state_only = [record["step"] for record in trace.steps[1:] if record["run"].get("state_only")]
    assert state_only == [19, 39, 45]
    layer = {record["step"]: record["bn"]["batch_normalization"] for record in trace.steps}
    assert [layer[step]["batch_mean"].tolist() for step in (20, 40)] == [[20.0, 1.0],
                                                                        [40.0, 1.0]]
    report = verify_trace(trace)
    assert report.passed, report.format()
