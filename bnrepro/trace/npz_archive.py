"""Reading an ``.npz`` archive (a zip of ``.npy`` arrays, :func:`numpy.savez`) without pickle, every
problem a one-line :class:`~bnrepro.errors.UserError` that starts with the file's path.

A file can fail as a whole (:func:`open_npz`: missing, empty, cut short, not a zip, a lone
``.npy``) or one member at a time (:func:`read_npz_member`: absent, damaged, an object array that
needs pickle, not an ``.npy`` at all). NumPy reads a member only when it is asked for, so a damaged
member shows only there: read every member through :func:`read_npz_member`. Only NumPy and the
standard library.
"""
from __future__ import annotations

import os
import zipfile
import zlib

import numpy as np

from bnrepro.errors import UserError

# what NumPy and zipfile raise for a damaged archive or member (a bad CRC, a cut-short .npy header,
# an object array refused without pickle, an unknown compression method or an encrypted member)
NPZ_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error,
                   NotImplementedError, RuntimeError)
ZIP_LOCAL_HEADER = b"PK\x03\x04"  # how a zip file starts; its directory is at its end
NPY_MAGIC = b"\x93NUMPY"  # how a single .npy array starts


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (or its type name), to keep errors one line."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def open_npz(path):
    """The open :class:`numpy.lib.npyio.NpzFile` at ``path`` (use it in a ``with``), or a
    :class:`UserError` ``"<path>: <problem>"`` for a missing or empty file, a zip cut short (it
    starts as one but its directory, at the end, is gone), another kind of file, or a single
    ``.npy`` array."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file")
    try:
        with open(path, "rb") as handle:
            start = handle.read(len(NPY_MAGIC))
    except OSError as error:
        raise UserError(f"{path}: cannot read ({first_line(error)})") from None
    if not start:
        raise UserError(f"{path}: empty file, not an .npz archive")
    if start == NPY_MAGIC:
        raise UserError(f"{path}: a single .npy array, not an .npz archive")
    if not zipfile.is_zipfile(path):
        if ZIP_LOCAL_HEADER.startswith(start[:len(ZIP_LOCAL_HEADER)]):  # begun as a zip
            raise UserError(f"{path}: cut short or damaged (a zip without the directory at its "
                            "end)")
        raise UserError(f"{path}: not an .npz archive (a zip of .npy arrays)")
    try:
        return np.load(path, allow_pickle=False)  # a zip: an NpzFile
    except NPZ_READ_ERRORS as error:
        raise UserError(f"{path}: cannot read ({first_line(error)})") from None


def read_npz_member(archive, key, path):
    """Member ``key`` of the open ``archive`` (from :func:`open_npz` on ``path``) as an array, or a
    :class:`UserError` ``"<path>: <problem>"`` naming the member: absent, damaged (a bad CRC, a
    cut-short header), an object array (it needs pickle, which is not used), or not an ``.npy``."""
    if key not in archive.files:
        raise UserError(f"{path}: no member {key!r}")
    try:
        value = archive[key]
    except NPZ_READ_ERRORS as error:
        raise UserError(f"{path}: cannot read member {key!r} ({first_line(error)})") from None
    if not isinstance(value, np.ndarray):  # NumPy hands back the bytes of a member that is no .npy
        raise UserError(f"{path}: member {key!r} is not an .npy array")
    return value
