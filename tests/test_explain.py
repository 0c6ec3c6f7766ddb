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


@pytest.mark.parametrize("scenario, layer, mode", [
    ("ghost-batch", None, "mode (from the header): ghost batches of 2 strided samples "
                          "(virtual_batch_size=2)"),
    ("ghost-batch", None, "mode (from the header): ghost batches of 4 strided samples "
                          "(virtual_batch_size=4)"),
    ("renorm", None, "mode (from the header): renorm (renorm_momentum 0.9, clipping rmin 0.667, "
                     "rmax 1.5, dmax 0.5)"),
    ("fused-variance", "fused/batch_normalization",
     "mode (from the header): the fused kernel (its update averages the unbiased /(N-1) batch "
     "variance)"),
], ids=["ghost-2", "ghost-4", "renorm", "fused"])
def test_a_layers_mode_is_named_and_computed_under(scenario_trace, scenario, layer, mode):
    """Every step's explanation names the layer's mode on its second line and recomputes what
    TensorFlow stored under it to float32 rounding (a ghost-batch step's batch variance computed
    over the whole batch was 0.78 off; renorm's moving variance, averaged as a variance, 2e-5)."""
    trace = scenario_trace(scenario, **({"virtual_batch_size": 4} if "4 strided" in mode else {}))
    for record in trace.steps[1:]:
        lines = explain_step(trace, record["step"], layer).splitlines()
        assert lines[1] == mode
        differences = [float(d) for d in re.findall(r"difference (\S+)", "\n".join(lines))]
        assert len(differences) >= 5 and max(map(abs, differences)) < 1e-5, "\n".join(lines)


def test_ghost_batches_are_listed_as_tensorflow_splits_them(scenario_trace):
    """8 samples in ghost batches of 2: tf_keras reshapes the batch to (2, 4, C), so ghost batch
    j holds samples j and j + 4 (strided); the batch statistics are the mean of the 4 ghost
    batches' moments, each variance over 2 samples."""
    trace = scenario_trace("ghost-batch")
    lines = explain_step(trace, 1).splitlines()
    assert "4 ghost batches of 2 strided samples, each normalised with its own moments:" in lines
    listed = [line for line in lines if line.startswith("  ghost batch ")]
    assert [line.split(":")[0] for line in listed] == [
        f"  ghost batch {j + 1}, samples {j}, {j + 4}" for j in range(4)]
    assert all(") / 2 = " in line for line in listed)
    assert any(line.startswith("batch_variance = (") and ") / 4 = " in line for line in lines)


def test_a_standard_layer_names_no_mode(cubic_trace):
    assert not explain_step(cubic_trace, 3).splitlines()[1].startswith("mode")
