"""The trace file: float32 values read back exactly, the header, arrays binary in chunks and the rest
text, the chunks' limits, and the CSV export against a straightforward formatting of the same
records."""
import csv
import io
import json
import os

import numpy as np
import pytest

from bnrepro.trace import (ARRAYS_DIRECTORY, CSV_FILE, FORMAT, TRACE_FILE, TraceWriter,
                           make_header, read_trace, to_json_value)


def test_float32_values_round_trip_exactly(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.standard_normal(1000).astype(np.float32) * np.float32(1e-3)
    header = make_header("synthetic", {}, {"bn": {"momentum": 0.9, "epsilon": 0.001}})
    state = {name: values[:3] for name in ("moving_mean", "moving_variance", "gamma", "beta")}
    with TraceWriter(str(tmp_path), header) as writer:
        writer.write_step({"step": 0, "bn": {"bn": state}, "variables": {"v:0": values}})
    trace = read_trace(str(tmp_path))
    assert trace.header["format"] == FORMAT
    read_back = np.asarray(trace.step(0)["variables"]["v:0"], dtype=np.float64)
    assert np.array_equal(read_back.astype(np.float32), values)
    assert np.array_equal(read_back, values.astype(np.float64))  # no rounding through text


def test_header_and_no_csv_by_default(cubic_trace):
    header = cubic_trace.header
    assert header["scenario"] == "cubic"
    assert header["format"] == "bnrepro-trace/2"
    entry = header["layers"]["batch_normalization"]
    assert (entry["momentum"], entry["epsilon"], entry["fused"]) == (0.9, 0.001, False)
    assert entry["variables"] == {"moving_mean": "batch_normalization/moving_mean:0",
                                  "moving_variance": "batch_normalization/moving_variance:0",
                                  "gamma": "batch_normalization/gamma:0",
                                  "beta": "batch_normalization/beta:0"}
    assert header["averages"] == {}
    assert header["config"]["batch_size"] == 3
    assert header["versions"]["tensorflow"].startswith("2.")
    assert [record["step"] for record in cubic_trace.steps] == list(range(11))
    directory = os.path.dirname(cubic_trace.path)
    assert sorted(os.listdir(directory)) == sorted([".bnrepro-output.json", ARRAYS_DIRECTORY,
                                                    TRACE_FILE])  # no trace.csv
    step_1 = cubic_trace.step(1)
    assert set(step_1) >= {"bn", "variables", "loss", "inference", "batch"}
    assert set(step_1["bn"]["batch_normalization"]) >= {"batch_mean", "batch_variance"}
    with open(cubic_trace.path, encoding="utf-8") as handle:
        line = json.loads(handle.read().splitlines()[2])  # step 1 as written
    assert line["arrays"] == "trace_arrays/000001.npz"
    assert line["bn"]["batch_normalization"]["moving_mean"] == {"row": 1}  # even a (1,) array
    assert isinstance(line["loss"], float) and line["run"]["trained"] is True  # text


def _csv_entries(step):
    """``(section, key, quantity, value)`` of a step's numbers in trace.csv's documented order: bn
    and inference per layer, variables, batch, metrics, after, loss."""
    entries = [(section, layer, quantity, value) for section in ("bn", "inference")
               for layer, quantities in step.get(section, {}).items()
               for quantity, value in quantities.items()]
    entries += [("variables", name, "value", value)
                for name, value in step.get("variables", {}).items()]
    entries += [(section, "", name, value) for section in ("batch", "metrics", "after")
                for name, value in step.get(section, {}).items()]
    return entries + ([("loss", "", "loss", step["loss"])] if "loss" in step else [])


def _straightforward_csv(records):
    """trace.csv written the plain way: one ``csv.writer`` row per number (``repr`` of its float64
    value)."""
    rows = io.StringIO(newline="")
    writer = csv.writer(rows)
    writer.writerow(["step", "section", "key", "quantity", "index", "value"])
    for record in records:
        step = to_json_value(record)
        for section, key, quantity, value in _csv_entries(step):
            for index, number in enumerate(np.asarray(value, dtype=np.float64).ravel()):
                writer.writerow([step["step"], section, key, quantity, index, repr(float(number))])
    return rows.getvalue()


RNG = np.random.default_rng(1)
WEIRD = 'layer, "quoted"\nname é'  # needs CSV quoting and JSON escaping
HEADER = make_header("synthetic", {"n": 1}, {"bn": {"momentum": 0.5, "epsilon": 1e-3}})
STATE = {"moving_mean": RNG.standard_normal(3).astype(np.float32),
         "moving_variance": np.array([np.nan, np.inf, -np.inf], dtype=np.float32),
         "gamma": np.ones(3, dtype=np.float32) * np.float32(1e-7),
         "beta": np.array([1e16, -0.0, 123456789.0])}  # float64, exponent forms
RECORDS = [
    {"step": 0, "bn": {"bn": STATE}, "variables": {"bn/gamma:0": STATE["gamma"]}},
    {"step": np.int64(1), "bn": {"bn": {**STATE, "batch_input": RNG.standard_normal(
        (2, 2, 3)).astype(np.float32), "empty": np.zeros((0, 3), np.float32)}},
     "loss": np.float32(0.25),
     "metrics": {"accuracy": 0.5, "count": 7, WEIRD: [[1, 2.5], [3, 4]]},
     "inference": {"bn": {"input": np.arange(6, dtype=np.float16).reshape(2, 3),
                          "output": [[np.float32(0.1), np.float64(np.nan), 0.0], [1.0, 2.0, 3.0]]}},
     "batch": {"indices": np.array([4, 0, 2]), "labels": np.array([True, False, True])},
     "variables": {WEIRD: STATE["moving_mean"]}, "after": {"x": np.float64(-2.5e-5)},
     "note": {"text": WEIRD, "none": None, "flag": True}},
]


@pytest.mark.parametrize("csv_export, chunk_records", [(True, 256), (False, 1), (False, 2)])
def test_arrays_are_binary_and_the_csv_holds_every_number(tmp_path, csv_export, chunk_records):
    """Every array with an axis is a row of a chunk in its own dtype; everything else is JSON text
    as ``json.dumps`` writes it; read back, the records are the ones written (their JSON text
    the same); the CSV export, when asked for, holds every number as the straightforward
    formatting does."""
    with TraceWriter(str(tmp_path), HEADER, csv=csv_export,
                     chunk_records=chunk_records) as writer:
        for record in RECORDS:
            writer.write_step(record)
    with open(tmp_path / TRACE_FILE, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    assert lines[0] == json.dumps(HEADER)
    line = json.loads(lines[2])
    chunk = f"{ARRAYS_DIRECTORY}/{'000002' if chunk_records == 1 else '000001'}.npz"
    assert line["arrays"] == chunk and list(line)[:2] == ["step", "arrays"]
    assert line["bn"]["bn"]["moving_mean"] == {"row": 0 if chunk_records == 1 else 1}
    assert line["batch"]["labels"] == {"row": 0}  # bool, int, float16: binary too
    output = line["inference"]["bn"]["output"]  # a list stays text
    assert output[0][0] == float(np.float32(0.1)) and np.isnan(output[0][1])
    assert line["loss"] == 0.25 and line["metrics"]["count"] == 7 and line["note"]["flag"] is True
    assert lines[2].endswith('"after": {"x": -2.5e-05}, "note": {"text": '
                             + json.dumps(WEIRD) + ', "none": null, "flag": true}}')
    with np.load(tmp_path / chunk) as stored:
        assert stored["batch|labels"].dtype == bool
        assert stored["inference|bn|input"].dtype == np.float16
        assert stored["bn|bn|moving_mean"].dtype == np.float32
        assert stored["bn|bn|beta"].dtype == np.float64
        np.testing.assert_array_equal(stored[f"variables|{WEIRD}"][-1], STATE["moving_mean"])
    read = read_trace(str(tmp_path))
    for record, step in zip(RECORDS, read.steps, strict=True):
        assert (json.dumps(to_json_value(step), allow_nan=True)
                == json.dumps(to_json_value(record), allow_nan=True))
    if not csv_export:
        assert not (tmp_path / CSV_FILE).exists()
        return
    with open(tmp_path / CSV_FILE, encoding="utf-8", newline="") as handle:
        assert handle.read() == _straightforward_csv(RECORDS)


def test_a_second_shape_in_a_chunk_is_a_second_member(tmp_path):
    """Layer inputs of two batch sizes in one chunk: the second shape's member is ``...#2``, named
    in its reference; the next chunk starts again from the default names."""
    header = make_header("synthetic", {}, {"bn": {"momentum": 0.5, "epsilon": 1e-3}})
    shapes = [(4, 2), (3, 2), (4, 2), (3, 2)]
    with TraceWriter(str(tmp_path), header, chunk_records=2) as writer:
        for step, shape in enumerate(shapes):
            writer.write_step({"step": step, "bn": {"bn": {"batch_input": np.full(
                shape, step, np.float32)}}})
    with open(tmp_path / TRACE_FILE, encoding="utf-8") as handle:
        references = [json.loads(line)["bn"]["bn"]["batch_input"]
                      for line in handle.read().splitlines()[1:]]
    member = "bn|bn|batch_input"
    assert references == [{"row": 0}, {"row": 0, "key": f"{member}#2"}] * 2
    with np.load(tmp_path / ARRAYS_DIRECTORY / "000002.npz") as stored:
        assert sorted(stored.files) == [member, f"{member}#2"]
        assert stored[f"{member}#2"].shape == (1, 3, 2)


def test_chunks_are_written_at_their_record_or_byte_limit(tmp_path):
    """Chunks of 3 records, or of 2 when 2 records' arrays reach the byte limit; a record without
    arrays has no "arrays" and takes no file."""
    header = make_header("synthetic", {}, {"bn": {"momentum": 0.5, "epsilon": 1e-3}})
    for chunk_bytes, expected in ((10**6, 3), (2 * 400, 2)):
        directory = tmp_path / str(chunk_bytes)
        directory.mkdir()
        with TraceWriter(str(directory), header, chunk_records=3,
                         chunk_bytes=chunk_bytes) as writer:
            for step in range(6):
                writer.write_step({"step": step, "variables": {"v": np.zeros(100, np.float32)}})
                lines = (directory / TRACE_FILE).read_text().count("\n")
                assert lines == 1 + (step + 1) // expected * expected  # whole chunks only
            writer.write_step({"step": 6, "loss": 1.0})
        assert len(os.listdir(directory / ARRAYS_DIRECTORY)) == 6 // expected
        last = json.loads((directory / TRACE_FILE).read_text().splitlines()[-1])
        assert last == {"step": 6, "loss": 1.0}


def test_a_chunk_is_written_when_a_record_comes_chunk_seconds_after_the_last(tmp_path):
    """Records at 0, 4, 9, 10, 13, 25 seconds of a clock (the header written at 0), chunks of
    10 seconds: the record at 10 writes the first chunk (4 records), the one at 25 the second
    (2 records, 15 s after 10); the lines on disk after each record say so."""
    times = iter([0.0, 0.0, 4.0, 9.0, 10.0, 10.0, 13.0, 25.0, 25.0])  # a chunk rereads the clock
    header = make_header("synthetic", {}, {"bn": {"momentum": 0.5, "epsilon": 1e-3}})
    lines_on_disk = []
    with TraceWriter(str(tmp_path), header, chunk_seconds=10.0,
                     clock=lambda: next(times)) as writer:
        for step in range(6):
            writer.write_step({"step": step, "bn": {"bn": {
                role: np.full(2, step, np.float32)
                for role in ("moving_mean", "moving_variance", "gamma", "beta")}}})
            lines_on_disk.append((tmp_path / TRACE_FILE).read_text().count("\n"))
    assert lines_on_disk == [1, 1, 1, 5, 5, 7]
    trace = read_trace(str(tmp_path))
    assert [record["bn"]["bn"]["moving_mean"].tolist() for record in trace.steps] == [
        [step, step] for step in range(6)]
    # the chunk written at 10 s stayed open: written again at 25 s with all 6 rows, one file
    assert os.listdir(tmp_path / ARRAYS_DIRECTORY) == ["000001.npz"]
    with np.load(tmp_path / ARRAYS_DIRECTORY / "000001.npz") as stored:
        assert stored["bn|bn|moving_mean"][:, 0].tolist() == [0, 1, 2, 3, 4, 5]


def test_a_reader_reads_rows_a_chunk_gained_after_it_opened_it(tmp_path):
    """A chunk written by the time rule stays open and is written again with more rows (and
    members); a reader that opened its first file finds the later rows and members by opening it
    again, as a reader of a trace still being written does."""
    from bnrepro.trace.reader import _ArrayFiles

    times = iter([0.0, 0.0, 20.0, 20.0, 40.0, 40.0, 60.0, 60.0])
    header = make_header("synthetic", {}, {"bn": {"momentum": 0.5, "epsilon": 1e-3}})
    files = _ArrayFiles(str(tmp_path))
    with TraceWriter(str(tmp_path), header, chunk_seconds=10.0,
                     clock=lambda: next(times)) as writer, files:
        writer.write_step({"step": 0, "bn": {"bn": {"moving_mean": np.zeros(2, np.float32)}}})
        writer.write_step({"step": 1, "bn": {"bn": {"moving_mean": np.ones(2, np.float32)}}})
        lines = (tmp_path / TRACE_FILE).read_text().splitlines()
        assert files.resolved(json.loads(lines[1]), "line 2")["bn"]["bn"]["moving_mean"].tolist() \
            == [0.0, 0.0]
        writer.write_step({"step": 2, "bn": {"bn": {"moving_mean": np.full(2, 2, np.float32),
                                                    "batch_mean": np.full(2, 3, np.float32)}}})
        lines = (tmp_path / TRACE_FILE).read_text().splitlines()
        assert len(lines) == 4 and os.listdir(tmp_path / ARRAYS_DIRECTORY) == ["000001.npz"]
        third = files.resolved(json.loads(lines[3]), "line 4")["bn"]["bn"]  # a row gained
        assert third["moving_mean"].tolist() == [2.0, 2.0]
        assert third["batch_mean"].tolist() == [3.0, 3.0]
        writer.write_step({"step": 3, "bn": {"bn": {"gamma": np.full(2, 4, np.float32)}}})
        lines = (tmp_path / TRACE_FILE).read_text().splitlines()
        fourth = files.resolved(json.loads(lines[4]), "line 5")["bn"]["bn"]  # a member gained
        assert fourth["gamma"].tolist() == [4.0, 4.0]


def test_chunk_limits_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="at least 1"):
        TraceWriter(str(tmp_path), {"format": "bnrepro-trace/2"}, chunk_records=0)
    with pytest.raises(ValueError, match="at least 0"):
        TraceWriter(str(tmp_path), {"format": "bnrepro-trace/2"}, chunk_seconds=-1.0)
