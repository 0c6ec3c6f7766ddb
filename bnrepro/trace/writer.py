"""Writing a trace: ``trace.jsonl``, its arrays in chunk files ``trace_arrays/000001.npz``, ... and
the optional CSV export (the layout is :mod:`bnrepro.trace.format`'s)."""
from __future__ import annotations

import csv
import functools
import io
import json
import operator
import os
import time

import numpy as np

from bnrepro.trace.format import (CHUNK_BYTES, CHUNK_RECORDS, CHUNK_SECONDS, CSV_FILE, DECLARE,
                                  KEY, ROW, TRACE_FILE, UPDATES, chunk_path, end_record,
                                  map_arrays, to_json_value)

CSV_LINE_END = "\r\n"  # the csv module's default (excel) line terminator
BINARY_KINDS = "biuf"  # the dtypes an array keeps in a chunk: bool, int, unsigned, float
HOLD_BYTES = 1 << 20  # an array larger is held as it came until its record is added (_Rows)


class TraceWriter:
    """Writes ``trace.jsonl`` and its arrays, in chunks, into a directory as the run goes, and
    with ``csv`` the flat text export ``trace.csv`` (step, section, key, quantity, index, value).

    Every array of numbers with at least one axis in a record's :data:`ARRAY_SECTIONS
    <bnrepro.trace.format.ARRAY_SECTIONS>` is copied, when the record is handed over, into the
    chunk being filled: one buffer per member (an array's place, shape and dtype), a row per
    record, in the array's own dtype. The record's line holds ``{"row": i}`` instead (with
    ``"key"`` when the member is not the place's default name) and names the chunk once,
    ``"arrays": "trace_arrays/000003.npz"``. Everything else (scalars, ``run``, flags) is JSON
    text: one ``json.dumps`` of the record, NumPy values converted as it meets them
    (:func:`_json_default`).

    A chunk is written when it holds ``chunk_records`` records or ``chunk_bytes`` bytes of arrays,
    and at :meth:`flush`, :meth:`finish`, :meth:`close`: its ``.npz`` (NumPy's own, ``numpy.load``
    reads it) to a temporary name in ``trace_arrays/`` renamed into place, and only then its
    lines, appended to ``trace.jsonl`` and flushed; the next records go to the next chunk. When a
    record comes ``chunk_seconds`` or more after the last write (a long run whose keep policy keeps
    a step in a hundred fills a chunk slowly: killed, it loses at most the records of that long),
    the chunk is written the same way but stays open: the next records join it, and its file is
    written again, all its rows, at its next write (a file of a few records each time would hold
    more zip and ``.npy`` headers than numbers). So the writer holds one chunk at most, and a
    process killed at any moment leaves lines that refer only to rows of chunk files that exist
    (the last line possibly cut short, which the reader leaves out).

    With ``csv``, every number of a record (the binary ones too) is a CSV line, written when the
    record is handed over: ``repr`` of its float64 value, the shortest text that reads back to
    the same float64 (:func:`_number_texts`).
    """

    def __init__(self, directory, header, *, csv=False, chunk_records=CHUNK_RECORDS,
                 chunk_bytes=CHUNK_BYTES, chunk_seconds=CHUNK_SECONDS, clock=time.monotonic):
        if chunk_records < 1 or chunk_bytes < 1 or not chunk_seconds >= 0:
            raise ValueError(f"chunk_records and chunk_bytes must be at least 1 and chunk_seconds "
                             f"at least 0, got {chunk_records}, {chunk_bytes} and {chunk_seconds}")
        self.header = header
        self.directory = directory
        self.chunk_records, self.chunk_bytes = chunk_records, chunk_bytes
        self.chunk_seconds, self._clock = chunk_seconds, clock
        self._written_at = clock()  # when the last chunk (or the header) was written
        self._jsonl = open(os.path.join(directory, TRACE_FILE), "w", encoding="utf-8")
        self._csv_file = None
        if csv:
            self._csv_file = open(os.path.join(directory, CSV_FILE), "w", encoding="utf-8",
                                  newline="")
            self._csv_file.write(_csv_fields("step", "section", "key", "quantity", "index",
                                             "value") + CSV_LINE_END)
        self._chunks = 0  # chunk files written
        self.bytes_written = 0  # the chunk files' and trace.jsonl's lines' after the header
        self._chunk = _Chunk(chunk_path(1))
        self._write_line(header)
        self._jsonl.flush()  # a run killed before its first chunk leaves the header
        self.records = 0
        self.last_step = None

    def _write_line(self, obj):
        self._jsonl.write(json.dumps(obj, allow_nan=True) + "\n")

    @property
    def bytes(self):
        """The trace's bytes so far: what is written, and the arrays of the chunk being filled
        not yet in its file."""
        return self.bytes_written + self._chunk.nbytes - self._chunk.nbytes_written

    def write_step(self, record):
        """Take one step record (dict of NumPy values): its arrays are copied into the chunk (or
        written from where they are, when the record fills the chunk), its line is written with
        the chunk; the caller may change the arrays afterwards."""
        if self._csv_file is not None:
            self._write_csv_rows(record)
        self._add_line(record, "step")
        self.records += 1
        self.last_step = int(record["step"])

    def declare(self, declaration, initial=None):
        """Take a declaration line (:data:`~bnrepro.trace.format.DECLARE`): what the header gained
        during the run (``declaration``: layers, averages, graphs searched, the tracer's notes) and
        ``initial``, a later graph's state at its first read (``{"bn", "averages"}``, which the
        reader joins to step 0), written in order with the steps."""
        line = {DECLARE: declaration}
        if initial is not None:
            line.update(bn=initial.get("bn", {}), averages=initial.get("averages", {}))
        self._add_line(line, DECLARE)

    def _add_line(self, record, first):
        """Queue ``record``'s line with the chunk, its arrays copied in (the line names the chunk
        after its ``first`` key)."""
        chunk = self._chunk
        rows_before = chunk.rows
        written = map_arrays(record, chunk.stored)
        if chunk.rows > rows_before:
            written = {first: written[first], "arrays": chunk.path,
                       **{key: value for key, value in written.items() if key != first}}
        chunk.lines.append(json.dumps(written, allow_nan=True, default=_json_default) + "\n")
        chunk.records += 1
        if chunk.records >= self.chunk_records or chunk.nbytes >= self.chunk_bytes:
            self._write_chunk()
        else:
            chunk.settle()
            if self._clock() - self._written_at >= self.chunk_seconds:
                self._write_chunk(close=False)

    def _write_chunk(self, close=True):
        """Write the chunk's ``.npz`` (atomically: a temporary name, then renamed) with every row
        it holds, when it holds rows its file does not, then its lines not yet written; with
        ``close``, start the next chunk."""
        chunk = self._chunk
        if chunk.lines:
            if chunk.rows > chunk.rows_written:
                path = os.path.join(self.directory, chunk.path)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                partial = f"{path}.partial"
                with open(partial, "wb") as handle:
                    np.savez(handle, **{member: rows.stacked()
                                        for member, rows in chunk.members.items()})
                os.replace(partial, path)
                size = os.path.getsize(path)
                if not chunk.rows_written:  # its file's first write
                    self._chunks += 1
                self.bytes_written += size - chunk.file_bytes
                chunk.file_bytes, chunk.rows_written = size, chunk.rows
                chunk.nbytes_written = chunk.nbytes
            text = "".join(chunk.lines)
            chunk.lines = []
            self._jsonl.write(text)
            self._jsonl.flush()
            self.bytes_written += len(text.encode("utf-8"))
            self._written_at = self._clock()
        if close and chunk.records:  # a chunk that wrote no file leaves its number to the next
            self._chunk = _Chunk(chunk_path(self._chunks + 1))

    def _write_csv_rows(self, record):
        """Write the CSV lines of every number of ``record``."""
        step_field = _csv_fields(to_json_value(record["step"]))
        self._csv_file.write("".join(
            _csv_lines(f"{step_field},{_csv_fields(section, key, quantity)},",
                       _number_texts(value))
            for section, key, quantity, value in _flatten_step(record)))

    def finish(self, status="complete", *, last_step=None, reason=None):
        """Write the last chunk and the end line (:func:`end_record`); ``last_step`` defaults to
        the last recorded."""
        self._write_chunk()
        self._write_line(end_record(status, self.last_step if last_step is None else last_step,
                                    self.records, reason))
        self._jsonl.flush()

    def flush(self):
        """Write the chunk being filled (however small) and hand everything to the operating
        system."""
        self._write_chunk()
        self._jsonl.flush()
        if self._csv_file is not None:
            self._csv_file.flush()

    def close(self):
        self._write_chunk()
        self._jsonl.close()
        if self._csv_file is not None:
            self._csv_file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class _Chunk:
    """The chunk being filled: its path, its members (name -> :class:`_Rows`), the lines that
    refer to it not yet written, its records, and their arrays' rows and bytes (those its file
    holds: written and left open, :meth:`TraceWriter._write_chunk`)."""

    def __init__(self, path):
        self.path = path
        self.members = {}
        self._names = {}  # (default member, shape, dtype) -> member
        self.lines = []
        self.records = 0
        self.rows = self.rows_written = 0
        self.nbytes = self.nbytes_written = 0
        self.file_bytes = 0
        self._holding = []  # the members holding rows of the record being added, not copied

    def settle(self):
        """Copy the rows held for the record just added into the members' buffers
        (:meth:`_Rows.settle`)."""
        for rows in self._holding:
            rows.settle()
        self._holding = []

    def stored(self, value, member):
        """``value`` itself, or for an array of numbers with an axis its reference ``{"row": i}``
        (``{"row": i, "key": name}`` when its member is not ``member``, the place's default name:
        another shape or dtype of the same place in this chunk, ``member#2``)."""
        if not (isinstance(value, np.ndarray) and value.ndim and value.dtype.kind in BINARY_KINDS):
            return value
        identity = (member, value.shape, value.dtype)
        name = self._names.get(identity)
        if name is None:
            name, suffix = member, 2
            while name in self.members:
                name, suffix = f"{member}#{suffix}", suffix + 1
            self._names[identity] = name
            self.members[name] = _Rows(value.shape, value.dtype)
        self.rows += 1
        self.nbytes += value.nbytes
        rows = self.members[name]
        if value.nbytes > HOLD_BYTES:
            self._holding.append(rows)
            reference = {ROW: rows.hold(value)}
        else:
            reference = {ROW: rows.append(value)}
        if name != member:
            reference[KEY] = name
        return reference


class _Rows:
    """The arrays of one chunk member, ``rows[i]`` the ``i``-th appended, copied into one buffer
    doubled when full (no array made per row, no stacking at the end). A large row
    (:meth:`hold`) is held as it came until the record is added (:meth:`settle`), and copied only
    if the chunk is not written with the record: a layer input larger than a chunk is written as
    it came, not copied. Either way the caller may change its arrays once the record is added."""

    def __init__(self, shape, dtype, capacity=16):
        self.shape, self.dtype, self.capacity = shape, dtype, capacity
        self._buffer = None
        self.settled = 0  # rows copied into the buffer
        self._held = []  # rows of the record being added, not copied yet

    def append(self, value):
        """Copy ``value`` in as the next row; return its index."""
        if self._buffer is None:
            self._buffer = np.empty((self.capacity, *self.shape), dtype=self.dtype)
        elif self.settled == len(self._buffer):
            grown = np.empty((2 * self.settled, *self.shape), self.dtype)
            grown[:self.settled] = self._buffer
            self._buffer = grown
        self._buffer[self.settled] = value
        self.settled += 1
        return self.settled - 1

    def hold(self, value):
        """Take ``value`` as the next row, not copied until :meth:`settle`; return its index."""
        self._held.append(value)
        return self.settled + len(self._held) - 1

    def settle(self):
        """Copy the held rows into the buffer."""
        held, self._held = self._held, []
        for value in held:
            self.append(value)

    def stacked(self):
        """The rows so far, (count, *shape)."""
        if not self.settled and len(self._held) == 1:
            return self._held[0][np.newaxis]  # the one row as it came, a view
        self.settle()
        return self._buffer[:self.settled]


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
    """The CSV value texts of one number-bearing entry, one per number in C order: ``repr`` of its
    float64 value. Floats that are all finite take one ``repr`` of the nested list, whose items
    are those texts (every number formatted once); anything else (ints, NaN and infinities,
    Python lists) is formatted number by number."""
    if isinstance(value, (np.ndarray, np.generic, float)):
        array = np.asarray(value)
        if array.dtype.kind == "f" and array.size and np.isfinite(array).all():
            text = repr(array.astype(np.float64).tolist())  # "[[1.5, -2e-05], [...]]"
            return text.replace("[", "").replace("]", "").split(", ")
    flat = np.asarray(to_json_value(value), dtype=np.float64).ravel()  # C order
    return [repr(number) for number in flat.tolist()]


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
