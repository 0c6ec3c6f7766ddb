"""The traced training loop of ``bnrepro run`` and ``bnrepro compare``: the program's runs, the moving
statistics by the tracer.

:func:`traced_training` is the loop both commands train in, the one place that orders a traced
step's runs; :func:`run_traced` is ``bnrepro run``'s use of it for the posts
(:func:`bnrepro.compare.training.train_method` is ``bnrepro compare``'s). The session runs with a
:class:`bnrepro.graphs.tracer.Tracer` installed, the one place where moving statistics, the values
their update consumed and the layers' inputs are obtained (the same tracer as ``bnrepro trace``).
For every step ``k >= 1`` the loop does, in this order:

1. ``inference`` (optional, on recorded steps): each batch-norm layer's input and output in
   inference mode (``training=False``) on the step's batch, with the variables *before* the step
   (post 000 prints exactly this);
2. the training run: the train op, the loss and every metric. The tracer adds to this run's
   fetches each layer's ``batch_mean`` and ``batch_variance`` (the tensors the moving-average update
   consumes, when the update runs) and ``batch_input`` (the layer's input), and reads the layers'
   ``moving_mean``, ``moving_variance``, ``gamma`` and ``beta`` after it: its record of the run is
   the step's record;
3. on recorded steps, the step's trace record: the tracer's record with the program's fields added
   (``bnrepro run`` reads the program's state after the step in one more run: every global
   variable, and the tensors the post prints afterwards, ``printed_after``, inference mode).

Step 0 is the initial state (the tracer's, plus every variable). A record of ``bnrepro run`` is the
tracer's record of the training run (``bn``, ``averages``, ``run``) with the program's fields added:
``loss``, ``metrics``, ``inference``, ``after``, ``batch`` and ``variables``; :mod:`bnrepro.trace`
turns it into a ``bnrepro-trace/2`` line.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import numpy as np

from bnrepro.graphs.tfv1 import tf1
from bnrepro.graphs.tracer import DISCARD, Tracer


def batch_norm_tracer(built, *, record_batch_input=True):
    """A :class:`Tracer` of ``built``'s graph, its layers discovered (its header can be written)."""
    return Tracer(inputs_at=lambda step: record_batch_input, sink=DISCARD).watch(built.graph)


@dataclass
class TracedStep:
    """What :func:`traced_training` yields after each step: ``step`` (0: the initialised state),
    what the training run fetched (``None`` at step 0) and the step's trace record (``None`` when
    the step is not recorded, or nothing is traced)."""

    step: int
    fetched: Optional[dict]
    record: Optional[dict]


def traced_training(session, tracer, batches: Iterable, *, train: Callable,
                    records_step: Callable, make_record: Callable, initial_record: Callable,
                    inference: Optional[Callable] = None, stops: Optional[Callable] = None):
    """Train in ``session`` on ``batches`` with ``tracer`` installed; yield a :class:`TracedStep`
    for the initial state, then one after each step (step ``k`` trains on the ``k``-th batch).

    ``tracer``: the :class:`Tracer` that records the runs (installed until the loop ends or is
    closed), or ``None`` to train untraced (no record is made). In this order:

    * the global variables are initialised (the tracer's record 0 is that state), and step 0 is
      yielded with the record ``initial_record(tracer.initial_record)``;
    * for every batch, with ``recorded = records_step(k)`` (only when traced):
      ``inferred = inference(k, batch)`` if recorded (a run before the training run, with the
      variables before the step); ``fetched = train(k, batch)`` (the training run, and whatever the
      caller runs with it); the tracer's record of that run (``RuntimeError`` if it made none); if
      recorded and not ``stops(fetched)``, the step's record ``make_record(k, batch, traced,
      fetched, inferred)``; then the step is yielded. The loop ends after the last batch or after a
      step where ``stops(fetched)`` is true (its record left out).
    """
    if tracer is not None:
        tracer.install()
    try:
        with session.graph.as_default():
            session.run(tf1.global_variables_initializer())  # the tracer reads the initial state
        yield TracedStep(0, None, None if tracer is None else initial_record(tracer.initial_record))
        for step, batch in enumerate(batches, start=1):
            recorded = tracer is not None and records_step(step)
            inferred = inference(step, batch) if recorded and inference is not None else None
            count = tracer.recorded if tracer is not None else 0
            fetched = train(step, batch)
            stopped = stops is not None and stops(fetched)
            record = None
            if tracer is not None:
                traced = tracer.take_step(count)
                if traced is None:
                    raise RuntimeError(f"step {step}: the training run neither trained nor moved "
                                       "a moving statistic, so the tracer recorded no step")
                if recorded and not stopped:
                    record = make_record(step, batch, traced, fetched, inferred)
            yield TracedStep(step, fetched, record)
            if stopped:
                return
    finally:
        if tracer is not None:
            tracer.uninstall()


def run_traced(built, batches, *, tracer=None, record_every=1, record_inference=True):
    """Train ``built`` on ``batches`` (an iterable of ``(inputs, targets)``) in
    :func:`traced_training`; yield its trace records.

    ``tracer``: the :func:`batch_norm_tracer` whose header the trace has (a new one by default).
    Yields the step-0 record, then one record for every ``record_every``-th step (and the last),
    with the layers' inference-mode pass before the step unless not ``record_inference``.
    """
    tracer = tracer or batch_norm_tracer(built)
    batches = list(batches)
    with built.graph.as_default(), tf1.Session(graph=built.graph) as session:
        variables = {variable.name: variable for variable in tf1.global_variables()}

        def feed(batch, training):
            inputs, targets = batch
            return {built.inputs: inputs, built.targets: targets, **built.extra_feed,
                    built.training: training}

        def inference(step, batch):
            return session.run({tap.name: {"input": tap.inputs, "output": tap.outputs}
                                for tap in built.batch_norms}, feed_dict=feed(batch, False))

        def train(step, batch):
            return session.run({"train_op": built.train_op, "loss": built.loss,
                                "metrics": dict(built.metrics)}, feed_dict=feed(batch, True))

        def record(step, batch, traced, fetched, inferred):
            state = session.run({"variables": variables, "after": dict(built.printed_after)},
                                feed_dict=feed(batch, False))
            program = {} if inferred is None else {"inference": inferred}
            program.update(loss=fetched["loss"], variables=state["variables"],
                           batch={"inputs": np.asarray(batch[0]),
                                  "targets": np.asarray(batch[1])})
            if fetched["metrics"]:
                program["metrics"] = fetched["metrics"]
            if state["after"]:
                program["after"] = state["after"]
            return {**traced, "step": step, **program}

        steps = traced_training(
            session, tracer, batches, train=train,
            records_step=lambda step: step % record_every == 0 or step == len(batches),
            inference=inference if record_inference else None, make_record=record,
            initial_record=lambda traced: {**traced, "step": 0,
                                           "variables": session.run(variables)})
        for done in steps:
            if done.record is not None:
                yield done.record
