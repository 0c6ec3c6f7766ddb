"""``bnrepro verify`` of a long trace: read a block at a time (``open_trace``), the common steps
checked with one array row per step, the same report as one step at a time from a trace in
memory, and memory that does not grow with the steps.

The traces are written here with :class:`~bnrepro.trace.TraceWriter` from a float32 simulation of
two batch-norm layers trained for many steps (the update as TensorFlow computes it,
``old - (old - batch) * float32(1 - momentum)``), independent of bnrepro's formulas; a few steps keep
the layer's input, the others only the batch statistics, so both paths of verify run.
"""
import tracemalloc

import numpy as np
import pytest

from bnrepro.check.explain import explain_step
from bnrepro.check.verify import verify_trace
from bnrepro.errors import UserError
from bnrepro.cli import EXIT_FAILED, main
from bnrepro.trace import FORMAT_2, TraceWriter, open_trace, read_trace

LAYERS = ("bn1", "bn2")
CHANNELS = 8
BATCH = 16
MOMENTUM = 0.99
INPUT_STEPS = {1, 2, 3, 300}  # the steps that keep the layer's input


def _header():
    layer = {"momentum": MOMENTUM, "epsilon": 1e-3, "fused": False, "zero_debias": False,
             "kind": "batch norm (simulated)", "convention": "biased (/N) variance averaged"}
    return {"format": FORMAT_2, "scenario": "simulated", "config": {},
            "layers": {name: dict(layer) for name in LAYERS}, "averages": {}}


def write_run(directory, steps, *, change=None, seed=0):
    """A trace of ``steps`` training steps (and the initial state, step 0); ``change(step, layer,
    state)`` may alter a layer's recorded state before it is written. Returns the directory."""
    generator = np.random.default_rng(seed)
    decay = np.float32(1.0 - MOMENTUM)
    state = {name: {"moving_mean": np.zeros(CHANNELS, np.float32),
                    "moving_variance": np.ones(CHANNELS, np.float32),
                    "gamma": np.ones(CHANNELS, np.float32),
                    "beta": np.zeros(CHANNELS, np.float32)} for name in LAYERS}
    directory.mkdir()
    writer = TraceWriter(str(directory), _header())
    writer.write_step({"step": 0, "bn": {name: dict(values) for name, values in state.items()},
                       "averages": {}})
    for step in range(1, steps + 1):
        layers = {}
        for number, name in enumerate(LAYERS):
            x = generator.normal(3.0 * number, 1.0 + number, (BATCH, CHANNELS)).astype(np.float32)
            mean = x.mean(axis=0, dtype=np.float32)
            variance = np.square(x - mean).mean(axis=0, dtype=np.float32)
            new = {name_: values.copy() for name_, values in state[name].items()}
            new["moving_mean"] = new["moving_mean"] - (new["moving_mean"] - mean) * decay
            new["moving_variance"] = (new["moving_variance"]
                                      - (new["moving_variance"] - variance) * decay)
            state[name] = new
            recorded = {**new, "batch_mean": mean, "batch_variance": variance, "trained": True}
            if step in INPUT_STEPS:
                recorded["batch_input"] = x
            if change is not None:
                change(step, name, recorded)
            layers[name] = recorded
        writer.write_step({"step": step, "run": {"trained": True, "moved": True}, "bn": layers,
                           "averages": {}})
    writer.finish("complete", last_step=steps)
    return directory


def _reports(directory):
    streamed = verify_trace(open_trace(str(directory)))
    one_by_one = verify_trace(read_trace(str(directory)), vectorised=False)
    return streamed, one_by_one


def test_a_long_run_passes_with_the_same_report_streamed_as_step_by_step(tmp_path):
    streamed, one_by_one = _reports(write_run(tmp_path / "run", 700))
    assert streamed.format() == one_by_one.format()
    assert streamed.passed, streamed.format()
    checks = {check.name: check for check in streamed.checks}
    assert checks["moving_mean update"].compared == 700 * len(LAYERS) * CHANNELS
    assert checks["batch_mean from inputs"].compared == len(INPUT_STEPS) * len(LAYERS) * CHANNELS
    assert "  moving_mean, moving_variance updates: 700 of 700 steps" in streamed.format()


@pytest.mark.parametrize("failing", [
    {"bn2": 400},  # in the second block of 256 records
    {"bn1": 500, "bn2": 400},  # the first layer's failure is named, as checked layer by layer
    {"bn1": 2},  # a step checked one by one (it keeps the input) before the common ones
])
def test_a_moving_mean_off_by_far_more_than_its_bound_fails_at_its_step(tmp_path, failing):
    def change(step, layer, state):
        if failing.get(layer) == step:
            state["moving_mean"] = state["moving_mean"].copy()
            state["moving_mean"][3] *= np.float32(1.0 + 1e-4)  # its bound: some 4e-7 relative
    streamed, one_by_one = _reports(write_run(tmp_path / "run", 600, change=change))
    assert streamed.format() == one_by_one.format()
    check = next(check for check in streamed.checks if check.name == "moving_mean update")
    layer = "bn1" if "bn1" in failing else "bn2"
    assert check.first_failure.startswith(f"step {failing[layer]}, layer {layer}, element (3,)")
    assert streamed.verdict().startswith("FAIL: moving_mean update")


def test_a_training_step_whose_statistics_did_not_move_fails(tmp_path):
    held = {}

    def change(step, layer, state):
        if layer == "bn2" and step == 349:
            held.update(moving_mean=state["moving_mean"], moving_variance=state["moving_variance"])
        if layer == "bn2" and step == 350:
            state.update(held)  # the state after step 349 again, as if the update had not run
    streamed, one_by_one = _reports(write_run(tmp_path / "run", 400, change=change))
    assert streamed.format() == one_by_one.format()
    moves = next(check for check in streamed.checks if check.name == "statistics move when training")
    assert moves.first_failure.startswith("step 350, layer bn2: the run trained")


def test_verify_of_a_cut_short_long_run_is_incomplete_at_its_last_step(tmp_path):
    directory = write_run(tmp_path / "run", 300)
    lines = (directory / "trace.jsonl").read_text().splitlines(keepends=True)
    (directory / "trace.jsonl").write_text("".join(lines[:-2]))  # step 300 and the end line gone
    report = verify_trace(open_trace(str(directory)))
    assert report.verdict().startswith("INCOMPLETE: the trace has no end line after step 299")
    assert main(["verify", str(directory)]) == EXIT_FAILED


def _peak_bytes(function):
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_verify_memory_does_not_grow_with_the_steps(tmp_path, capsys):
    short, long = write_run(tmp_path / "short", 600), write_run(tmp_path / "long", 2400, seed=1)
    streamed = [_peak_bytes(lambda d=d: verify_trace(open_trace(str(d)))) for d in (short, long)]
    in_memory = [_peak_bytes(lambda d=d: verify_trace(read_trace(str(d)))) for d in (short, long)]
    # the records of 1,800 more steps held in memory: this test could see a growth
    assert in_memory[1] - in_memory[0] > 5e6
    assert streamed[1] - streamed[0] < 5e5, streamed
    assert main(["verify", str(long)]) == 0
    assert "PASS" in capsys.readouterr().out


def test_a_streamed_trace_refuses_what_needs_its_records_in_memory(tmp_path):
    trace = open_trace(str(write_run(tmp_path / "run", 3)))
    assert len(trace.steps) == 4
    with pytest.raises(TypeError, match="read_trace"):
        trace.step(2)
    loaded = trace.loaded()
    assert loaded.before(loaded.step(2), "bn1")["step"] == 1


def test_explain_reads_a_streamed_trace_up_to_its_step(tmp_path):
    directory = str(write_run(tmp_path / "run", 300))
    streamed, in_memory = open_trace(directory), read_trace(directory)
    for step, layer in ((1, "bn1"), (257, "bn2"), (300, "bn1")):
        assert explain_step(streamed, step, layer, 2) == explain_step(in_memory, step, layer, 2)
    for trace in (streamed, in_memory):
        with pytest.raises(UserError, match=r"step 301 is not a training step .*\(traced steps: "
                                            r"1\.\.300\)"):
            explain_step(trace, 301)


def write_average_run(directory, steps, *, change=None, momentum=0.999):
    """A trace of an average that pairs with no other (an ExponentialMovingAverage of a (3, 4)
    weight), ``steps`` updates ``shadow - (shadow - w) * float32(1 - momentum)`` in float32; every
    10th step records its momentum (computed at run time: checked one by one)."""
    generator = np.random.default_rng(2)
    header = {"format": FORMAT_2, "scenario": "simulated", "config": {}, "layers": {},
              "averages": {"ema/w": {"momentum": momentum, "zero_debias": False,
                                     "kind": "ExponentialMovingAverage (simulated)",
                                     "convention": "momentum * old + (1 - momentum) * value"}}}
    directory.mkdir()
    writer = TraceWriter(str(directory), header)
    shadow = np.zeros((3, 4), np.float32)
    writer.write_step({"step": 0, "bn": {}, "averages": {"ema/w": {"value": shadow}}})
    decay = np.float32(1.0 - momentum)
    for step in range(1, steps + 1):
        weight = generator.normal(0.5, 0.1, (3, 4)).astype(np.float32)
        shadow = shadow - (shadow - weight) * decay
        state = {"value": shadow, "consumed": weight}
        if step % 10 == 0:
            state["momentum"] = momentum
        if change is not None:
            change(step, state)
        writer.write_step({"step": step, "run": {"trained": True, "moved": True}, "bn": {},
                           "averages": {"ema/w": state}})
    writer.finish("complete", last_step=steps)
    return directory


def test_an_average_of_its_own_streamed_as_step_by_step(tmp_path):
    def change(step, state):
        if step == 333:
            state["value"] = state["value"] + np.float32(1e-4)
    for name, altered in (("clean", None), ("altered", change)):
        streamed, one_by_one = _reports(write_average_run(tmp_path / name, 500, change=altered))
        assert streamed.format() == one_by_one.format()
        check = next(check for check in streamed.checks if check.name == "moving average update")
        assert check.compared == 500 * 12
        if altered is None:
            assert streamed.passed, streamed.format()
        else:
            assert check.first_failure.startswith("step 333, average ema/w, element (0, 0)")


def test_blocks_are_cut_by_their_arrays_bytes_too(tmp_path, monkeypatch):
    """Records with large arrays (a ResNet's layer inputs) make blocks of fewer records, so a block
    never holds many of them; the report is the same whatever the blocks."""
    from bnrepro.trace import reader

    directory = write_run(tmp_path / "run", 40)
    whole = verify_trace(open_trace(str(directory))).format()
    monkeypatch.setattr(reader, "BLOCK_BYTES", 2 * CHANNELS * 8 * 4 + 1)  # about one record
    blocks = [len(block) for block in open_trace(str(directory)).blocks()]
    assert max(blocks) <= 2 and sum(blocks) == 41
    assert verify_trace(open_trace(str(directory))).format() == whole
