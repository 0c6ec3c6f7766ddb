"""The numbers the posts printed, reproduced by the rebuilt graphs (seeds/README.md lists them)."""
import pytest

import numpy as np

from bnrepro.check.posts import POST_000, POST_001, compare_printed


@pytest.mark.parametrize("fixture, printed", [("cubic_trace", POST_000),
                                              ("two_sample_trace", POST_001)])
def test_every_printed_number_is_reproduced(request, fixture, printed):
    trace = request.getfixturevalue(fixture)
    rows = compare_printed(trace, printed)
    assert len(rows) == len(printed)
    for label, expected, ours, difference, verdict in rows:
        # NumPy printed the post's float32 values as the shortest decimal naming them, cut at 8
        # decimals (beta -0.00099999784 shows as -0.001): ours is that value to half a unit of the
        # 8th decimal, give or take 4 float32 units in the last place (another CPU's kernels)
        ulp = float(np.spacing(np.float32(abs(expected))))
        assert abs(ours - expected) <= 0.5e-8 + 4 * ulp, label
        assert verdict == "match"


def test_a_number_one_printed_digit_off_differs(cubic_trace):
    """moving_mean printed 0.9730693 (ours 0.97306931); 0.9730695 is 1.9e-7 away, within 0.5e-8 +
    4 float32 ulps of 6e-8 = 2.4e-7: a match; 0.9730699 (5.9e-7) is not."""
    import dataclasses

    for printed, verdict in ((0.9730695, "match"), (0.9730699, "DIFFERS")):
        number = next(n for n in POST_000 if n.label == "batch_normalization/moving_mean:0")
        row = compare_printed(cubic_trace, [dataclasses.replace(number, printed=printed)])[0]
        assert row[-1] == verdict, row


def test_post_000_bn1_needs_the_layer_epsilon_not_the_posts(cubic_trace):
    """The post writes eps = 0.00001, but only the layer's default 0.001 gives its printed bn1[0]."""
    from bnrepro.check.formulas import normalize

    before = cubic_trace.step(9)["bn"]["batch_normalization"]
    hidden_tmp = cubic_trace.step(10)["inference"]["batch_normalization"]["input"][0, 0]

    def bn1(epsilon):
        return normalize(hidden_tmp, before["moving_mean"], before["moving_variance"],
                         before["gamma"], before["beta"], epsilon)[0]

    assert bn1(0.001) == pytest.approx(1.0949917, abs=1e-6)
    assert abs(bn1(0.00001) - 1.0949917) > 1e-3  # 1.09616...


def test_post_000_bias_before_batch_norm_never_moves(cubic_trace):
    for record in cubic_trace.steps:
        assert record["variables"]["Variable_1:0"] == [1.0]


def test_post_001_moving_mean_uses_the_kernel_before_the_step(two_sample_trace):
    """The answer's point: the update saw x * kernel_before; the printout shows x * kernel_after."""
    before = two_sample_trace.step(0)["variables"]["hidden1/dense/kernel:0"][0][0]
    after = two_sample_trace.step(1)["variables"]["hidden1/dense/kernel:0"][0][0]
    layer = two_sample_trace.step(1)["bn"]["hidden1/batch_normalization"]
    # momentum 0.5, moving_mean starts at 0, batch = [0, kernel]: moving_mean = kernel / 4
    assert layer["moving_mean"][0] == pytest.approx(before / 4, rel=1e-6)
    assert abs(layer["moving_mean"][0] - after / 4) > 1e-4
