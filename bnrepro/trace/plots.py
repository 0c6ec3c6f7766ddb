"""Pictures of a trace: the moving statistics against the batch statistics that fed them.

For each traced step ``k`` the figure shows the batch statistic, the moving statistic TensorFlow
stored, and the momentum formula's prediction from the previous stored value::

    predicted_k = momentum * moving_{k-1} + (1 - momentum) * batch_k

so a reader sees the moving average lag behind the batch values and the prediction land on
TensorFlow's points. Figures are built without pyplot (no backend, no screen needed); a notebook
shows the returned figure, ``figure.savefig(path)`` writes it.
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from bnrepro.check import formulas

PAIRS = (("moving_mean", "batch_mean"), ("moving_variance", "batch_variance"))


def moving_statistic_series(trace, layer, statistic, channel=0):
    """Arrays over the steps with a previous step: ``steps``, the batch statistic, the stored moving
    statistic, and the momentum formula's prediction of it."""
    batch_statistic = dict(PAIRS)[statistic]
    momentum = trace.layers[layer]["momentum"]
    steps, batch, stored, predicted = [], [], [], []
    for record in trace.steps:
        previous = trace.step(record["step"] - 1)
        state = record["bn"][layer]
        if previous is None or batch_statistic not in state:
            continue
        steps.append(record["step"])
        batch.append(state[batch_statistic][channel])
        stored.append(state[statistic][channel])
        predicted.append(formulas.moving_average(previous["bn"][layer][statistic][channel],
                                                 state[batch_statistic][channel], momentum))
    return tuple(np.asarray(series, dtype=np.float64) for series in (steps, batch, stored, predicted))


def plot_moving_statistics(trace, layer=None, channel=0):
    """A figure with one panel per moving statistic of ``layer`` (default: the first)."""
    layer = layer or next(iter(trace.layers))
    momentum = trace.layers[layer]["momentum"]
    figure = Figure(figsize=(11, 4), layout="constrained")
    axes = figure.subplots(1, 2)
    for axis, (statistic, batch_statistic) in zip(axes, PAIRS):
        steps, batch, stored, predicted = moving_statistic_series(trace, layer, statistic, channel)
        initial = trace.step(0)["bn"][layer][statistic][channel]
        axis.plot(steps, batch, "o--", color="tab:gray", label=f"{batch_statistic} (this step's batch)")
        axis.plot(np.concatenate([[0], steps]), np.concatenate([[initial], stored]), "s-",
                  color="tab:blue", label=f"{statistic} stored by TensorFlow")
        axis.plot(steps, predicted, "x", color="tab:red", markersize=10, markeredgewidth=2,
                  label=f"{momentum:g} * previous + {1 - momentum:g} * {batch_statistic}")
        axis.set_xlabel("training step")
        axis.set_ylabel(statistic)
        axis.set_title(f"{layer}: {statistic}")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    return figure
