"""The traced training loop of ``bnrepro run``: the program's runs, the moving statistics by the tracer.

The session runs with a :class:`bnrepro.graphs.tracer.Tracer` installed, the one place where moving
statistics, the values their update consumed and the layers' inputs are obtained (the same tracer
as ``bnrepro trace`` and ``bnrepro compare``). For every step ``k >= 1`` the runner does, in this
order:

1. ``inference`` (optional): each batch-norm layer's input and output in inference mode
   (``training=False``) on the step's batch, with the variables *before* the step (post 000 prints
   exactly this);
2. the training run: the train op, the loss and every metric. The tracer adds to this run's
   fetches each layer's ``batch_mean`` and ``batch_variance`` (the tensors the moving-average update
   consumes, when the update runs) and ``batch_input`` (the layer's input), and reads the layers'
   ``moving_mean``, ``moving_variance``, ``gamma`` and ``beta`` after it: its record of the run is
   the step's record;
3. the program's state after the step: every global variable, and the tensors the post prints
   afterwards (``printed_after``, inference mode), in one more run.

Step 0 is the initial state (the tracer's, plus every variable). A record is the tracer's record
of the training run (``bn``, ``averages``, ``run``) with the program's fields added: ``loss``,
``metrics``, ``inference``, ``after``, ``batch`` and ``variables``; :mod:`bnrepro.trace` turns it
into a ``bnrepro-trace/2`` line.
"""
from __future__ import annotations

import numpy as np

from bnrepro.graphs.tfv1 import tf1
from bnrepro.graphs.tracer import Tracer


def batch_norm_tracer(built, *, record_batch_input=True):
    """A :class:`Tracer` of ``built``'s graph, its layers discovered (its header can be written)."""
    return Tracer(inputs_at=lambda step: record_batch_input).watch(built.graph)


def run_traced(built, batches, *, tracer=None, record_every=1, record_inference=True,
               on_step=None):
    """Train ``built`` on ``batches`` (an iterable of ``(inputs, targets)``); yield trace records.

    ``tracer``: the :func:`batch_norm_tracer` whose header the trace has (a new one by default).
    Yields the step-0 record, then one record for every ``record_every``-th step (and the last).
    ``on_step(step, fetched)`` is called after every training run with the loss and metrics, for
    progress bars and histories.
    """
    tracer = tracer or batch_norm_tracer(built)
    batches = list(batches)
    with built.graph.as_default(), tf1.Session(graph=built.graph) as session:
        variables = {variable.name: variable for variable in tf1.global_variables()}
        tracer.install()
        try:
            session.run(tf1.global_variables_initializer())  # the tracer reads the initial state
            yield {**tracer.records[0], "step": 0, "variables": session.run(variables)}
            for step, (inputs, targets) in enumerate(batches, start=1):
                recorded = step % record_every == 0 or step == len(batches)
                feed = {built.inputs: inputs, built.targets: targets, **built.extra_feed}
                program = {}
                if recorded and record_inference:
                    program["inference"] = session.run(
                        {tap.name: {"input": tap.inputs, "output": tap.outputs}
                         for tap in built.batch_norms},
                        feed_dict={**feed, built.training: False})
                count = len(tracer.records)
                fetched = session.run({"train_op": built.train_op, "loss": built.loss,
                                       "metrics": dict(built.metrics)},
                                      feed_dict={**feed, built.training: True})
                traced = tracer.take_step(count)
                if traced is None:
                    raise RuntimeError(f"step {step}: the training run neither trained nor moved "
                                       "a moving statistic, so the tracer recorded no step")
                if on_step is not None:
                    on_step(step, fetched)
                if not recorded:
                    continue
                state = session.run({"variables": variables, "after": dict(built.printed_after)},
                                    feed_dict={**feed, built.training: False})
                program.update(loss=fetched["loss"], variables=state["variables"],
                               batch={"inputs": np.asarray(inputs),
                                      "targets": np.asarray(targets)})
                if fetched["metrics"]:
                    program["metrics"] = fetched["metrics"]
                if state["after"]:
                    program["after"] = state["after"]
                yield {**traced, "step": step, **program}
        finally:
            tracer.uninstall()
