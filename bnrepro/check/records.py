"""Reading one layer's step record: the updates it holds, in the order they ran, and the momentum
of each average.

A step's layer state (``record["bn"][layer]``, :mod:`bnrepro.trace.format`) holds the moving
statistics after the run and, when the update ran once, what it consumed: ``batch_mean``,
``batch_variance`` and ``batch_input`` (the layer's input, on the steps that keep it). A layer that
the run updated several times (one layer applied to two inputs in one run: a GAN's discriminator on
real and fake data, siamese towers) holds instead ``"updates"``, one entry per update in the order
they ran, each with what that update consumed::

    "updates": [{"batch_mean": b1, "batch_variance": v1[, "batch_input": x1]}, {...b2...}, ...]

and the state after the last. With ``m`` the momentum and ``m_0`` the state before the run::

    m_1 = m * m_0 + (1 - m) * b_1,   m_2 = m * m_1 + (1 - m) * b_2,   ...,   m_k = the recorded state

``"updates_ordered": false`` says that nothing in the run orders the updates (no dependency between
them): the list is then in no particular order, and TensorFlow may run them in any order, or let
each read the state before another wrote it.

The momentum of each average: the mean's is the header's ``momentum``; the variance's is the
header's ``momentum_variance`` when its decay differs from the mean's (a hand-written layer with
0.9 for the mean and 0.99 for the variance), else the mean's. A momentum computed at run time is
``null`` in the header and recorded per step (``momentum``, ``momentum_variance``), or per update.
"""
from __future__ import annotations

import numpy as np

from bnrepro.check import formulas, tolerances

MEAN_MOMENTUM = "momentum"
VARIANCE_MOMENTUM = "momentum_variance"
UPDATES = "updates"
UPDATES_ORDERED = "updates_ordered"


def updates(state, old=None):
    """The updates a step's layer ``state`` records, in the order they ran: ``state["updates"]``,
    or ``[state]`` when it holds what its one update consumed (``batch_mean``), or only the layer's
    input (``batch_input``, the consumed values not fetched: a fused kernel's) and its moving
    statistics moved from ``old``, the state before the run; else ``[]`` (no update ran)."""
    if UPDATES in state:
        return list(state[UPDATES])
    if "batch_mean" in state:
        return [state]
    if "batch_input" in state and old is not None and moved(old, state):
        return [state]
    return []


def moved(old, state):
    """Whether ``moving_mean`` or ``moving_variance`` differs from ``old``'s."""
    return not all(np.array_equal(state[name], old[name])
                   for name in ("moving_mean", "moving_variance"))


def consumed(update, statistic, convention, mode):
    """``(value, bound)`` of what ``update`` consumed for ``statistic`` (``batch_mean`` or
    ``batch_variance``): as recorded (bound 0), else from its ``batch_input`` under the layer's
    ``mode`` (:func:`moments_with_bounds`, the variance ``/N`` or ``/(N-1)`` by ``convention``);
    ``None`` when the unbiased variance does not exist (one value per channel)."""
    if statistic in update:
        return update[statistic], 0.0
    moments = moments_with_bounds(update["batch_input"], convention, mode)
    if moments is None:
        return None
    return moments[0] if statistic == "batch_mean" else moments[1]


def moments_with_bounds(x, convention, mode):
    """``((mean, bound), (variance, bound))`` of a layer input ``x`` as the layer's update consumes
    them under its :class:`~bnrepro.check.layer_modes.LayerMode` (the batch's moments, or the mean
    of its ghost batches'), each with the bound of TensorFlow's float32 computation
    (:func:`bnrepro.check.tolerances.mean_bound`,
    :func:`~bnrepro.check.tolerances.variance_bound`); ``None`` when the unbiased variance does
    not exist. :class:`ValueError` when declared ghost batches do not split the batch."""
    x = np.asarray(x, dtype=np.float64)
    pair = mode.moments(x, convention)
    if pair is None:
        return None
    axes = formulas.reduction_axes(x)
    ghost_batches = x.shape[0] // mode.virtual_batch_size if mode.ghost else 1
    ddof = 1 if convention == formulas.UNBIASED else 0
    return ((pair[0], tolerances.mean_bound(x, axes, ghost_batches=ghost_batches)),
            (pair[1], tolerances.variance_bound(x, axes, ddof, ghost_batches=ghost_batches)))


def flattened(state):
    """The state with what its one update consumed at its top level, as a state of one update
    holds it: a state whose ``updates`` lists a single update, merged with it; any other state as
    it is."""
    if UPDATES in state and len(state[UPDATES]) == 1:
        merged = {name: value for name, value in state.items() if name != UPDATES}
        return {**merged, **state[UPDATES][0]}
    return state


def ordered(state):
    """Whether the step's updates ran in the order listed: ``False`` only when the state says
    ``"updates_ordered": false`` (the run orders them no way)."""
    return bool(state.get(UPDATES_ORDERED, True))


def momentum_key(statistic):
    """``"momentum_variance"`` for the variance's average (``moving_variance``, ``batch_variance``),
    ``"momentum"`` for the mean's (and any other)."""
    return VARIANCE_MOMENTUM if statistic in ("moving_variance", "batch_variance") else MEAN_MOMENTUM


def momentum_of(settings, state, statistic="moving_mean", update=None):
    """The momentum with which ``statistic``'s average took ``update`` (default: the step's one):

    1. the update's own ``momentum`` / ``momentum_variance`` (computed at run time), else the
       step's;
    2. the header's: for the variance ``momentum_variance`` when the header has that key (``null``:
       computed at run time and not recorded: unknown), else the mean's momentum (steps 1-2 for
       the mean);
    3. ``None`` when unknown.
    """
    key = momentum_key(statistic)
    for source in (update, state):
        if source is not None and source.get(key) is not None:
            return float(source[key])
    if key == VARIANCE_MOMENTUM:
        if VARIANCE_MOMENTUM in settings:
            value = settings[VARIANCE_MOMENTUM]
            return None if value is None else float(value)
        return momentum_of(settings, state, "moving_mean", update)
    value = settings.get(MEAN_MOMENTUM)
    return None if value is None else float(value)
