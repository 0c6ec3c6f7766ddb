"""When a run computes a tensor under TF1 control flow (:mod:`bnrepro.graphs.liveness`): a
``tf.cond`` built as ``Switch``/``Merge`` in a graph of its own (TF1 control flow switched on for
the build only), its predicate fed, a constant, or computed by the run."""
import pytest

from bnrepro.graphs import liveness
from bnrepro.graphs.tfv1 import tf, tf1


def _tf1_cond_graph(predicate):
    """``out = cond(predicate(...), train, infer)`` with a tensor in each branch:
    ``(graph, tensors by name)``."""
    from tensorflow.python.ops import control_flow_util

    v2_control_flow = control_flow_util.ENABLE_CONTROL_FLOW_V2
    tf1.disable_control_flow_v2()
    try:
        graph = tf.Graph()
        with graph.as_default():
            x = tf1.placeholder(tf.float32, (None, 3))
            flag = tf1.placeholder(tf.bool, ())
            inside = {}

            def train():
                inside["batch_mean"] = tf.reduce_mean(x, 0)
                return inside["batch_mean"]

            def infer():
                inside["constant_mean"] = tf.zeros([3]) + 1.0
                return inside["constant_mean"]

            pred = predicate(flag)
            out = tf1.cond(pred, train, infer)
    finally:
        if v2_control_flow:
            tf1.enable_control_flow_v2()
    assert {op.type for op in graph.get_operations()} >= {"Switch", "Merge"}
    return graph, dict(x=x, flag=flag, out=out, **inside)


def test_a_fed_predicate_decides_each_branch():
    graph, t = _tf1_cond_graph(lambda flag: flag)
    alive = liveness.Liveness({t["x"].name, t["flag"].name})
    flag = t["flag"].name
    assert alive.alive_when(t["batch_mean"]) == {(flag, True)}
    assert alive.alive_when(t["constant_mean"]) == {(flag, False)}
    assert alive.alive_when(t["out"]) == liveness.ALWAYS  # the Merge of both branches
    assert alive.alive_when(t["x"]) == liveness.ALWAYS
    assert liveness.holds({(flag, True)}, {flag: True})
    assert not liveness.holds({(flag, True)}, {flag: False})


def test_a_negated_fed_predicate_flips_the_branches():
    graph, t = _tf1_cond_graph(tf.logical_not)
    alive = liveness.Liveness({t["x"].name, t["flag"].name})
    assert alive.alive_when(t["batch_mean"]) == {(t["flag"].name, False)}


@pytest.mark.parametrize("value, alive_branch", [(True, "batch_mean"), (False, "constant_mean")])
def test_a_constant_predicate_keeps_one_branch(value, alive_branch):
    """A ``placeholder_with_default`` the run does not feed is its default: a constant."""
    graph, t = _tf1_cond_graph(lambda flag: tf1.placeholder_with_default(value, ()))
    alive = liveness.Liveness({t["x"].name})
    dead_branch = {"batch_mean": "constant_mean", "constant_mean": "batch_mean"}[alive_branch]
    assert alive.alive_when(t[alive_branch]) == liveness.ALWAYS
    assert alive.alive_when(t[dead_branch]) == liveness.NEVER


def test_a_predicate_the_run_computes_is_not_known_before_it():
    graph, t = _tf1_cond_graph(lambda flag: tf.reduce_sum(t_x(flag)) > 0)
    alive = liveness.Liveness({t["x"].name, t["flag"].name})
    assert alive.alive_when(t["batch_mean"]) is None
    assert alive.alive_when(t["out"]) is None  # conservatively: neither branch is known to run


def t_x(flag):
    return tf.cast(flag, tf.float32) - 0.5


# --- reads a run does not order against its updates (run_plan.unordered_reads) ----------------------

def _evaluation_graph(ordered):
    """An update of ``population_mean`` and, in the same run, a use of its value: ordered after
    the update (``tf.control_dependencies``) or not."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, (None, 3))
        population_mean = tf1.get_variable("population_mean", initializer=tf.zeros([3]),
                                           trainable=False, use_resource=True)
        update = population_mean.assign(population_mean * 0.9 + tf.reduce_mean(x, 0) * 0.1)
        dependencies = [update] if ordered else []
        with tf.control_dependencies(dependencies):
            output = x - population_mean.read_value()
        fetches = [output, update]
    return graph, population_mean, fetches, {x.name}


@pytest.mark.parametrize("ordered", [False, True])
def test_a_read_unordered_against_the_update_is_named(ordered):
    from bnrepro.graphs import run_plan

    graph, variable, fetches, fed = _evaluation_graph(ordered)
    executed = run_plan._executed(graph, [t.name for t in fetches], fed)  # noqa: SLF001
    sentences = [sentence for sentence, _ in run_plan.unordered_reads(
        [variable], executed, liveness.Liveness(fed))]
    if ordered:
        assert sentences == []
    else:
        assert len(sentences) == 1 and "population_mean" in sentences[0]
        assert "no fixed order" in sentences[0]


def _running_mean_in_a_tf1_cond(read_in_branch):
    """A TF1 ``tf.cond`` (``Switch``/``Merge``) whose training branch updates a resource variable
    ``running_mean``, and a read of it ordered after that update: inside the branch
    (``read_in_branch``), or outside the cond through a control dependency on the branch's
    assignment. ``(graph, x, training, running, value, read, initialise)``."""
    from tensorflow.python.ops import control_flow_util

    v2_control_flow = control_flow_util.ENABLE_CONTROL_FLOW_V2
    tf1.disable_control_flow_v2()
    try:
        graph = tf.Graph()
        with graph.as_default():
            x = tf1.placeholder(tf.float32, (None,))
            training = tf1.placeholder(tf.bool, ())
            running = tf1.get_variable("running_mean", initializer=0.0, trainable=False,
                                       use_resource=True)
            assigns, reads = [], []

            def update():
                assigns.append(running.assign(running * 0.5 + tf.reduce_mean(x) * 0.5,
                                              read_value=False))
                with tf.control_dependencies(assigns):
                    if read_in_branch:
                        reads.append(tf.raw_ops.ReadVariableOp(resource=running.handle,
                                                               dtype=tf.float32))
                    return tf.identity(x)

            value = tf1.cond(training, update, lambda: tf.identity(x))
            if not read_in_branch:
                with tf.control_dependencies(assigns):
                    reads.append(tf.raw_ops.ReadVariableOp(resource=running.handle,
                                                           dtype=tf.float32))
            initialise = tf1.global_variables_initializer()
    finally:
        if v2_control_flow:
            tf1.enable_control_flow_v2()
    assert {op.type for op in graph.get_operations()} >= {"Switch", "Merge"}
    return graph, x, training, running, value, reads[0], initialise


def test_a_read_in_a_tf1_cond_branch_is_not_fetched():
    """A read after the update inside a ``tf.cond`` branch is dead when the other branch runs, and
    fetching it would fail the program's run. It follows the update and needs nothing the run does
    not execute, but it is not used as the state after the run: the tracer reads the state
    instead."""
    from bnrepro.graphs import run_plan

    graph, x, training, running, value, read, _ = _running_mean_in_a_tf1_cond(True)
    fed = {x.name, training.name}
    executed = run_plan._executed(graph, [value.name], fed)  # noqa: SLF001
    writers = {op.name for op in run_plan._handle_users(running.handle)  # noqa: SLF001
               if op.name in executed and op.type not in run_plan.HANDLE_READS
               and op.type != "Identity"}
    assert writers and read.op.name not in executed
    assert run_plan._follows(read.op, writers, executed, fed)  # noqa: SLF001  ordered, executable
    # alive only when the fed flag is true: not a read every run computes
    assert liveness.Liveness(fed).alive_when(read) == {(training.name, True)}
    assert run_plan.state_after_run({("running_mean", "value"): running}, executed, fed) is None


def test_the_state_after_a_run_is_never_read_where_the_read_may_be_dead():
    """A read of the running mean outside a TF1 ``tf.cond``, ordered after the update in its
    training branch by a control dependency: it follows the update and needs nothing the run does
    not execute, but it is dead when the branch is not taken (fetching it would fail the program's
    run). ``state_after_run`` must not take it as the state after the run (the tracer then reads
    the state itself). Unlike a read inside the branch, which reaches the handle through a
    ``Switch``, this read is one ``state_after_run`` considers: only the liveness guard keeps it
    out."""
    from bnrepro.graphs import run_plan

    graph, x, training, running, value, read, initialise = _running_mean_in_a_tf1_cond(False)
    fed = {x.name, training.name}
    executed = run_plan._executed(graph, [value.name], fed)  # noqa: SLF001
    assert read.op in run_plan._handle_users(running.handle)  # noqa: SLF001  a candidate read
    assert liveness.Liveness(fed).alive_when(read) == {(training.name, True)}
    assert run_plan.state_after_run({("running_mean", "value"): running}, executed, fed) is None
    with tf1.Session(graph=graph) as session:  # what fetching it would do when not training
        session.run(initialise)
        with pytest.raises(tf.errors.InvalidArgumentError):
            session.run([value, read], {x: [1.0, 3.0], training: False})
