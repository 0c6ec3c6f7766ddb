"""The comparison's training loop: one method of post 002's net trained on the comparison's batch
schedule, one ``session.run`` per step, bn traced through :class:`bnrepro.graphs.tracer.Tracer`.

Every method trains from the same seed on the same batches (indices drawn with replacement, like the
post's ``np.random.choice(len(images_train), size=batch_size)``), with one run per step that fetches
the train op and the batch's loss and accuracy. For bn the session runs with the tracer installed,
the same tracer as ``bnrepro run`` and ``bnrepro trace``: it adds the statistics the update consumed
(and the layer's input) to that run and reads the moving statistics after it
(:class:`BatchNormTracer` says what the trace keeps when). The first layer's pre-activation
statistics are recorded for the figure (:class:`PreActivationRecorder`).
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from bnrepro.config import config_as_dict
from bnrepro.graphs.mnist import build_graph
from bnrepro.graphs.runner import traced_training
from bnrepro.graphs.tfv1 import tf, tf1
from bnrepro.graphs.tracer import DISCARD, Tracer
from bnrepro.trace import TraceWriter
from bnrepro.trace.process import BackgroundTraceWriter

INFERENCE_EXAMPLES = 8  # examples of the batch whose inference-mode pass the bn trace records
PREACTIVATION_EVERY = 10  # record the first layer's pre-activation statistics every N steps


def batch_schedule(config, n_train):
    """The training-set indices of every step's batch, (steps, batch_size), the same for every
    method: drawn with replacement from ``np.random.default_rng(seed)``."""
    return np.random.default_rng(config.seed).integers(0, n_train, size=(config.steps,
                                                                         config.batch_size))


def evaluation_steps(config):
    """Steps after which the test set is evaluated: 0, every ``eval_every``-th, and the last."""
    return set(range(0, config.steps + 1, config.eval_every)) | {config.steps}


# --- the batch-norm trace ---------------------------------------------------------------------------

class BatchNormTracer:
    """Which steps of the bn method are traced, and the records they become.

    Its :attr:`tracer` (a :class:`bnrepro.graphs.tracer.Tracer`, installed while the session runs) records
    every training step: per layer ``moving_mean``, ``moving_variance``, ``gamma``, ``beta`` after
    the step, ``batch_mean``, ``batch_variance`` as the update consumed them, and on the steps
    :meth:`has_tensors` names ``batch_input``. The trace keeps the tracer's record of

    * every ``trace_every``-th step *and the step before it* (whose state the update check starts
      from), with the program's ``loss`` and ``metrics``;
    * every ``trace_tensors_every``-th step and the last, also with the layer's (batch, units)
      ``batch_input``, ``inference`` (input and output in inference mode, variables before the
      step, for the first :data:`INFERENCE_EXAMPLES` examples of the batch: one more run before the
      train op's), ``batch`` (the training-set ``indices`` and ``labels``; the images are
      ``train_images[indices]``) and ``variables`` (the layer's variables by TensorFlow name);
    * step 0: the initial ``bn`` state and ``variables``.

    Writing a number as JSON and CSV text costs microseconds, so the 100k weights or the (128, 784)
    images at every step would make writing the trace most of the run (and the file hundreds of
    megabytes); the update check needs only the layer's (units,) vectors.
    """

    def __init__(self, net, config):
        self.net = net
        self.taps = net.batch_norms
        self.steps = config.steps
        self.every, self.tensors_every = config.trace_every, config.trace_tensors_every
        self.tracer = Tracer(inputs_at=self.has_tensors, sink=DISCARD)  # record k: training step k
        add_reads_after_training(net)
        # the layers' input and output in inference mode (a run before the train op's run)
        with net.graph.as_default():
            self.inference_fetches = {tap.name: {"input": tap.inputs[:INFERENCE_EXAMPLES],
                                                 "output": tap.outputs[:INFERENCE_EXAMPLES]}
                                      for tap in self.taps}

    def _due(self, step, every):
        return step % every == 0 or step == self.steps

    def recorded(self, step):
        """Due steps and the step before each (whose state the update check starts from)."""
        return (self._due(step, self.every) or self._due(step + 1, self.every)
                or self._due(step, self.tensors_every) or self._due(step + 1, self.tensors_every))

    def has_tensors(self, step):
        return self._due(step, self.tensors_every)

    def initial_record(self, traced):
        """Step 0: the tracer's record of the initial state (``traced``), with the layer's
        ``variables``."""
        return {**traced, "variables": self._variables(traced["bn"])}

    def record(self, step, traced, fetched, indices=None, labels=None, inference=None):
        """Step ``step``: the tracer's record of its training run (``traced``) with the program's
        ``loss`` and ``metrics`` (``fetched``) and, on a step with tensors, ``inference``,
        ``batch`` and ``variables``."""
        record = {**traced, "step": step, "loss": fetched["loss"], "metrics": fetched["metrics"]}
        if inference is not None:
            record.update(inference=inference, batch={"indices": indices, "labels": labels},
                          variables=self._variables(traced["bn"]))
        return record

    def _variables(self, state):
        return {tap.variables[role].name: state[tap.name][role]
                for tap in self.taps for role in tap.variables}


AFTER_TRAINING_READS = "bnrepro_reads_after_training"  # the graph collection of those reads


def add_reads_after_training(net):
    """Add to ``net``'s graph, once, a read of each batch-norm variable that runs after the train
    op (``tf.control_dependencies([train_op])``). The tracer fetches them with the training run
    as the state after the step (:func:`bnrepro.graphs.run_plan.state_after_run`) instead of
    reading the variables in a second call; runs that do not fetch them (untraced ones, the post's
    loop) do not execute them."""
    graph = net.graph
    if not net.batch_norms or graph.get_collection(AFTER_TRAINING_READS):
        return
    with graph.as_default(), tf.name_scope("reads_after_training"), \
            tf.control_dependencies([net.train_op]):
        for tap in net.batch_norms:
            for variable in tap.variables.values():
                graph.add_to_collection(AFTER_TRAINING_READS, tf.raw_ops.ReadVariableOp(
                    resource=variable.handle, dtype=variable.dtype.base_dtype))


def trace_header(net, config):
    """The bn trace's header line (``bnrepro-trace/2``): the config and each batch-norm layer as
    the tracer finds it in the graph (momentum, epsilon, ...)."""
    return Tracer().watch(net.graph).header("mnist-bn", config_as_dict(config))


def open_trace_writer(directory, net, config):
    """The writer of the bn trace into ``directory``. The layer's (units,) vectors and inputs go
    to chunk files ``trace_arrays/000001.npz``, ... (:class:`~bnrepro.trace.TraceWriter`), copied
    when a record is handed over and written a chunk at a time. With ``trace_csv`` every number
    is also written as text, which costs about as much as a training step: a child process does
    that while the loop trains (:class:`~bnrepro.trace.process.BackgroundTraceWriter`)."""
    header = trace_header(net, config)
    if config.trace_csv:
        return BackgroundTraceWriter(directory, header, csv=True)
    return TraceWriter(directory, header)


# --- training -------------------------------------------------------------------------------------

@dataclass
class MethodRun:
    """One method's training: its history rows, where it diverged, its timing (``train_seconds``:
    the training loop, test evaluations and trace writing included, the one-time compilation of
    each kind of ``session.run`` not)."""

    method: str
    rows: list = field(default_factory=list)
    diverged_at: Optional[int] = None
    steps_done: int = 0
    train_seconds: float = 0.0
    preactivations: list = field(default_factory=list)  # PreActivationRecorder.record per step

    @property
    def ms_per_step(self):
        return 1000.0 * self.train_seconds / max(self.steps_done, 1)


class PreActivationRecorder:
    """The first layer's pre-activation per unit, recorded in the train op's own ``session.run``
    (no extra forward pass) at step 1, every ``every``-th step and the last.

    Each record holds, for ``pre_activation`` (``a = x·w + b``, before any normaliser) and
    ``relu_input`` (what relu receives: the normaliser's output after gain and bias for bn and ln,
    ``a`` itself for none, wn and wn-init), the ``mean`` over the batch of each unit and its ``std``
    (the square root of the /N variance), (units,) float64. They come from ``tf.nn.moments`` over
    the batch; for bn, ``pre_activation`` is the ``batch_mean`` and ``batch_variance`` its
    moving-average update consumes (the numbers its trace records). The forward pass reads the
    variables before the step's update: step k's record is step k's batch through the weights
    after step k - 1. Steps in ``keep_weights_at`` also keep ``weights``: the first layer's ``w``
    and ``b`` as that forward pass read them (``w = g * v/||v||`` for weight norm), to recompute
    ``a``. Faithful wn-init's step 1 runs another graph (the post's ``inference_wn_first``) and is
    left out.
    """

    def __init__(self, net, steps, every=PREACTIVATION_EVERY, keep_weights_at=()):
        self.steps, self.every, self.keep_weights_at = steps, every, frozenset(keep_weights_at)
        self.skip_first = net.first_step is not None
        taps = [tap for tap in net.batch_norms if tap.inputs.name == net.pre_activation.name]
        with net.graph.as_default():
            pre = ((taps[0].batch_mean, taps[0].batch_variance) if taps
                   else tf.nn.moments(net.pre_activation, axes=[0]))
            relu = (pre if net.relu_input is net.pre_activation
                    else tf.nn.moments(net.relu_input, axes=[0]))
        add = net.pre_activation.op  # x·w + b
        matmul = add.inputs[0].op
        assert matmul.type == "MatMul" and matmul.inputs[0].name == net.inputs.name, matmul
        self.fetches = {False: {"pre_activation": pre, "relu_input": relu}}
        self.fetches[True] = {**self.fetches[False],
                              "weights": {"w": matmul.inputs[1], "b": add.inputs[1]}}

    def due(self, step):
        if step == 1 and self.skip_first:
            return False
        return step == 1 or step % self.every == 0 or step == self.steps

    def record(self, step, fetched):
        record = {"step": step, **{name: {
            "mean": np.asarray(fetched[name][0], dtype=np.float64),
            "std": np.sqrt(np.asarray(fetched[name][1], dtype=np.float64))}
            for name in ("pre_activation", "relu_input")}}
        if "weights" in fetched:
            record["weights"] = fetched["weights"]
        return record


def evaluate(session, net, images, labels, batch_size=None):
    """Mean test loss and accuracy in inference mode, in batches of the graph's ``eval_batch_size``
    if it needs one (faithful ln), else of ``batch_size``, else all at once; a remainder smaller
    than a batch is left out."""
    fetches = (net.loss, net.metrics["accuracy"])
    chunk = net.eval_batch_size or batch_size or len(labels)
    results, weights = [], []
    for start in range(0, len(labels) - chunk + 1, chunk):
        stop = start + chunk
        results.append(session.run(fetches, {net.inputs: images[start:stop],
                                             net.targets: labels[start:stop]}))
        weights.append(stop - start)
    loss, accuracy = np.average(np.asarray(results, dtype=np.float64), axis=0, weights=weights)
    return float(loss), float(accuracy)


def train_method(method, config, data, *, trace_writer=None, progress=None, evaluate_test=True,
                 net=None, preactivation_every=None, keep_weights_at=()):
    """Train ``method`` on ``data`` in :func:`bnrepro.graphs.runner.traced_training`; return its
    :class:`MethodRun`.

    ``trace_writer`` (a :class:`~bnrepro.trace.TraceWriter` or one like it, see
    :func:`open_trace_writer`) receives the bn trace and is flushed before the clock stops;
    ``progress`` is called as ``progress(step, loss, accuracy)`` after every step;
    ``preactivation_every``: record :class:`PreActivationRecorder`'s statistics into
    ``run.preactivations`` every N steps (``keep_weights_at``: with the weights at those steps).
    The loop stops after a step whose loss is not finite (its record left out of the trace).
    """
    net = net or build_graph(method, config)
    schedule = batch_schedule(config, len(data.train_labels))
    traced_steps = (BatchNormTracer(net, config) if trace_writer is not None and net.batch_norms
                    else None)
    recorder = (PreActivationRecorder(net, config.steps, preactivation_every, keep_weights_at)
                if preactivation_every else None)
    run = MethodRun(method)
    eval_steps = evaluation_steps(config) if evaluate_test else set()
    train_fetches = {"train_op": net.train_op, "loss": net.loss, "metrics": dict(net.metrics)}
    # a step's batch: (indices, images, labels)
    batches = ((indices, data.train_images[indices], data.train_labels[indices])
               for indices in schedule)
    with tf1.Session(graph=net.graph) as session:
        run_step = StepRunner(session, net)

        def train(step, batch):
            _, images, labels = batch
            key, fetches = ("first", net.first_step) if step == 1 and net.first_step else (
                "train", train_fetches)
            if recorder and recorder.due(step):
                kept = step in recorder.keep_weights_at
                key, fetches = (key, "preactivation", kept), {
                    **fetches, "preactivation": recorder.fetches[kept]}
            fetched = run_step(key, fetches, images, labels)
            if step == 1 and net.after_first_step is not None:
                run_step("after first", net.after_first_step, images, labels, training=False)
            return fetched

        def inference(step, batch):
            if not traced_steps.has_tensors(step):
                return None
            _, images, labels = batch
            return run_step("inference", traced_steps.inference_fetches, images, labels,
                            training=False)

        def record(step, batch, traced, fetched, inferred):
            indices, _, labels = batch
            return traced_steps.record(step, traced, fetched, indices, labels, inferred)

        steps = traced_training(
            session, traced_steps and traced_steps.tracer, batches, train=train,
            records_step=traced_steps and traced_steps.recorded, inference=inference,
            make_record=record,
            initial_record=traced_steps and traced_steps.initial_record,
            stops=lambda fetched: not math.isfinite(float(fetched["loss"])))
        with contextlib.closing(steps):
            initialised = next(steps)
            if net.data_init is not None:
                session.run(net.data_init, _feed(net, data, schedule[0]))
            if initialised.record is not None:
                trace_writer.write_step(initialised.record)
            if 0 in eval_steps:
                run.rows.append(_row(method, 0, None, evaluate(session, net, data.test_images,
                                                               data.test_labels,
                                                               config.eval_batch_size)))
            started = time.perf_counter()
            for done in steps:
                step, fetched = done.step, done.fetched
                loss, accuracy = float(fetched["loss"]), float(fetched["metrics"]["accuracy"])
                run.steps_done = step
                if "preactivation" in fetched and math.isfinite(loss):
                    run.preactivations.append(recorder.record(step, fetched["preactivation"]))
                if done.record is not None:  # the trace stops before a NaN step
                    trace_writer.write_step(done.record)
                test = None
                if math.isfinite(loss) and step in eval_steps:
                    test = evaluate(session, net, data.test_images, data.test_labels,
                                    config.eval_batch_size)
                run.rows.append(_row(method, step, (loss, accuracy), test))
                if progress is not None:
                    progress(step, loss, accuracy)
                if not math.isfinite(loss):
                    run.diverged_at = step
        if traced_steps:
            if run.diverged_at is None:
                trace_writer.finish("complete", last_step=run.steps_done)
            else:
                trace_writer.finish("diverged", last_step=run.diverged_at,
                                    reason=f"loss {run.rows[-1]['train_loss']}; the trace stops "
                                           "before it")
            trace_writer.flush()  # the trace's whole cost: a writer process may still be busy
        run.train_seconds = time.perf_counter() - started - run_step.compile_seconds
    return run


class StepRunner:
    """One compiled callable per kind of run, feeding x, labels and ``training``.

    ``Session._make_callable_from_options`` (what tf_keras' graph functions use) resolves the feeds
    and fetches once; ``session.run`` (and ``make_callable`` with a feed list, which calls it)
    analyses the fetch structure and the feed dict again at every step, a noticeable part of a
    2 ms step. Results come back in the structure of ``fetches`` (``None`` for operations).
    """

    def __init__(self, session, net):
        self.session = session
        self.feeds = [net.inputs.name, net.targets.name, net.training.name]
        self.callables = {}
        self.compile_seconds = 0.0  # one-time set-up, left out of the step timing

    def _compile(self, fetches):
        from tensorflow.core.protobuf import config_pb2  # after bnrepro.graphs.tfv1 has set TF up

        flat = tf.nest.flatten(fetches)
        tensors = [item for item in flat if isinstance(item, tf.Tensor)]
        options = config_pb2.CallableOptions(
            feed=self.feeds, fetch=[tensor.name for tensor in tensors],
            target=[item.name for item in flat if isinstance(item, tf.Operation)])
        return self.session._make_callable_from_options(options), flat  # noqa: SLF001

    def __call__(self, key, fetches, images, labels, training=True):
        if key not in self.callables:
            started = time.perf_counter()
            self.callables[key] = self._compile(fetches)
            self.compile_seconds += time.perf_counter() - started
        call, flat = self.callables[key]
        values = iter(call(images, labels, np.asarray(training)))
        return tf.nest.pack_sequence_as(
            fetches, [next(values) if isinstance(item, tf.Tensor) else None for item in flat])


def _feed(net, data, indices):
    return {net.inputs: data.train_images[indices], net.targets: data.train_labels[indices]}


def _row(method, step, train, test):
    train_loss, train_accuracy = train if train is not None else (None, None)
    test_loss, test_accuracy = test if test is not None else (None, None)
    return {"method": method, "step": step, "train_loss": train_loss,
            "train_accuracy": train_accuracy, "test_loss": test_loss, "test_accuracy": test_accuracy}
