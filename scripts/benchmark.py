#!/usr/bin/env python3
"""Milliseconds per training step of post 002's net, per method: our loop with and without the bn
trace, the post's loop as written, and one training step of the unnormalised net in NumPy; then
a check that every variant trained the same way (the same per-step losses).

Every variant trains on the same batches, from the same initial variables: the batch schedule is
``bnrepro.compare.training.batch_schedule`` (what ``bnrepro compare`` trains on), drawn once, outside every
timer, and each session initialises the method's one graph (graph-level seed, fixed op seeds;
wn-init's data-dependent initialisation on the first batch before the clock starts). Inside every
timer a step picks its batch's rows out of the training set (``images[indices]``) and trains.

* traced: ``bnrepro.compare.training.train_method`` writing the bn trace as ``bnrepro compare`` does
  (the tracer installed; every step's statistics, the layer's input every 100 steps; the arrays
  copied into the chunk being filled as each record is handed over, a chunk written every 256
  records, scalars as JSON text, as compare writes them) -- the whole cost: recording, writing
  and closing the trace (with ``bnrepro compare --trace-csv`` a child process also writes every
  number as text; its start, like the session's creation, is set-up). Only bn has a batch-norm
  layer: for the other methods there is nothing to trace, and the one untraced measurement stands
  for both;
* traced, not written: the same loop and fetches with the records dropped instead of written
  (bn only): what recording costs inside the loop, without formatting numbers as text;
* untraced: the same loop without a trace: one ``session.run`` per step for the train op, the loss
  and the accuracy;
* post's loop: the post's ``fit_wn`` loop as written, on the same graph: ``tf.Session()`` with its
  default threads, then per step ``sess.run(train_step)``, ``sess.run(loss)``, ``sess.run(acc)``
  (three runs, three forward passes), on the schedule's batches instead of the post's
  ``np.random.choice`` (drawing indices is not part of a step's work);
* NumPy step: one whole training step of the unnormalised net (method none) in float32 NumPy
  (BLAS on one thread, see below): ``a = x·W1 + b1``, ``h = relu(a)``, ``logits = h·W2 + b2``, the
  mean softmax cross-entropy, its gradients with respect to W1, b1, W2, b2, and the
  gradient-descent update with the same learning rate, from TensorFlow's initial variables of
  none. Every method does all of this and more, so it is a floor for every row; the column is
  the same measurement (once per repeat) on each.

No test evaluation in any of them, and no one-time set-up: graph building and session creation
are outside every timing, our loop leaves out compiling its callables (``StepRunner``) and the
post's loop runs each of its three fetches once before the clock starts (TensorFlow prunes and
optimises the graph for each fetch the first time), then puts the variables back to their initial
values. Variants run interleaved, ``--repeats`` rounds (the order reversed every other round),
then ``--pairs`` more rounds of untraced and traced alone for each method with a trace; the table
shows medians. The targets are judged on ratios within a round (``traced / untraced`` of every
round, ``post / traced`` of the full rounds) and their median: the two runs of a round are next to
each other in time, and on a shared 2-core virtual machine the speed of the machine drifts by more
between rounds (up to 20% here) than the few percent that tracing costs.

The check, after the timed runs (untimed), that every variant trained alike:

* our loops: every run's loss at every step against the method's first untraced run (the loss
  fetched in the train op's run: the batch's loss with the variables before the step). The same
  kernels on the same numbers: they agree exactly (0) unless TensorFlow rewrites the graph
  differently for other fetches, which would show as float32 rounding;
* the post's loop fetches its loss in a second run, after the update: the same batch's loss with
  the variables after the step, another number. It is checked in two links: one more run of the
  post's loop also fetches the loss in its train run (``sess.run([train_step, loss])``), whose
  losses must equal our loop's, and its after-update losses must equal the timed runs'. Its two
  extra forward passes per step read the variables and change nothing (bn's moving averages are
  updated by the train op only, through ``UPDATE_OPS``), so the post's loop trains exactly as ours;
* the NumPy step: TensorFlow's none trains on the schedule and every step is done again by the
  NumPy step from TensorFlow's variables before it; the losses and the variables after the update
  (``max |NumPy - TF| / max |TF|`` per variable) must agree, except for a hidden unit whose
  pre-activation, within rounding of 0, fell on the other side of relu's kink (listed; see
  :func:`numpy_step_check`). The timed NumPy runs, training on
  their own, are compared with TensorFlow's none too but not held to the bound: NumPy sums in
  another order, and each step's last-bit differences are carried into the next and grow with the
  steps (2e-7 relative over 300 steps, 1e-4 over 1500, measured here).

Any check above ``--loss-rtol`` (default 1e-4) fails the script (exit status 1, a message naming
the variant and the step) after the tables. The last line before that is one JSON object,
``{method: {"traced_ms", "dropped_ms", "untraced_ms", "post_loop_ms", "numpy_step_ms",
"post_over_traced", "traced_over_untraced" (the median ratios), "loss_rel_diff": {variant: largest
relative difference}}, "numpy_step": {"loss", "variables",
"free_running", "relu_flips": [[step, unit], ...]}}``.

    python scripts/benchmark.py [--steps 300] [--repeats 5] [--pairs 40]
                                [--methods none,wn,wn-init,bn,ln] [--trace-every 1]
                                [--loss-rtol 1e-4]
"""
import os

# NumPy's BLAS on one thread (set before NumPy is imported; OPENBLAS_NUM_THREADS=2 in the environment
# overrides it): with two, its spinning threads and TensorFlow's fight over a 2-core machine (the
# NumPy step took 5.16 ms instead of 0.80 in back-to-back runs here). TensorFlow does not use it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from bnrepro.config import CompareConfig, check_compare_config

from bnrepro.compare.training import batch_schedule, open_trace_writer, train_method

from bnrepro.compare.run import load_data
from bnrepro.errors import UserError  # noqa: E402
from bnrepro.graphs.mnist import build_graph, parse_methods  # noqa: E402
from bnrepro.graphs.tfv1 import tf1  # noqa: E402

TARGET_SPEEDUP = 1.8  # post's loop / our traced loop, at least
TARGET_OVERHEAD = 0.15  # traced / untraced - 1, at most
LOSS_RTOL = 1e-4  # largest relative difference of a step's loss between two variants
NUMPY_METHOD = "none"  # the net the NumPy step implements
PAIRS = 40  # extra (untraced, traced) rounds: the cost of tracing is a few % against rounds that
# differ by up to 20% here, so its median needs more rounds than the table


class DroppedRecords:
    """A trace writer that drops every record: the loop's recording cost without the writing."""

    def write_step(self, record):
        return record

    def finish(self, status="complete", *, last_step=None, reason=None):
        pass

    def flush(self):
        pass


def _losses(run):
    """The per-step training losses of a :class:`~bnrepro.compare.training.MethodRun`, steps 1, 2, ..."""
    return np.array([row["train_loss"] for row in run.rows if row["step"] >= 1],
                    dtype=np.float64)


def our_loop(method, config, data, net, variant):
    """``(ms per step, per-step losses)`` of ``train_method`` with ``variant`` "traced",
    "dropped" or "untraced"."""
    if variant == "untraced":
        run = train_method(method, config, data, evaluate_test=False, net=net)
        return run.ms_per_step, _losses(run)
    if variant == "dropped":
        run = train_method(method, config, data, evaluate_test=False, net=net,
                           trace_writer=DroppedRecords())
        return run.ms_per_step, _losses(run)
    directory = tempfile.mkdtemp(prefix="bnrepro-benchmark-")
    try:
        with open_trace_writer(directory, net, config) as writer:
            run = train_method(method, config, data, evaluate_test=False, net=net,
                               trace_writer=writer)
            closing_started = time.perf_counter()
        closing_seconds = time.perf_counter() - closing_started
        return run.ms_per_step + 1000.0 * closing_seconds / run.steps_done, _losses(run)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _initialise(session, net, data, schedule):
    """What ``train_method`` does before its clock starts: the initialisers, then wn-init's
    data-dependent initialisation on the first batch."""
    with net.graph.as_default():
        session.run(tf1.global_variables_initializer())
    if net.data_init is not None:
        session.run(net.data_init, {net.inputs: data.train_images[schedule[0]],
                                    net.targets: data.train_labels[schedule[0]]})


def _global_variables(net):
    with net.graph.as_default():
        return tf1.global_variables()


def post_loop(config, data, net, schedule, *, check=False):
    """The post's loop (``fit_wn``), as written, on ``net``'s graph and the batches of
    ``schedule``: ``(ms per step, losses after each update)``; with ``check`` (untimed), also the
    losses of the train runs (``sess.run([train_step, loss])``), as a third item."""
    if net.first_step is not None:
        raise UserError("the benchmark runs the corrected graphs (no --faithful first step)")
    images_train, labels_train = data.train_images, data.train_labels
    x, t, train_step = net.inputs, net.targets, net.train_op
    loss, acc = net.loss, net.metrics["accuracy"]
    first_run = [train_step, loss] if check else train_step
    losses = np.empty(config.steps, dtype=np.float64)
    train_losses = np.empty(config.steps, dtype=np.float64)
    with tf1.Session(graph=net.graph) as sess:
        _initialise(sess, net, data, schedule)
        variables = _global_variables(net)
        initial = sess.run(variables)
        # each fetch once, so that TensorFlow prunes and optimises the graph for it before the
        # clock starts; then the variables are put back (the initialisers, run again, would draw
        # new random values)
        feed_dict = {x: images_train[schedule[0]], t: labels_train[schedule[0]],
                     net.training: True}
        for fetch in (first_run, loss, acc):
            sess.run(fetch, feed_dict=feed_dict)
        for variable, value in zip(variables, initial):
            variable.load(value, sess)
        started = time.perf_counter()
        for i in range(config.steps):
            rand_index = schedule[i]  # the post: np.random.choice(len(images_train), size=...)
            x_batch = images_train[rand_index]
            y_batch = labels_train[rand_index]
            feed_dict = {x: x_batch, t: y_batch, net.training: True}
            trained = sess.run(first_run, feed_dict=feed_dict)
            temp_loss = sess.run(loss, feed_dict=feed_dict)
            temp_acc = sess.run(acc, feed_dict=feed_dict)  # noqa: F841 (the post keeps it)
            losses[i] = temp_loss
            if check:
                train_losses[i] = trained[1]
        milliseconds = 1000.0 * (time.perf_counter() - started) / config.steps
    return (milliseconds, losses, train_losses) if check else (milliseconds, losses)


NUMPY_VARIABLES = ("layer1/w", "layer1/b", "layer2/w", "layer2/b")  # W1, b1, W2, b2 of none


def _numpy_variables(net):
    by_name = {variable.op.name: variable for variable in _global_variables(net)}
    return [by_name[name] for name in NUMPY_VARIABLES]


def initial_parameters(config, data, schedule):
    """TensorFlow's initial ``W1, b1, W2, b2`` of method none, float32."""
    net = build_graph(NUMPY_METHOD, config)
    with tf1.Session(graph=net.graph) as session:
        _initialise(session, net, data, schedule)
        return session.run(_numpy_variables(net))


def numpy_step(parameters, x, labels, learning_rate):
    """One training step of method none in float32, in place; returns the batch's loss (before
    the update, like the loss our loop fetches with the train op)."""
    w1, b1, w2, b2 = parameters
    n = len(labels)
    rows = np.arange(n)
    a = x @ w1 + b1  # (B, 784) (784, U) -> (B, U)
    h = np.maximum(a, np.float32(0))
    logits = h @ w2 + b2  # (B, U) (U, 10) -> (B, 10)
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    sums = exp.sum(axis=1, keepdims=True)
    loss = -np.mean(shifted[rows, labels] - np.log(sums[:, 0]))  # mean softmax cross-entropy
    d_logits = exp / sums  # dloss/dlogits = (softmax - one_hot) / B
    d_logits[rows, labels] -= np.float32(1)
    d_logits /= np.float32(n)
    d_w2 = h.T @ d_logits  # (U, B) (B, 10) -> (U, 10)
    d_b2 = d_logits.sum(axis=0)
    d_a = d_logits @ w2.T  # dloss/dh (B, 10) (10, U) -> (B, U), then through the relu:
    d_a[a <= 0] = 0
    d_w1 = x.T @ d_a  # (784, B) (B, U) -> (784, U)
    d_b1 = d_a.sum(axis=0)
    for parameter, gradient in ((w1, d_w1), (b1, d_b1), (w2, d_w2), (b2, d_b2)):
        parameter -= learning_rate * gradient
    return loss


def numpy_loop(config, data, schedule, initial):
    """``(ms per step, per-step losses)`` of :func:`numpy_step` on the schedule's batches."""
    parameters = [np.array(value, dtype=np.float32) for value in initial]
    learning_rate = np.float32(config.learning_rate)
    losses = np.empty(config.steps, dtype=np.float64)
    started = time.perf_counter()
    for step in range(config.steps):
        indices = schedule[step]
        losses[step] = numpy_step(parameters, data.train_images[indices],
                                  data.train_labels[indices], learning_rate)
    return 1000.0 * (time.perf_counter() - started) / config.steps, losses


def numpy_step_check(config, data, schedule):
    """TensorFlow's none trained on the schedule, every step also done by :func:`numpy_step` from
    TensorFlow's variables before it (untimed): ``{"loss": (largest relative difference, step),
    "variables": (largest max |NumPy - TF| / max |TF| of a variable after the update, step,
    variable), "relu_flips": [(step, unit), ...]}``.

    A pre-activation within rounding of 0 can fall on the other side of relu's kink in NumPy than
    in TensorFlow (1.3e-7 against 0.0 at step 594 of 1500 here); that hidden unit's gradient then
    takes in one example more or less, a real difference of the size of one example's update, not
    rounding. Such units (their column of W1 and entry of b1) are listed in ``relu_flips`` and left
    out of that step's comparison of the variables; the next step starts again from TensorFlow's.
    """
    net = build_graph(NUMPY_METHOD, config)
    variables = _numpy_variables(net)
    learning_rate = np.float32(config.learning_rate)
    worst = {"loss": (0.0, 0), "variables": (0.0, 0, ""), "relu_flips": []}
    with tf1.Session(graph=net.graph) as session:
        _initialise(session, net, data, schedule)
        for step in range(1, config.steps + 1):
            indices = schedule[step - 1]
            images, labels = data.train_images[indices], data.train_labels[indices]
            parameters = [np.array(value, dtype=np.float32) for value in session.run(variables)]
            pre_activation = images @ parameters[0] + parameters[1]  # as numpy_step computes it
            numpy_loss = float(numpy_step(parameters, images, labels, learning_rate))
            _, loss, tf_pre_activation = session.run(
                [net.train_op, net.loss, net.pre_activation],
                {net.inputs: images, net.targets: labels, net.training: True})
            loss = float(loss)
            if not math.isfinite(loss):
                break
            worst["loss"] = max(worst["loss"], (abs(numpy_loss - loss) / abs(loss), step))
            flipped = np.unique(np.nonzero((pre_activation > 0) != (tf_pre_activation > 0))[1])
            worst["relu_flips"] += [(step, int(unit)) for unit in flipped]
            kept = np.setdiff1d(np.arange(config.units), flipped)  # layer 1's units compared
            for name, mine, theirs in zip(NUMPY_VARIABLES, parameters, session.run(variables)):
                if name.startswith("layer1/"):
                    mine, theirs = mine[..., kept], theirs[..., kept]
                error = float(np.max(np.abs(mine - theirs)) / np.max(np.abs(theirs)))
                worst["variables"] = max(worst["variables"], (error, step, name))
    return worst


VARIANTS = ("traced", "dropped", "untraced", "post", "numpy")
PAIR = ("untraced", "traced")  # the extra rounds of --pairs
VARIANT_NAMES = {"traced": "traced", "dropped": "traced, not written", "untraced": "untraced",
                 "post": "post's loop", "numpy": "NumPy step"}


def relative_difference(losses, reference):
    """``(largest |losses - reference| / |reference|, its step)``; a different length (one run
    stopped early) or a NaN in one but not the other counts as infinite."""
    if len(losses) != len(reference):
        return math.inf, min(len(losses), len(reference)) + 1
    nan = np.isnan(losses) | np.isnan(reference)
    if np.any(np.isnan(losses) != np.isnan(reference)):
        return math.inf, int(np.argmax(np.isnan(losses) != np.isnan(reference))) + 1
    if not len(losses) or nan.all():
        return 0.0, 0
    with np.errstate(divide="ignore", invalid="ignore"):
        difference = np.where(nan, 0.0, np.abs(losses - reference) / np.abs(reference))
    step = int(np.argmax(difference))
    return float(difference[step]), step + 1


@dataclasses.dataclass
class Measurements:
    """What :func:`measure` ran: per method and variant the ms per step and the per-step losses
    of every repeat (the NumPy step's under :data:`NUMPY_METHOD`'s none, once per repeat)."""

    config: object
    data: object
    nets: dict
    schedule: np.ndarray
    times: dict
    losses: dict
    numpy_times: list
    numpy_losses: list

    def medians(self):
        """``{method: {variant: median ms per step, "has_trace": bool}}``."""
        medians = {}
        for method, by_variant in self.times.items():
            ms = medians[method] = {variant: statistics.median(values) if values else math.nan
                                    for variant, values in by_variant.items()}
            ms["numpy"] = statistics.median(self.numpy_times)
            ms["has_trace"] = bool(self.nets[method].batch_norms)
            if not ms["has_trace"]:
                ms["traced"] = ms["untraced"]
        return medians


def measure(methods, config, data, repeats, pairs=0):
    """Every variant of every method, interleaved, ``repeats`` times (in the listed order on even
    repeats, reversed on odd ones, so that a machine slowing down or warming up over the run
    favours no variant), then ``pairs`` more (untraced, traced) measurements of each method with
    a trace, in alternating order: :class:`Measurements`."""
    nets = {method: build_graph(method, config) for method in methods}
    schedule = batch_schedule(config, len(data.train_labels))  # the same for every variant
    initial = initial_parameters(config, data, schedule)
    found = Measurements(config, data, nets, schedule,
                         times={method: {variant: [] for variant in VARIANTS[:4]}
                                for method in methods},
                         losses={method: {variant: [] for variant in VARIANTS[:4]}
                                 for method in methods},
                         numpy_times=[], numpy_losses=[])
    for method in methods:  # warm up: first sessions pay for graph optimisation
        our_loop(method, config, data, nets[method], "untraced")
    traced_methods = [method for method in methods if nets[method].batch_norms]
    rounds = [(methods, VARIANTS)] * repeats + [(traced_methods, PAIR)] * pairs
    for number, (round_methods, variants) in enumerate(rounds, start=1):
        if number % 2 == 0:
            variants = variants[::-1]
        for method in round_methods:
            net = nets[method]
            for variant in variants:
                if variant == "numpy":
                    if method == methods[0]:  # once per repeat: one net (none) for every row
                        value, loss = numpy_loop(config, data, schedule, initial)
                        found.numpy_times.append(value)
                        found.numpy_losses.append(loss)
                    continue
                if variant in ("traced", "dropped") and not net.batch_norms:
                    continue  # nothing to trace: the untraced measurement stands for both
                if variant == "post":
                    value, loss = post_loop(config, data, net, schedule)
                else:
                    value, loss = our_loop(method, config, data, net, variant)
                found.times[method][variant].append(value)
                found.losses[method][variant].append(loss)
        if round_methods:
            print(f"round {number}/{len(rounds)} done"
                  + (" (untraced and traced only)" if variants in (PAIR, PAIR[::-1]) else ""),
                  file=sys.stderr, flush=True)
    return found


def paired_ratios(found, method, numerator, denominator):
    """``numerator / denominator`` of each round that measured both, in the order measured: the
    two runs of a round are next to each other in time, so the ratio leaves out how fast the
    machine was in that round (here, a 2-core virtual machine, by up to 20% between rounds)."""
    times = found.times[method]
    return [top / bottom for top, bottom in zip(times[numerator], times[denominator])]


def check_losses(found):
    """``(agreement, numpy)``. ``agreement``: ``{method: {variant: (largest relative loss
    difference, step)}}`` against the method's first untraced run (the post's loop: see the
    module docstring). ``numpy``: :func:`numpy_step_check`'s, plus ``"free_running"``, the timed
    NumPy runs against TensorFlow's none."""
    config, data, schedule = found.config, found.data, found.schedule
    agreement = {}
    for method, runs in found.losses.items():
        reference = runs["untraced"][0]
        checked = agreement[method] = {}
        for variant in ("traced", "dropped", "untraced"):
            if runs[variant]:
                checked[variant] = max(relative_difference(run, reference)
                                       for run in runs[variant])
        _, after_update, train_run = post_loop(config, data, found.nets[method], schedule,
                                               check=True)
        if len(reference) < len(train_run) and np.isnan(reference[-1]):
            train_run = train_run[:len(reference)]  # ours stops at a NaN loss, the post's goes on
        checked["post"] = max([relative_difference(train_run, reference)]
                              + [relative_difference(run, after_update) for run in runs["post"]])
    numpy = numpy_step_check(config, data, schedule)
    if NUMPY_METHOD in found.losses:
        tensorflow = found.losses[NUMPY_METHOD]["untraced"][0]
    else:  # one untimed run of none for the NumPy runs to be compared with
        net = build_graph(NUMPY_METHOD, config)
        tensorflow = our_loop(NUMPY_METHOD, config, data, net, "untraced")[1]
    numpy["free_running"] = max(relative_difference(run, tensorflow)
                                for run in found.numpy_losses)
    return agreement, numpy


def format_table(medians):
    lines = ["| method | traced | traced, not written | untraced | post's loop | NumPy step "
             "(none) | post / traced | traced / untraced | untraced / NumPy |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for method, ms in medians.items():
        if ms["has_trace"]:
            traced, dropped = f"{ms['traced']:.2f}", f"{ms['dropped']:.2f}"
            ratio = f"{ms['traced'] / ms['untraced']:.2f}"
        else:
            traced, dropped, ratio = "= untraced", "–", "–"
        lines.append(f"| {method} | {traced} | {dropped} | {ms['untraced']:.2f} "
                     f"| {ms['post']:.2f} | {ms['numpy']:.2f} | {ms['post'] / ms['traced']:.2f}x "
                     f"| {ratio} | {ms['untraced'] / ms['numpy']:.2f}x |")
    return "\n".join(lines)


def _difference(value, step, *where):
    return f"{value:.2g}" + (f" (step {', '.join(map(str, (step, *where)))})" if value else "")


def format_agreement(agreement, numpy, steps):
    variants = VARIANTS[:4]
    lines = ["Per-step losses, largest relative difference from the method's first untraced run "
             "(every repeat, every step; post's loop: see the script's docstring):", "",
             "| method | " + " | ".join(VARIANT_NAMES[variant] for variant in variants) + " |",
             "| --- |" + " ---: |" * len(variants)]
    for method, checked in agreement.items():
        lines.append(f"| {method} | " + " | ".join(
            _difference(*checked[variant]) if variant in checked else "–"
            for variant in variants) + " |")
    flips = numpy["relu_flips"]
    lines += ["", f"NumPy step, each of the {steps} steps of TensorFlow's none done again from "
              f"TensorFlow's variables before it: loss {_difference(*numpy['loss'])} relative, "
              f"variables after the update {_difference(*numpy['variables'])} "
              "(max |NumPy - TF| / max |TF|); "
              + (f"{len(flips)} pre-activation(s) on the other side of relu's kink than "
                 "TensorFlow's (" + "; ".join(f"step {step} unit {unit}" for step, unit in flips)
                 + "), those units left out of that step's comparison of the variables"
                 if flips else "no pre-activation on the other side of relu's kink") + ".",
              "NumPy step trained on its own (the timed runs) against TensorFlow's none: loss "
              f"{_difference(*numpy['free_running'])} relative; not checked: NumPy sums in "
              "another order than TensorFlow, and the last-bit differences of each step's "
              "variables are carried into the next step and grow with the steps (2e-7 over 300 "
              "steps, 1e-4 over 1500 here)."]
    return "\n".join(lines)


def disagreements(agreement, numpy, rtol):
    """One line per check above ``rtol``."""
    lines = []
    for method, checked in agreement.items():
        for variant, (value, step) in checked.items():
            if not value <= rtol:
                lines.append(f"{method}, {VARIANT_NAMES[variant]}: loss differs from the first "
                             f"untraced run by {value:.3g} relative at step {step}")
    for quantity in ("loss", "variables"):
        value, step, *where = numpy[quantity]
        if not value <= rtol:
            lines.append(f"NumPy step: {' '.join((quantity, *where))} differs from TensorFlow's "
                         f"by {value:.3g} relative at step {step}")
    return [f"{line} (allowed {rtol:g})" for line in lines]


def _quartiles(values, unit=""):
    """``(quartiles a-b)`` of ``values``, or nothing for fewer than two."""
    if len(values) < 2:
        return ""
    low, _, high = statistics.quantiles(values, n=4)
    return f"(quartiles {low:.3f}{unit}-{high:.3f}{unit})"


def _finite(value):
    return value if math.isfinite(value) else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="steps per measurement [300]")
    parser.add_argument("--repeats", type=int, default=5, help="measurements per variant [5]")
    parser.add_argument("--pairs", type=int, default=PAIRS,
                        help="extra (untraced, traced) rounds of each method with a trace, for "
                             f"the tracing cost [{PAIRS}]")
    parser.add_argument("--methods", default="none,wn,wn-init,bn,ln", help="methods [all five]")
    parser.add_argument("--trace-every", type=int, default=1,
                        help="bn trace: record every N steps, as bnrepro compare's option [1]")
    parser.add_argument("--data", default=None, help="MNIST path (default: as bnrepro compare)")
    parser.add_argument("--loss-rtol", type=float, default=LOSS_RTOL,
                        help="largest relative difference of a step's loss allowed between "
                             f"variants [{LOSS_RTOL:g}]")
    arguments = parser.parse_args()
    if arguments.repeats < 1:
        raise UserError(f"--repeats must be at least 1, got {arguments.repeats}")
    if arguments.pairs < 0:
        raise UserError(f"--pairs must be at least 0, got {arguments.pairs}")
    config = check_compare_config(CompareConfig(steps=arguments.steps, data=arguments.data,
                                                trace_every=arguments.trace_every,
                                                methods=arguments.methods))
    data = load_data(config)
    print(f"{data.describe()}; {arguments.steps} steps per measurement on one batch schedule "
          f"(seed {config.seed}), median of {arguments.repeats}; bn trace every "
          f"{config.trace_every} step(s), tensors every {config.trace_tensors_every}; "
          f"NumPy's BLAS threads: {os.environ['OPENBLAS_NUM_THREADS']}; ms per training step")
    found = measure(parse_methods(config.methods), config, data, arguments.repeats,
                    arguments.pairs)
    medians = found.medians()
    print(format_table(medians))
    print("Targets, each from the ratios of the two runs of every round (median, and quartiles):")
    verdicts = {}
    for method, ms in medians.items():
        speedups = paired_ratios(found, method, "post",
                                 "traced" if ms["has_trace"] else "untraced")
        speedup = verdicts.setdefault(method, {})["post_over_traced"] = statistics.median(
            speedups)
        line = (f"{method}: post's loop / traced = {speedup:.2f}x {_quartiles(speedups, 'x')} "
                f"(target >= {TARGET_SPEEDUP}x: {'met' if speedup >= TARGET_SPEEDUP else 'MISSED'})"
                "; ")
        if ms["has_trace"]:
            ratios = paired_ratios(found, method, "traced", "untraced")
            overhead = statistics.median(ratios) - 1
            verdicts[method]["traced_over_untraced"] = overhead + 1
            line += (f"traced / untraced = {overhead + 1:.3f} {_quartiles(ratios)} over "
                     f"{len(ratios)} rounds: tracing costs {overhead:+.1%} (target <= "
                     f"{TARGET_OVERHEAD:.0%}: {'met' if overhead <= TARGET_OVERHEAD else 'MISSED'})")
        else:
            line += "no batch-norm layer, nothing to trace"
        print(line)
    agreement, numpy = check_losses(found)
    print()
    print(format_agreement(agreement, numpy, config.steps))
    failed = disagreements(agreement, numpy, arguments.loss_rtol)
    if not failed:
        print(f"losses: every variant trained alike (at most {arguments.loss_rtol:g} relative "
              "at every step)")
    report = {method: {"traced_ms": round(ms["traced"], 4),
                       "dropped_ms": round(ms["dropped"], 4) if ms["has_trace"] else None,
                       "untraced_ms": round(ms["untraced"], 4),
                       "post_loop_ms": round(ms["post"], 4),
                       "numpy_step_ms": round(ms["numpy"], 4),
                       **{name: round(value, 4) for name, value in verdicts[method].items()},
                       "loss_rel_diff": {variant: _finite(value) for variant, (value, _)
                                         in agreement[method].items()}}
              for method, ms in medians.items()}
    report["numpy_step"] = {quantity: _finite(numpy[quantity][0])
                            for quantity in ("loss", "variables", "free_running")}
    report["numpy_step"]["relu_flips"] = numpy["relu_flips"]
    print(json.dumps(report))
    if failed:
        sys.exit("benchmark: the variants did not train alike:\n  " + "\n  ".join(failed))


if __name__ == "__main__":
    try:
        main()
    except UserError as error:
        sys.exit(f"benchmark: error: {error}")
