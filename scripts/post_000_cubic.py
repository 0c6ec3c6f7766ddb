#!/usr/bin/env python3
"""Post 000 ("tensorflow の batch normalize に関して", 2018), rebuilt and checked.

The post trains f = x^3 + 1 with batch 3, momentum 0.9 and GD lr 0.5 for 10 epochs, printing every
variable, hidden_tmp and bn1 before each step. This script does the same (the graph is
bnrepro.graphs.cubic.build_cubic_graph, written like the post), writes the trace, then answers the post's
open question: is moving_mean the moving average of hidden_tmp's batch means?

    python scripts/post_000_cubic.py [--out out/post_000]
"""
import argparse

from bnrepro.graphs.cubic import CubicConfig
from bnrepro.scenarios import run_scenario
from bnrepro.check.verify import verify_trace
from bnrepro.trace import read_trace

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--out", default="out/post_000", help="trace directory [default: out/post_000]")
arguments = parser.parse_args()

config = CubicConfig()  # batch_size=3, epochs=10, momentum=0.9, learning_rate=0.5, seed=0, ones
trace_path = run_scenario("cubic", config, arguments.out, force=True)
report = verify_trace(read_trace(trace_path))
print(report.format())
print("The post's open question: moving_mean = 0.9 * moving_mean + 0.1 * mean(hidden_tmp) at every "
      "step?", "yes" if report.passed else "NO")
