"""``bnrepro tensorboard``: a trace's moving and batch statistics as TensorBoard summaries, so that
``tensorboard --logdir LOGDIR`` shows them beside a user's own.

Per batch-norm layer ``L`` and traced step (the summaries' step is the trace's step number):

* scalars ``L/moving_mean/channel_C``, ``L/moving_variance/channel_C``, ``L/batch_mean/channel_C``,
  ``L/batch_variance/channel_C`` for the chosen channels (default: the first, the middle and the
  last, :func:`bnrepro.trace.plots.default_channels`), the batch statistic where the step has one;
* ``L/update_error_of_bound``: the largest ``|stored - predicted| / bound`` of the step's
  moving-average update over both statistics and every channel
  (:func:`bnrepro.trace.plots.step_values`: what ``bnrepro verify`` holds the update to; above 1
  the update is off), where the step predicts one;
* histograms ``L/moving_mean``, ``L/moving_variance`` over all channels, every
  ``histogram_every``-th step.

The trace is read a block at a time; the summaries are written with TensorBoard's own event
writer and summary protos (``tensorboard.summary.writer.event_file_writer.EventFileWriter``, the
scalar and histogram plugins' ``scalar_pb`` / ``histogram_pb``: what ``tf.summary`` writes, without
TensorFlow), one event per layer and step.
"""
from __future__ import annotations

import math
import time

import numpy as np

from bnrepro.check.layer_modes import LayerMode
from bnrepro.trace import plots
from bnrepro.check.chain import Chain

MAX_HISTOGRAMS = 500  # histograms per layer and statistic by default


def write_summaries(trace, logdir, *, layers=None, channels=None, histogram_every=None,
                    write=print):
    """Write ``trace``'s summaries into ``logdir`` (a new event file; TensorBoard reads every
    event file of a directory); return how many steps were written. :class:`ValueError` names a
    layer or a channel the trace does not have, before anything is written."""
    layers = plots.layers_asked(trace, layers)
    every = histogram_every or max(1, math.ceil(len(trace.steps) / MAX_HISTOGRAMS))
    from tensorboard.summary.writer.event_file_writer import EventFileWriter  # noqa: PLC0415

    modes = {layer: LayerMode.from_header(trace.layers[layer], layer) for layer in layers}
    chosen, chain, written = {}, Chain(trace.steps_are_runs), 0
    writer = None
    try:
        for block in trace.blocks():
            for record in block:
                for layer in layers:
                    if layer not in record["bn"]:
                        continue
                    state = record["bn"][layer]
                    if layer not in chosen:
                        chosen[layer] = plots.channels_asked(layer, state, channels)
                    if writer is None:
                        writer = EventFileWriter(logdir)
                    previous = chain.before(record, layer)
                    values, fraction = plots.step_values(
                        state, None if previous is None else previous["bn"][layer],
                        trace.layers[layer], modes[layer])
                    writer.add_event(_event(layer, record["step"], values, fraction,
                                            chosen[layer], record["step"] % every == 0))
                chain.advance(record)
                written += 1
            write(f"tensorboard: {written} of {len(trace.steps)} records")
    finally:
        if writer is not None:
            writer.close()
    return written


def _event(layer, step, values, fraction, channels, histograms):
    """The event of one layer at one step: its scalars, and its histograms when asked."""
    from tensorboard.compat.proto import event_pb2, summary_pb2  # noqa: PLC0415
    from tensorboard.plugins.histogram.summary import histogram_pb  # noqa: PLC0415
    from tensorboard.plugins.scalar.summary import scalar_pb  # noqa: PLC0415

    parts = []
    for (statistic, kind), array in values.items():
        if kind == "predicted":
            continue
        name = statistic if kind == "stored" else dict(plots.PAIRS)[statistic]
        parts += [scalar_pb(f"{layer}/{name}/channel_{channel}", float(array[channel]))
                  for channel in channels if not np.isnan(array[channel])]
        if histograms and kind == "stored":
            parts.append(histogram_pb(f"{layer}/{statistic}", array))
    if not np.isnan(fraction):
        parts.append(scalar_pb(f"{layer}/update_error_of_bound", fraction))
    summary = summary_pb2.Summary(value=[value for part in parts for value in part.value])
    return event_pb2.Event(step=int(step), wall_time=time.time(), summary=summary)
