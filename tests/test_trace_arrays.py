"""Arrays in chunk files beside trace.jsonl (``trace_arrays/000001.npz``): written exactly, read back
the same, and every reader (verify, explain, load_trace) gives the same answers on them as on the
forms earlier versions wrote (large arrays in one ``trace_arrays.npz``; every number as text), and
every unreadable arrays file of either form is one line."""
import io
import json
import os
import zipfile

import numpy as np
import pytest

from bnrepro.check.explain import explain_step
from bnrepro.trace.load import load_trace
from bnrepro.trace import (ARRAYS_DIRECTORY, ARRAYS_FILE, TRACE_FILE, TraceWriter, read_trace,
                           to_json_value)
from bnrepro.trace.format import map_arrays
from bnrepro.check.verify import verify_trace

LAYER = "layer1/batch_normalization"
CHUNK = f"{ARRAYS_DIRECTORY}/000001.npz"
OLD_BINARY_MIN_VALUES = 100  # earlier versions wrote arrays this large to trace_arrays.npz


@pytest.fixture(scope="module")
def binary_trace(tmp_path_factory):
    """A short comparison's bn trace (128 units), 30 steps: one chunk."""
    from bnrepro.config import EMBEDDED_DATA, CompareConfig
    from bnrepro.compare.run import run_compare

    out = tmp_path_factory.mktemp("arrays") / "out"
    config = CompareConfig(methods="bn", steps=30, data=EMBEDDED_DATA, trace_tensors_every=10)
    run_compare(config, str(out), write=lambda line: None, progress_stream=open(os.devnull, "w"))
    return str(out / "bn")


def write_earlier_form(directory, trace, binary_min_values=None):
    """``trace`` written as earlier versions wrote it: every number as JSON text, or with
    ``binary_min_values`` the arrays of at least that many numbers in one ``trace_arrays.npz``
    (float32, members ``section|name|quantity``, ``#2`` for another shape), referenced as
    ``{"array": "trace_arrays.npz", "key": member, "index": row}``."""
    members, names = {}, {}

    def stored(value, member):
        if (binary_min_values is None or not isinstance(value, np.ndarray)
                or value.size < binary_min_values):
            return to_json_value(value)
        value = value.astype(np.float32) if value.dtype.kind == "f" else value
        if (member, value.shape) not in names:
            name, suffix = member, 2
            while name in members:
                name, suffix = f"{member}#{suffix}", suffix + 1
            names[member, value.shape], members[name] = name, []
        name = names[member, value.shape]
        members[name].append(value)
        return {"array": ARRAYS_FILE, "key": name, "index": len(members[name]) - 1}

    lines = [trace.header] + [map_arrays(record, stored) for record in trace.steps]
    lines += [{"end": trace.end}] if trace.end is not None else []
    with open(os.path.join(directory, TRACE_FILE), "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(to_json_value(line), allow_nan=True) + "\n"
                          for line in lines)
    if members:
        np.savez(os.path.join(directory, ARRAYS_FILE),
                 **{name: np.stack(rows) for name, rows in members.items()})
    return str(directory)


@pytest.fixture(scope="module")
def old_binary_trace(binary_trace, tmp_path_factory):
    """The same records as an earlier version wrote them: large arrays in trace_arrays.npz."""
    return write_earlier_form(tmp_path_factory.mktemp("old"), read_trace(binary_trace),
                              OLD_BINARY_MIN_VALUES)


@pytest.fixture(scope="module")
def text_trace(binary_trace, tmp_path_factory):
    """The same records with every number as text (no arrays file)."""
    return write_earlier_form(tmp_path_factory.mktemp("text"), read_trace(binary_trace))


@pytest.fixture(scope="module")
def forms(binary_trace, old_binary_trace, text_trace):
    return {"chunks": binary_trace, "trace_arrays.npz": old_binary_trace, "text": text_trace}


def test_arrays_are_referenced_and_readable_without_bnrepro(binary_trace):
    assert sorted(os.listdir(binary_trace)) == sorted([ARRAYS_DIRECTORY, TRACE_FILE])  # no CSV
    assert os.listdir(os.path.join(binary_trace, ARRAYS_DIRECTORY)) == ["000001.npz"]
    with open(os.path.join(binary_trace, TRACE_FILE), encoding="utf-8") as handle:
        lines = [json.loads(line) for line in handle]
    assert lines[5]["arrays"] == CHUNK and lines[5]["step"] == 4
    assert lines[5]["bn"][LAYER]["moving_mean"] == {"row": 4}
    with np.load(os.path.join(binary_trace, CHUNK)) as stored:  # NumPy alone
        table = stored[f"bn|{LAYER}|moving_mean"]
        assert table.shape == (31, 128) and table.dtype == np.float32
        inputs = stored[f"bn|{LAYER}|batch_input"]
        assert inputs.shape == (3, 128, 128)  # steps 10, 20, 30 (--trace-tensors-every 10)
    assert isinstance(lines[5]["loss"], float)  # scalars stay text


def test_earlier_forms_are_what_earlier_versions_wrote(old_binary_trace, text_trace):
    """The helper's files have the old layout: one trace_arrays.npz and its references, or no
    arrays file at all."""
    assert sorted(os.listdir(old_binary_trace)) == sorted([ARRAYS_FILE, TRACE_FILE])
    assert os.listdir(text_trace) == [TRACE_FILE]
    with open(os.path.join(old_binary_trace, TRACE_FILE), encoding="utf-8") as handle:
        line = json.loads(handle.read().splitlines()[5])
    assert line["bn"][LAYER]["moving_mean"] == {"array": ARRAYS_FILE,
                                                "key": f"bn|{LAYER}|moving_mean", "index": 4}


def test_every_form_reads_back_the_same_records(forms):
    """Every step of every section, as JSON values (a row, a float64 array or a list of numbers
    give the same), and the end line."""
    traces = {form: read_trace(path) for form, path in forms.items()}
    chunks = traces.pop("chunks")
    assert len(chunks.steps) == 31
    for form, trace in traces.items():
        assert trace.end == chunks.end, form
        assert len(trace.steps) == len(chunks.steps), form
        for left, right in zip(chunks.steps, trace.steps):
            assert to_json_value(left) == to_json_value(right), (form, left["step"])


def test_every_reader_agrees_on_every_form(forms):
    reports = {form: verify_trace(read_trace(path)) for form, path in forms.items()}
    assert all(report.passed for report in reports.values())
    strip = lambda report: report.format().split("\n", 1)[1]  # noqa: E731 (the path differs)
    assert len({strip(report) for report in reports.values()}) == 1
    explained = {form: explain_step(read_trace(path), 20, channel=5) for form, path in forms.items()}
    assert len(set(explained.values())) == 1
    left = load_trace(forms["chunks"])
    for form in ("trace_arrays.npz", "text"):
        right = load_trace(forms[form])
        for quantity, array in left.layers[LAYER].items():
            other = right.layers[LAYER][quantity]
            if isinstance(array, dict):
                assert array.keys() == other.keys()
                for step in array:
                    np.testing.assert_array_equal(array[step], other[step])
            else:
                np.testing.assert_array_equal(array, other)


def test_load_trace_gives_steps_by_units(binary_trace):
    """moving_mean is (31 steps, 128 units); step 0 has no batch statistics (NaN); the arrays
    follow the moving-average formula across steps: the same numbers verify checks."""
    loaded = load_trace(binary_trace)
    layer = loaded.layers[LAYER]
    assert loaded.steps.tolist() == list(range(31))
    assert layer["moving_mean"].shape == (31, 128)
    assert np.isnan(layer["batch_mean"][0]).all() and not np.isnan(layer["batch_mean"][1:]).any()
    momentum = loaded.header["layers"][LAYER]["momentum"]
    expected = momentum * layer["moving_mean"][:-1] + (1 - momentum) * layer["batch_mean"][1:]
    np.testing.assert_allclose(layer["moving_mean"][1:], expected, rtol=1e-5, atol=1e-6)
    assert sorted(layer["batch_input"]) == [10, 20, 30]
    frame = loaded.frame()
    row = frame[(frame.step == 3) & (frame.quantity == "moving_variance") & (frame.unit == 7)]
    assert row.value.tolist() == [layer["moving_variance"][3, 7]]


@pytest.mark.parametrize("form", ["chunks", "trace_arrays.npz"])
def test_a_missing_arrays_file_is_one_line(forms, tmp_path, form):
    from bnrepro.errors import UserError

    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / TRACE_FILE).write_text(open(os.path.join(forms[form], TRACE_FILE)).read())
    missing = CHUNK if form == "chunks" else ARRAYS_FILE
    with pytest.raises(UserError, match=rf"line 2 refers to .*{missing}: no such file"):
        read_trace(str(copy))


def _members(path):
    """An arrays file's arrays, by member."""
    with np.load(path) as stored:
        return {name: stored[name] for name in stored.files}


def _npz_bytes(members):
    """An .npz file's bytes (``np.savez``, which pickles an object array)."""
    buffer = io.BytesIO()
    np.savez(buffer, **members)
    return buffer.getvalue()


def _with_raw_member(members, key, content):
    """An .npz whose member ``key`` is ``content``, bytes that are no .npy array."""
    buffer = io.BytesIO(_npz_bytes({name: value for name, value in members.items()
                                    if name != key}))
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr(key + ".npy", content)
    return buffer.getvalue()


def _damaged_member(members, key):
    """An .npz whose member ``key`` has 8 bytes of its data overwritten (its CRC no longer holds)."""
    content = bytearray(_npz_bytes(members))
    with zipfile.ZipFile(io.BytesIO(bytes(content))) as archive:
        info = archive.getinfo(key + ".npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 200
    content[start:start + 8] = b"\xff" * 8
    return bytes(content)


MOVING_MEAN = f"bn|{LAYER}|moving_mean"
NOT_AN_NPZ = "not an .npz archive (a zip of .npy arrays)"
CUT_SHORT = "cut short or damaged (a zip without the directory at its end)"
# name -> (the .npz's bytes from the trace's own bytes and members, what the one line says)
CORRUPTIONS = {
    "empty": (lambda data, members: b"", "empty file, not an .npz archive"),
    "cut after 2 bytes": (lambda data, members: data[:2], CUT_SHORT),
    "cut after 100 bytes": (lambda data, members: data[:100], CUT_SHORT),
    "cut in half": (lambda data, members: data[:len(data) // 2], CUT_SHORT),
    "cut 30 bytes short": (lambda data, members: data[:-30], CUT_SHORT),
    "cut 1 byte short": (lambda data, members: data[:-1], CUT_SHORT),
    "random bytes": (lambda data, members: np.random.default_rng(0).bytes(5000), NOT_AN_NPZ),
    "text": (lambda data, members: b"moving_mean,0.5\n", NOT_AN_NPZ),
    "a single .npy": (lambda data, members: _npy_bytes(members[MOVING_MEAN]),
                      "a single .npy array, not an .npz archive"),
    "a damaged member": (lambda data, members: _damaged_member(members, MOVING_MEAN),
                         f"cannot read member '{MOVING_MEAN}' (Bad CRC-32"),
    "a member missing": (
        lambda data, members: _npz_bytes({name: value for name, value in members.items()
                                          if name != MOVING_MEAN}),
        f"no member '{MOVING_MEAN}'"),
    "a member that is no .npy": (
        lambda data, members: _with_raw_member(members, MOVING_MEAN, b"0.5 0.25 0.125"),
        f"member '{MOVING_MEAN}' is not an .npy array"),
    "an object array (pickled)": (
        lambda data, members: _npz_bytes(dict(members, **{
            MOVING_MEAN: np.array([None] * 31, dtype=object)})),
        f"cannot read member '{MOVING_MEAN}' (Object arrays cannot be loaded"),
    "a single number": (
        lambda data, members: _npz_bytes(dict(members, **{MOVING_MEAN: np.float32(0.5)})),
        f"member '{MOVING_MEAN}' is a single value, not rows"),
    "strings": (
        lambda data, members: _npz_bytes(dict(members, **{MOVING_MEAN: np.array(["a"] * 31)})),
        f"member '{MOVING_MEAN}' holds str32 values, not numbers"),
    "too few rows": (
        lambda data, members: _npz_bytes(dict(members, **{MOVING_MEAN: members[MOVING_MEAN][:3]})),
        f"refers to row 3 of '{MOVING_MEAN}' in"),
}


def _npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize("form", ["chunks", "trace_arrays.npz"])
@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_every_unreadable_arrays_file_is_one_line_from_every_reader(forms, tmp_path, capsys,
                                                                    corruption, form):
    """verify, explain and reference (the command line, in-process) and load_trace: a one-line
    error naming the line that refers to the arrays file (a chunk, or an earlier version's
    trace_arrays.npz), the file and the problem, exit status 2."""
    from bnrepro.cli import EXIT_USAGE, main
    from bnrepro.errors import UserError

    make, problem = CORRUPTIONS[corruption]
    arrays = CHUNK if form == "chunks" else ARRAYS_FILE
    source = os.path.join(forms[form], arrays)
    with open(source, "rb") as handle:
        data = handle.read()
    copy = tmp_path / "copy"
    (copy / ARRAYS_DIRECTORY).mkdir(parents=True)
    (copy / TRACE_FILE).write_text(open(os.path.join(forms[form], TRACE_FILE)).read())
    (copy / arrays).write_bytes(make(data, _members(source)))
    npz = str(copy / arrays)
    line = 5 if corruption == "too few rows" else 2  # the first reference to what fails
    expected = f"bnrepro: error: {copy / TRACE_FILE} line {line} refers to "
    for argv in (["verify", str(copy)], ["explain", str(copy), "--step", "3"],
                 ["reference", str(copy)]):
        assert main(argv) == EXIT_USAGE, argv
        captured = capsys.readouterr()
        assert captured.out == "" and len(captured.err.splitlines()) == 1, captured.err
        assert captured.err.startswith(expected), captured.err
        assert npz in captured.err and problem in captured.err, captured.err
    with pytest.raises(UserError) as raised:
        load_trace(str(copy))
    assert problem in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("form", ["chunks", "trace_arrays.npz"])
def test_every_line_of_the_binary_forms_validates(forms, form):
    """The references (a chunk's rows and an earlier version's trace_arrays.npz) and the step's
    "arrays" are part of the documented format."""
    import jsonschema

    import bnrepro

    with open(os.path.join(os.path.dirname(bnrepro.__file__), "trace", "schema.json"),
              encoding="utf-8") as handle:
        validator = jsonschema.Draft202012Validator(json.load(handle))
    with open(os.path.join(forms[form], TRACE_FILE), encoding="utf-8") as handle:
        lines = [json.loads(line) for line in handle]
    assert any(("row" if form == "chunks" else "array") in str(line) for line in lines[1:])
    for number, line in enumerate(lines, start=1):
        errors = [error.message for error in validator.iter_errors(line)]
        assert not errors, f"line {number}: {errors[:3]}"
    layer = lines[3]["bn"][LAYER]
    for reference in ({"array": "other.npz", "key": "x", "index": 0}, {"row": -1},
                      {"row": 0, "key": 3}, {"row": 0, "index": 0}):
        assert not validator.is_valid(dict(lines[3], bn={LAYER: dict(layer, moving_mean=reference)}))
    for outside in ("../elsewhere.npz", "/tmp/x.npz", "trace_arrays/../../x.npz", ""):
        assert not validator.is_valid(dict(lines[3], arrays=outside)), outside


def test_any_chunk_size_gives_the_same_records(binary_trace, tmp_path):
    """Written in chunks of 1, 7 or 256 records (one file per chunk, the last one short), the
    records read back the same."""
    original = read_trace(binary_trace)
    for chunk_records, files in ((1, 31), (7, 5), (256, 1)):
        directory = tmp_path / f"chunk{chunk_records}"
        directory.mkdir()
        with TraceWriter(str(directory), original.header, chunk_records=chunk_records) as writer:
            for record in original.steps:
                writer.write_step(record)
            writer.finish(**{key: original.end[key] for key in ("status", "last_step")})
        assert len(os.listdir(directory / ARRAYS_DIRECTORY)) == files
        read = read_trace(str(directory))
        assert read.end == original.end
        assert [to_json_value(step) for step in read.steps] == \
            [to_json_value(step) for step in original.steps]


def test_the_figures_and_the_tensorboard_export_read_every_form(forms, tmp_path):
    """``bnrepro plot``'s series and ``bnrepro tensorboard``'s summaries are the same from every
    form of one trace (a comparison's bn trace, ``bnrepro-trace/1``)."""
    from bnrepro.trace import open_trace
    from bnrepro.trace.plots import layer_series
    from bnrepro.trace.tensorboard import write_summaries
    from test_tensorboard_export import _read

    series = {form: layer_series(open_trace(path))[LAYER] for form, path in forms.items()}
    summaries = {}
    for form, path in forms.items():
        write_summaries(open_trace(path), str(tmp_path / form), write=lambda line: None)
        summaries[form] = _read(tmp_path / form)
    first = series["chunks"]
    assert first.steps.tolist() == list(range(31))
    assert sorted(summaries["chunks"]) and all(
        value <= 1 for value in summaries["chunks"][f"{LAYER}/update_error_of_bound"].values())
    for form in ("trace_arrays.npz", "text"):
        np.testing.assert_array_equal(series[form].steps, first.steps)
        for key, values in first.values.items():
            np.testing.assert_array_equal(series[form].values[key], values, err_msg=str(key))
        assert summaries[form].keys() == summaries["chunks"].keys()
        for tag, by_step in summaries["chunks"].items():
            for step, value in by_step.items():
                np.testing.assert_array_equal(summaries[form][tag][step], value, err_msg=tag)
