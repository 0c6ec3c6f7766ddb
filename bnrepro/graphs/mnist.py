"""Post 002's MNIST net, 784-128-10, with five ways to normalise the first layer's pre-activation.

Every method builds the post's net in ``tf.compat.v1``: ``a = x·w + b`` (first layer), a normaliser
on ``a``, ``h = relu(...)``, ``logits = h·w2 + b2``, ``y = softmax(logits)``, mean cross-entropy,
plain gradient descent (post: learning rate 0.1, batch 128, 128 hidden units). The methods, table
:data:`METHODS`:

========== ===================================================================================
none       ``h = relu(x·w + b)``
wn         weight normalisation in both layers (Salimans & Kingma 2016), by hand like the post:
           ``w = g * v / ||v||`` per output unit (column ``j``: ``||w[:, j]|| = |g[j]|``)
wn-init    wn plus the paper's data-dependent initialisation, an initialisation pass on the first
           minibatch before training, layer by layer: ``t = x·v/||v||``,
           ``g = 1/sqrt(var(t) + 1e-10)``, ``b = -mean(t)/sqrt(var(t) + 1e-10)``, so that
           ``g*t + b`` has mean 0 and variance 1 per unit on that batch
bn         ``tf.compat.v1.layers.batch_normalization`` on ``a`` (training: batch statistics and the
           moving-average update under ``UPDATE_OPS``; test data: moving statistics)
ln         layer normalisation (Ba, Kiros & Hinton 2016) by hand: statistics over the hidden units
           of each example, ``(a - mean_n)/sqrt(var_n + epsilon)``, then one gain ``gamma`` and one
           bias ``beta`` per hidden unit
========== ===================================================================================

``faithful=True`` builds the post's code as written instead, bugs included (``FAITHFUL_DIFFERENCES``
lists them). What the post leaves unstated is an option: its ``weight_variable`` initialiser
(:data:`WEIGHT_INITIALIZERS`; default ``truncated-normal``, ``tf.truncated_normal(stddev=0.1)``, the
``weight_variable`` of TensorFlow's MNIST tutorial whose names the post uses) and its
``bias_variable`` (default the tutorial's constant 0.1); the loss, unstated too, is the mean
softmax cross-entropy computed from the logits.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from bnrepro.config import (NetConfig, check_net_config,  # noqa: F401 (bnrepro.graphs.mnist.*,
                            parse_methods)  # as before; TensorFlow-free, for the CLI)
from bnrepro.errors import UserError
from bnrepro.graphs.built import BuiltGraph, batch_norm_taps
from bnrepro.graphs.tfv1 import tf, tf1

N_IN = 784  # 28 x 28 pixels
N_OUT = 10  # digits
WN_EPSILON = 1e-10  # the paper's and the post's 1e-10 in sqrt(var + 1e-10)

# Operation-level seeds of the random initialisers: every method starts from the same v (or w) and g.
SEED_LAYER1, SEED_LAYER2, SEED_GAIN1, SEED_GAIN2 = 1, 2, 3, 4

FAITHFUL_DIFFERENCES = {
    "wn-init": "the post's second-layer bias init b = -mean * sqrt(var + 1e-10) (should divide); "
               "the init is assigned inside the first step's graph (its train op trains on top of "
               "it) and assigned again by the post's loss/accuracy runs after that step",
    "bn": "the post's own batch norm: always batch statistics (also on test data), no moving "
          "statistics",
    "ln": "gamma and beta of shape [batch_size], one per example slot of the batch, instead of one "
          "per hidden unit; any other batch size fails, so test data is evaluated in batches of "
          "exactly batch_size (the remainder is left out)",
}


def _truncated_normal(seed):
    return tf1.truncated_normal_initializer(stddev=0.1, seed=seed)


def _glorot_uniform(seed):
    return tf1.glorot_uniform_initializer(seed=seed)


# name -> seed -> initialiser of weight_variable
WEIGHT_INITIALIZERS = {"truncated-normal": _truncated_normal, "glorot-uniform": _glorot_uniform}


@dataclass
class MnistGraph(BuiltGraph):
    """A :class:`BuiltGraph` for MNIST, and what the comparison loop needs beyond it.

    ``inputs`` is x (N, 784) float32, ``targets`` the labels (N,) int64; ``metrics`` holds
    ``accuracy``. ``pre_activation`` is the first layer's ``a = x·w + b`` (``x·w + b`` with
    ``w = g*v/||v||`` for weight norm), ``normalized`` the normaliser's output before gain and bias
    (bn, ln), ``relu_input`` what the first layer's relu receives (the normaliser's output after gain
    and bias for bn and ln; ``pre_activation`` itself for none, wn and wn-init), ``hidden`` the
    first layer's output ``relu(relu_input)``, ``weights`` the effective weight
    matrices per layer scope. ``data_init`` is run once on the first batch before step 1.
    ``first_step`` (faithful wn-init) replaces step 1's fetches and ``after_first_step`` is run right
    after it. ``eval_batch_size`` is set when the graph only works with that batch size.
    """

    logits: Optional[tf.Tensor] = None
    pre_activation: Optional[tf.Tensor] = None
    hidden: Optional[tf.Tensor] = None
    normalized: Optional[tf.Tensor] = None
    relu_input: Optional[tf.Tensor] = None
    weights: dict = field(default_factory=dict)
    data_init: Optional[tf.Operation] = None
    first_step: Optional[dict] = None
    after_first_step: Optional[tf.Tensor] = None
    eval_batch_size: Optional[int] = None


def weight_initializer(name):
    """The :data:`WEIGHT_INITIALIZERS` entry ``name``; :class:`UserError` listing the choices."""
    if name not in WEIGHT_INITIALIZERS:
        raise UserError(f"unknown --weight-init {name!r}; choose from "
                        f"{', '.join(WEIGHT_INITIALIZERS)}")
    return WEIGHT_INITIALIZERS[name]


def weight_variable(name, shape, config, seed):
    """The post's unstated ``weight_variable``: ``config.weight_init`` (see the module docstring)."""
    return tf1.get_variable(name, shape, initializer=weight_initializer(config.weight_init)(seed))


def bias_variable(name, shape, config):
    """The post's unstated ``bias_variable``: the constant ``config.bias_init``."""
    return tf1.get_variable(name, shape, initializer=tf1.constant_initializer(config.bias_init))


def dense(x, n_in, n_out, config, seed):
    """``x·w + b`` with ``w`` (n_in, n_out) and ``b`` (n_out,) in the current variable scope."""
    w = weight_variable("w", [n_in, n_out], config, seed)
    b = bias_variable("b", [n_out], config)
    return tf.matmul(x, w) + b, w


def weight_norm_variables(n_in, n_out, config, seeds):
    """``v`` (n_in, n_out), ``g`` (n_out,), ``b`` (n_out,) and ``v/||v||`` (columns of unit norm)."""
    v = weight_variable("v", [n_in, n_out], config, seeds[0])
    g = weight_variable("g", [n_out], config, seeds[1])
    b = bias_variable("b", [n_out], config)
    v_norm = tf.nn.l2_normalize(v, axis=0)  # v[:, j] / ||v[:, j]||
    return v, g, b, v_norm


def data_dependent_init(t, faithful=False):
    """Salimans & Kingma (2016), section 3: the ``(g, b)`` that standardise ``t = x·v/||v||``.

    ``mean, var = moments(t)`` over the batch, per unit; ``g = 1/sqrt(var + 1e-10)``,
    ``b = -mean/sqrt(var + 1e-10)``, so ``g*t + b`` has mean 0 and variance ``var/(var + 1e-10)``.
    ``faithful`` gives the post's second-layer bias, ``b = -mean * sqrt(var + 1e-10)``.
    """
    mean, var = tf.nn.moments(t, axes=[0])  # (N, units) -> (units,), var divides by N
    g = 1.0 / tf.sqrt(var + WN_EPSILON)
    b = -mean * tf.sqrt(var + WN_EPSILON) if faithful else -mean / tf.sqrt(var + WN_EPSILON)
    return g, b


def _layer_seeds(scope):
    return (SEED_LAYER1, SEED_GAIN1) if scope == "layer1" else (SEED_LAYER2, SEED_GAIN2)


def weight_norm_layer(x, n_in, n_out, config, scope, *, reuse=False, post_init=False):
    """``x·w + b`` with ``w = g * v/||v||``; returns ``(pre_activation, w, t)``, ``t = x·v/||v||``.

    ``post_init`` builds the post's ``inference_wn_first``: ``g`` and ``b`` are replaced by
    ``tf.assign(g, 1/sqrt(var + 1e-10))`` and ``tf.assign(b, ...)`` computed from this batch's ``t``
    (with the post's bias bug in ``layer2``), so every run of the output assigns them first.
    """
    with tf1.variable_scope(scope, reuse=reuse):
        _, g, b, v_norm = weight_norm_variables(n_in, n_out, config, _layer_seeds(scope))
        t = tf.matmul(x, v_norm)
        if post_init:
            g_init, b_init = data_dependent_init(t, faithful=scope == "layer2")
            g, b = tf1.assign(g, g_init), tf1.assign(b, b_init)
        w = g * v_norm  # (n_out,) * (n_in, n_out): column j scaled by g[j]
        return tf.matmul(x, w) + b, w, t


def standardize(a, axis, epsilon):
    """``(a - mean)/sqrt(var + epsilon)`` with ``mean, var = moments(a, axis)`` (``var`` divides by
    N), as a tensor named ``normalized`` (an identity, so Grappler keeps it fetchable)."""
    mean, var = tf.nn.moments(a, axes=[axis], keepdims=True)
    return tf.identity((a - mean) / tf.sqrt(var + epsilon), name="normalized")


def layer_norm(a, units, epsilon, faithful, batch_size):
    """Ba et al. (2016): per example ``n``, ``mean_n = mean_j a[n, j]``, ``var_n = mean_j (a[n, j] -
    mean_n)^2`` (over the hidden units), ``normalized = (a - mean_n)/sqrt(var_n + epsilon)``, output
    ``gamma * normalized + beta`` with ``gamma``, ``beta`` of shape (units,).

    ``faithful``: the post's ``gamma``, ``beta`` of shape (batch_size,), broadcast per example.
    Returns ``(output, normalized)``.
    """
    with tf1.variable_scope("bn" if faithful else "layer_norm"):
        shape = [batch_size] if faithful else [units]
        beta = tf1.get_variable("beta", shape, initializer=tf1.zeros_initializer())
        gamma = tf1.get_variable("gamma", shape, initializer=tf1.ones_initializer())
        normalized = standardize(a, 1, epsilon)  # statistics (N, units) -> (N, 1)
        if faithful:
            gamma, beta = gamma[:, None], beta[:, None]  # (batch_size,) -> (batch_size, 1)
        return gamma * normalized + beta, normalized


def post_batch_norm(a, units, epsilon):
    """The post's ``batch_norm``: ``gamma * (a - mean)/sqrt(var + epsilon) + beta`` with the batch's
    ``mean, var = moments(a, [0])`` (/N) in training *and* at test time; returns
    ``(output, normalized)``."""
    with tf1.variable_scope("bn"):
        beta = tf1.get_variable("beta", [units], initializer=tf1.zeros_initializer())
        gamma = tf1.get_variable("gamma", [units], initializer=tf1.ones_initializer())
        normalized = standardize(a, 0, epsilon)  # statistics (N, units) -> (1, units)
        return gamma * normalized + beta, normalized


def _head(logits, labels, learning_rate):
    """Mean softmax cross-entropy, accuracy and the gradient-descent step (after ``UPDATE_OPS``)."""
    one_hot = tf.one_hot(labels, N_OUT)  # (N,) -> (N, 10), the post's one-hot t
    loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=one_hot, logits=logits))
    correct = tf.equal(tf.argmax(logits, axis=1), labels)
    accuracy = tf.reduce_mean(tf.cast(correct, tf.float32))
    with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)):
        train_op = tf1.train.GradientDescentOptimizer(learning_rate).minimize(loss)
    return loss, accuracy, train_op


def _plain_first_layer(normalizer):
    """A first layer ``normalizer(x·w + b)`` in scope ``layer1``, ``normalizer(a, parts)`` -> output."""
    def first_layer(x, config, training, parts):
        with tf1.variable_scope("layer1"):
            a, w = dense(x, N_IN, config.units, config, SEED_LAYER1)
            parts.update(pre_activation=a, weights={"layer1": w})
            return normalizer(a, config, training, parts)
    return first_layer


def _identity(a, config, training, parts):
    return a


def _bn(a, config, training, parts):
    if config.faithful:
        out, parts["normalized"] = post_batch_norm(a, config.units, config.epsilon)
        return out
    out = tf1.layers.batch_normalization(a, training=training, momentum=config.momentum,
                                         epsilon=config.epsilon)
    parts["batch_norm_outputs"] = {"layer1/batch_normalization": out}  # scope layer1, its default name
    return out


def _ln(a, config, training, parts):
    out, parts["normalized"] = layer_norm(a, config.units, config.epsilon, config.faithful,
                                          config.batch_size)
    if config.faithful:
        parts["eval_batch_size"] = config.batch_size
    return out


def _plain_second_layer(h, config, parts):
    with tf1.variable_scope("layer2"):
        logits, w = dense(h, config.units, N_OUT, config, SEED_LAYER2)
        parts["weights"]["layer2"] = w
        return logits


def _wn_network(x, config, parts, *, reuse=False, post_init=False):
    """Both layers weight-normalised; returns the logits."""
    a, w1, _ = weight_norm_layer(x, N_IN, config.units, config, "layer1", reuse=reuse,
                                 post_init=post_init)
    h = parts["hidden"] = tf.nn.relu(a)
    parts["relu_input"] = a
    logits, w2, _ = weight_norm_layer(h, config.units, N_OUT, config, "layer2", reuse=reuse,
                                      post_init=post_init)
    parts.update(pre_activation=a, weights={"layer1": w1, "layer2": w2})
    return logits


def _wn_init_op(x, config):
    """The initialisation pass (corrected wn-init): assign layer 1's ``(g, b)`` from ``t1 = x·v1/||v1||``,
    then layer 2's from ``t2 = relu(g1*t1 + b1)·v2/||v2||`` with layer 1 already initialised."""
    assignments = []
    h = x
    for scope, n_in, n_out in (("layer1", N_IN, config.units), ("layer2", config.units, N_OUT)):
        with tf1.variable_scope(scope, reuse=True):
            _, g, b, v_norm = weight_norm_variables(n_in, n_out, config, _layer_seeds(scope))
        t = tf.matmul(h, v_norm)
        g_init, b_init = data_dependent_init(t)
        assignments += [tf1.assign(g, g_init), tf1.assign(b, b_init)]
        h = tf.nn.relu(g_init * t + b_init)
    return tf.group(*assignments, name="data_dependent_init")


def _build(config, logits_fn):
    """The shared frame: a fresh graph with its seed, placeholders, ``logits_fn`` and the head."""
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(config.seed)
        x = tf1.placeholder(tf.float32, [None, N_IN], name="x")  # (N, 784) pixels in [0, 1]
        labels = tf1.placeholder(tf.int64, [None], name="labels")  # (N,) digits
        training = tf1.placeholder_with_default(False, shape=(), name="training")
        parts = {"batch_norm_outputs": {}, "weights": {}}
        logits = logits_fn(x, labels, training, parts)
        loss, accuracy, train_op = _head(logits, labels, config.learning_rate)
        taps = batch_norm_taps(graph, parts["batch_norm_outputs"])
        return MnistGraph(
            graph=graph, inputs=x, targets=labels, training=training, loss=loss, train_op=train_op,
            batch_norms=taps, metrics={"accuracy": accuracy}, logits=logits,
            pre_activation=parts["pre_activation"], hidden=parts["hidden"],
            normalized=parts.get("normalized"), relu_input=parts["relu_input"],
            weights=parts["weights"], eval_batch_size=parts.get("eval_batch_size"),
        )


def build_plain(normalizer):
    """A builder for ``normalizer`` on the first layer's pre-activation, plain second layer."""
    first_layer = _plain_first_layer(normalizer)

    def build(config):
        def logits_fn(x, labels, training, parts):
            z = parts["relu_input"] = first_layer(x, config, training, parts)
            h = parts["hidden"] = tf.nn.relu(z)
            return _plain_second_layer(h, config, parts)
        return _build(config, logits_fn)
    return build


def build_wn(config):
    """Weight normalisation in both layers, ``g`` and ``b`` from their initialisers."""
    return _build(config, lambda x, labels, training, parts: _wn_network(x, config, parts))


def build_wn_init(config):
    """wn plus the data-dependent initialisation. Corrected: the pass :func:`_wn_init_op`, run on the
    first batch before step 1. Faithful: step 1 runs the post's ``train_step_first`` (the graph of
    ``inference_wn_first``, which assigns ``g``, ``b`` and then takes a gradient step on top), then
    the post's ``sess.run(loss_first)``, which assigns them again from the updated ``v``."""
    net = build_wn(config)
    with net.graph.as_default():
        if not config.faithful:
            net.data_init = _wn_init_op(net.inputs, config)
            return net
        first_logits = _wn_network(net.inputs, config, {}, reuse=True, post_init=True)
        loss, accuracy, train_op = _head(first_logits, net.targets, config.learning_rate)
    net.first_step = {"train_op": train_op, "loss": loss, "metrics": {"accuracy": accuracy}}
    net.after_first_step = loss
    return net


@dataclass(frozen=True)
class Method:
    build: object  # NetConfig -> MnistGraph
    summary: str


METHODS = {
    "none": Method(build_plain(_identity), "no normalisation"),
    "wn": Method(build_wn, "weight normalisation, w = g * v/||v||, no data-dependent init"),
    "wn-init": Method(build_wn_init, "weight normalisation with the data-dependent init"),
    "bn": Method(build_plain(_bn), "batch normalisation (moving statistics on test data)"),
    "ln": Method(build_plain(_ln), "layer normalisation over the hidden units of each example"),
}


def get_method(name):
    """The :class:`Method` called ``name``; :class:`UserError` listing the choices otherwise."""
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name]


def build_graph(method, config):
    """The graph of ``method`` (a :data:`METHODS` key) for ``config`` (a :class:`NetConfig`)."""
    return get_method(method).build(config)
