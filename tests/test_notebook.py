"""The walkthrough notebook runs top to bottom in a fresh kernel, its committed outputs are not
stale (re-executing it prints the same text, and the same numbers to the printed precision), and
running it leaves nothing behind.

"The printed precision" allows for the CPU and the thread schedule: TensorFlow's kernels round
differently on different instruction sets, so a number printed to k decimals (k significant digits
in e-notation) can come out one unit different in its last printed place (a loss printed 0.3149 on
one machine and 0.3150 on another), and a float32 printed in full can differ in its last few bits
(post 000's gamma printed 0.98339564 and 0.9833956, beta 0.12067806 and 0.12067804).
:func:`same_number` reads how many digits each side was printed with and allows one unit in the
last printed place of the coarser side, plus :data:`FLOAT32_ULPS` float32 units in the last place
of the number; integers printed without a decimal point (step counts, values counted) must be
equal. Measured rounding errors (both sides below :data:`ROUNDOFF`, e.g. verify's "max abs err
5.96e-08") only have to stay rounding errors. Everything else, the words, the layout and every
larger difference, must be as committed."""
import copy
import importlib.util
import os
import re
import tempfile
from decimal import Decimal

import nbformat
import numpy as np
import pytest

from bnrepro.check.tolerances import FLOAT32_ULPS_ACROSS_CPUS

NOTEBOOKS = os.path.join(os.path.dirname(__file__), "..", "notebooks")
NOTEBOOK = os.path.join(NOTEBOOKS, "walkthrough.ipynb")
WORKDIR_PREFIX = "walkthrough-"  # the notebook's tempfile.mkdtemp(prefix=...)
WORKDIR = re.compile(r"(?:/[^/\s]+)*/" + WORKDIR_PREFIX + r"[^/\s]+")
# Parts of the output that legitimately change: the notebook's temporary working directory, and in
# the NumPy reference's step table (step, TF loss, NumPy loss, max abs err, max rel err, worst
# variable) the variable with the largest rounding error, which depends on the CPU like the errors.
# verify's "of bound" column and its summary's "the largest error is 0.23 of its bound" are ratios of
# a measured rounding error to its bound: rounding errors too (that they stay below 1 is the verdict,
# which is compared).
VOLATILE = [(WORKDIR, "WORKDIR"),
            (re.compile(r"(?m)^(\s*\d+(?:\s+[-+.\de]+){4}\s+)\S+$"), r"\1VARIABLE"),
            (re.compile(r"(?m)^(.*\s\d+(?:\s+[-+.\de]+){2}\s+)[-+.\de]+(\s+ok)$"), r"\1RATIO\2"),
            (re.compile(r"largest error is [-+.\de]+ of its bound"), "largest error is RATIO of its bound")]
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
# TensorFlow's kernels on another CPU or thread schedule, summing in another order, leave a float32
# within FLOAT32_ULPS_ACROSS_CPUS units in its last place (ulps) of where this machine's land, so
# two executions are within twice that of each other (1 to 3 ulps seen here). 8 ulps are at most
# 9.5e-7 relative, far below the smallest real change the notebook shows (post 000's bn1 with
# epsilon 1e-5 instead of 1e-3: 1.1e-3).
FLOAT32_ULPS = 2 * FLOAT32_ULPS_ACROSS_CPUS
ROUNDOFF = Decimal("1e-3")  # verify's / reference's error figures (they pass below 1e-5 relative)


def output_text(cell):
    """The text a code cell printed or displayed (images are left out), as it printed it."""
    parts = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream" and output["name"] == "stdout":
            parts.append(output["text"])
        elif output["output_type"] in ("execute_result", "display_data"):
            parts.append(output.get("data", {}).get("text/plain", "") if "image/png" not in
                         output.get("data", {}) else "")
        elif output["output_type"] == "error":
            parts.append(f"ERROR {output['ename']}: {output['evalue']}")
    return "".join(parts)


def printed_text(cell):
    """:func:`output_text` with the parts that legitimately change (:data:`VOLATILE`) replaced."""
    text = output_text(cell)
    for pattern, replacement in VOLATILE:
        text = pattern.sub(replacement, text)
    return text


def load_builder():
    """``notebooks/build_walkthrough.py``, which builds the notebook and executes it."""
    spec = importlib.util.spec_from_file_location(
        "build_walkthrough", os.path.join(NOTEBOOKS, "build_walkthrough.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def working_directories():
    """The notebook's working directories in the system's temporary directory."""
    temporary = tempfile.gettempdir()
    return {name for name in os.listdir(temporary) if name.startswith(WORKDIR_PREFIX)
            and os.path.isdir(os.path.join(temporary, name))}


@pytest.fixture(scope="module")
def notebooks():
    """The committed notebook, a copy executed as ``build_walkthrough.py`` executes it, and the
    working directories the execution left in the system's temporary directory."""
    committed = nbformat.read(NOTEBOOK, as_version=4)
    before = working_directories()
    executed = load_builder().execute(copy.deepcopy(committed))
    return committed, executed, working_directories() - before


def test_runs_without_errors_and_has_pictures(notebooks):
    _, executed, _ = notebooks
    code_cells = [cell for cell in executed.cells if cell.cell_type == "code"]
    assert all(not any(o["output_type"] == "error" for o in cell.outputs) for cell in code_cells)
    images = [o for cell in code_cells for o in cell.outputs if "image/png" in o.get("data", {})]
    assert images, "the notebook should show its figures"


def test_leaves_no_working_directory_behind(notebooks):
    """The notebook writes about 26 MB of traces and figures to ``tempfile.mkdtemp(prefix=
    "walkthrough-")``; executed by the test (or the build), all of it is removed afterwards."""
    _, executed, left_behind = notebooks
    assert not left_behind, f"left in {tempfile.gettempdir()}: {sorted(left_behind)}"
    used = {match for cell in executed.cells if cell.cell_type == "code"
            for match in WORKDIR.findall(output_text(cell))}
    assert used, "the notebook should print where its traces are"
    assert not [path for path in used if os.path.exists(path)]


def words_and_numbers(text):
    """``text`` with every number replaced by ``#`` and blanks left out (NumPy and the tables pad
    to the longest number), and the numbers as printed."""
    return re.sub(r"[ \t]+", "", NUMBER.sub("#", text)), NUMBER.findall(text)


def last_place(printed):
    """One unit in the last place of the number ``printed``: 0.001 for "0.315", 0.0001 for "0.3150",
    1e-10 for "5.96e-08"; 0 for an integer ("105"), which is exact, and for NumPy's whole float32
    ("1.", "1.e-05"), which is exactly what it says."""
    mantissa = re.split("[eE]", printed)[0]
    if mantissa.endswith(".") or ("." not in mantissa and mantissa == printed):
        return Decimal(0)
    return Decimal(1).scaleb(Decimal(printed).as_tuple().exponent)


def same_number(committed, executed):
    """Whether two printed numbers (their text) are the same number to the printed precision: one
    unit in the last printed place of the coarser, plus :data:`FLOAT32_ULPS` float32 units in the
    last place unless both are integers; measured rounding errors (both below :data:`ROUNDOFF`)
    always agree."""
    old, new = Decimal(committed), Decimal(executed)
    if abs(old) < ROUNDOFF and abs(new) < ROUNDOFF:
        return True
    allowed = max(last_place(committed), last_place(executed))
    if re.search(r"[.eE]", committed + executed):
        ulp = float(np.spacing(np.float32(max(abs(old), abs(new)))))
        allowed += FLOAT32_ULPS * Decimal(ulp)
    return abs(new - old) <= allowed


@pytest.mark.parametrize("committed, executed, same", [
    ("0.3149", "0.3150", True),  # a loss printed to 4 decimals, one unit apart (code cell 16)
    ("0.3149", "0.315", True),  # ... and against 3 decimals: one unit of the coarser, 0.001
    ("0.3149", "0.3151", False),  # two units
    ("0.907", "0.906", True),  # one unit of 3 decimals: rounding, as far as the printout can tell
    ("0.941", "0.939", False),  # an accuracy printed to 3 decimals, two units apart
    ("0.9070", "0.9080", False),  # the notebook's accuracies: 4 decimals, one test example of 1000
    ("105", "106", False),  # step counts are exact
    ("38400", "38401", False),  # so are counted values, however large
    ("1.", "2.", False),  # NumPy's whole float32: exact, not "one unit of 0 decimals"
    ("1.", "0.99999994", True),  # ... but a float32: one ulp below 1
    ("0.98339564", "0.9833956", True),  # post 000's gamma on two CPUs
    ("0.12067806", "0.12067804", True),  # its beta: two units of the 8th decimal, 2.7 ulps
    ("1.0949917", "1.0949918", True),  # its bn1[0]
    ("1.0949917", "1.09616", False),  # bn1[0] with epsilon 1e-5 instead of 1e-3
    ("0.6999712586402893", "0.6999713", True),  # a float32 printed through float64
    ("0.6999712586402893", "0.6999742586402893", False),  # 50 ulps: a change
    ("2.39e-02", "2.40e-02", True),  # 3 significant digits, one unit
    ("2.39e-02", "2.41e-02", False),
    ("5.96e-08", "1.19e-07", True),  # measured rounding errors: both below ROUNDOFF
    ("0", "5.96e-08", True),  # an error of 0 on one CPU
    ("0.183", "0.0991", False),  # an error that is not a rounding error changed
])
def test_number_comparison_tells_rounding_from_change(committed, executed, same):
    assert same_number(committed, executed) is same
    assert same_number(executed, committed) is same


def test_volatile_parts_and_numbers_are_found():
    assert printed_text({"outputs": [{"output_type": "stream", "name": "stdout", "text":
        "   7    0.5527212   0.55272127     1.15e-07     9.68e-08  batch_normalization/gamma:0"}]}
    ).endswith("9.68e-08  VARIABLE")
    for path in ("/tmp/walkthrough-4akc_p7w", "/tmp/bnrepro-notebook-x1/walkthrough-a_b"):
        assert printed_text({"outputs": [{"output_type": "stream", "name": "stdout", "text":
            f"verify {path}/cubic/trace.jsonl"}]}) == "verify WORKDIR/cubic/trace.jsonl"
    verify_row = "batch_variance from inputs             384     1.38e-07     2.04e-07    0.0079  ok"
    assert printed_text({"outputs": [{"output_type": "stream", "name": "stdout", "text":
        verify_row}]}).endswith("2.04e-07    RATIO  ok")
    assert printed_text({"outputs": [{"output_type": "stream", "name": "stdout", "text":
        "PASS: every recorded value is within its float32 rounding bound (the largest error is "
        "0.23 of its bound)"}]}).endswith("(the largest error is RATIO of its bound)")
    assert words_and_numbers("[[1.0949917]\n [1.638361 ]] step 10 [1.]") == (
        "[[#]\n[#]]step#[#]", ["1.0949917", "1.638361", "10", "1."])


def test_committed_outputs_are_not_stale(notebooks):
    committed, executed, _ = notebooks
    committed_cells = [c for c in committed.cells if c.cell_type == "code"]
    executed_cells = [c for c in executed.cells if c.cell_type == "code"]
    assert len(committed_cells) == len(executed_cells)
    for number, (old, new) in enumerate(zip(committed_cells, executed_cells)):
        assert old.source == new.source
        old_words, old_numbers = words_and_numbers(printed_text(old))
        new_words, new_numbers = words_and_numbers(printed_text(new))
        assert old_words == new_words, f"code cell {number} printed something else"
        changed = [(a, b) for a, b in zip(old_numbers, new_numbers) if not same_number(a, b)]
        assert not changed, f"code cell {number}: numbers changed (committed, now): {changed[:5]}"
    assert any(printed_text(c) for c in committed_cells), "the committed notebook has no outputs"
