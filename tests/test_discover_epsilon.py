"""Discovery reads a layer's epsilon from the constant added to *its* variance before the
reciprocal square root, not from any ``Rsqrt(... + constant)`` of the graph: a graph holding another
one (an RMS normalisation, built before the layer: found first) keeps the layer's 1e-3. (A mutant
that took the first such constant, ``scripts/mutation_test.py``, passed every other test.)"""
import pytest

from bnrepro.graphs.discover import discover
from bnrepro.graphs.tfv1 import tf, tf1


def _graph(normalisation, stray=True):
    """A hand-written layer, ``tf.nn.moments`` and ``assign_sub`` updates (momentum 0.9), normalised
    by ``normalisation(x, mean, variance, gamma, beta)``, after an unrelated ``rsqrt(mean(x^2) +
    0.5)`` when ``stray``."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, (None, 1))
        if stray:
            tf.math.rsqrt(tf.reduce_mean(x * x) + 0.5, name="rms")
        moving_mean = tf1.get_variable("moving_mean", initializer=[0.0], trainable=False)
        moving_variance = tf1.get_variable("moving_variance", initializer=[1.0], trainable=False)
        gamma = tf1.get_variable("gamma", initializer=[1.0])
        beta = tf1.get_variable("beta", initializer=[0.0])
        mean, variance = tf.nn.moments(x, [0])
        updates = [tf1.assign_sub(moving_mean, (moving_mean - mean) * 0.1),
                   tf1.assign_sub(moving_variance, (moving_variance - variance) * 0.1)]
        with tf.control_dependencies(updates):
            normalisation(x, mean, variance, gamma, beta)
    (layer,) = discover(graph).layers
    return layer


@pytest.mark.parametrize("stray", [True, False])
def test_the_layers_epsilon_not_another_rsqrts_constant(stray):
    layer = _graph(lambda x, mean, variance, gamma, beta: tf.nn.batch_normalization(
        x, mean, variance, beta, gamma, 1e-3), stray)
    assert layer.epsilon == 1e-3
    assert (layer.gamma.op.name, layer.beta.op.name) == ("gamma", "beta")


def test_a_hand_written_square_root_gives_its_epsilon_and_no_gamma():
    layer = _graph(lambda x, mean, variance, gamma, beta: (x - mean) / tf.sqrt(variance + 1e-5))
    assert layer.epsilon == 1e-5 and layer.gamma is None and layer.beta is None


def test_no_normalisation_of_the_layers_variance_no_epsilon():
    layer = _graph(lambda x, mean, variance, gamma, beta: x - mean)
    assert layer.epsilon is None
