"""``bnrepro reproduce``, the README's first command: every post rebuilt, verified, replayed by the
NumPy reference and compared with the printed numbers, and a failure in any of them fails the run.

Post 002's comparison is shortened here (bn only, 20 steps); the posts' scenarios run as in the
README's command."""
import dataclasses
import os

import pytest

from bnrepro.check import posts, reference
from bnrepro.check.reference import two_sample as two_sample_reference

from bnrepro import reproduce as reproduce_module
from bnrepro.config import EMBEDDED_DATA, CompareConfig

SHORT_COMPARE = CompareConfig(methods="bn", steps=20, data=EMBEDDED_DATA)


def _reproduce(out, lines):
    return reproduce_module.reproduce(str(out), write=lines.append, compare_config=SHORT_COMPARE)


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce") / "out"
    lines = []
    return _reproduce(out, lines), out, lines


def test_reproduce_matches_every_printed_number_and_verifies(reproduced):
    ok, out, lines = reproduced
    assert ok, "\n".join(lines)
    with open(os.path.join(out, "report.md"), encoding="utf-8") as handle:
        report = handle.read()
    printed = len(posts.POST_000) + len(posts.POST_001)
    assert report.count("| match |") == printed and "DIFFERS" not in report
    assert report.count("reference: AGREES at every step") == 2
    assert report.count("PASS: every recorded value") == 3  # cubic, two-sample, compare's bn
    assert report.rstrip().endswith("Result: everything matched and verified.")
    for name in ("cubic", "two-sample", "compare"):
        assert os.path.isdir(os.path.join(out, name))


def test_a_printed_number_that_differs_fails_reproduce(tmp_path, monkeypatch):
    """Post 000's printed moving_mean 0.9730693 moved to 0.9730703 (1e-6, 16 float32 ulps)."""
    changed = [dataclasses.replace(number, printed=0.9730703)
               if number.label == "batch_normalization/moving_mean:0" else number
               for number in posts.POST_000]
    monkeypatch.setitem(reproduce_module.POSTS, "000 (x^3+1 regression)", ("cubic", changed))
    lines = []
    assert _reproduce(tmp_path / "out", lines) is False
    assert "| batch_normalization/moving_mean:0 | 0.9730703 |" in "\n".join(lines)
    assert lines[-1].startswith("reproduce: SOME NUMBERS DIFFER OR FAIL")


def test_a_reference_that_disagrees_fails_reproduce(tmp_path, monkeypatch):
    """The NumPy reference with Adam's bias correction left out disagrees with post 001's step."""
    original = reference.adam_update

    def uncorrected(variables, gradients, learning_rate, **options):
        updated = original({**variables, reference.BETA1_POWER: 0.0, reference.BETA2_POWER: 0.0},
                           gradients, learning_rate, **options)
        for name, beta in ((reference.BETA1_POWER, reference.ADAM_BETA1),
                           (reference.BETA2_POWER, reference.ADAM_BETA2)):
            updated[name] = float(variables[name]) * beta
        return updated

    monkeypatch.setattr(two_sample_reference, "adam_update", uncorrected)  # where the step uses it
    lines = []
    assert _reproduce(tmp_path / "out", lines) is False
    assert "\n   reference: DISAGREES at step 1: " in "\n".join(lines)
