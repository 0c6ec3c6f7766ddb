"""What ``bnrepro verify`` covered: per layer and quantity, at how many of the layer's steps a value
was held to its formula, and why not at the others.

A PASS says that every value compared was within its bound; these lines say which values those
were. For each layer the steps are the trace's records of it after the initial state (step 0,
which no formula produces), and each quantity is checked at some of them::

    coverage of LAYER (200 steps):
      moving_mean, moving_variance updates: 200 of 200 steps
      batch_mean, batch_variance from inputs: 10 of 200 steps (190: the layer's input was not kept)
      inference formula: 2 of 200 steps (198: no inference record)
      gamma, beta: 200 of 200 steps (in the inference formula at 2; against the variables read
        after the step at 200)

A step at which a quantity was not checked is counted once, under the first reason given for it.
Nothing here computes a formula: :mod:`bnrepro.check.verify` says what it checked and what not.
"""
from __future__ import annotations

from dataclasses import dataclass, field

UPDATES = "moving_mean, moving_variance updates"
FROM_INPUTS = "batch_mean, batch_variance from inputs"
INFERENCE = "inference formula"
SCALE_AND_OFFSET = "gamma, beta"
QUANTITIES = (UPDATES, FROM_INPUTS, INFERENCE, SCALE_AND_OFFSET)

# how gamma and beta enter a check (the detail of their coverage line)
IN_INFERENCE = "in the inference formula"
AS_VARIABLES = "against the variables read after the step"


@dataclass
class Coverage:
    """One layer's coverage: how many steps it has, and per quantity how many were checked and
    how many were not for each reason. A step's calls come together, after its :meth:`add_step`
    (calls for a step that was not added, the layer's initial state, count nothing), so that the
    counts take constant memory however long the trace."""

    layer: str
    total: int = 0  # the layer's steps after the initial state
    checked: dict = field(default_factory=dict)  # quantity -> steps checked
    missed: dict = field(default_factory=dict)  # quantity -> {reason: steps}
    ways: dict = field(default_factory=dict)  # gamma and beta: IN_INFERENCE / AS_VARIABLES -> steps
    _step: object = None  # the step being counted
    _pending: dict = field(default_factory=dict)  # its quantities -> True (checked) or the reason
    _pending_ways: set = field(default_factory=set)

    def add_step(self, step):
        self._close()
        self.total += 1
        self._step = step

    def check(self, quantity, step, way=None):
        """Count ``step`` as checked for ``quantity`` (``way``: how gamma and beta entered)."""
        if step == self._step:
            self._pending[quantity] = True
            if way is not None:
                self._pending_ways.add(way)

    def miss(self, quantity, step, reason):
        """``quantity`` was not checked at ``step``, for ``reason`` (the first reason stays)."""
        if step == self._step:
            self._pending.setdefault(quantity, reason)

    def add_steps(self, count, checked=(), missed=None):
        """``count`` more steps, each checked for the quantities ``checked`` and not for those of
        ``missed`` (``{quantity: reason}``)."""
        self._close()
        if not count:
            return
        self.total += count
        for quantity in checked:
            self.checked[quantity] = self.checked.get(quantity, 0) + count
        for quantity, reason in (missed or {}).items():
            reasons = self.missed.setdefault(quantity, {})
            reasons[reason] = reasons.get(reason, 0) + count

    def _close(self):
        """Count the step being counted."""
        for quantity, outcome in self._pending.items():
            if outcome is True:
                self.checked[quantity] = self.checked.get(quantity, 0) + 1
            else:
                reasons = self.missed.setdefault(quantity, {})
                reasons[outcome] = reasons.get(outcome, 0) + 1
        for way in self._pending_ways:
            self.ways[way] = self.ways.get(way, 0) + 1
        self._step, self._pending, self._pending_ways = None, {}, set()

    def count(self, quantity):
        self._close()
        return self.checked.get(quantity, 0)

    def lines(self):
        """The report's lines: ``coverage of LAYER (N steps):`` and one line per quantity."""
        self._close()
        total = self.total
        lines = [f"coverage of {self.layer} ({total} step{'s' if total != 1 else ''}):"]
        for quantity in QUANTITIES:
            checked = self.count(quantity)
            reasons = dict(self.missed.get(quantity, {}))
            unsaid = total - checked - sum(reasons.values())
            if unsaid:
                reasons["not recorded"] = reasons.get("not recorded", 0) + unsaid
            details = [f"{count}: {reason}" for reason, count in reasons.items()]
            if quantity == SCALE_AND_OFFSET and checked:
                details = [f"{way} at {self.ways[way]}" for way in (IN_INFERENCE, AS_VARIABLES)
                           if self.ways.get(way)] + details
            detail = f" ({'; '.join(details)})" if details else ""
            lines.append(f"  {quantity}: {checked} of {total} steps{detail}")
        return lines
