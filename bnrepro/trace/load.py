"""``bnrepro.load_trace(path)``: a whole trace as NumPy arrays, per layer and quantity, steps x units.

    trace = bnrepro.load_trace("out/compare/bn")
    trace.steps                                   # (S,) the step numbers
    trace.layers["layer1/batch_normalization"]["moving_mean"]      # (S, 128)
    trace.layers["layer1/batch_normalization"]["batch_input"]      # {step: (128, 128)} (not every step)
    trace.averages["running_mean"]["value"]       # (S, C), bnrepro-trace/2's unpaired averages
    trace.loss                                    # (S,), NaN where a step has none
    trace.frame()                                 # pandas: step, layer, quantity, unit, value

It reads every form of a trace (the arrays in chunk files ``trace_arrays/000001.npz``, ..., an
earlier version's ``trace_arrays.npz``, or every number in ``trace.jsonl``) and either version
(:func:`bnrepro.trace.read_trace`). A per-channel quantity
(one value per unit at each step) becomes one ``(steps, units)`` array, NaN at the steps that do not
have it (step 0 has no batch statistics); a quantity whose shape changes from step to step (a
layer's input, recorded every N steps) stays a dict ``{step: array}``, and a layer's ``updates`` (a
run that updated it several times) ``{step: [{quantity: array}, ...]}``, in the order they ran. Only
NumPy here (pandas for :meth:`TraceArrays.frame`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bnrepro.trace import read_trace
from bnrepro.trace.format import UPDATES


@dataclass
class TraceArrays:
    """A trace's numbers by layer and quantity: see the module docstring."""

    path: str
    header: dict
    end: object
    steps: np.ndarray
    layers: dict  # layer -> quantity -> (S, units) array or {step: array}
    averages: dict  # average -> quantity -> (S, units) array or {step: array}
    loss: np.ndarray

    def frame(self):
        """Every per-unit number as a long pandas DataFrame: ``step, layer, quantity, unit,
        value`` (the averages of ``bnrepro-trace/2`` with their name as ``layer``); the arrays
        that vary in shape (layer inputs) are left out."""
        import pandas as pd

        parts = []
        for group in (self.layers, self.averages):
            for name, quantities in group.items():
                for quantity, array in quantities.items():
                    if not isinstance(array, np.ndarray):
                        continue
                    table = array.reshape(len(self.steps), -1)
                    steps, units = np.meshgrid(self.steps, np.arange(table.shape[1]),
                                               indexing="ij")
                    keep = ~np.isnan(table)
                    parts.append(pd.DataFrame({
                        "step": steps[keep], "layer": name, "quantity": quantity,
                        "unit": units[keep], "value": table[keep]}))
        if not parts:
            return pd.DataFrame(columns=["step", "layer", "quantity", "unit", "value"])
        return pd.concat(parts, ignore_index=True)


def load_trace(path):
    """The trace at ``path`` (``trace.jsonl`` or its directory) as a :class:`TraceArrays`."""
    trace = read_trace(path)
    steps = np.array([record["step"] for record in trace.steps])
    layers = {name: _stacked(trace.steps, "bn", name) for name in trace.layers}
    averages = {name: _stacked(trace.steps, "averages", name) for name in trace.averages}
    loss = np.array([float(record["loss"]) if "loss" in record else np.nan
                     for record in trace.steps])
    return TraceArrays(trace.path, trace.header, trace.end, steps, layers, averages, loss)


def _stacked(records, section, name):
    """``{quantity: (S, ...) array, NaN where missing}``, or ``{quantity: {step: array}}`` for a
    quantity whose shape varies."""
    by_quantity, stacked = {}, {}
    for index, record in enumerate(records):
        for quantity, value in record.get(section, {}).get(name, {}).items():
            if quantity == UPDATES:  # a list per step, of what each update consumed
                stacked.setdefault(UPDATES, {})[int(record["step"])] = value
                continue
            by_quantity.setdefault(quantity, {})[index] = np.asarray(value, dtype=np.float64)
    for quantity, values in by_quantity.items():
        shapes = {value.shape for value in values.values()}
        if len(shapes) != 1 or (quantity == "batch_input" and len(values) != len(records)):
            stacked[quantity] = {int(records[index]["step"]): value
                                 for index, value in values.items()}
            continue
        table = np.full((len(records),) + shapes.pop(), np.nan)
        for index, value in values.items():
            table[index] = value
        stacked[quantity] = table
    return stacked
