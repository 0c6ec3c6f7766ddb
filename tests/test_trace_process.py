"""The trace writer in a child process: the same files as TraceWriter, a failure in the child raised
in the parent with the child's traceback, and an abandoned trace stopping the child."""
import os

import numpy as np
import pytest

from bnrepro.trace import ARRAYS_DIRECTORY, CSV_FILE, TRACE_FILE, TraceWriter, make_header
from bnrepro.trace.process import RECORDS_PER_MESSAGE, BackgroundTraceWriter, TraceWriterError

HEADER = make_header("synthetic", {}, {"bn": {"momentum": 0.9, "epsilon": 0.001}})


def _records(count):
    rng = np.random.default_rng(2)
    records = []
    for step in range(count):
        state = {name: rng.standard_normal(4).astype(np.float32)
                 for name in ("moving_mean", "moving_variance", "gamma", "beta")}
        records.append({"step": step, "bn": {"bn": state}, "loss": np.float32(step / 3),
                        "metrics": {"accuracy": np.float32(0.5)},
                        "batch": {"indices": np.arange(3) + step}})
    return records


def _read(directory, name):
    with open(directory / name, "rb") as handle:
        return handle.read()


def _chunks(directory):
    """The chunk files' arrays: file name -> member -> array."""
    chunks = {}
    for name in sorted(os.listdir(directory / ARRAYS_DIRECTORY)):
        with np.load(directory / ARRAYS_DIRECTORY / name) as stored:
            chunks[name] = {member: stored[member] for member in stored.files}
    return chunks


def test_same_files_as_trace_writer(tmp_path):
    """trace.jsonl and trace.csv byte for byte, the chunks' arrays equal, a flush after 5 records
    in both (it writes the chunk being filled)."""
    records = _records(2 * RECORDS_PER_MESSAGE + 3)  # full messages and a remainder
    (tmp_path / "direct").mkdir()
    (tmp_path / "child").mkdir()
    with TraceWriter(str(tmp_path / "direct"), HEADER, csv=True) as writer:
        for count, record in enumerate(records, start=1):
            writer.write_step(record)
            if count == 5:
                writer.flush()
    with BackgroundTraceWriter(str(tmp_path / "child"), HEADER, csv=True) as writer:
        for record in records[:5]:
            writer.write_step(record)
        writer.flush()  # everything so far is in the files
        assert _read(tmp_path / "child", TRACE_FILE).count(b"\n") == 1 + 5
        for record in records[5:]:
            writer.write_step(record)
    for name in (TRACE_FILE, CSV_FILE):
        assert _read(tmp_path / "child", name) == _read(tmp_path / "direct", name)
    direct, child = _chunks(tmp_path / "direct"), _chunks(tmp_path / "child")
    assert list(direct) == list(child) == ["000001.npz", "000002.npz"]
    for name, members in direct.items():
        assert members.keys() == child[name].keys()
        for member, array in members.items():
            assert array.dtype == child[name][member].dtype
            assert np.array_equal(array, child[name][member])


def test_no_csv_unless_asked(tmp_path):
    with BackgroundTraceWriter(str(tmp_path), HEADER) as writer:
        writer.write_step(_records(1)[0])
    assert sorted(os.listdir(tmp_path)) == sorted([ARRAYS_DIRECTORY, TRACE_FILE])


def test_child_failure_is_raised_in_the_parent(tmp_path):
    writer = BackgroundTraceWriter(str(tmp_path), HEADER)
    writer.write_step({"step": 1, "bn": {"bn": {"gamma": {1, 2}}}})  # a set: no JSON value
    with pytest.raises(TraceWriterError, match="TypeError: set is not") as raised:
        writer.flush()
    assert "\n" not in str(raised.value) and "Traceback" in raised.value.details
    with pytest.raises(TraceWriterError, match="exit status 1"):
        writer.close()


def test_missing_directory_fails_at_the_latest_on_close(tmp_path):
    with pytest.raises(TraceWriterError, match="FileNotFoundError"):
        with BackgroundTraceWriter(str(tmp_path / "absent"), HEADER) as writer:
            for record in _records(RECORDS_PER_MESSAGE + 1):
                writer.write_step(record)


def test_an_error_in_the_loop_stops_the_child(tmp_path):
    with pytest.raises(KeyError):
        with BackgroundTraceWriter(str(tmp_path), HEADER) as writer:
            writer.write_step(_records(1)[0])
            raise KeyError("the loop failed")
    assert writer._child.returncode is not None  # noqa: SLF001 (killed and reaped)
