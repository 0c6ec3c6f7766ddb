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
    not applicable)."""

    key: str
    message: str
    expected: Callable


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

    @property
    def inputs(self):
        return self.new.get("batch_input")

    def mean(self):
        """The batch mean as a :class:`Prediction`: from ``batch_input``, else as recorded."""
        if self.inputs is None:
            recorded = self.new.get("batch_mean")
            return None if recorded is None else Prediction(recorded, 0.0)
        axes = formulas.reduction_axes(self.inputs)
        return Prediction(formulas.batch_mean(self.inputs), tolerances.mean_bound(self.inputs, axes))

    def variance(self, convention=formulas.BIASED):
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
              lambda s: _tf(s, s.mean(), "moving_mean")),
    Candidate("swapped", "moving_mean follows momentum and 1 - momentum swapped: momentum is the "
                         "weight of the new batch value (PyTorch's convention)",
              lambda s: _swapped(s, s.mean(), "moving_mean")),
    Candidate("no update", "moving_mean never moves: the update op did not run (UPDATE_OPS left "
                           "out of the train op, or training was False)",
              lambda s: _unchanged(s, "moving_mean")),
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
              lambda s: _tf(s, s.variance(), "moving_variance")),
    Candidate("unbiased", "moving_variance follows the unbiased (N-1) batch variance: fused batch "
                          "norm (4-D input, or fused=True)",
              lambda s: _tf(s, s.variance(formulas.UNBIASED), "moving_variance")),
    Candidate("swapped", "moving_variance follows momentum and 1 - momentum swapped with the biased "
                         "variance",
              lambda s: _swapped(s, s.variance(), "moving_variance")),
    Candidate("pytorch", "moving_variance follows momentum and 1 - momentum swapped with the "
                         "unbiased (N-1) variance: PyTorch's BatchNorm convention",
              lambda s: _swapped(s, s.variance(formulas.UNBIASED), "moving_variance")),
    Candidate("no update", "moving_variance never moves: the update op did not run (UPDATE_OPS "
                           "left out of the train op, or training was False)",
              lambda s: _unchanged(s, "moving_variance")),
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


def _steps(trace, layer):
    settings = trace.layers[layer]
    declared = formulas.UNBIASED if settings.get("fused") else formulas.BIASED
    updates = 0
    for record in trace.steps:
        if layer not in record["bn"]:
            continue
        previous = trace.before(record, layer)
        if previous is None:
            continue
        state = record["bn"][layer]
        if state.get("set") or (state.get("trained") is False
                                and not records.moved(previous["bn"][layer], state)):
            continue  # set without its update, or a run that trained another network only
        links = records.updates(state, previous["bn"][layer])
        updates += len(links) or "batch_input" in state

        def momenta(update):
            return {statistic: records.momentum_of(settings, state, statistic, update)
                    for statistic in STATISTICS}
        after = {name: value for name, value in state.items() if name not in CONSUMED}
        chain = tuple(({**after, **link}, momenta(link)) for link in links) \
            if len(links) > 1 else ()
        yield _Step(old=previous["bn"][layer], new=records.flattened(state), previous=previous,
                    inference=record.get("inference", {}).get(layer), layer=layer,
                    momenta=momenta(links[0] if links else None), epsilon=settings["epsilon"],
                    updates=max(updates, 1), declared_variance=declared, links=chain,
                    unordered=bool(chain) and not records.ordered(state))


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


def _fitting(steps, candidates, observed, quantity):
    """``(the candidates whose predictions hold every observed value within its bound, how many
    steps were compared)``; a candidate not applicable at some step does not fit."""

    pairs = [(step, observed(step)) for step in steps]
    pairs = [(step, value) for step, value in pairs if value is not None]
    fitting = []
    for candidate in candidates:
        check = tolerances.Check(candidate.key)
        for step, value in pairs:
            prediction = _expected(candidate, step, quantity)
            if prediction is None:
                check.fail("", "not applicable")
                break
            check.compare("", value, prediction.value, prediction.bound)
            if not check.passed:
                break
        if check.passed and pairs:
            fitting.append(candidate)
    return fitting, len(pairs)


def diagnose_trace(trace):
    """Every finding for every layer of a :class:`bnrepro.trace.Trace`: a list of :class:`Finding`."""
    findings = []
    for layer in trace.layers:
        settings = trace.layers[layer]
        mode = LayerMode.from_header(settings, layer)
        steps = list(_steps(trace, layer))
        findings += (_run_findings(trace, layer) + _from_zero_findings(trace, layer)
                     + _frozen_findings(trace, layer))
        for quantity, candidates, observed in QUANTITIES:
            declared = _declared_candidate(mode, quantity)
            if declared is not None:
                candidates = (declared,) + candidates
            expected_key = STANDARD if declared is None else declared.key
            if settings.get("zero_debias") and quantity in ("moving_mean", "moving_variance"):
                expected_key = ZERO_DEBIASED
            if settings.get("fused") and quantity in ("moving_variance", "batch statistics"):
                expected_key = "unbiased"  # the header says the graph uses the fused kernel
            if quantity == "inference output" and settings["epsilon"] is None:
                continue  # verify says it was not checked: the epsilon is unknown
            fitting, compared = _fitting(steps, candidates, observed, quantity)
            if not compared or any(c.key == expected_key for c in fitting):
                continue
            alternatives = list({c.key: c for c in fitting}.values())
            if len(alternatives) == 1:
                candidate = alternatives[0]
                message = candidate.message
                if declared is not None and candidate.key == STANDARD:
                    message += f", not {mode.describe()} as the header declares"
                elif expected_key == "unbiased" and candidate.key == STANDARD:
                    message += (", not the unbiased (N-1) variance of the fused kernel the header "
                                "declares")
                findings.append(Finding(layer, quantity, candidate.key, message))
                continue
            if alternatives:
                message = (f"the {quantity} follows none of the expected conventions, and "
                           f"{len(alternatives)} known ones fit that the numbers do not tell "
                           "apart: " + "; ".join(c.key for c in alternatives))
            else:
                message = f"no known convention explains the {quantity}"
                if quantity == "inference output":
                    epsilon = _fit_epsilon(steps)
                    if epsilon is not None:
                        message += f" (solving the formula for epsilon gives {epsilon:.4g})"
            findings.append(Finding(layer, quantity, None, message))
    return findings


def _run_findings(trace, layer):
    """``bnrepro-trace/2``: runs that moved the layer's statistics without training (an
    evaluation whose output depends on the update, or training=True when evaluating)."""
    moved = [record["step"] for record in trace.steps
             if layer in record["bn"] and record.get("run", {}).get("moved")
             and not record["run"].get("trained") and not record["bn"][layer].get("set")]
    if not moved or not any(record.get("run", {}).get("trained") for record in trace.steps):
        return []  # a program that never trains: its runs update the averages by design
    return [Finding(layer, "runs", "moved without training",
                    f"the moving statistics moved in {len(moved)} runs that did not train (steps "
                    f"{_steps_shown(moved)}): those runs ran the update, e.g. an evaluation "
                    "whose output depends on it (tf.control_dependencies) or that ran the layer "
                    "with training=True")]


def frozen_by_momentum(settings, state):
    """Whether momentum 1 holds both moving statistics still at this step by design: with ``m = 1``
    each update is ``moving = m * old + (1 - m) * batch = old``, so they cannot move whether or not
    the update ran. Every update the step records takes momentum 1 for ``moving_mean`` and
    ``moving_variance`` (:func:`bnrepro.check.records.momentum_of`: recorded, else the header's);
    ``False`` when a momentum is unknown."""
    return all(records.momentum_of(settings, state, statistic, update) == 1.0
               for update in state.get(records.UPDATES) or [None] for statistic in STATISTICS)


FROZEN = "frozen by design"


def _frozen_findings(trace, layer):
    """The training steps at which momentum 1 froze the layer's moving statistics
    (:func:`frozen_by_momentum`): named, so that statistics that do not move while training are
    not taken for an update left out of the training run (``verify`` does not hold those steps to
    'statistics move when training')."""
    settings = trace.layers[layer]
    training = [record for record in trace.steps
                if layer in record["bn"] and trace.before(record, layer) is not None
                and record["bn"][layer].get("trained", record.get("run", {}).get("trained", True))]
    frozen = [record["step"] for record in training if frozen_by_momentum(settings,
                                                                          record["bn"][layer])]
    if not frozen:
        return []
    where = (f"at every training step ({len(frozen)})" if len(frozen) == len(training) else
             f"at steps {_steps_shown(frozen)} (of {len(training)} training steps)")
    return [Finding(layer, "moving statistics", FROZEN,
                    f"moving_mean and moving_variance are frozen by design {where}: momentum 1 "
                    "makes each update moving = 1 * old + 0 * batch = old, so they keep their "
                    "values whether or not the update runs (not an update left out of training)")]


def _steps_shown(steps):
    """Up to 8 step numbers, comma-separated, ``...`` after them when there are more."""
    return ", ".join(map(str, steps[:8])) + (", ..." if len(steps) > 8 else "")


def _from_zero_findings(trace, layer):
    """Averages that started from zero without debiasing (``ExponentialMovingAverage`` of a
    tensor, or zero initialisers): for the first updates they are pulled towards 0, not towards
    the batches. Named only when the numbers tell the start apart from the usual one (moving
    variance 1): the first update's moving variance from 0 and from 1 differs by the variance's
    momentum ``m_v`` (``m_v * 1 + (1 - m_v) * v`` against ``(1 - m_v) * v``), which must exceed
    that update's bound; with momentum 0 the start leaves no trace in any value."""
    settings, first = trace.layers[layer], trace.steps[0]["bn"].get(layer)
    if first is None or settings.get("zero_debias") or not trace.steps_are_runs:
        return []
    if not all(np.all(np.asarray(first[name]) == 0) for name in STATISTICS):
        return []
    steps = list(_steps(trace, layer))
    step = next((step for step in steps
                 if records.updates(step.new, step.old) and step.old is first), None)
    if step is None:
        return []  # no update from the initial state: nothing tells where it started
    update = step.links[0][0] if step.links else step.new
    momentum = records.momentum_of(settings, step.new, "moving_variance", update)
    try:
        consumed = records.consumed(update, "batch_variance", step.declared_variance,
                                    LayerMode.from_header(settings, layer))
    except ValueError:  # declared ghost batches that do not split the batch (verify says so)
        return []
    if momentum is None or consumed is None:
        return []
    from_one = formulas.moving_average(1.0, consumed[0], momentum)
    if not np.any(momentum > tolerances.moving_average_bound(
            1.0, consumed[0], momentum, from_one, statistic_error=consumed[1])):
        return []
    updates = sum(len(records.updates(step.new, step.old)) for step in steps)
    weight = f"; after its {updates} updates the initial 0 still weighs {momentum ** updates:.3g}"
    cause = "zero initialisers" if str(settings.get("kind", "")).startswith("batch norm") else \
        "an ExponentialMovingAverage of tensors: its shadows start at zero"
    return [Finding(layer, "initial value", "from zero",
                    f"moving_mean and moving_variance started from 0 ({cause}, without "
                    "debiasing)" + weight)]


def _fit_epsilon(steps):
    estimates = [formulas.fitted_epsilon(s.inference["input"], s.inference["output"], s.old["moving_mean"],
                                         s.old["moving_variance"], s.old["gamma"], s.old["beta"])
                 for s in steps if s.inference is not None]
    estimates = [e for e in estimates if e is not None]
    return float(np.median(estimates)) if estimates else None


def conventions_followed(findings):
    """``{(layer, quantity): convention}`` for the findings, for tables and tests."""
    return {(finding.layer, finding.quantity): finding.convention for finding in findings}
