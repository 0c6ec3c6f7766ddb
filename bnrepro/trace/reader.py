"""Reading a trace back (any form: arrays in chunk files ``trace_arrays/000001.npz``, ...; large
arrays in an earlier version's ``trace_arrays.npz``; every number as JSON text) and refusing what is
not one, with the file, the line and the problem."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from bnrepro.check.chain import Chain
from bnrepro.errors import UserError
from bnrepro.trace.format import (ARRAYS_FILE, BATCH_STATISTICS, DECLARE, END_STATUSES,
                                  FORMAT_2, FORMATS, KEY, LAYER_FLAGS, LAYER_STATE, ROW,
                                  TRACE_FILE, UPDATES, is_reference, map_arrays)
from bnrepro.trace.npz_archive import open_npz, read_npz_member


BLOCK_RECORDS = 256  # the step records a reader hands over at a time (Trace.blocks), or fewer
BLOCK_BYTES = 64 << 20  # when their arrays reach this many bytes (64 MiB: layers' inputs)


@dataclass
class Trace:
    """A trace read back: the header dict, the step dicts (tensors as float64 NumPy arrays) and the
    end line's ``{"status", "last_step", "records"[, "reason"]}`` (``None``: the trace has none).

    ``steps`` is a list (:func:`read_trace`: every record in memory) or a :class:`StreamedSteps`
    (:func:`open_trace`: read from the files at each pass, a block at a time). A reader that must
    work on both goes through :meth:`blocks` in one pass and finds each step's state before with a
    :class:`Chain`; :meth:`step` and :meth:`before` need the records in memory."""

    path: str
    header: dict
    steps: object  # list of step dicts, or StreamedSteps
    end: Optional[dict] = None
    _previous: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # before()'s chains

    @property
    def layers(self):
        return self.header["layers"]

    @property
    def steps_are_runs(self):
        """A ``bnrepro-trace/2`` trace, whose every step is one run of the program that moved a
        statistic or trained (:mod:`bnrepro.graphs.tracer`), numbered in order; ``False`` for
        ``bnrepro-trace/1``, whose steps are training steps."""
        return self.header.get("format") == FORMAT_2

    @property
    def averages(self):
        """The header's averages that pair with no other (``bnrepro-trace/2``)."""
        return self.header.get("averages", {})

    @property
    def streamed(self):
        return isinstance(self.steps, StreamedSteps)

    def blocks(self):
        """The step records in order, a list of up to :data:`BLOCK_RECORDS` at a time."""
        if self.streamed:
            yield from self.steps.blocks()
            return
        for start in range(0, len(self.steps), BLOCK_RECORDS):
            yield self.steps[start:start + BLOCK_RECORDS]

    def loaded(self):
        """This trace with every step record in memory (itself when they are)."""
        if not self.streamed:
            return self
        return Trace(path=self.path, header=self.header, steps=list(self.steps), end=self.end)

    def step(self, number):
        """The record of step ``number``, or ``None`` if it was not traced."""
        return self._by_number().get(number)

    def before(self, record, name, section="bn"):
        """The record whose ``section`` state of ``name`` is the state before ``record``
        (:class:`Chain` says which); a trace in memory only."""
        self._in_memory("before")
        key = (section, name, len(self.steps))
        if key not in self._previous:
            chain, previous = Chain(self.steps_are_runs), {}
            for candidate in self.steps:
                previous[id(candidate)] = chain.before(candidate, name, section)
                chain.advance(candidate)
            self._previous[key] = previous
        return self._previous[key].get(id(record))

    def _by_number(self):
        self._in_memory("step")
        return {record["step"]: record for record in self.steps}

    def _in_memory(self, what):
        if self.streamed:
            raise TypeError(f"Trace.{what} needs the records in memory: read_trace(path), or "
                            "open_trace(path).loaded()")


def read_trace(path):
    """Read and check a trace file (or a directory holding ``trace.jsonl``), every step record in
    memory; return a :class:`Trace` (:func:`open_trace` reads it a block at a time).

    Raises :class:`UserError` naming the file, the line and the problem for a missing file, a line
    that is not JSON (but the last line of a trace without end line, cut short by a run that was
    killed: the trace is read without it), another format version, tensors whose shapes disagree,
    a chunk file (or ``trace_arrays.npz``) that a line refers to and that cannot be read (outside
    the trace's directory, missing, empty, cut short, not a zip of ``.npy`` arrays; the member or
    row missing, damaged, not numbers). A header and an end line without steps is a whole trace
    of a program in which nothing was recorded (``bnrepro verify``: NOTHING TO CHECK); a header
    without either, a run killed (or still running) before it wrote its first chunk of steps
    (INCOMPLETE).
    """
    return open_trace(path).loaded()


def open_trace(path):
    """Read a trace's lines once for its header (with what its ``declare`` lines add), its end
    line and how many steps it holds, and return a :class:`Trace` whose ``steps`` are read from the
    files at each pass (:class:`StreamedSteps`), so that a reader's memory does not grow with the
    steps. The problems :func:`read_trace` names are raised here (the header, the lines' JSON, the
    declarations, the end line) or, for a step line and the arrays it refers to, when the pass
    reaches it."""
    if os.path.isdir(path):
        path = os.path.join(path, TRACE_FILE)
    if not os.path.isfile(path):
        raise UserError(f"trace {path} does not exist")
    header, end, steps, initial, step_zero = None, None, 0, [], False
    with _ArrayFiles(os.path.dirname(path)) as arrays:
        for number, record in _lines(path):
            if header is None:
                header = _check_header(path, record)
                continue
            if end is not None:  # an end line that was not the last
                raise UserError(f"{path} line {end[0]} is not a step record (no integer "
                                "\"step\")")
            if isinstance(record, dict) and "end" in record:
                end = (number, record)
            elif isinstance(record, dict) and DECLARE in record:
                record = arrays.resolved(record, f"{path} line {number}")
                if _declare(path, number, header, record):
                    initial.append((number, record))
            else:
                steps += 1
                step_zero = step_zero or (isinstance(record, dict) and record.get("step") == 0)
    if end is not None:
        end = _check_end(f"{path} line {end[0]}", end[1]["end"])
    if initial and not step_zero:
        raise UserError(f"{path} line {initial[0][0]}: an initial state declared without a "
                        "step 0 before it")
    return Trace(path=path, header=header, end=end,
                 steps=StreamedSteps(path, header, steps, [record for _, record in initial]))


class StreamedSteps:
    """A trace's step records read from its files at each pass (``trace.jsonl`` a line at a
    time, one chunk file open), in blocks of up to :data:`BLOCK_RECORDS` whose arrays hold up to
    :data:`BLOCK_BYTES` (a record of a ResNet's 19 layer inputs, 96 MB as float64, is a block of
    its own); ``len`` is how many there are. Each record is resolved and checked as
    :func:`read_trace` does it."""

    def __init__(self, path, header, count, initial):
        self.path, self.header, self.count, self.initial = path, header, count, initial

    def __len__(self):
        return self.count

    def __iter__(self):
        for block in self.blocks():
            yield from block

    def blocks(self):
        generic = self.header["format"] == FORMAT_2
        block, joined = [], not self.initial
        with _ArrayFiles(os.path.dirname(self.path)) as arrays:
            for number, record in _lines(self.path):
                if number == 1 or not _is_step_line(record):
                    continue
                resolved = arrays.resolved(record, f"{self.path} line {number}")
                if not joined and isinstance(resolved, dict) and resolved.get("step") == 0:
                    joined = True
                    for state in self.initial:  # the declared initial states join step 0
                        resolved.setdefault("bn", {}).update(state.get("bn", {}))
                        resolved.setdefault("averages", {}).update(state.get("averages", {}))
                block.append(_check_step(self.path, number, resolved, self.header["layers"],
                                         generic))
                if len(block) == BLOCK_RECORDS or arrays.bytes_resolved >= BLOCK_BYTES:
                    yield block
                    block, arrays.bytes_resolved = [], 0
        if block:
            yield block


def _is_step_line(record):
    return not (isinstance(record, dict) and ("end" in record or DECLARE in record))


def _lines(path):
    """``(line number, object)`` of each line of ``trace.jsonl``; a line that is not JSON
    is a :class:`UserError`, but the last line of a trace without end line (cut short as it was
    written, by a run that was killed), which is left out."""
    try:
        with open(path, encoding="utf-8") as handle:
            previous, number = None, 0
            for number, line in enumerate(handle, start=1):
                line = line.rstrip("\n")
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    after_end = isinstance(previous, dict) and "end" in previous
                    if number > 1 and not after_end and handle.readline() == "":
                        return  # the last line, cut short as it was written
                    raise UserError(f"{path} line {number} is not valid JSON: {error.msg}") \
                        from None
                yield number, record
                previous = record
            if number == 0:
                raise UserError(f"trace {path} is empty")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read trace {path}: {error}") from None


def _check_header(path, header):
    if not isinstance(header, dict) or "format" not in header:
        raise UserError(f"{path} line 1 is not a bnrepro trace header (no \"format\")")
    if header["format"] not in FORMATS:
        raise UserError(f"{path} is format {header['format']!r}; this bnrepro reads "
                        f"{' and '.join(map(repr, FORMATS))}")
    if not isinstance(header.get("layers"), dict):
        raise UserError(f"{path} line 1 has no \"layers\" object")
    return header


def _declare(path, number, header, record):
    """Merge a declaration line (:data:`~bnrepro.trace.format.DECLARE`) into ``header`` (in
    place); whether it carries initial states (to join step 0's record)."""
    declared = record[DECLARE]
    if not isinstance(declared, dict):
        raise UserError(f"{path} line {number}: \"{DECLARE}\" must be an object")
    for section in ("layers", "averages"):
        if not isinstance(declared.get(section, {}), dict):
            raise UserError(f"{path} line {number}: \"{DECLARE}\" {section} must be an object")
        header.setdefault(section, {}).update(declared.get(section, {}))
    if "graphs_searched" in declared:
        header["graphs_searched"] = declared["graphs_searched"]
    if declared.get("tracer_notes"):
        header["tracer_notes"] = header.get("tracer_notes", []) + list(declared["tracer_notes"])
    return "bn" in record or "averages" in record


class _ArrayFiles:
    """The ``.npz`` files beside a trace that its lines refer to: the chunk a step line names
    (``"arrays": "trace_arrays/000003.npz"``, whose rows it refers to as ``{"row": 5}``), or an
    earlier version's ``trace_arrays.npz`` (``{"array": "trace_arrays.npz", "key", "index"}``).
    Each file is opened on the first reference to it and each member read on the first reference
    to it (a damaged member fails only where it is used); one file is open at a time (lines refer
    to the chunks in order), and a ``with`` closes it. Every problem is a :class:`UserError` naming
    the line that refers to it, the file and the member."""

    def __init__(self, directory):
        self.directory = directory
        self.bytes_resolved = 0  # the bytes of the rows handed out (a reader may reset it)
        self._path = None  # the open file
        self._archive = None
        self._members = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._close()

    def _close(self):
        if self._archive is not None:
            self._archive.close()
        self._path, self._archive, self._members = None, None, {}

    def resolved(self, record, where):
        """A step or declaration line with its references replaced by the arrays, a float row as
        float64 (the numbers JSON text gives), without its ``"arrays"``; other lines as they
        are."""
        if not isinstance(record, dict) or ("step" not in record and DECLARE not in record):
            return record
        chunk = record.get("arrays")
        if chunk is not None:
            chunk = self._chunk_path(where, chunk)
        resolved = map_arrays(record, lambda value, member: (
            self._row(where, chunk, value, member) if is_reference(value) else value))
        resolved.pop("arrays", None)
        return resolved

    def _chunk_path(self, where, relative):
        """The path of the chunk a line names, which must stay inside the trace's directory."""
        parts = relative.replace("\\", "/").split("/") if isinstance(relative, str) else []
        if not parts or os.path.isabs(relative) or ".." in parts or not all(parts):
            raise UserError(f"{where}: \"arrays\" {relative!r} is not a relative path to a file "
                            "inside the trace's directory")
        return os.path.join(self.directory, *parts)

    def _row(self, where, chunk, reference, member):
        """The row a reference names: ``{"row": i[, "key": name]}`` of ``chunk`` (member ``name``,
        else ``member``, its place's default), or ``{"array", "key", "index"}`` of
        ``trace_arrays.npz``."""
        index = reference.get(ROW)
        if len(reference) == 1 and type(index) is int and chunk is not None \
                and chunk == self._path and member in self._members \
                and 0 <= index < len(self._members[member]):
            row = self._members[member][index]  # the common case, as below without the checks
            self.bytes_resolved += row.nbytes
            return row
        if set(reference) == {"array", "key", "index"} and reference["array"] == ARRAYS_FILE:
            path, key, index = os.path.join(self.directory, ARRAYS_FILE), reference["key"], \
                reference["index"]
        elif ROW in reference and set(reference) <= {ROW, KEY}:
            if chunk is None:
                raise UserError(f"{where}: {reference!r} is a row of no chunk (the line has no "
                                "\"arrays\")")
            path, key, index = chunk, reference.get(KEY, member), reference[ROW]
        else:
            path = key = index = None
        if not (isinstance(key, str) and isinstance(index, int) and not isinstance(index, bool)):
            raise UserError(f"{where}: {reference!r} is not an array reference ({{\"row\": row"
                            f"[, \"key\": member]}}, or {{\"array\": \"{ARRAYS_FILE}\", "
                            "\"key\": member, \"index\": row}})")
        rows = self._member(where, path, key)
        if not 0 <= index < len(rows) and path == self._path:  # read while the writer had it
            self._close()  # open: its file is written again with more rows (TraceWriter)
            rows = self._member(where, path, key)
        if not 0 <= index < len(rows):
            raise UserError(f"{where} refers to row {index} of {key!r} in {path}, which has "
                            f"{len(rows)} rows")
        self.bytes_resolved += rows[index].nbytes
        return rows[index]

    def _member(self, where, path, key):
        """Member ``key`` of the file at ``path``: an array of numbers with one row per reference
        (at least 1-D)."""
        if path != self._path:
            self._close()
            self._path = path
        if key not in self._members:
            try:
                if self._archive is None:
                    self._archive = open_npz(path)
                try:
                    member = read_npz_member(self._archive, key, path)
                except UserError:  # a member its file gained since it was opened (as above)
                    self._close()
                    self._path, self._archive = path, open_npz(path)
                    member = read_npz_member(self._archive, key, path)
            except UserError as error:
                raise UserError(f"{where} refers to {error}") from None
            if member.ndim == 0:
                raise UserError(f"{where} refers to {path}: member {key!r} is a single "
                                "value, not rows")
            if member.dtype.kind not in "biuf":
                raise UserError(f"{where} refers to {path}: member {key!r} holds "
                                f"{member.dtype.name} values, not numbers")
            # a float member as float64 once (the numbers JSON text gives): its rows are views
            self._members[key] = member.astype(np.float64) if member.dtype.kind == "f" else member
        return self._members[key]


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
            name: {quantity: value if isinstance(value, bool)  # a flag ("set") kept as such
                   else _array(where, f"averages {name} {quantity}", value)
                   for quantity, value in quantities.items()}
            for name, quantities in (record.get("averages") or {}).items()}
    for layer, quantities in batch_norm.items():
        arrays = {name: _parameter_shape(name, _array(where, f"bn {layer} {name}", value))
                  for name, value in quantities.items()
                  if name != UPDATES and not isinstance(value, bool)}
        missing = [name for name in required if name not in arrays]
        if missing:
            raise UserError(f"{where}: layer {layer} lacks {', '.join(missing)}")
        channels = arrays["moving_mean"].shape
        _check_consumed(where, f"layer {layer}", arrays, channels)
        if UPDATES in quantities:
            arrays[UPDATES] = _updates(where, layer, quantities[UPDATES], channels)
        for flag in LAYER_FLAGS:  # true or false, kept as such
            if flag in quantities:
                if not isinstance(quantities[flag], bool):
                    raise UserError(f"{where}: layer {layer} {flag} must be true or false")
                arrays[flag] = quantities[flag]
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


def _check_consumed(where, what, arrays, channels):
    """Per-channel quantities of shape ``channels``, and ``batch_input``'s last axis."""
    for name in LAYER_STATE + BATCH_STATISTICS:
        if name in arrays and arrays[name].shape != channels:
            raise UserError(f"{where}: {what} {name} has shape {arrays[name].shape}, "
                            f"moving_mean has {channels}")
    if "batch_input" in arrays and arrays["batch_input"].shape[-1:] != channels:
        raise UserError(f"{where}: {what} batch_input's last axis "
                        f"{arrays['batch_input'].shape[-1:]} does not match {channels}")


def _updates(where, layer, value, channels):
    """A layer's ``updates`` (:mod:`bnrepro.trace.format`): a list of ``{"batch_mean",
    "batch_variance"[, "batch_input", "momentum", "momentum_variance"]}`` (or ``batch_input``
    alone, where the tracer does not fetch what the update consumed), each checked like the
    layer's own consumed values."""
    if not isinstance(value, list) or not value or not all(isinstance(u, dict) for u in value):
        raise UserError(f"{where}: layer {layer} updates must be a list of objects, one per "
                        "update in the order they ran")
    updates = []
    for number, update in enumerate(value, start=1):
        what = f"layer {layer} update {number}"
        arrays = {name: _parameter_shape(name, _array(where, f"bn {what} {name}", item))
                  for name, item in update.items()}
        missing = [name for name in BATCH_STATISTICS if name not in arrays]
        if missing and "batch_input" not in arrays:  # the input alone: its moments check it
            raise UserError(f"{where}: {what} lacks {', '.join(missing)} and batch_input")
        _check_consumed(where, what, arrays, channels)
        updates.append(arrays)
    return updates


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
