"""Output directories (bnrepro.outdir): ``--force`` replaces only what bnrepro wrote, and in place;
OS errors are one line; new directories follow the umask; a failure leaves nothing behind."""
import json
import os
import stat

import pytest

from bnrepro.cli import EXIT_USAGE, main
from bnrepro.errors import UserError
from bnrepro.outdir import output_directory

MARKER = ".bnrepro-output.json"  # the name users see, so spelled out rather than imported


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("bnrepro: error: "), err
    return lines[0]


def write_output(path, files, *, force=False):
    """Write ``files`` ({relative path: text}) as a bnrepro output directory at ``path``."""
    with output_directory(str(path), force=force) as staging:
        for name, text in files.items():
            file_path = os.path.join(staging, name)
            os.makedirs(os.path.dirname(file_path), exist_ok=True)
            with open(file_path, "w", encoding="utf-8") as handle:
                handle.write(text)


def snapshot(directory):
    """``{relative path: text, or None for a directory}`` of everything under ``directory``."""
    contents = {}
    for parent, directories, files in os.walk(directory):
        for name in directories:
            contents[os.path.relpath(os.path.join(parent, name), directory)] = None
        for name in files:
            with open(os.path.join(parent, name), encoding="utf-8") as handle:
                contents[os.path.relpath(os.path.join(parent, name), directory)] = handle.read()
    return contents


def marker_entries(directory):
    with open(os.path.join(directory, MARKER), encoding="utf-8") as handle:
        return json.load(handle)["written"]


def make_user_directory(path, files):
    for name, text in files.items():
        os.makedirs(os.path.dirname(os.path.join(path, name)), exist_ok=True)
        with open(os.path.join(path, name), "w", encoding="utf-8") as handle:
            handle.write(text)


PROJECT = {"notes.txt": "my notes", "src/main.py": "print('mine')"}
GIT_REPOSITORY = {".git/HEAD": "ref: refs/heads/main\n", ".git/config": "[core]\n",
                  "README.md": "# mine\n"}


def test_force_on_the_working_directory_is_refused_and_touches_nothing(capsys, tmp_path,
                                                                      monkeypatch):
    """``bnrepro run cubic --out . --force`` once deleted every file in the working directory."""
    work = tmp_path / "work"
    make_user_directory(work, PROJECT)
    before = snapshot(work)
    monkeypatch.chdir(work)
    code, _, err = run_cli(capsys, "run", "cubic", "--epochs", "1", "--quiet", "--out", ".",
                           "--force")
    assert code == EXIT_USAGE
    assert "not written by bnrepro" in one_line_error(err)
    assert snapshot(work) == before
    assert os.listdir(tmp_path) == ["work"]  # no staging directory left behind


@pytest.mark.parametrize("files", [PROJECT, GIT_REPOSITORY], ids=["project", "git-repository"])
def test_force_refuses_a_directory_bnrepro_did_not_write(tmp_path, files):
    out = tmp_path / "repo"
    make_user_directory(out, files)
    before = snapshot(out)
    with pytest.raises(UserError, match=f"{out} .*not written by bnrepro.*{MARKER}"):
        write_output(out, {"trace.jsonl": "new"}, force=True)
    assert snapshot(out) == before
    assert os.listdir(tmp_path) == ["repo"]


def test_force_replaces_bnrepros_own_output_and_the_marker_lists_it(tmp_path):
    out = tmp_path / "out"
    write_output(out, {"trace.jsonl": "old", "bn/trace.csv": "old"})
    assert marker_entries(out) == ["bn/", "bn/trace.csv", "trace.jsonl"]
    write_output(out, {"trace.jsonl": "new"}, force=True)
    assert snapshot(out) == {"trace.jsonl": "new", MARKER: snapshot(out)[MARKER]}
    assert marker_entries(out) == ["trace.jsonl"]
    assert os.listdir(tmp_path) == ["out"]  # no staging or retired directory left behind


def test_nested_output_directories_are_listed_and_replaceable(tmp_path):
    """``reproduce`` writes each scenario's output directory inside its own staging directory."""
    out = tmp_path / "reproduce"
    with output_directory(str(out)) as staging:
        write_output(os.path.join(staging, "cubic"), {"trace.jsonl": "cubic"})
        with open(os.path.join(staging, "report.md"), "w", encoding="utf-8") as handle:
            handle.write("report")
    assert marker_entries(out) == ["cubic/", f"cubic/{MARKER}", "cubic/trace.jsonl", "report.md"]
    assert marker_entries(out / "cubic") == ["trace.jsonl"]
    write_output(out, {"report.md": "again"}, force=True)
    assert sorted(os.listdir(out)) == [MARKER, "report.md"]


@pytest.mark.parametrize("added", ["notes.txt", "bn/notes.txt"])
def test_force_refuses_output_holding_a_file_bnrepro_did_not_write(tmp_path, added):
    out = tmp_path / "out"
    write_output(out, {"trace.jsonl": "old", "bn/trace.csv": "old"})
    (out / added).write_text("the user's")
    before = snapshot(out)
    with pytest.raises(UserError) as refusal:
        write_output(out, {"trace.jsonl": "new"}, force=True)
    assert added in str(refusal.value) and "\n" not in str(refusal.value)
    assert snapshot(out) == before
    assert os.listdir(tmp_path) == ["out"]


@pytest.mark.parametrize("marker", ["not json {", '{"format": "something else", "written": []}',
                                    "[]", '{"format": "bnrepro-output/1", "written": [1]}', None],
                         ids=["not-json", "other-format", "a-list", "not-paths", "a-directory"])
def test_force_refuses_output_with_a_corrupt_marker(tmp_path, marker):
    out = tmp_path / "out"
    write_output(out, {"trace.jsonl": "old"})
    os.remove(out / MARKER)
    if marker is None:
        os.mkdir(out / MARKER)
    else:
        (out / MARKER).write_text(marker)
    before = snapshot(out)
    with pytest.raises(UserError, match=f"{out}: .*{MARKER}.*not replacing it"):
        write_output(out, {"trace.jsonl": "new"}, force=True)
    assert snapshot(out) == before
    assert os.listdir(tmp_path) == ["out"]


def test_a_non_empty_directory_without_force_is_refused_even_when_bnrepro_wrote_it(tmp_path):
    out = tmp_path / "out"
    write_output(out, {"trace.jsonl": "old"})
    with pytest.raises(UserError, match="pass --force to replace it"):
        write_output(out, {"trace.jsonl": "new"})
    assert (out / "trace.jsonl").read_text() == "old"


def test_force_on_the_working_directory_keeps_the_directory_itself(tmp_path, monkeypatch):
    """``--out . --force`` on bnrepro's own output: the shell's working directory survives, with
    its inode and permissions."""
    out = tmp_path / "out"
    write_output(out, {"trace.jsonl": "old"})
    os.chmod(out, 0o750)
    inode = os.stat(out).st_ino
    monkeypatch.chdir(out)
    write_output(".", {"trace.jsonl": "new"}, force=True)
    assert os.stat(".").st_ino == inode == os.stat(out).st_ino
    assert os.getcwd() == str(out)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o750
    assert sorted(os.listdir(".")) == [MARKER, "trace.jsonl"]
    assert (out / "trace.jsonl").read_text() == "new"
    assert os.listdir(tmp_path) == ["out"]


@pytest.mark.parametrize("force", [False, True])
def test_an_empty_directory_the_user_made_is_filled_in_place(tmp_path, force):
    out = tmp_path / "empty"
    out.mkdir()
    os.chmod(out, 0o711)
    inode = os.stat(out).st_ino
    write_output(out, {"trace.jsonl": "new"}, force=force)
    assert os.stat(out).st_ino == inode
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o711
    assert sorted(os.listdir(out)) == [MARKER, "trace.jsonl"]
    assert os.listdir(tmp_path) == ["empty"]


def test_a_failed_block_leaves_the_previous_output_untouched(tmp_path):
    out = tmp_path / "out"
    write_output(out, {"trace.jsonl": "old"})
    before, inode = snapshot(out), os.stat(out).st_ino
    with pytest.raises(RuntimeError):
        with output_directory(str(out), force=True) as staging:
            open(os.path.join(staging, "trace.jsonl"), "w").close()
            raise RuntimeError("failed")
    assert snapshot(out) == before and os.stat(out).st_ino == inode
    assert os.listdir(tmp_path) == ["out"]


def test_a_file_added_while_the_command_runs_is_not_deleted(tmp_path):
    """The directory is checked again just before it is replaced (``reproduce`` takes minutes)."""
    out = tmp_path / "out"
    write_output(out, {"trace.jsonl": "old"})
    with pytest.raises(UserError, match="notes.txt"):
        with output_directory(str(out), force=True) as staging:
            open(os.path.join(staging, "trace.jsonl"), "w").close()
            (out / "notes.txt").write_text("written meanwhile")
    assert sorted(os.listdir(out)) == [MARKER, "notes.txt", "trace.jsonl"]
    assert (out / "trace.jsonl").read_text() == "old"
    assert os.listdir(tmp_path) == ["out"]


def test_a_failure_while_moving_the_new_output_in_puts_the_old_one_back(tmp_path, monkeypatch):
    out = tmp_path / "out"
    write_output(out, {"a.txt": "old", "b.txt": "old", "sub/c.txt": "old"})
    before, inode = snapshot(out), os.stat(out).st_ino
    rename, moved_in = os.rename, []

    def failing_rename(source, destination):
        if os.path.dirname(str(destination)) == str(out) and ".partial-" in str(source):
            if len(moved_in) == 2:  # the third staged entry cannot be moved in
                raise OSError(5, "Input/output error")
            moved_in.append(source)
        rename(source, destination)

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(UserError, match=f"{out}: .*Input/output error"):
        write_output(out, {"a.txt": "new", "b.txt": "new", "d.txt": "new"}, force=True)
    monkeypatch.undo()
    assert len(moved_in) == 2
    assert snapshot(out) == before and os.stat(out).st_ino == inode
    assert os.listdir(tmp_path) == ["out"]


@pytest.mark.parametrize("out", ["/proc/x", "/proc/self/x", "/proc/x/y/z"])
def test_an_out_the_os_refuses_is_one_line_exit_2(capsys, out):
    """These fail even for root (the tests run as root in CI, where permission bits do not stop
    anything)."""
    code, _, err = run_cli(capsys, "run", "cubic", "--epochs", "1", "--quiet", "--out", out)
    assert code == EXIT_USAGE
    message = one_line_error(err)
    assert out in message and "No such file or directory" in message


def test_an_out_under_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("keep me")
    with pytest.raises(UserError, match="is a file, not a directory"):
        write_output(tmp_path / "file" / "x", {"trace.jsonl": "new"})
    assert os.listdir(tmp_path) == ["file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="permission bits do not stop root")
def test_a_parent_without_write_permission_is_one_line(tmp_path):
    parent = tmp_path / "read-only"
    parent.mkdir()
    os.chmod(parent, 0o555)
    try:
        with pytest.raises(UserError, match=f"{parent / 'out'}: .*Permission denied"):
            write_output(parent / "out", {"trace.jsonl": "new"})
    finally:
        os.chmod(parent, 0o755)
    assert os.listdir(parent) == []


@pytest.mark.parametrize("umask, mode", [(0o022, 0o755), (0o027, 0o750)], ids=["022", "027"])
def test_new_output_directories_follow_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        write_output(tmp_path / "new" / "out", {"trace.jsonl": "new", "bn/trace.csv": "new"})
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(tmp_path / "new").st_mode) == mode
    assert stat.S_IMODE(os.stat(tmp_path / "new" / "out").st_mode) == mode
    assert stat.S_IMODE(os.stat(tmp_path / "new" / "out" / "bn").st_mode) == mode


def test_run_twice_with_force_then_a_stray_file_is_refused(capsys, tmp_path):
    out = tmp_path / "cubic"
    for _ in range(2):
        code, _, _ = run_cli(capsys, "run", "cubic", "--epochs", "1", "--quiet", "--force",
                             "--out", str(out))
        assert code == 0
    assert sorted(os.listdir(out)) == [MARKER, "trace.jsonl", "trace_arrays"]
    assert marker_entries(out) == ["trace.jsonl", "trace_arrays/", "trace_arrays/000001.npz"]
    (out / "notes.txt").write_text("mine")
    code, _, err = run_cli(capsys, "run", "cubic", "--epochs", "1", "--quiet", "--force",
                           "--out", str(out))
    assert code == EXIT_USAGE and "notes.txt" in one_line_error(err)
    assert (out / "notes.txt").read_text() == "mine"
