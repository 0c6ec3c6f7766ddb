"""The trace format (:mod:`~bnrepro.trace.format`), its writers (:mod:`~bnrepro.trace.writer`, and
:mod:`~bnrepro.trace.process` in a child process), its reader (:mod:`~bnrepro.trace.reader`, and
:mod:`~bnrepro.trace.load` for arrays per quantity; :mod:`~bnrepro.trace.npz_archive` reads an
``.npz`` with one-line errors), the figures of a trace
(:mod:`~bnrepro.trace.plots`) and its JSON Schema (``schema.json``).

Nothing here imports TensorFlow. The names most programs need are importable from here:
``from bnrepro.trace import read_trace, TraceWriter, TRACE_FILE``.
"""
from bnrepro.trace.format import (ARRAYS_DIRECTORY, ARRAYS_FILE, BATCH_STATISTICS, CSV_FILE,
                                  FORMAT, FORMAT_2, FORMATS, LAYER_STATE, TRACE_FILE, end_record,
                                  library_versions, make_header, to_json_value)
from bnrepro.trace.reader import Chain, Trace, open_trace, read_trace
from bnrepro.trace.writer import TraceWriter

__all__ = ["ARRAYS_DIRECTORY", "ARRAYS_FILE", "BATCH_STATISTICS", "CSV_FILE", "FORMAT",
           "FORMAT_2", "FORMATS", "LAYER_STATE", "TRACE_FILE", "Chain", "Trace", "TraceWriter",
           "end_record", "library_versions", "make_header", "open_trace", "read_trace",
           "to_json_value"]
