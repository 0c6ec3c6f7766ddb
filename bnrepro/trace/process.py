"""A :class:`~bnrepro.trace.TraceWriter` in a child process, so that turning numbers into text (the
CSV export, ``bnrepro compare --trace-csv``) overlaps with the training steps.

Formatting a bn record as CSV costs about as much as a training step (``repr`` of every float, ~0.6 us
each: 0.76 ms for six (128,) vectors, 20 ms with the (128, 128) batch input), so another core
formats while the loop trains; the loop only pickles the records (NumPy arrays) into a pipe, 16
at a time, and at the end waits for the child to catch up. The child runs at the lowest priority
(``nice 19``) so that TensorFlow's threads, which use more than one core, go first; the two still
compete for a 2-core machine (see ``scripts/benchmark.py``: the trace costs less than written in
the loop, but not nothing).

The child is a fresh interpreter, ``python -m bnrepro.trace.process DIRECTORY [--csv]`` started by
``subprocess`` (exec right after fork: no copy of TensorFlow's running threads, and unlike
``multiprocessing``'s spawn it does not import the parent's main script, which would import
TensorFlow). It imports only NumPy and :mod:`bnrepro.trace`, so the files are byte for byte what
:class:`~bnrepro.trace.TraceWriter` writes.

Protocol, pickled objects on the child's stdin: the header, then ``("steps", [record, ...])``,
``("end", {keyword arguments of TraceWriter.finish})`` (the trace's end line) or ``("flush",)``,
after which the child flushes its files and answers one byte on stdout; end of input closes the
files. A failing child prints its traceback on stderr and exits with status 1;
the parent raises :class:`TraceWriterError` with that traceback at the next hand-over, ``flush``
or ``close``.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile

from bnrepro.trace import TraceWriter

PIPE_BYTES = 1 << 20  # Linux's default pipe-max-size: a tensor record and the steps after it fit
RECORDS_PER_MESSAGE = 16  # records handed over together: fewer system calls and wake-ups
STEPS, END, FLUSH = "steps", "end", "flush"
CSV = "--csv"


class TraceWriterError(RuntimeError):
    """The child process writing the trace failed. The message is one line (the exit status and
    the last line of the child's stderr, e.g. ``OSError: [Errno 28] No space left on device``);
    ``details`` holds all of its stderr, the traceback included."""

    def __init__(self, returncode, stderr):
        lines = stderr.strip().splitlines()
        super().__init__(f"the trace writer process failed (exit status {returncode}): "
                         f"{lines[-1] if lines else 'it wrote nothing on stderr'}")
        self.details = stderr


class BackgroundTraceWriter:
    """Hands records to a child process that writes ``trace.jsonl``, its arrays and with ``csv``
    ``trace.csv`` into ``directory`` with :class:`~bnrepro.trace.TraceWriter`. ``flush`` waits
    until everything handed over is written; ``close`` (or leaving the ``with`` block) waits for
    the child to end, and raises :class:`TraceWriterError` if it failed."""

    def __init__(self, directory, header, *, csv=False):
        self.header = header
        self._stderr = tempfile.TemporaryFile()
        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(
            filter(None, [package_parent, os.environ.get("PYTHONPATH")]))}
        self._child = subprocess.Popen([sys.executable, "-m", __name__, directory]
                                       + ([CSV] if csv else []),
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=self._stderr, env=environment)
        _grow_pipe(self._child.stdin)
        self._pending = []  # records not handed over yet
        self._send(header)

    def write_step(self, record):
        """Hand one step record (dict of NumPy values, not to be changed afterwards) over, in
        messages of :data:`RECORDS_PER_MESSAGE`; returns nothing (the JSON form is made in the
        child)."""
        self._pending.append(record)
        if len(self._pending) >= RECORDS_PER_MESSAGE:
            self._hand_over()

    def _hand_over(self):
        if self._child.poll() is not None:
            self._fail()
        if self._pending:
            self._send((STEPS, self._pending))
            self._pending = []

    def finish(self, status="complete", *, last_step=None, reason=None):
        """Have the child write the end line after every record handed over
        (:meth:`bnrepro.trace.TraceWriter.finish`)."""
        self._hand_over()
        self._send((END, {"status": status, "last_step": last_step, "reason": reason}))

    def flush(self):
        """Wait until the child has written (and flushed) every record handed over."""
        self._hand_over()
        self._send((FLUSH,))
        if self._child.stdout.read(1) != b".":
            self._fail()

    def close(self):
        """End the child's input and wait for it; raise :class:`TraceWriterError` if it failed."""
        try:
            if self._child.returncode is None:
                self._hand_over()
                self._end()
            if self._child.returncode != 0:
                raise self._failure()
        finally:
            self._stderr.close()

    def _send(self, message):
        try:
            self._child.stdin.write(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
            self._child.stdin.flush()
        except BrokenPipeError:  # not passed on: the CLI takes it for a closed stdout
            self._fail()

    def _end(self, kill=False):
        """Close the pipes (the end of the child's input) and wait for the child, killed first
        if ``kill``."""
        if kill:
            self._child.kill()
        for stream in (self._child.stdin, self._child.stdout):
            try:
                stream.close()
            except BrokenPipeError:
                pass  # unsent bytes of a child that is gone: its exit status says why
        self._child.wait()

    def _fail(self):
        self._end()
        raise self._failure()

    def _failure(self):
        """The :class:`TraceWriterError` of a failed child: its exit status and its stderr."""
        self._stderr.seek(0)
        return TraceWriterError(self._child.returncode,
                                self._stderr.read().decode("utf-8", "replace"))

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc_info):
        if exc_type is None:
            self.close()
        else:  # the trace is abandoned (its staging directory is removed): stop the child
            self._end(kill=True)
            self._stderr.close()


def _grow_pipe(stream):
    """Make the pipe hold :data:`PIPE_BYTES` where Linux allows it (the default is 64 KiB, less
    than a record with the (128, 128) batch input and the steps that follow it)."""
    try:
        import fcntl

        fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, AttributeError, OSError):
        pass  # a smaller pipe only makes the loop wait for the child more often


def main(directory, csv=False):
    """The child: read the header and the messages from stdin, write the trace into
    ``directory``."""
    os.nice(19)  # TensorFlow's threads first
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    with TraceWriter(directory, pickle.load(requests), csv=csv) as writer:
        while True:
            try:
                message = pickle.load(requests)
            except EOFError:
                break
            if message[0] == STEPS:
                for record in message[1]:
                    writer.write_step(record)
            elif message[0] == END:
                writer.finish(**message[1])
            else:
                writer.flush()
                answers.write(b".")
                answers.flush()


if __name__ == "__main__":
    main(sys.argv[1], csv=CSV in sys.argv[2:])
