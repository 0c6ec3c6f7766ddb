"""The TensorFlow side: the posts' graphs, the traps' graphs, and the tracer that watches any graph.

:mod:`~bnrepro.graphs.tfv1` sets TensorFlow up in TF1 mode with the legacy layers;
:mod:`~bnrepro.graphs.built` is what a scenario's builder returns; the builders are
:mod:`~bnrepro.graphs.cubic` (post 000), :mod:`~bnrepro.graphs.two_sample` (post 001),
:mod:`~bnrepro.graphs.mnist` (post 002's five methods) and :mod:`~bnrepro.graphs.pitfalls`.
:mod:`~bnrepro.graphs.discover` finds every moving average in a graph from its operations,
:mod:`~bnrepro.graphs.tracer` records every run that moves one (``bnrepro trace``, ``tracing``,
``TraceHook``), and :mod:`~bnrepro.graphs.runner` is the scenarios' training loop through it.
Records go out in the trace format (:mod:`bnrepro.trace`); the checks (:mod:`bnrepro.check`) never
come back here.
"""
