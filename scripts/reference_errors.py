"""Measure how far the NumPy whole-step reference is from TensorFlow: the figures behind
bnrepro.check.tolerances.REFERENCE_TOLERANCE and ADAM_SLOT_TOLERANCE.

Runs post 000's cubic scenario and post 001's two-sample net (the post's kernels, and random kernels
over several seeds, 5 Adam steps each), replays every trace with the reference, chained (from step 0,
as ``bnrepro reference``) and step by step (from TensorFlow's previous state), and prints, per
scenario and kind of value, the largest max-norm relative error ``max |NumPy - TF| / max |TF|`` of
a variable at a step, and where it was.

    python scripts/reference_errors.py [--seeds 12]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile


def _kind(name):
    stem = name.rsplit(":", 1)[0]
    if stem.endswith("/Adam_1"):
        return "Adam v slots"
    if stem.endswith("/Adam"):
        return "Adam m slots"
    return "other variables"


def measure(seeds, write=print):
    from bnrepro.check import reference, tolerances
    from bnrepro.scenarios import get_scenario, run_scenario
    from bnrepro.trace import read_trace
    from bnrepro.graphs.two_sample import POST_HIDDEN_KERNEL, POST_OUTPUT_KERNEL

    runs = [("cubic", {})]
    runs += [("two-sample", {"hidden_kernel_init": POST_HIDDEN_KERNEL,
                             "output_kernel_init": POST_OUTPUT_KERNEL})]
    runs += [("two-sample", {"steps": 5, "seed": seed}) for seed in range(seeds)]
    worst = {}  # (scenario, replay, kind) -> (error, overrides, variable, step)
    with tempfile.TemporaryDirectory() as scratch:
        for number, (name, overrides) in enumerate(runs):
            scenario = get_scenario(name)
            path = run_scenario(name, scenario.config_type(**overrides),
                                os.path.join(scratch, str(number)), write=None)
            trace = read_trace(path)
            for chained in (True, False):
                replay = "chained" if chained else "step by step"
                for comparison in reference.replay(trace, chained=chained):
                    values = [(variable, comparison.variables[variable], traced)
                              for variable, traced in comparison.traced_variables.items()]
                    values.append(("loss", comparison.loss, comparison.traced_loss))
                    for variable, predicted, traced in values:
                        error = tolerances.norm_relative_error(predicted, traced)
                        key = (name, replay, "loss" if variable == "loss" else _kind(variable))
                        if error > worst.get(key, (-1.0,))[0]:
                            worst[key] = (error, overrides, variable, comparison.step)
    write(f"{'scenario':<11} {'replay':<13} {'values':<16} {'largest':>9}  where")
    for (name, replay, kind), (error, overrides, variable, step) in sorted(worst.items()):
        where = f"{variable}, step {step}, {overrides or 'the post'}"
        write(f"{name:<11} {replay:<13} {kind:<16} {error:>9.2g}  {where}")
    write(f"tolerances: {tolerances.REFERENCE_TOLERANCE:g} (loss, variables), "
          f"{tolerances.ADAM_SLOT_TOLERANCE:g} (Adam's slots)")
    return worst


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=12,
                        help="random-kernel seeds of post 001's net [default: 12]")
    arguments = parser.parse_args(argv)
    if arguments.seeds < 0:
        parser.error("--seeds must be 0 or more")
    measure(arguments.seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
