"""Run the zoo's programs (tests/zoo/programs/*.py, or those of ``--programs DIR``) in one TF1 graph
mode, each plain and traced, all in ONE process; write ``OUT/<mode>/results.json``.

    python tests/zoo/harness.py --mode v1|eager --out DIR [--programs DIR] [--self-traced NAME]
                                [NAMES...]

* ``v1``: ``tf.compat.v1.disable_v2_behavior()`` before any program (ref variables, TF1 control
  flow ``Switch``/``Merge``): what real TF1 code and its ports run.
* ``eager``: ``tf.compat.v1.disable_eager_execution()`` only, and
  ``tf.compat.v1.disable_v2_behavior`` replaced by it, so the programs stay as written but run with
  resource variables and TF2 control flow (``If`` ops).

For each program: the graph and Keras state are reset, the program runs as ``__main__`` with its
stdout captured (``plain``); the state is reset again and it runs under
``bnrepro.graphs.tracing.trace_script`` (``traced``), its trace in ``OUT/<mode>/traces/<name>``.
A program that traces itself (``--self-traced NAME``: through ``bnrepro.TraceHook``) runs plain only,
with ``OUT/<mode>/traces/<name>`` as its argument, where it writes its trace. A program's failure
(an exception, ``SystemExit``) or the tracer's is recorded, never fatal: the results file is
rewritten after every program, so even a crash of the process leaves the programs before it.

:func:`run_modes` runs both modes at once, one process each, and reads their results (the zoo's
and tests/test_tracer.py's fixtures).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAMS = os.path.join(HERE, "programs")
MODES = ("v1", "eager")
ERROR_TAIL = 6000  # characters of stderr / traceback kept per run


def program_names(programs=PROGRAMS):
    return sorted(name[:-3] for name in os.listdir(programs)
                  if name.endswith(".py") and not name.startswith("_"))


def set_mode(tf, mode):
    """Put TensorFlow into ``mode`` before any program runs."""
    if mode == "v1":
        tf.compat.v1.disable_v2_behavior()
        return
    tf.compat.v1.disable_eager_execution()

    def disable_v2_behavior():  # what the programs call: only eager execution goes
        tf.compat.v1.disable_eager_execution()

    tf.compat.v1.disable_v2_behavior = disable_v2_behavior


def mode_flags(tf):
    """What the process runs with now (checked after every program: a program must not change it)."""
    from tensorflow.python.ops import control_flow_util
    return {"eager": tf.executing_eagerly(),
            "resource_variables": tf.compat.v1.resource_variables_enabled(),
            "control_flow_v2": control_flow_util.ENABLE_CONTROL_FLOW_V2}


def reset(tf):
    tf.keras.backend.clear_session()
    tf.compat.v1.reset_default_graph()


def _tail(text):
    return text if len(text) <= ERROR_TAIL else "...\n" + text[-ERROR_TAIL:]


def run_plain(path, arguments=()):
    """Run ``path`` as ``python path ARGUMENTS``: its status (0, the SystemExit code, 1 for an
    exception), stdout and the traceback."""
    import runpy
    out, err = io.StringIO(), io.StringIO()
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [path, *arguments]
    sys.path.insert(0, os.path.dirname(path))
    status, error = 0, None
    started = time.perf_counter()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                runpy.run_path(path, run_name="__main__")
            except SystemExit as exit_:
                status = _exit_status(exit_.code)
                if status:
                    error = f"SystemExit({exit_.code!r})"
            except BaseException:  # noqa: BLE001  the program's own error: recorded
                status, error = 1, traceback.format_exc()
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    return {"status": status, "stdout": out.getvalue(),
            "error": None if error is None else _tail(error),
            "stderr": _tail(err.getvalue()) if status else None,
            "seconds": round(time.perf_counter() - started, 3)}


def run_traced(path, trace_dir):
    """Run ``path`` under ``bnrepro trace`` (``trace_script``): status, stdout, the summary it
    writes, and stderr (where it prints the program's traceback) when it failed."""
    from bnrepro.graphs.tracing import trace_script
    out, err, summary = io.StringIO(), io.StringIO(), []
    status, error = 0, None
    started = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = trace_script(path, [], trace_dir, force=True, write=summary.append)
        except SystemExit as exit_:
            status = _exit_status(exit_.code)
            error = f"trace_script raised SystemExit({exit_.code!r})"
        except BaseException:  # noqa: BLE001  the tracer's own failure, outside the program
            status, error = -1, "trace_script raised:\n" + traceback.format_exc()
    if status and error is None:
        error = err.getvalue() or f"exit status {status}"
    return {"status": status, "stdout": out.getvalue(),
            "error": None if error is None else _tail(error),
            "summary": "\n".join(summary),
            "trace": trace_dir if os.path.isfile(os.path.join(trace_dir, "trace.jsonl")) else None,
            "seconds": round(time.perf_counter() - started, 3)}


def _exit_status(code):
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--programs", default=PROGRAMS,
                        help="the folder of the programs (default: the zoo's)")
    parser.add_argument("--self-traced", action="append", default=[], metavar="NAME",
                        help="a program that writes its own trace into the folder its argument "
                             "names: run plain only")
    parser.add_argument("names", nargs="*", help="programs to run (default: all)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    programs = os.path.abspath(args.programs)
    names = args.names or program_names(programs)
    unknown = [name for name in names
               if not os.path.isfile(os.path.join(programs, f"{name}.py"))]
    if unknown:
        parser.error(f"no such program: {', '.join(unknown)}")
    out = os.path.abspath(os.path.join(args.out, args.mode))
    traces = os.path.join(out, "traces")
    work = os.path.join(out, "cwd")
    os.makedirs(traces, exist_ok=True)
    os.makedirs(work, exist_ok=True)
    os.chdir(work)  # anything a program writes by a relative path lands here

    import tensorflow as tf
    set_mode(tf, args.mode)
    expected_flags = mode_flags(tf)
    import bnrepro.graphs.tracing  # noqa: F401  (imported once, before the first program)

    results = {"mode": args.mode, "flags": expected_flags, "programs": {}}
    path_of_results = os.path.join(out, "results.json")
    for name in names:
        path = os.path.join(programs, f"{name}.py")
        trace_dir = os.path.join(traces, name)
        self_traced = name in args.self_traced
        entry = {}
        started = time.perf_counter()
        try:
            reset(tf)
            entry["plain"] = run_plain(path, [trace_dir] if self_traced else [])
            entry["plain"]["flags"] = mode_flags(tf)
            reset(tf)
            if self_traced:
                entry["trace"] = trace_dir
            else:
                entry["traced"] = run_traced(path, trace_dir)
                entry["traced"]["flags"] = mode_flags(tf)
                reset(tf)
        except BaseException:  # noqa: BLE001  the harness' own trouble with this program
            entry["harness_error"] = traceback.format_exc()
        entry["seconds"] = round(time.perf_counter() - started, 3)
        results["programs"][name] = entry
        _write(path_of_results, results)
        plain, traced = entry.get("plain", {}), entry.get("traced", {})
        print(f"{args.mode} {name}: plain {plain.get('status')} "
              f"traced {traced.get('status', 'by itself' if self_traced else None)} "
              f"({entry['seconds']:.1f} s)", file=sys.__stderr__, flush=True)
    _write(path_of_results, results)
    return 0


def run_modes(out, *, programs=PROGRAMS, self_traced=(), timeout=900):
    """Run the harness on every program of ``programs`` in both modes at once (a process each,
    logging into ``OUT/<mode>.log``); return ``{mode: results}`` (``results.json``, or, for a
    process that wrote none, no programs and the ``log``'s tail)."""
    environment = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    options = ["--programs", programs]
    for name in self_traced:
        options += ["--self-traced", name]
    processes = {}
    for mode in MODES:
        log = open(os.path.join(out, f"{mode}.log"), "w")  # noqa: SIM115
        processes[mode] = (subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--mode", mode, "--out", out, *options],
            stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=out), log)
    for process, log in processes.values():
        process.wait(timeout=timeout)
        log.close()
    return read_results(out)


def read_results(out):
    """``{mode: results}`` of harness runs into ``out`` (see :func:`run_modes`)."""
    results = {}
    for mode in MODES:
        path = os.path.join(out, mode, "results.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                results[mode] = json.load(handle)
        else:
            results[mode] = {"programs": {}, "log": _log_tail(out, mode)}
    return results


def _log_tail(out, mode):
    path = os.path.join(out, f"{mode}.log")
    if not os.path.isfile(path):
        return "(no log)"
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read()[-4000:]


def _write(path, results):
    staging = path + ".part"
    with open(staging, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=1)
    os.replace(staging, path)


if __name__ == "__main__":
    sys.exit(main())
