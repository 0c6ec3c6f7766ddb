"""The scenarios call ``tf.compat.v1.layers.batch_normalization`` as the posts do and describe each
layer afterwards, from the graph, with ``bnrepro.graphs.built.batch_norm_taps``. Called without
``momentum`` or ``epsilon`` the layer runs its own documented defaults, momentum 0.99 and epsilon
1e-3 (``momentum=0.99, epsilon=1e-3`` in tf_keras 2.21's ``legacy_tf_layers/normalization.py``, as
in TF 1.x's ``tf.layers.batch_normalization``), and the tap must say what the graph uses. The
expected numbers are worked by hand in the docstrings; the momentum and epsilon are read back from
what the graph computes, never from the tap."""
import numpy as np
import pytest

from bnrepro.graphs.built import batch_norm_taps
from bnrepro.check.layer_modes import LayerMode
from bnrepro.graphs.tfv1 import tf, tf1

LAYER_MOMENTUM = 0.99  # tf.compat.v1.layers.batch_normalization's documented default
LAYER_EPSILON = 1e-3  # ... and its epsilon (1e-5 is PyTorch's and Flax's)

X = np.array([1.0, 2.0, 4.0, 7.0])  # one channel, four samples
# Hand-set state: moving_variance + 1e-3 = 0.25, whose square root is 0.5.
MOVING_MEAN, MOVING_VARIANCE, GAMMA, BETA = 1.0, 0.249, 2.0, 0.5

# The input shapes the layer is called with: 2-D (the non-fused kernel) and 4-D (the fused one; with
# ``training`` a placeholder, the kernel runs inside a tf.cond and the momentum is computed there).
SHAPES = {"2-D": (4, 1), "4-D fused": (4, 1, 1, 1)}


def _layer(shape, builder, state=(MOVING_MEAN, MOVING_VARIANCE, GAMMA, BETA), taps=True):
    """``builder(inputs, training)`` in a fresh graph, variables initialised then set to ``state``.

    Returns ``(session, inputs, training, outputs, tap)``; ``training`` is a placeholder defaulting
    to False, as in the scenarios, and ``tap`` is the layer's tap, built from the graph afterwards
    (``builder`` returns the layer's output only, as the scenarios' layer calls do), or ``None``
    without ``taps``. Building the tap must add no operation to the graph.
    """
    graph = tf.Graph()
    with graph.as_default():
        inputs = tf1.placeholder(tf.float32, (None,) + shape[1:], name="x")
        training = tf1.placeholder_with_default(False, shape=(), name="training")
        outputs = builder(inputs, training)
        operations = len(graph.get_operations())
        (tap,) = batch_norm_taps(graph, {"batch_normalization": outputs}) if taps else (None,)
        assert len(graph.get_operations()) == operations
        session = tf1.Session(graph=graph)
        session.run(tf1.global_variables_initializer())
        by_role = {v.op.name.rsplit("/", 1)[-1]: v for v in tf1.global_variables()}
        for role, value in zip(("moving_mean", "moving_variance", "gamma", "beta"), state):
            by_role[role].load(np.array([value], np.float32), session)
    return session, inputs, training, outputs, tap


def _layer_without_arguments(inputs, training):
    return tf1.layers.batch_normalization(inputs, training=training)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_layer_default_epsilon_is_1e_3_and_the_tap_reads_it_from_the_graph(shape):
    """Inference mode, moving_mean 1, moving_variance 0.249, gamma 2, beta 0.5, x = 1, 2, 4, 7::

        output = 2 * (x - 1) / sqrt(0.249 + 0.001) + 0.5 = 4 * (x - 1) + 0.5 = 0.5, 4.5, 12.5, 24.5

    (epsilon 1e-5 would give sqrt(0.24901) = 0.49901 and 24.5476 for x = 7). Solving the formula
    for epsilon from the output at x = 7 gives what the graph used::

        epsilon = (gamma * (x - moving_mean) / (output - beta))^2 - moving_variance
                = (2 * 6 / 24)^2 - 0.249 = 0.001

    and the tap's epsilon (what the trace header records) must be that number.
    """
    session, inputs, _, outputs, tap = _layer(shape, _layer_without_arguments)
    output = session.run(outputs, {inputs: X.reshape(shape)}).ravel().astype(np.float64)
    np.testing.assert_allclose(output, [0.5, 4.5, 12.5, 24.5], rtol=1e-6, atol=1e-6)
    used = (GAMMA * (X[3] - MOVING_MEAN) / (output[3] - BETA)) ** 2 - MOVING_VARIANCE
    assert used == pytest.approx(LAYER_EPSILON, abs=1e-6)
    assert tap.epsilon == pytest.approx(used, abs=1e-6)
    assert tap.epsilon == LAYER_EPSILON


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_layer_default_momentum_is_0_99_and_the_tap_reads_it_from_the_graph(shape):
    """One training-mode update from moving_mean 1, moving_variance 0.249 on x = 1, 2, 4, 7:
    batch mean 3.5; biased variance (6.25 + 2.25 + 0.25 + 12.25) / 4 = 5.25 (the non-fused kernel),
    unbiased 21 / 3 = 7 (the fused kernel averages it)::

        moving_mean     = 0.99 * 1     + 0.01 * 3.5  = 1.025
        moving_variance = 0.99 * 0.249 + 0.01 * 5.25 = 0.29901   (fused: + 0.01 * 7 = 0.31651)

    The momentum the graph ran is read back as (new - batch) / (old - batch) = -2.475 / -2.5 = 0.99;
    the tap's momentum must be that number.
    """
    session, inputs, training, _, tap = _layer(shape, _layer_without_arguments)
    with session.graph.as_default():
        updates = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
    session.run(updates, {inputs: X.reshape(shape), training: True})
    mean, variance = (session.run(tap.variables[role]).astype(np.float64)[0]
                      for role in ("moving_mean", "moving_variance"))
    assert mean == pytest.approx(1.025, abs=1e-6)
    assert variance == pytest.approx(0.31651 if len(shape) == 4 else 0.29901, abs=1e-6)
    used = (mean - 3.5) / (MOVING_MEAN - 3.5)
    assert used == pytest.approx(LAYER_MOMENTUM, abs=1e-6)
    assert tap.momentum == pytest.approx(used, abs=1e-6)
    assert tap.momentum == LAYER_MOMENTUM


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_taps_change_nothing_the_layer_computes(shape):
    """The tap is read from the graph after the layer is built and adds no operation to it
    (:func:`_layer` checks), so the layer computes what it computes without one: a graph with the tap
    and one without (the layer alone is the reference, not bnrepro) give the same inference output
    and the same update."""
    results = []
    for taps in (True, False):
        session, inputs, training, outputs, _ = _layer(shape, _layer_without_arguments, taps=taps)
        inference = session.run(outputs, {inputs: X.reshape(shape)})
        with session.graph.as_default():
            updates = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
            moving = [v for v in tf1.global_variables() if "moving" in v.op.name]
        session.run(updates, {inputs: X.reshape(shape), training: True})
        results.append((inference, session.run(moving)))
    (tapped_output, tapped_state), (layer_output, layer_state) = results
    np.testing.assert_array_equal(tapped_output, layer_output)
    for ours, theirs in zip(tapped_state, layer_state):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_tap_names_the_layers_own_tensors(shape):
    """The tap's input is the tensor fed to the layer, its output the tensor the layer returned, its
    variables the layer's, and its batch_mean and batch_variance, fetched in the training run, are
    what the update mixed in: on x = 1, 2, 4, 7, mean 3.5 and variance 21 / 4 = 5.25 (non-fused) or
    21 / 3 = 7 (the fused kernel's unbiased one), so that from moving_mean 1, moving_variance 0.249::

        moving_mean     = 0.99 * 1     + 0.01 * batch_mean
        moving_variance = 0.99 * 0.249 + 0.01 * batch_variance
    """
    session, inputs, training, outputs, tap = _layer(shape, _layer_without_arguments)
    assert tap.inputs is inputs and tap.outputs is outputs
    assert sorted(tap.variables) == ["beta", "gamma", "moving_mean", "moving_variance"]
    assert all(variable.op.name == f"batch_normalization/{role}"
               for role, variable in tap.variables.items())
    assert tap.mode == LayerMode()
    with session.graph.as_default():
        updates = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
    _, mean, variance = session.run([updates, tap.batch_mean, tap.batch_variance],
                                    {inputs: X.reshape(shape), training: True})
    np.testing.assert_allclose(np.ravel(mean), [3.5], rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.ravel(variance), [7.0 if len(shape) == 4 else 5.25], rtol=0,
                               atol=1e-5)
    moving_mean, moving_variance = (session.run(tap.variables[role]).astype(np.float64)[0]
                                    for role in ("moving_mean", "moving_variance"))
    assert moving_mean == pytest.approx(0.99 * MOVING_MEAN + 0.01 * np.ravel(mean)[0], abs=1e-6)
    assert moving_variance == pytest.approx(0.99 * MOVING_VARIANCE + 0.01 * np.ravel(variance)[0],
                                            abs=1e-6)


# (shape, training, layer options) -> the mode the tap must declare: only what the graph does.
MODES = {
    "ghost 2, training True": ((4, 1), True, {"virtual_batch_size": 2},
                               LayerMode(virtual_batch_size=2)),
    "ghost 2, 4-D, training True": ((4, 1, 1, 2), True, {"virtual_batch_size": 2},
                                    LayerMode(virtual_batch_size=2)),
    # tf_keras splits the batch only when training is a Python True: (N, C) -> (N, 1, C)
    "ghost 2, training a tensor": ((4, 1), None, {"virtual_batch_size": 2}, LayerMode()),
    "renorm, training a tensor": ((4, 1), None, {"renorm": True, "renorm_momentum": 0.7,
                                                 "renorm_clipping": {"rmin": 0.5, "rmax": 2.0,
                                                                     "dmax": 0.25}},
                                  LayerMode(renorm=True, renorm_momentum=0.7, rmin=0.5, rmax=2.0,
                                            dmax=0.25)),
    "renorm defaults, training True": ((4, 1), True, {"renorm": True},
                                       LayerMode(renorm=True, renorm_momentum=0.99)),
    "renorm, rmax only, 4-D": ((4, 1, 1, 1), None, {"renorm": True,
                                                    "renorm_clipping": {"rmax": 3.0}},
                               LayerMode(renorm=True, renorm_momentum=0.99, rmax=3.0)),
    "ghost and renorm, training True": ((4, 1), True, {"virtual_batch_size": 2, "renorm": True,
                                                       "renorm_clipping": {"dmax": 1.0}},
                                        LayerMode(virtual_batch_size=2, renorm=True,
                                                  renorm_momentum=0.99, dmax=1.0)),
}


@pytest.mark.parametrize("shape, training, options, mode", MODES.values(), ids=MODES.keys())
def test_tap_reads_the_layers_mode_from_the_graph(shape, training, options, mode):
    """Ghost batches and renorm, declared from what the graph does (:mod:`bnrepro.graphs.discover`), with
    the momentum 0.9 and epsilon 0.01 the layer was called with."""
    graph = tf.Graph()
    with graph.as_default():
        inputs = tf1.placeholder(tf.float32, (None,) + shape[1:], name="x")
        flag = tf1.placeholder_with_default(False, shape=(), name="training")
        outputs = tf1.layers.batch_normalization(
            inputs, training=flag if training is None else training, momentum=0.9, epsilon=0.01,
            **options)
        (tap,) = batch_norm_taps(graph, {"batch_normalization": outputs})
    assert tap.mode == mode
    assert (tap.momentum, tap.epsilon) == (0.9, 0.01)
    assert tap.inputs is inputs and tap.outputs is outputs
    assert {"moving_stddev", "renorm_mean", "renorm_stddev"} <= set(tap.variables) or not mode.renorm


def test_taps_refuse_a_name_that_is_no_layer():
    graph = tf.Graph()
    with graph.as_default():
        inputs = tf1.placeholder(tf.float32, (None, 1), name="x")
        outputs = tf1.layers.batch_normalization(inputs, training=True)
        with pytest.raises(ValueError, match="no batch-norm layer 'bn'.*it has batch_normalization"):
            batch_norm_taps(graph, {"bn": outputs})


# Post 000 as printed before its 10th step (../shared/seeds/000_*.txt), every number as the post
# shows it: the layer's variables, hidden_tmp (the layer's input) and bn1 (its inference output).
POST_000_GAMMA, POST_000_BETA = 0.9833956, 0.12067804
POST_000_MOVING_MEAN, POST_000_MOVING_VARIANCE = 0.9730693, 0.41279468
POST_000_HIDDEN_TMP = np.array([1.6103973, 1.9122791, 1.9658315])
POST_000_BN1 = np.array([1.0949917, 1.5564928, 1.638361])


def test_post_000_printout_follows_the_layer_default_epsilon_not_the_formula_it_writes():
    """Post 000 calls ``tf.layers.batch_normalization(hidden_tmp, training=training, momentum=0.9)``
    with no epsilon and concludes ``bn1 = gamma * (hidden_tmp - m_m) / sqrt(m_v + 0.00001) + beta``.
    From its own printed numbers alone (no bnrepro code), with hidden_tmp[0] = 1.6103973::

        0.9833956 * (1.6103973 - 0.9730693) / sqrt(0.41279468 + 0.001)   + 0.12067804 = 1.0949917
        0.9833956 * (1.6103973 - 0.9730693) / sqrt(0.41279468 + 0.00001) + 0.12067804 = 1.0961594

    so only the layer's default 1e-3 reproduces the printed bn1 (all three within 6e-8; 1e-5 misses
    by 1.2e-3 to 1.8e-3)."""
    def bn1(epsilon):
        return (POST_000_GAMMA * (POST_000_HIDDEN_TMP - POST_000_MOVING_MEAN)
                / np.sqrt(POST_000_MOVING_VARIANCE + epsilon) + POST_000_BETA)

    np.testing.assert_allclose(bn1(LAYER_EPSILON), POST_000_BN1, rtol=0, atol=1e-7)
    assert np.all(np.abs(bn1(1e-5) - POST_000_BN1) > 1e-3)


def test_post_000_scenario_runs_the_layer_default_epsilon(cubic_trace):
    """The cubic scenario with its default config (the post's settings): the graph's inference
    output before the 10th step is the post's printed bn1 (within 1e-6, float32 rounding), which
    needs epsilon 1e-3 (test above); the epsilon solved from the graph's output with the state
    before that step is 1e-3 as well, and the header (the tap) records 1e-3."""
    layer = "batch_normalization"
    before = cubic_trace.step(9)["bn"][layer]
    shown = cubic_trace.step(10)["inference"][layer]
    output = np.ravel(shown["output"])
    np.testing.assert_allclose(output, POST_000_BN1, rtol=0, atol=1e-6)
    x = np.ravel(shown["input"])
    gamma, beta, mean, variance = (np.ravel(before[key])[0] for key in
                                   ("gamma", "beta", "moving_mean", "moving_variance"))
    solved = (gamma * (x - mean) / (output - beta)) ** 2 - variance
    np.testing.assert_allclose(solved, LAYER_EPSILON, rtol=0, atol=1e-6)  # 1e-5 is 9.9e-4 away
    assert cubic_trace.layers[layer]["epsilon"] == LAYER_EPSILON
