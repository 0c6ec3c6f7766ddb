"""Traces shared by the tests: each scenario is trained once per test session (TensorFlow graphs cost
about a second each after the ~4 s import).

With ``BNREPRO_TEST_TRACE_CACHE=DIR`` set, the traces are kept in ``DIR`` across sessions: each is
read from there when present and traced into it when not (``scripts/mutation_test.py`` runs the
tests once per mutant and sets it). Nothing checks that a kept trace is still what the tracing code
makes: empty ``DIR`` after changing it. Unset (the default), every session traces into temporary
directories.
"""
import concurrent.futures
import hashlib
import os
import shutil
import subprocess
import sys

import pytest

from bnrepro.reproduce import POST_SETTINGS

TRACE_CACHE = os.environ.get("BNREPRO_TEST_TRACE_CACHE")


def _directory(tmp_path_factory, key, make):
    """The directory ``make(directory)`` fills, under ``key``: a new temporary one, or with
    :data:`TRACE_CACHE` set the one kept there, made first when missing (into a directory of its
    own, then renamed into place: sessions running side by side keep the first complete one)."""
    if not TRACE_CACHE:
        directory = tmp_path_factory.mktemp(key[:40]) / "run"
        make(str(directory))
        return str(directory)
    kept = os.path.join(TRACE_CACHE, key)
    if not os.path.isdir(kept):
        os.makedirs(TRACE_CACHE, exist_ok=True)
        staging = os.path.join(TRACE_CACHE, f".{key}.{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        make(os.path.join(staging, "run"))
        try:
            os.rename(staging, kept)
        except OSError:  # another session kept it first
            shutil.rmtree(staging, ignore_errors=True)
    return os.path.join(kept, "run")


def _run(tmp_path_factory, scenario_name, **overrides):
    from bnrepro.scenarios import get_scenario, run_scenario
    from bnrepro.trace import TRACE_FILE, read_trace

    scenario = get_scenario(scenario_name)
    setting = repr(sorted(overrides.items()))
    key = f"{scenario_name}-{hashlib.sha256(setting.encode()).hexdigest()[:12]}"
    out = _directory(tmp_path_factory, key, lambda directory: run_scenario(
        scenario_name, scenario.config_type(**overrides), directory, write=None))
    return read_trace(os.path.join(out, TRACE_FILE))


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
    def trace(work):
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            jobs = {mode: pool.submit(_trace_programs, mode, os.path.join(work, mode))
                    for mode in GRAPH_MODES}
        for mode, job in jobs.items():
            status, out, err = job.result()
            assert status == 0, err[-3000:]
            assert [line.split()[-1] for line in out.splitlines() if line.split()[:1]
                    and line.split()[0] in VERIFY_PROGRAM_NAMES] == ["0"] * len(VERIFY_PROGRAM_NAMES), out

    names = hashlib.sha256(repr(VERIFY_PROGRAM_NAMES).encode()).hexdigest()[:12]
    work = _directory(tmp_path_factory, f"verify_programs-{names}", trace)
    return {(mode, name): os.path.join(work, mode, name) for mode in GRAPH_MODES
            for name in VERIFY_PROGRAM_NAMES}
