"""A trace's arrays in chunks written as the run goes: a writer killed at any moment leaves a trace
that reads (the steps of its whole chunks, no end line: verify says INCOMPLETE), a last line cut
short is left out, a chunk path cannot leave the trace's directory, and the binary form stays close
to the arrays' own bytes."""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import bnrepro
from bnrepro.cli import EXIT_FAILED, EXIT_USAGE, main
from bnrepro.errors import UserError
from bnrepro.trace import ARRAYS_DIRECTORY, FORMAT_2, TRACE_FILE, TraceWriter, read_trace

PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(bnrepro.__file__)))
# A child process writes records 0-9 of a trace in chunks of 3 and dies after handing over the 7th
# (step 6), never closing the writer: with SIGKILL, or os._exit.
KILLED_WRITER = """
import os, pickle, signal, sys
from bnrepro.trace import TraceWriter
header, records = pickle.load(sys.stdin.buffer)
writer = TraceWriter(sys.argv[1], header, chunk_records=3)
for record in records[:10]:
    writer.write_step(record)
    if record["step"] == 6:
        if sys.argv[2] == "SIGKILL":
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(0)
"""


@pytest.fixture(params=["SIGKILL", "os._exit"])
def killed_trace(request, cubic_trace, tmp_path):
    """The directory of post 000's trace as a writer killed after its 7th record leaves it."""
    import pickle

    directory = tmp_path / "killed"
    directory.mkdir()
    environment = {**os.environ, "PYTHONPATH": PACKAGE_PARENT}
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(directory), request.param],
                          input=pickle.dumps((cubic_trace.header, cubic_trace.steps)),
                          capture_output=True, env=environment, timeout=120)
    expected = -signal.SIGKILL if request.param == "SIGKILL" else 0
    assert done.returncode == expected, done.stderr.decode()
    return directory


def test_a_killed_writer_leaves_the_steps_of_its_whole_chunks(killed_trace, cubic_trace, capsys):
    assert sorted(os.listdir(killed_trace / ARRAYS_DIRECTORY)) == ["000001.npz", "000002.npz"]
    trace = read_trace(str(killed_trace))
    assert trace.end is None
    assert [record["step"] for record in trace.steps] == list(range(6))  # step 6 was in memory
    for read, written in zip(trace.steps, cubic_trace.steps):
        np.testing.assert_array_equal(read["bn"]["batch_normalization"]["moving_mean"],
                                      written["bn"]["batch_normalization"]["moving_mean"])
    assert main(["verify", str(killed_trace)]) == EXIT_FAILED
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out.rstrip().splitlines()[-1].startswith(
        "INCOMPLETE: the trace has no end line after step 5: it may have been cut short")


def test_a_last_line_cut_short_is_left_out_and_any_other_bad_line_is_an_error(killed_trace):
    path = killed_trace / TRACE_FILE
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines(keepends=True)
    path.write_text("".join(lines) + lines[-1][:40], encoding="utf-8")  # killed mid-line
    assert [record["step"] for record in read_trace(str(path)).steps] == list(range(6))
    path.write_text("".join(lines[:3] + [lines[3][:40] + "\n"] + lines[4:]), encoding="utf-8")
    with pytest.raises(UserError, match=r"line 4 is not valid JSON"):
        read_trace(str(path))
    path.write_text("".join(lines) + '{"end": {"status": "complete", "last_step": 5, "records": '
                    '6}}\n{"step": 6, "bn', encoding="utf-8")  # after an end line: not cut short
    with pytest.raises(UserError, match=r"line 9 is not valid JSON"):
        read_trace(str(path))


@pytest.mark.parametrize("arrays", ["../outside.npz", "/tmp/outside.npz", "trace_arrays/../../x",
                                    "", 3, "trace_arrays//000001.npz"])
def test_a_chunk_path_stays_inside_the_trace_directory(tmp_path, arrays):
    """Refused in one line, even where the file exists."""
    directory = tmp_path / "trace"
    directory.mkdir()
    np.savez(tmp_path / "outside.npz", **{"variables|v": np.zeros((1, 2), np.float32)})
    header = {"format": FORMAT_2, "layers": {}}
    step = {"step": 0, "arrays": arrays, "variables": {"v": {"row": 0}}}
    (directory / TRACE_FILE).write_text(json.dumps(header) + "\n" + json.dumps(step) + "\n")
    with pytest.raises(UserError) as raised:
        read_trace(str(directory))
    message = str(raised.value)
    assert "\n" not in message and "line 2" in message
    assert "is not a relative path to a file inside the trace's directory" in message
    assert main(["verify", str(directory)]) == EXIT_USAGE


def test_a_row_without_a_chunk_is_one_line(tmp_path):
    header = {"format": FORMAT_2, "layers": {}}
    step = {"step": 0, "variables": {"v": {"row": 0}}}
    (tmp_path / TRACE_FILE).write_text(json.dumps(header) + "\n" + json.dumps(step) + "\n")
    with pytest.raises(UserError, match=r"line 2: \{'row': 0\} is a row of no chunk"):
        read_trace(str(tmp_path))


def _layer_records(layers, channels, steps, seed=0):
    """The records of the tracer for ``layers`` batch-norm layers of ``channels`` units, each
    ``steps`` steps: per layer the moving statistics, gamma, beta and the batch statistics, with
    the run's note and the loss, as ``bnrepro trace`` records them."""
    rng = np.random.default_rng(seed)
    names = [f"resnet/stage{layer % 3 + 1}/block{layer}/batch_normalization"
             for layer in range(layers)]
    for step in range(steps):
        yield {"step": step, "run": {"call": "Session.run", "index": step + 2, "trained": True,
                                     "moved": True, "fetched": ["train_op", "loss:0"]},
               "bn": {name: {**{quantity: rng.standard_normal(width).astype(np.float32)
                                for quantity in ("moving_mean", "moving_variance", "gamma",
                                                 "beta", "batch_mean", "batch_variance")},
                             "trained": True}
                      for name, width in zip(names, channels)},
               "loss": np.float32(1 / (step + 1))}


def _sizes(directory):
    """(bytes of trace.jsonl, bytes of the chunk files)."""
    chunks = os.path.join(directory, ARRAYS_DIRECTORY)
    return (os.path.getsize(os.path.join(directory, TRACE_FILE)),
            sum(os.path.getsize(os.path.join(chunks, name)) for name in os.listdir(chunks)))


def test_the_binary_form_costs_little_more_than_the_arrays(tmp_path):
    """1,000 steps. 2 layers of 64 units: 3,072 bytes of float32 per step; the chunks (4 of 256
    records) add per member and chunk a zip entry (its local header and its directory entry, each
    with the name and the zip64 extra field) and an .npy header of 128 bytes, under 400 bytes (12
    members: under 5 bytes per step in all); the line is the run's note, the loss and 12
    references, under 700 bytes; together within 1.3x the arrays (measured 3,088 + 657 bytes per
    step, 1.22x). A ResNet-20's 19 layers of 16-64 channels: 16,512 bytes per step, the line
    under 30% of that (measured 4,531 bytes, 27%: the layers' and quantities' names), together
    within 1.3x (1.28x)."""
    header = {"format": FORMAT_2, "layers": {}}
    resnet = [16] * 7 + [32] * 6 + [64] * 6
    for channels, text_per_step in (([64, 64], 700), (resnet, 0.3 * 4 * 6 * sum(resnet))):
        directory = tmp_path / f"layers{len(channels)}"
        directory.mkdir()
        with TraceWriter(str(directory), header) as writer:
            for record in _layer_records(len(channels), channels, 1000):
                writer.write_step(record)
            writer.finish()
        text, binary = _sizes(directory)
        arrays = 1000 * 6 * 4 * sum(channels)  # float32 bytes
        members = 6 * len(channels) * len(os.listdir(directory / ARRAYS_DIRECTORY))
        assert arrays < binary < arrays + 400 * members
        assert text / 1000 < text_per_step
        assert text + binary < 1.3 * arrays
