"""The three ways in to the tracer: ``bnrepro trace SCRIPT`` (:func:`trace_script`), the context
manager ``bnrepro.tracing(out)`` and ``bnrepro.TraceHook(out)`` for ``MonitoredTrainingSession``.

The first two stream: the trace is written as the program runs (:meth:`Tracer.stream_to`, chunk
by chunk, :class:`TraceWriter`), so the tracer's memory does not grow with the steps. It is written
into the output's staging directory ``OUT.partial-XXXXXXXX`` (:mod:`bnrepro.outdir`) and moved to
``OUT`` when the program ends, whatever its end: finished, raised, exited, or terminated
(``SIGTERM`` is turned into the end of the run, the trace's end line saying so). A process killed
outright (``SIGKILL``, out of memory) leaves the staging directory, whose trace every reader opens:
the steps up to its last written chunk, no end line (``bnrepro verify``: INCOMPLETE)."""
from __future__ import annotations

import contextlib
import os
import runpy
import signal
import sys
import threading
import traceback

import tensorflow as tf  # not bnrepro.graphs.tfv1: its device set-up would change the traced program

from bnrepro.graphs.tracer import Tracer
from bnrepro.outdir import StagedOutput, output_directory
from bnrepro.trace import TraceWriter
from bnrepro.trace.keep import KeepPolicy

tf1 = tf.compat.v1


class Terminated(BaseException):
    """``SIGTERM`` arrived while a traced program ran (:func:`_terminated_ends_the_run`)."""


@contextlib.contextmanager
def _terminated_ends_the_run():
    """While the block runs (in the main thread), ``SIGTERM`` raises :class:`Terminated` where the
    program is, so that its trace ends as a stopped run instead of being cut short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated(f"terminated by {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _streamed_trace(tracer, out, force, csv):
    """The output directory's staging directory with a :class:`TraceWriter` in it that ``tracer``
    streams to (its header line the tracer's header now)."""
    with output_directory(out, force=force) as staging:
        with TraceWriter(staging, tracer.header(), csv=csv) as writer:
            tracer.stream_to(writer)
            yield


@contextlib.contextmanager
def tracing(out, *, force=False, inputs_every=None, write=None, csv=False, keep=KeepPolicy()):
    """Trace every session run inside the block, streaming the trace into ``out``.

    ``with bnrepro.tracing("out/mine") as tracer: ...`` (then ``bnrepro verify out/mine``). An
    exception in the block (``SIGTERM`` too, as :class:`Terminated`) is passed on after the trace
    is ended (its end line says the run stopped and why). ``write``: where to print the summary
    (``None``: nowhere). ``csv``: also write ``trace.csv``. ``keep``: which steps a long run's
    trace keeps (:class:`~bnrepro.trace.keep.KeepPolicy`; ``None``: every one).
    """
    tracer = Tracer(inputs_every=inputs_every, keep=keep)
    with _streamed_trace(tracer, out, force, csv), _terminated_ends_the_run():
        tracer.install()
        try:
            yield tracer
        except BaseException as error:
            tracer.uninstall()
            tracer.finish("stopped", reason=f"{type(error).__name__}: {error}".strip())
            pending = error
        else:
            tracer.uninstall()
            tracer.finish()
            pending = None
    if write is not None:
        write(tracer.summary())
    if pending is not None:
        raise pending


class TraceHook(tf1.train.SessionRunHook):
    """``tf.compat.v1.train.SessionRunHook`` that traces a ``MonitoredTrainingSession``'s runs into
    ``out``: ``before_run`` adds the fetches (``SessionRunArgs``), ``after_run`` records, streamed
    as the session runs (from ``begin``) into ``out``'s staging directory, which becomes ``out``
    when the session ends (``end``). A session closed by an error does not call ``end``: its trace
    stays in the staging directory, without end line, as a killed run's (``bnrepro verify``
    reads it: INCOMPLETE)."""

    def __init__(self, out, *, force=False, inputs_every=None, csv=False, keep=KeepPolicy()):
        self.out, self.force, self.csv = out, force, csv
        self.tracer = Tracer(inputs_every=inputs_every, keep=keep)
        self._pending = None
        self._staged = self._writer = None

    def begin(self):
        if self._staged is None:  # a hook may serve several sessions: one trace
            self._staged = StagedOutput(self.out, force=self.force)
            self._writer = TraceWriter(self._staged.path, self.tracer.header(), csv=self.csv)
            self.tracer.stream_to(self._writer)

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
        if self._staged is None:
            return
        self.tracer.finish()
        self._writer.close()
        self._staged.commit()
        self._staged = self._writer = None


def trace_script(script, arguments, out, *, force=False, inputs_every=None, write=print,
                 csv=False, keep=KeepPolicy()):
    """Run ``script`` as ``python script arguments`` would, traced; return its exit status.

    The script runs as ``__main__`` with its ``sys.argv`` and its folder first on ``sys.path``; its
    output is its own. A script that raises prints its own traceback (exit status 1) and the trace
    of the runs before the error is kept. The summary goes to ``write`` (stderr from the CLI).
    ``csv``: also write ``trace.csv``, every number as text. ``keep``: which steps a long run's
    trace keeps (:class:`~bnrepro.trace.keep.KeepPolicy`; ``None``: every one).
    """
    path = os.path.abspath(script)
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [script, *arguments]
    sys.path.insert(0, os.path.dirname(path))
    status = 0
    tracer = Tracer(inputs_every=inputs_every, program=[script, *arguments], keep=keep)
    try:
        with _streamed_trace(tracer, out, force, csv), _terminated_ends_the_run():
            tracer.install()
            end, reason = "complete", None
            try:
                runpy.run_path(path, run_name="__main__")
            except SystemExit as exit_:
                status = _exit_status(exit_.code)
                if status:
                    end, reason = "stopped", f"the script exited with status {status}"
            except Terminated as error:
                status = 128 + signal.SIGTERM
                end, reason = "stopped", f"the script was {error}"
            except BaseException as error:  # the user's error: their traceback, our trace
                traceback.print_exc()
                status = 1
                end, reason = "stopped", f"the script raised {type(error).__name__}: {error}"
            finally:
                tracer.uninstall()
            tracer.finish(end, reason)
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    if write is not None:
        write(f"bnrepro trace: {script}")
        write(tracer.summary())
        write(f"  check it with: bnrepro verify {out}")
        write(f"  see it: bnrepro plot {out}")
    return status


def _exit_status(code):
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1
