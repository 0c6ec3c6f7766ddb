"""A uniform view of tensors in a graph and in the bodies of its functions (the branches of a TF2
``tf.cond``), so that :mod:`bnrepro.graphs.discover` reads an assignment the same wherever it sits;
and the operation types it looks for."""
from __future__ import annotations

import tensorflow as tf  # not bnrepro.graphs.tfv1: its device set-up would change the traced program

ASSIGN_SUB = {"AssignSubVariableOp", "AssignSub"}
ASSIGN = {"AssignVariableOp", "Assign"}
PASS_THROUGH = {"Identity", "Switch", "RefSwitch", "Enter", "RefEnter", "RefIdentity", "StopGradient",
                "Snapshot"}
ADD = {"Add", "AddV2"}
VARIABLE_OPS = {"VarHandleOp", "VariableV2", "Variable"}
TRAINING_OP_PREFIXES = ("ResourceApply", "Apply", "ResourceSparseApply", "SparseApply")


# --- a uniform view of tensors in the graph and in its functions' bodies -----------------------------

class Value:
    """A tensor of the graph or of a function body (an ``If`` branch), seen the same way: its
    producing op's type and name, its inputs, its constant value, and the tensor of the graph itself
    that carries it (what a ``session.run`` can fetch)."""

    op_type: str
    op_name: str

    def inputs(self):
        raise NotImplementedError

    def constant(self):
        """The value of a ``Const``, or ``None``."""
        return None

    def outer(self):
        """The graph's own tensor this value is (through function arguments and ``Switch``), or
        ``None``."""
        return None


class GraphValue(Value):
    def __init__(self, tensor):
        self.tensor = tensor
        self.op_type = tensor.op.type
        self.op_name = tensor.op.name

    def inputs(self):
        return [GraphValue(t) for t in self.tensor.op.inputs]

    def constant(self):
        if self.op_type != "Const":
            return None
        return tf.get_static_value(self.tensor)

    def outer(self):
        """Through ``Switch``/``Identity`` inside a TF1 cond context to the tensor outside it, which
        the cond's both branches see; else the tensor itself (computed in a branch: a run computes
        it when it takes that branch, :mod:`bnrepro.graphs.liveness`)."""
        tensor = self.tensor
        while _in_cond_context(tensor.op) and tensor.op.type in PASS_THROUGH | {"Merge"}:
            if tensor.op.type == "Merge":
                return tensor  # computed whenever the cond runs
            tensor = tensor.op.inputs[0]
        return self.tensor if _in_cond_context(tensor.op) else tensor


def _in_cond_context(operation):
    return getattr(operation, "_control_flow_context", None) is not None


class BodyValue(Value):
    """A tensor inside a function body: ``node`` is a NodeDef name, ``output`` its output, or an
    argument of the function (``argument`` set), which maps to the calling op's input."""

    def __init__(self, body, node=None, output="", argument=None):
        self.body, self.node, self.output, self.argument = body, node, output, argument
        if argument is not None:
            outer_value = body.arguments[argument]
            self.op_type, self.op_name = outer_value.op_type, outer_value.op_name
        else:
            definition = body.nodes[node]
            self.op_type, self.op_name = definition.op, definition.name

    def _resolved(self):
        return self.body.arguments[self.argument] if self.argument is not None else None

    def inputs(self):
        if self.argument is not None:
            return self._resolved().inputs()
        return [self.body.value(name) for name in self.body.nodes[self.node].input
                if not name.startswith("^")]

    def constant(self):
        if self.argument is not None:
            return self._resolved().constant()
        definition = self.body.nodes[self.node]
        if definition.op != "Const":
            return None
        return tf.make_ndarray(definition.attr["value"].tensor)

    def outer(self):
        return self._resolved().outer() if self.argument is not None else None


class FunctionBody:
    """One branch function of an ``If`` op: its nodes, and its arguments mapped to the op's inputs."""

    def __init__(self, definition, outer_inputs):
        self.definition = definition
        self.nodes = {node.name: node for node in definition.node_def}
        names = [argument.name for argument in definition.signature.input_arg]
        self.arguments = dict(zip(names, outer_inputs))

    def value(self, reference):
        """``"node:output:index"``, ``"node"`` or an argument name -> :class:`BodyValue`."""
        if reference in self.arguments:
            return BodyValue(self, argument=reference)
        node, _, output = reference.partition(":")
        return BodyValue(self, node=node, output=output)

    def assignments(self):
        return [BodyValue(self, node=name) for name, node in self.nodes.items()
                if node.op in ASSIGN_SUB | ASSIGN]


def branch_bodies(graph, operation):
    """The bodies of an ``If``/``StatelessIf`` op's two branches, arguments mapped to its inputs."""
    bodies = []
    for attribute in ("then_branch", "else_branch"):
        function = graph._get_function(operation.get_attr(attribute).name)  # noqa: SLF001
        if function is None:
            continue
        definition = getattr(function, "definition", None) or function.cached_definition
        bodies.append(FunctionBody(definition, [GraphValue(t) for t in operation.inputs[1:]]))
    return bodies
