"""The trace format: writing it, reading it back, and refusing what is not it.

A trace is JSON Lines. Everything bnrepro writes (``bnrepro run``, ``bnrepro compare``, ``bnrepro
trace``) is ``bnrepro-trace/2``, one layout whatever the program: the records of
:class:`bnrepro.tracer.Tracer`, to which a program of bnrepro's own adds its fields. Line 1 is the
header::

    {"format": "bnrepro-trace/2", "scenario": ..., "config": {...}, "versions": {...},
     "layers": {layer_name: {"momentum": m, "epsilon": e, "kind", "fused", "convention",
                             "zero_debias", "variables"[, the layer's mode]}, ...},
     "averages": {name: {"momentum", ...}, ...}}

(a layer's mode: ``virtual_batch_size`` and ``ghost_layout``, ``renorm``; see
:class:`bnrepro.layer_modes.LayerMode`). Every further line is one step: a ``session.run`` (or
Keras callable call) that moved a tracked statistic or trained, numbered in order (``"step": 0`` is
the initial state). From the tracer:

* ``"run": {"call", "index", "trained", "moved", "fetched"}``;
* ``"bn"``, per layer of the graph that ran: ``moving_mean``, ``moving_variance`` and, when the
  layer has them, ``gamma``, ``beta`` after the step; for steps >= 1 ``batch_mean`` and
  ``batch_variance`` as the step's update consumed them (when it ran) and ``batch_input`` (the
  layer's input in that run, on the steps that keep it); ``local_step`` (zero-debiased averages)
  and ``momentum`` (computed at run time) where they apply. The state before a step is the one of
  the last earlier step holding the layer (none when step numbers are missing in between: a trace
  that keeps some steps only);
* ``"averages"``: ``{name: {"value", "consumed"[, "local_step", "momentum"]}}`` of the averages
  that pair with no other (the header's ``"averages"``).

Added by ``bnrepro run`` and ``bnrepro compare``: ``"variables"`` (TensorFlow name -> value after the
step), ``"loss"``, ``"metrics"``, ``"inference"`` (per layer ``input`` and ``output`` in inference
mode with the variables before the step), ``"batch"`` (``inputs`` and ``targets``, or ``indices``
and ``labels``) and ``"after"`` (what a post prints after the step).

``bnrepro-trace/1``, written by earlier versions and by other programs (``scripts/pytorch_trace.py``),
is read as before: no ``run`` or ``averages``; every step's ``bn`` holds exactly the header's
layers with ``gamma`` and ``beta``; the state before step ``k`` is step ``k - 1``'s.

The last line says how the run ended, so that a trace cut short (a full disk, ``head -n``, a copy
interrupted) is told from a finished one::

    {"end": {"status": "complete" | "diverged" | "stopped", "last_step": k, "records": n,
             "reason": "..."}}

``last_step`` is the last training step that ran (recorded or not), ``records`` the number of step
lines before it, ``reason`` (optional) what stopped a run that is not complete. A trace without it
reads back (``Trace.end`` is ``None``); ``bnrepro verify`` then says it may be cut short and does
not pass it.

Numbers are float32 values written as JSON numbers through float64, so they read back exactly. This
module uses only NumPy and the standard library.
"""
from __future__ import annotations

import csv
import functools
import io
import json
import operator
import os
import platform
from dataclasses import dataclass, field
from importlib import metadata
from typing import Optional

import numpy as np

from bnrepro.errors import UserError

FORMAT = "bnrepro-trace/1"
FORMAT_2 = "bnrepro-trace/2"  # what bnrepro writes: the tracer's records; see the module docstring
FORMATS = (FORMAT, FORMAT_2)
END_STATUSES = ("complete", "diverged", "stopped")
TRACE_FILE = "trace.jsonl"
CSV_FILE = "trace.csv"
ARRAYS_FILE = "trace_arrays.npz"
BINARY_MIN_VALUES = 100  # an array this large goes to ARRAYS_FILE; smaller ones stay JSON text
ARRAY_SECTIONS = ("bn", "inference", "averages", "variables", "batch", "metrics", "after")
LAYER_STATE = ("moving_mean", "moving_variance", "gamma", "beta")
BATCH_STATISTICS = ("batch_mean", "batch_variance")


def library_versions():
    """Versions of the libraries that produced a trace (without importing them)."""
    versions = {"python": platform.python_version()}
    for package in ("bnrepro", "tensorflow", "tf_keras", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def make_header(scenario, config, layers):
    """A ``bnrepro-trace/1`` header line: ``layers`` maps layer name -> {"momentum", "epsilon"}
    (:meth:`bnrepro.tracer.Tracer.header` makes the ``bnrepro-trace/2`` header from it)."""
    return {"format": FORMAT, "scenario": scenario, "config": config,
            "versions": library_versions(), "layers": layers}


def to_json_value(value):
    """NumPy arrays and scalars -> nested lists of Python floats/ints (float32 exact via float64)."""
    if isinstance(value, dict):
        return {str(key): to_json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(item) for item in value]
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.asarray(value)
        if array.dtype.kind == "f":
            return array.astype(np.float64).tolist()
        return array.tolist()
    return value


class TraceWriter:
    """Writes ``trace.jsonl``, its binary companion ``trace_arrays.npz`` and, optionally, the flat
    text twin ``trace.csv`` (step, section, key, quantity, index, value) into a directory.

    Small arrays are written as text in the JSON line (the posts' scenarios: every number is
    readable there). An array of :data:`BINARY_MIN_VALUES` numbers or more (a 128-unit layer's
    statistics, a layer's input) goes to ``trace_arrays.npz`` instead, NumPy's own format
    (``numpy.load`` reads it, no bnrepro needed), and the JSON line holds a reference that names it
    exactly: ``{"array": "trace_arrays.npz", "key": "bn|layer1/batch_normalization|moving_mean",
    "index": 3}``, row 3 of that member. Members stack the arrays of one quantity (and shape) in
    step order, in their own dtype (float32 stays float32, exact). The ``.npz`` is written when the
    writer closes. ``trace.csv`` repeats only the numbers written as text.

    Each text number is formatted once: ``repr`` of its float64 value (the shortest text that
    reads back to the same float64, so float32 values exactly). ``json.dumps`` writes floats with
    the same ``float.__repr__``, so that text serves both files, and each record is one write per
    file. The files are what ``json.dumps(to_json_value(record), allow_nan=True)`` and one
    ``csv.writer`` row per number would give, byte for byte (``tests/test_trace.py`` checks this).
    """

    def __init__(self, directory, header, *, csv=True):
        self.header = header
        self.directory = directory
        self._jsonl = open(os.path.join(directory, TRACE_FILE), "w", encoding="utf-8")
        self._csv_file = None
        if csv:
            self._csv_file = open(os.path.join(directory, CSV_FILE), "w", encoding="utf-8",
                                  newline="")
            self._csv_file.write(_csv_fields("step", "section", "key", "quantity", "index",
                                             "value") + CSV_LINE_END)
        self._arrays = {}  # member -> [row arrays]
        self._members = {}  # (section, name, quantity, shape, dtype) -> member
        self._write_line(header)
        self.records = 0
        self.last_step = None

    def _write_line(self, obj):
        self._jsonl.write(json.dumps(obj, allow_nan=True) + "\n")

    def write_step(self, record):
        """Append one step record (dict of NumPy values)."""
        written = self._with_references(record)
        if self._csv_file is None:  # no number's text to share: one json.dumps of the record
            line = json.dumps(to_json_value(written), allow_nan=True)
        else:
            line = _json_text(written, self._write_csv_rows(record["step"], written))
        self._jsonl.write(line + "\n")
        self.records += 1
        self.last_step = int(record["step"])

    def _write_csv_rows(self, step, written):
        """Write the CSV rows of a record's text numbers; return their texts for the JSON line
        (``id(entry)`` -> :func:`_number_texts` of it)."""
        texts, csv_lines = {}, []
        step_field = _csv_fields(to_json_value(step))
        for section, key, quantity, value in _flatten_step(written):
            if isinstance(value, dict):  # in the .npz
                continue
            if id(value) not in texts:
                texts[id(value)] = _number_texts(value)
            leading = f"{step_field},{_csv_fields(section, key, quantity)},"
            csv_lines.append(_csv_lines(leading, texts[id(value)][1]))
        self._csv_file.write("".join(csv_lines))
        return texts

    def _with_references(self, record):
        """``record`` with every large array replaced by its reference into the ``.npz``."""
        written = dict(record)
        for section in ARRAY_SECTIONS:
            entries = record.get(section)
            if not isinstance(entries, dict):
                continue
            written[section] = {}
            for name, value in entries.items():
                if isinstance(value, dict):  # {layer: {quantity: value}}
                    written[section][name] = {
                        quantity: self._stored(section, name, quantity, item)
                        for quantity, item in value.items()}
                else:
                    written[section][name] = self._stored(section, name, "", value)
        return written

    def _stored(self, section, name, quantity, value):
        """``value`` itself, or for a large array its reference (the array kept for the .npz)."""
        if not isinstance(value, np.ndarray) or value.size < BINARY_MIN_VALUES:
            return value
        identity = (section, name, quantity, value.shape, value.dtype.str)
        if identity not in self._members:
            member = "|".join((section, name, quantity))
            taken = set(self._members.values())
            suffix = 2
            while member in taken:
                member = f"{'|'.join((section, name, quantity))}#{suffix}"
                suffix += 1
            self._members[identity] = member
            self._arrays[member] = []
        member = self._members[identity]
        self._arrays[member].append(np.array(value, copy=True))
        return {"array": ARRAYS_FILE, "key": member, "index": len(self._arrays[member]) - 1}

    def finish(self, status="complete", *, last_step=None, reason=None):
        """Write the end line (:func:`end_record`); ``last_step`` defaults to the last recorded."""
        self._write_line(end_record(status, self.last_step if last_step is None else last_step,
                                    self.records, reason))

    def flush(self):
        """Hand everything written so far to the operating system (the ``.npz`` is written at
        :meth:`close`)."""
        self._jsonl.flush()
        if self._csv_file is not None:
            self._csv_file.flush()

    def close(self):
        if self._arrays:
            np.savez(os.path.join(self.directory, ARRAYS_FILE),
                     **{member: np.stack(rows) for member, rows in self._arrays.items()})
            self._arrays = {}
        self._jsonl.close()
        if self._csv_file is not None:
            self._csv_file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def end_record(status, last_step, records, reason=None):
    """The trace's last line: ``{"end": {"status", "last_step", "records"[, "reason"]}}``."""
    if status not in END_STATUSES:
        raise ValueError(f"end status {status!r} is not one of {END_STATUSES}")
    end = {"status": status, "last_step": int(last_step), "records": int(records)}
    if reason:
        end["reason"] = str(reason)
    return {"end": end}


CSV_LINE_END = "\r\n"  # the csv module's default (excel) line terminator


def _flatten_step(step):
    """Yield ``(section, key, quantity, value)`` for every number-bearing entry of a step."""
    for section in ("bn", "inference", "averages"):
        for layer, quantities in step.get(section, {}).items():
            for quantity, value in quantities.items():
                yield section, layer, quantity, value
    for name, value in step.get("variables", {}).items():
        yield "variables", name, "value", value
    for section in ("batch", "metrics", "after"):
        for name, value in step.get(section, {}).items():
            yield section, "", name, value
    if "loss" in step:
        yield "loss", "", "loss", step["loss"]


def _number_texts(value):
    """``(JSON text, [CSV value text per number in C order])`` of one number-bearing entry.

    The CSV texts are ``repr(float)`` of each number as float64. For floats that are all finite,
    ``repr`` of the nested list is also the JSON text (``json.dumps`` writes ``float.__repr__`` and
    separates items with ``", "``, as list ``repr`` does) and its items are the CSV texts: every
    number is formatted once. Anything else (ints, NaN and infinities, which JSON spells ``NaN``
    and ``Infinity``, Python lists) is formatted number by number.
    """
    if isinstance(value, (np.ndarray, np.generic, float)):
        array = np.asarray(value)
        if array.dtype.kind == "f" and array.size and np.isfinite(array).all():
            text = repr(array.astype(np.float64).tolist())  # "[[1.5, -2e-05], [...]]"
            return text, text.replace("[", "").replace("]", "").split(", ")
    json_value = to_json_value(value)
    flat = np.asarray(json_value, dtype=np.float64).ravel()  # C order
    return json.dumps(json_value, allow_nan=True), [repr(number) for number in flat.tolist()]


def _json_text(value, texts):
    """``json.dumps(to_json_value(value), allow_nan=True)``, taking the text of the entries in
    ``texts`` (keyed by ``id``) from there."""
    if id(value) in texts:
        return texts[id(value)][0]
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(key))}: {_json_text(item, texts)}"
                               for key, item in value.items()) + "}"
    return json.dumps(to_json_value(value), allow_nan=True)


@functools.lru_cache(maxsize=1024, typed=True)  # typed: the step 1 is "1", a 1.0 would be "1.0"
def _csv_fields(*fields):
    """``fields`` as the csv module writes them in a row (quoted where needed), without the line
    end."""
    line = io.StringIO()
    csv.writer(line, lineterminator="").writerow(fields)
    return line.getvalue()


@functools.lru_cache(maxsize=None)
def _index_fields(count):
    """``("0,", "1,", ..., f"{count - 1},")``: the index field of each line and its separator."""
    return tuple(f"{index}," for index in range(count))


def _csv_lines(leading, values):
    """One CSV line ``{leading}{index},{value}`` per value text; ``leading`` ends with a comma.
    Indices and ``repr`` floats (digits, ``.-+e``, ``nan``, ``inf``) never need quoting."""
    if not values:
        return ""
    separator = CSV_LINE_END + leading
    return (leading + separator.join(map(operator.add, _index_fields(len(values)), values))
            + CSV_LINE_END)


@dataclass
class Trace:
    """A trace read back: the header dict, the step dicts (tensors as float64 NumPy arrays) and the
    end line's ``{"status", "last_step", "records"[, "reason"]}`` (``None``: the trace has none)."""

    path: str
    header: dict
    steps: list
    end: Optional[dict] = None
    _previous: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # before()'s chains

    @property
    def layers(self):
        return self.header["layers"]

    @property
    def generic(self):
        """A ``bnrepro-trace/2`` trace (any program's runs, :mod:`bnrepro.tracer`)."""
        return self.header.get("format") == FORMAT_2

    @property
    def averages(self):
        """The header's averages that pair with no other (``bnrepro-trace/2``)."""
        return self.header.get("averages", {})

    def step(self, number):
        """The record of step ``number``, or ``None`` if it was not traced."""
        return self._by_number().get(number)

    def before(self, record, name, section="bn"):
        """The record whose ``section`` state of ``name`` is the state before ``record``: step
        ``k - 1`` (``bnrepro-trace/1``: ``None`` when it was not traced), or the last earlier
        record holding ``name`` (``bnrepro-trace/2``, where every run that moves it is a step,
        numbered in order; ``None`` when step numbers are missing in between: a trace that keeps
        some steps only, ``bnrepro compare --trace-every``)."""
        if not self.generic:
            return self.step(record["step"] - 1)
        key = (section, name, len(self.steps))
        if key not in self._previous:
            chain, previous, last = {}, None, None
            for candidate in self.steps:
                if last is not None and candidate["step"] != last + 1:
                    previous = None  # steps left out: the state before this one is not known
                chain[id(candidate)] = previous
                if name in candidate.get(section, {}):
                    previous = candidate
                last = candidate["step"]
            self._previous[key] = chain
        return self._previous[key].get(id(record))

    def _by_number(self):
        return {record["step"]: record for record in self.steps}


def read_trace(path):
    """Read and check a trace file (or a directory holding ``trace.jsonl``); return a :class:`Trace`.

    Raises :class:`UserError` naming the file, the line and the problem for a missing file, a line
    that is not JSON (a truncated write), another format version, or tensors whose shapes disagree.
    """
    if os.path.isdir(path):
        path = os.path.join(path, TRACE_FILE)
    if not os.path.isfile(path):
        raise UserError(f"trace {path} does not exist")
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read trace {path}: {error}") from None
    if not lines:
        raise UserError(f"trace {path} is empty")
    objects = []
    for number, line in enumerate(lines, start=1):
        try:
            objects.append(json.loads(line))
        except json.JSONDecodeError as error:
            hint = " (truncated?)" if number == len(lines) else ""
            raise UserError(f"{path} line {number} is not valid JSON{hint}: {error.msg}") from None
    header = objects[0]
    if not isinstance(header, dict) or "format" not in header:
        raise UserError(f"{path} line 1 is not a bnrepro trace header (no \"format\")")
    if header["format"] not in FORMATS:
        raise UserError(f"{path} is format {header['format']!r}; this bnrepro reads "
                        f"{' and '.join(map(repr, FORMATS))}")
    if not isinstance(header.get("layers"), dict):
        raise UserError(f"{path} line 1 has no \"layers\" object")
    arrays = _ArrayFile(os.path.dirname(path))
    objects[1:] = [_resolved(record, arrays, f"{path} line {number}")
                   for number, record in enumerate(objects[1:], start=2)]
    end = None
    if len(objects) > 1 and isinstance(objects[-1], dict) and "end" in objects[-1]:
        end = _check_end(f"{path} line {len(objects)}", objects.pop()["end"])
    generic = header["format"] == FORMAT_2
    steps = [_check_step(path, number, record, header["layers"], generic)
             for number, record in enumerate(objects[1:], start=2)]
    if not steps:
        raise UserError(f"{path} has a header but no steps (truncated?)")
    return Trace(path=path, header=header, steps=steps, end=end)


class _ArrayFile:
    """The ``trace_arrays.npz`` beside a trace, opened on the first reference to it."""

    def __init__(self, directory):
        self.path = os.path.join(directory, ARRAYS_FILE)
        self._members = None

    def row(self, where, reference):
        if not (reference.get("array") == ARRAYS_FILE and isinstance(reference.get("key"), str)
                and isinstance(reference.get("index"), int)):
            raise UserError(f"{where}: {reference!r} is not an array reference ({{\"array\": "
                            f"\"{ARRAYS_FILE}\", \"key\": member, \"index\": row}})")
        if self._members is None:
            try:
                with np.load(self.path) as stored:
                    self._members = {name: stored[name] for name in stored.files}
            except (OSError, ValueError) as error:
                raise UserError(f"{where} refers to {self.path}, which cannot be read: "
                                f"{error}") from None
        member = self._members.get(reference["key"])
        if member is None or not 0 <= reference["index"] < len(member):
            raise UserError(f"{where}: {self.path} has no row {reference['index']} of "
                            f"{reference['key']!r}")
        return member[reference["index"]]


def _resolved(record, arrays, where):
    """A record with its array references replaced by the arrays (other lines as they are)."""
    if not isinstance(record, dict) or "step" not in record:
        return record
    resolved = dict(record)
    for section in ARRAY_SECTIONS:
        entries = record.get(section)
        if not isinstance(entries, dict):
            continue
        resolved[section] = {
            name: ({quantity: _value(item, arrays, where) for quantity, item in value.items()}
                   if isinstance(value, dict) and "array" not in value
                   else _value(value, arrays, where))
            for name, value in entries.items()}
    return resolved


def _value(value, arrays, where):
    return arrays.row(where, value) if isinstance(value, dict) and "array" in value else value


def _check_end(where, end):
    """The end line's object, checked: a known status and whole-number counts."""
    if (not isinstance(end, dict) or end.get("status") not in END_STATUSES
            or not all(isinstance(end.get(key), int) and not isinstance(end.get(key), bool)
                       for key in ("last_step", "records"))):
        raise UserError(f"{where} is not an end line: it must be {{\"end\": {{\"status\": one of "
                        f"{', '.join(END_STATUSES)}, \"last_step\": integer, \"records\": "
                        "integer}}")
    return end


def _check_step(path, line, record, layers, generic=False):
    """Convert one step's tensors to arrays and check their shapes against each other. ``generic``
    (``bnrepro-trace/2``): a step may hold some of the layers, without gamma and beta, and
    ``"averages"``."""
    where = f"{path} line {line}"
    if not isinstance(record, dict) or not isinstance(record.get("step"), int):
        raise UserError(f"{where} is not a step record (no integer \"step\")")
    converted = dict(record)
    batch_norm = record.get("bn", {} if generic else None)
    held = isinstance(batch_norm, dict) and (set(batch_norm) <= set(layers) if generic
                                             else set(batch_norm) == set(layers))
    if not held:
        raise UserError(f"{where}: \"bn\" must hold {'some of' if generic else 'exactly'} the "
                        f"header's layers {sorted(layers)}")
    converted["bn"] = {}
    required = ("moving_mean", "moving_variance") if generic else LAYER_STATE
    if generic:
        converted["averages"] = {
            name: {quantity: _array(where, f"averages {name} {quantity}", value)
                   for quantity, value in quantities.items()}
            for name, quantities in (record.get("averages") or {}).items()}
    for layer, quantities in batch_norm.items():
        arrays = {name: _parameter_shape(name, _array(where, f"bn {layer} {name}", value))
                  for name, value in quantities.items()}
        missing = [name for name in required if name not in arrays]
        if missing:
            raise UserError(f"{where}: layer {layer} lacks {', '.join(missing)}")
        channels = arrays["moving_mean"].shape
        for name in LAYER_STATE + BATCH_STATISTICS:
            if name in arrays and arrays[name].shape != channels:
                raise UserError(f"{where}: layer {layer} {name} has shape {arrays[name].shape}, "
                                f"moving_mean has {channels}")
        if "batch_input" in arrays and arrays["batch_input"].shape[-1:] != channels:
            raise UserError(f"{where}: layer {layer} batch_input's last axis "
                            f"{arrays['batch_input'].shape[-1:]} does not match {channels}")
        converted["bn"][layer] = arrays
    if "inference" in record:
        converted["inference"] = {}
        for layer, pair in record["inference"].items():
            if layer not in layers or set(pair) != {"input", "output"}:
                raise UserError(f"{where}: inference entry {layer!r} must be a header layer "
                                "with \"input\" and \"output\"")
            inputs = _array(where, f"inference {layer} input", pair["input"])
            outputs = _array(where, f"inference {layer} output", pair["output"])
            channels = converted["bn"][layer]["moving_mean"].shape
            if inputs.shape != outputs.shape or inputs.shape[-1:] != channels:
                raise UserError(f"{where}: inference {layer} input {inputs.shape} and output "
                                f"{outputs.shape} must match each other and {channels} channels")
            converted["inference"][layer] = {"input": inputs, "output": outputs}
    return converted


def _parameter_shape(name, array):
    """A layer's per-channel quantity as ``(C,)``: a ghost-batch layer (``virtual_batch_size``)
    keeps its parameters and moving statistics with shape ``(1, 1, C)``."""
    if name in LAYER_STATE + BATCH_STATISTICS and array.ndim > 1 and set(array.shape[:-1]) == {1}:
        return array.reshape(array.shape[-1:])  # (1, ..., 1, C) -> (C,)
    return array


def _array(where, what, value):
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{where}: {what} is not a numeric array") from None
