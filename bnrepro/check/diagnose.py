"""The diagnosis ``bnrepro verify`` prints: which known convention a trace follows, when not the standard one.

The standard convention is ``tf.compat.v1.layers.batch_normalization`` without the fused kernel: for
every step ``k`` with the state of step ``k - 1`` as "old", ``momentum`` and ``epsilon`` from the
trace's header, and the batch statistics of the layer's input ``x`` (``batch_input``)::

    moving_mean_k     = momentum * moving_mean_old     + (1 - momentum) * mean(x)
    moving_variance_k = momentum * moving_variance_old + (1 - momentum) * var(x)      (biased, /N)
    output            = gamma * (input - moving_mean_old) / sqrt(moving_variance_old + epsilon) + beta

For each layer and each of ``moving_mean``, ``moving_variance``, the recorded batch statistics and
the inference output, every candidate below predicts each traced step's values with a bound (the
float32 rounding of its formula on its operands, :mod:`bnrepro.check.tolerances`); a candidate fits when
every value is within its bound. A finding names a convention only when the numbers tell it apart:
nothing is reported when the expected convention (the standard one, or the mode the header
declares) fits, and a convention is named only when it is the one candidate that fits; when several
fit, the finding lists them and names none. A layer whose header entry declares a mode
(``virtual_batch_size``, ``renorm``: :class:`bnrepro.check.layer_modes.LayerMode`) expects that mode: the
standard convention is reported when the trace follows it instead. The moving statistics are
recomputed from ``batch_input`` when the trace has it (the whole chain from the layer's input),
otherwise from the recorded ``batch_mean`` / ``batch_variance``. A run that updated the layer
several times is predicted through each update in the order they ran (:func:`_expected`); when the
run orders them no way (``updates_ordered`` false) its moving statistics are not compared (the
result depends on the order TensorFlow chose: verify tries them). Each average takes its own
momentum (:func:`bnrepro.check.records.momentum_of`); without epsilon, nothing that needs it is
tried (the inference output, renorm, Keras 2.2's variance).

The diagnosis takes a trace in one pass, a block of step records at a time (:class:`Diagnosis`:
``feed`` each block of ``trace.blocks()``, then ``findings``; each step's state before from a
:class:`bnrepro.trace.reader.Chain`), so that its memory does not grow with the steps: what it
keeps is a :class:`~bnrepro.check.tolerances.Check` per layer, quantity and candidate (no longer
evaluated after its first failure), counts, the first step numbers a message names, and one
fitted epsilon per inference step. The steps whose update only the per-channel formulas need (one
update of the recorded batch statistics: no ``batch_input``, no ``updates``, no inference output,
the header's momenta) are compared stacked, a row per step, by the candidates marked
``elementwise`` (the same pass or fail as step by step); every other candidate and step, step by
step (``Diagnosis(trace, vectorised=False)``: every step).

Moving-statistic candidates, with ``m = momentum``, ``s`` the batch statistic:

* ``unbiased``: ``m * old + (1 - m) * var_(N-1)(x)`` (the fused kernel, 4-D input);
* ``swapped``: ``(1 - m) * old + m * s`` (momentum read as the weight of the new value);
* ``pytorch``: ``(1 - m) * old + m * var_(N-1)(x)`` (PyTorch's ``BatchNorm``);
* ``no update``: ``old`` (the update ops never ran);
* ``ghost k``: ``m * old + (1 - m) * mean_j var(x_j)`` over ghost batches of ``k`` samples
  (``virtual_batch_size``; strided as tf_keras splits them, or contiguous);
* ``renorm``: ``moving_stddev = m * moving_stddev_old + (1 - m) * sqrt(var(x) + epsilon)``,
  ``moving_variance = moving_stddev^2 - epsilon`` (``moving_stddev_old`` recorded, or
  :func:`bnrepro.check.layer_modes.moving_stddev_after`).

Nothing here uses TensorFlow.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional

import numpy as np

from bnrepro.check import formulas, layer_modes, records, tolerances
from bnrepro.check.conventions import KNOWN_EPSILONS
from bnrepro.check.layer_modes import LayerMode
from bnrepro.check.chain import Chain

STANDARD = "standard"


@dataclass(frozen=True)
class Finding:
    """What one layer's quantity follows: ``convention`` (a candidate key) and a sentence for users."""

    layer: str
    quantity: str  # "moving_mean", "moving_variance", "batch statistics", "inference output"
    convention: Optional[str]  # None: no known convention matches
    message: str

    def format(self):
        return f"diagnosis: {self.layer}: {self.message}"


class Prediction(NamedTuple):
    """What a candidate predicts for one step: ``value``, and ``bound``, how far float32 rounding
    may move the traced value from it."""

    value: np.ndarray
    bound: np.ndarray


@dataclass(frozen=True)
class Candidate:
    """A known convention: ``expected(step)`` gives the :class:`Prediction` of its values (``None``:
    not applicable). ``elementwise``: ``expected`` is a formula of the step's per-channel values
    that broadcasts, so that it takes a stacked step (:func:`_stacked_step`, rows of steps) and
    predicts each row as it would that step alone (not: one that reads ``batch_input``,
    ``local_step``, ``updates``, the previous record, or flattens its result)."""

    key: str
    message: str
    expected: Callable
    elementwise: bool = False


@dataclass
class _Step:
    """What one traced step offers the candidates: one update, or (``links``) the run's several
    updates of the layer in the order they ran (:mod:`bnrepro.check.records`)."""

    old: dict  # the layer's state after the previous step
    new: dict  # ... after this step, with the batch statistics this step's update consumed
    previous: dict  # the previous step's record
    inference: Optional[dict]
    layer: str
    momenta: dict  # statistic -> its average's momentum in this update (None: unknown)
    epsilon: Optional[float]  # None: unknown
    updates: int = 1  # how many updates this one is, counting from the first (1)
    declared_variance: str = formulas.BIASED  # the variance the header says is averaged
    links: tuple = ()  # the run's updates, when it updated the layer more than once
    unordered: bool = False  # ... in no order the run fixes (their moving statistics not compared)
    in_chain: bool = False  # one of those updates (its old state is computed, with old_error)
    old_error: dict = dataclasses.field(default_factory=dict)  # statistic -> bound of old's
    # mean() and variance() once each (several candidates ask); dataclasses.replace starts anew
    _moments: dict = dataclasses.field(default_factory=dict, init=False, repr=False,
                                       compare=False)

    @property
    def inputs(self):
        return self.new.get("batch_input")

    def mean(self):
        """The batch mean as a :class:`Prediction`: from ``batch_input``, else as recorded."""
        if "mean" not in self._moments:
            self._moments["mean"] = self._batch_mean()
        return self._moments["mean"]

    def variance(self, convention=formulas.BIASED):
        """The batch variance as a :class:`Prediction`, or ``None`` (:meth:`_batch_variance`)."""
        if convention not in self._moments:
            self._moments[convention] = self._batch_variance(convention)
        return self._moments[convention]

    def _batch_mean(self):
        if self.inputs is None:
            recorded = self.new.get("batch_mean")
            return None if recorded is None else Prediction(recorded, 0.0)
        axes = formulas.reduction_axes(self.inputs)
        return Prediction(formulas.batch_mean(self.inputs), tolerances.mean_bound(self.inputs, axes))

    def _batch_variance(self, convention):
        """The batch variance as a :class:`Prediction`, or ``None`` (the unbiased one of a single
        value per channel). Without ``batch_input`` the recorded one is what the update consumed,
        whichever it is: it stands for the variance the header declares (the fused kernel's
        unbiased one, else the biased one), and the other is ``None``."""
        if self.inputs is None:
            recorded = self.new.get("batch_variance")
            if convention != self.declared_variance or recorded is None:
                return None
            return Prediction(recorded, 0.0)
        if convention == formulas.UNBIASED and formulas.values_per_channel(self.inputs) < 2:
            return None
        ddof = 1 if convention == formulas.UNBIASED else 0
        return Prediction(formulas.batch_variance(self.inputs, convention), tolerances.variance_bound(
            self.inputs, formulas.reduction_axes(self.inputs), ddof))


def _averaged(step, statistic, prediction, momentum):
    """``momentum * old + (1 - momentum) * prediction`` with its bound (carrying the old value's,
    ``step.old_error``, in a run that updated the layer several times)."""
    if prediction is None or momentum is None:
        return None
    old = step.old[statistic]
    value = formulas.moving_average(old, prediction.value, momentum)
    return Prediction(value, tolerances.moving_average_bound(
        old, prediction.value, momentum, value, statistic_error=prediction.bound,
        old_error=step.old_error.get(statistic, 0.0)))


def _tf(step, prediction, statistic):
    """``momentum * old + (1 - momentum) * value`` (TF's direction), with ``statistic``'s own
    momentum."""
    return _averaged(step, statistic, prediction, step.momenta[statistic])


def _swapped(step, prediction, statistic):
    """``(1 - momentum) * old + momentum * value`` (PyTorch's direction)."""
    momentum = step.momenta[statistic]
    return _averaged(step, statistic, prediction, None if momentum is None else 1.0 - momentum)


def _unchanged(step, statistic):
    """The old value (the update did not run): exactly, or within ``step.old_error``."""
    return Prediction(step.old[statistic], step.old_error.get(statistic, 0.0))


def _zero_debiased(step, prediction, statistic):
    """The zero-debiased average after ``step.updates`` updates
    (:func:`bnrepro.check.formulas.zero_debiased_average`): ``local_step`` as recorded, else the count
    of updates; not applicable where ``1 - momentum^t`` is 0 (momentum 1: nothing to debias)."""
    momentum = step.momenta[statistic]
    if prediction is None or momentum is None or step.in_chain:
        return None
    old = step.old[statistic]
    steps = (float(np.ravel(step.old["local_step"])[0]), float(np.ravel(step.new["local_step"])[0])) \
        if "local_step" in step.new and "local_step" in step.old else (step.updates - 1, step.updates)
    if momentum ** float(steps[1]) == 1.0:  # momentum 1 (or t = 0): 1 - momentum^t is 0
        return None
    biased_old, biased_new, value = formulas.zero_debiased_average(old, prediction.value, momentum,
                                                                   *steps)
    return Prediction(value, tolerances.zero_debiased_bound(
        old, prediction.value, momentum, *steps, biased_old, biased_new, value,
        statistic_error=prediction.bound))


ZERO_DEBIASED = "zero-debiased"
ZERO_DEBIASED_MESSAGE = ("{} follows a zero-debiased average (moving_averages.assign_moving_average's "
                         "default zero_debias=True): value = biased / (1 - momentum^t), so the "
                         "initial value never matters")


def _keras_2_2_variance(step):
    """Keras 2.2's moving variance: the batch variance times ``N / (N - 1 - epsilon)``."""
    variance = step.variance()
    if step.inputs is None or variance is None or step.epsilon is None:
        return None
    count = formulas.values_per_channel(step.inputs)
    if count - 1.0 - step.epsilon <= 0:
        return None
    factor = count / (count - 1.0 - step.epsilon)
    return _tf(step, Prediction(variance.value * factor, np.asarray(variance.bound) * factor
                                + tolerances.UNIT_ROUNDOFF * 4 * np.abs(variance.value * factor)),
               "moving_variance")


MEAN_CANDIDATES = (
    Candidate(STANDARD, "moving_mean follows the standard update",
              lambda s: _tf(s, s.mean(), "moving_mean"), elementwise=True),
    Candidate("swapped", "moving_mean follows momentum and 1 - momentum swapped: momentum is the "
                         "weight of the new batch value (PyTorch's convention)",
              lambda s: _swapped(s, s.mean(), "moving_mean"), elementwise=True),
    Candidate("no update", "moving_mean never moves: the update op did not run (UPDATE_OPS left "
                           "out of the train op, or training was False)",
              lambda s: _unchanged(s, "moving_mean"), elementwise=True),
    Candidate(ZERO_DEBIASED, ZERO_DEBIASED_MESSAGE.format("moving_mean"),
              lambda s: _zero_debiased(s, s.mean(), "moving_mean")),
)


GHOST_SIZES = range(2, 65)


def _moments_under(step, mode):
    """``(mean, variance)`` :class:`Prediction` s the step's update consumes under ``mode``, or
    ``None``: from ``batch_input``, the batch's moments or the ghost batches' mean moments
    (``None`` when ``virtual_batch_size`` does not divide the batch); without it, as recorded."""
    if not mode.ghost or step.inputs is None:
        return step.mean(), step.variance()
    if np.shape(step.inputs)[0] % mode.virtual_batch_size:
        return None
    axes = formulas.reduction_axes(step.inputs)
    mean, variance = mode.moments(step.inputs)
    return (Prediction(mean, tolerances.mean_bound(step.inputs, axes)),
            Prediction(variance, tolerances.variance_bound(step.inputs, axes)))


def _moving_variance_under(step, mode):
    """The moving variance ``mode`` predicts (:meth:`LayerMode.moving_variance`), or ``None``."""
    moments = _moments_under(step, mode)
    if moments is None or moments[1] is None:
        return None
    variance = moments[1]
    if not mode.renorm:
        return _tf(step, variance, "moving_variance")
    momentum = step.momenta["moving_variance"]
    if step.epsilon is None or momentum is None or step.in_chain:
        return None
    old_stddev, old_error = layer_modes.moving_stddev_with_bound(step.previous, step.layer,
                                                                 step.epsilon)
    moving_stddev = formulas.moving_average(old_stddev, np.sqrt(np.asarray(variance.value)
                                                                + step.epsilon), momentum)
    value = mode.moving_variance(None, old_stddev, variance.value, momentum, step.epsilon)
    bound = tolerances.renorm_bounds(old_stddev, variance.value, momentum, step.epsilon,
                                     moving_stddev, value, old_stddev_error=old_error,
                                     variance_error=variance.bound)[2]
    return Prediction(value, bound)


def _batch_statistics_under(step, mode):
    moments = _moments_under(step, mode)
    return None if moments is None else _stacked(*moments)


UNDER_MODE = {"moving_variance": _moving_variance_under, "batch statistics": _batch_statistics_under}


def _ghost_candidates(quantity):
    """One candidate per ghost-batch size ``k`` and layout, for the moving variance (``quantity``
    "moving_variance") or the recorded batch statistics ("batch statistics"); each applies when
    ``k`` splits the batch into two or more ghost batches."""
    subject = "moving_variance follows" if quantity == "moving_variance" else \
        "the batch statistics are"
    candidates = []
    for layout in layer_modes.GHOST_LAYOUTS:
        for size in GHOST_SIZES:
            mode = LayerMode(virtual_batch_size=size, ghost_layout=layout)

            def expected(step, mode=mode):
                if step.inputs is None or np.shape(step.inputs)[0] == mode.virtual_batch_size:
                    return None
                return UNDER_MODE[quantity](step, mode)
            candidates.append(Candidate(
                mode.key, f"{subject} the mean of the moments of ghost batches of {size} {layout} "
                          f"samples (virtual_batch_size={size})", expected))
    return tuple(candidates)


def _declared_candidate(mode, quantity):
    """The candidate of the mode the header declares, for a quantity the mode changes, or ``None``."""
    changed = mode.ghost or (mode.renorm and quantity == "moving_variance")
    if quantity not in UNDER_MODE or not changed:
        return None
    return Candidate(mode.key, f"{quantity} follows {mode.describe()}",
                     lambda step: UNDER_MODE[quantity](step, mode))


VARIANCE_CANDIDATES = (
    Candidate(STANDARD, "moving_variance follows the standard update (biased /N variance)",
              lambda s: _tf(s, s.variance(), "moving_variance"), elementwise=True),
    Candidate("unbiased", "moving_variance follows the unbiased (N-1) batch variance: fused batch "
                          "norm (4-D input, or fused=True)",
              lambda s: _tf(s, s.variance(formulas.UNBIASED), "moving_variance"),
              elementwise=True),
    Candidate("swapped", "moving_variance follows momentum and 1 - momentum swapped with the biased "
                         "variance",
              lambda s: _swapped(s, s.variance(), "moving_variance"), elementwise=True),
    Candidate("pytorch", "moving_variance follows momentum and 1 - momentum swapped with the "
                         "unbiased (N-1) variance: PyTorch's BatchNorm convention",
              lambda s: _swapped(s, s.variance(formulas.UNBIASED), "moving_variance"),
              elementwise=True),
    Candidate("no update", "moving_variance never moves: the update op did not run (UPDATE_OPS "
                           "left out of the train op, or training was False)",
              lambda s: _unchanged(s, "moving_variance"), elementwise=True),
    Candidate("renorm", "moving_variance follows batch renorm: the layer averages moving_stddev = "
                        "sqrt(var + epsilon) and sets moving_variance = moving_stddev^2 - epsilon",
              lambda s: _moving_variance_under(s, LayerMode(renorm=True))),
    Candidate(ZERO_DEBIASED, ZERO_DEBIASED_MESSAGE.format("moving_variance"),
              lambda s: _zero_debiased(s, s.variance(), "moving_variance")),
    Candidate("keras 2.2", "moving_variance follows Keras 2.2's batch variance times N / (N - 1 - "
                           "epsilon)", _keras_2_2_variance),
) + _ghost_candidates("moving_variance")


def _recorded_batch_statistics(step):
    """The batch statistics each update consumed, flattened side by side, when every update of the
    step has its ``batch_input`` (to recompute them from); else ``None``."""
    updates = [new for new, _ in step.links] if step.links else [step.new]
    if not all("batch_input" in new and "batch_mean" in new for new in updates):
        return None
    return np.concatenate([np.ravel(new[name]) for new in updates
                           for name in ("batch_mean", "batch_variance")])


def _stacked(*predictions):
    """The :class:`Prediction` s as one, flattened side by side (``None`` if one is)."""
    if any(prediction is None for prediction in predictions):
        return None
    value = np.concatenate([np.ravel(p.value) for p in predictions])
    bound = np.concatenate([np.ravel(np.broadcast_to(p.bound, np.shape(p.value)))
                            for p in predictions])
    return Prediction(value, bound)


def _old_statistics(step):
    """The old moving statistics, exactly: what an update in inference mode consumes (not known
    exactly for the later updates of a run that updated the layer several times: ``None``)."""
    if step.in_chain:
        return None
    return _stacked(_unchanged(step, "moving_mean"), _unchanged(step, "moving_variance"))


BATCH_CANDIDATES = (
    Candidate(STANDARD, "the batch statistics are the batch's biased moments",
              lambda s: _stacked(s.mean(), s.variance())),
    Candidate("unbiased", "batch_variance is the unbiased (N-1) variance (what the fused kernel "
                          "and PyTorch average into the moving variance)",
              lambda s: _stacked(s.mean(), s.variance(formulas.UNBIASED))),
    Candidate("inference mode", "the batch statistics the update consumed are the old moving "
                                "statistics, not the batch's: the layer ran in inference mode in "
                                "the training run (training was never fed True)",
              _old_statistics),
) + _ghost_candidates("batch statistics")


def _normalized(step, epsilon):
    """The inference output with ``epsilon`` and the old moving statistics, with its bound."""
    if step.inference is None or epsilon is None:
        return None
    old, x = step.old, step.inference["input"]
    value = formulas.normalize(x, old["moving_mean"], old["moving_variance"], old["gamma"],
                               old["beta"], epsilon)
    return Prediction(value, tolerances.normalize_bound(x, old["moving_mean"],
                                                        old["moving_variance"], old["gamma"],
                                                        old["beta"], epsilon, value))


def _epsilon_candidate(epsilon, who):
    return Candidate(f"epsilon {epsilon:g}", f"the inference output follows epsilon = {epsilon:g} "
                                             f"({who}), not the header's",
                     lambda s: _normalized(s, epsilon))


INFERENCE_CANDIDATES = (
    Candidate(STANDARD, "the inference output follows the header's epsilon",
              lambda s: _normalized(s, s.epsilon)),
) + tuple(_epsilon_candidate(epsilon, who) for epsilon, who in KNOWN_EPSILONS.items())


QUANTITIES = (
    ("moving_mean", MEAN_CANDIDATES, lambda s: None if s.unordered else s.new["moving_mean"]),
    ("moving_variance", VARIANCE_CANDIDATES,
     lambda s: None if s.unordered else s.new["moving_variance"]),
    ("batch statistics", BATCH_CANDIDATES, _recorded_batch_statistics),
    ("inference output", INFERENCE_CANDIDATES,
     lambda s: None if s.inference is None else s.inference["output"]),
)


CONSUMED = ("batch_mean", "batch_variance", "batch_input", records.UPDATES)
STATISTICS = ("moving_mean", "moving_variance")
STACKED = STATISTICS + ("batch_mean", "batch_variance")  # a stacked step's new (old: STATISTICS)
# where a step holds its own momenta or its updates' (records.momentum_of); else the header's
OWN_MOMENTA = (records.MEAN_MOMENTUM, records.VARIANCE_MOMENTUM, records.UPDATES)
NOT_STACKED = ("batch_input",) + OWN_MOMENTA
SHOWN_STEPS = 8  # the step numbers a finding names


def _declared_variance(settings):
    """The variance the header says the layer averages: the fused kernel's unbiased one, else the
    biased one."""
    return formulas.UNBIASED if settings.get("fused") else formulas.BIASED


def _compared_step(state, old):
    """Whether the diagnosis compares a layer's ``state`` at a step with ``old``, its state before:
    not one ``set`` without its update, nor one of a run that trained another network only and
    left it unchanged."""
    return not (state.get("set") or (state.get("trained") is False
                                     and not records.moved(old, state)))


def _updates_counted(state, old):
    """How many updates a compared step adds to the layer's count (:attr:`_Step.updates`)."""
    return len(records.updates(state, old)) or "batch_input" in state


def _step(record, previous, layer, settings, updates):
    """The :class:`_Step` of ``layer`` at ``record``, from ``previous``'s state, ``updates`` the
    layer's updates counted up to this step's (:func:`_updates_counted`)."""
    state = record["bn"][layer]
    links = records.updates(state, previous["bn"][layer])

    def momenta(update):
        return {statistic: records.momentum_of(settings, state, statistic, update)
                for statistic in STATISTICS}
    after = {name: value for name, value in state.items() if name not in CONSUMED}
    chain = tuple(({**after, **link}, momenta(link)) for link in links) if len(links) > 1 else ()
    return _Step(old=previous["bn"][layer], new=records.flattened(state), previous=previous,
                 inference=record.get("inference", {}).get(layer), layer=layer,
                 momenta=momenta(links[0] if links else None), epsilon=settings["epsilon"],
                 updates=max(updates, 1), declared_variance=_declared_variance(settings),
                 links=chain, unordered=bool(chain) and not records.ordered(state))


def _stackable(record, state, layer):
    """Whether ``layer``'s ``state`` at ``record`` is a step the elementwise candidates may take
    stacked with others: one update of the recorded batch statistics (no ``batch_input``, no
    ``updates``), the header's momenta (none recorded), no inference output."""
    return state.keys().isdisjoint(NOT_STACKED) and record.get("inference", {}).get(layer) is None


def _stack_signature(state):
    """What stacked steps must share: which of the batch statistics they hold."""
    return "batch_mean" in state, "batch_variance" in state


def _stacked_step(states, olds, layer, settings):
    """One :class:`_Step` standing for stackable steps of ``layer`` (:func:`_stackable`, one
    :func:`_stack_signature`), its ``states`` and their ``olds``: its ``old`` and ``new`` hold
    each quantity of the steps stacked, ``(S, C)`` with a row per step, which the elementwise
    candidates' formulas broadcast over; ``None`` unless every quantity of every row has one
    shape (as in a trace read back: a formula broadcasting arrays of other shapes would not take
    the rows apart)."""
    first = states[0]
    try:
        new = {name: np.stack([state[name] for state in states])
               for name in STACKED if name in first}
        old = {name: np.stack([state[name] for state in olds]) for name in STATISTICS}
    except ValueError:  # rows of different shapes
        return None
    if len({array.shape for array in (*new.values(), *old.values())}) != 1:
        return None
    momenta = {statistic: records.momentum_of(settings, first, statistic)
               for statistic in STATISTICS}
    return _Step(old=old, new=new, previous={}, inference=None, layer=layer, momenta=momenta,
                 epsilon=settings["epsilon"], declared_variance=_declared_variance(settings))


def _expected(candidate, step, quantity):
    """``candidate``'s :class:`Prediction` of ``quantity`` at ``step``. For a run that updated the
    layer several times (``step.links``): a moving statistic through every update in the order
    they ran, each from the one before with its bound carried (``old_error``), the state after
    the last compared; the batch statistics of every update side by side. ``None``: not
    applicable."""
    if not step.links or quantity not in STATISTICS + ("batch statistics",):
        return candidate.expected(step)
    old, error, parts = step.old, 0.0, []
    for new, momenta in step.links:
        prediction = candidate.expected(dataclasses.replace(
            step, old=old, new=new, momenta=momenta, links=(), in_chain=True,
            old_error={quantity: error} if quantity in STATISTICS else {}))
        if prediction is None:
            return None
        if quantity in STATISTICS:
            old, error = {**old, quantity: prediction.value}, prediction.bound
        parts.append(prediction)
    return parts[-1] if quantity in STATISTICS else _stacked(*parts)


def _compare(check, prediction, value):
    """Hold ``value`` to ``prediction`` in ``check``; a candidate not applicable fails."""
    if prediction is None:
        check.fail("", "not applicable")
    else:
        check.compare("", value, prediction.value, prediction.bound)


class _QuantityFit:
    """The candidates of one quantity of a layer and how they fit the steps taken so far: a
    :class:`~bnrepro.check.tolerances.Check` each, no longer evaluated after its first failure (a
    candidate not applicable at a step does not fit), and how many steps were compared (those
    with an ``observed`` value). For the inference output, the epsilon that solves the formula at
    each of its steps (:func:`bnrepro.check.formulas.fitted_epsilon`; one float per inference
    step, which traces record rarely)."""

    def __init__(self, quantity, candidates, observed, declared, expected_key, defer=True):
        self.quantity, self.candidates, self.observed = quantity, candidates, observed
        self.declared, self.expected_key = declared, expected_key
        self.checks = [tolerances.Check(candidate.key) for candidate in candidates]
        self.alive = list(zip(candidates, self.checks))  # the candidates that fit so far
        self.compared = 0
        self.epsilons = [] if quantity == "inference output" else None
        # while the expected convention fits, the others are not compared: they make no finding
        # unless it fails, and then a second pass over the trace compares them all (the
        # alternatives of a large layer input, such as the ghost batches', cost most)
        self.deferring = defer and any(c.key == expected_key for c in candidates)
        self.deferred = False  # steps were taken without comparing the others

    @property
    def needs_all(self):
        """Whether the expected convention failed after the others were deferred: the quantity
        must be compared again with every candidate (:meth:`Diagnosis.findings`)."""
        return self.deferred and not self.fitting_expected()

    def fitting_expected(self):
        return any(candidate.key == self.expected_key and check.passed
                   for candidate, check in zip(self.candidates, self.checks))

    def _alive(self):
        """The candidates that fit so far and are compared, with their checks (a copy: comparing
        may end one)."""
        self.alive = [(candidate, check) for candidate, check in self.alive if check.passed]
        if self.deferring:
            self.deferred = True
            return [(candidate, check) for candidate, check in self.alive
                    if candidate.key == self.expected_key]
        return list(self.alive)

    def take(self, step):
        """Compare every candidate still fitting with one step."""
        value = self.observed(step)
        if value is None:
            return
        self.compared += 1
        if self.epsilons is not None:
            self._fit_epsilon(step)
        for candidate, check in self._alive():
            _compare(check, _expected(candidate, step, self.quantity), value)

    def take_stacked(self, stacked, rows):
        """Compare every candidate still fitting with the stackable steps of ``rows`` (a
        :class:`_Rows`): the elementwise ones once on ``stacked`` (the same pass or fail as step
        by step: each value is held to its own bound), the others step by step."""
        value = self.observed(stacked)
        if value is None:
            return  # None at every row: stackable steps have no inference output, no batch_input
        self.compared += len(rows)
        for candidate, check in self._alive():
            if candidate.elementwise:
                _compare(check, _expected(candidate, stacked, self.quantity), value)
                continue
            for step in rows.steps():
                _compare(check, _expected(candidate, step, self.quantity), self.observed(step))
                if not check.passed:
                    break

    def _fit_epsilon(self, step):
        inference, old = step.inference, step.old
        estimate = formulas.fitted_epsilon(inference["input"], inference["output"],
                                           old["moving_mean"], old["moving_variance"],
                                           old["gamma"], old["beta"])
        if estimate is not None:
            self.epsilons.append(estimate)

    def fitting(self):
        """The candidates that fit every compared step (none when no step was compared; with
        the others deferred, those not compared are among them)."""
        if not self.compared:
            return []
        return [candidate for candidate, check in self.alive if check.passed]

    def fitted_epsilon(self):
        """The median of the inference steps' fitted epsilons, or ``None``."""
        return float(np.median(self.epsilons)) if self.epsilons else None


class _Rows:
    """Stackable steps of a layer waiting to be compared together (:func:`_stackable`), in order,
    of one :func:`_stack_signature`: ``(record, previous, updates counted)``, and the layer's
    state at each and before it."""

    def __init__(self, layer, settings):
        self.layer, self.settings = layer, settings
        self.clear()

    def __len__(self):
        return len(self.rows)

    def add(self, record, previous, updates, state, old):
        self.rows.append((record, previous, updates))
        self.states.append(state)
        self.olds.append(old)

    def steps(self):
        """The rows as :class:`_Step` s in order, each built when first asked for (for the
        candidates not elementwise, which most often fail at the first)."""
        for index, (record, previous, updates) in enumerate(self.rows):
            if index == len(self._steps):
                self._steps.append(_step(record, previous, self.layer, self.settings, updates))
            yield self._steps[index]

    def stacked(self):
        return _stacked_step(self.states, self.olds, self.layer, self.settings)

    def clear(self):
        self.rows, self.states, self.olds, self.signature, self._steps = [], [], [], None, []


class _StepNumbers:
    """How many steps, and the numbers of the first :data:`SHOWN_STEPS` of them."""

    def __init__(self):
        self.count, self.first = 0, []

    def add(self, number):
        self.count += 1
        if len(self.first) < SHOWN_STEPS:
            self.first.append(number)

    def shown(self):
        """Up to 8 step numbers, comma-separated, ``...`` after them when there are more."""
        return ", ".join(map(str, self.first)) + (", ..." if self.count > SHOWN_STEPS else "")


class _InitialValue:
    """Whether the layer's averages started from zero without debiasing
    (``ExponentialMovingAverage`` of a tensor, or zero initialisers): for the first updates they
    are pulled towards 0, not towards the batches. Named only when the numbers tell the start
    apart from the usual one (moving variance 1): the first update's moving variance from 0 and
    from 1 differs by the variance's momentum ``m_v`` (``m_v * 1 + (1 - m_v) * v`` against
    ``(1 - m_v) * v``), which must exceed that update's bound; with momentum 0 the start leaves no
    trace in any value.

    Needs the layer's state in the trace's first record (:meth:`start`), the first compared step
    that updates the layer from it, and the count of the compared steps' updates (:meth:`take`)."""

    def __init__(self, layer, settings, steps_are_runs):
        self.layer, self.settings = layer, settings
        self.possible = not settings.get("zero_debias") and steps_are_runs
        self.first = None  # the layer's state in the trace's first record
        self.first_update = None  # None: none seen yet; else (momentum, consumed), or () for none
        self.updates = 0

    def start(self, first_record):
        """Take the trace's first record: the averages must start at 0 there."""
        self.first = first_record["bn"].get(self.layer)
        self.possible = self.possible and self.first is not None and all(
            np.all(np.asarray(self.first[name]) == 0) for name in STATISTICS)

    def take(self, record, old):
        """Take a compared step whose layer state was ``old`` before it."""
        if not self.possible:
            return
        state = record["bn"][self.layer]
        new = records.flattened(state)
        updates = records.updates(new, old)
        self.updates += len(updates)
        if self.first_update is None and updates and old is self.first:
            self.first_update = self._consumed(state, new, old)

    def _consumed(self, state, new, old):
        """``(momentum of the variance, (consumed variance, its bound))`` of the first update of a
        step, or ``()`` when either is unknown (or declared ghost batches do not split the batch:
        verify says so)."""
        links = records.updates(state, old)
        after = {name: value for name, value in state.items() if name not in CONSUMED}
        update = {**after, **links[0]} if len(links) > 1 else new
        momentum = records.momentum_of(self.settings, new, "moving_variance", update)
        try:
            consumed = records.consumed(update, "batch_variance", _declared_variance(self.settings),
                                        LayerMode.from_header(self.settings, self.layer))
        except ValueError:
            return ()
        return () if momentum is None or consumed is None else (momentum, consumed)

    def findings(self):
        if not self.possible or not self.first_update:
            return []  # no update from the initial state: nothing tells where it started
        momentum, consumed = self.first_update
        from_one = formulas.moving_average(1.0, consumed[0], momentum)
        if not np.any(momentum > tolerances.moving_average_bound(
                1.0, consumed[0], momentum, from_one, statistic_error=consumed[1])):
            return []
        weight = (f"; after its {self.updates} updates the initial 0 still weighs "
                  f"{momentum ** self.updates:.3g}")
        cause = "zero initialisers" if str(self.settings.get("kind", "")).startswith("batch norm") \
            else "an ExponentialMovingAverage of tensors: its shadows start at zero"
        return [Finding(self.layer, "initial value", "from zero",
                        f"moving_mean and moving_variance started from 0 ({cause}, without "
                        "debiasing)" + weight)]


def _quantity_fits(layer, settings, mode, defer=True):
    """A :class:`_QuantityFit` per quantity the diagnosis compares, in :data:`QUANTITIES`' order,
    with the candidate the header's mode declares first and the key of the convention expected
    (none for the inference output when the epsilon is unknown: verify says it was not
    checked)."""
    fits = []
    for quantity, candidates, observed in QUANTITIES:
        declared = _declared_candidate(mode, quantity)
        if declared is not None:
            candidates = (declared,) + candidates
        expected_key = STANDARD if declared is None else declared.key
        if settings.get("zero_debias") and quantity in STATISTICS:
            expected_key = ZERO_DEBIASED
        if settings.get("fused") and quantity in ("moving_variance", "batch statistics"):
            expected_key = "unbiased"  # the header says the graph uses the fused kernel
        if quantity == "inference output" and settings["epsilon"] is None:
            continue
        fits.append(_QuantityFit(quantity, candidates, observed, declared, expected_key, defer))
    return fits


class _LayerDiagnosis:
    """One layer's part of a :class:`Diagnosis`: the steps it took, counted, and its quantities'
    :class:`_QuantityFit` s."""

    def __init__(self, layer, settings, steps_are_runs, vectorised, defer=True):
        self.layer, self.settings, self.vectorised = layer, settings, vectorised
        self.mode = LayerMode.from_header(settings, layer)
        self.fits = _quantity_fits(layer, settings, self.mode, defer)
        self.initial = _InitialValue(layer, settings, steps_are_runs)
        self.updates = 0  # the compared steps' updates so far (_Step.updates)
        self.moved_untrained = _StepNumbers()  # runs that moved the statistics without training
        self.training_steps = 0
        self.frozen = _StepNumbers()  # training steps momentum 1 froze (frozen_by_momentum)
        self.frozen_by_header = frozen_by_momentum(settings, {})  # ... with no momentum recorded
        self.pending = _Rows(layer, settings)

    def take(self, record, previous):
        """Take the layer's state at ``record``, ``previous`` the record holding its state before
        (``None``: unknown)."""
        state, run = record["bn"][self.layer], record.get("run", {})
        if run.get("moved") and not run.get("trained") and not state.get("set"):
            self.moved_untrained.add(record["step"])
        if previous is None:
            return
        if state.get("trained", run.get("trained", True)):
            self.training_steps += 1
            if self._frozen(state):
                self.frozen.add(record["step"])
        old = previous["bn"][self.layer]
        if not _compared_step(state, old):
            return
        stackable = self.vectorised and _stackable(record, state, self.layer)
        self.updates += ("batch_mean" in state) if stackable else _updates_counted(state, old)
        if self.initial.possible:
            self.initial.take(record, old)
        if not stackable:  # compared now (a candidate fits or not whatever the order of the steps)
            step = _step(record, previous, self.layer, self.settings, self.updates)
            for fit in self.fits:
                fit.take(step)
            return
        signature = _stack_signature(state)
        if signature != self.pending.signature:
            self.flush()
            self.pending.signature = signature
        self.pending.add(record, previous, self.updates, state, old)

    def _frozen(self, state):
        """:func:`frozen_by_momentum`, once for the steps that take the header's momenta."""
        if not state.keys().isdisjoint(OWN_MOMENTA):
            return frozen_by_momentum(self.settings, state)
        return self.frozen_by_header

    def flush(self):
        """Compare the pending stackable steps."""
        if not len(self.pending):
            return
        stacked = self.pending.stacked()
        for fit in self.fits:
            if stacked is None:
                for step in self.pending.steps():
                    fit.take(step)
            else:
                fit.take_stacked(stacked, self.pending)
        self.pending.clear()

    def findings(self, trace_trained):
        """The layer's findings, ``trace_trained`` whether any run of the trace trained."""
        return (self._run_findings(trace_trained) + self.initial.findings()
                + self._frozen_findings() + [finding for fit in self.fits
                                             for finding in self._convention_findings(fit)])

    def _run_findings(self, trace_trained):
        """``bnrepro-trace/2``: runs that moved the layer's statistics without training (an
        evaluation whose output depends on the update, or training=True when evaluating)."""
        moved = self.moved_untrained
        if not moved.count or not trace_trained:
            return []  # a program that never trains: its runs update the averages by design
        return [Finding(self.layer, "runs", "moved without training",
                        f"the moving statistics moved in {moved.count} runs that did not train "
                        f"(steps {moved.shown()}): those runs ran the update, e.g. an evaluation "
                        "whose output depends on it (tf.control_dependencies) or that ran the "
                        "layer with training=True")]

    def _frozen_findings(self):
        """The training steps at which momentum 1 froze the layer's moving statistics
        (:func:`frozen_by_momentum`): named, so that statistics that do not move while training
        are not taken for an update left out of the training run (``verify`` does not hold those
        steps to 'statistics move when training')."""
        frozen = self.frozen
        if not frozen.count:
            return []
        where = (f"at every training step ({frozen.count})" if frozen.count == self.training_steps
                 else f"at steps {frozen.shown()} (of {self.training_steps} training steps)")
        return [Finding(self.layer, "moving statistics", FROZEN,
                        f"moving_mean and moving_variance are frozen by design {where}: momentum 1 "
                        "makes each update moving = 1 * old + 0 * batch = old, so they keep their "
                        "values whether or not the update runs (not an update left out of "
                        "training)")]

    def _convention_findings(self, fit):
        """What ``fit``'s quantity follows when not the expected convention: the one candidate that
        fits, the several the numbers do not tell apart, or none."""
        fitting = fit.fitting()
        if not fit.compared or any(c.key == fit.expected_key for c in fitting):
            return []
        alternatives = list({c.key: c for c in fitting}.values())
        quantity = fit.quantity
        if len(alternatives) == 1:
            candidate = alternatives[0]
            message = candidate.message
            if fit.declared is not None and candidate.key == STANDARD:
                message += f", not {self.mode.describe()} as the header declares"
            elif fit.expected_key == "unbiased" and candidate.key == STANDARD:
                message += (", not the unbiased (N-1) variance of the fused kernel the header "
                            "declares")
            return [Finding(self.layer, quantity, candidate.key, message)]
        if alternatives:
            message = (f"the {quantity} follows none of the expected conventions, and "
                       f"{len(alternatives)} known ones fit that the numbers do not tell "
                       "apart: " + "; ".join(c.key for c in alternatives))
        else:
            message = f"no known convention explains the {quantity}"
            if quantity == "inference output":
                epsilon = fit.fitted_epsilon()
                if epsilon is not None:
                    message += f" (solving the formula for epsilon gives {epsilon:.4g})"
        return [Finding(self.layer, quantity, None, message)]


class Diagnosis:
    """The diagnosis of a trace in one pass over its steps, its memory independent of their
    number: ``Diagnosis(trace)`` (the header only), :meth:`feed` it the step records in order a
    block at a time (``trace.blocks()``), then :meth:`findings`. Each step's state before comes
    from a :class:`bnrepro.trace.reader.Chain`. ``vectorised`` (default): the steps of a block
    that only the elementwise candidates' formulas need (:func:`_stackable`) are compared
    stacked, one evaluation of each such candidate per layer and block (per run of steps that
    hold the same batch statistics); ``False``: every step alone."""

    def __init__(self, trace, vectorised=True, defer=True):
        self._trace, self._vectorised = trace, vectorised
        self._chain = Chain(trace.steps_are_runs)
        self._started = False
        self._trained = False  # whether a run of the trace trained
        self._layers = [_LayerDiagnosis(layer, settings, trace.steps_are_runs, vectorised, defer)
                        for layer, settings in trace.layers.items()]

    def feed(self, block):
        """Take a list of step records, the next in order."""
        for record in block:
            if not self._started:
                self._started = True
                for layer in self._layers:
                    layer.initial.start(record)
            self._trained = self._trained or bool(record.get("run", {}).get("trained"))
            held = record["bn"]
            for layer in self._layers:
                if layer.layer in held:
                    layer.take(record, self._chain.before(record, layer.layer))
            self._chain.advance(record)
        for layer in self._layers:
            layer.flush()

    def findings(self):
        """Every finding for every layer: a list of :class:`Finding`. Where a quantity's
        expected convention failed and the others were deferred (:class:`_QuantityFit`), its
        layer is diagnosed again with every candidate, in a second pass over the trace."""
        again = [layer.layer for layer in self._layers if any(fit.needs_all for fit in layer.fits)]
        if again:
            everything = Diagnosis(self._trace, self._vectorised, defer=False)
            everything._layers = [layer for layer in everything._layers if layer.layer in again]
            for block in self._trace.blocks():
                everything.feed(block)
            redone = {layer.layer: layer for layer in everything._layers}
            self._layers = [redone.get(layer.layer, layer) for layer in self._layers]
        return [finding for layer in self._layers for finding in layer.findings(self._trained)]


def diagnose_trace(trace, vectorised=True, defer=True):
    """Every finding for every layer of a :class:`bnrepro.trace.Trace` (in memory or streamed):
    a list of :class:`Finding`."""
    diagnosis = Diagnosis(trace, vectorised=vectorised, defer=defer)
    for block in trace.blocks():
        diagnosis.feed(block)
    return diagnosis.findings()


def frozen_by_momentum(settings, state):
    """Whether momentum 1 holds both moving statistics still at this step by design: with ``m = 1``
    each update is ``moving = m * old + (1 - m) * batch = old``, so they cannot move whether or not
    the update ran. Every update the step records takes momentum 1 for ``moving_mean`` and
    ``moving_variance`` (:func:`bnrepro.check.records.momentum_of`: recorded, else the header's);
    ``False`` when a momentum is unknown."""
    return all(records.momentum_of(settings, state, statistic, update) == 1.0
               for update in state.get(records.UPDATES) or [None] for statistic in STATISTICS)


FROZEN = "frozen by design"


def conventions_followed(findings):
    """``{(layer, quantity): convention}`` for the findings, for tables and tests."""
    return {(finding.layer, finding.quantity): finding.convention for finding in findings}
