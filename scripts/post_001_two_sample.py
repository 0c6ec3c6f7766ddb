#!/usr/bin/env python3
"""Post 001 ("tensorflow中的批量归一化问题", 2023), rebuilt and explained.

A 1-1-1 net with batch norm (momentum 0.5) after each dense layer, one Adam step (lr 0.001) on
x = [0, 1], y = [3, 4]. The asker expected the moving mean to be the mean of the printed hidden
values; the printed values use the kernel *after* the step. The post's kernels were random; the
initial values below reproduce everything it printed.

    python scripts/post_001_two_sample.py [--out out/post_001]
"""
import argparse

from bnrepro.check.explain import explain_step
from bnrepro.trace import read_trace
from bnrepro.scenarios import run_scenario
from bnrepro.graphs.two_sample import POST_HIDDEN_KERNEL, POST_OUTPUT_KERNEL, TwoSampleConfig

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--out", default="out/post_001", help="trace directory [default: out/post_001]")
arguments = parser.parse_args()

config = TwoSampleConfig(hidden_kernel_init=POST_HIDDEN_KERNEL, output_kernel_init=POST_OUTPUT_KERNEL)
trace_path = run_scenario("two-sample", config, arguments.out, force=True)
print()
print("The answer's hand calculation, with the numbers of this run:")
print(explain_step(read_trace(trace_path), step=1))
