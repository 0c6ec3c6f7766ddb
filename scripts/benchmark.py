#!/usr/bin/env python3
"""Milliseconds per training step of post 002's net, per method: our loop with and without the bn
trace, the post's loop as written, and a NumPy floor.

* traced: ``bnrepro.compare.train_method`` writing the bn trace as ``bnrepro compare`` does
  (every step's statistics, tensors every 100 steps; JSON + CSV text, formatted and written by a
  child process while the loop trains) -- the whole cost: handing the records over, waiting for
  the writer to flush everything at the end of the loop and closing it (the child's start, like
  the session's creation, is set-up). Only bn has a batch-norm layer: for the other methods there
  is nothing to trace, and the one untraced measurement stands for both;
* traced, not written: the same loop and fetches with the records dropped instead of written
  (bn only): what recording costs inside the loop, without formatting numbers as text;
* untraced: the same loop without a trace: one ``session.run`` per step for the train op, the loss
  and the accuracy;
* post's loop: the post's ``fit_wn`` loop as written, on the same graph: ``tf.Session()`` with its
  default threads, ``np.random.choice`` batches, then ``sess.run(train_step)``,
  ``sess.run(loss)``, ``sess.run(acc)`` (three runs, three forward passes);
* NumPy floor: the step's five float32 matrix products alone (forward x·w1, h·w2; backward
  h'·d2, d2·w2', x'·d1), no nonlinearity, no update.

No test evaluation in any of them, and no one-time set-up: graph building and session creation
are outside every timing, our loop leaves out compiling its callables (``StepRunner``) and the
post's loop its first step (where TensorFlow prunes and optimises the graph for each of its three
fetches). Variants run interleaved, ``--repeats`` times; the table shows
medians. The last line is one JSON object, ``{method: {"traced_ms", "untraced_ms", "post_loop_ms",
"numpy_floor_ms"}}``.

    python scripts/benchmark.py [--steps 300] [--repeats 5] [--methods none,wn,wn-init,bn,ln]
                                [--trace-every 1]
"""
import argparse
import json
import shutil
import statistics
import tempfile
import sys
import time

import numpy as np

from bnrepro.compare import (CompareConfig, check_compare_config, load_data, open_trace_writer,
                             train_method)
from bnrepro.errors import UserError
from bnrepro.mnist_graphs import build_graph, parse_methods
from bnrepro.tfv1 import tf1

TARGET_SPEEDUP = 1.8  # post's loop / our traced loop, at least
TARGET_OVERHEAD = 0.15  # traced / untraced - 1, at most


class DroppedRecords:
    """A trace writer that drops every record: the loop's recording cost without the writing."""

    def write_step(self, record):
        return record

    def flush(self):
        pass


def our_loop(method, config, data, net, variant):
    """ms per step of ``train_method`` with ``variant`` "traced", "dropped" or "untraced"."""
    if variant == "untraced":
        return train_method(method, config, data, evaluate_test=False, net=net).ms_per_step
    if variant == "dropped":
        return train_method(method, config, data, evaluate_test=False, net=net,
                            trace_writer=DroppedRecords()).ms_per_step
    directory = tempfile.mkdtemp(prefix="bnrepro-benchmark-")
    try:
        with open_trace_writer(directory, net, config) as writer:
            run = train_method(method, config, data, evaluate_test=False, net=net,
                               trace_writer=writer)
            closing_started = time.perf_counter()
        closing_seconds = time.perf_counter() - closing_started
        return run.ms_per_step + 1000.0 * closing_seconds / run.steps_done
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def post_loop(config, data, net):
    """ms per step of the post's loop (``fit_wn``), as written, on ``net``'s graph."""
    images_train, labels_train = data.train_images, data.train_labels
    x, t, train_step = net.inputs, net.targets, net.train_op
    loss, acc = net.loss, net.metrics["accuracy"]
    np.random.seed(config.seed)
    with tf1.Session(graph=net.graph) as sess:
        with net.graph.as_default():
            sess.run(tf1.global_variables_initializer())
        for i in range(config.steps + 1):
            if i == 1:  # step 0 pays for pruning and optimising the graph for each fetch
                started = time.perf_counter()
            rand_index = np.random.choice(len(images_train), size=config.batch_size)
            x_batch = images_train[rand_index]
            y_batch = labels_train[rand_index]
            feed_dict = {x: x_batch, t: y_batch, net.training: True}
            sess.run(train_step, feed_dict=feed_dict)
            temp_loss = sess.run(loss, feed_dict=feed_dict)  # noqa: F841 (the post keeps them)
            temp_acc = sess.run(acc, feed_dict=feed_dict)  # noqa: F841
        return 1000.0 * (time.perf_counter() - started) / config.steps


def numpy_floor(config, data):
    """ms per step of the step's matrix products alone, float32."""
    rng = np.random.default_rng(config.seed)
    w1 = rng.standard_normal((784, config.units), dtype=np.float32)
    w2 = rng.standard_normal((config.units, 10), dtype=np.float32)
    d2 = rng.standard_normal((config.batch_size, 10), dtype=np.float32)
    started = time.perf_counter()
    for step in range(config.steps):
        x = data.train_images[rng.integers(0, len(data.train_labels), config.batch_size)]
        h = x @ w1  # (B, 784) (784, U) -> (B, U)
        h @ w2  # (B, U) (U, 10) -> (B, 10)
        h.T @ d2  # dL/dw2: (U, B) (B, 10) -> (U, 10)
        d1 = d2 @ w2.T  # dL/dh: (B, 10) (10, U) -> (B, U)
        x.T @ d1  # dL/dw1: (784, B) (B, U) -> (784, U)
    return 1000.0 * (time.perf_counter() - started) / config.steps


VARIANTS = ("traced", "dropped", "untraced", "post", "numpy")


def measure(methods, config, data, repeats):
    """{method: {variant: [ms per step, one per repeat]}}, variants interleaved."""
    nets = {method: build_graph(method, config) for method in methods}
    times = {method: {variant: [] for variant in VARIANTS} for method in methods}
    for method in methods:  # warm up: first sessions pay for graph optimisation
        our_loop(method, config, data, nets[method], "untraced")
    for repeat in range(repeats):
        for method in methods:
            net = nets[method]
            for variant in VARIANTS:
                if variant == "post":
                    value = post_loop(config, data, net)
                elif variant == "numpy":
                    value = numpy_floor(config, data)
                elif variant in ("traced", "dropped") and not net.batch_norms:
                    continue  # nothing to trace: the untraced measurement stands for both
                else:
                    value = our_loop(method, config, data, net, variant)
                times[method][variant].append(value)
        print(f"repeat {repeat + 1}/{repeats} done", flush=True)
    medians = {method: {variant: statistics.median(values) if values else float("nan")
                        for variant, values in by_variant.items()}
               for method, by_variant in times.items()}
    for method, ms in medians.items():
        ms["has_trace"] = bool(nets[method].batch_norms)
        if not ms["has_trace"]:
            ms["traced"] = ms["untraced"]
    return medians


def format_table(medians):
    lines = ["| method | traced | traced, not written | untraced | post's loop | NumPy floor "
             "| post / traced | traced / untraced |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for method, ms in medians.items():
        if ms["has_trace"]:
            traced, dropped = f"{ms['traced']:.2f}", f"{ms['dropped']:.2f}"
            ratio = f"{ms['traced'] / ms['untraced']:.2f}"
        else:
            traced, dropped, ratio = "= untraced", "–", "–"
        lines.append(f"| {method} | {traced} | {dropped} | {ms['untraced']:.2f} "
                     f"| {ms['post']:.2f} | {ms['numpy']:.2f} | {ms['post'] / ms['traced']:.2f}x "
                     f"| {ratio} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="steps per measurement [300]")
    parser.add_argument("--repeats", type=int, default=5, help="measurements per variant [5]")
    parser.add_argument("--methods", default="none,wn,wn-init,bn,ln", help="methods [all five]")
    parser.add_argument("--trace-every", type=int, default=1,
                        help="bn trace: record every N steps, as bnrepro compare's option [1]")
    parser.add_argument("--data", default=None, help="MNIST path (default: as bnrepro compare)")
    arguments = parser.parse_args()
    config = check_compare_config(CompareConfig(steps=arguments.steps, data=arguments.data,
                                                trace_every=arguments.trace_every,
                                                methods=arguments.methods))
    data = load_data(config)
    print(f"{data.describe()}; {arguments.steps} steps per measurement, median of "
          f"{arguments.repeats}; bn trace every {config.trace_every} step(s), tensors every "
          f"{config.trace_tensors_every}; ms per training step")
    medians = measure(parse_methods(config.methods), config, data, arguments.repeats)
    print(format_table(medians))
    for method, ms in medians.items():
        speedup, overhead = ms["post"] / ms["traced"], ms["traced"] / ms["untraced"] - 1
        tracing = (f"tracing costs {overhead:+.0%} (target <= {TARGET_OVERHEAD:.0%}: "
                   f"{'met' if overhead <= TARGET_OVERHEAD else 'MISSED'})" if ms["has_trace"]
                   else "no batch-norm layer, nothing to trace")
        print(f"{method}: post's loop / traced = {speedup:.2f}x (target >= {TARGET_SPEEDUP}x: "
              f"{'met' if speedup >= TARGET_SPEEDUP else 'MISSED'}); {tracing}")
    print(json.dumps({method: {"traced_ms": round(ms["traced"], 4),
                               "untraced_ms": round(ms["untraced"], 4),
                               "post_loop_ms": round(ms["post"], 4),
                               "numpy_floor_ms": round(ms["numpy"], 4)}
                      for method, ms in medians.items()}))


if __name__ == "__main__":
    try:
        main()
    except UserError as error:
        sys.exit(f"benchmark: error: {error}")
