"""A tiny GAN on 2-D points with a history pool of generated samples, as CycleGAN trains its
discriminators: the discriminator (batch norm of its input, dense, leaky ReLU, under variable_scope with
reuse=AUTO_REUSE) scores the real batch and a batch drawn from the pool, fed through a placeholder,
in one run, so its one batch-norm layer is updated twice in every discriminator step. The
generator step scores fresh samples and runs no update."""
import random

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()
random.seed(4)
np.random.seed(4)
tf.compat.v1.set_random_seed(4)


def generator(z):
    with tf.compat.v1.variable_scope("generator"):
        h = tf.compat.v1.layers.dense(z, 8, activation=tf.nn.relu, name="g_h0")
        return tf.compat.v1.layers.dense(h, 2, name="g_out")


def discriminator(x):
    with tf.compat.v1.variable_scope("discriminator", reuse=tf.compat.v1.AUTO_REUSE):
        h = tf.compat.v1.layers.batch_normalization(x, momentum=0.8, training=True, name="d_bn0")
        h = tf.compat.v1.layers.dense(h, 8, name="d_h0")
        h = tf.nn.leaky_relu(h, alpha=0.2)
        return tf.compat.v1.layers.dense(h, 1, name="d_out")


class SamplePool:
    """Keeps up to `size` generated samples; hands back a mix of new and older ones."""

    def __init__(self, size):
        self.size, self.samples = size, []

    def query(self, samples):
        result = []
        for sample in samples:
            if len(self.samples) < self.size:
                self.samples.append(sample)
                result.append(sample)
            elif random.random() > 0.5:
                index = random.randint(0, self.size - 1)
                result.append(self.samples[index])
                self.samples[index] = sample
            else:
                result.append(sample)
        return np.array(result)


real = tf.compat.v1.placeholder(tf.float32, [None, 2], name="real")
pooled_fake = tf.compat.v1.placeholder(tf.float32, [None, 2], name="pooled_fake")
noise = tf.compat.v1.placeholder(tf.float32, [None, 4], name="noise")
fake = generator(noise)
d_real = discriminator(real)
d_pooled = discriminator(pooled_fake)
d_fake = discriminator(fake)

d_loss = tf.reduce_mean(
    tf.nn.sigmoid_cross_entropy_with_logits(logits=d_real, labels=tf.ones_like(d_real))
    + tf.nn.sigmoid_cross_entropy_with_logits(logits=d_pooled, labels=tf.zeros_like(d_pooled)))
g_loss = tf.reduce_mean(
    tf.nn.sigmoid_cross_entropy_with_logits(logits=d_fake, labels=tf.ones_like(d_fake)))

t_vars = tf.compat.v1.trainable_variables()
d_vars = [var for var in t_vars if var.name.startswith("discriminator")]
g_vars = [var for var in t_vars if var.name.startswith("generator")]

# the updates of the two discriminator calls the D loss uses (not the generator step's call)
d_update_ops = [op for op in tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
                if op.name.startswith(("discriminator/", "discriminator_1/"))]
with tf.control_dependencies(d_update_ops):
    d_optim = tf.compat.v1.train.AdamOptimizer(0.01, beta1=0.5).minimize(d_loss, var_list=d_vars)
g_optim = tf.compat.v1.train.AdamOptimizer(0.01, beta1=0.5).minimize(g_loss, var_list=g_vars)

rng = np.random.RandomState(4)
pool = SamplePool(16)
# one thread, for results that do not change from run to run
session_conf = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1,
                                        inter_op_parallelism_threads=1)
with tf.compat.v1.Session(config=session_conf) as sess:
    tf.compat.v1.global_variables_initializer().run()
    for it in range(4):
        batch_real = rng.normal([2.0, -1.0], [0.5, 1.5], size=(8, 2)).astype(np.float32)
        batch_noise = rng.uniform(-1, 1, size=(8, 4)).astype(np.float32)
        generated = sess.run(fake, feed_dict={noise: batch_noise})
        _, d_err = sess.run([d_optim, d_loss],
                            feed_dict={real: batch_real, pooled_fake: pool.query(generated)})
        _, g_err = sess.run([g_optim, g_loss], feed_dict={noise: batch_noise})
        print("iter %d d_loss %.9f g_loss %.9f" % (it, d_err, g_err))
    for v in tf.compat.v1.global_variables(scope="discriminator"):
        if "moving" in v.name:
            print(v.name, np.array2string(v.eval(), precision=9, floatmode="fixed",
                                          max_line_width=200))
