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
    """One layer's coverage: its steps, and per quantity the steps checked and the reasons for the
    others."""

    layer: str
    steps: list = field(default_factory=list)  # the layer's step numbers after the initial state
    checked: dict = field(default_factory=dict)  # quantity -> {step}
    missed: dict = field(default_factory=dict)  # quantity -> {step: reason} (the first given)
    ways: dict = field(default_factory=dict)  # gamma and beta: IN_INFERENCE / AS_VARIABLES -> {step}

    def add_step(self, step):
        self.steps.append(step)

    def check(self, quantity, step, way=None):
        """Count ``step`` as checked for ``quantity`` (``way``: how gamma and beta entered)."""
        self.checked.setdefault(quantity, set()).add(step)
        self.missed.get(quantity, {}).pop(step, None)
        if way is not None:
            self.ways.setdefault(way, set()).add(step)

    def miss(self, quantity, step, reason):
        """``quantity`` was not checked at ``step``, for ``reason`` (the first reason stays)."""
        if step not in self.checked.get(quantity, ()):
            self.missed.setdefault(quantity, {}).setdefault(step, reason)

    def count(self, quantity):
        return len(self.checked.get(quantity, ()))

    def lines(self):
        """The report's lines: ``coverage of LAYER (N steps):`` and one line per quantity."""
        total = len(self.steps)
        lines = [f"coverage of {self.layer} ({total} step{'s' if total != 1 else ''}):"]
        for quantity in QUANTITIES:
            checked = self.count(quantity)
            reasons = {}
            for step in self.steps:
                if step not in self.checked.get(quantity, ()):
                    reason = self.missed.get(quantity, {}).get(step, "not recorded")
                    reasons[reason] = reasons.get(reason, 0) + 1
            details = [f"{count}: {reason}" for reason, count in reasons.items()]
            if quantity == SCALE_AND_OFFSET and checked:
                details = [f"{way} at {len(self.ways[way])}" for way in (IN_INFERENCE, AS_VARIABLES)
                           if self.ways.get(way)] + details
            detail = f" ({'; '.join(details)})" if details else ""
            lines.append(f"  {quantity}: {checked} of {total} steps{detail}")
        return lines
