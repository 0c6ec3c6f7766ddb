"""How each framework's batch norm updates its moving statistics: the mapping table, as data.

Every framework below normalises a training batch with its own *biased* variance (divide by N); they
differ in which way ``momentum`` points, in the defaults, and in the variance they average::

    TF / Keras / Flax:  moving = momentum * moving + (1 - momentum) * batch      (momentum weighs the old)
    PyTorch:            running = (1 - momentum) * running + momentum * batch    (momentum weighs the new)

So PyTorch's ``momentum=0.1`` is TensorFlow's ``momentum=0.9``: ``tf_momentum = 1 - torch_momentum``.

Every row cites the source line it comes from (:class:`Citation`): a path inside the package as
installed (``site-packages/<path>``), the line number in the version named, and the line's text, so
``tests/test_pitfalls.py`` can check each citation against the installed file. Where a row's source
was read: tf_keras 2.21.0, Keras 3.15.1 and TensorFlow 2.21 from the project's installed
dependencies; PyTorch 2.13.0 from ``pip install torch==2.13.0`` (the optional ``torch`` extra); Flax
0.12.8 from its wheel (``pip download --no-deps flax``), read without installing it.
"""
from __future__ import annotations

from dataclasses import dataclass

from bnrepro.check import formulas

OLD = "old"  # momentum is the weight of the old moving value
NEW = "new"  # momentum is the weight of the new batch value
FUSED_DEPENDENT = "biased (/N) non-fused; unbiased (/(N-1)) fused (4-D or 5-D input)"


@dataclass(frozen=True)
class Citation:
    """One line of a framework's source: ``package`` (version) ``path`` line ``line`` reads ``text``."""

    package: str  # the distribution the file ships in
    version: str
    path: str  # relative to site-packages
    line: int
    text: str  # the line, stripped


@dataclass(frozen=True)
class Convention:
    """One framework's batch norm: defaults, the momentum's direction, and which variances it uses."""

    framework: str
    api: str
    momentum: float
    momentum_weighs: str  # OLD or NEW
    epsilon: float
    moving_variance: str  # the variance averaged into the moving/running variance
    training_variance: str  # the variance a training batch is normalised with
    citations: tuple

    def tf_momentum(self):
        """The TF/Keras ``momentum`` with the same effect: ``momentum`` or ``1 - momentum``."""
        return self.momentum if self.momentum_weighs == OLD else 1.0 - self.momentum


def _citations(package, version, path, lines):
    """Citations of ``(line, text)`` pairs of one file."""
    return tuple(Citation(package, version, path, line, text) for line, text in lines)


def _tf_keras(line, text):
    return Citation("tf_keras", "2.21.0", "tf_keras/src/layers/normalization/batch_normalization.py",
                    line, text)


_TF_KERAS_UPDATE = (
    _tf_keras(72, "- `moving_mean = moving_mean * momentum + mean(batch) * (1 - momentum)`"),
    _tf_keras(73, "- `moving_var = moving_var * momentum + var(batch) * (1 - momentum)`"),
    _tf_keras(1136, "return tf.nn.moments(inputs, reduction_axes, keepdims=keep_dims)"),
    _tf_keras(945, "# This is to be consistent with non-fused batch norm. Note that the"),
    _tf_keras(946, "# variance computed by fused batch norm is with Bessel's correction."),
    _tf_keras(243, "self._bessels_correction_test_only = True"),
    Citation("tensorflow", "2.21", "tensorflow/python/ops/nn_impl.py", 1276,
             "math_ops.squared_difference(y, array_ops.stop_gradient(mean)),"),
)

CONVENTIONS = (
    Convention(
        framework="TF 1.x tf.layers", api="tf.compat.v1.layers.batch_normalization",
        momentum=0.99, momentum_weighs=OLD, epsilon=1e-3,
        moving_variance=FUSED_DEPENDENT, training_variance=formulas.VARIANCE_LABELS[formulas.BIASED],
        citations=(
            Citation("tf_keras", "2.21.0", "tf_keras/src/legacy_tf_layers/normalization.py", 245,
                     "momentum=0.99,"),
            Citation("tf_keras", "2.21.0", "tf_keras/src/legacy_tf_layers/normalization.py", 246,
                     "epsilon=1e-3,"),
        ) + _TF_KERAS_UPDATE,
    ),
    Convention(
        framework="tf_keras (Keras 2)", api="tf_keras.layers.BatchNormalization",
        momentum=0.99, momentum_weighs=OLD, epsilon=1e-3,
        moving_variance=FUSED_DEPENDENT, training_variance=formulas.VARIANCE_LABELS[formulas.BIASED],
        citations=(_tf_keras(172, "momentum=0.99,"), _tf_keras(173, "epsilon=1e-3,"))
        + _TF_KERAS_UPDATE,
    ),
    Convention(
        framework="Keras 3", api="keras.layers.BatchNormalization",
        momentum=0.99, momentum_weighs=OLD, epsilon=1e-3,
        moving_variance=formulas.VARIANCE_LABELS[formulas.BIASED],
        training_variance=formulas.VARIANCE_LABELS[formulas.BIASED],
        citations=_citations(
            "keras", "3.15.1", "keras/src/layers/normalization/batch_normalization.py", (
                (163, "momentum=0.99,"), (164, "epsilon=1e-3,"),
                (386, "moving_mean * self.momentum + mean * (1.0 - self.momentum)"),
                (389, "moving_variance * self.momentum"),
                (390, "+ variance * (1.0 - self.momentum)"))
        ) + (Citation("keras", "3.15.1", "keras/src/backend/tensorflow/nn.py", 1548,
                      "return tf.nn.moments(x, axes, keepdims=keepdims)"),),
    ),
    Convention(
        framework="PyTorch", api="torch.nn.BatchNorm1d / 2d / 3d",
        momentum=0.1, momentum_weighs=NEW, epsilon=1e-5,
        moving_variance=formulas.VARIANCE_LABELS[formulas.UNBIASED],
        training_variance=formulas.VARIANCE_LABELS[formulas.BIASED],
        citations=_citations(
            "torch", "2.13.0", "torch/nn/modules/batchnorm.py", (
                (41, "eps: float = 1e-5,"), (42, "momentum: float | None = 0.1,"),
                (321, "At train time in the forward pass, the variance is calculated via the "
                      "biased estimator,"),
                (322, "equivalent to ``torch.var(input, correction=0)``. However, the value "
                      "stored in the"),
                (324, "``torch.var(input, correction=1)``."),
                (339, r":math:`\hat{x}_\text{new} = (1 - \text{momentum}) \times \hat{x} + "
                      r"\text{momentum} \times x_t`,"))
        ),
    ),
    Convention(
        framework="Flax (linen)", api="flax.linen.BatchNorm",
        momentum=0.99, momentum_weighs=OLD, epsilon=1e-5,
        moving_variance=formulas.VARIANCE_LABELS[formulas.BIASED],
        training_variance=formulas.VARIANCE_LABELS[formulas.BIASED],
        citations=_citations(
            "flax", "0.12.8", "flax/linen/normalization.py", (
                (310, "momentum: float = 0.99"), (311, "epsilon: float = 1e-5"),
                (142, "var = jnp.maximum(0.0, mu2 - _abs_sq(mu))"),
                (404, "ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var"))
        ),
    ),
)

# Epsilons a trace may follow besides its header's, and who uses each (for the diagnosis).
POST_000_EPSILON = 1e-5  # the formula post 000 writes
CUDNN_MIN_EPSILON = 1.001e-5  # the floor older tf.nn.fused_batch_norm applied (cuDNN's minimum)
KNOWN_EPSILONS = {
    1e-3: "tf.layers / tf_keras / Keras 3 default",
    1e-5: "PyTorch / Flax default; the formula post 000 writes",
    CUDNN_MIN_EPSILON: "the fused kernel's old cuDNN floor",
}


def by_framework(name):
    """The row whose ``framework`` is ``name``; ``KeyError`` listing the rows otherwise."""
    for convention in CONVENTIONS:
        if convention.framework == name:
            return convention
    raise KeyError(f"no convention {name!r}; rows: {', '.join(c.framework for c in CONVENTIONS)}")


def format_table():
    """The mapping table as Markdown, one row per framework, with its citations below."""
    lines = ["| framework | API | momentum (weighs) | TF-equivalent momentum | epsilon | "
             "moving variance averages | training normalises with |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for c in CONVENTIONS:
        lines.append(f"| {c.framework} | `{c.api}` | {c.momentum:g} ({c.momentum_weighs} value) | "
                     f"{c.tf_momentum():g} | {c.epsilon:g} | {c.moving_variance} | "
                     f"{c.training_variance} |")
    lines.append("")
    for c in CONVENTIONS:
        lines.append(f"- {c.framework}:")
        for citation in c.citations:
            lines.append(f"  - {citation.package} {citation.version} `{citation.path}` line "
                         f"{citation.line}: `{citation.text}`")
    return "\n".join(lines)
