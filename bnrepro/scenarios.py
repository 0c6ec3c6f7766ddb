"""The table of scenarios ``bnrepro run`` knows, and running one into a traced output directory.

Importing this module imports neither TensorFlow nor NumPy: each row's name, summary and config
type are all that ``bnrepro run --help`` and the option checks need. A row's loader imports the
scenario's graph module (and so TensorFlow) when the scenario is used; the graph modules never
import this one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from bnrepro.config import (CubicConfig, FusedConfig, GhostBatchConfig, RenormConfig,
                            TwoSampleConfig, check_scenario_config, config_as_dict)
from bnrepro.errors import UserError
from bnrepro.outdir import output_directory


@dataclass(frozen=True)
class ScenarioEntry:
    """One row of :data:`SCENARIOS`: the one-line summary ``--help`` shows, the config type, and
    ``load()``, which imports the scenario's module and returns its
    :class:`~bnrepro.graphs.built.Scenario`."""

    summary: str
    config_type: type
    load: Callable


def _cubic():
    from bnrepro.graphs import cubic
    return cubic.scenario()


def _two_sample():
    from bnrepro.graphs import two_sample
    return two_sample.scenario()


def _fused():
    from bnrepro.graphs.pitfalls import fused
    return fused.scenario()


def _update_ops():
    from bnrepro.graphs.pitfalls import update_ops
    return update_ops.scenario()


def _training_flag():
    from bnrepro.graphs.pitfalls import training_flag
    return training_flag.scenario()


def _epsilon():
    from bnrepro.graphs.pitfalls import epsilon
    return epsilon.scenario()


def _ghost_batch():
    from bnrepro.graphs.pitfalls import ghost_batch
    return ghost_batch.scenario()


def _renorm():
    from bnrepro.graphs.pitfalls import renorm
    return renorm.scenario()


# name -> row: the posts, then the traps (docs/pitfalls.md), in the order --help lists them
SCENARIOS = {
    "cubic": ScenarioEntry("post 000: x^3+1 regression, batch 3, momentum 0.9, GD lr 0.5",
                           CubicConfig, _cubic),
    "two-sample": ScenarioEntry("post 001: one Adam step on x=[0,1], y=[3,4], momentum 0.5",
                                TwoSampleConfig, _two_sample),
    "fused-variance": ScenarioEntry("trap 1: the same 4 values through the fused (4-D) and "
                                    "non-fused (2-D) kernels: unbiased vs biased moving variance",
                                    FusedConfig, _fused),
    "no-update-ops": ScenarioEntry("trap 2: post 000 trained without the UPDATE_OPS dependency: "
                                   "moving statistics stay 0 and 1", CubicConfig, _update_ops),
    "training-not-fed": ScenarioEntry("trap 3: post 000 with training never fed True: batch norm "
                                      "trains in inference mode", CubicConfig, _training_flag),
    "epsilon": ScenarioEntry("trap 4: post 000 and how its inference output moves with each "
                             "framework's epsilon", CubicConfig, _epsilon),
    "ghost-batch": ScenarioEntry("trap 7: virtual_batch_size (ghost batches): strided ghost "
                                 "batches, ignored when training is a tensor", GhostBatchConfig,
                                 _ghost_batch),
    "renorm": ScenarioEntry("trap 7: renorm=True: moving_stddev, r/d clipping", RenormConfig,
                            _renorm),
}
SCENARIO_SUMMARIES = {name: entry.summary for name, entry in SCENARIOS.items()}
SCENARIO_CONFIGS = {name: entry.config_type for name, entry in SCENARIOS.items()}


def check_scenario_name(name):
    """:class:`UserError` listing the choices unless ``name`` is a scenario; returns ``name``."""
    if name not in SCENARIOS:
        raise UserError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    return name


def get_scenario(name):
    """The :class:`~bnrepro.graphs.built.Scenario` called ``name`` (imports its graph code, and
    TensorFlow); :class:`UserError` listing the choices otherwise."""
    return SCENARIOS[check_scenario_name(name)].load()


def run_scenario(name, config, out, *, force=False, write=print, record_every=1, csv=False):
    """Train scenario ``name`` with ``config``; write ``out/trace.jsonl`` and its arrays
    (``out/trace_arrays/``), and with ``csv`` also ``out/trace.csv``.

    The post-style printout goes through ``write`` (``None`` for silence). Returns the trace path.
    """
    from bnrepro.graphs.runner import batch_norm_tracer, run_traced
    from bnrepro.trace import TRACE_FILE, TraceWriter, to_json_value

    check_scenario_name(name)
    check_scenario_config(config)  # before the scenario's graph code (and TensorFlow) is imported
    scenario = get_scenario(name)
    built = scenario.build(config)
    tracer = batch_norm_tracer(built)
    header = tracer.header(name, config_as_dict(config))  # each layer with its mode
    with output_directory(out, force=force) as staging:
        with TraceWriter(staging, header, csv=csv) as writer:
            previous = None
            for record in run_traced(built, scenario.batches(config), tracer=tracer,
                                     record_every=record_every):
                writer.write_step(record)
                step = to_json_value(record)  # as the printers read it
                if write is not None and scenario.print_step is not None:
                    scenario.print_step(previous, step, write)
                previous = step
            writer.finish("complete")
    return f"{out}/{TRACE_FILE}"
