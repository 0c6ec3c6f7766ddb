"""The three ways in to the tracer: ``bnrepro trace SCRIPT`` (:func:`trace_script`), the context
manager ``bnrepro.tracing(out)`` and ``bnrepro.TraceHook(out)`` for ``MonitoredTrainingSession``."""
from __future__ import annotations

import contextlib
import os
import runpy
import sys
import traceback

import tensorflow as tf  # not bnrepro.graphs.tfv1: its device set-up would change the traced program

from bnrepro.graphs.tracer import Tracer
from bnrepro.outdir import output_directory

tf1 = tf.compat.v1


@contextlib.contextmanager
def tracing(out, *, force=False, inputs_every=None, write=None):
    """Trace every session run inside the block; write the trace into ``out`` when it ends.

    ``with bnrepro.tracing("out/mine") as tracer: ...`` (then ``bnrepro verify out/mine``). An
    exception in the block is passed on after the trace of the runs before it is written (its end
    line says the run stopped and why). ``write``: where to print the summary (``None``: nowhere).
    """
    tracer = Tracer(inputs_every=inputs_every)
    with output_directory(out, force=force) as staging:
        tracer.install()
        try:
            yield tracer
        except BaseException as error:
            tracer.uninstall()
            tracer.write(staging, status="stopped",
                         reason=f"{type(error).__name__}: {error}".strip())
            pending = error
        else:
            tracer.uninstall()
            tracer.write(staging)
            pending = None
    if write is not None:
        write(tracer.summary())
    if pending is not None:
        raise pending


class TraceHook(tf1.train.SessionRunHook):
    """``tf.compat.v1.train.SessionRunHook`` that traces a ``MonitoredTrainingSession``'s runs into
    ``out``: ``before_run`` adds the fetches (``SessionRunArgs``), ``after_run`` records; the trace
    is written when the session ends."""

    def __init__(self, out, *, force=False, inputs_every=None):
        self.out, self.force = out, force
        self.tracer = Tracer(inputs_every=inputs_every)
        self._pending = None

    def before_run(self, run_context):
        arguments = run_context.original_args
        state, plan = self.tracer.before_run(run_context.session, arguments.fetches,
                                             arguments.feed_dict)
        self._pending = (state, plan)
        if plan is None or not plan.extra:
            return None
        return tf1.train.SessionRunArgs(plan.extra)

    def after_run(self, run_context, run_values):
        state, plan = self._pending
        if plan is not None:
            self.tracer.after_run(run_context.session, state, plan, run_values.results or {},
                                  "MonitoredSession hook")

    def end(self, session):
        with output_directory(self.out, force=self.force) as staging:
            self.tracer.write(staging)


def trace_script(script, arguments, out, *, force=False, inputs_every=None, write=print,
                 csv=False):
    """Run ``script`` as ``python script arguments`` would, traced; return its exit status.

    The script runs as ``__main__`` with its ``sys.argv`` and its folder first on ``sys.path``; its
    output is its own. A script that raises prints its own traceback (exit status 1) and the trace
    of the runs before the error is kept. The summary goes to ``write`` (stderr from the CLI).
    ``csv``: also write ``trace.csv``, every number as text.
    """
    path = os.path.abspath(script)
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [script, *arguments]
    sys.path.insert(0, os.path.dirname(path))
    status = 0
    tracer = Tracer(inputs_every=inputs_every, program=[script, *arguments])
    try:
        with output_directory(out, force=force) as staging:
            tracer.install()
            end, reason = "complete", None
            try:
                runpy.run_path(path, run_name="__main__")
            except SystemExit as exit_:
                status = _exit_status(exit_.code)
                if status:
                    end, reason = "stopped", f"the script exited with status {status}"
            except BaseException as error:  # the user's error: their traceback, our trace
                traceback.print_exc()
                status = 1
                end, reason = "stopped", f"the script raised {type(error).__name__}: {error}"
            finally:
                tracer.uninstall()
            tracer.write(staging, status=end, reason=reason, csv=csv)
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    if write is not None:
        write(f"bnrepro trace: {script}")
        write(tracer.summary())
        write(f"  check it with: bnrepro verify {out}")
    return status


def _exit_status(code):
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1
