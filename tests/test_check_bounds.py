"""The float32 bounds of :mod:`bnrepro.check.tolerances` and :class:`~bnrepro.check.tolerances.Check`'s
comparison, on small operands worked out by hand from each function's documented formula (``u =
2^-24``, ``TINY = 2^-126``, float32's smallest normal). A bound loosened or tightened by a factor,
a rounding count off by one, an error term dropped, or a comparison weakened changes a number here:
these tests were written against mutants of that kind (``scripts/mutation_test.py``) that the
tests on real traces let pass."""
import math

import numpy as np
import pytest

from bnrepro.check import formulas, tolerances
from bnrepro.check.tolerances import Check

U = 2.0 ** -24
TINY = 2.0 ** -126


def test_accumulated_rounding_and_a_constants_rounding():
    assert tolerances.accumulated_rounding(10) == pytest.approx(10 * U / (1 - 10 * U), rel=1e-12)
    assert tolerances.accumulated_rounding(0) == 0.0
    # float32(0.1) = 0.100000001490116119384765625
    assert tolerances.constant_error(0.1) == pytest.approx(1.490116119384765625e-9, rel=1e-6)
    assert tolerances.constant_error(0.5) == 0.0
    assert tolerances.flush_slack(3, 2.0) == pytest.approx(6 * TINY, rel=1e-12)


def test_moving_average_bound():
    """old 2, statistic 1, momentum 0.9, new 1.9: 4u (2 + 0.1 * 1 + 1.9) = 16u; the operands'
    errors carried by the weights: 0.1 * 1e-6 + 0.9 * 1e-5 = 9.1e-6."""
    assert tolerances.moving_average_bound(2.0, 1.0, 0.9, 1.9) == pytest.approx(16 * U, rel=1e-9)
    assert tolerances.moving_average_bound(-2.0, -1.0, 0.9, -1.9) == pytest.approx(16 * U, rel=1e-9)
    carried = tolerances.moving_average_bound(2.0, 1.0, 0.9, 1.9, statistic_error=1e-6,
                                              old_error=1e-5)
    assert carried == pytest.approx(16 * U + 9.1e-6, rel=1e-9)


def test_zero_debiased_bound():
    """old 2 at local_step 1, statistic 1, momentum 0.5, local_step 2: biased_old = 2 (1 - 0.5) = 1,
    biased_new = 0.5 + 0.5 = 1, value = 1 / (1 - 0.25) = 4/3. The biased average's bound with the
    recovered old value's 3u carried at weight 0.5: 4u (1 + 0.5 + 1) + 1.5u = 11.5u; 1 - 0.5^2
    rounds (2 + 2)u; the quotient: (11.5u + 4/3 * 4u) / (0.75 - 4u) + 4/3 u = 23.78u."""
    bound = tolerances.zero_debiased_bound(2.0, 1.0, 0.5, 1, 2, 1.0, 1.0, 4.0 / 3.0)
    assert bound == pytest.approx((11.5 + 16.0 / 3.0) / 0.75 * U + 4.0 / 3.0 * U, rel=1e-6)
    with_error = tolerances.zero_debiased_bound(2.0, 1.0, 0.5, 1, 2, 1.0, 1.0, 4.0 / 3.0,
                                                statistic_error=3e-6)
    assert with_error - bound == pytest.approx(0.5 * 3e-6 / 0.75, rel=1e-6)


def test_mean_bound():
    """x = 1, -3: n = 2, mean |x| = 2, the sum's 1 rounding and the division's 2: gamma(3) * 2 = 6u;
    ghost batches of one value each (G = 2): gamma(1 + 1 + G + 1) * 2 = 10u."""
    x = np.array([[1.0], [-3.0]])
    assert tolerances.mean_bound(x, (0,)) == pytest.approx([6 * U], rel=1e-6)
    assert tolerances.mean_bound(x, (0,), ghost_batches=2) == pytest.approx([10 * U], rel=1e-6)


def test_variance_bound_follows_ddof_and_ghost_batches():
    """x = 0, 4 (biased variance 4, unbiased 8), n = 2: gamma(n + 3) * 4 = 20u biased; unbiased,
    two roundings more and twice the variance: gamma(7) * 8 = 56u (the mean's error squared,
    (gamma(3) * 4)^2 ~ 1e-13, is below the tolerance). One value per ghost batch: no variance
    (infinite bound); ddof = n: none."""
    x = np.array([[0.0], [4.0]])
    assert tolerances.variance_bound(x, (0,)) == pytest.approx([20 * U], rel=1e-5)
    assert tolerances.variance_bound(x, (0,), ddof=1) == pytest.approx([56 * U], rel=1e-5)
    assert tolerances.variance_bound(x, (0,), ddof=2) == [math.inf]
    x4 = np.array([[0.0], [4.0], [0.0], [4.0]])
    # two ghost batches of (0, 4): each variance 4, gamma(2 + 3 + (2 + 1)) * 4 = 32u
    assert tolerances.variance_bound(x4, (0,), ghost_batches=2) == pytest.approx([32 * U],
                                                                               rel=1e-5)


def test_normalize_bound():
    """x 3, mean 1, variance 3, gamma 2, beta 0.5, epsilon 1: 1 / sqrt(4) = 0.5, output 2.5;
    10u (2 (3 + 1) 0.5 + 0.5 + 2.5) = 70u. A mean off by 1e-6 moves the output by 2 * 0.5 * 1e-6;
    a variance off by 1.75 by up to 2 * |3 - 1| * (1 / sqrt(4 - 1.75) - 1 / 2) = 2/3."""
    args = (3.0, 1.0, 3.0, 2.0, 0.5, 1.0, 2.5)
    assert tolerances.normalize_bound(*args) == pytest.approx(70 * U, rel=1e-9)
    assert tolerances.normalize_bound(*args, mean_error=1e-6) == pytest.approx(70 * U + 1e-6,
                                                                               rel=1e-9)
    assert tolerances.normalize_bound(*args, variance_error=1.75) == pytest.approx(
        70 * U + 2.0 / 3.0, rel=1e-9)


def test_sqrt_and_quotient_bounds():
    """sqrt(4) = 2 with the value off by 1.75: 2u * 2 + (2 - sqrt(2.25)) = 4u + 0.5. 6 / 3 = 2 with
    the numerator off by 0.3 and the denominator by 0.5: (0.3 + 2 * 0.5) / (3 - 0.5) + 2u =
    0.52 + 2u; a denominator that may be 0: no bound."""
    assert tolerances.sqrt_bound(4.0, 2.0) == pytest.approx(4 * U, rel=1e-9)
    assert tolerances.sqrt_bound(4.0, 2.0, value_error=1.75) == pytest.approx(0.5 + 4 * U, rel=1e-9)
    assert tolerances.quotient_bound(6.0, 3.0, 2.0) == pytest.approx(2 * U, rel=1e-9)
    assert tolerances.quotient_bound(6.0, 3.0, 2.0, numerator_error=0.3, denominator_error=0.5) \
        == pytest.approx(0.52 + 2 * U, rel=1e-9)
    assert tolerances.quotient_bound(6.0, 0.5, 12.0, denominator_error=0.5) == math.inf


@pytest.mark.parametrize("printed, within, beyond", [
    # ulp of float32 in [0.5, 1) is 2^-24: 5e-9 + 4 * 5.96e-8 = 2.434e-7
    (0.9991983, 2.42e-7, 2.45e-7),
    (-0.9991983, 2.42e-7, 2.45e-7),
    # ulp in [2^-10, 2^-9) (0.001) is 2^-33 = 1.16e-10: 5e-9 + 4.66e-10 = 5.47e-9
    (-0.001, 5.4e-9, 5.6e-9),
    (0.0, 4.9e-9, 5.1e-9),  # half a unit of the 8th decimal alone
    # ulp in [1024, 2048) is 2^-13 = 1.22e-4: 4 ulps 4.883e-4
    (1234.5678, 4.88e-4, 4.89e-4),
])
def test_printed_numbers_match_to_half_a_unit_of_the_8th_decimal_and_4_ulps(printed, within,
                                                                            beyond):
    """A post's number printed by NumPy (8 decimals) matches ours within half a unit of its 8th
    decimal and 4 float32 units in its last place, and not beyond: the figures worked out by hand."""
    for sign in (1, -1):
        assert tolerances.matches_printed(printed + sign * within, printed)
        assert not tolerances.matches_printed(printed + sign * beyond, printed)
    assert tolerances.printed_match_bound(printed) < beyond
    assert "8th decimal" in tolerances.PRINTED_MATCH_RULE and "4 float32" in \
        tolerances.PRINTED_MATCH_RULE


def test_reference_tolerances_and_relative_errors():
    assert tolerances.reference_tolerance("hidden/kernel/Adam:0") == 1e-2
    assert tolerances.reference_tolerance("hidden/kernel/Adam_1:0") == 1e-2
    assert tolerances.reference_tolerance("hidden/kernel:0") == 1e-4
    assert tolerances.reference_tolerance("Adam_power:0") == 1e-4
    assert tolerances.norm_relative_error([1.0, 2.5], [1.0, 2.0]) == 0.25
    assert tolerances.norm_relative_error([0.0], [0.0]) == 0.0
    assert tolerances.norm_relative_error([1e-9], [0.0]) == math.inf
    assert tolerances.norm_relative_error([math.nan], [1.0]) == math.inf
    assert tolerances.max_errors([1.0, 3.0, 1.0], [2.0, 2.0, 0.0]) == (1.0, math.inf)
    assert tolerances.max_errors([1.5, 0.0], [2.0, 0.0]) == (0.5, 0.25)


# --- Check.compare ----------------------------------------------------------------------------------

def _compared(got, expected, bound):
    check = Check("c")
    check.compare("here", got, expected, bound)
    return check


def test_a_value_at_its_bound_passes_and_beyond_it_fails():
    assert _compared(1.5, 1.0, 0.5).passed  # |1.5 - 1| = 0.5 <= 0.5
    failed = _compared([1.0, 1.5 + 1e-9], [1.0, 1.0], 0.5)
    assert not failed.passed
    assert failed.first_failure == "here, element (1,): expected 1.0, got 1.500000001 (bound 0.5)"
    assert failed.compared == 2 and failed.max_abs_error == pytest.approx(0.5 + 1e-9)
    assert failed.max_rel_error == pytest.approx(0.5 + 1e-9)
    assert failed.max_bound_fraction == pytest.approx(1 + 2e-9)


@pytest.mark.parametrize("got, expected", [(1.0, math.nan), (math.nan, 1.0), (math.inf, math.inf),
                                           (math.nan, math.nan), (-math.inf, 1.0)])
def test_a_non_finite_value_on_either_side_fails_whatever_the_bound(got, expected):
    check = _compared([0.0, got], [0.0, expected], math.inf)
    assert not check.passed
    assert check.first_failure.startswith("here, element (1,): ")
    assert check.first_failure.endswith(" (not finite)")
    assert check.max_abs_error == 0.0 and check.max_bound_fraction == 0.0  # finite elements only


def test_a_zero_bound_holds_only_an_exact_value():
    assert _compared(0.0, 0.0, 0.0).passed
    assert not _compared(1e-30, 0.0, 0.0).passed  # beyond the flushed-subnormal slack
    assert _compared(1e-39, 0.0, 0.0).passed  # a subnormal TensorFlow may flush to 0
    check = _compared([2.0], [2.0], [0.0])
    assert check.max_rel_error == 0.0 and check.max_bound_fraction == 0.0


def test_the_first_failure_is_kept_and_a_failed_comparison_counts():
    check = Check("c")
    check.compare("first", [1.0], [3.0], 0.5)
    check.compare("second", [1.0], [5.0], 0.5)
    check.fail("third", "not applicable")
    assert check.first_failure.startswith("first, element (0,): expected 3.0")
    assert check.compared == 3 and check.max_abs_error == 4.0
    fresh = Check("d")
    fresh.fail("where", "why")
    assert fresh.first_failure == "where: why" and fresh.compared == 1 and not fresh.passed


@pytest.mark.parametrize("virtual_batch_size, convention", [
    (32, formulas.UNBIASED), (32, formulas.BIASED), (None, formulas.UNBIASED)])
def test_an_updates_moments_carry_the_bounds_of_their_ghost_batches_convention_and_channels(
        virtual_batch_size, convention):
    """``records.moments_with_bounds`` on 128 samples of 3 channels: with ghost batches of 32
    (G = 4 of n = 32 values) the mean rounds ``n + 1`` times per ghost batch and ``G + 1`` in their
    average, the variance ``n + 3`` (``+ 2`` unbiased) and ``G + 1``, relative to the variance
    (times ``n / (n - 1)`` unbiased) plus the computed mean's error squared; without ghost batches
    ``n`` is 128 and nothing is averaged. Per channel (shape (3,)), counts written here."""
    from bnrepro.check import records
    from bnrepro.check.layer_modes import LayerMode

    x = (np.random.default_rng(1).standard_normal((128, 3)) * [1.0, 2.0, 3.0]
         + [0.0, 10.0, -5.0]).astype(np.float32).astype(np.float64)
    ghosts = 128 // virtual_batch_size if virtual_batch_size else 1
    n = 128 // ghosts
    averaged = ghosts + 1 if ghosts > 1 else 0
    unbiased = convention == formulas.UNBIASED

    def gamma(count):
        return count * U / (1 - count * U)

    correction = n / (n - 1) if unbiased else 1.0
    mean_bound = gamma(n + 1 + averaged) * np.mean(np.abs(x), axis=0)
    variance = np.var(x, axis=0) * correction
    shift = (gamma(n + 1) * np.max(np.abs(x), axis=0)) ** 2 * correction
    variance_bound = gamma(n + 3 + 2 * unbiased + averaged) * (variance + shift) + shift
    (_, got_mean_bound), (_, got_variance_bound) = records.moments_with_bounds(
        x, convention, LayerMode(virtual_batch_size=virtual_batch_size))
    assert got_mean_bound.shape == got_variance_bound.shape == (3,)
    np.testing.assert_allclose(got_mean_bound, mean_bound, rtol=1e-9)
    np.testing.assert_allclose(got_variance_bound, variance_bound, rtol=1e-9)
