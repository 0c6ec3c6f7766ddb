"""Progress bars (``tqdm``): what a bar shows (the method, its count, loss and accuracy, the NaN
note) and where it goes: the given stream, else stderr, never stdout, which carries the results
tables (``bnrepro compare``, ``bnrepro reproduce``, ``scripts/compare_seeds.py``)."""
import dataclasses
import importlib.util
import io
import os
import re
import sys

import pytest

from bnrepro.config import EMBEDDED_DATA, CompareConfig

from bnrepro.compare.progress import ProgressBar

from bnrepro.compare.run import run_compare
from bnrepro.config import option
from bnrepro.reproduce import reproduce

SCRIPTS = os.path.join(os.path.dirname(__file__), "..", "scripts")
BAR = re.compile(r"^(?P<label>[\w-]+): +\d+%\|")  # tqdm's "bn:  40%|####      | 120/300 [..."


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self):
        return True


def bar_lines(text):
    return [line for line in text.splitlines() if BAR.match(line)]


def labels(text):
    return [BAR.match(line)["label"] for line in bar_lines(text)]


def test_bar_writes_method_final_count_and_nan_note_to_the_given_stream(capsys):
    stream = io.StringIO()
    progress = ProgressBar("wn-init", 300, stream)
    for step in range(1, 28):
        progress(step, 0.5, 0.25)
    progress.close("stopped: NaN loss at step 27")
    text = stream.getvalue()
    # not a terminal: nothing while it runs, then one line, the final state
    assert text.endswith("\n") and text.count("\n") == 1 and "\r" not in text
    assert text.startswith("wn-init:   9%|") and " 27/300 [" in text
    assert text.rstrip().endswith("loss 0.500  acc 0.250  stopped: NaN loss at step 27]")
    assert capsys.readouterr() == ("", "")


def test_without_a_stream_the_bar_goes_to_stderr_not_stdout(capsys):
    progress = ProgressBar("bn", 3)
    for step in range(1, 4):
        progress(step, 1.0, 0.5)
    progress.close()
    out, err = capsys.readouterr()
    assert out == ""
    assert labels(err) == ["bn"] and " 3/3 [" in err and "loss 1.000  acc 0.500]" in err


def test_on_a_terminal_the_bar_is_redrawn_in_place_and_ends_on_its_final_state(capsys,
                                                                               monkeypatch):
    monkeypatch.setattr(ProgressBar, "interval", 0)  # redraw at every step
    stream = Terminal()
    progress = ProgressBar("ln", 50, stream)
    for step in range(1, 51):
        progress(step, 0.125, 0.75)
    progress.close("stopped: NaN loss at step 50")
    text = stream.getvalue()
    assert text.count("\r") > 10 and text.endswith("\n") and text.count("\n") == 1
    final = text.rstrip("\n").split("\r")[-1].rstrip()
    assert final.startswith("ln: 100%|") and " 50/50 [" in final
    assert final.endswith("loss 0.125  acc 0.750  stopped: NaN loss at step 50]")
    assert capsys.readouterr() == ("", "")


def test_beside_prints_lines_on_stdout_around_a_live_bar(capsys):
    stream = Terminal()
    progress = ProgressBar("reproduce", 3, stream, unit="post")
    progress.update(1, "post 001: two-sample")
    write = progress.beside(print)
    before = len(stream.getvalue())
    write("| table |")
    assert capsys.readouterr() == ("| table |\n", "")
    redrawn = stream.getvalue()[before:]
    assert redrawn.split("\r")[-1].startswith("reproduce:  33%|")  # cleared, then drawn again
    assert "post 001: two-sample" in redrawn.split("\r")[-1]
    progress.close()
    # not on a terminal there is nothing to clear: the printer itself
    assert ProgressBar("bn", 3, io.StringIO()).beside(print) is print


def test_compare_prints_tables_on_stdout_and_a_bar_per_method_with_the_nan_note_on_stderr(
        capsys, tmp_path):
    config = CompareConfig(methods="none", steps=10, units=16, eval_every=5, data=EMBEDDED_DATA,
                           learning_rate=1e30)  # overflows: NaN within a few steps
    comparison = run_compare(config, str(tmp_path / "out"))
    out, err = capsys.readouterr()
    diverged = comparison.summaries[0].diverged_at
    assert diverged is not None
    assert "| none |" in out and not bar_lines(out) and "step/s" not in out
    (line,) = bar_lines(err)
    assert line.startswith("none:") and f" {diverged}/10 [" in line
    assert line.endswith(f"stopped: NaN loss at step {diverged}]")


def test_reproduce_shows_a_bar_over_the_posts_on_stderr_and_its_results_on_stdout(capsys,
                                                                                  tmp_path):
    short = CompareConfig(methods="bn", steps=5, units=16, eval_every=5, data=EMBEDDED_DATA)
    assert reproduce(str(tmp_path / "out"), compare_config=short)
    out, err = capsys.readouterr()
    assert "| Variable:0 (w) |" in out and "reproduce: everything matched and verified" in out
    assert not bar_lines(out) and "post/s" not in out
    assert labels(err) == ["bn", "reproduce"]  # post 002's method bar, then the posts' bar
    assert " 5/5 [" in bar_lines(err)[0] and " 3/3 [" in bar_lines(err)[1]


@dataclasses.dataclass(frozen=True)
class SmallCompare(CompareConfig):
    """``scripts/compare_seeds.py`` with one small method, for speed."""

    methods: str = option("none", "methods")
    units: int = option(16, "hidden units")


@pytest.fixture
def compare_seeds(monkeypatch):
    spec = importlib.util.spec_from_file_location("compare_seeds",
                                                  os.path.join(SCRIPTS, "compare_seeds.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "CompareConfig", SmallCompare)
    return module


def test_compare_seeds_shows_a_bar_over_the_seeds_on_stderr_and_its_table_on_stdout(
        capsys, tmp_path, monkeypatch, compare_seeds):
    monkeypatch.setattr(sys, "argv", ["compare_seeds.py", "--out", str(tmp_path / "seeds"),
                                      "--seeds", "0,1", "--steps", "5"])
    compare_seeds.main()
    out, err = capsys.readouterr()
    assert "== seed 0" in out and "== seed 1" in out and "| none | –, – |" in out
    assert not bar_lines(out) and "seed/s" not in out
    assert labels(err) == ["none", "none", "seeds"]
    assert " 2/2 [" in bar_lines(err)[-1]
