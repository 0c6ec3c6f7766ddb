"""Progress of a long run: one ``tqdm`` bar per method (``bnrepro compare``, ``bnrepro reproduce``,
``scripts/compare_seeds.py``)."""
from __future__ import annotations

import math
import sys


class ProgressBar:
    """A ``tqdm`` bar, one per method: ``bn: 40%|####      | 120/300 [00:00<00:00, 412.31step/s,
    loss 0.312  acc 0.914]``, on ``stream`` (default: stderr; stdout carries the results).

    Without a stream it is ``tqdm.auto``'s bar: a notebook widget in Jupyter (with ipywidgets), a
    text bar elsewhere; with one, a text bar on it. On a terminal (or in Jupyter) the bar is redrawn
    at most every :attr:`interval` seconds; on any other stream (a log file, a test's StringIO) only
    the final line is written, once, when the bar closes. ``close(note)`` adds the note to that
    line (``stopped: NaN loss at step 27``). :meth:`update` and :meth:`beside` serve the bars over
    a longer job's stages (``bnrepro reproduce``'s posts, ``scripts/compare_seeds.py``'s seeds).
    """

    interval = 0.2

    def __init__(self, method, total, stream=None, *, unit="step"):
        from tqdm import auto, std
        from tqdm.auto import tqdm

        if stream is not None:
            tqdm = std.tqdm  # text on the given stream (tqdm.auto's notebook bar would ignore it)
        self.stream = stream if stream is not None else sys.stderr
        notebook = stream is None and auto.notebook_tqdm is not std.tqdm
        shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
        in_jupyter = type(shell).__name__ == "ZMQInteractiveShell" and self.stream is sys.stderr
        self.live = notebook or in_jupyter or getattr(self.stream, "isatty", lambda: False)()
        # not live: never drawn by tqdm (delay), the final line written by close()
        self.bar = tqdm(total=total, desc=method, unit=unit, file=self.stream, leave=True,
                        mininterval=self.interval, dynamic_ncols=True,
                        delay=0 if self.live else math.inf)

    def __call__(self, step, loss, accuracy):
        self.update(step, f"loss {loss:.3f}  acc {accuracy:.3f}")

    def update(self, count, postfix=None):
        """Move the bar to ``count`` (of its total), showing ``postfix`` after it."""
        if postfix is not None:
            self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.update(count - self.bar.n)

    def beside(self, write):
        """``write`` (a line printer, e.g. ``print``), made to clear a live bar before the line and
        draw it again after it, so that lines on stdout and the bar on stderr do not overwrite each
        other on a terminal."""
        if not self.live:
            return write

        def write_line(line):
            self.bar.clear()
            write(line)
            self.bar.refresh()
        return write_line

    def close(self, note=""):
        if note:
            self.bar.set_postfix_str("  ".join(filter(None, (self.bar.postfix, note))),
                                     refresh=False)
        if not self.live:
            self.stream.write(str(self.bar) + "\n")
            self.stream.flush()
        self.bar.close()  # live: draws the final state and ends its line; otherwise writes nothing
