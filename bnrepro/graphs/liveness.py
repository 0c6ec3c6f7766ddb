"""When a run computes a tensor: the TF1 control flow conditions under which it is alive.

In TF1 control flow (``tf.compat.v1.disable_v2_behavior()``, TensorFlow 1.x) a ``tf.cond`` is a
``Switch`` per input and a ``Merge`` per output. ``Switch(data, pred)`` forwards ``data`` to its
output 1 when ``pred`` is true and to its output 0 when it is false; the other output is *dead*, and
so is every operation that needs a dead tensor (through an input or a control input), until a
``Merge``, which is alive when one of its inputs is. Fetching a dead tensor fails the whole run
(``Retval[3] does not have value``), after its assignments have run: a tracer may add a tensor to a
run only when it is sure the run computes it.

:func:`alive_when` says when that is, as a set of conditions ``(predicate tensor name, value)``
that must all hold: the empty set when the tensor is alive whenever the run runs, ``NEVER`` when it
cannot be (a predicate fixed by a constant selects the other branch), ``None`` when it depends on a
predicate not known before the run (computed by the run itself). A predicate is known before the
run when the run feeds it (``is_training`` placeholder) or when it is a constant (a
``placeholder_with_default`` the run does not feed: its default), possibly through ``Identity`` and
``LogicalNot``. :func:`holds` checks a condition set against a run's fed values.

Inside a ``while_loop`` (``Enter``, ``NextIteration``) nothing is ever fetched; a loop's ``Exit`` is
taken as alive (as TF1 code builds loops, outside any dead branch). TF2 control flow (``If`` ops)
has no dead tensors in the graph itself: their branches are functions.
"""
from __future__ import annotations

import numpy as np

from bnrepro.graphs.graph_values import PASS_THROUGH, GraphValue
from bnrepro.graphs.updates import scalar_constant

SWITCH = frozenset({"Switch", "RefSwitch"})
MERGE = frozenset({"Merge", "RefMerge"})
IN_LOOP = frozenset({"Enter", "RefEnter", "NextIteration", "RefNextIteration", "LoopCond"})
ALWAYS = frozenset()
NEVER = "never"  # a constant predicate selects the other branch


class Liveness:
    """The conditions under which a run computes each tensor of one graph, for runs that feed the
    tensors named in ``fed`` (memoised per operation)."""

    def __init__(self, fed):
        self.fed = frozenset(fed)
        self._operations = {}  # op name -> conditions, NEVER or None

    def alive_when(self, tensor):
        """The conditions (``frozenset`` of ``(predicate name, bool)``) under which a run computes
        ``tensor``; ``ALWAYS`` (empty) when it always does, ``NEVER``, or ``None`` when that is
        not known before the run."""
        if tensor.name in self.fed:
            return ALWAYS
        return self._output(tensor.op, tensor.value_index)

    def _output(self, operation, index):
        conditions = self._operation(operation)
        if operation.type not in SWITCH or conditions is None or conditions == NEVER:
            return conditions
        known = self.predicate(operation.inputs[1])
        if known == NEVER or known is None:
            return known
        name, value = known
        taken = index == 1
        if name is None:  # a constant predicate
            return conditions if value == taken else NEVER
        return joined([conditions, frozenset({(name, value == taken)})])

    def predicate(self, tensor, negated=False, depth=0):
        """``(fed predicate name or None for a constant, value the switch sees when that name is
        true / the constant)``, or ``None`` when not known before the run."""
        if depth > 16:
            return None
        if tensor.name in self.fed:
            return tensor.name, not negated
        operation = tensor.op
        if operation.type == "LogicalNot":
            return self.predicate(operation.inputs[0], not negated, depth + 1)
        if operation.type in PASS_THROUGH - SWITCH or operation.type == "PlaceholderWithDefault":
            return self.predicate(operation.inputs[0], negated, depth + 1)
        constant = scalar_constant(GraphValue(tensor))
        if constant is None:
            return None
        return None, bool(constant) != negated

    def runs_when(self, operation):
        """The conditions under which a run executes ``operation`` (as :meth:`alive_when`)."""
        return self._operation(operation)

    def _operation(self, root):
        """The conditions under which ``root`` runs, computed for it and everything it needs."""
        memo = self._operations
        stack = [(root, False)]
        while stack:
            operation, ready = stack.pop()
            if operation.name in memo:
                continue
            sources = self._sources(operation)
            if not ready:
                pending = [op for op, _ in sources if op.name not in memo]
                if pending:
                    stack.append((operation, True))
                    stack.extend((op, False) for op in pending)
                    continue
            memo[operation.name] = self._combine(operation, sources)
        return memo[root.name]

    def _sources(self, operation):
        """``(operation, output index or None for a control input)`` that ``operation`` needs."""
        if operation.type in IN_LOOP or operation.type in ("Exit", "RefExit"):
            return []
        inputs = [(tensor.op, tensor.value_index) for tensor in operation.inputs
                  if tensor.name not in self.fed]
        if operation.type in SWITCH:  # the predicate is a condition of the output, not of the op
            inputs = inputs[:1]
        return inputs + [(control, None) for control in operation.control_inputs]

    def _combine(self, operation, sources):
        if operation.type in IN_LOOP:
            return None
        if operation.type in ("Exit", "RefExit"):
            return ALWAYS
        parts = [self._operations[op.name] if index is None else self._output(op, index)
                 for op, index in sources]
        if operation.type in MERGE:
            return _merged(parts)
        if any(part == NEVER for part in parts):
            return NEVER
        if any(part is None for part in parts):
            return None
        return joined(parts)


def joined(parts):
    """All of ``parts`` must hold: their union, or ``NEVER`` when it asks a predicate to be both
    true and false."""
    union = frozenset().union(*parts)
    names = [name for name, _ in union]
    return NEVER if len(names) != len(set(names)) else union


def _merged(parts):
    """A ``Merge`` is alive when one of its inputs is: ``ALWAYS`` if one always is; the remaining
    input's conditions when the others never are; for the two branches of one ``cond`` (the same
    predicate, opposite values) the union of the rest of their conditions; else ``None``."""
    parts = [part for part in parts if part != NEVER]
    if not parts:
        return NEVER
    if any(part == ALWAYS for part in parts):
        return ALWAYS
    if any(part is None for part in parts):
        return None
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        first, second = parts
        opposite = {(name, not value) for name, value in first} & second
        if len(opposite) == 1:
            ((name, _),) = opposite
            return joined([{c for c in first if c[0] != name}, {c for c in second if c[0] != name}])
    return None


def holds(conditions, fed_values):
    """Whether a run with ``fed_values`` (predicate name -> fed value) meets ``conditions``."""
    return all(truth(fed_values[name]) == value for name, value in conditions)


def truth(value):
    """A fed predicate's truth: ``value`` itself when a ``bool`` (what a training loop feeds, at
    every run), else its first element's."""
    if type(value) is bool:  # noqa: E721  not a subclass: np.bool_ goes through NumPy
        return value
    return bool(np.asarray(value).reshape(-1)[0])
