"""explain writes the answer's hand calculation with the trace's numbers."""
import re

import pytest

from bnrepro.check.explain import explain_step


def test_two_sample_step_matches_the_answer(two_sample_trace):
    text = explain_step(two_sample_trace, 1)
    # the answer: moving mean = 0.0 * 0.5 + (1 - 0.5) * ~0.7 = 0.35; variance 0.5 * 1 + 0.5 * ~0.5
    assert "= 0.5 * 0 + (1 - 0.5) * 0.70298618 = 0.35149309" in text
    assert "TensorFlow: 0.35149309" in text  # the post printed 0.3514931
    assert "= 0.5 * 1 + (1 - 0.5) * 0.49418956" in text
    differences = [float(d) for d in re.findall(r"difference (\S+)", text)]
    assert len(differences) == 5
    assert max(abs(d) for d in differences) < 1e-6


def test_cubic_inference_line(cubic_trace):
    text = explain_step(cubic_trace, 10)
    # post 000's printout: bn1[0] = 1.0949917 from hidden_tmp[0] = 1.6103973
    line = next(line for line in text.splitlines() if line.startswith("   = "))
    assert "(1.6103973 - 0.97306931)" in line
    # the stored value to the post's printed digits; its last float32 digit depends on the CPU
    # (1.0949918 on one machine here, 1.0949917 on another)
    stored = float(re.search(r"TensorFlow: (\S+)", line).group(1))
    assert abs(stored - 1.0949917) <= 1.5e-7


@pytest.mark.parametrize("step", [0, 11, -1])
def test_steps_outside_the_trace(cubic_trace, step):
    from bnrepro.errors import UserError
    with pytest.raises(UserError, match="not a training step"):
        explain_step(cubic_trace, step)
