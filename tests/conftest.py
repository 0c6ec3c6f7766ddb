"""Traces shared by the tests: each scenario is trained once per test session (TensorFlow graphs cost
about a second each after the ~4 s import)."""
import concurrent.futures
import os
import subprocess
import sys

import pytest

from bnrepro.reproduce import POST_SETTINGS


def _run(tmp_path_factory, scenario_name, **overrides):
    from bnrepro.scenarios import get_scenario, run_scenario
    from bnrepro.trace import read_trace

    scenario = get_scenario(scenario_name)
    out = tmp_path_factory.mktemp(scenario_name) / "run"
    path = run_scenario(scenario_name, scenario.config_type(**overrides), str(out), write=None)
    return read_trace(path)


@pytest.fixture(scope="session")
def cubic_trace(tmp_path_factory):
    """Post 000 with the post's settings."""
    return _run(tmp_path_factory, "cubic", **POST_SETTINGS["cubic"])


@pytest.fixture(scope="session")
def two_sample_trace(tmp_path_factory):
    """Post 001 with the kernels that reproduce its printout."""
    return _run(tmp_path_factory, "two-sample", **POST_SETTINGS["two-sample"])


@pytest.fixture(scope="session")
def two_sample_long_trace(tmp_path_factory):
    """Post 001's net, random kernels, five steps on the same batch."""
    return _run(tmp_path_factory, "two-sample", steps=5, seed=3)


@pytest.fixture(scope="session")
def scenario_trace(tmp_path_factory):
    """``scenario_trace(name, **overrides)``: the trace of any scenario, trained once per session
    for each distinct setting (the pitfalls' and diagnosis' tests share them)."""
    cache = {}

    def get(name, **overrides):
        key = (name, tuple(sorted(overrides.items())))
        if key not in cache:
            cache[key] = _run(tmp_path_factory, name, **overrides)
        return cache[key]

    return get


GRAPH_MODES = ["v2", "graph"]  # disable_v2_behavior(), and disable_eager_execution() alone
VERIFY_PROGRAMS = os.path.join(os.path.dirname(__file__), "verify_programs")
VERIFY_PROGRAM_NAMES = [
    "epsilon_unknown", "two_decays", "subnormal_inputs", "keras_fused_conv", "keras_momentum_zero",
    "nothing_found", "shared_layer", "shared_layer_unordered", "tight_statistics"]


def _trace_programs(mode, out):
    environment = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, os.path.join(VERIFY_PROGRAMS, "trace_all.py"), mode, out]
        + [os.path.join(VERIFY_PROGRAMS, f"{name}.py") for name in VERIFY_PROGRAM_NAMES],
        capture_output=True, text=True, env=environment, timeout=600)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="session")
def verify_program_traces(tmp_path_factory):
    """(mode, name) -> trace directory: every program of ``tests/verify_programs`` traced in each
    graph mode, all of one mode in one interpreter, the modes side by side."""
    work = tmp_path_factory.mktemp("verify_programs")
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        jobs = {mode: pool.submit(_trace_programs, mode, str(work / mode)) for mode in GRAPH_MODES}
    for mode, job in jobs.items():
        status, out, err = job.result()
        assert status == 0, err[-3000:]
        assert [line.split()[-1] for line in out.splitlines() if line.split()[:1]
                and line.split()[0] in VERIFY_PROGRAM_NAMES] == ["0"] * len(VERIFY_PROGRAM_NAMES), out
    return {(mode, name): str(work / mode / name) for mode in GRAPH_MODES
            for name in VERIFY_PROGRAM_NAMES}
