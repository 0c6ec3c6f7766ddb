"""The two forms of a moving-average update, read from the graph: ``assign_sub(V, (V - x) * d)``
(tf_keras' batch norm, ``assign_moving_average``, ``ExponentialMovingAverage``) and ``assign(V,
V * m + x * (1 - m))`` in any order of its terms (a plain ``tf.assign``); with the consumed value
``x`` and the momentum, read from the graph's constants where it is one."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from bnrepro.graphs.graph_values import (ADD, ASSIGN_SUB, PASS_THROUGH, VARIABLE_OPS, GraphValue,
                                         Value)

# --- the two forms of a moving-average update -----------------------------------------------------


def variable_name(value, depth=0):
    """The variable (its op name) a resource handle or ref tensor comes from, or ``None``."""
    if depth > 20:
        return None
    if value.op_type in VARIABLE_OPS:
        return value.op_name
    if value.op_type in PASS_THROUGH | {"ReadVariableOp"}:
        inputs = value.inputs()
        return variable_name(inputs[0], depth + 1) if inputs else None
    return None


def _reads(value, variable):
    """Whether ``value`` is a read of ``variable`` (``ReadVariableOp``, a ref variable itself, or
    either through identities)."""
    return variable_name(value) == variable


def scalar_constant(value, depth=0):
    """A constant's value as a Python float (through identities and casts), or ``None``."""
    if depth > 10:
        return None
    constant = value.constant()
    if constant is not None:
        array = np.asarray(constant)
        return float(array.reshape(-1)[0]) if array.size and np.all(array == array.flat[0]) else None
    inputs = value.inputs()
    if value.op_type in PASS_THROUGH | {"Cast"}:
        return scalar_constant(inputs[0], depth + 1) if inputs else None
    if value.op_type in ARITHMETIC and len(inputs) == 2:  # 1 - decay, folded
        left, right = (scalar_constant(item, depth + 1) for item in inputs)
        if left is not None and right is not None:
            return float(ARITHMETIC[value.op_type](np.float32(left), np.float32(right)))
    return None


ARITHMETIC = {"Sub": np.subtract, "Add": np.add, "AddV2": np.add, "Mul": np.multiply,
              "RealDiv": np.divide, "Minimum": np.minimum, "Maximum": np.maximum}


@dataclass
class Update:
    """One moving-average assignment: ``variable <- momentum * variable + (1 - momentum) * consumed``.

    ``weight`` is the tensor (or constant) multiplying the new value (``1 - momentum``);
    ``momentum`` its constant value when it has one. ``consumed`` and ``weight_tensor`` are graph
    tensors a run can fetch. ``zero_debias``: the average is kept on ``variable/biased`` and
    ``variable = biased / (1 - momentum^t)``.

    ``form`` ``"renorm"`` (a renorm layer's variance, found by
    :func:`bnrepro.graphs.discover._renorm_variance_averages`): the average is kept on the variable
    ``stddev`` (``moving_stddev``), which mixes in ``sqrt(consumed + epsilon)`` with ``momentum``,
    and ``variable`` is assigned ``max(stddev^2 - epsilon, 0)``.
    """

    variable: str  # the averaged variable's op name, e.g. "batch_normalization/moving_mean"
    consumed: object  # tf.Tensor
    momentum: Optional[float]
    weight_tensor: Optional[object] = None  # tf.Tensor when the momentum is computed at run time
    form: str = "assign_sub"  # how the assignment is written: or "weighted_sum", "renorm"
    zero_debias: bool = False
    site: object = None  # the graph op that runs the assignment (itself, an If, or in a cond)
    stddev: Optional[str] = None  # renorm: the averaged variable's op name (form "renorm")
    # the consumed value where it is computed: ``consumed`` is None when that is inside a TF2
    # ``tf.cond`` branch (an ``If`` op's function), which a run cannot fetch
    consumed_value: Optional[Value] = None


def match_assign_sub(assignment):
    """``assign_sub(V, (V - x) * d)`` -> ``(V, x, d)``, or ``None``."""
    target, delta = assignment.inputs()[:2]
    variable = variable_name(target)
    if variable is None or delta.op_type != "Mul":
        return None
    factors = delta.inputs()
    for difference, weight in (factors, factors[::-1]):
        if difference.op_type == "Sub":
            old, consumed = difference.inputs()
            if _reads(old, variable):
                return variable, consumed, weight
    return None


def _match_weighted_sum(assignment):
    """``assign(V, V * m + x * w)`` (terms and factors in any order) -> ``(V, x, w)``, or ``None``:
    ``m`` and ``w`` constants, or ``w = 1 - m`` with ``m`` a tensor (``tf.cond(is_training, 0.997,
    1.0)``), fetched with the run."""
    target, value = assignment.inputs()[:2]
    variable = variable_name(target)
    if variable is None or value.op_type not in ADD:
        return None
    terms = value.inputs()
    if any(term.op_type != "Mul" for term in terms):
        return None
    for kept, mixed in (terms, terms[::-1]):
        kept_factors, mixed_factors = kept.inputs(), mixed.inputs()
        for old, momentum in (kept_factors, kept_factors[::-1]):
            if not _reads(old, variable):
                continue
            constant = scalar_constant(momentum) is not None
            for consumed, weight in (mixed_factors, mixed_factors[::-1]):
                if _reads(consumed, variable):
                    continue
                if (scalar_constant(weight) is not None if constant
                        else _complement_of(weight, momentum)):
                    return variable, consumed, weight
    return None


def _complement_of(weight, momentum):
    """Whether ``weight`` is ``1 - momentum`` for the very tensor ``momentum``."""
    if weight.op_type != "Sub":
        return False
    one, subtracted = weight.inputs()
    return scalar_constant(one) == 1.0 and _same(subtracted, momentum)


def _same(first, second):
    """Whether two values are the same tensor (of the graph, or of one function body)."""
    if isinstance(first, GraphValue) and isinstance(second, GraphValue):
        return first.tensor is second.tensor or first.tensor.name == second.tensor.name
    keys = [(type(v).__name__, v.op_name, getattr(v, "output", None), getattr(v, "argument", None))
            for v in (first, second)]
    return keys[0] == keys[1]


def update_of(assignment, site):
    """The :class:`Update` an assignment performs, or ``None`` when it is not a moving average
    (or its consumed value cannot be fetched)."""
    if assignment.op_type in ASSIGN_SUB:
        matched, form = match_assign_sub(assignment), "assign_sub"
    else:
        matched, form = _match_weighted_sum(assignment), "weighted_sum"
    if matched is None:
        return None
    variable, consumed, weight = matched
    consumed_tensor = consumed.outer()
    if consumed_tensor is None and isinstance(consumed, GraphValue):
        return None
    constant = scalar_constant(weight)
    weight_tensor = None if constant is not None else weight.outer()
    if constant is None and weight_tensor is None:
        return None
    momentum = None if constant is None else momentum_of(weight, constant)
    return Update(variable, consumed_tensor, momentum, weight_tensor, form, site=site,
                  consumed_value=consumed)


def momentum_of(weight, constant):
    """The momentum behind the weight of the new value: the constant ``m`` of ``1 - m`` when the
    graph computes the weight so (the fused layer: ``1 - float32(0.9)``), else ``1 - weight``
    (:func:`_shortest_complement`)."""
    if weight.op_type == "Sub":
        one, momentum = (scalar_constant(item) for item in weight.inputs())
        if one == 1.0 and momentum is not None:
            return shortest_float32(momentum)
    return _shortest_complement(constant)


def shortest_float32(value):
    """A float32 constant as the shortest decimal naming it: 0.0010000000474974513 -> 0.001."""
    return float(str(np.float32(value)))


def _shortest_complement(weight):
    """``1 - weight`` for a float32 weight, written with the fewest digits that give the same float32
    weight back: the ``0.1`` stored for momentum 0.9 reads as 0.9, not 0.8999999985."""
    weight32 = np.float32(weight)
    for digits in range(1, 18):
        momentum = round(1.0 - float(weight32), digits)
        if np.float32(1.0 - momentum) == weight32:
            return momentum
    return 1.0 - float(weight32)
