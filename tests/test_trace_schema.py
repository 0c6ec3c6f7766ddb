"""bnrepro/trace/schema.json documents the bnrepro-trace/1 and /2 formats: it is a valid JSON Schema,
every line of every trace bnrepro writes (bnrepro-trace/2) validates against it, it agrees with the
reader's constants, and it rejects what the reader rejects."""
import json
import os

import jsonschema
import pytest

import bnrepro
from bnrepro.trace import BATCH_STATISTICS, FORMAT, FORMATS, LAYER_STATE, read_trace

SCHEMA_PATH = os.path.join(os.path.dirname(bnrepro.__file__), "trace", "schema.json")


@pytest.fixture(scope="module")
def validator():
    with open(SCHEMA_PATH, encoding="utf-8") as handle:
        schema = json.load(handle)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _lines(trace):
    with open(trace.path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@pytest.mark.parametrize("name, overrides", [
    ("cubic", {}), ("two-sample", {"hidden_kernel_init": 1.4059724, "output_kernel_init": -0.284}),
    ("fused-variance", {}), ("ghost-batch", {}), ("renorm", {}), ("training-not-fed", {}),
])
def test_every_line_bnrepro_writes_validates(validator, scenario_trace, name, overrides):
    lines = _lines(scenario_trace(name, **overrides))
    for number, line in enumerate(lines, start=1):
        errors = [error.message for error in validator.iter_errors(line)]
        assert not errors, f"line {number}: {errors[:3]}"
    defs = validator.schema["$defs"]
    assert jsonschema.Draft202012Validator({"$ref": "#/$defs/header", "$defs": defs}).is_valid(lines[0])
    assert lines[0]["format"] == "bnrepro-trace/2"
    step = jsonschema.Draft202012Validator({"$ref": "#/$defs/step2", "$defs": defs})
    assert all(step.is_valid(line) for line in lines[1:-1])
    end = jsonschema.Draft202012Validator({"$ref": "#/$defs/end", "$defs": defs})
    assert end.is_valid(lines[-1]) and not step.is_valid(lines[-1])


def test_schema_agrees_with_the_reader(validator):
    defs = validator.schema["$defs"]
    assert defs["header"]["properties"]["format"]["enum"] == list(FORMATS)
    assert set(defs["layer_state"]["required"]) == set(LAYER_STATE)
    assert set(BATCH_STATISTICS) <= set(defs["layer_state"]["properties"])


HEADER = {"format": FORMAT, "layers": {"bn": {"momentum": 0.9, "epsilon": 0.001}}}
STATE = {"moving_mean": [0.0], "moving_variance": [1.0], "gamma": [1.0], "beta": [0.0]}


@pytest.mark.parametrize("document", [
    dict(HEADER, format="bnrepro-trace/9"),
    {"format": FORMAT},  # no layers
    dict(HEADER, layers={"bn": {"momentum": 1.5, "epsilon": 0.001}}),
    dict(HEADER, layers={"bn": {"momentum": 0.9, "epsilon": 0.0}}),
    {"step": 0, "bn": {"bn": {k: v for k, v in STATE.items() if k != "moving_mean"}}},
    {"step": 0, "bn": {"bn": dict(STATE, gamma=["one"])}},
    {"step": -1, "bn": {"bn": STATE}},
    {"step": 1, "bn": {"bn": STATE}, "inference": {"bn": {"input": [[1.0]]}}},
    {"bn": {"bn": STATE}},  # no step number
    {"end": {"status": "finished", "last_step": 1, "records": 2}},
    {"end": {"status": "complete", "last_step": 1}},
], ids=["other-version", "no-layers", "momentum-above-1", "zero-epsilon", "no-moving-mean",
        "string-in-tensor", "negative-step", "inference-without-output", "no-step",
        "end-unknown-status", "end-without-records"])
def test_schema_rejects_malformed_lines(validator, document):
    assert not validator.is_valid(document)


def _layer(**mode):
    return dict(HEADER, layers={"bn": {"momentum": 0.9, "epsilon": 0.001, **mode}})


MODE_HEADERS_ACCEPTED = [
    _layer(virtual_batch_size=2), _layer(virtual_batch_size=4, ghost_layout="contiguous"),
    _layer(renorm={"momentum": 0.99}), _layer(renorm={"momentum": 0.9, "clipping": {"dmax": 0.5}}),
    _layer(virtual_batch_size=2, renorm={"momentum": 0.9, "clipping": {"rmin": 0.5, "rmax": 2}}),
]
MODE_HEADERS_REJECTED = [
    _layer(virtual_batch_size=0), _layer(virtual_batch_size=2.5), _layer(virtual_batch_size="2"),
    _layer(virtual_batch_size=2, ghost_layout="diagonal"), _layer(renorm=True),
    _layer(renorm={"clipping": {}}), _layer(renorm={"momentum": 0.9, "clipping": {"r": 1.0}}),
    _layer(renorm={"momentum": 0.9, "clipping": {"rmax": "1.5"}}),
]


@pytest.mark.parametrize("document", MODE_HEADERS_ACCEPTED)
def test_mode_declarations_the_schema_and_verify_accept(validator, document):
    from bnrepro.check.layer_modes import LayerMode

    assert validator.is_valid(document)
    mode = LayerMode.from_header(document["layers"]["bn"], "bn")
    assert not mode.standard
    entry = {"momentum": 0.9, "epsilon": 0.001, **mode.header_entry()}
    assert validator.is_valid(dict(HEADER, layers={"bn": entry}))  # what bnrepro writes back


@pytest.mark.parametrize("document", MODE_HEADERS_REJECTED)
def test_mode_declarations_the_schema_and_verify_reject(validator, document):
    from bnrepro.errors import UserError
    from bnrepro.check.layer_modes import LayerMode

    assert not validator.is_valid(document)
    with pytest.raises(UserError, match="header layer 'bn'"):
        LayerMode.from_header(document["layers"]["bn"], "bn")


def test_a_minimal_hand_written_trace_validates_and_reads(validator, tmp_path):
    """What another program must write at the least: a header, steps with the layer state, and the
    end line (without it the trace reads, but verify says it may be cut short)."""
    from bnrepro.check.verify import verify_trace

    lines = [HEADER, {"step": 0, "bn": {"bn": STATE}},
             {"step": 1, "bn": {"bn": dict(STATE, moving_mean=[0.1], batch_mean=[1.0],
                                           batch_variance=[1.0])}},
             {"end": {"status": "complete", "last_step": 1, "records": 2}}]
    assert all(validator.is_valid(line) for line in lines)
    path = tmp_path / "trace.jsonl"
    for written, ending in ((lines, {"status": "complete", "last_step": 1, "records": 2}),
                            (lines[:-1], None)):
        path.write_text("\n".join(json.dumps(line) for line in written) + "\n", encoding="utf-8")
        trace = read_trace(str(path))
        assert [record["step"] for record in trace.steps] == [0, 1] and trace.end == ending
        assert verify_trace(trace).passed == (ending is not None)


def test_every_line_bnrepro_trace_writes_validates(validator, tmp_path):
    """A bnrepro-trace/2 trace (``bnrepro.tracing`` around a program's session code: one layer
    from ``tf.compat.v1.layers``, one ``tf.assign`` average) validates line by line, as step2."""
    import bnrepro
    from bnrepro.graphs.tfv1 import tf, tf1

    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, (None, 2))
        normalized = tf1.layers.batch_normalization(x, training=True, momentum=0.75)
        running = tf1.Variable(tf.zeros([2]), trainable=False, name="running")
        update = tf1.assign(running, running * 0.5 + tf.reduce_mean(x, 0) * 0.5)
        with bnrepro.tracing(str(tmp_path / "out")):
            with tf1.Session() as session:
                session.run(tf1.global_variables_initializer())
                for value in (1.0, 3.0):
                    session.run([normalized, update, tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)],
                                {x: [[value, 0.0], [value + 2.0, 1.0]]})
    with open(tmp_path / "out" / "trace.jsonl", encoding="utf-8") as handle:
        lines = [json.loads(line) for line in handle]
    # the header (streamed before the graph ran), the declaration of what was found, 3 steps, end
    assert lines[0]["format"] == "bnrepro-trace/2" and len(lines) == 1 + 1 + 3 + 1
    defs = validator.schema["$defs"]
    step2 = jsonschema.Draft202012Validator({"$ref": "#/$defs/step2", "$defs": defs})
    declaration = jsonschema.Draft202012Validator({"$ref": "#/$defs/declaration", "$defs": defs})
    for number, line in enumerate(lines, start=1):
        errors = [error.message for error in validator.iter_errors(line)]
        assert not errors, f"line {number}: {errors[:3]}"
    assert declaration.is_valid(lines[1]) and not step2.is_valid(lines[1])
    assert sorted(lines[1]["declare"]["averages"]) == ["running"]
    assert all(step2.is_valid(line) for line in lines[2:-1])
    assert lines[3]["averages"]["running"]["value"] == {"row": 1}  # in trace_arrays/000001.npz
    assert bnrepro.read_trace(str(tmp_path / "out")).steps[1]["averages"]["running"][
        "value"].tolist() == [1.0, 0.25]  # 0.5 * 0 + 0.5 * mean


def test_a_streamed_trace_with_declarations_validates_and_reads(validator, tmp_path):
    """``bnrepro.tracing`` streams its header before any graph exists: the layers come in
    declaration lines, and a graph first read after step 0 was written declares its initial state,
    which the reader joins to step 0 (its statistics start from it: verify passes)."""
    import bnrepro
    from bnrepro.check.verify import verify_trace
    from bnrepro.graphs.tfv1 import tf, tf1

    def graph_with_a_layer(name):
        graph = tf.Graph()
        with graph.as_default():
            x = tf1.placeholder(tf.float32, (None, 2))
            tf1.layers.batch_normalization(x, training=True, momentum=0.5, name=name)
            return graph, x, tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)

    out = str(tmp_path / "out")
    with bnrepro.tracing(out):
        for name in ("first", "second"):  # the second graph runs after step 1 went out
            graph, x, updates = graph_with_a_layer(name)
            with graph.as_default(), tf1.Session() as session:
                session.run(tf1.global_variables_initializer())
                for step in range(3):
                    session.run(updates, {x: [[step, 1.0], [step + 2.0, 3.0]]})
    with open(os.path.join(out, "trace.jsonl"), encoding="utf-8") as handle:
        lines = [json.loads(line) for line in handle]
    for number, line in enumerate(lines, start=1):
        errors = [error.message for error in validator.iter_errors(line)]
        assert not errors, f"line {number}: {errors[:3]}"
    declarations = [line["declare"] for line in lines if "declare" in line]
    assert lines[0]["layers"] == {} and [sorted(d.get("layers", {})) for d in declarations] == [
        ["first"], ["graph2:second"]]
    initial = [line for line in lines if "declare" in line and "bn" in line]
    assert [sorted(line["bn"]) for line in initial] == [["graph2:second"]]
    trace = read_trace(out)
    assert sorted(trace.layers) == ["first", "graph2:second"]
    assert sorted(trace.steps[0]["bn"]) == ["first", "graph2:second"]
    assert [sorted(record["bn"]) for record in trace.steps[1:]] == [["first"]] * 3 + [
        ["graph2:second"]] * 3
    report = verify_trace(trace)
    assert report.passed, report.format()
