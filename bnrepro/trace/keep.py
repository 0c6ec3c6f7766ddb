"""Which steps of a long run a streamed trace keeps (``bnrepro trace``, ``bnrepro.tracing``), and
until when it keeps the layers' inputs.

A run of 100,000 steps of a ResNet-20-style net (19 layers) would write about 2 GB of moving and
batch statistics (21 KB a step) and, with its layers' inputs every 100th step, 19 MB a time on top.
The default keeps::

    every step up to KEEP_FIRST (100), then the pairs (k - 1, k) of every KEEP_EVERY-th (100th)
    step, and the last step

so that each kept pair's second step is checked against the first (its moving-average update,
from the state before it; of the first only that state is kept, :meth:`KeepPolicy.state_only`),
and the layers' inputs (at the steps the tracer's inputs policy names) only while the trace is
smaller than BUDGET_BYTES (1.5 GB), in the first EARLY_STEPS (100) steps only while it is smaller
than EARLY_SHARE (a sixth) of it: that net's first steps would otherwise keep 48 MB of inputs each
until the budget is spent (31 steps, each 1.4 times a plain step), the later steps none. A
100,000-step run of that net keeps about 2,100 steps (at 23 KB of statistics each, some 50 MB) and
so stays within about 1.6 GB, 16 KB a step (``scripts/long_run_cost.py`` measures a run's bytes
per step). A dropped step that trains costs the run nothing: nothing is
fetched, and the state after it is not read (:attr:`bnrepro.graphs.run_plan.RunPlan.unread`);
one that does not train is read, to know whether it moved the statistics and so is a step
(:attr:`~bnrepro.graphs.run_plan.RunPlan.unkept`). The first KEEP_FIRST steps are where a layer's
statistics move most (a momentum of 0.99 averages over some 100 steps) and where most questions
about them arise; after them a pair every KEEP_EVERY steps shows the averages' course and checks
their update. The trace's header records the policy (``"keep"``) and ``bnrepro verify`` says how
many of the run's steps the trace holds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

KEEP_FIRST = 100
KEEP_EVERY = 100
BUDGET_BYTES = 15 * 10 ** 8  # 1.5 GB
EARLY_STEPS = 100  # the first steps, whose layer inputs the inputs policy keeps at every step ...
EARLY_SHARE = 1 / 6  # ... are kept while the trace is under this share of the budget


@dataclass(frozen=True)
class KeepPolicy:
    """``first``: every step up to it is kept; ``every``: after it, the pairs ``(k - 1, k)`` for
    ``k`` a multiple of it (1: every step); ``budget_bytes``: the layers' inputs are kept only while
    the trace is smaller (``None``: no budget)."""

    first: int = KEEP_FIRST
    every: int = KEEP_EVERY
    budget_bytes: Optional[int] = BUDGET_BYTES

    def __post_init__(self):
        if self.first < 0 or self.every < 1 or (self.budget_bytes is not None
                                                 and self.budget_bytes < 0):
            raise ValueError(f"a keep policy needs first >= 0, every >= 1 and a budget >= 0, got "
                             f"{self.first}, {self.every}, {self.budget_bytes}")

    def keeps(self, step):
        """Whether step ``step`` is kept: ``step <= first``, or ``step`` or ``step + 1`` a multiple
        of ``every``."""
        return self.every == 1 or step <= self.first or (step + 1) % self.every in (0, 1)

    def state_only(self, step):
        """Whether kept step ``step`` is the first of a pair ``(k - 1, k)``, ``step + 1`` a multiple
        of ``every`` after ``first``: only the state after it is kept (the state the pair's second
        step starts from, all its check needs), so the run fetches nothing more than the program's
        own fetches, as the dropped steps around it do, and TensorFlow prepares no run of new
        fetches for it (some 80 ms for a small MLP, 0.65 s for a ResNet-20)."""
        return self.every > 1 and step > self.first and (step + 1) % self.every == 0

    def inputs_allowed(self, trace_bytes, step=None):
        """Whether kept step ``step`` may keep the layers' inputs, the trace being
        ``trace_bytes`` large: under the budget, and in the first :data:`EARLY_STEPS` steps (whose
        inputs the inputs policy keeps at every step) under :data:`EARLY_SHARE` of it, so that a
        large net's inputs leave room for the rest of the run and do not slow its start."""
        if self.budget_bytes is None:
            return True
        early = step is not None and step <= EARLY_STEPS
        return trace_bytes < self.budget_bytes * (EARLY_SHARE if early else 1)

    def describe(self):
        """``every step up to 100, then the pairs (k - 1, k) of every 100th step; the layers'
        inputs while the trace is under 1.5 GB``."""
        steps = ("every step" if self.every == 1 else
                 f"every step up to {self.first}, then the pairs (k - 1, k) of every "
                 f"{_ordinal(self.every)} step")
        inputs = ("" if self.budget_bytes is None else
                  f"; the layers' inputs while the trace is under {_size(self.budget_bytes)} "
                  f"(in the first {EARLY_STEPS} steps under "
                  f"{_size(int(self.budget_bytes * EARLY_SHARE))})")
        return steps + inputs

    def header_entry(self):
        return {"first": self.first, "every": self.every, "budget_bytes": self.budget_bytes}


def _ordinal(number):
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def _size(count):
    for unit, scale in (("GB", 10 ** 9), ("MB", 10 ** 6), ("kB", 10 ** 3)):
        if count >= scale:
            return f"{count / scale:g} {unit}"
    return f"{count} bytes"
