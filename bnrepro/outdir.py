"""Output directories that appear whole or not at all, and never replace what bnrepro did not write.

Everything a command writes goes into a staging directory beside the requested one (made with the
user's umask, like any other directory); only when the command has finished is it moved into place.
A failure leaves nothing behind: the staging directory and any parent directories made for it are
removed, and an existing directory is left as it was.

Every output directory gets a marker file, ``.bnrepro-output.json``, listing every file and
directory written into it (those of output directories nested inside it included). An existing
non-empty directory is never mixed with new files: it is refused, or with ``force`` replaced whole,
but only if its marker lists everything it holds. A directory without a marker (a working
directory, a git repository), with an unreadable marker, or holding anything the marker does not
list (a file the user added) is refused and nothing in it is touched. It is checked again just
before it is replaced, as a long command may run in between.

An existing directory is replaced in place: its old contents are moved out (into a sibling
directory that is then deleted) and the new ones moved in, so the directory itself, its
permissions and a shell's working directory inside it (``--out .``) survive. A new directory is
the staging directory, renamed.

An error from the operating system while checking, creating, staging or moving into place (no
permission, a path under ``/proc``) becomes a :class:`UserError` naming the path and the reason.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import stat

from bnrepro.errors import UserError

MARKER = ".bnrepro-output.json"
MARKER_FORMAT = "bnrepro-output/1"


@contextlib.contextmanager
def _os_errors_as_user_errors(description, *, name_files_in=None):
    """Turn an :class:`OSError` in the block into ``UserError("<description>: <the OS's reason>")``.
    With ``name_files_in`` (a directory the user chose, never one holding made-up staging names),
    the file the OS names is put before the reason unless it is that directory itself."""
    try:
        yield
    except OSError as error:
        where = ""
        if name_files_in is not None and error.filename is not None \
                and os.path.abspath(error.filename) != os.path.abspath(name_files_in):
            where = f"{error.filename}: "
        raise UserError(f"{description}: {where}{error.strerror or error}") from error


def check_output_directory(path, *, force=False):
    """Raise :class:`UserError` if ``path`` cannot become a fresh output directory (its missing
    parent directories are created when the output is). With ``force`` an existing non-empty
    directory is accepted only if bnrepro wrote it and nothing has been added since."""
    with _os_errors_as_user_errors(f"cannot read {path}", name_files_in=path):
        if os.path.isdir(path):
            if os.listdir(path):
                if not force:
                    raise UserError(f"{path} already exists and is not empty; "
                                    f"pass --force to replace it")
                _check_written_by_bnrepro(path)
        elif os.path.lexists(path):
            raise UserError(f"--out {path} is a file, not a directory")
        existing = _missing_parents(path)[1]
        if not os.path.isdir(existing):
            raise UserError(f"cannot create {path}: {existing} is a file, not a directory")


def _check_written_by_bnrepro(path):
    """Raise :class:`UserError` unless the marker of directory ``path`` lists everything in it."""
    marker_path = os.path.join(path, MARKER)
    if not os.path.lexists(marker_path):
        raise UserError(f"{path} is not empty and was not written by bnrepro (it has no {MARKER}); "
                        f"--force replaces only bnrepro's own output or an empty directory")
    try:
        written = _read_marker(marker_path)
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise UserError(f"{path}: its {MARKER} cannot be read ({reason}); not replacing it") \
            from error
    not_written = [entry for entry in _entries(path) if entry not in written]
    if not_written:
        more = f" (and {len(not_written) - 1} more)" if len(not_written) > 1 else ""
        raise UserError(f"{path} holds {not_written[0]}{more}, which bnrepro did not write; "
                        f"not replacing it (move it away, or choose another --out)")


def _read_marker(marker_path):
    """The set of entries a marker lists; :class:`ValueError` if it is not a bnrepro marker."""
    with open(marker_path, encoding="utf-8") as handle:
        marker = json.load(handle)
    if not (isinstance(marker, dict) and marker.get("format") == MARKER_FORMAT
            and isinstance(marker.get("written"), list)
            and all(isinstance(entry, str) for entry in marker["written"])):
        raise ValueError(f"not a {MARKER_FORMAT} marker")
    return set(marker["written"])


def _entries(directory):
    """Everything under ``directory`` but its own marker, sorted: paths relative to it with ``/``
    between the parts, a directory's ending in ``/``. A symbolic link is an entry of its own (never
    followed). A subdirectory that cannot be listed raises :class:`OSError`."""
    def fail(error):
        raise error

    entries = []
    for parent, directory_names, file_names in os.walk(directory, onerror=fail):
        relative_parent = os.path.relpath(parent, directory)
        for name in directory_names + file_names:
            relative = name if relative_parent == "." else os.path.join(relative_parent, name)
            relative = relative.replace(os.sep, "/")
            if stat.S_ISDIR(os.lstat(os.path.join(parent, name)).st_mode):
                relative += "/"
            if relative != MARKER:
                entries.append(relative)
    return sorted(entries)


def _write_marker(directory):
    """List everything in ``directory`` in its marker file."""
    marker = {"format": MARKER_FORMAT, "written": _entries(directory)}
    with open(os.path.join(directory, MARKER), "w", encoding="utf-8") as handle:
        json.dump(marker, handle, indent=1)
        handle.write("\n")


def _missing_parents(path):
    """``([missing parent directories of path, outermost first], nearest existing ancestor)``."""
    missing, ancestor = [], os.path.dirname(os.path.abspath(path))
    while not os.path.exists(ancestor):
        missing.insert(0, ancestor)
        ancestor = os.path.dirname(ancestor)
    return missing, ancestor


STAGING_SUFFIX = ".partial-"  # a staging directory is OUT.partial-<8 hex digits>


def unfinished_outputs(path):
    """The staging directories ``PATH.partial-*`` that a command writing ``path`` left behind when
    it was killed outright (``SIGKILL``, out of memory), newest first."""
    parent, name = os.path.split(os.path.abspath(path))
    try:
        entries = os.listdir(parent or ".")
    except OSError:
        return []
    found = [os.path.join(parent, entry) for entry in entries
             if entry.startswith(name + STAGING_SUFFIX)
             and os.path.isdir(os.path.join(parent, entry))]
    return sorted(found, key=os.path.getmtime, reverse=True)


def _make_unique_directory(parent, prefix):
    """Create and return ``parent/<prefix><random>``, with the mode the umask gives (unlike
    :func:`tempfile.mkdtemp`, which makes it 0700)."""
    for _ in range(100):
        candidate = os.path.join(parent, prefix + secrets.token_hex(4))
        try:
            os.mkdir(candidate)
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(errno.EEXIST, f"no unused name {prefix}* in {parent}")


def _move_entries(source, destination):
    """Move everything in directory ``source`` into directory ``destination`` (same file system).
    If a move fails, the entries already moved are moved back before the error is raised."""
    moved = []
    try:
        for name in os.listdir(source):
            if os.path.lexists(os.path.join(destination, name)):
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST),
                                      os.path.join(destination, name))
            os.rename(os.path.join(source, name), os.path.join(destination, name))
            moved.append(name)
    except BaseException:
        for name in reversed(moved):
            with contextlib.suppress(OSError):
                os.rename(os.path.join(destination, name), os.path.join(source, name))
        raise


def _move_into_place(staging, target):
    """Make ``target`` hold what ``staging`` holds: rename ``staging`` if ``target`` does not exist,
    else swap the contents, keeping the directory ``target`` itself. On an error ``target`` is as it
    was and the new contents are back in ``staging``."""
    if not os.path.isdir(target):
        os.rename(staging, target)
        return
    retired = _make_unique_directory(os.path.dirname(staging),
                                     os.path.basename(target) + ".retired-")
    try:
        _move_entries(target, retired)
        try:
            _move_entries(staging, target)
        except BaseException:
            _move_entries(retired, target)
            raise
    except BaseException:
        with contextlib.suppress(OSError):  # not empty only if the old contents could not go back
            os.rmdir(retired)
        raise
    with contextlib.suppress(OSError):  # the output is in place: leftovers are not a failure
        os.rmdir(staging)
    shutil.rmtree(retired, ignore_errors=True)


def _remove_staging(staging, created_parents):
    """Remove the staging directory (if made) and the parent directories made for it."""
    if staging is not None:
        shutil.rmtree(staging, ignore_errors=True)
    for directory in reversed(created_parents):
        with contextlib.suppress(OSError):  # not empty: something else was put there
            os.rmdir(directory)


class StagedOutput:
    """An output directory written in a staging directory beside it (``.path``) and moved into
    place by :meth:`commit`, or removed by :meth:`discard` (with the parent directories it
    created). For a writer whose start and end are not one block (a ``SessionRunHook``); a block
    uses :func:`output_directory`. Left alone, neither committed nor discarded (the process was
    killed), the staging directory stays: :func:`unfinished_outputs` finds it."""

    def __init__(self, path, *, force=False):
        check_output_directory(path, force=force)
        self.name, self.force = path, force
        self.target = os.path.realpath(path) if os.path.isdir(path) else os.path.abspath(path)
        self.created_parents = _missing_parents(self.target)[0]
        self.path = None
        try:
            with _os_errors_as_user_errors(f"cannot create {path}"):
                os.makedirs(os.path.dirname(self.target), exist_ok=True)
                self.path = _make_unique_directory(os.path.dirname(self.target),
                                                   os.path.basename(self.target) + STAGING_SUFFIX)
        except BaseException:
            self.discard()
            raise

    def commit(self):
        """Move the staging directory's contents into place (:class:`UserError` if the output
        appeared meanwhile and ``force`` is not given, or the move fails: the staging directory is
        then removed)."""
        try:
            with _os_errors_as_user_errors(f"cannot write {self.name}"):
                _write_marker(self.path)
            check_output_directory(self.target, force=self.force)  # the run may have taken hours
            with _os_errors_as_user_errors(f"cannot move the output into {self.name}"):
                _move_into_place(self.path, self.target)
        except BaseException:
            self.discard()
            raise

    def discard(self):
        _remove_staging(self.path, self.created_parents)


@contextlib.contextmanager
def output_directory(path, *, force=False):
    """Yield a staging directory whose contents become ``path`` when the block ends without an
    error. Missing parent directories are created, and removed again if the block fails."""
    staged = StagedOutput(path, force=force)
    try:
        yield staged.path
    except BaseException:
        staged.discard()
        raise
    staged.commit()