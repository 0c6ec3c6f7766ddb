"""Output directories that appear whole or not at all.

Everything a command writes goes into a temporary sibling directory; only when the command has
finished is it renamed to the requested name. A failure leaves nothing behind, and an existing
non-empty directory is never mixed with new files: it is refused, or with ``force`` replaced whole.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

from bnrepro.errors import UserError


def check_output_directory(path, *, force=False):
    """Raise :class:`UserError` if ``path`` cannot become a fresh output directory (its missing
    parent directories are created when the output is)."""
    if os.path.isdir(path):
        if os.listdir(path) and not force:
            raise UserError(f"{path} already exists and is not empty; pass --force to replace it")
    elif os.path.exists(path):
        raise UserError(f"--out {path} is a file, not a directory")
    existing = _missing_parents(path)[1]
    if not os.path.isdir(existing):
        raise UserError(f"cannot create {path}: {existing} is a file, not a directory")


def _missing_parents(path):
    """``([missing parent directories of path, outermost first], nearest existing ancestor)``."""
    missing, ancestor = [], os.path.dirname(os.path.abspath(path))
    while not os.path.exists(ancestor):
        missing.insert(0, ancestor)
        ancestor = os.path.dirname(ancestor)
    return missing, ancestor


@contextlib.contextmanager
def output_directory(path, *, force=False):
    """Yield a temporary directory that becomes ``path`` when the block ends without an error.
    Missing parent directories are created, and removed again if the block fails."""
    check_output_directory(path, force=force)
    target = os.path.abspath(path)
    created = _missing_parents(target)[0]
    os.makedirs(os.path.dirname(target), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=os.path.basename(target) + ".partial-",
                               dir=os.path.dirname(target))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for directory in reversed(created):
            with contextlib.suppress(OSError):  # not empty: something else was put there
                os.rmdir(directory)
        raise
    if os.path.isdir(target):
        retired = tempfile.mkdtemp(prefix=os.path.basename(target) + ".old-",
                                   dir=os.path.dirname(target))
        os.rename(target, os.path.join(retired, "previous"))
        os.rename(staging, target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.rename(staging, target)
