"""The layer's other modes in NumPy: ghost batches (``virtual_batch_size``) and batch renormalisation.

What ``tf.compat.v1.layers.batch_normalization`` (tf_keras 2.21,
``tf_keras/src/layers/normalization/batch_normalization.py``) computes in training mode, written with
:mod:`bnrepro.check.formulas`. Arrays have the channel on the last axis. Nothing here imports TensorFlow.

:class:`LayerMode` is a layer's mode as a trace header declares it (beside ``momentum`` and
``epsilon``); ``bnrepro verify`` checks a layer under its declared mode.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from bnrepro.check import formulas, tolerances
from bnrepro.errors import UserError

STRIDED = "strided"  # what tf_keras does: reshape (N, C) -> (k, N/k, C), moments over axis 0
CONTIGUOUS = "contiguous"  # the paper's ghost batches: samples [j*k, (j+1)*k)
GHOST_LAYOUTS = (STRIDED, CONTIGUOUS)


def ghost_rows(count, virtual_batch_size, layout=STRIDED):
    """The sample indices of each of the ``G = N / k`` ghost batches of ``k = virtual_batch_size``.

    tf_keras reshapes the input to ``(k, N / k, ..., C)`` and reduces over axis 0, so ghost batch
    ``j`` holds samples ``j, j + G, j + 2G, ...`` (``STRIDED``), not the consecutive samples
    ``j*k, ..., j*k + k - 1`` (``CONTIGUOUS``, the paper's ghost batches).
    """
    if virtual_batch_size <= 0 or count % virtual_batch_size:
        raise ValueError(f"virtual_batch_size {virtual_batch_size} does not divide the batch {count}")
    groups = count // virtual_batch_size
    if layout == STRIDED:
        return [np.arange(j, count, groups) for j in range(groups)]
    return [np.arange(j * virtual_batch_size, (j + 1) * virtual_batch_size) for j in range(groups)]


def ghost_batch_moments(x, virtual_batch_size, layout=STRIDED, convention=formulas.BIASED):
    """The statistics one ghost-batch step mixes into the moving averages, ``(N, ..., C) -> (C,)``::

        mean     = (1 / G) * sum_j mean(x_j)
        variance = (1 / G) * sum_j var(x_j)        (each var over the k samples of ghost batch j)

    with ``G = N / k`` ghost batches ``x_j`` (:func:`ghost_rows`, :func:`each_ghost_batch_moments`).
    tf_keras updates the moving statistics once per step with these averages, not once per ghost
    batch.
    """
    means, variances = each_ghost_batch_moments(x, virtual_batch_size, layout, convention)
    return np.mean(means, axis=0), np.mean(variances, axis=0)


def each_ghost_batch_moments(x, virtual_batch_size, layout=STRIDED, convention=formulas.BIASED):
    """``(means, variances)``: ``mean(x_j)`` and ``var(x_j)`` (``/k`` biased, ``/(k - 1)``
    unbiased, over each channel's values) of each ghost batch ``x_j`` (:func:`ghost_rows`), in
    order, each ``(C,)``."""
    x = np.asarray(x, dtype=np.float64)
    rows = ghost_rows(x.shape[0], virtual_batch_size, layout)
    return ([formulas.batch_mean(x[index]) for index in rows],
            [formulas.batch_variance(x[index], convention) for index in rows])


def ghost_batch_normalize(x, virtual_batch_size, gamma, beta, epsilon, layout=STRIDED):
    """Training-mode output: each ghost batch normalised with its own biased moments::

        output[x_j] = gamma * (x_j - mean(x_j)) / sqrt(var(x_j) + epsilon) + beta
    """
    x = np.asarray(x, dtype=np.float64)
    output = np.empty_like(x)
    for index in ghost_rows(x.shape[0], virtual_batch_size, layout):
        batch = x[index]
        output[index] = formulas.normalize(batch, formulas.batch_mean(batch),
                                           formulas.batch_variance(batch), gamma, beta, epsilon)
    return output


def renorm_corrections(batch_mean, batch_variance, renorm_mean, renorm_stddev, epsilon,
                       rmin=None, rmax=None, dmax=None):
    """Batch renormalisation's ``r`` and ``d`` (Ioffe 2017), as tf_keras computes them::

        stddev = sqrt(batch_variance + epsilon)
        s      = max(renorm_stddev, sqrt(epsilon))
        r      = clip(stddev / s, rmin, rmax)
        d      = clip((batch_mean - renorm_mean) / s, -dmax, dmax)

    with ``renorm_mean`` and ``renorm_stddev`` the values *before* the step.
    """
    stddev = np.sqrt(np.asarray(batch_variance, dtype=np.float64) + epsilon)
    scale = np.maximum(np.asarray(renorm_stddev, dtype=np.float64), np.sqrt(epsilon))
    r = stddev / scale
    d = (np.asarray(batch_mean, dtype=np.float64) - renorm_mean) / scale
    if rmin is not None:
        r = np.maximum(r, rmin)
    if rmax is not None:
        r = np.minimum(r, rmax)
    if dmax is not None:
        d = np.clip(d, -dmax, dmax)
    return r, d


def renorm_moving_variance(old_moving_stddev, batch_variance, momentum, epsilon):
    """Renorm's inference variance: the layer averages the standard deviation, not the variance::

        moving_stddev   = momentum * moving_stddev_old + (1 - momentum) * sqrt(batch_variance + epsilon)
        moving_variance = max(moving_stddev^2 - epsilon, 0)

    Returns ``(moving_stddev, moving_variance)``.
    """
    stddev = formulas.moving_average(old_moving_stddev,
                                     np.sqrt(np.asarray(batch_variance, dtype=np.float64) + epsilon),
                                     momentum)
    return stddev, np.maximum(stddev * stddev - epsilon, 0.0)


RENORM_CLIPPING = ("rmin", "rmax", "dmax")


@dataclass(frozen=True)
class LayerMode:
    """A layer's training-mode computation beyond ``momentum`` and ``epsilon``, as the trace header
    declares it in the layer's entry (absent keys: the standard layer)::

        "virtual_batch_size": K, "ghost_layout": "strided" | "contiguous"     (ghost batches)
        "renorm": {"momentum": m_r, "clipping": {"rmin": .., "rmax": .., "dmax": ..}}

    ``ghost_layout`` defaults to ``"strided"`` (what tf_keras does, :func:`ghost_rows`); each clipping
    bound is optional (absent: not clipped). Both modes may be declared together: renorm then works
    on the ghost batches' mean moments, as tf_keras does.
    """

    virtual_batch_size: Optional[int] = None
    ghost_layout: str = STRIDED
    renorm: bool = False
    renorm_momentum: float = 0.99  # the layer's default; it plays no part in the moving statistics
    rmin: Optional[float] = None
    rmax: Optional[float] = None
    dmax: Optional[float] = None

    @property
    def ghost(self):
        return self.virtual_batch_size is not None

    @property
    def standard(self):
        return not (self.ghost or self.renorm)

    @property
    def key(self):
        """``"ghost K strided"``, ``"renorm"``, both joined by ``" + "``, or ``"standard"`` (the
        diagnosis' candidate keys)."""
        parts = [f"ghost {self.virtual_batch_size} {self.ghost_layout}"] if self.ghost else []
        parts += ["renorm"] if self.renorm else []
        return " + ".join(parts) or "standard"

    @property
    def clipping(self):
        """The declared bounds of ``r`` and ``d``, ``{"rmin": .., "rmax": .., "dmax": ..}`` (set ones)."""
        return {name: getattr(self, name) for name in RENORM_CLIPPING
                if getattr(self, name) is not None}

    def describe(self):
        """What ``bnrepro verify`` prints as the mode a layer was checked under."""
        parts = []
        if self.ghost:
            parts.append(f"ghost batches of {self.virtual_batch_size} {self.ghost_layout} samples "
                         f"(virtual_batch_size={self.virtual_batch_size})")
        if self.renorm:
            bounds = ", ".join(f"{name} {value:g}" for name, value in self.clipping.items())
            parts.append(f"renorm (renorm_momentum {self.renorm_momentum:g}, "
                         f"{'clipping ' + bounds if bounds else 'no clipping'})")
        return " and ".join(parts) or "standard"

    def header_entry(self):
        """The keys this mode adds to the header's layer entry (none for the standard layer)."""
        entry = {}
        if self.ghost:
            entry.update(virtual_batch_size=self.virtual_batch_size, ghost_layout=self.ghost_layout)
        if self.renorm:
            entry["renorm"] = {"momentum": self.renorm_momentum, "clipping": self.clipping}
        return entry

    @classmethod
    def from_header(cls, settings, layer=""):
        """The mode a header's layer entry declares; :class:`UserError` for a malformed declaration."""
        def bad(what):
            return UserError(f"header layer {layer!r}: {what}")

        size = settings.get("virtual_batch_size")
        if size is not None:
            if not _is_number(size) or size <= 0 or size != int(size):
                raise bad(f"virtual_batch_size must be a positive whole number, got {size!r}")
            size = int(size)  # JSON Schema's integer includes 2.0
        layout = settings.get("ghost_layout", STRIDED)
        if layout not in GHOST_LAYOUTS:
            raise bad(f"ghost_layout must be one of {', '.join(GHOST_LAYOUTS)}, got {layout!r}")
        renorm = settings.get("renorm")
        if renorm is None:
            return cls(virtual_batch_size=size, ghost_layout=layout)
        clipping = (renorm.get("clipping") or {}) if isinstance(renorm, dict) else None
        well_formed = (isinstance(clipping, dict) and _is_number(renorm.get("momentum"))
                       and set(clipping) <= set(RENORM_CLIPPING)
                       and all(_is_number(value) for value in clipping.values()))
        if not well_formed:
            raise bad('renorm must be {"momentum": number, "clipping": {"rmin", "rmax", "dmax": '
                      f"numbers, each optional}}}}, got {renorm!r}")
        return cls(virtual_batch_size=size, ghost_layout=layout, renorm=True,
                   renorm_momentum=float(renorm["momentum"]),
                   **{name: float(value) for name, value in clipping.items()})

    def moments(self, x, convention=formulas.BIASED):
        """``(mean, variance)`` of a batch ``x`` as the layer's update consumes them: the batch's
        moments, or with ghost batches the mean of theirs (:func:`ghost_batch_moments`). ``None``
        when the unbiased variance does not exist (one value per statistic); :class:`ValueError`
        when ``virtual_batch_size`` does not divide the batch."""
        x = np.asarray(x, dtype=np.float64)
        values = formulas.values_per_channel(x)
        if self.ghost:
            ghost_rows(x.shape[0], self.virtual_batch_size)  # raises when it does not divide
            values = values // (x.shape[0] // self.virtual_batch_size)
        if convention == formulas.UNBIASED and values < 2:
            return None
        if self.ghost:
            return ghost_batch_moments(x, self.virtual_batch_size, self.ghost_layout, convention)
        return formulas.batch_mean(x), formulas.batch_variance(x, convention)

    def moving_variance(self, old_variance, old_stddev, batch_variance, momentum, epsilon):
        """The moving variance after a step that consumed ``batch_variance``::

            standard, ghost: momentum * old_variance + (1 - momentum) * batch_variance
            renorm:          max(moving_stddev^2 - epsilon, 0), with moving_stddev =
                             momentum * old_stddev + (1 - momentum) * sqrt(batch_variance + epsilon)
        """
        if self.renorm:
            return renorm_moving_variance(old_stddev, batch_variance, momentum, epsilon)[1]
        return formulas.moving_average(old_variance, batch_variance, momentum)

    def corrections(self, batch_mean, batch_variance, renorm_mean, renorm_stddev, epsilon):
        """Renorm's ``(r, d)`` with this mode's clipping (:func:`renorm_corrections`)."""
        return renorm_corrections(batch_mean, batch_variance, renorm_mean, renorm_stddev, epsilon,
                                  self.rmin, self.rmax, self.dmax)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def renorm_variable(record, layer, name):
    """A renorm layer's ``moving_stddev``, ``renorm_mean`` or ``renorm_stddev`` after a trace step:
    the step's ``variables`` entry ``<layer>/<name>:0`` (TensorFlow's name), or ``None``."""
    value = record.get("variables", {}).get(f"{layer}/{name}:0")
    return None if value is None else np.asarray(value, dtype=np.float64)


def moving_stddev_after(record, layer, epsilon):
    """A renorm layer's ``moving_stddev`` after trace step ``record``: the recorded variable when the
    trace has it, otherwise from the recorded ``moving_variance`` (``v``)::

        step 0 (initial state): sqrt(v)              (tf_keras initialises moving_stddev to the square
                                                      root of moving_variance's initializer)
        after an update:        sqrt(v + epsilon)    (v = moving_stddev^2 - epsilon, inverted)

    On the renorm scenario's trace the second line gives the recorded ``moving_stddev`` exactly once
    rounded to float32; it does not when ``max(., 0)`` clipped the variance to zero.
    """
    recorded = renorm_variable(record, layer, "moving_stddev")
    if recorded is not None:
        return recorded
    variance = np.asarray(record["bn"][layer]["moving_variance"], dtype=np.float64)
    return np.sqrt(variance if record["step"] == 0 else variance + epsilon)


def moving_stddev_with_bound(record, layer, epsilon):
    """:func:`moving_stddev_after` and its error bound: 0 when the trace recorded the variable;
    when derived from the recorded moving variance ``v``, the float32 roundings of
    ``v = stddev^2 - epsilon`` (``u (stddev^2 + |v|)`` and epsilon's) carried through the square
    root (:func:`bnrepro.check.tolerances.sqrt_bound`)."""
    value = moving_stddev_after(record, layer, epsilon)
    if renorm_variable(record, layer, "moving_stddev") is not None:
        return value, 0.0
    variance = np.asarray(record["bn"][layer]["moving_variance"], dtype=np.float64)
    squared = value * value
    return value, tolerances.sqrt_bound(
        squared, value, value_error=tolerances.UNIT_ROUNDOFF * (squared + np.abs(variance))
        + tolerances.constant_error(epsilon))
