"""The command answers at once when it has nothing to compute (issue 11, item 5).

``--help``, ``--version`` and every bad option or config value are answered without importing
TensorFlow (about 4 s), tf_keras, matplotlib or mlxtend. Each case runs ``python -m bnrepro`` in a
fresh interpreter and reports which of those modules were loaded when it exited; the exit status
and the first line of output are checked too. (How long it takes is measured by
``scripts/cli_timing.py``, not here.)

The last tests check that the TensorFlow-free tables the CLI reads (config types, method and
initialiser names) agree with the TensorFlow modules they stand in for.
"""
import dataclasses
import json
import subprocess
import sys

import pytest

import bnrepro
from bnrepro import config
from bnrepro.scenarios import SCENARIO_CONFIGS, SCENARIO_SUMMARIES

HEAVY = ("tensorflow", "tf_keras", "matplotlib", "mlxtend")
LOADED = "LOADED-MODULES "

# ``python -m bnrepro ARGS``, reporting at exit which of HEAVY (and bnrepro.cli, to show that the
# report sees what the command loaded) are in sys.modules, as the last line of stderr.
PROBE = f"""
import atexit, json, runpy, sys
watched = {HEAVY + ("bnrepro.cli",)!r}
atexit.register(lambda: sys.stderr.write(
    "\\n{LOADED}" + json.dumps([m for m in watched if m in sys.modules]) + "\\n"))
sys.argv[0] = "bnrepro"
runpy.run_module("bnrepro", run_name="__main__", alter_sys=True)
"""


@dataclasses.dataclass
class Answer:
    status: int
    stdout: str
    stderr: str  # without the probe's line
    loaded: list


def ask(cwd, *argv):
    result = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=cwd, capture_output=True,
                            text=True, timeout=120)
    lines = result.stderr.rstrip("\n").split("\n")
    assert lines[-1].startswith(LOADED), result.stderr
    stderr = "\n".join(lines[:-1]).strip()
    return Answer(result.returncode, result.stdout, stderr, json.loads(lines[-1][len(LOADED):]))


def first_line(text):
    return text.strip().splitlines()[0] if text.strip() else ""


def check_light(answer):
    """The command ran (bnrepro.cli was loaded) and loaded none of HEAVY."""
    assert "bnrepro.cli" in answer.loaded
    assert [m for m in answer.loaded if m in HEAVY] == [], answer


def test_version(tmp_path):
    answer = ask(tmp_path, "--version")
    check_light(answer)
    assert (answer.status, answer.stdout, answer.stderr) == (0, f"bnrepro {bnrepro.__version__}\n", "")
    assert bnrepro.__version__ == "0.1.0"


COMMAND_HELP = [
    ([], "usage: bnrepro [-h] [--version] COMMAND ..."),
    (["run"], "usage: bnrepro run [-h] SCENARIO ..."),
    (["verify"], "usage: bnrepro verify [-h] [--plot [DIR]] TRACE"),
    (["plot"], "usage: bnrepro plot [-h] [--out DIR] [--force] [--layer NAME]"),
    (["tensorboard"], "usage: bnrepro tensorboard [-h] --logdir LOGDIR [--layer NAME]"),
    (["explain"], "usage: bnrepro explain [-h] --step STEP [--layer LAYER] [--channel CHANNEL]"),
    (["reference"], "usage: bnrepro reference [-h] TRACE"),
    (["reproduce"], "usage: bnrepro reproduce [-h] --out DIR [--force]"),
    (["compare"], "usage: bnrepro compare [-h] --out DIR [--force] [--units UNITS]"),
    (["trace"], "usage: bnrepro trace [-h] --out DIR [--force] [--csv] [--inputs-every N]"),
]


@pytest.mark.parametrize("command, usage", COMMAND_HELP, ids=lambda x: " ".join(x) or "bnrepro"
                         if isinstance(x, list) else None)
def test_help(tmp_path, command, usage):
    answer = ask(tmp_path, *command, "--help")
    check_light(answer)
    assert answer.status == 0 and answer.stderr == ""
    assert first_line(answer.stdout) == usage
    if command == ["compare"]:  # every CompareConfig field is an option
        for item in dataclasses.fields(config.CompareConfig):
            assert "--" + item.name.replace("_", "-") in answer.stdout


def test_help_lists_every_scenario(tmp_path):
    answer = ask(tmp_path, "run", "--help")
    check_light(answer)
    for name, summary in SCENARIO_SUMMARIES.items():
        assert name in answer.stdout


@pytest.mark.parametrize("scenario", list(SCENARIO_SUMMARIES))
def test_scenario_help_has_every_option(tmp_path, scenario):
    answer = ask(tmp_path, "run", scenario, "--help")
    check_light(answer)
    assert answer.status == 0 and answer.stderr == ""
    assert first_line(answer.stdout).startswith(f"usage: bnrepro run {scenario} [-h] --out DIR")
    for item in dataclasses.fields(SCENARIO_CONFIGS[scenario]):
        assert "--" + item.name.replace("_", "-") in answer.stdout


BAD_INPUT = [
    (["run", "cubic", "--momentum", "2", "--out", "x"],
     "bnrepro: error: --momentum must be in [0, 1], got 2.0"),
    (["run", "cubic", "--epochs", "ten", "--out", "x"],
     "bnrepro run cubic: error: argument --epochs: invalid int value: 'ten'"),
    (["run", "two-sample", "--learning-rate", "0", "--out", "x"],
     "bnrepro: error: --learning-rate must be greater than 0, got 0.0"),
    (["run", "nope", "--out", "x"],
     "bnrepro: error: unknown scenario 'nope'; choose from cubic, two-sample, fused-variance, "
     "no-update-ops, training-not-fed, epsilon, ghost-batch, renorm"),
    (["run", "cubic"], "bnrepro run cubic: error: the following arguments are required: --out"),
    (["run"], "bnrepro run: error: the following arguments are required: SCENARIO"),
    (["run", "ghost-batch", "--training", "xx", "--out", "x"],
     "bnrepro: error: --training must be one of python-bool, tensor, got 'xx'"),
    (["run", "ghost-batch", "--virtual-batch-size", "3", "--out", "x"],
     "bnrepro: error: --virtual-batch-size 3 must be positive and divide --batch-size 8"),
    (["run", "fused-variance", "--values", "1,2", "--out", "x"],
     "bnrepro: error: --values must be exactly four numbers (a 2x2 image), got 2"),
    (["run", "renorm", "--epsilon", "-1", "--out", "x"],
     "bnrepro: error: --epsilon must be greater than 0, got -1.0"),
    (["compare", "--steps", "0", "--out", "x"],
     "bnrepro: error: --steps must be a positive whole number, got 0"),
    (["compare", "--methods", "xx", "--out", "x"],
     "bnrepro: error: unknown method 'xx'; choose from none, wn, wn-init, bn, ln"),
    (["compare", "--methods", "bn,bn", "--out", "x"],
     "bnrepro: error: --methods lists a method twice: bn,bn"),
    (["compare", "--weight-init", "ones", "--out", "x"],
     "bnrepro: error: unknown --weight-init 'ones'; choose from truncated-normal, glorot-uniform"),
    (["compare", "--eval-batch-size", "0", "--out", "x"],
     "bnrepro: error: --eval-batch-size must be a positive whole number, got 0"),
    (["compare"], "bnrepro compare: error: the following arguments are required: --out"),
    (["reproduce"], "bnrepro reproduce: error: the following arguments are required: --out"),
    (["run", "cubic", "--out", "full"],
     "bnrepro: error: full already exists and is not empty; pass --force to replace it"),
    (["compare", "--out", "full"],
     "bnrepro: error: full already exists and is not empty; pass --force to replace it"),
    (["reproduce", "--force", "--out", "full"],
     "bnrepro: error: full is not empty and was not written by bnrepro (it has no "
     ".bnrepro-output.json); --force replaces only bnrepro's own output or an empty directory"),
    (["trace", "--out", "x", "missing.py"], "bnrepro: error: missing.py is not a file"),
    (["trace", "--out", "x", "--inputs-every", "0", __file__],
     "bnrepro: error: --inputs-every must be a positive whole number, got 0"),
    (["frobnicate"], "bnrepro: error: argument COMMAND: invalid choice: 'frobnicate' (choose from "
                     "'run', 'verify', 'explain', 'plot', 'tensorboard', 'reference', 'reproduce', "
                     "'compare', 'trace')"),
]


@pytest.mark.parametrize("argv, message", BAD_INPUT, ids=lambda x: " ".join(x)
                         if isinstance(x, list) else None)
def test_bad_input_is_answered_before_tensorflow(tmp_path, argv, message):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep me")
    answer = ask(tmp_path, *argv)
    check_light(answer)
    assert answer.status == 2 and answer.stdout == ""
    assert answer.stderr == message  # one line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]  # nothing written
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["mine.txt"]


# --- the TensorFlow-free tables agree with the TensorFlow modules (these import TensorFlow) --------

def test_scenario_config_types_are_the_scenarios_own():
    from bnrepro.scenarios import get_scenario

    assert set(SCENARIO_CONFIGS) == set(SCENARIO_SUMMARIES)
    for name, config_type in SCENARIO_CONFIGS.items():
        assert get_scenario(name).config_type is config_type, name


def test_method_and_initializer_names_match_mnist_graphs():
    from bnrepro.compare import run as compare
    from bnrepro.graphs import mnist as mnist_graphs

    assert config.METHOD_NAMES == tuple(mnist_graphs.METHODS)
    assert config.WEIGHT_INITIALIZER_NAMES == tuple(mnist_graphs.WEIGHT_INITIALIZERS)
    assert compare.CompareConfig is config.CompareConfig
    assert mnist_graphs.NetConfig is config.NetConfig
    assert compare.EMBEDDED_DATA == config.EMBEDDED_DATA
