"""Post 001: one Adam step of a 1-1-1 net with batch norm after each dense layer, on x = [0, 1].

The graph is the post's: in scope ``hidden1``, ``hidden_1 = dense(x, 1, use_bias=False)``,
``bn_1 = batch_normalization(hidden_1, momentum=0.5)``, ``bn_1x = relu(bn_1)``; in scope ``output``,
``predx = dense(bn_1x, 1, use_bias=False)``, ``pred = batch_normalization(predx, momentum=0.5)``;
loss ``mean((pred - y)^2)``, Adam with the learning rate fed through the placeholder ``lx``.

The post's kernels came from the dense layer's random (Glorot-uniform) initialiser, so its numbers
depend on an unknown seed. ``--hidden-kernel-init 1.4059724`` (4 x the printed moving mean, since
moving_mean = 0.5 * 0 + 0.5 * mean([0, W]) = W / 4) reproduces its batch-norm numbers; the numbers
printed after the Adam step (the kernel 1.404974, ``bn_1[1]`` 1.215785) also depend on the output
kernel, through the size of the hidden kernel's gradient, and ``--output-kernel-init -0.284``
reproduces them too (a scan in steps of 0.004 found every value in [-0.288, -0.280] does).
"""
from __future__ import annotations

import numpy as np

from bnrepro.config import (POST_HIDDEN_KERNEL, POST_OUTPUT_KERNEL,  # noqa: F401 (as before)
                            TwoSampleConfig)
from bnrepro.graphs.built import BuiltGraph, Scenario, batch_norm_taps
from bnrepro.graphs.tfv1 import tf, tf1

N_HIDDEN_1 = 1
N_INPUT = 1
N_OUTPUT = 1


def two_sample_batches(config):
    """Yield the post's one batch ``steps`` times: inputs [[x0], [x1]], targets [[y0], [y1]]."""
    for _ in range(config.steps):
        yield [[config.x0], [config.x1]], [[config.y0], [config.y1]]


def _kernel_initializer(value, seed):
    """A constant initialiser for ``value``; for ``None``, the dense layer's default distribution
    in TF 1.x, Glorot uniform (U(-sqrt(6 / (fan_in + fan_out)), +...), here U(-sqrt(3), sqrt(3))),
    with an explicit seed: the graph-level seed alone does not make tf_keras' default repeatable."""
    if value is None:
        return tf1.glorot_uniform_initializer(seed=seed)
    return tf1.constant_initializer(value)


def build_two_sample_graph(config):
    """The post's graph in a fresh ``tf.Graph``; returns a :class:`BuiltGraph`."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, (None, N_INPUT))
        y = tf1.placeholder(tf.float32, (None, N_OUTPUT))
        lx = tf1.placeholder(tf.float32, [])
        training = tf1.placeholder_with_default(False, shape=(), name="training")

        with tf1.variable_scope("hidden1"):
            hidden_1 = tf1.layers.dense(
                x, N_HIDDEN_1, activation=None, use_bias=False,
                kernel_initializer=_kernel_initializer(config.hidden_kernel_init, 2 * config.seed),
            )
            bn_1 = tf1.layers.batch_normalization(
                hidden_1, training=training, momentum=config.momentum, epsilon=config.epsilon
            )
            bn_1x = tf.nn.relu(bn_1)

        with tf1.variable_scope("output"):
            predx = tf1.layers.dense(
                bn_1x, N_OUTPUT, activation=None, use_bias=False,
                kernel_initializer=_kernel_initializer(config.output_kernel_init, 2 * config.seed + 1),
            )
            pred = tf1.layers.batch_normalization(
                predx, training=training, momentum=config.momentum, epsilon=config.epsilon
            )

        cost = tf.reduce_mean(tf.square(pred - y))
        extra_update_ops = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
        with tf.control_dependencies(extra_update_ops):
            optimizer = tf1.train.AdamOptimizer(learning_rate=lx).minimize(cost)
    return BuiltGraph(
        graph=graph,
        inputs=x,
        targets=y,
        training=training,
        loss=cost,
        train_op=optimizer,
        batch_norms=batch_norm_taps(graph, {"hidden1/batch_normalization": bn_1,
                                            "output/batch_normalization": pred}),
        printed_after={"hidden_1": hidden_1, "bn_1": bn_1, "bn_1x": bn_1x},
        extra_feed={lx: config.learning_rate},
    )


def print_two_sample_step(previous, record, write):
    """Print what the post prints after its step, then why the moving mean is not the mean of the
    printed ``hidden_1`` values.

    The block opens with a line the post did not print: ``step 1 (the state after its Adam step):``.
    ``previous`` is the state before the step (the previous record), ``record`` the step itself.
    """
    if record["step"] == 0:
        return
    variables = record["variables"]
    after = record["after"]
    hidden = record["bn"]["hidden1/batch_normalization"]
    write(f"step {record['step']} (the state after its Adam step):")
    write("weight of hidden layer")
    write(str(np.asarray(variables["hidden1/dense/kernel:0"], dtype=np.float32)))
    write("")
    write("output from hidden layer, batch norm layer, and relu layer")
    for name in ("hidden_1", "bn_1", "bn_1x"):
        write(f"{name} {np.asarray(after[name], dtype=np.float32)}")
    write("")
    write("batchnorm parameters")
    for name in ("moving_mean", "moving_variance", "gamma", "beta"):
        write(f"{name.replace('_', ' ')} {np.asarray(hidden[name], dtype=np.float32)}")
    write("")
    kernel_before = np.float32(previous["variables"]["hidden1/dense/kernel:0"][0][0])
    kernel_after = np.float32(variables["hidden1/dense/kernel:0"][0][0])
    used_inputs = np.asarray(hidden["batch_input"], dtype=np.float32).ravel()
    printed_inputs = np.asarray(after["hidden_1"], dtype=np.float32).ravel()
    write("Why the moving mean is not the mean of the printed hidden_1 values:")
    write(f"  the update used hidden_1 = x * kernel with the kernel BEFORE the step ({kernel_before}):"
          f" {used_inputs}, batch mean {np.float32(hidden['batch_mean'][0])}")
    write(f"  the printout uses the kernel AFTER the Adam step ({kernel_after}): {printed_inputs},"
          f" mean {np.float32(printed_inputs.mean())}")
    old_mean = np.float32(previous["bn"]["hidden1/batch_normalization"]["moving_mean"][0])
    write(f"  moving_mean = momentum * {old_mean} + (1 - momentum) * "
          f"{np.float32(hidden['batch_mean'][0])} = {np.float32(hidden['moving_mean'][0])}"
          f" (see: bnrepro explain TRACE --step {record['step']})")


def scenario():
    """Post 001 as ``bnrepro run two-sample`` runs it."""
    return Scenario("two-sample", TwoSampleConfig, build_two_sample_graph, two_sample_batches,
                    print_two_sample_step)
