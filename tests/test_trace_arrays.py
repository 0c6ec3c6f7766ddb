"""Large arrays in trace_arrays.npz beside trace.jsonl: written exactly, read back the same, and every
reader (verify, explain, load_trace) gives the same answers on the binary and the all-text form."""
import io
import json
import os
import zipfile

import numpy as np
import pytest

from bnrepro.trace import writer as trace_module
from bnrepro.check.explain import explain_step
from bnrepro.trace.load import load_trace
from bnrepro.trace import ARRAYS_FILE, TRACE_FILE, TraceWriter, read_trace
from bnrepro.check.verify import verify_trace

LAYER = "layer1/batch_normalization"


@pytest.fixture(scope="module")
def binary_trace(tmp_path_factory):
    """A short comparison's bn trace (128 units, so its arrays go to the .npz), 30 steps."""
    from bnrepro.config import EMBEDDED_DATA, CompareConfig
    from bnrepro.compare.run import run_compare

    out = tmp_path_factory.mktemp("arrays") / "out"
    config = CompareConfig(methods="bn", steps=30, data=EMBEDDED_DATA, trace_tensors_every=10)
    run_compare(config, str(out), write=lambda line: None, progress_stream=open(os.devnull, "w"))
    return str(out / "bn")


@pytest.fixture(scope="module")
def text_trace(binary_trace, tmp_path_factory, monkeypatch_module):
    """The same records written with every number as text (no .npz), and trace.csv."""
    original = read_trace(binary_trace)
    directory = tmp_path_factory.mktemp("text")
    monkeypatch_module.setattr(trace_module, "BINARY_MIN_VALUES", 10**9)
    with TraceWriter(str(directory), original.header) as writer:
        for record in original.steps:
            writer.write_step(record)
        writer.finish(**{key: original.end[key] for key in ("status", "last_step")})
    monkeypatch_module.undo()
    return str(directory)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_large_arrays_are_referenced_and_readable_without_bnrepro(binary_trace):
    assert sorted(os.listdir(binary_trace)) == sorted([ARRAYS_FILE, TRACE_FILE])  # no CSV
    with open(os.path.join(binary_trace, TRACE_FILE), encoding="utf-8") as handle:
        lines = [json.loads(line) for line in handle]
    reference = lines[5]["bn"][LAYER]["moving_mean"]
    assert reference == {"array": ARRAYS_FILE, "key": f"bn|{LAYER}|moving_mean", "index": 4}
    with np.load(os.path.join(binary_trace, ARRAYS_FILE)) as stored:  # NumPy alone
        table = stored[f"bn|{LAYER}|moving_mean"]
        assert table.shape == (31, 128) and table.dtype == np.float32
        inputs = stored[f"bn|{LAYER}|batch_input"]
        assert inputs.shape == (3, 128, 128)  # steps 10, 20, 30 (--trace-tensors-every 10)
    assert isinstance(lines[5]["loss"], float)  # small values stay text


def test_both_forms_read_back_the_same_numbers(binary_trace, text_trace):
    binary, text = read_trace(binary_trace), read_trace(text_trace)
    assert not os.path.exists(os.path.join(text_trace, ARRAYS_FILE))
    assert len(binary.steps) == len(text.steps) == 31 and binary.end == text.end
    for left, right in zip(binary.steps, text.steps):
        for quantity, value in left["bn"][LAYER].items():
            np.testing.assert_array_equal(value, right["bn"][LAYER][quantity])


def test_every_reader_agrees_on_both_forms(binary_trace, text_trace):
    binary, text = verify_trace(read_trace(binary_trace)), verify_trace(read_trace(text_trace))
    assert binary.passed and text.passed
    strip = lambda report: report.format().split("\n", 1)[1]  # noqa: E731 (the path differs)
    assert strip(binary) == strip(text)
    assert (explain_step(read_trace(binary_trace), 20, channel=5)
            == explain_step(read_trace(text_trace), 20, channel=5))
    left, right = load_trace(binary_trace), load_trace(text_trace)
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


def test_a_missing_arrays_file_is_one_line(binary_trace, tmp_path):
    from bnrepro.errors import UserError

    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / TRACE_FILE).write_text(open(os.path.join(binary_trace, TRACE_FILE)).read())
    with pytest.raises(UserError, match=r"line 2 refers to .*trace_arrays.npz: no such file"):
        read_trace(str(copy))


def _members(binary_trace):
    """The binary trace's arrays, by member."""
    with np.load(os.path.join(binary_trace, ARRAYS_FILE)) as stored:
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


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_every_unreadable_arrays_file_is_one_line_from_every_reader(binary_trace, tmp_path,
                                                                    capsys, corruption):
    """verify, explain and reference (the command line, in-process) and load_trace: a one-line
    error naming the line that refers to the .npz, the file and the problem, exit status 2."""
    from bnrepro.cli import EXIT_USAGE, main
    from bnrepro.errors import UserError

    make, problem = CORRUPTIONS[corruption]
    with open(os.path.join(binary_trace, ARRAYS_FILE), "rb") as handle:
        data = handle.read()
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / TRACE_FILE).write_text(open(os.path.join(binary_trace, TRACE_FILE)).read())
    (copy / ARRAYS_FILE).write_bytes(make(data, _members(binary_trace)))
    npz = str(copy / ARRAYS_FILE)
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


def test_every_line_of_the_binary_form_validates(binary_trace):
    """The references into trace_arrays.npz are part of the documented format."""
    import jsonschema

    import bnrepro

    with open(os.path.join(os.path.dirname(bnrepro.__file__), "trace", "schema.json"),
              encoding="utf-8") as handle:
        validator = jsonschema.Draft202012Validator(json.load(handle))
    with open(os.path.join(binary_trace, TRACE_FILE), encoding="utf-8") as handle:
        lines = [json.loads(line) for line in handle]
    assert any("array" in str(line) for line in lines[1:])
    for number, line in enumerate(lines, start=1):
        errors = [error.message for error in validator.iter_errors(line)]
        assert not errors, f"line {number}: {errors[:3]}"
    bad = dict(lines[3])
    bad["bn"] = {LAYER: dict(lines[3]["bn"][LAYER], moving_mean={"array": "other.npz", "key": "x",
                                                                  "index": 0})}
    assert not validator.is_valid(bad)


def test_batched_writing_gives_the_same_files(binary_trace, tmp_path):
    """Records handed over and written 7 at a time, or all at the end (``None``): nothing but the
    header on disk until a batch is full (or the end), and then the same trace.jsonl and
    trace_arrays.npz as written one by one."""
    original = read_trace(binary_trace)
    written = {}
    for batch in (1, 7, None):
        directory = tmp_path / f"batch{batch}"
        directory.mkdir()
        with TraceWriter(str(directory), original.header, csv=False, batch=batch) as writer:
            for count, record in enumerate(original.steps, start=1):
                writer.write_step(record)
                writer._jsonl.flush()  # what the writer has written, not what it holds
                with open(directory / TRACE_FILE, encoding="utf-8") as handle:
                    lines = handle.read().count("\n")
                assert lines == (1 if batch is None else 1 + count - count % batch)
            writer.finish(**{key: original.end[key] for key in ("status", "last_step")})
        with open(directory / TRACE_FILE, encoding="utf-8") as handle:
            text = handle.read()
        with np.load(directory / ARRAYS_FILE) as stored:
            written[batch] = (text, {name: stored[name] for name in stored.files})
    for batch in (7, None):
        assert written[batch][0] == written[1][0]
        assert written[batch][1].keys() == written[1][1].keys()
        for name, array in written[1][1].items():
            assert array.dtype == written[batch][1][name].dtype
            assert np.array_equal(array, written[batch][1][name], equal_nan=True)
        assert read_trace(str(tmp_path / f"batch{batch}")).end["records"] == len(original.steps)


def test_batch_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="at least 1 or None"):
        TraceWriter(str(tmp_path), {"format": "bnrepro-trace/2"}, batch=0)
