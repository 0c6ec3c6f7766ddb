#!/usr/bin/env python3
"""``bnrepro compare`` over several seeds, and each method next to ``none`` seed by seed.

One seed is one draw of the initial weights, of the batch order and, on the embedded digits, of the
train/test split, so two methods are compared within a seed (paired): the table gives, per method,
the steps to 90% train accuracy and the final test accuracy for every seed, and how many seeds
the method needed fewer steps than ``none``. Each seed's full output (history, figures, results.md,
the verified bn trace) goes to ``OUT/seed<N>/``. Progress (stderr): one bar over the seeds and,
within each seed, one per method; stdout carries the results.

    python scripts/compare_seeds.py --out out/seeds [--seeds 0,1,2,3,4] [--steps 1500]
"""
import argparse
import os
import sys

from bnrepro.config import CompareConfig

from bnrepro.compare.progress import ProgressBar

from bnrepro.compare.run import run_compare
from bnrepro.errors import UserError
from bnrepro.outdir import output_directory

BASELINE = "none"


def paired_table(summaries_by_seed):
    """Markdown: per method, every seed's steps to 90% and final test accuracy, and the seeds in
    which it reached 90% in fewer steps than :data:`BASELINE`."""
    seeds = list(summaries_by_seed)
    methods = [item.method for item in summaries_by_seed[seeds[0]]]
    by_method = {seed: {item.method: item for item in summaries} for seed, summaries
                 in summaries_by_seed.items()}
    lines = ["| method | steps to 90% train accuracy, seeds " + ", ".join(map(str, seeds))
             + " | final test accuracy | faster than none |", "| --- | --- | --- | --- |"]
    for method in methods:
        runs = [by_method[seed][method] for seed in seeds]
        steps = ", ".join("–" if run.steps_to_target is None else str(run.steps_to_target)
                          for run in runs)
        accuracy = ", ".join("–" if run.final_test_accuracy is None else
                             f"{run.final_test_accuracy:.3f}" for run in runs)
        faster = sum(run.steps_to_target is not None and (
            by_method[seed][BASELINE].steps_to_target is None
            or run.steps_to_target < by_method[seed][BASELINE].steps_to_target)
            for seed, run in zip(seeds, runs))
        versus = "–" if method == BASELINE else f"{faster} of {len(seeds)}"
        lines.append(f"| {method} | {steps} | {accuracy} | {versus} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds [0,1,2,3,4]")
    parser.add_argument("--steps", type=int, default=CompareConfig.steps,
                        help=f"training steps per method [{CompareConfig.steps}]")
    parser.add_argument("--data", default=None, help="MNIST path (default: as bnrepro compare)")
    arguments = parser.parse_args()
    try:
        seeds = [int(item) for item in arguments.seeds.split(",")]
    except ValueError:
        raise UserError(f"--seeds must be comma-separated whole numbers, got {arguments.seeds!r}")
    summaries_by_seed = {}
    with output_directory(arguments.out, force=arguments.force) as staging:
        progress = ProgressBar("seeds", len(seeds), unit="seed")
        write = progress.beside(lambda line: print(line, flush=True))
        try:
            for done, seed in enumerate(seeds):
                progress.update(done, f"seed {seed}")
                write(f"== seed {seed}")
                config = CompareConfig(seed=seed, steps=arguments.steps, data=arguments.data)
                comparison = run_compare(config, os.path.join(staging, f"seed{seed}"),
                                         write=write,
                                         shown_as=os.path.join(arguments.out, f"seed{seed}"))
                summaries_by_seed[seed] = comparison.summaries
            progress.update(len(seeds), "")
        finally:
            progress.close()
        table = paired_table(summaries_by_seed)
        with open(os.path.join(staging, "seeds.md"), "w", encoding="utf-8") as handle:
            handle.write(table + "\n")
    print(table)


if __name__ == "__main__":
    try:
        main()
    except UserError as error:
        sys.exit(f"compare_seeds: error: {error}")
