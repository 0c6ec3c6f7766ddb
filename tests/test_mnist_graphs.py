"""Post 002's five graphs: variable scopes and shapes, and each normaliser's defining property checked
against NumPy (float64) recomputations from the graph's own variables, never against its outputs."""
import dataclasses

import numpy as np
import pytest

from bnrepro.config import CompareConfig
from bnrepro.errors import UserError
from bnrepro.graphs.mnist import METHODS, NetConfig, build_graph, get_method, parse_methods
from bnrepro.graphs.tfv1 import tf, tf1

# float32 graph values against float64 NumPy: relative rounding ~6e-8 per operation over sums of
# 784 products, so 1e-5; the absolute part covers means that should be 0.
TOLERANCE = dict(rtol=1e-5, atol=1e-5)
UNITS, BATCH = 16, 32
CONFIG = NetConfig(units=UNITS, batch_size=BATCH)


def _batch(size=BATCH, seed=0):
    """Random 'images' in [0, 1) and labels: the properties below hold for any data."""
    rng = np.random.default_rng(seed)
    return rng.random((size, 784), dtype=np.float32), rng.integers(0, 10, size).astype(np.int64)


class Session:
    """A session on a net with its variables initialised, and its variables by name."""

    def __init__(self, net):
        self.net = net
        self.session = tf1.Session(graph=net.graph)
        with net.graph.as_default():
            self.session.run(tf1.global_variables_initializer())
            self.variables = {v.op.name: v for v in tf1.global_variables()}

    def run(self, fetches, images, labels=None, training=False):
        feed = {self.net.inputs: images, self.net.training: training}
        if labels is not None:
            feed[self.net.targets] = labels
        return self.session.run(fetches, feed)

    def value(self, name):
        return self.session.run(self.variables[name]).astype(np.float64)

    def assign(self, name, value):
        """Set a variable through its initialiser's feed (adds no op to the graph)."""
        with self.net.graph.as_default():
            self.variables[name].load(np.asarray(value, dtype=np.float32), self.session)

    def train(self, steps=3):
        images, labels = _batch()
        for _ in range(steps):
            self.run(self.net.train_op, images, labels, training=True)


def _plain(extra=None):
    names = {"layer1/w": [784, UNITS], "layer1/b": [UNITS], "layer2/w": [UNITS, 10],
             "layer2/b": [10]}
    return {**names, **(extra or {})}


WEIGHT_NORM = {f"{layer}/{name}": shape for layer, n_in, n_out in
               (("layer1", 784, UNITS), ("layer2", UNITS, 10))
               for name, shape in (("v", [n_in, n_out]), ("g", [n_out]), ("b", [n_out]))}
EXPECTED_VARIABLES = {
    ("none", False): _plain(),
    ("wn", False): WEIGHT_NORM,
    ("wn-init", False): WEIGHT_NORM,
    ("bn", False): _plain({f"layer1/batch_normalization/{name}": [UNITS]
                           for name in ("gamma", "beta", "moving_mean", "moving_variance")}),
    ("ln", False): _plain({"layer1/layer_norm/gamma": [UNITS], "layer1/layer_norm/beta": [UNITS]}),
    ("none", True): _plain(),
    ("wn", True): WEIGHT_NORM,
    ("wn-init", True): WEIGHT_NORM,
    ("bn", True): _plain({"layer1/bn/gamma": [UNITS], "layer1/bn/beta": [UNITS]}),
    ("ln", True): _plain({"layer1/bn/gamma": [BATCH], "layer1/bn/beta": [BATCH]}),  # the bug
}


@pytest.mark.parametrize("method, faithful", sorted(EXPECTED_VARIABLES))
def test_variable_scopes_and_shapes(method, faithful):
    net = build_graph(method, dataclasses.replace(CONFIG, faithful=faithful))
    with net.graph.as_default():
        found = {v.op.name: v.shape.as_list() for v in tf1.global_variables()}
    assert found == EXPECTED_VARIABLES[method, faithful]
    images, labels = _batch()
    out = Session(net).run({"a": net.pre_activation, "h": net.hidden, "logits": net.logits,
                            "loss": net.loss, "accuracy": net.metrics["accuracy"]}, images, labels)
    assert out["a"].shape == out["h"].shape == (BATCH, UNITS)
    assert out["logits"].shape == (BATCH, 10)
    assert out["loss"].shape == out["accuracy"].shape == ()


def test_every_method_is_tested():
    assert {method for method, _ in EXPECTED_VARIABLES} == set(METHODS)


def test_loss_is_mean_softmax_cross_entropy_and_accuracy_counts_argmax():
    session = Session(build_graph("none", CONFIG))
    images, labels = _batch()
    out = session.run({"logits": session.net.logits, "loss": session.net.loss,
                       "accuracy": session.net.metrics["accuracy"]}, images, labels)
    logits = out["logits"].astype(np.float64)
    log_softmax = logits - logits.max(axis=1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(out["loss"], -log_softmax[np.arange(BATCH), labels].mean(),
                               **TOLERANCE)
    assert out["accuracy"] == pytest.approx(np.mean(logits.argmax(axis=1) == labels), abs=1e-7)


def test_every_method_starts_from_the_same_first_layer_weights():
    first = {method: Session(build_graph(method, CONFIG)) for method in ("none", "wn", "bn")}
    none = first["none"].value("layer1/w")
    np.testing.assert_array_equal(first["wn"].value("layer1/v"), none)
    np.testing.assert_array_equal(first["bn"].value("layer1/w"), none)
    # truncated normal, stddev 0.1: every value within two standard deviations
    assert np.abs(none).max() <= 0.2 and 0.07 < none.std() < 0.1
    np.testing.assert_array_equal(first["none"].value("layer1/b"), np.full(UNITS, 0.1, np.float32))


def test_glorot_uniform_option():
    session = Session(build_graph("none", dataclasses.replace(CONFIG, weight_init="glorot-uniform")))
    limit = np.sqrt(6.0 / (784 + UNITS))  # Glorot & Bengio (2010): U(-limit, limit)
    w = session.value("layer1/w")
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.9 * limit


@pytest.mark.parametrize("method", ["wn", "wn-init"])
def test_weight_norm_column_norms_equal_g(method):
    """w = g * v/||v||, so ||w[:, j]|| = |g[j]| (g may be negative), also after training."""
    session = Session(build_graph(method, CONFIG))
    session.train()
    weights = session.session.run(session.net.weights)
    for layer, w in weights.items():
        g = session.value(f"{layer}/g")
        np.testing.assert_allclose(np.linalg.norm(w.astype(np.float64), axis=0), np.abs(g),
                                   **TOLERANCE)
        v = session.value(f"{layer}/v")
        np.testing.assert_allclose(w, g * v / np.linalg.norm(v, axis=0), **TOLERANCE)


def _standardized(t, epsilon):
    return (t - t.mean(axis=0)) / np.sqrt(t.var(axis=0) + epsilon)


def _weight_norm_forward(session, images):
    """NumPy: both layers' pre-activations from the graph's v, g, b."""
    x = images.astype(np.float64)
    pre_activations = []
    for layer in ("layer1", "layer2"):
        v, g, b = (session.value(f"{layer}/{name}") for name in ("v", "g", "b"))
        a = x @ (g * v / np.linalg.norm(v, axis=0)) + b
        pre_activations.append(a)
        x = np.maximum(a, 0.0)
    return pre_activations


def test_data_dependent_init_standardizes_both_layers_on_the_init_batch():
    session = Session(build_graph("wn-init", CONFIG))
    images, _ = _batch(seed=1)
    session.run(session.net.data_init, images)
    for a in _weight_norm_forward(session, images):  # (BATCH, units) per layer
        np.testing.assert_allclose(a.mean(axis=0), 0.0, atol=1e-5)
        np.testing.assert_allclose(a.var(axis=0), 1.0, rtol=1e-4)
    np.testing.assert_allclose(session.run(session.net.pre_activation, images),
                               _weight_norm_forward(session, images)[0], **TOLERANCE)


def test_faithful_init_multiplies_the_second_layer_bias_by_sqrt_var():
    """The post's ``b = -mean * sqrt(var + 1e-10)`` in layer 2, assigned by its loss_first run."""
    session = Session(build_graph("wn-init", dataclasses.replace(CONFIG, faithful=True)))
    assert session.net.data_init is None and session.net.first_step is not None
    images, labels = _batch(seed=2)
    session.run(session.net.after_first_step, images, labels)
    first, _ = _weight_norm_forward(session, images)
    np.testing.assert_allclose(first.mean(axis=0), 0.0, atol=1e-5)  # layer 1 as in the paper
    v2 = session.value("layer2/v")
    t2 = np.maximum(first, 0.0) @ (v2 / np.linalg.norm(v2, axis=0))
    np.testing.assert_allclose(session.value("layer2/g"), 1 / np.sqrt(t2.var(axis=0) + 1e-10),
                               rtol=1e-4)
    np.testing.assert_allclose(session.value("layer2/b"),
                               -t2.mean(axis=0) * np.sqrt(t2.var(axis=0) + 1e-10), rtol=1e-4,
                               atol=1e-6)


def test_layer_norm_standardizes_each_example_over_the_hidden_units():
    session = Session(build_graph("ln", CONFIG))
    session.train()
    gamma, beta = np.linspace(0.5, 2.0, UNITS), np.linspace(-1.0, 1.0, UNITS)
    session.assign("layer1/layer_norm/gamma", gamma)
    session.assign("layer1/layer_norm/beta", beta)
    images, _ = _batch(seed=3)
    out = session.run({"a": session.net.pre_activation, "normalized": session.net.normalized,
                       "h": session.net.hidden}, images)
    a = out["a"].astype(np.float64)
    normalized = _standardized(a.T, CONFIG.epsilon).T  # statistics along axis 1: per example
    np.testing.assert_allclose(out["normalized"], normalized, **TOLERANCE)
    np.testing.assert_allclose(normalized.mean(axis=1), 0.0, atol=1e-6)
    np.testing.assert_allclose(normalized.var(axis=1), 1.0, rtol=1e-3)  # var/(var + 1e-5)
    np.testing.assert_allclose(out["h"], np.maximum(gamma * normalized + beta, 0.0), **TOLERANCE)


def test_faithful_layer_norm_has_one_gain_per_example_and_needs_that_batch_size():
    session = Session(build_graph("ln", dataclasses.replace(CONFIG, faithful=True)))
    gamma = np.linspace(0.5, 2.0, BATCH)
    session.assign("layer1/bn/gamma", gamma)
    images, _ = _batch(seed=4)
    out = session.run({"normalized": session.net.normalized, "h": session.net.hidden}, images)
    np.testing.assert_allclose(out["h"], np.maximum(gamma[:, None] * out["normalized"], 0.0),
                               **TOLERANCE)
    assert session.net.eval_batch_size == BATCH
    with pytest.raises(tf.errors.InvalidArgumentError):
        session.run(session.net.hidden, images[:BATCH - 1])


def test_batch_norm_uses_moving_statistics_at_test_time():
    """Initially moving_mean = 0, moving_variance = 1, gamma = 1, beta = 0."""
    session = Session(build_graph("bn", CONFIG))
    images, _ = _batch(seed=5)
    out = session.run({"a": session.net.pre_activation, "h": session.net.hidden}, images)
    expected = np.maximum(out["a"].astype(np.float64) / np.sqrt(1.0 + CONFIG.epsilon), 0.0)
    np.testing.assert_allclose(out["h"], expected, **TOLERANCE)
    (tap,) = session.net.batch_norms
    assert tap.name == "layer1/batch_normalization" and tap.epsilon == CONFIG.epsilon


# Post 002 ships no momentum (its own batch norm has no moving statistics); README: the default
# comparison uses the layer's default momentum 0.99 and the post's epsilon 1e-5
# (``tf.sqrt(var + 1e-5)`` in ../shared/seeds/002_*.txt).
LAYER_DEFAULT_MOMENTUM = 0.99
POST_002_EPSILON = 1e-5
DEFAULT_CONFIGS = {"NetConfig()": NetConfig(), "CompareConfig()": CompareConfig()}


def _hand_made_first_layer(session, moving_mean, moving_variance):
    """Set layer 1 to w[0, :] = 1, every other weight 0, b = 0, and the batch-norm state to
    (moving_mean, moving_variance, gamma 1, beta 0); return images whose pixel 0 is 1, 2, 4, 7 and
    every other pixel 0, so that every unit's pre-activation a = x·w + b is 1, 2, 4, 7."""
    units = session.value("layer1/b").size
    w = np.zeros((784, units))
    w[0, :] = 1.0
    session.assign("layer1/w", w)
    session.assign("layer1/b", np.zeros(units))
    layer = "layer1/batch_normalization"
    for name, value in (("moving_mean", moving_mean), ("moving_variance", moving_variance),
                        ("gamma", 1.0), ("beta", 0.0)):
        session.assign(f"{layer}/{name}", np.full(units, value))
    images = np.zeros((4, 784), np.float32)
    images[:, 0] = [1.0, 2.0, 4.0, 7.0]
    return images, np.array([0, 1, 2, 3], np.int64)


@pytest.mark.parametrize("config", DEFAULT_CONFIGS.values(), ids=DEFAULT_CONFIGS.keys())
def test_batch_norm_default_momentum_is_the_layers_0_99_read_from_one_training_step(config):
    """One training step of the default config's bn graph on a hand-made batch whose
    pre-activation is a = 1, 2, 4, 7 in every unit (:func:`_hand_made_first_layer`): batch mean 3.5,
    biased variance (6.25 + 2.25 + 0.25 + 12.25) / 4 = 5.25. From moving_mean 1, moving_variance 2::

        moving_mean     = 0.99 * 1 + 0.01 * 3.5  = 1.025      (momentum 0.9: 1.25)
        moving_variance = 0.99 * 2 + 0.01 * 5.25 = 2.0325     (momentum 0.9: 2.325)

    The momentum the graph ran is read back from the moving mean as
    (new - batch) / (old - batch) = (1.025 - 3.5) / (1 - 3.5) = 0.99, and from the variance as
    (2.0325 - 5.25) / (2 - 5.25) = 0.99. The trace header's momentum (the tap) must agree.
    """
    session = Session(build_graph("bn", config))
    images, labels = _hand_made_first_layer(session, moving_mean=1.0, moving_variance=2.0)
    np.testing.assert_allclose(session.run(session.net.pre_activation, images)[:, 0],
                               [1.0, 2.0, 4.0, 7.0])
    session.run(session.net.train_op, images, labels, training=True)
    mean = session.value("layer1/batch_normalization/moving_mean")
    variance = session.value("layer1/batch_normalization/moving_variance")
    np.testing.assert_allclose(mean, 1.025, rtol=0, atol=1e-6)
    np.testing.assert_allclose(variance, 2.0325, rtol=0, atol=1e-6)
    for used in ((mean - 3.5) / (1.0 - 3.5), (variance - 5.25) / (2.0 - 5.25)):
        np.testing.assert_allclose(used, LAYER_DEFAULT_MOMENTUM, rtol=0, atol=1e-6)
    (tap,) = session.net.batch_norms
    assert tap.momentum == LAYER_DEFAULT_MOMENTUM


@pytest.mark.parametrize("config", DEFAULT_CONFIGS.values(), ids=DEFAULT_CONFIGS.keys())
def test_batch_norm_default_epsilon_is_the_posts_1e_5_read_from_the_inference_output(config):
    """Inference mode (test data) from moving_mean 1, moving_variance 0.24999, gamma 1, beta 0, on
    a = 1, 2, 4, 7 (:func:`_hand_made_first_layer`)::

        h = relu((a - 1) / sqrt(0.24999 + 0.00001)) = relu(2 * (a - 1)) = 0, 2, 6, 12

    (epsilon 1e-3 would give sqrt(0.25099) = 0.500989 and 11.976 for a = 7). Solved for epsilon
    from h at a = 7: ((7 - 1) / 12)^2 - 0.24999 = 0.00001; the header's epsilon (the tap) agrees.
    """
    session = Session(build_graph("bn", config))
    images, _ = _hand_made_first_layer(session, moving_mean=1.0, moving_variance=0.24999)
    h = session.run(session.net.hidden, images).astype(np.float64)
    np.testing.assert_allclose(h, np.repeat([[0.0], [2.0], [6.0], [12.0]], h.shape[1], axis=1),
                               rtol=0, atol=1e-5)
    used = (6.0 / h[3]) ** 2 - 0.24999
    np.testing.assert_allclose(used, POST_002_EPSILON, rtol=0, atol=1e-6)
    (tap,) = session.net.batch_norms
    assert tap.epsilon == POST_002_EPSILON


@pytest.mark.parametrize("training", [False, True])
def test_faithful_batch_norm_always_uses_batch_statistics(training):
    session = Session(build_graph("bn", dataclasses.replace(CONFIG, faithful=True)))
    images, _ = _batch(seed=6)
    out = session.run({"a": session.net.pre_activation, "h": session.net.hidden}, images,
                      training=training)
    expected = np.maximum(_standardized(out["a"].astype(np.float64), CONFIG.epsilon), 0.0)
    np.testing.assert_allclose(out["h"], expected, rtol=1e-4, atol=1e-5)
    assert session.net.batch_norms == []


def test_unknown_methods_list_the_choices():
    with pytest.raises(UserError, match="unknown method 'bnx'; choose from none, wn, wn-init"):
        get_method("bnx")
    with pytest.raises(UserError, match="unknown method"):
        parse_methods("none,layer")
    with pytest.raises(UserError, match="twice"):
        parse_methods("bn,bn")
    assert parse_methods(" none , ln ") == ["none", "ln"]


def test_unknown_initializer_lists_the_choices():
    with pytest.raises(UserError, match="choose from truncated-normal, glorot-uniform"):
        build_graph("none", dataclasses.replace(CONFIG, weight_init="zeros"))
