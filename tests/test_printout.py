"""``bnrepro run cubic`` and ``bnrepro run two-sample`` print one block per step, like the posts;
each block opens with a line naming the step and saying what the block shows (the posts printed
no such line, so a reader of ten blocks of bare numbers could not tell them apart)."""
import re

from bnrepro.cli import main
from bnrepro.reproduce import SHOWN_STEP, trace_as_json
from bnrepro.scenarios import get_scenario

CUBIC_LABEL = re.compile(r"^step (\d+) \(its batch; before the update: (.+), hidden_tmp and bn1 in "
                         r"inference mode; after it: result_loss\):$")
TWO_SAMPLE_LABEL = re.compile(r"^step (\d+) \(the state after its Adam step\):$")


def run_cli(capsys, *argv):
    assert main(list(argv)) == 0
    return capsys.readouterr().out.splitlines()


def test_cubic_blocks_are_labelled(capsys, tmp_path):
    lines = run_cli(capsys, "run", "cubic", "--out", str(tmp_path / "x"))
    labels = [(number, CUBIC_LABEL.match(line)) for number, line in enumerate(lines)
              if line.startswith("step")]
    assert [int(match.group(1)) for _, match in labels] == list(range(1, 11)), lines
    assert labels[0][0] == 0, "the printout should open with step 1's label"
    assert [match.group(2) for _, match in labels] == (
        ["the initial variables"] + [f"the variables after step {step}" for step in range(1, 10)])
    for (start, _), (end, _) in zip(labels, labels[1:] + [(len(lines) - 1, None)]):
        block = lines[start + 1:end]
        assert block[0].startswith("[[0.") and block[1].startswith("Variable:0 [[")  # the batch, w
        assert block[-1].startswith("result_loss: ") and not any(
            line.startswith("step") for line in block)
    # the block the post shows: the 10th batch and the state after step 9
    assert lines[labels[-1][0] + 1].startswith("[[0.6108869734438016], [0.9130110532378982]")
    assert lines[-1].startswith("trace written to ")


def test_two_sample_blocks_are_labelled_and_explain_their_own_step(capsys, tmp_path):
    lines = run_cli(capsys, "run", "two-sample", "--steps", "3", "--hidden-kernel-init",
                    "1.4059724", "--output-kernel-init", "-0.284", "--out", str(tmp_path / "x"))
    starts = [number for number, line in enumerate(lines) if line.startswith("step")]
    assert [TWO_SAMPLE_LABEL.match(lines[number]).group(1) for number in starts] == ["1", "2", "3"]
    assert starts[0] == 0
    assert all(lines[number + 1] == "weight of hidden layer" for number in starts)
    # the closing line works the update of the block's own step, from the moving mean before it
    updates = [line for line in lines if line.startswith("  moving_mean = momentum * ")]
    assert [line.endswith(f"(see: bnrepro explain TRACE --step {step})")
            for step, line in enumerate(updates, start=1)] == [True] * 3
    printed_means = [float(line.split()[2].strip("[]")) for line in lines
                     if line.startswith("moving mean [")]
    for step, line in enumerate(updates):
        old, batch_mean, new = (float(number) for number in re.findall(
            r"momentum \* (\S+) \+ \(1 - momentum\) \* (\S+) = (\S+)", line)[0])
        assert abs(old - (0.0 if step == 0 else printed_means[step - 1])) < 1e-6
        assert abs(0.5 * old + 0.5 * batch_mean - new) < 1e-6  # momentum 0.5
        assert abs(new - printed_means[step]) < 1e-6


def test_reproduce_prints_the_shown_steps_with_their_labels(cubic_trace, two_sample_trace):
    """``bnrepro reproduce`` prints the step each post shows through the same printers, after its
    own line "-- the printout of step N, as the post prints it:"."""
    first_lines = {}
    for name, trace, label in (("cubic", cubic_trace, CUBIC_LABEL),
                               ("two-sample", two_sample_trace, TWO_SAMPLE_LABEL)):
        shown, lines = SHOWN_STEP[name], []
        get_scenario(name).print_step(trace_as_json(trace, shown - 1), trace_as_json(trace, shown),
                                      lines.append)
        assert label.match(lines[0]).group(1) == str(shown)
        assert not any(line.startswith("step") for line in lines[1:])
        first_lines[name] = lines[:2]
    assert first_lines["cubic"] == [
        "step 10 (its batch; before the update: the variables after step 9, hidden_tmp and bn1 in "
        "inference mode; after it: result_loss):",
        "[[0.6108869734438016], [0.9130110532378982], [0.9666063677707588]]"]
    assert first_lines["two-sample"] == ["step 1 (the state after its Adam step):",
                                         "weight of hidden layer"]
