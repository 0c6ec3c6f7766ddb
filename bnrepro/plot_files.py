"""``bnrepro plot``: a trace's figures written as files, one per batch-norm layer
(:mod:`bnrepro.trace.plots` draws them), into an output directory of their own."""
from __future__ import annotations

import os
import re

from bnrepro.errors import UserError
from bnrepro.outdir import output_directory
from bnrepro.trace import plots

DPI = 100


def file_names(layers, extension):
    """``{layer: file name}``: the layer's name with every run of characters other than letters,
    digits, ``.``, ``_`` and ``-`` made ``_`` (``stage1/block1/a/bn`` -> ``stage1_block1_a_bn``),
    numbered where two would be the same."""
    names, taken = {}, set()
    for layer in layers:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", layer).strip("_") or "layer"
        name, number = f"{stem}.{extension}", 2
        while name in taken:
            name, number = f"{stem}-{number}.{extension}", number + 1
        taken.add(name)
        names[layer] = name
    return names


def write_plots(trace, out, *, layers=None, channels=None, steps=None, zoom=None, extension="png",
                force=False, write=print):
    """Write the figure of each layer of ``trace`` into ``out`` (``LAYER.png``, or ``.svg``);
    return ``{layer: path}``. A layer or channel the trace does not have is a
    :class:`UserError`, before anything is written."""
    try:
        series = plots.layer_series(trace, layers, channels, steps)
    except ValueError as error:
        raise UserError(str(error)) from None
    if not series:
        raise UserError(f"{trace.path} holds no state of the layers asked for: nothing to draw")
    names = file_names(series, extension)
    windows = {layer: plots.zoom_window(whole, zoom) for layer, whole in series.items()}
    zoomed = plots.zoom_series(trace, series, {layer: window for layer, window in windows.items()
                                               if window is not None})
    written = {}
    with output_directory(out, force=force) as staging:
        for number, (layer, whole) in enumerate(series.items(), start=1):
            figure = plots.plot_layer(whole, zoomed.get(layer),
                                      trace.layers[layer].get("momentum"))
            figure.savefig(os.path.join(staging, names[layer]), dpi=DPI)
            written[layer] = os.path.join(out, names[layer])
            write(f"plot: {number}/{len(series)} {layer} -> {written[layer]}")
    return written
