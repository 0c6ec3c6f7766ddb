"""How far a float32 result may be from the exact value: the bounds ``bnrepro verify`` compares with.

TensorFlow computes batch norm in float32. Each float32 operation returns the exact result of its
operands rounded, ``fl(a op b) = (a op b)(1 + d)`` with ``|d| <= u = 2^-24`` (about 6e-8), and every
constant it is given (``momentum``, ``1 - momentum``, ``epsilon``) is rounded to float32 the same way.
The functions below bound, for each formula the checks use, the difference between TensorFlow's
float32 result and the exact (float64) value of the formula on the same recorded operands, from
the sizes of those operands. A bound follows the numbers: a variance of 1e-6 gets a bound about
1e-13, not a fixed absolute tolerance as large as the value itself.

Sums over ``N`` values are bounded for any order of summation (recursive, pairwise, vectorised
blocks): ``|fl(sum x) - sum x| <= gamma(N - 1) * sum |x|`` with ``gamma(n) = n u / (1 - n u)``
(:func:`accumulated_rounding`)
(Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., section 4.2). Where several
evaluation orders are in use (tf_keras' ``assign_sub`` form and the fused kernel's weighted sum of
a moving average) a bound covers all of them. Terms of order
``u^2`` are absorbed by rounding the small integer factors up.

TensorFlow on CPU also flushes float32 subnormals to zero (:func:`flush_slack`): every bound below
adds that absolute slack for the values its formula may flush, so a result TensorFlow flushed to 0
where NumPy has 8.3e-41 is within its bound.

Every function takes and returns float64 NumPy arrays (broadcast like the formula's operands).
``*_error`` arguments carry the bound of an operand that is itself computed (a statistic the checks
recompute from the layer's input rather than read from the trace); recorded float32 values are
exact operands (error 0). Nothing here uses TensorFlow.

This module is the one tolerance policy: ``bnrepro verify`` holds each recorded value to its bound
through :class:`Check`, the posts' printed numbers are matched by :func:`matches_printed`, and the
NumPy whole-step reference by :func:`reference_tolerance` (with :func:`max_errors` reporting how
far it was).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from bnrepro.errors import UserError

UNIT_ROUNDOFF = 2.0 ** -24  # u: float32's relative rounding error, half its machine epsilon
SMALLEST_NORMAL = float(np.finfo(np.float32).tiny)  # 2^-126 = 1.1754944e-38


def flush_slack(count=1, gain=1.0):
    """The absolute slack for float32 subnormals that TensorFlow flushes to zero::

        count * gain * SMALLEST_NORMAL        (SMALLEST_NORMAL = 2^-126 = 1.1754944e-38)

    TensorFlow's CPU kernels run with flush-to-zero and denormals-are-zero set (Eigen sets both
    for its thread pools): any result or operand whose magnitude is below float32's smallest
    normal, 1.1754944e-38, may be flushed to 0, an absolute error below ``SMALLEST_NORMAL`` in
    that value, outside the relative model ``(1 + d)`` the rounding bounds use. It reaches the
    formula's result through the result's slope with respect to that value, at most ``gain``; a
    formula with at most ``count`` values that may be flushed is off by at most ``count * gain *
    SMALLEST_NORMAL`` beyond its rounding bound. Each bound below says its ``count`` and
    ``gain``; :meth:`Check.compare` adds ``flush_slack()`` to every bound, for the compared value
    itself (a prediction exact up to rounding, bound 0, may still be written as 0).
    """
    return count * np.asarray(gain, dtype=np.float64) * SMALLEST_NORMAL


def accumulated_rounding(count):
    """``gamma(n) = n u / (1 - n u)`` (Higham's notation): the relative error bound of ``n``
    rounded operations compounded, ``|prod (1 + d_i)^(+-1) - 1| <= gamma(n)`` for ``|d_i| <= u``."""
    count = np.asarray(count, dtype=np.float64)
    return count * UNIT_ROUNDOFF / (1.0 - count * UNIT_ROUNDOFF)


def _f64(value):
    return np.asarray(value, dtype=np.float64)


def constant_error(value):
    """``|float32(c) - c|``: the error of a Python constant TensorFlow casts to float32."""
    value = _f64(value)
    return np.abs(value.astype(np.float32).astype(np.float64) - value)


def moving_average_bound(old, statistic, momentum, new, *, statistic_error=0.0, old_error=0.0):
    """Bound of ``new = momentum * old + (1 - momentum) * statistic`` as TensorFlow computes it.

    tf_keras assigns ``old - (old - statistic) * d`` with ``d = float32(1 - momentum)``; the fused
    kernel's average is ``(1 - f) * old + f * statistic``. In the first form the subtraction, the
    product and the constant each add ``u (1 - m) |old - statistic| <= u (1 - m)(|old| + |s|)``, the
    last subtraction ``u |new|``; in the second, the two products and two constants add
    ``2u (m |old| + (1 - m) |s|)`` and the sum ``u |new|``. Both are below::

        4u (|old| + (1 - m) |statistic| + |new|)  +  (1 - m) statistic_error  +  m old_error
    + flush_slack(5)

    (the middle two: errors of computed operands, carried through the average's weights; the
    last: the two operands and three results of either form, each reaching ``new`` with a weight
    of at most 1, may be flushed).
    """
    momentum = float(momentum)
    old, statistic, new = np.abs(_f64(old)), np.abs(_f64(statistic)), np.abs(_f64(new))
    rounding = 4.0 * UNIT_ROUNDOFF * (old + (1.0 - momentum) * statistic + new)
    return (rounding + (1.0 - momentum) * _f64(statistic_error) + momentum * _f64(old_error)
            + flush_slack(5))


def zero_debiased_bound(old, statistic, momentum, old_step, step, biased_old, biased_new, value,
                        *, statistic_error=0.0):
    """Bound of a zero-debiased average (:func:`bnrepro.check.formulas.zero_debiased_average`):
    ``biased_old = old (1 - m^(t-1))`` recovered from the recorded value carries the roundings of
    the division that made it, ``3u |biased_old|``; the biased average then
    :func:`moving_average_bound`; ``1 - m^t`` computed in float32 (the power's ``t`` products and
    the subtraction) carries ``(t + 2) u``; the division adds its own (:func:`quotient_bound`)."""
    momentum = float(momentum)
    biased_error = moving_average_bound(biased_old, statistic, momentum, biased_new,
                                        statistic_error=statistic_error,
                                        old_error=3.0 * UNIT_ROUNDOFF * np.abs(_f64(biased_old)))
    denominator = 1.0 - momentum ** float(step)
    denominator_error = (float(step) + 2.0) * UNIT_ROUNDOFF
    return quotient_bound(biased_new, denominator, value, numerator_error=biased_error,
                          denominator_error=denominator_error)


def _per_batch(x, axes, ghost_batches):
    """``(n, G, max |x|, mean |x|)``: the values each statistic reduces per ghost batch (``n``, all
    of them when ``G = 1``), the ghost batches averaged, and the magnitudes over ``axes``."""
    x = _f64(x)
    magnitude = np.abs(x)
    mean_magnitude = np.mean(magnitude, axis=axes)
    count = x.size // max(np.size(mean_magnitude), 1)
    ghost_batches = max(int(ghost_batches), 1)
    return (count // ghost_batches, ghost_batches, np.max(magnitude, axis=axes, initial=0.0),
            mean_magnitude)


def _ghost_average_rounding(ghost_batches):
    """The roundings of averaging ``G`` ghost batches' statistics (tf_keras' ``reduce_mean`` over
    the ghost axis): the sum's ``G - 1``, the division's 2; none for one batch."""
    return ghost_batches + 1 if ghost_batches > 1 else 0


def mean_bound(x, axes, *, ghost_batches=1):
    """Bound of the batch mean over ``axes``, ``sum(x) / n`` (``reduce_mean``, or the fused kernel's
    ``sum(x) * (1 / n)``), or with ``G`` ghost batches of ``n`` values each the mean of their
    means::

        |fl(mean) - mean| <= accumulated_rounding(n + 1 + a_G) * mean(|x|)  +  flush_slack(2N + 1)

    (the sum's ``n - 1`` roundings in any order, relative to ``sum |x|``; the division's 2, a
    rounded ``1 / n`` and its product; ``a_G`` :func:`_ghost_average_rounding`: ``G + 1``
    for the average of the ghost batches' means, 0 for one batch). Flushed: the ``N`` operands and
    ``N - 1`` partial sums reach the mean with weight at most 1, the result with 1.
    """
    values, ghost_batches, _, mean_magnitude = _per_batch(x, axes, ghost_batches)
    count = values * ghost_batches
    return (accumulated_rounding(values + 1 + _ghost_average_rounding(ghost_batches))
            * mean_magnitude + flush_slack(2 * count + 1))


def variance_bound(x, axes, ddof=0, *, ghost_batches=1):
    """Bound of the batch variance over ``axes``, ``var = sum((x - mean)^2) / (n - ddof)``, as the
    layers bnrepro finds compute it: in two passes, the mean first, then the mean of squared
    differences from it (``tf.nn.moments``' ``reduce_mean(squared_difference(x, mean))``, the fused
    kernel's ``sum((x - mean)^2) * (1 / n)`` times ``n / (n - 1)`` for its unbiased variance, and
    ``mean(square(x - mean))`` by hand; a one-pass ``mean(x^2) - mean^2`` pairs with no mean in
    :mod:`bnrepro.graphs.discover`). With ``G`` ghost batches of ``n`` values, the mean of their
    variances.

    The differences from the computed mean ``m + delta`` give ``var + delta^2 n / (n - ddof)``
    exactly (``D`` below); each difference and its square round once (2), the sum of ``n``
    non-negative terms ``n - 1`` times in any order, the division 2 (a rounded ``1 / n`` and its
    product), the unbiased factor ``n / (n - 1)`` 2 more (a rounded constant and its product), all
    relative to the non-negative sum; ``a_G`` (:func:`_ghost_average_rounding`) for the ghost
    batches' average. Relative errors compound into ``accumulated_rounding`` of their count
    (Higham, lemma 3.3)::

        |fl(var) - var| <= accumulated_rounding(n + 3 + 2 [ddof > 0] + a_G) * (V + D)  +  D
                           + flush_slack(4N + 4) * n / (n - ddof)

    with ``V`` the biased variance of all ``N`` values times ``n / (n - ddof)`` (with ghost batches
    at least the mean of theirs: the law of total variance) and ``delta`` at most the mean's
    error, ``accumulated_rounding(n + 1) * max |x|``. The bound is relative to the variance itself:
    a large mean against the spread (``mean^2 >> var``) costs only through ``delta^2``.

    Flushed subnormals: the mean's ``2N + 1`` (:func:`mean_bound`; through ``delta^2`` only) and the
    ``N`` squares, ``N - 1`` partial sums and the quotient, each reaching the variance with weight at
    most ``n / (n - ddof)``.
    """
    values, ghost_batches, largest, _ = _per_batch(x, axes, ghost_batches)
    x = _f64(x)
    count = values * ghost_batches
    if values - ddof <= 0:
        return np.full(np.shape(largest), np.inf)
    correction = values / (values - ddof)
    variance = np.var(x, axis=axes) * correction
    shift = (accumulated_rounding(values + 1) * largest) ** 2 * correction
    roundings = values + 3 + (2 if ddof else 0) + _ghost_average_rounding(ghost_batches)
    return (accumulated_rounding(roundings) * (variance + shift) + shift
            + flush_slack(4 * count + 4) * correction)


def normalize_bound(x, mean, variance, gamma_, beta, epsilon, output, *, mean_error=0.0,
                    variance_error=0.0):
    """Bound of ``output = gamma * (x - mean) / sqrt(variance + epsilon) + beta``.

    TensorFlow computes ``inv = gamma * rsqrt(variance + epsilon)``, then ``x * inv + (beta - mean *
    inv)`` (``tf.nn.batch_normalization``) or ``(x - mean) * inv + beta`` (the fused kernel).
    ``inv`` carries at most ``8u`` relative (epsilon's float32 rounding, the addition, the
    reciprocal square root, the product), which both products carry on; with the additions::

        10u (|gamma| (|x| + |mean|) / sqrt(variance + epsilon) + |beta| + |output|)

    Computed statistics add their errors through the formula's slopes:
    ``|gamma| / sqrt(variance + epsilon) * mean_error`` and, for the variance, the change of
    ``1 / sqrt(variance + epsilon)`` over ``variance_error`` (exact, not linearised: a variance
    known to few digits moves the output a lot).

    Flushed subnormals: the variance (one value, carried with ``variance_error``) and
    ``flush_slack(8, gain)`` for ``x``, ``mean``, ``gamma``, ``beta`` and the intermediate results
    of either form, with ``gain = 1 + |gamma| inv + |x - mean| (inv + 1)`` (``inv = 1 /
    sqrt(variance + epsilon)``; the slopes of the output with respect to ``x``, ``mean`` and
    ``x - mean``, to ``gamma``, and to ``gamma * inv``).
    """
    x, mean, variance = _f64(x), _f64(mean), _f64(variance)
    scale = np.abs(_f64(gamma_))
    spread = variance + float(epsilon)
    inverse = 1.0 / np.sqrt(spread)
    rounding = 10.0 * UNIT_ROUNDOFF * (scale * (np.abs(x) + np.abs(mean)) * inverse
                                       + np.abs(_f64(beta)) + np.abs(_f64(output)))
    rounding = rounding + flush_slack(8, 1.0 + scale * inverse
                                      + np.abs(x - mean) * (inverse + 1.0))
    variance_error = _f64(variance_error) + flush_slack()
    smallest = np.maximum(spread - variance_error, 0.0)
    with np.errstate(divide="ignore"):
        inverse_at_worst = np.where(smallest > 0, 1.0 / np.sqrt(smallest), np.inf)
    shift = scale * np.abs(x - mean)
    from_variance = np.where(shift > 0, shift * (inverse_at_worst - inverse), 0.0)
    return rounding + scale * inverse * _f64(mean_error) + from_variance


def sqrt_bound(value, result, *, value_error=0.0):
    """Bound of ``result = sqrt(value)``: ``2u |result|`` for the rounding, and the exact change of
    the square root over ``value_error`` and a flushed ``value`` (``e = value_error +
    flush_slack()``): ``sqrt(v) - sqrt(max(v - e, 0))``, then ``flush_slack()`` for the result."""
    value, error = _f64(value), _f64(value_error) + flush_slack()
    moved = np.sqrt(np.maximum(value, 0.0)) - np.sqrt(np.maximum(value - error, 0.0))
    return 2.0 * UNIT_ROUNDOFF * np.abs(_f64(result)) + moved + flush_slack()


def quotient_bound(numerator, denominator, result, *, numerator_error=0.0, denominator_error=0.0):
    """Bound of ``result = numerator / denominator``::

        (numerator_error + |result| denominator_error) / (|denominator| - denominator_error)
        + u |result|  +  flush_slack(2, max(1, 1 / (|denominator| - denominator_error)))

    (flushed: the numerator, through ``1 / denominator``, and the quotient).
    """
    result = np.abs(_f64(result))
    room = np.abs(_f64(denominator)) - _f64(denominator_error)
    with np.errstate(divide="ignore", invalid="ignore"):
        carried = np.where(room > 0, (_f64(numerator_error) + result * _f64(denominator_error))
                           / np.where(room > 0, room, 1.0), np.inf)
        gain = np.where(room > 0, np.maximum(1.0, 1.0 / np.where(room > 0, room, 1.0)), np.inf)
    return carried + UNIT_ROUNDOFF * result + flush_slack(2, gain)


# --- the posts' printed numbers ---------------------------------------------------------------------

FLOAT32_ULPS_ACROSS_CPUS = 4  # kernels on different instruction sets round differently


NUMPY_PRINT_DECIMALS = 8  # numpy.get_printoptions()["precision"], the default


def printed_match_bound(printed, decimals=NUMPY_PRINT_DECIMALS):
    """How far our float32 value may be from ``printed``, a number a post printed with NumPy.

    NumPy prints a float32 as the shortest decimal that reads back to it, cut at ``decimals``
    digits after the point (``0.9991983``; ``-0.00099999784`` shows as ``-0.001``): the printed
    number is the value to half a unit of the ``decimals``-th digit, or exactly. Ours was computed
    by other kernels on another CPU, which may round the last place differently (post 000's bn1[0]
    is 1.0949917 on one machine of this workplace and 1.0949918 on another), so
    :data:`FLOAT32_ULPS_ACROSS_CPUS` float32 units in the last place are allowed on top::

        |ours - printed| <= 0.5 * 10^-decimals + 4 * ulp_float32(printed)
    """
    return 0.5 * 10.0 ** -decimals + FLOAT32_ULPS_ACROSS_CPUS * float(
        np.spacing(np.float32(abs(printed))))


PRINTED_MATCH_RULE = (f"|ours - printed| <= half a unit of the {NUMPY_PRINT_DECIMALS}th decimal + "
                      f"{FLOAT32_ULPS_ACROSS_CPUS} float32 units in the last place "
                      "(bnrepro.check.tolerances.printed_match_bound)")


def matches_printed(ours, printed):
    """Whether our value of a number a post printed is the printed one, within
    :func:`printed_match_bound`."""
    return abs(ours - printed) <= printed_match_bound(printed)


# --- whole training steps: the NumPy reference ------------------------------------------------------

REFERENCE_TOLERANCE = 1e-4
ADAM_SLOT_TOLERANCE = 1e-2
"""The NumPy whole-step reference against TensorFlow, per variable and step, in the max norm::

    max |reference - traced| <= tolerance * max |traced|

(the max norm over a variable's elements: a slot whose values are all about 2e-5 is compared at
its own scale, not against an absolute floor). A whole training step (forward, backward, optimizer)
is too long a chain to bound operation by operation, so these are measured, with the command:
``python scripts/reference_errors.py`` replays the cubic trace and post 001's net over 12 seeds.

* :data:`REFERENCE_TOLERANCE` for the loss and every variable but Adam's slots: float32 rounding
  leaves at most 9.4e-6 of a variable (post 001's hidden beta, about 1e-3, after 5 Adam steps),
  1.3e-7 over the 10 cubic steps.
* :data:`ADAM_SLOT_TOLERANCE` for Adam's slots ``<variable>/Adam`` (m) and ``.../Adam_1`` (v): they
  hold the gradient and its square, and the gradient through post 001's two-example batch norm is
  a difference of nearly equal float32 terms (its output barely depends on its input): up to
  6.7e-4 measured. The variables do not inherit it: Adam's step ``m / sqrt(v)`` divides it out.

A wrong formula exceeds these by orders of magnitude: Adam without its bias correction moves the
weights 2.2 relative, swapping beta1 and beta2 the slots 100x, a momentum of 0.9 for 0.5 the moving
statistics by tens of percent.
"""


def reference_tolerance(variable):
    """The tolerance a variable (TensorFlow name) of the whole-step reference is held to."""
    stem = variable.rsplit(":", 1)[0]
    return ADAM_SLOT_TOLERANCE if stem.endswith(("/Adam", "/Adam_1")) else REFERENCE_TOLERANCE


def norm_relative_error(predicted, traced):
    """``max |predicted - traced| / max |traced|`` over a variable's elements; ``0`` when both are
    zero and infinite when only the traced one is."""
    predicted, traced = _f64(predicted), _f64(traced)
    difference = float(np.max(np.abs(predicted - traced), initial=0.0))
    scale = float(np.max(np.abs(traced), initial=0.0))
    if not np.isfinite(difference):
        return float("inf")
    if scale == 0.0:
        return 0.0 if difference == 0.0 else float("inf")
    return difference / scale


def renorm_bounds(old_stddev, batch_variance, momentum, epsilon, moving_stddev, moving_variance, *,
                  old_stddev_error=0.0, variance_error=0.0):
    """Bounds along renorm's chain, ``s = sqrt(batch_variance + epsilon)``, ``moving_stddev =
    momentum * old_stddev + (1 - momentum) * s``, ``moving_variance = moving_stddev^2 - epsilon``;
    returns ``(bound of s, bound of moving_stddev, bound of moving_variance)``::

        s:               sqrt_bound over the sum's rounding u (var + epsilon), epsilon's, and
                         variance_error
        moving_stddev:   moving_average_bound, carrying s's and old_stddev's bounds
        moving_variance: 2 |moving_stddev| e + e^2 (e: moving_stddev's bound), the square's and
                         the subtraction's roundings u (moving_stddev^2 + |moving_variance|), and
                         epsilon's
    """
    variance = _f64(batch_variance)
    stddev = np.sqrt(np.maximum(variance + float(epsilon), 0.0))
    stddev_error = sqrt_bound(variance + float(epsilon), stddev, value_error=(
        UNIT_ROUNDOFF * np.abs(variance + float(epsilon)) + constant_error(epsilon)
        + _f64(variance_error)))
    moving_stddev_error = moving_average_bound(old_stddev, stddev, momentum, moving_stddev,
                                               statistic_error=stddev_error,
                                               old_error=old_stddev_error)
    moving_stddev = np.abs(_f64(moving_stddev))
    moving_variance_error = (2.0 * moving_stddev * moving_stddev_error + moving_stddev_error ** 2
                             + UNIT_ROUNDOFF * (moving_stddev ** 2 + np.abs(_f64(moving_variance)))
                             + constant_error(epsilon))
    return stddev_error, moving_stddev_error, moving_variance_error


def max_errors(predicted, traced):
    """``(max absolute error, max relative error)`` of ``predicted`` against ``traced`` over all
    elements. Relative error is ``|predicted - traced| / |traced|``; where ``traced`` is 0 it is 0 if
    ``predicted`` is 0 too and infinite otherwise."""
    predicted, traced = _f64(predicted), _f64(traced)
    if predicted.shape != traced.shape:
        raise UserError(f"reference shape {predicted.shape} differs from the trace's {traced.shape}")
    difference = np.abs(predicted - traced)
    magnitude = np.abs(traced)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(magnitude > 0, difference / magnitude,
                            np.where(difference > 0, np.inf, 0.0))
    return float(np.max(difference, initial=0.0)), float(np.max(relative, initial=0.0))


# --- holding values to their bounds ------------------------------------------------------------

@dataclass
class Check:
    """The comparisons of one kind over the whole trace, and the first that failed."""

    name: str
    compared: int = 0
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    max_bound_fraction: float = 0.0  # the largest |got - expected| / bound
    first_failure: Optional[str] = None

    @property
    def passed(self):
        return self.first_failure is None

    def compare(self, where, got, expected, bound):
        """Compare arrays element-wise against ``bound + flush_slack()`` (broadcast: the compared
        value itself may have been flushed, :func:`flush_slack`); remember the largest errors and
        the first failure. A non-finite value on either side fails."""
        got = np.asarray(got, dtype=np.float64)
        expected = np.asarray(expected, dtype=np.float64)
        if got.shape != expected.shape and got.size == expected.size:
            got = got.reshape(expected.shape)  # e.g. a ghost-batch layer's (1, 1, C) against (C,)
        self._compare(lambda index: (where, index), got, expected, bound)

    def compare_rows(self, places, got, expected, bound):
        """:meth:`compare` of many comparisons at once: row ``i`` of ``got``, ``expected`` and
        ``bound`` (arrays of one shape ``(S, ...)``, the bound broadcast) is the comparison at
        ``places(i)``; the same counts, largest errors and first failure as ``S`` calls of
        :meth:`compare` in the order of the rows."""
        got = np.asarray(got, dtype=np.float64)
        expected = np.asarray(expected, dtype=np.float64)
        self._compare(lambda index: (places(index[0]), index[1:]), got, expected, bound)

    def _compare(self, place, got, expected, bound):
        """The comparison itself; ``place(index)`` is the ``(where, element index)`` of the
        first failure's element."""
        bound = np.broadcast_to(np.asarray(bound, dtype=np.float64) + flush_slack(),
                                expected.shape)
        with np.errstate(invalid="ignore"):
            error = np.abs(got - expected)
        self.compared += error.size
        if error.size == 0:
            return
        finite = np.isfinite(got) & np.isfinite(expected)
        with np.errstate(divide="ignore", invalid="ignore"):
            relative = np.where(expected != 0, error / np.abs(expected), np.where(error > 0, np.inf, 0))
            fraction = np.where(bound > 0, error / bound, np.where(error > 0, np.inf, 0.0))
        if finite.any():
            self.max_abs_error = max(self.max_abs_error, float(np.max(error[finite])))
            self.max_rel_error = max(self.max_rel_error, float(np.max(relative[finite])))
            self.max_bound_fraction = max(self.max_bound_fraction, float(np.max(fraction[finite])))
        failing = ~finite | ~(error <= bound)
        if failing.any() and self.first_failure is None:
            index = np.unravel_index(int(np.argmax(failing)), failing.shape)
            where, element = place(index)
            self.first_failure = (f"{where}, element {tuple(int(i) for i in element)}: "
                                  f"expected {float(expected[index])!r}, got {float(got[index])!r}"
                                  + (f" (bound {float(bound[index]):.3g})" if finite[index] else
                                     " (not finite)"))

    def fail(self, where, reason):
        """Count one comparison that could not be made, and why, as a failure."""
        self.compared += 1
        if self.first_failure is None:
            self.first_failure = f"{where}: {reason}"
