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

The momentum of each average: the mean's is the header's ``momentum``; the variance's is the
header's ``momentum_variance`` when its decay differs from the mean's (a hand-written layer with
0.9 for the mean and 0.99 for the variance), else the mean's. A momentum computed at run time is
``null`` in the header and recorded per step (``momentum``, ``momentum_variance``), or per update.
"""
from __future__ import annotations

MEAN_MOMENTUM = "momentum"
VARIANCE_MOMENTUM = "momentum_variance"
UPDATES = "updates"


def updates(state):
    """The updates a step's layer ``state`` records, in the order they ran: ``state["updates"]``,
    or ``[state]`` when it holds what its one update consumed (``batch_mean``), else ``[]`` (no
    update ran)."""
    if UPDATES in state:
        return list(state[UPDATES])
    return [state] if "batch_mean" in state else []


def flattened(state):
    """The state with what its one update consumed at its top level, as a state of one update
    holds it: a state whose ``updates`` lists a single update, merged with it; any other state as
    it is."""
    if UPDATES in state and len(state[UPDATES]) == 1:
        merged = {name: value for name, value in state.items() if name != UPDATES}
        return {**merged, **state[UPDATES][0]}
    return state


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
