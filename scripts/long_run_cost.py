#!/usr/bin/env python3
"""What tracing costs on real-size TF1 programs and long runs (issue 20, item 6).

In one run this starts, as a user would, two TF1-style training programs in subprocesses, each
plain (``python PROGRAM``) and traced (``python -m bnrepro trace --out DIR PROGRAM``, the default
keep policy and inputs policy), interleaved round by round (plain first in one round, traced
first in the next), at two lengths, N1 and N2 steps:

  resnet  a ResNet-20-style net on CIFAR-shaped random data (NOT CIFAR: 32x32x3 float32 images
          and labels drawn with NumPy): ``tf.compat.v1.layers.conv2d`` and fused
          ``batch_normalization``, 19 batch-norm layers of 16/32/64 channels, batch 64
  mlp     an MLP 100-64-64-1 with 2 batch-norm layers on random data, batch 64
  mlp-wide  the issue's other MLP, 784-256-256-10 with 2 batch-norm layers, a softmax
          cross-entropy on MNIST-shaped random data (NOT MNIST), batch 64; not in the default
          ``--nets``: its figures say what a kept step costs a step some 3 times the MLP's

The programs are this script's hidden ``--program`` mode: ``tf.compat.v1`` placeholders, a
``training`` placeholder, the ``UPDATE_OPS`` dependency, ``MomentumOptimizer``, one
``session.run(train_op, feed)`` per step on a few random batches drawn once and cycled; each times
its own steps (``time.perf_counter`` around each ``session.run``) and saves them to a file. What
is measured, each as a ratio traced / plain of the two runs of a round (median over rounds):

  loop        mean ms per step in the phases step 1 (set-up: TensorFlow's first run, the tracer's
              discovery; no target), steps 2-100 (every step kept, the layers' inputs with it
              while the trace is under a sixth of the inputs budget) and steps 101-N (the pairs
              (k - 1, k) of every 100th step kept, of k - 1 its state only, the inputs at k
              within the budget; the other steps fetch and read nothing); beside it the ratio
              of the phase's median steps and its slowest step: a run whose fetches TensorFlow
              has not run before costs a one-time preparation (graph optimisation; some 80 ms
              for the MLP, the cost of a plain program's step 1), which the tracer pays at its
              first step and at the first step of each kind (with inputs, without, the
              program's own fetches: a dropped step, a pair's first); the mean counts it, the
              median not
  process     the whole process's wall time (start-up, TensorFlow's import, the loop, the trace's
              end); the target holds for a run of a minute or more
  memory      the process's peak resident memory (``os.wait4``'s ``ru_maxrss``, its children
              included) and its growth from the N1-step to the N2-step run; and the growth per
              1,000 steps within the N2-step run, from step N1 to its end, of the resident memory
              the program notes every 100 steps (``VmRSS``): the peaks cannot show a growth that
              stays under the peak of steps 1-100, where the layers' inputs are kept. The target
              (~0) is judged on the latter, traced minus plain
  disk        the trace directory's size (``du``: allocated blocks) per step at N1 and N2, and
              the bytes per step added from N1 to N2
  verify      ``python -m bnrepro verify DIR``'s wall time and peak memory at N1 and N2, and their
              growth per 1,000 steps

The ResNet's disk target is for a long run (the issue: the default keeps a 100,000-step ResNet-20
run within about 2 GB): its trace keeps the layers' inputs (some 48 MB a step) at its first steps
while under a sixth of the 1.5 GB inputs budget, then at every 100th step until the budget is
spent, so a short run's bytes per step say little. The script projects the bytes per step of a
``--project-steps`` run (100,000): the statistics (the trace but the members ``...|batch_input``)
at N2, plus their bytes per kept step between N1 and N2 times the further steps the keep policy
keeps (``bnrepro.trace.keep.KeepPolicy``), and the inputs projected the same way but at most the
budget (one step's inputs may pass it: an upper bound). The MLP's is judged at N2.

    python scripts/long_run_cost.py                     # the defaults (see --help for the time)
    python scripts/long_run_cost.py --resnet-steps 30 --mlp-steps 300 --rounds 1  # 3,30 and 30,300
    python scripts/long_run_cost.py --nets mlp --graph-mode no-eager
    python scripts/long_run_cost.py --nets mlp-wide                  # the issue's 784-256-256-10

Progress goes to stderr; the tables, the targets and a last JSON line to stdout. Exit status 0
(also when a target is missed: this measures and reports), 1 when a program or verify fails,
2 for bad options (one line).
"""
import argparse
import importlib.metadata
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

NETS = ("resnet", "mlp", "mlp-wide")
DEFAULT_NETS = "resnet,mlp"
MLP_WIDTHS = {"mlp": (100, 64, 1), "mlp-wide": (784, 256, 10)}  # inputs, hidden layers, outputs
GRAPH_MODES = {"v1": "tf.compat.v1.disable_v2_behavior()",
               "no-eager": "tf.compat.v1.disable_eager_execution() alone"}
PROGRAM = "--program"  # the hidden mode: the user's program itself
BATCH_SIZE = 64
BATCHES = 8  # random batches drawn once and cycled
RSS_EVERY = 100  # the program notes its resident memory every this many steps, and at its end
PHASES = (("step 1", 1, 1), ("steps 2-100", 2, 100), ("steps 101-N", 101, None))
TARGET_RATIO = 1.10  # traced / plain, the loop at every phase and a whole process of >= 60 s
LONG_PROCESS_SECONDS = 60
TARGET_BYTES_PER_STEP = {"resnet": 20_000, "mlp": 4_000}
KB = 1000
MB = 10 ** 6


# --- the user's programs (the hidden --program mode: imports nothing of bnrepro) ----------------

def program_arguments(argv):
    """The program's own options: ``--program NET --steps N --graph-mode MODE --timings FILE``."""
    parser = argparse.ArgumentParser(prog="long_run_cost.py --program")
    parser.add_argument(PROGRAM, dest="net", choices=NETS, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--graph-mode", choices=tuple(GRAPH_MODES), default="v1")
    parser.add_argument("--timings", required=True,
                        help="where to np.savez the step seconds and the memory samples (.npz)")
    parser.add_argument("--mark", type=int, default=0,
                        help="also note the resident memory after this step")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def resnet20(tf, images, training):
    """ResNet-20 for 32x32 images (He et al. 2016, option A shortcuts): a 3x3 convolution of 16
    channels, 3 stages of 3 blocks of two 3x3 convolutions (16, 32, 64 channels, the first of a
    stage strided), each convolution followed by a fused batch normalization: 19 layers."""
    layers = tf.compat.v1.layers

    def conv_bn(x, channels, stride, name):
        x = layers.conv2d(x, channels, 3, strides=stride, padding="same", use_bias=False,
                          name=f"{name}/conv")
        return layers.batch_normalization(x, training=training, fused=True, momentum=0.9,
                                          name=f"{name}/bn")

    x = tf.nn.relu(conv_bn(images, 16, 1, "stem"))
    for stage, channels in enumerate((16, 32, 64)):
        for block in range(3):
            stride = 2 if stage and not block else 1
            shortcut = x
            if stride == 2:  # option A: subsample, zero-pad the new channels
                shortcut = tf.pad(x[:, ::2, ::2, :], [[0, 0], [0, 0], [0, 0],
                                                      [channels // 4, channels // 4]])
            name = f"stage{stage + 1}/block{block + 1}"
            y = tf.nn.relu(conv_bn(x, channels, stride, f"{name}/a"))
            x = tf.nn.relu(conv_bn(y, channels, 1, f"{name}/b") + shortcut)
    return layers.dense(tf.reduce_mean(x, axis=[1, 2]), 10, name="logits")


def build_program(tf, net, rng):
    """``(feeds, train_op)``: the net's graph in the default graph and its random batches as feed
    dicts."""
    tf1, layers = tf.compat.v1, tf.compat.v1.layers
    training = tf1.placeholder(tf.bool, [], name="training")
    if net == "resnet":
        x = tf1.placeholder(tf.float32, [None, 32, 32, 3], name="images")
        y = tf1.placeholder(tf.int64, [None], name="labels")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=y, logits=resnet20(tf, x, training)))
        batches = [(rng.rand(BATCH_SIZE, 32, 32, 3).astype("float32"),
                    rng.randint(0, 10, BATCH_SIZE)) for _ in range(BATCHES)]
    else:
        inputs, width, outputs = MLP_WIDTHS[net]
        x = tf1.placeholder(tf.float32, [None, inputs], name="x")
        hidden = x
        for number in (1, 2):
            hidden = layers.dense(hidden, width, name=f"dense{number}")
            hidden = tf.nn.relu(layers.batch_normalization(hidden, training=training,
                                                           name=f"bn{number}"))
        logits = layers.dense(hidden, outputs, name="out")
        if outputs == 1:  # a regression
            y = tf1.placeholder(tf.float32, [None, 1], name="y")
            loss = tf1.losses.mean_squared_error(y, logits)
            batches = [(rng.randn(BATCH_SIZE, inputs).astype("float32"),
                        rng.randn(BATCH_SIZE, 1).astype("float32")) for _ in range(BATCHES)]
        else:  # classes
            y = tf1.placeholder(tf.int64, [None], name="labels")
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=y, logits=logits))
            batches = [(rng.rand(BATCH_SIZE, inputs).astype("float32"),
                        rng.randint(0, outputs, BATCH_SIZE)) for _ in range(BATCHES)]
    with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)):
        train_op = tf1.train.MomentumOptimizer(0.01, 0.9).minimize(loss)
    return [{x: inputs, y: labels, training: True} for inputs, labels in batches], train_op


def resident_bytes():
    """This process's resident memory now (``VmRSS`` of ``/proc/self/status``; 0 elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def program_main(argv):
    """The user's program: build, initialise, train ``--steps`` steps timing each
    ``session.run``; save the seconds and its resident memory every :data:`RSS_EVERY` steps, after
    step ``--mark`` and at the end to ``--timings``."""
    options = program_arguments(argv)
    import time as clock_module

    import numpy as np
    import tensorflow as tf

    tf1 = tf.compat.v1
    if options.graph_mode == "v1":
        tf1.disable_v2_behavior()
    else:
        tf1.disable_eager_execution()
    tf1.set_random_seed(options.seed)
    feeds, train_op = build_program(tf, options.net, np.random.RandomState(options.seed))
    session = tf1.Session()
    session.run(tf1.global_variables_initializer())
    seconds, clock = np.empty(options.steps), clock_module.perf_counter
    rss_steps, rss = [], []
    for step in range(1, options.steps + 1):
        feed = feeds[step % len(feeds)]
        start = clock()
        session.run(train_op, feed)
        seconds[step - 1] = clock() - start
        if step % RSS_EVERY == 0 or step in (options.mark, options.steps):
            rss_steps.append(step)
            rss.append(resident_bytes())
    np.savez(options.timings, seconds=seconds, rss_steps=rss_steps, rss=rss)
    session.close()
    return 0


# --- the options --------------------------------------------------------------------------------

class OneLineErrors(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit status 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def step_pair(text):
    """``N1,N2`` with 1 <= N1 < N2, or ``N`` alone for ``N // 10`` (at least 1) and ``N``."""
    try:
        numbers = [int(part) for part in text.split(",")]
    except ValueError:
        numbers = []
    if len(numbers) == 1:
        numbers = [max(numbers[0] // 10, 1), numbers[0]]
    if len(numbers) != 2 or not 1 <= numbers[0] < numbers[1]:
        raise argparse.ArgumentTypeError(f"expected N (at least 2) or N1,N2 with 1 <= N1 < N2, "
                                         f"got {text!r}")
    return tuple(numbers)


def net_list(text):
    """A comma-separated subset of :data:`NETS`."""
    nets = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(nets) - set(NETS))
    if unknown or not nets:
        raise argparse.ArgumentTypeError(f"expected some of {','.join(NETS)}, got {text!r}")
    return [net for net in NETS if net in nets]


def parse_arguments(argv=None):
    from tracer_overhead import non_negative, positive

    parser = OneLineErrors(
        prog="long_run_cost.py",
        description=__doc__.split("\n\n")[0] + " Runs the programs plain and under `bnrepro "
        "trace` in interleaved subprocesses and prints traced/plain ratios of loop time, whole "
        "process time and peak memory, the trace's bytes per step, `bnrepro verify`'s time and "
        "memory, the growth from N1 to N2 steps, and the issue's targets beside them. With the "
        "defaults it takes about 25 minutes on 2 cores (a ResNet step is some 0.13 s).",
        epilog="Example, a quick check of the script (a few minutes, figures not meaningful): "
        "python scripts/long_run_cost.py --resnet-steps 30 --mlp-steps 300 --rounds 1",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--nets", type=net_list, default=DEFAULT_NETS,
                        help="which programs to measure, comma-separated: resnet (ResNet-20-style, "
                        "random CIFAR-shaped data), mlp (MLP 100-64-64-1, random data), mlp-wide "
                        "(MLP 784-256-256-10, MNIST-shaped random data)")
    parser.add_argument("--resnet-steps", type=step_pair, default="200,1200", metavar="N1,N2",
                        help="the ResNet's two run lengths, for the growth from N1 to N2 steps "
                        "(N alone: N/10 and N)")
    parser.add_argument("--mlp-steps", type=step_pair, default="1000,10000", metavar="N1,N2",
                        help="the MLP's two run lengths")
    parser.add_argument("--mlp-wide-steps", type=step_pair, default="1000,10000",
                        metavar="N1,N2", help="the wide MLP's two run lengths")
    parser.add_argument("--rounds", type=positive, default=3,
                        help="interleaved rounds; each runs every net plain and traced at N1 and "
                        "at N2 steps (the order alternating) and verifies both traces")
    parser.add_argument("--warmup", type=non_negative, default=1,
                        help="untimed plain runs of 10 steps of each net first (file caches, "
                        "TensorFlow's first import)")
    parser.add_argument("--graph-mode", choices=tuple(GRAPH_MODES), default="v1",
                        help="how the programs leave eager mode: v1 = "
                        "tf.compat.v1.disable_v2_behavior() (what TF1 code calls), no-eager = "
                        "tf.compat.v1.disable_eager_execution() alone")
    parser.add_argument("--project-steps", type=positive, default=100_000,
                        help="the run length the ResNet's bytes per step are projected to "
                        "(the issue's target is for a long run under the default keep policy)")
    parser.add_argument("--growth-tolerance-mb", type=float, default=1.0,
                        help="memory growth per 1,000 steps (traced minus plain) taken as ~0: "
                        "at most this many MB")
    parser.add_argument("--tmp", default=None, metavar="DIR",
                        help="where the traces are written (a ResNet trace is about 2 GB; "
                        "deleted after it is measured; None: the system's temporary directory)")
    return parser.parse_args(argv)


# --- running and measuring ----------------------------------------------------------------------

def progress(line):
    print(f"long_run_cost: {line}", file=sys.stderr, flush=True)


def run_measured(command, env, log_path):
    """Run ``command`` (stdout and stderr to ``log_path``): ``(wall seconds, peak bytes)``, the
    peak from ``os.wait4``'s ``ru_maxrss`` of this one child (its own children included). Exits
    with the log's end if the command fails."""
    with open(log_path, "wb") as log:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
    code = child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    if code != 0:
        with open(log_path, encoding="utf-8", errors="replace") as log:
            tail = log.read()[-3000:]
        sys.exit(f"long_run_cost: {' '.join(command)} failed (exit status {code}):\n"
                 f"{tail}")
    return seconds, usage.ru_maxrss * 1024


def disk_bytes(directory):
    """What ``du`` counts: the allocated blocks of every file below ``directory``."""
    total = 0
    for folder, _, files in os.walk(directory):
        for name in files:
            total += os.lstat(os.path.join(folder, name)).st_blocks * 512
    return total


def input_bytes(directory):
    """The bytes of the layers' inputs in a trace's chunks (the members ``...|batch_input``, as
    stored in the ``.npz`` files)."""
    import zipfile

    total = 0
    for folder, _, files in os.walk(directory):
        for name in files:
            if name.endswith(".npz"):
                with zipfile.ZipFile(os.path.join(folder, name)) as archive:
                    total += sum(info.compress_size for info in archive.infolist()
                                 if "batch_input" in info.filename)
    return total


def phase_figures(seconds, statistic):
    """``{phase: statistic of its ms per step}`` of a run's step seconds (``statistic``: e.g.
    ``numpy.mean``; a phase the run does not reach is left out)."""
    figures = {}
    for name, first, last in PHASES:
        part = seconds[first - 1:last]
        if len(part):
            figures[name] = 1000 * float(statistic(part))
    return figures


def run_program(net, steps, traced, args, work, env, mark=0):
    """One run of ``net`` for ``steps`` steps, plain or traced (then verified), its resident
    memory noted after step ``mark`` too: a dict of its figures."""
    import numpy as np

    timings = os.path.join(work, "timings.npz")
    trace = os.path.join(work, "trace")
    program = [os.path.abspath(__file__), PROGRAM, net, "--steps", str(steps),
               "--graph-mode", args.graph_mode, "--timings", timings, "--mark", str(mark)]
    command = [sys.executable, *((["-m", "bnrepro", "trace", "--out", trace] if traced else [])
                                 + program)]
    seconds, peak = run_measured(command, env, os.path.join(work, "run.log"))
    with np.load(timings) as saved:
        found = {"wall_s": seconds, "peak_bytes": peak,
                 "phases_ms": phase_figures(saved["seconds"], np.mean),
                 # the median step leaves out one-time costs (TensorFlow preparing a run of new
                 # fetches: the tracer's first step, its first steps without some of them);
                 # the slowest step shows them
                 "phases_median_ms": phase_figures(saved["seconds"], np.median),
                 "phases_max_ms": phase_figures(saved["seconds"], np.max),
                 "rss_steps": saved["rss_steps"].tolist(), "rss": saved["rss"].tolist()}
    if traced:
        found["trace_bytes"] = disk_bytes(trace)
        found["input_bytes"] = input_bytes(trace)
        found["verify_s"], found["verify_peak_bytes"] = run_measured(
            [sys.executable, "-m", "bnrepro", "verify", trace], env,
            os.path.join(work, "verify.log"))
        shutil.rmtree(trace)
    return found


def measure(args, env, work):
    """``{net: {steps: {"plain": [run, ...], "traced": [run, ...]}}}`` over the rounds."""
    runs = {net: {steps: {"plain": [], "traced": []} for steps in step_counts(args, net)}
            for net in args.nets}
    for net in args.nets:
        for _ in range(args.warmup):
            run_program(net, 10, False, args, work, env)
        progress(f"{net}: {args.warmup} warm-up run(s) done")
    pair = 0
    for round_number in range(1, args.rounds + 1):
        for net in args.nets:
            for steps in step_counts(args, net):
                order = (False, True) if pair % 2 == 0 else (True, False)
                pair += 1
                for traced in order:
                    found = run_program(net, steps, traced, args, work, env,
                                        mark=step_counts(args, net)[0])
                    runs[net][steps]["traced" if traced else "plain"].append(found)
                    extra = (f", trace {found['trace_bytes'] / MB:.1f} MB, verify "
                             f"{found['verify_s']:.1f} s" if traced else "")
                    progress(f"round {round_number}/{args.rounds} {net} {steps} steps "
                             f"{'traced' if traced else 'plain'}: {found['wall_s']:.1f} s, peak "
                             f"{found['peak_bytes'] / MB:.0f} MB{extra}")
    return runs


def step_counts(args, net):
    return {"resnet": args.resnet_steps, "mlp": args.mlp_steps,
            "mlp-wide": args.mlp_wide_steps}[net]


# --- summarising --------------------------------------------------------------------------------

def median_ratio(traced_runs, plain_runs, value):
    """The median over rounds of ``value(traced) / value(plain)`` of each round's pair."""
    return statistics.median(value(t) / value(p) for t, p in zip(traced_runs, plain_runs))


def phase_medians(runs, key):
    """``{phase: median over ``runs`` of ``run[key][phase]``}`` (``key``: a ``phase_figures``
    dict of each run)."""
    return {phase: statistics.median(run[key][phase] for run in runs) for phase in runs[0][key]}


def median_of(runs, key):
    return statistics.median(run[key] for run in runs)


def per_thousand(runs_by_steps, key, first, second):
    """The growth of the median of ``key`` from ``first`` to ``second`` steps, per 1,000 steps."""
    low, high = (median_of(runs_by_steps[steps], key) for steps in (first, second))
    return (high - low) * 1000 / (second - first)


def rss_growth(run, first):
    """Bytes per 1,000 steps of the resident memory within ``run``, from its sample at step
    ``first`` (the first one at or after it) to its last."""
    steps, rss = run["rss_steps"], run["rss"]
    start = next((index for index, step in enumerate(steps) if step >= first), 0)
    if steps[-1] == steps[start]:
        return 0.0
    return (rss[-1] - rss[start]) * 1000 / (steps[-1] - steps[start])


def inputs_budget():
    """The default keep policy's budget for the layers' inputs, in bytes."""
    from bnrepro.trace.keep import KeepPolicy

    return KeepPolicy().budget_bytes


def kept_steps(steps):
    """How many of a run's ``steps`` steps the default keep policy keeps (the last one too)."""
    from bnrepro.trace.keep import KeepPolicy

    policy = KeepPolicy()
    return sum(1 for step in range(1, steps) if policy.keeps(step)) + 1


def projected_bytes_per_step(runs, first, second, project):
    """The bytes per step of a ``project``-step trace, from the sizes at ``first`` and
    ``second`` steps (see the module docstring): the statistics (all but the layers' inputs) at
    ``second`` plus their bytes per kept step between ``first`` and ``second`` times the further
    kept steps, and the inputs likewise but at most the inputs budget (the keep policy keeps no
    input once the trace has reached it; one step's inputs may pass it: an upper bound)."""
    sizes = {steps: (median_of(runs[steps]["traced"], "trace_bytes"),
                     median_of(runs[steps]["traced"], "input_bytes")) for steps in (first, second)}
    if project <= second:
        return sizes[second][0] / second
    further = kept_steps(project) - kept_steps(second)
    between = max(kept_steps(second) - kept_steps(first), 1)
    statistics_low, statistics_high = (total - inputs for total, inputs in sizes.values())
    inputs_low, inputs_high = (inputs for _, inputs in sizes.values())
    statistics_total = statistics_high + (statistics_high - statistics_low) / between * further
    inputs_total = min(inputs_high + (inputs_high - inputs_low) / between * further,
                       max(inputs_high, inputs_budget()))
    return (statistics_total + inputs_total) / project


def summarise(net, runs, args):
    """The figures of one net: a dict (printed as tables and as JSON)."""
    first, second = step_counts(args, net)
    by_steps = {}
    for steps in (first, second):
        plain, traced = runs[steps]["plain"], runs[steps]["traced"]
        by_steps[steps] = {
            "loop_ratio": {phase: median_ratio(traced, plain, lambda run: run["phases_ms"][phase])
                           for phase in traced[0]["phases_ms"]},
            "loop_ms": {variant: phase_medians(group, "phases_ms")
                        for variant, group in (("plain", plain), ("traced", traced))},
            "loop_median_ratio": {
                phase: median_ratio(traced, plain, lambda run: run["phases_median_ms"][phase])
                for phase in traced[0]["phases_ms"]},
            "loop_slowest_ms": {variant: phase_medians(group, "phases_max_ms")
                                for variant, group in (("plain", plain), ("traced", traced))},
            "process_ratio": median_ratio(traced, plain, lambda run: run["wall_s"]),
            "process_s": {"plain": median_of(plain, "wall_s"),
                          "traced": median_of(traced, "wall_s")},
            "peak_ratio": median_ratio(traced, plain, lambda run: run["peak_bytes"]),
            "peak_mb": {"plain": median_of(plain, "peak_bytes") / MB,
                        "traced": median_of(traced, "peak_bytes") / MB},
            "trace_mb": median_of(traced, "trace_bytes") / MB,
            "bytes_per_step": median_of(traced, "trace_bytes") / steps,
            "verify_s": median_of(traced, "verify_s"),
            "verify_peak_mb": median_of(traced, "verify_peak_bytes") / MB}
    plain = {steps: runs[steps]["plain"] for steps in runs}
    traced = {steps: runs[steps]["traced"] for steps in runs}
    growth = {"plain_mb": per_thousand(plain, "peak_bytes", first, second) / MB,
              "traced_mb": per_thousand(traced, "peak_bytes", first, second) / MB,
              "in_run_plain_mb": statistics.median(rss_growth(run, first)
                                                   for run in plain[second]) / MB,
              "in_run_traced_mb": statistics.median(rss_growth(run, first)
                                                    for run in traced[second]) / MB,
              "verify_mb": per_thousand(traced, "verify_peak_bytes", first, second) / MB,
              "verify_s": per_thousand(traced, "verify_s", first, second),
              "disk_kb": per_thousand(traced, "trace_bytes", first, second) / KB}
    summary = {"steps": [first, second], "by_steps": by_steps, "growth_per_1000_steps": growth}
    if net == "resnet":
        summary["projected_bytes_per_step"] = projected_bytes_per_step(runs, first, second,
                                                                        args.project_steps)
        summary["budget_spent_by_n1"] = (median_of(runs[first]["traced"], "trace_bytes")
                                         >= inputs_budget())
    return summary


def format_measurements(net, summary, project_steps):
    """Markdown: the measured figures of one net at N1 and N2 steps."""
    lines = [f"| {net}, steps | phase | plain ms/step | traced ms/step | traced/plain | median "
             "step, traced/plain | slowest step ms, plain / traced |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for steps, found in summary["by_steps"].items():
        slowest = found["loop_slowest_ms"]
        for phase, ratio in found["loop_ratio"].items():
            lines.append(f"| {steps} | loop, {phase} | {found['loop_ms']['plain'][phase]:.2f} | "
                         f"{found['loop_ms']['traced'][phase]:.2f} | {ratio:.3f} | "
                         f"{found['loop_median_ratio'][phase]:.3f} | "
                         f"{slowest['plain'][phase]:.1f} / {slowest['traced'][phase]:.1f} |")
        lines.append(f"| {steps} | whole process (s) | {found['process_s']['plain']:.1f} | "
                     f"{found['process_s']['traced']:.1f} | {found['process_ratio']:.3f} | | |")
        lines.append(f"| {steps} | peak memory (MB) | {found['peak_mb']['plain']:.0f} | "
                     f"{found['peak_mb']['traced']:.0f} | {found['peak_ratio']:.3f} | | |")
    lines += ["", f"| {net}, steps | trace on disk | bytes per step | verify s | verify peak MB |",
              "| ---: | ---: | ---: | ---: | ---: |"]
    for steps, found in summary["by_steps"].items():
        lines.append(f"| {steps} | {found['trace_mb']:.1f} MB | {found['bytes_per_step']:,.0f} | "
                     f"{found['verify_s']:.1f} | {found['verify_peak_mb']:.0f} |")
    growth = summary["growth_per_1000_steps"]
    first, second = summary["steps"]
    lines += ["", f"growth from {first} to {second} steps, per 1,000 steps: resident memory "
              f"within the {second}-step run, plain {growth['in_run_plain_mb']:+.2f} MB, traced "
              f"{growth['in_run_traced_mb']:+.2f} MB; peak memory of the {first}- and "
              f"{second}-step runs, plain {growth['plain_mb']:+.1f} MB, traced "
              f"{growth['traced_mb']:+.1f} MB; trace on disk {growth['disk_kb']:+,.0f} kB; verify "
              f"{growth['verify_s']:+.2f} s and {growth['verify_mb']:+.1f} MB"]
    if "projected_bytes_per_step" in summary:
        lines.append(f"trace projected to a run of {project_steps:,} steps under the default keep "
                     f"policy: {summary['projected_bytes_per_step']:,.0f} bytes per step"
                     + " (the statistics per kept step as measured from N1 to N2; the layers' "
                     "inputs likewise, at most the inputs budget)")
    return "\n".join(lines)


def targets(net, summary, args):
    """Rows ``(target, measured, verdict)`` of one net."""
    first, second = summary["steps"]
    long_run = summary["by_steps"][second]
    rows = []
    for phase in ("steps 2-100", "steps 101-N"):
        ratios = [found["loop_ratio"][phase] for found in summary["by_steps"].values()
                  if phase in found["loop_ratio"]]
        if ratios:
            worst = max(ratios)
            rows.append((f"loop {phase}, traced/plain <= {TARGET_RATIO}",
                         f"{worst:.3f} (worse of N1, N2)", verdict(worst <= TARGET_RATIO)))
    plain_seconds = long_run["process_s"]["plain"]
    ratio = long_run["process_ratio"]
    rows.append((f"whole process of >= {LONG_PROCESS_SECONDS} s, traced/plain <= {TARGET_RATIO}",
                 f"{ratio:.3f} ({second} steps, plain {plain_seconds:.0f} s)",
                 verdict(ratio <= TARGET_RATIO) if plain_seconds >= LONG_PROCESS_SECONDS
                 else "not judged: the run is under a minute"))
    growth = summary["growth_per_1000_steps"]
    tracer_growth = growth["in_run_traced_mb"] - growth["in_run_plain_mb"]
    rows.append((f"memory growth per 1,000 steps ~0 (traced - plain <= "
                 f"{args.growth_tolerance_mb:g} MB)",
                 f"{tracer_growth:+.2f} MB (steps {first} -> {second} of a run)",
                 verdict(tracer_growth <= args.growth_tolerance_mb)))
    limit = TARGET_BYTES_PER_STEP.get(net)
    if limit is None:  # the issue sets no size for it
        return rows
    if net == "resnet":
        measured = summary["projected_bytes_per_step"]
        where = f"projected to {args.project_steps:,} steps"
    else:
        measured, where = long_run["bytes_per_step"], f"at {second} steps"
    rows.append((f"{net} trace <= {limit / KB:g} KB per step, default policy",
                 f"{measured / KB:.2f} KB ({where})", verdict(measured <= limit)))
    return rows


def verdict(met):
    return "met" if met else "NOT met"


def main(argv=None):
    args = parse_arguments(argv)
    from cli_timing import environment

    env = environment()
    progress(f"nets {', '.join(args.nets)}, {args.rounds} round(s), graph mode {args.graph_mode}")
    with tempfile.TemporaryDirectory(prefix="long_run_cost_", dir=args.tmp) as work:
        runs = measure(args, env, work)
    print("command: python " + " ".join([os.path.relpath(__file__),
                                         *(sys.argv[1:] if argv is None else argv)]))
    print(f"TensorFlow {importlib.metadata.version('tensorflow')}, {os.cpu_count()} CPUs, load "
          f"average now {os.getloadavg()[0]:.2f}; graph mode: {GRAPH_MODES[args.graph_mode]}; "
          f"random data (not CIFAR), batch {BATCH_SIZE}; {args.rounds} interleaved round(s), "
          "medians of the per-round traced/plain ratios")
    summaries, rows = {}, []
    for net in args.nets:
        summaries[net] = summarise(net, runs[net], args)
        print()
        print(format_measurements(net, summaries[net], args.project_steps))
        rows += [(net, *row) for row in targets(net, summaries[net], args)]
    print("\n| program | target | measured | |\n| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    met = sum(row[3] == "met" for row in rows)
    judged = sum(row[3] in ("met", "NOT met") for row in rows)
    print(f"\n{met} of {judged} judged targets met")
    print(json.dumps({"graph_mode": args.graph_mode, "rounds": args.rounds, **summaries}))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == [PROGRAM]:
        sys.exit(program_main(sys.argv[1:]))
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
