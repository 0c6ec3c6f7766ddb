"""The trace format: what a trace holds, its names and constants, and a record as JSON values.

Writing is :mod:`bnrepro.trace.writer`, reading :mod:`bnrepro.trace.reader`; the JSON Schema of a
line is ``schema.json`` beside this module.

A trace is JSON Lines. Everything bnrepro writes (``bnrepro run``, ``bnrepro compare``, ``bnrepro
trace``) is ``bnrepro-trace/2``, one layout whatever the program: the records of
:class:`bnrepro.graphs.tracer.Tracer`, to which a program of bnrepro's own adds its fields. Line 1 is the
header::

    {"format": "bnrepro-trace/2", "scenario": ..., "config": {...}, "versions": {...},
     "layers": {layer_name: {"momentum": m, "epsilon": e, "kind", "fused", "convention",
                             "zero_debias", "variables"[, the layer's mode]}, ...},
     "averages": {name: {"momentum", ...}, ...}}

(a layer's mode: ``virtual_batch_size`` and ``ghost_layout``, ``renorm``; see
:class:`bnrepro.check.layer_modes.LayerMode`). Every further line is one step: a ``session.run`` (or
Keras callable call) that moved a tracked statistic or trained, numbered in order (``"step": 0`` is
the initial state). From the tracer:

* ``"run": {"call", "index", "trained", "moved", "fetched"[, "state_only"]}``; ``"state_only":
  true`` when the record keeps only the state after the run (the first step of a kept pair, whose
  state the second starts from; a last step the keep policy would drop): no batch statistics, no
  layer input;
* ``"bn"``, per layer of the graph that ran: ``moving_mean``, ``moving_variance`` and, when the
  layer has them, ``gamma``, ``beta`` after the step; for steps >= 1 ``batch_mean`` and
  ``batch_variance`` as the step's update consumed them (when it ran) and ``batch_input`` (the
  layer's input in that run, on the steps that keep it); ``local_step`` (zero-debiased averages)
  and ``momentum`` / ``momentum_variance`` (computed at run time) where they apply. A layer the
  run updated several times (one layer applied to two inputs in one run: a GAN's discriminator on
  real and generated data) holds ``"updates": [{"batch_mean", "batch_variance"[, "batch_input",
  "momentum", "momentum_variance"]}, ...]``, what each update consumed in the order they ran,
  with the state after the last (``"updates_ordered": false`` when the run orders them no way:
  then in no particular order); ``"trained"``, whether the run's optimizer trained the layer (a
  GAN's generator step runs the discriminator's layers without training them). The state before a step is the one of the last earlier step
  holding the layer (none when step numbers are missing in between: a trace that keeps some
  steps only);
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

A trace streamed as the program runs (``bnrepro trace``, ``bnrepro.tracing``) writes its header at
the start, before the program has built and run its graphs; what the header gains later comes in
declaration lines, in order with the steps, which the reader merges into the header::

    {"declare": {"layers": {...}, "averages": {...}, "graphs_searched": [...],
                 "tracer_notes": [...]}[, "arrays": ..., "bn": {...}, "averages": {...}]}

``layers`` and ``averages`` add entries, ``graphs_searched`` replaces the list, ``tracer_notes``
extends it; ``bn`` and ``averages`` beside it are the state of a graph first read after step 0
was written, which the reader joins to step 0 (a graph's initial state is always step 0's).

``last_step`` is the last training step that ran (recorded or not), ``records`` the number of step
lines before it, ``reason`` (optional) what stopped a run that is not complete. A trace without it
reads back (``Trace.end`` is ``None``); ``bnrepro verify`` then says it may be cut short and does
not pass it.

Every per-step array (a NumPy array of numbers with at least one axis, in the sections of
:data:`ARRAY_SECTIONS`) is binary, in its own dtype (float32 stays float32, exact): it goes to a chunk
file beside the trace, ``trace_arrays/000001.npz``, ``000002.npz``, ... (NumPy's ``.npz``), each
holding the arrays of a run of consecutive step lines (a chunk the writer left open is written
again with more rows: a file holds at least the rows of every line written that names it). A
step line names its chunk once and each array is a row of a member of it::

    {"step": 5, "arrays": "trace_arrays/000001.npz", "run": {...},
     "bn": {"layer1/batch_normalization": {"moving_mean": {"row": 5}, ...}}, "loss": 0.25}

Member ``key`` is named only when it is not the place's default name (:func:`array_member`: a
second shape or dtype of one quantity within a chunk, ``bn|layer1/batch_normalization|batch_input#2``).
Scalars (the loss, metrics, a per-step momentum, 0-d arrays), the header, ``run``, flags and plain
lists stay JSON text, so that ``head trace.jsonl`` shows what ran; they are float32 values written
as JSON numbers through float64, so they read back exactly.

Earlier versions wrote large arrays to one ``trace_arrays.npz`` (``{"array": "trace_arrays.npz",
"key": member, "index": row}``) and small ones as text; other programs write every number as text.
Both are read as before. This package uses only NumPy and the standard library.
"""
from __future__ import annotations

import platform
from importlib import metadata

import numpy as np

FORMAT = "bnrepro-trace/1"
FORMAT_2 = "bnrepro-trace/2"  # what bnrepro writes: the tracer's records; see the module docstring
FORMATS = (FORMAT, FORMAT_2)
END_STATUSES = ("complete", "diverged", "stopped")
TRACE_FILE = "trace.jsonl"
CSV_FILE = "trace.csv"
ARRAYS_FILE = "trace_arrays.npz"  # the one arrays file of earlier versions (read, not written)
ARRAYS_DIRECTORY = "trace_arrays"  # the chunk files: trace_arrays/000001.npz, 000002.npz, ...
CHUNK_RECORDS = 256  # a chunk is written when it holds this many step records
CHUNK_BYTES = 16 << 20  # or this many bytes of arrays (16 MiB),
CHUNK_SECONDS = 10.0  # or, left open, when a record comes this long after the last write
ARRAY_SECTIONS = ("bn", "inference", "averages", "variables", "batch", "metrics", "after")
DECLARE = "declare"  # a line of what the header gained during the run (see the docstring)
ROW, KEY = "row", "key"  # an array's reference in a step line: {"row": 5[, "key": member]}
LAYER_STATE = ("moving_mean", "moving_variance", "gamma", "beta")
BATCH_STATISTICS = ("batch_mean", "batch_variance")
UPDATES = "updates"  # a layer updated several times in one run: what each update consumed, in order
UPDATES_ORDERED = "updates_ordered"  # false: the run orders those updates no way
SET = "set"  # the run changed the statistics without their update (initialised, restored)
LAYER_FLAGS = ("trained", UPDATES_ORDERED, SET)  # a layer's true/false entries in a step


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
    (:meth:`bnrepro.graphs.tracer.Tracer.header` makes the ``bnrepro-trace/2`` header from it)."""
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


def end_record(status, last_step, records, reason=None):
    """The trace's last line: ``{"end": {"status", "last_step", "records"[, "reason"]}}``."""
    if status not in END_STATUSES:
        raise ValueError(f"end status {status!r} is not one of {END_STATUSES}")
    end = {"status": status, "last_step": int(last_step), "records": int(records)}
    if reason:
        end["reason"] = str(reason)
    return {"end": end}


def chunk_path(number):
    """The path of chunk ``number`` (from 1) relative to the trace's directory:
    ``trace_arrays/000003.npz``."""
    return f"{ARRAYS_DIRECTORY}/{number:06d}.npz"


def array_member(section, name, quantity=None):
    """The default name of the chunk member that stacks the arrays of one place, ``|``-joined:
    ``bn|layer1/batch_normalization|moving_mean`` (a section of ``{name: {quantity: value}}``),
    ``bn|layer1/batch_normalization|updates|batch_mean`` (what a layer's updates consumed: the
    quantity ``updates|batch_mean``), ``variables|dense/kernel:0`` (a section of ``{name:
    value}``)."""
    return "|".join((section, name) if quantity is None else (section, name, quantity))


def map_arrays(record, function):
    """``record`` with every value in its :data:`ARRAY_SECTIONS` replaced by ``function(value,
    member)``, ``member`` the default name of its place (:func:`array_member`); the other fields
    as they are. A dict in a section holds quantities (``{layer: {quantity: value}}``) unless
    :func:`is_reference` says it is one value; a layer's ``updates`` is a list of ``{quantity:
    value}``, one per update (quantity ``updates|<quantity>``)."""
    mapped = dict(record)
    for section in ARRAY_SECTIONS:
        entries = record.get(section)
        if not isinstance(entries, dict):
            continue
        mapped_entries = mapped[section] = {}
        for name, value in entries.items():
            if not isinstance(value, dict) or is_reference(value):
                mapped_entries[name] = function(value, array_member(section, name))
                continue
            prefix = array_member(section, name, "")  # the members of its quantities: + quantity
            mapped_entries[name] = {
                quantity: _map_updates(prefix, item, function)
                if quantity == UPDATES and isinstance(item, list)
                else function(item, prefix + quantity) for quantity, item in value.items()}
    return mapped


def _map_updates(prefix, updates, function):
    """A layer's ``updates`` mapped: each update's quantity ``q`` at member ``prefix +
    "updates|" + q``."""
    prefix += f"{UPDATES}|"
    return [{consumed: function(item, prefix + consumed) for consumed, item in update.items()}
            if isinstance(update, dict) else update for update in updates]


def is_reference(value):
    """Whether ``value`` (from a step line) refers to an array in a chunk (``{"row": 5}``) or in
    an earlier version's ``trace_arrays.npz`` (``{"array": ..., "key": ..., "index": ...}``)."""
    return isinstance(value, dict) and (ROW in value or "array" in value)
