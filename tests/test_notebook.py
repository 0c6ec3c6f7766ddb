"""The walkthrough notebook runs top to bottom in a fresh kernel, and its committed outputs are not
stale: re-executing it prints the same text, and the same numbers to the printed precision.

"The printed precision" allows for the CPU: TensorFlow's kernels round differently on different
instruction sets, so two machines of this workplace (AMD with AVX2, and the one the notebook was
first executed on) printed post 000's gamma as 0.98339564 and 0.9833956, and bn1[0] as 1.0949918
and 1.0949917. A number therefore matches when it is within :data:`RELATIVE_TOLERANCE` of the
committed one, and measured rounding errors (both sides below :data:`ROUNDOFF`, e.g. verify's
"max abs err 5.96e-08") only have to stay rounding errors. Everything else, the words, the layout
and every larger number, must be as committed."""
import copy
import os
import re

import nbformat
import pytest

NOTEBOOK = os.path.join(os.path.dirname(__file__), "..", "notebooks", "walkthrough.ipynb")
# Parts of the output that legitimately change: temporary directories, and in the NumPy reference's
# step table (step, TF loss, NumPy loss, max abs err, max rel err, worst variable) the variable with
# the largest rounding error, which depends on the CPU like the errors themselves.
VOLATILE = [(re.compile(r"/tmp/walkthrough-[^/\s]+"), "WORKDIR"),
            (re.compile(r"(?m)^(\s*\d+(?:\s+[-+.\de]+){4}\s+)\S+$"), r"\1VARIABLE")]
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
RELATIVE_TOLERANCE = 2e-4  # float32 last digits; a test accuracy one example of 1000 off fails
ROUNDOFF = 1e-3  # the error figures of verify / reference (their pass bound is 1e-5 relative)


def printed_text(cell):
    """The text a code cell printed or displayed (images are left out)."""
    parts = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream" and output["name"] == "stdout":
            parts.append(output["text"])
        elif output["output_type"] in ("execute_result", "display_data"):
            parts.append(output.get("data", {}).get("text/plain", "") if "image/png" not in
                         output.get("data", {}) else "")
        elif output["output_type"] == "error":
            parts.append(f"ERROR {output['ename']}: {output['evalue']}")
    text = "".join(parts)
    for pattern, replacement in VOLATILE:
        text = pattern.sub(replacement, text)
    return text


@pytest.fixture(scope="module")
def notebooks():
    from nbclient import NotebookClient

    committed = nbformat.read(NOTEBOOK, as_version=4)
    executed = copy.deepcopy(committed)
    NotebookClient(executed, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}}).execute()
    return committed, executed


def test_runs_without_errors_and_has_pictures(notebooks):
    _, executed = notebooks
    code_cells = [cell for cell in executed.cells if cell.cell_type == "code"]
    assert all(not any(o["output_type"] == "error" for o in cell.outputs) for cell in code_cells)
    images = [o for cell in code_cells for o in cell.outputs if "image/png" in o.get("data", {})]
    assert images, "the notebook should show its figures"


def words_and_numbers(text):
    """``text`` with every number replaced by ``#`` and blanks left out (NumPy and the tables pad
    to the longest number), and the numbers."""
    numbers = [float(item) for item in NUMBER.findall(text)]
    return re.sub(r"[ \t]+", "", NUMBER.sub("#", text)), numbers


def same_number(committed, executed):
    if abs(committed) < ROUNDOFF and abs(executed) < ROUNDOFF:
        return True
    return abs(executed - committed) <= RELATIVE_TOLERANCE * abs(committed)


def test_number_comparison_tells_rounding_from_change():
    assert same_number(0.98339564, 0.9833956) and same_number(5.96e-08, 1.19e-07)
    assert not same_number(1.0949917, 1.09616)  # post 000's bn1 with epsilon 1e-5
    assert not same_number(0.907, 0.906) and not same_number(105, 106)
    assert printed_text({"outputs": [{"output_type": "stream", "name": "stdout", "text":
        "   7    0.5527212   0.55272127     1.15e-07     9.68e-08  batch_normalization/gamma:0"}]}
    ).endswith("9.68e-08  VARIABLE")
    assert words_and_numbers("[[1.0949917]\n [1.638361 ]] step 10") == (
        "[[#]\n[#]]step#", [1.0949917, 1.638361, 10.0])


def test_committed_outputs_are_not_stale(notebooks):
    committed, executed = notebooks
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
