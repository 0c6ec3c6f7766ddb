"""The trace file: float32 values read back exactly, the header, the CSV twin, and the fast writer's
text against a straightforward formatting of the same records."""
import csv
import io
import json

import numpy as np
import pytest

from bnrepro.trace import (CSV_FILE, FORMAT, TRACE_FILE, TraceWriter, make_header, read_trace,
                           to_json_value)


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


def test_header_and_csv(cubic_trace):
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
    csv_path = cubic_trace.path.replace("trace.jsonl", "trace.csv")
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    moving_mean_9 = [row for row in rows if row["step"] == "9" and row["section"] == "bn"
                     and row["quantity"] == "moving_mean"]
    assert len(moving_mean_9) == 1
    assert float(moving_mean_9[0]["value"]) == cubic_trace.step(9)["bn"][
        "batch_normalization"]["moving_mean"][0]
    step_1 = cubic_trace.step(1)
    assert set(step_1) >= {"bn", "variables", "loss", "inference", "batch"}
    assert set(step_1["bn"]["batch_normalization"]) >= {"batch_mean", "batch_variance"}


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


def _straightforward_trace(header, records):
    """(trace.jsonl, trace.csv) text written the plain way: ``json.dumps`` of each record's JSON
    form, one ``csv.writer`` row per number (``repr`` of its float64 value)."""
    jsonl = json.dumps(header, allow_nan=True) + "\n"
    rows = io.StringIO(newline="")
    writer = csv.writer(rows)
    writer.writerow(["step", "section", "key", "quantity", "index", "value"])
    for record in records:
        step = to_json_value(record)
        jsonl += json.dumps(step, allow_nan=True) + "\n"
        for section, key, quantity, value in _csv_entries(step):
            for index, number in enumerate(np.asarray(value, dtype=np.float64).ravel()):
                writer.writerow([step["step"], section, key, quantity, index, repr(float(number))])
    return jsonl, rows.getvalue()


@pytest.mark.parametrize("csv_twin, batch", [(True, 1), (False, 1), (False, 2)])
def test_writer_text_equals_straightforward_formatting(tmp_path, csv_twin, batch):
    rng = np.random.default_rng(1)
    weird = 'layer, "quoted"\nname é'  # needs CSV quoting and JSON escaping
    header = make_header("synthetic", {"n": 1}, {"bn": {"momentum": 0.5, "epsilon": 1e-3}})
    state = {"moving_mean": rng.standard_normal(3).astype(np.float32),
             "moving_variance": np.array([np.nan, np.inf, -np.inf], dtype=np.float32),
             "gamma": np.ones(3, dtype=np.float32) * np.float32(1e-7),
             "beta": np.array([1e16, -0.0, 123456789.0])}  # float64, exponent forms
    records = [
        {"step": 0, "bn": {"bn": state}, "variables": {"bn/gamma:0": state["gamma"]}},
        {"step": np.int64(1), "bn": {"bn": {**state, "batch_input": rng.standard_normal(
            (2, 2, 3)).astype(np.float32), "empty": np.zeros((0, 3), np.float32)}},
         "loss": np.float32(0.25),
         "metrics": {"accuracy": 0.5, "count": 7, weird: [[1, 2.5], [3, 4]]},
         "inference": {"bn": {"input": np.arange(6, dtype=np.float16).reshape(2, 3),
                              "output": [np.float32(0.1), np.float64(np.nan)]}},
         "batch": {"indices": np.array([4, 0, 2]), "labels": np.array([True, False, True])},
         "variables": {weird: state["moving_mean"]}, "after": {"x": np.float64(-2.5e-5)},
         "note": {"text": weird, "none": None, "flag": True}},
    ]
    with TraceWriter(str(tmp_path), header, csv=csv_twin, batch=batch) as writer:
        for record in records:
            writer.write_step(record)
    expected_jsonl, expected_csv = _straightforward_trace(header, records)
    with open(tmp_path / TRACE_FILE, encoding="utf-8") as handle:
        assert handle.read() == expected_jsonl
    if not csv_twin:
        assert not (tmp_path / CSV_FILE).exists()
        return
    with open(tmp_path / CSV_FILE, encoding="utf-8", newline="") as handle:
        assert handle.read() == expected_csv
