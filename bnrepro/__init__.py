"""bnrepro: rebuild TensorFlow 1.x normalisation experiments and show what they compute.

Importing the package is cheap: it only sets ``TF_USE_LEGACY_KERAS=1`` (which must happen before
TensorFlow is first imported, so that ``tf.compat.v1.layers`` resolves to ``tf_keras``) and quiets
TensorFlow's C++ start-up log. TensorFlow itself is imported by the graph code
(:mod:`bnrepro.graphs`, and :mod:`bnrepro.compare`'s training loop) when it is first used; the trace
format (:mod:`bnrepro.trace`) and the checks (:mod:`bnrepro.check`) never import it.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

# The public API, imported on first use (the tracer imports TensorFlow):
#   bnrepro.tracing(out)       context manager: trace every session run inside the block
#   bnrepro.TraceHook(out)     tf.compat.v1.train.SessionRunHook for MonitoredTrainingSession
#   bnrepro.trace_script(...)  what `bnrepro trace` does
#   bnrepro.load_trace(path)   a whole trace as NumPy arrays per layer and quantity (and pandas)
#   bnrepro.read_trace(path)   the trace's records; bnrepro.verify_trace(trace) its checks
#   bnrepro.open_trace(path)   the same, its steps read a block at a time (a long run's trace)
_PUBLIC = {"tracing": "bnrepro.graphs.tracing", "TraceHook": "bnrepro.graphs.tracing",
           "trace_script": "bnrepro.graphs.tracing", "Tracer": "bnrepro.graphs.tracer",
           "read_trace": "bnrepro.trace", "open_trace": "bnrepro.trace",
           "verify_trace": "bnrepro.check.verify", "load_trace": "bnrepro.trace.load"}


def __getattr__(name):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'bnrepro' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_PUBLIC))
