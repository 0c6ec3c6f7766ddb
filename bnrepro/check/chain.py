"""Which record of a trace holds the state before each step, found in one pass over its steps in
order (:class:`Chain`): what every reader that streams a trace (``verify``, the diagnosis,
``explain``, the figures) needs, and what :meth:`bnrepro.trace.Trace.before` answers for a trace
in memory."""
from __future__ import annotations


class Chain:
    """Which record holds the state before each step, in one pass over the steps in order: ask
    :meth:`before` for a record, then :meth:`advance` past it. Step ``k - 1``'s record
    (``bnrepro-trace/1``: ``None`` when it was not traced), or the last earlier record holding
    ``name`` (``bnrepro-trace/2``, where every run that moves it is a step, numbered in order;
    ``None`` when step numbers are missing in between: a trace that keeps some steps only, a keep
    policy or ``bnrepro compare --trace-every``). Holds one record per name."""

    def __init__(self, steps_are_runs):
        self.steps_are_runs = steps_are_runs
        self._last = None  # the record before
        self._holding = {}  # (section, name) -> the last record holding it since the last gap

    def before(self, record, name, section="bn"):
        if not self.steps_are_runs:
            last = self._last
            return last if last is not None and last["step"] == record["step"] - 1 else None
        if self._last is not None and record["step"] != self._last["step"] + 1:
            return None  # steps left out: the state before this one is not known
        return self._holding.get((section, name))

    def advance(self, record):
        if self._last is not None and record["step"] != self._last["step"] + 1:
            self._holding = {}
        for section in ("bn", "averages"):
            for name in record.get(section) or {}:
                self._holding[(section, name)] = record
        self._last = record
