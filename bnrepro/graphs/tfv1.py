"""TensorFlow 1.x graph mode through ``tf.compat.v1``, with the legacy ``tf_keras`` layers.

``tf.compat.v1.layers.batch_normalization`` is only available when ``TF_USE_LEGACY_KERAS=1`` is set
before TensorFlow is imported *and* the ``tf-keras`` package is installed; this module checks both
and fails with one line saying what to install.
"""
import contextlib
import importlib.util
import os
import sys
import warnings

from bnrepro.errors import UserError

if os.environ.get("TF_USE_LEGACY_KERAS") != "1":  # pragma: no cover - bnrepro/__init__ sets it
    os.environ["TF_USE_LEGACY_KERAS"] = "1"


def _installed(module_name):
    """Whether ``module_name`` can be imported (a ``None`` entry in ``sys.modules`` means no)."""
    try:
        return importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):
        return False


if not _installed("tf_keras"):
    raise UserError(
        "the legacy Keras layers are missing: pip install 'tf-keras==2.21.*' "
        "(the tf-keras release matching your tensorflow)"
    )


@contextlib.contextmanager
def _native_stderr_silenced():
    """Send file descriptor 2 to /dev/null: TensorFlow's C++ start-up lines (oneDNN, CUDA probing)
    are written before its log level is read and would bury the program's own output."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


with _native_stderr_silenced():
    import tensorflow as tf  # noqa: E402  (must follow the environment set-up above)

    tf.config.set_visible_devices([], "GPU")  # there is no GPU; probe CUDA now, while silenced

tf.get_logger().setLevel("ERROR")
warnings.filterwarnings("ignore", message=r".*`tf\.layers\.\w+` is deprecated", category=UserWarning)
tf1 = tf.compat.v1

__all__ = ["tf", "tf1"]
