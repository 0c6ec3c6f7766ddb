"""The command line: exit codes and one-line messages for bad input, and whole-or-nothing output."""
import csv
import json
import os
import shutil

import numpy as np
import pytest

from bnrepro.cli import EXIT_FAILED, EXIT_USAGE, main
from bnrepro.trace import ARRAYS_DIRECTORY


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("bnrepro"), err
    return lines[0]


@pytest.mark.parametrize("argv, words", [
    (["run", "nope", "--out", "x"], "unknown scenario 'nope'"),
    (["run", "cubic", "--momentum", "1.5", "--out", "x"], "--momentum must be in [0, 1]"),
    (["run", "cubic", "--momentum", "-0.1", "--out", "x"], "--momentum must be in [0, 1]"),
    (["run", "renorm", "--renorm-momentum", "1.5", "--out", "x"],
     "--renorm-momentum must be in [0, 1], got 1.5"),
    (["compare", "--momentum", "1.01", "--out", "x"], "--momentum must be in [0, 1]"),
    (["run", "cubic", "--epsilon", "0", "--out", "x"], "--epsilon must be greater than 0"),
    (["run", "cubic", "--epochs", "0", "--out", "x"], "--epochs must be a positive"),
    (["run", "cubic", "--batch-size", "-3", "--out", "x"], "--batch-size must be a positive"),
    (["run", "two-sample", "--steps", "0", "--out", "x"], "--steps must be a positive"),
    (["run", "two-sample", "--learning-rate", "0", "--out", "x"], "--learning-rate must be"),
    (["run", "cubic", "--epochs", "ten", "--out", "x"], "invalid int value"),
    (["run", "cubic"], "--out"),
    (["explain", "missing.jsonl", "--step", "1"], "does not exist"),
])
def test_bad_options_get_one_line(capsys, tmp_path, argv, words):
    os.chdir(tmp_path)
    code, _, err = run_cli(capsys, *argv)
    assert code == EXIT_USAGE
    assert words in one_line_error(err)
    assert os.listdir(tmp_path) == []  # nothing written


def test_out_that_is_a_file(capsys, tmp_path):
    target = tmp_path / "file"
    target.write_text("keep me")
    code, _, err = run_cli(capsys, "run", "cubic", "--out", str(target))
    assert code == EXIT_USAGE and "is a file" in one_line_error(err)
    assert target.read_text() == "keep me"


def test_existing_output_is_refused_then_replaced_only_if_bnrepro_wrote_it(capsys, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    code, _, err = run_cli(capsys, "run", "cubic", "--epochs", "2", "--out", str(out))
    assert code == EXIT_USAGE and "--force" in one_line_error(err)
    code, _, err = run_cli(capsys, "run", "cubic", "--epochs", "2", "--force", "--out", str(out))
    assert code == EXIT_USAGE and "not written by bnrepro" in one_line_error(err)
    assert os.listdir(out) == ["old.txt"]
    (out / "old.txt").unlink()
    for extra in ([], ["--force"]):  # into the empty directory, then over bnrepro's own output
        code, stdout, _ = run_cli(capsys, "run", "cubic", "--epochs", "2", "--quiet", *extra,
                                  "--out", str(out))
        assert code == 0
        assert sorted(os.listdir(out)) == [".bnrepro-output.json", "trace.jsonl", "trace_arrays"]
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no staging directory left behind
    lines = (out / "trace.jsonl").read_text().splitlines()
    assert len(lines) == 1 + 3 + 1  # header, step 0, two steps, the end line


def _csv_rows(path):
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_csv_is_written_only_when_asked(capsys, tmp_path):
    """``bnrepro run --csv`` and ``bnrepro trace --csv``: trace.csv beside the trace, every number
    in it (the binary ones too); without the flag, none (the other tests list the files)."""
    import subprocess
    import sys

    from bnrepro.trace import read_trace

    out = tmp_path / "run"
    code, stdout, _ = run_cli(capsys, "run", "cubic", "--epochs", "1", "--quiet", "--csv",
                              "--out", str(out))
    assert code == 0 and "(and trace.csv)" in stdout
    trace, rows = read_trace(str(out)), _csv_rows(out / "trace.csv")
    moving_mean = [float(row["value"]) for row in rows if row["step"] == "1"
                   and row["section"] == "bn" and row["quantity"] == "moving_mean"]
    assert moving_mean == trace.step(1)["bn"]["batch_normalization"]["moving_mean"].tolist()
    inputs = [float(row["value"]) for row in rows if row["step"] == "1"
              and row["section"] == "batch" and row["quantity"] == "inputs"]
    assert inputs == np.ravel(trace.step(1)["batch"]["inputs"]).tolist() and len(inputs) == 3
    script = os.path.join(os.path.dirname(__file__), "user_scripts", "layers_update_ops.py")
    environment = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-m", "bnrepro", "trace", "--csv", "--out",
                           str(tmp_path / "traced"), script], capture_output=True, text=True,
                          env=environment, timeout=600)
    assert done.returncode == 0, done.stderr
    traced = read_trace(str(tmp_path / "traced"))
    rows = _csv_rows(tmp_path / "traced" / "trace.csv")
    batch_mean = [float(row["value"]) for row in rows if row["step"] == "2"
                  and row["quantity"] == "batch_mean"]
    assert batch_mean == traced.step(2)["bn"]["batch_normalization"]["batch_mean"].tolist()


def test_run_verify_explain_round_trip(capsys, tmp_path):
    out = tmp_path / "two"
    code, stdout, _ = run_cli(capsys, "run", "two-sample", "--hidden-kernel-init", "1.4059724",
                              "--out", str(out))
    assert code == 0
    assert "moving mean [0.3514931]" in stdout
    assert "BEFORE the step" in stdout
    code, stdout, _ = run_cli(capsys, "verify", str(out))
    assert code == 0 and "PASS" in stdout
    code, stdout, _ = run_cli(capsys, "explain", str(out), "--step", "1",
                              "--layer", "output/batch_normalization")
    assert code == 0 and "moving_mean = momentum * old" in stdout
    code, _, err = run_cli(capsys, "explain", str(out), "--step", "2")
    assert code == EXIT_USAGE and "step 2 is not a training step" in one_line_error(err)
    code, _, err = run_cli(capsys, "explain", str(out), "--step", "1", "--layer", "nope")
    assert code == EXIT_USAGE and "no batch-norm layer or average 'nope'" in one_line_error(err)


def _write_trace(tmp_path, lines, arrays_of=None):
    """``lines`` as ``tmp_path/trace.jsonl``, with the chunk files of trace ``arrays_of``."""
    path = tmp_path / "trace.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    if arrays_of is not None:
        shutil.copytree(os.path.join(os.path.dirname(arrays_of.path), ARRAYS_DIRECTORY),
                        tmp_path / ARRAYS_DIRECTORY, dirs_exist_ok=True)
    return str(path)


def _good_lines(cubic_trace):
    with open(cubic_trace.path, encoding="utf-8") as handle:
        return handle.read().splitlines()


def test_bad_traces(capsys, tmp_path, cubic_trace):
    good = _good_lines(cubic_trace)
    header = json.loads(good[0])
    step = json.loads(good[2])
    other_version = json.dumps(dict(header, format="bnrepro-trace/9"))
    step["bn"]["batch_normalization"]["moving_mean"] = [0.0, 1.0]
    mismatched = json.dumps(step)
    cases = {
        "truncated": (good[:3] + [good[3][: len(good[3]) // 2]] + good[4:], "line 4 is not valid"),
        "not JSON": (["this is not json"], "line 1 is not valid JSON"),
        "other version": ([other_version] + good[1:], "bnrepro-trace/9"),
        "mismatched shapes": (good[:2] + [mismatched], "has shape"),
        "empty": ([], "is empty"),
    }
    for name, (lines, words) in cases.items():
        path = _write_trace(tmp_path, lines, arrays_of=cubic_trace)
        code, _, err = run_cli(capsys, "verify", path)
        assert code == EXIT_USAGE, name
        assert words in one_line_error(err), name


def test_a_last_line_cut_short_is_left_out(capsys, tmp_path, cubic_trace):
    """A run killed while it wrote a line: the trace reads without it and verify says INCOMPLETE
    (exit 1), not an error."""
    good = _good_lines(cubic_trace)
    path = _write_trace(tmp_path, good[:4] + [good[4][: len(good[4]) // 2]], arrays_of=cubic_trace)
    code, stdout, err = run_cli(capsys, "verify", path)
    assert code == EXIT_FAILED and err == ""
    assert stdout.rstrip().splitlines()[-1].startswith(
        "INCOMPLETE: the trace has no end line after step 2")


def test_verify_exits_1_on_a_wrong_value(capsys, tmp_path, cubic_trace):
    lines = _good_lines(cubic_trace)
    step = json.loads(lines[5])  # step 4; its moving_mean a reference, replaced by text
    moving_mean = cubic_trace.step(4)["bn"]["batch_normalization"]["moving_mean"]
    step["bn"]["batch_normalization"]["moving_mean"] = (moving_mean + [0.01]).tolist()
    lines[5] = json.dumps(step)
    code, stdout, _ = run_cli(capsys, "verify", _write_trace(tmp_path, lines, cubic_trace))
    assert code == EXIT_FAILED
    assert "FAIL: moving_mean update: step 4" in stdout


def test_reference_command_replays_and_shows_the_still_bias(capsys, cubic_trace):
    code, stdout, _ = run_cli(capsys, "reference", cubic_trace.path)
    assert code == 0
    assert len([line for line in stdout.splitlines() if line[:4].strip().isdigit()]) == 10
    assert "gradient of Variable_1:0 is zero at every step" in stdout


def test_missing_tf_keras_is_one_line(tmp_path):
    """Without tf-keras, the command says what to install instead of failing inside TensorFlow."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['tf_keras'] = None\n"
            "from bnrepro.cli import main\n"
            f"sys.exit(main(['run', 'cubic', '--out', {str(tmp_path / 'out')!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == EXIT_USAGE
    assert result.stderr.strip().splitlines() == [
        "bnrepro: error: the legacy Keras layers are missing: pip install 'tf-keras==2.21.*' "
        "(the tf-keras release matching your tensorflow)"]
    assert not (tmp_path / "out").exists()


def test_a_reader_that_goes_away_is_not_a_traceback(cubic_trace):
    """``bnrepro verify TRACE | head -1``: the pipe closes before bnrepro writes; it stops quietly."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "bnrepro", "verify", str(cubic_trace.path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # long before the interpreter has imported bnrepro and printed
    err = process.stderr.read().decode()
    assert process.wait() == 141
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_a_failing_trace_writer_is_one_line(capsys, monkeypatch):
    import bnrepro.cli
    from bnrepro.trace.process import TraceWriterError

    def fail(argv):
        raise TraceWriterError(1, "Traceback (most recent call last):\n  ...\n"
                                  "OSError: [Errno 28] No space left on device\n")

    monkeypatch.setattr(bnrepro.cli, "_dispatch", fail)
    code, _, err = run_cli(capsys, "compare", "--out", "x")
    assert code == EXIT_FAILED
    assert one_line_error(err) == ("bnrepro: error: the trace writer process failed (exit status "
                                   "1): OSError: [Errno 28] No space left on device")


def test_missing_parents_of_out_are_created_and_removed_on_failure(capsys, tmp_path):
    """README's first command writes ``out/reproduce`` on a fresh clone, where ``out/`` is missing."""
    out = tmp_path / "out" / "runs" / "cubic"
    code, _, _ = run_cli(capsys, "run", "cubic", "--epochs", "1", "--quiet", "--out", str(out))
    assert code == 0 and sorted(os.listdir(out)) == [".bnrepro-output.json", "trace.jsonl",
                                                     "trace_arrays"]
    from bnrepro.outdir import output_directory

    with pytest.raises(RuntimeError):  # a command failing half-way
        with output_directory(str(tmp_path / "new" / "deeper" / "two")) as staging:
            assert os.path.isdir(tmp_path / "new" / "deeper")
            open(os.path.join(staging, "half.txt"), "w").close()
            raise RuntimeError("failed")
    assert sorted(os.listdir(tmp_path)) == ["out"]  # new/deeper created for the run, then removed
    (tmp_path / "file").write_text("keep me")
    code, _, err = run_cli(capsys, "run", "cubic", "--out", str(tmp_path / "file" / "sub" / "x"))
    assert code == EXIT_USAGE and "is a file, not a directory" in one_line_error(err)
