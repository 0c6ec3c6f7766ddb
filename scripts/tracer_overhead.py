#!/usr/bin/env python3
"""What tracing adds to the training runs of a small TF1-style program (issue 10).

Issue 10's done-when: tracing a small script adds at most 15% to its training runs when nothing is
written. In one run this builds the same small training program several times, the way a user
writes it (``tf.compat.v1`` placeholders, a dense layer, ``tf.compat.v1.layers.batch_normalization``
with a ``training`` placeholder, the ``UPDATE_OPS`` dependency, ``GradientDescentOptimizer``; by
default post 002's 784-128-10 net), each in its own graph and session with the same seeds, and times
the training loop's ``session.run(train_op, feed_dict)`` steps on random float32 batches drawn once,
outside the timers, in these variants:

  a  untraced      no tracer installed
  b  traced        ``bnrepro.graphs.tracer.Tracer`` installed, records kept in memory, nothing written
                   (the target: b / a <= 1.15)
  c  traced+write  as b, and the trace is written at the end (the write is timed on its own)
  d  Keras fit     ``model.fit`` of the same net in graph mode (v2 behaviour disabled, so in a
                   subprocess), untraced and traced, ms per batch of a whole fit (``--no-keras``:
                   skipped)

Rounds interleave the variants (their order rotates each round) so that a busy spell of the machine
hits all of them alike; the warm-up steps (tracer discovery, first plans, TensorFlow's own set-up)
are not timed. A variant's time is the median over rounds of its median ms per step in the round;
the ratio is taken both of those medians and round by round (median of the per-round ratios).

It then checks that tracing changes nothing: every variant runs ``--loss-steps`` more steps fetching
``[train_op, loss]`` on the same batches; the largest difference of the losses, of every variable
after training and of an inference-mode loss (moving statistics) between a traced and the untraced
variant is printed (0 expected).

    python scripts/tracer_overhead.py                      # about a minute on 2 cores
    python scripts/tracer_overhead.py --no-keras           # without Keras (variant d)
    python scripts/tracer_overhead.py --profile 300        # and where 300 traced steps spend it
    python scripts/tracer_overhead.py --units 32 --inputs 64 --batch-size 32   # a smaller net

The traced variants keep every record in memory, as a user's trace does: with the tracer's default
(the layer's input kept at every step up to 100, then every 100th, as ``bnrepro trace`` does) about
5 KiB per step, 21 MiB each for b and c; ``--inputs-every 1`` keeps the input at every step (67 KiB
per step, mostly the 128x128 input: some 280 MiB each, and a few % more time per step). ``--profile STEPS``
then times each part of a traced step on its own (the tracer's internals called directly) and
prints a cProfile of STEPS traced steps.

Exit status 0 (also when the target is missed: this measures and reports); 2 for bad arguments.
"""
import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import bnrepro  # noqa: E402,F401  sets TF_USE_LEGACY_KERAS=1 before TensorFlow is imported

import numpy as np  # noqa: E402

TARGET = 1.15


def positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] + " Times untraced and traced training steps "
        "(interleaved rounds, medians) and checks that the traced runs compute the same losses.",
        epilog="Example: python scripts/tracer_overhead.py --rounds 21 --profile 300",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    net = parser.add_argument_group("the program")
    net.add_argument("--inputs", type=positive, default=784, help="input features")
    net.add_argument("--units", type=positive, default=128, help="units of the batch-normed layer")
    net.add_argument("--classes", type=positive, default=10, help="output classes")
    net.add_argument("--batch-size", type=positive, default=128, help="examples per batch")
    net.add_argument("--batches", type=positive, default=20,
                     help="distinct random batches, drawn once before timing and cycled")
    net.add_argument("--learning-rate", type=float, default=0.1, help="gradient-descent rate")
    net.add_argument("--seed", type=int, default=0, help="graph and data seed")
    timing = parser.add_argument_group("timing")
    timing.add_argument("--rounds", type=positive, default=41, help="interleaved timed rounds")
    timing.add_argument("--steps", type=positive, default=100,
                        help="timed training steps per variant per round")
    timing.add_argument("--warmup", type=non_negative, default=50,
                        help="untimed steps per variant before the rounds")
    timing.add_argument("--loss-steps", type=non_negative, default=50,
                        help="steps fetching [train_op, loss] for the same-losses check")
    timing.add_argument("--inputs-every", type=positive, default=None,
                        help="Tracer(inputs_every=...): keep a layer input every N steps "
                        "(default: the tracer's, as bnrepro trace: every step up to 100, then "
                        "every 100th)")
    timing.add_argument("--keras", action=argparse.BooleanOptionalAction, default=True,
                        help="also time Keras model.fit in graph mode (variant d, in a subprocess)")
    timing.add_argument("--keras-rounds", type=positive, default=15,
                        help="Keras timed rounds (interleaved untraced and traced fits)")
    timing.add_argument("--keras-epochs", type=positive, default=10,
                        help="epochs (of --batches batches) per timed Keras fit")
    timing.add_argument("--profile", type=non_negative, default=0, metavar="STEPS",
                        help="after timing, cProfile this many traced steps and print where "
                        "the time goes (0: no profile)")
    timing.add_argument("--profile-lines", type=positive, default=25,
                        help="functions shown in the profile")
    parser.add_argument("--keras-child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# --- the user's program ---------------------------------------------------------------------------

def make_batches(args):
    """``--batches`` random float32 batches and integer labels, drawn once."""
    rng = np.random.RandomState(args.seed)
    return [(rng.rand(args.batch_size, args.inputs).astype(np.float32),
             rng.randint(0, args.classes, args.batch_size).astype(np.int64))
            for _ in range(args.batches)]


class Program:
    """One copy of the user's training program: its own graph, session and place in the data."""

    def __init__(self, name, args, batches, tracer=None):
        import tensorflow as tf

        tf1 = tf.compat.v1
        self.name, self.tracer = name, tracer
        self.graph = tf.Graph()
        with self.graph.as_default():
            # Python's, NumPy's and the graph's seeds: tf_keras' legacy layers draw an unseeded
            # initializer's op seed from NumPy, so every copy needs the same NumPy state
            tf.keras.utils.set_random_seed(args.seed)
            x = tf1.placeholder(tf.float32, [None, args.inputs], name="x")
            y = tf1.placeholder(tf.int64, [None], name="y")
            training = tf1.placeholder(tf.bool, [], name="training")
            hidden = tf1.layers.dense(x, args.units, name="layer1")
            hidden = tf1.layers.batch_normalization(hidden, training=training, momentum=0.99)
            logits = tf1.layers.dense(tf.nn.relu(hidden), args.classes, name="layer2")
            self.loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
            with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)):
                self.train_op = tf1.train.GradientDescentOptimizer(
                    args.learning_rate).minimize(self.loss)
            self.variables = tf1.global_variables()
            init = tf1.global_variables_initializer()
        self.session = tf1.Session(graph=self.graph)
        self.session.run(init)  # before any tracer is installed: the tracer reads step 0 itself
        self.initial = self.session.run(self.variables)
        self.feeds = [{x: inputs, y: labels, training: True} for inputs, labels in batches]
        self.test_feed = {x: batches[0][0], y: batches[0][1], training: False}
        self.cursor = 0
        self.round_medians = []  # ms
        self.losses = []

    def _next_feed(self):
        feed = self.feeds[self.cursor % len(self.feeds)]
        self.cursor += 1
        return feed

    def steps(self, count, timed):
        """``count`` training steps ``session.run(train_op, feed)``, the tracer installed for them;
        when ``timed``, the round's median ms per step is kept."""
        times = []
        session, train_op, clock = self.session, self.train_op, time.perf_counter
        with self._installed():
            for _ in range(count):
                feed = self._next_feed()
                start = clock()
                session.run(train_op, feed)  # looked up each time, as a user's loop does
                times.append(clock() - start)
        if timed:
            self.round_medians.append(1000 * statistics.median(times))
        return times

    def loss_steps(self, count):
        with self._installed():
            for _ in range(count):
                _, value = self.session.run([self.train_op, self.loss], self._next_feed())
                self.losses.append(value)

    def final_state(self):
        """Every variable after training and the inference-mode loss (moving statistics), read
        untraced."""
        values = self.session.run(self.variables)
        return ({v.name: value for v, value in zip(self.variables, values)},
                self.session.run(self.loss, self.test_feed))

    def _installed(self):
        import contextlib

        if self.tracer is None:
            return contextlib.nullcontext()

        @contextlib.contextmanager
        def installed():
            self.tracer.install()
            try:
                yield
            finally:
                self.tracer.uninstall()
        return installed()


# --- measuring ------------------------------------------------------------------------------------

def record_bytes(records):
    """Bytes of the NumPy arrays a tracer keeps in memory."""
    total = 0
    stack = list(records)
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, np.ndarray):
            total += item.nbytes
    return total


def largest_difference(program, reference):
    """The largest |difference| of losses, variables and inference loss against ``reference``."""
    variables, test_loss = program.final_state()
    ref_variables, ref_test_loss = reference.final_state()
    losses = max((abs(float(a) - float(b)) for a, b in zip(program.losses, reference.losses)),
                 default=0.0)
    weights = max(float(np.max(np.abs(variables[name] - ref_variables[name])))
                  for name in ref_variables)
    initial = max(float(np.max(np.abs(a - b))) for a, b in zip(program.initial, reference.initial))
    return {"initial": initial, "losses": losses, "variables": weights,
            "test_loss": abs(float(test_loss) - float(ref_test_loss)),
            "loss_count": min(len(program.losses), len(reference.losses))}


def profile_steps(program, count, lines):
    """cProfile ``count`` traced steps of ``program``; return the printed statistics."""
    profiler = cProfile.Profile()
    with program._installed():  # noqa: SLF001
        session, train_op = program.session, program.train_op
        feeds = [program._next_feed() for _ in range(count)]  # noqa: SLF001
        profiler.enable()
        for feed in feeds:
            session.run(train_op, feed)
        profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(lines)
    stats.sort_stats("cumulative").print_stats(r"tracer\.py|session\.py:\d+\(run\)|"
                                                r"session\.py:\d+\(_run\)", lines)
    return out.getvalue()


def breakdown(program, count):
    """Median ms per step of each part of a traced step, each part timed on its own (the tracer's
    internals called directly, untraced), the parts interleaved step by step. Returns rows
    ``(part, ms)`` or ``None`` when the tracer's internals are not the ones this expects."""
    tracer, session, train_op = program.tracer, program.session, program.train_op
    clock = time.perf_counter
    try:
        state = tracer.graphs[id(session.graph)]
        graph = session.graph
        plan = tracer._run_plan(state, graph, train_op, program.feeds[0])  # noqa: SLF001
        reader = tracer._state_reader(session, state)  # noqa: SLF001
        parts = {}

        def extra_run(feed):
            """The run as the tracer makes it, its extra tensors added in its ``_do_run``:
            ``(seconds, extra values)``."""
            tracer.install()
            pending = tracer._pending  # noqa: SLF001
            try:
                pending.session, pending.plan = session, plan
                start = clock()
                tracer._originals[0](session, train_op, feed)  # noqa: SLF001  (BaseSession.run)
                return clock() - start, pending.extra
            finally:
                pending.session = pending.plan = None
                tracer.uninstall()

        def add(name, seconds):
            parts.setdefault(name, []).append(1000 * seconds)

        for _ in range(count):
            feed = program._next_feed()  # noqa: SLF001
            t0 = clock()
            session.run(train_op, feed)
            t1 = clock()
            extra_seconds, extra = extra_run(feed)
            t2 = clock()
            values = reader()
            t3 = clock()
            tracer._graph_state(graph)  # noqa: SLF001
            t4 = clock()
            tracer._run_plan(state, graph, train_op, feed)  # noqa: SLF001
            t5 = clock()
            after = {key: np.array(value, copy=True) for key, value in zip(state.reader, values)}
            any(not np.array_equal(after[key], state.last[key]) for key in after
                if key in state.moving_keys)
            t6 = clock()
            tracer._record(state, plan, extra, after, "Session.run", True, True)  # noqa: SLF001
            t7 = clock()
            tracer.install()
            try:
                t8 = clock()
                session.run(train_op, feed)
                t9 = clock()
            finally:
                tracer.uninstall()
            add("a. session.run(train_op) untraced", t1 - t0)
            add("b. the same run, the tracer's extra tensors added (_do_run), extra cost",
                extra_seconds - (t1 - t0))
            add("c. the state read after the run (_read_state's StateReader)", t3 - t2)
            add("d. _graph_state (graph.version each run)", t4 - t3)
            add("e. _run_plan (cached by the fetched and fed objects)", t5 - t4)
            add("f. _read_state's np.array copies + after_run's moved check", t6 - t5)
            add("g. _record (the extra values kept as they are)", t7 - t6)
            add("h. whole traced step (installed), for comparison", t9 - t8)
    except (AttributeError, KeyError, TypeError) as error:
        print(f"(breakdown unavailable, the tracer's internals changed: {error!r})")
        return None
    rows = [(name, statistics.median(values)) for name, values in parts.items()]
    rows.append(("sum of b-g (the tracer's cost, estimated)",
                 sum(ms for name, ms in rows if name[0] in "bcdefg")))
    return rows


def keras_child(args):
    """Variant d, in its own process: ``model.fit`` with v2 behaviour disabled, untraced and
    traced models interleaved. Prints one JSON line."""
    import tensorflow as tf

    tf1 = tf.compat.v1
    tf1.disable_v2_behavior()
    import tf_keras

    from bnrepro.graphs.tracer import Tracer

    batches = make_batches(args)
    inputs = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])

    def build():
        graph = tf.Graph()
        with graph.as_default():
            tf_keras.utils.set_random_seed(args.seed)
            session = tf1.Session(graph=graph)
            with session.as_default():
                model = tf_keras.Sequential([
                    tf_keras.layers.Dense(args.units, input_shape=(args.inputs,)),
                    tf_keras.layers.BatchNormalization(momentum=0.99),
                    tf_keras.layers.ReLU(),
                    tf_keras.layers.Dense(args.classes)])
                model.compile(optimizer=tf_keras.optimizers.legacy.SGD(args.learning_rate),
                              loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return graph, session, model

    tracer = Tracer(inputs_every=args.inputs_every)
    variants = {"d untraced (Keras fit)": (build(), None, [], []),
                "d traced (Keras fit)": (build(), tracer, [], [])}

    def fit(name):
        (graph, session, model), tracer_, medians, losses = variants[name]
        if tracer_ is not None:
            tracer_.install()
        try:
            with graph.as_default(), session.as_default():
                start = time.perf_counter()
                history = model.fit(inputs, labels, batch_size=args.batch_size, epochs=epochs,
                                    shuffle=False, verbose=0)
                elapsed = time.perf_counter() - start
        finally:
            if tracer_ is not None:
                tracer_.uninstall()
        losses.extend(history.history["loss"])
        return 1000 * elapsed / (len(batches) * epochs), medians

    names = list(variants)
    epochs = 1
    for name in names:  # warm-up: builds the train functions (traced for the traced model)
        fit(name)
    epochs = args.keras_epochs
    for round_ in range(args.keras_rounds):
        for name in names[round_ % 2:] + names[:round_ % 2]:
            ms, medians = fit(name)
            medians.append(ms)
    untraced, traced = (variants[name] for name in names)
    print(json.dumps({
        "rows": {name: variants[name][2] for name in names},
        "loss_difference": max(abs(a - b) for a, b in zip(untraced[3], traced[3])),
        "records": len(tracer.records), "runs": tracer.runs,
        "summary": tracer.summary()}))


def run_keras(args):
    command = [sys.executable, os.path.abspath(__file__), "--keras-child",
               "--inputs", str(args.inputs), "--units", str(args.units),
               "--classes", str(args.classes), "--batch-size", str(args.batch_size),
               "--batches", str(args.batches), "--learning-rate", str(args.learning_rate),
               "--seed", str(args.seed), "--keras-rounds", str(args.keras_rounds),
               "--keras-epochs", str(args.keras_epochs)]
    if args.inputs_every is not None:
        command += ["--inputs-every", str(args.inputs_every)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        print(f"Keras variant failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        return None
    return json.loads(lines[-1])


def describe(name, medians, reference=None):
    median = statistics.median(medians)
    spread = f"{min(medians):.3f}-{max(medians):.3f}"
    ratio = "" if reference is None else f"{median / statistics.median(reference):.3f}"
    return f"| {name} | {median:.3f} | {spread} | {len(medians)} | {ratio} |"


def main(argv=None):
    args = parse_arguments(argv)
    if args.keras_child:
        keras_child(args)
        return 0
    import tensorflow as tf

    from bnrepro.graphs.tracer import Tracer

    print("command: python " + " ".join([os.path.relpath(__file__), *(sys.argv[1:] if argv is None
                                                                     else argv)]))
    print(f"TensorFlow {tf.__version__}, NumPy {np.__version__}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"net {args.inputs}-{args.units}-{args.classes}, batch {args.batch_size}, "
          f"{args.rounds} rounds x {args.steps} steps per variant after {args.warmup} warm-up steps")
    batches = make_batches(args)
    programs = [Program("a untraced", args, batches),
                Program("b traced, in memory", args, batches,
                        Tracer(inputs_every=args.inputs_every)),
                Program("c traced + written", args, batches,
                        Tracer(inputs_every=args.inputs_every))]
    started = time.perf_counter()
    for program in programs:
        program.steps(args.warmup, timed=False)
    for round_ in range(args.rounds):
        shift = round_ % len(programs)
        for program in programs[shift:] + programs[:shift]:
            program.steps(args.steps, timed=True)
    timed_seconds = time.perf_counter() - started
    for program in programs:
        program.loss_steps(args.loss_steps)

    untraced, traced, written = programs
    directory = tempfile.mkdtemp(prefix="tracer_overhead_")
    try:
        start = time.perf_counter()
        written.tracer.write(directory)
        write_seconds = time.perf_counter() - start
        written_bytes = sum(os.path.getsize(os.path.join(directory, name))
                            for name in os.listdir(directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    print(f"\ntimed steps took {timed_seconds:.1f} s; ms per `session.run(train_op, feed)` step, "
          "median over rounds of each round's median:\n")
    print("| variant | median ms/step | round medians | rounds | ratio to a |")
    print("| --- | ---: | --- | ---: | ---: |")
    for program in programs:
        print(describe(program.name, program.round_medians,
                       None if program is untraced else untraced.round_medians))
    per_round = [b / a for a, b in zip(untraced.round_medians, traced.round_medians)]
    ratio = statistics.median(traced.round_medians) / statistics.median(untraced.round_medians)
    keras = run_keras(args) if args.keras else None
    if keras is not None:
        names = list(keras["rows"])
        base = keras["rows"][names[0]]
        for name in names:
            print(describe(name + ", whole fit / batches", keras["rows"][name],
                           None if name == names[0] else base))
    steps = traced.cursor
    print(f"\nb / a = {ratio:.3f} (per-round ratios {', '.join(f'{r:.3f}' for r in per_round)}; "
          f"their median {statistics.median(per_round):.3f}); target <= {TARGET}: "
          f"{'met' if ratio <= TARGET else 'NOT met'}")
    extra_ms = statistics.median(traced.round_medians) - statistics.median(untraced.round_medians)
    print(f"tracing adds {extra_ms:.3f} ms per step")
    print(f"b kept {len(traced.tracer.records)} records of {steps} steps in memory: "
          f"{record_bytes(traced.tracer.records) / 2**20:.1f} MiB of arrays "
          f"({record_bytes(traced.tracer.records) / max(len(traced.tracer.records), 1) / 1024:.0f}"
          " KiB per record)")
    print(f"c: writing its trace ({len(written.tracer.records)} records) took {write_seconds:.2f} s "
          f"({1000 * write_seconds / max(len(written.tracer.records), 1):.2f} ms per record, "
          f"{written_bytes / 2**20:.1f} MiB on disk), not in the step times above")
    if keras is not None:
        names = list(keras["rows"])
        keras_ratio = statistics.median(keras["rows"][names[1]]) / statistics.median(
            keras["rows"][names[0]])
        print(f"d: traced / untraced Keras fit = {keras_ratio:.3f}; {keras['records']} records "
              f"of {keras['runs']} runs; largest loss difference {keras['loss_difference']:.3g}")

    print("\nsame results (traced against untraced, 0 expected):")
    for program in (traced, written):
        found = largest_difference(program, untraced)
        print(f"  {program.name}: largest difference of the initial variables {found['initial']:.3g}, "
              f"of {found['loss_count']} training losses "
              f"{found['losses']:.3g}, of every variable after training {found['variables']:.3g}, "
              f"of the inference-mode loss {found['test_loss']:.3g}")

    if args.profile:
        print(f"\nwhere a traced step's time goes (variant b, {args.profile} steps, median ms):\n")
        rows = breakdown(traced, args.profile)
        if rows:
            print("| part | median ms | share of a |")
            print("| --- | ---: | ---: |")
            for name, ms in rows:
                print(f"| {name} | {ms:.3f} | {ms / rows[0][1]:.1%} |")
        print(f"\ncProfile of {args.profile} traced steps (variant b):\n")
        print(profile_steps(traced, args.profile, args.profile_lines))
    for program in programs:
        program.session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
