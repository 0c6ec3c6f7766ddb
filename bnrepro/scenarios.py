"""The table of scenarios ``bnrepro run`` knows, and running one into a traced output directory.

Importing this module imports neither TensorFlow nor NumPy: the names, summaries and config types
below are all that ``bnrepro run --help`` and the option checks need; a scenario's graph code is
imported by :func:`get_scenario`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Optional

from bnrepro.config import CubicConfig, TwoSampleConfig, check_scenario_config, config_as_dict
from bnrepro.errors import UserError
from bnrepro.outdir import output_directory
from bnrepro.graphs.pitfalls import PITFALL_CONFIGS, PITFALL_SCENARIOS


@dataclass(frozen=True)
class Scenario:
    """A post's experiment: its configuration type, graph builder, batches and printout."""

    name: str
    config_type: type
    build: Callable
    batches: Callable
    print_step: Optional[Callable] = None


def _cubic():
    from bnrepro.graphs import cubic
    return Scenario("cubic", cubic.CubicConfig, cubic.build_cubic_graph, cubic.cubic_batches,
                    cubic.print_cubic_step)


def _two_sample():
    from bnrepro.graphs import two_sample
    return Scenario("two-sample", two_sample.TwoSampleConfig, two_sample.build_two_sample_graph,
                    two_sample.two_sample_batches, two_sample.print_two_sample_step)


def _pitfall(module_name):
    """The loader of a trap's scenario in :mod:`bnrepro.graphs.pitfalls` (its module's ``scenario()``)."""
    def load():
        return importlib.import_module(f"bnrepro.graphs.pitfalls.{module_name}").scenario()
    return load


# name -> loader; loaders import TensorFlow only when a scenario is actually used.
SCENARIOS = {"cubic": _cubic, "two-sample": _two_sample}
SCENARIOS.update({name: _pitfall(module) for name, (module, _) in PITFALL_SCENARIOS.items()})

# Without importing TensorFlow: what --help lists.
SCENARIO_SUMMARIES = {
    "cubic": "post 000: x^3+1 regression, batch 3, momentum 0.9, GD lr 0.5",
    "two-sample": "post 001: one Adam step on x=[0,1], y=[3,4], momentum 0.5",
}
SCENARIO_SUMMARIES.update({name: summary for name, (_, summary) in PITFALL_SCENARIOS.items()})

# Without importing TensorFlow: each scenario's config type (its loaded Scenario's config_type).
SCENARIO_CONFIGS = {"cubic": CubicConfig, "two-sample": TwoSampleConfig, **PITFALL_CONFIGS}


def check_scenario_name(name):
    """:class:`UserError` listing the choices unless ``name`` is a scenario; returns ``name``."""
    if name not in SCENARIOS:
        raise UserError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    return name


def get_scenario(name):
    """The :class:`Scenario` called ``name`` (imports its graph code, and TensorFlow);
    :class:`UserError` listing the choices otherwise."""
    return SCENARIOS[check_scenario_name(name)]()


def run_scenario(name, config, out, *, force=False, write=print, record_every=1):
    """Train scenario ``name`` with ``config``; write ``out/trace.jsonl`` and ``out/trace.csv``.

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
        with TraceWriter(staging, header) as writer:
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
