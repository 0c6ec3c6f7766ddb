"""Writing a trace: ``trace.jsonl``, its arrays in ``trace_arrays.npz`` and the optional CSV twin
(the layout is :mod:`bnrepro.trace.format`'s)."""
from __future__ import annotations

import csv
import functools
import io
import json
import operator
import os

import numpy as np

from bnrepro.trace.format import (ARRAY_SECTIONS, ARRAYS_FILE, BINARY_MIN_VALUES, CSV_FILE,
                                  TRACE_FILE, UPDATES, end_record, to_json_value)

CSV_LINE_END = "\r\n"  # the csv module's default (excel) line terminator


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

    Without the CSV twin the line is one ``json.dumps`` of the record, NumPy values converted as
    it meets them (:func:`_json_default`), and a large array is one row copied into a buffer that
    grows by doubling (:class:`_Rows`).

    ``batch``: records are kept as handed over and written ``batch`` at a time, or with ``None``
    all at the end (at :meth:`flush`, :meth:`finish` or :meth:`close`, which also write what a
    batch holds). Between a training loop's steps the same writing costs several times what it
    costs in a run of records (the loop's tensors have taken the caches), so a loop that hands over
    records it never changes again (the tracer's) writes them later. A record's arrays must then
    stay as they were until it is written. The ``.npz`` is written at :meth:`close` either way:
    until then a trace with references cannot be read.
    """

    def __init__(self, directory, header, *, csv=True, batch=1):
        if batch is not None and batch < 1:
            raise ValueError(f"batch must be at least 1 or None, got {batch}")
        self.batch = batch
        self._pending = []
        self.header = header
        self.directory = directory
        self._jsonl = open(os.path.join(directory, TRACE_FILE), "w", encoding="utf-8")
        self._csv_file = None
        if csv:
            self._csv_file = open(os.path.join(directory, CSV_FILE), "w", encoding="utf-8",
                                  newline="")
            self._csv_file.write(_csv_fields("step", "section", "key", "quantity", "index",
                                             "value") + CSV_LINE_END)
        self._arrays = {}  # member -> _Rows
        self._members = {}  # (section, name, quantity, shape, dtype) -> member
        self._write_line(header)
        self.records = 0
        self.last_step = None

    def _write_line(self, obj):
        self._jsonl.write(json.dumps(obj, allow_nan=True) + "\n")

    def write_step(self, record):
        """Append one step record (dict of NumPy values); written now, or with its batch."""
        self._pending.append(record)
        self.records += 1
        self.last_step = int(record["step"])
        if self.batch is not None and len(self._pending) >= self.batch:
            self._write_pending()

    def _write_pending(self):
        pending, self._pending = self._pending, []
        for record in pending:
            self._write_record(record)

    def _write_record(self, record):
        written = self._with_references(record)
        if self._csv_file is None:  # no number's text to share: one json.dumps of the record
            line = json.dumps(written, allow_nan=True, default=_json_default)
        else:
            line = _json_text(written, self._write_csv_rows(record["step"], written))
        self._jsonl.write(line + "\n")

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
                        quantity: (self._stored(section, name, quantity, item)
                                   if quantity != UPDATES else
                                   [{consumed: self._stored(section, name, f"{UPDATES}|{consumed}",
                                                            array)
                                     for consumed, array in update.items()} for update in item])
                        for quantity, item in value.items()}
                else:
                    written[section][name] = self._stored(section, name, "", value)
        return written

    def _stored(self, section, name, quantity, value):
        """``value`` itself, or for a large array its reference (the array kept for the .npz)."""
        if not isinstance(value, np.ndarray) or value.size < BINARY_MIN_VALUES:
            return value
        identity = (section, name, quantity, value.shape, value.dtype)
        member = self._members.get(identity)
        if member is None:
            member = "|".join((section, name, quantity))
            taken = set(self._members.values())
            suffix = 2
            while member in taken:
                member = f"{'|'.join((section, name, quantity))}#{suffix}"
                suffix += 1
            self._members[identity] = member
            self._arrays[member] = _Rows(value.shape, value.dtype)
        return {"array": ARRAYS_FILE, "key": member, "index": self._arrays[member].append(value)}

    def finish(self, status="complete", *, last_step=None, reason=None):
        """Write the end line (:func:`end_record`); ``last_step`` defaults to the last recorded."""
        self._write_pending()
        self._write_line(end_record(status, self.last_step if last_step is None else last_step,
                                    self.records, reason))

    def flush(self):
        """Hand everything written so far to the operating system (the ``.npz`` is written at
        :meth:`close`)."""
        self._write_pending()
        self._jsonl.flush()
        if self._csv_file is not None:
            self._csv_file.flush()

    def close(self):
        self._write_pending()
        if self._arrays:
            np.savez(os.path.join(self.directory, ARRAYS_FILE),
                     **{member: rows.stacked() for member, rows in self._arrays.items()})
            self._arrays = {}
        self._jsonl.close()
        if self._csv_file is not None:
            self._csv_file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class _Rows:
    """The arrays of one ``.npz`` member, ``rows[i]`` the ``i``-th appended: one buffer, doubled
    when full, so that keeping a row is one copy into it (no array made per row, no stacking at
    the end)."""

    def __init__(self, shape, dtype, capacity=64):
        self._buffer = np.empty((capacity, *shape), dtype=dtype)
        self.count = 0

    def append(self, value):
        """Copy ``value`` in as the next row; return its index."""
        if self.count == len(self._buffer):
            grown = np.empty((2 * self.count, *self._buffer.shape[1:]), self._buffer.dtype)
            grown[:self.count] = self._buffer
            self._buffer = grown
        self._buffer[self.count] = value
        self.count += 1
        return self.count - 1

    def stacked(self):
        """The rows so far, (count, *shape)."""
        return self._buffer[:self.count]


def _json_default(value):
    """``json.dumps``' conversion of what it cannot write itself: a NumPy array or scalar becomes
    what :func:`~bnrepro.trace.format.to_json_value` makes of it (``np.float64`` is a ``float``
    and is written directly, by the same ``float.__repr__``), so a record whose keys are strings
    comes out as ``json.dumps(to_json_value(record))``."""
    if isinstance(value, np.generic):  # float32 -> its exact float64, as to_json_value
        return value.item()
    if isinstance(value, np.ndarray):
        return to_json_value(value)
    raise TypeError(f"{type(value).__name__} is not a number, an array or a JSON value")


def _flatten_step(step):
    """Yield ``(section, key, quantity, value)`` for every number-bearing entry of a step."""
    for section in ("bn", "inference", "averages"):
        for layer, quantities in step.get(section, {}).items():
            for quantity, value in quantities.items():
                if quantity == UPDATES:  # updates.1.batch_mean, ... in the order they ran
                    for number, update in enumerate(value, start=1):
                        for consumed, item in update.items():
                            yield section, layer, f"{UPDATES}.{number}.{consumed}", item
                    continue
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
