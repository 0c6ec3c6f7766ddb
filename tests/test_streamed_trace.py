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

PROGRAM = '''
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
with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)):
    train = tf1.train.GradientDescentOptimizer(0.01).minimize(loss)
rng = np.random.RandomState(0)
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
                                str(script), mode], stdout=subprocess.PIPE,
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
