"""The traps behind "my moving statistics look wrong", one runnable scenario each.

Each module is one trap: a graph builder returning a :class:`bnrepro.graphs.built.BuiltGraph`, the
batches, a printer that points at the trace line showing the trap, and ``scenario()``, which
:data:`bnrepro.scenarios.SCENARIOS` loads; its config dataclass lives in :mod:`bnrepro.config`.
``bnrepro run NAME`` traces it like the posts' scenarios, and ``bnrepro verify`` names the
convention the trace follows (:mod:`bnrepro.check.diagnose`). ``docs/pitfalls.md`` tells each story.
"""
