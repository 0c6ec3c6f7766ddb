#!/usr/bin/env python3
"""How fast the bnrepro command answers when it has nothing to compute, against TensorFlow's import.

Issue 11, item 5: ``--help``, ``--version`` and argument errors never import TensorFlow, and each
answers within a third of TensorFlow's import time. In one run this measures the wall time of
``python -c "import tensorflow"`` and of each answer below, every one a fresh subprocess with the
environment bnrepro uses (TF_USE_LEGACY_KERAS=1, TF_CPP_MIN_LOG_LEVEL=2), the runs interleaved
round by round so that a slow spell of the machine hits all of them alike, and prints the median
of each, its ratio to TensorFlow's median and whether it is below 1/3. Each answer's exit status is
checked (0 for help and version, 2 for the errors). Nothing is written: the commands run in a
temporary directory and fail before writing.

    python scripts/cli_timing.py                 # 5 timed runs each, after 1 untimed
    python scripts/cli_timing.py --repeats 9 --entry script

Exit status: 0 when every answer is below a third of TensorFlow's import time, 1 otherwise.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

TARGET_RATIO = 1 / 3

# (command-line arguments after ``bnrepro``, expected exit status)
ANSWERS = [
    (["--version"], 0),
    (["--help"], 0),
    (["run", "--help"], 0),
    (["run", "cubic", "--help"], 0),
    (["run", "ghost-batch", "--help"], 0),
    (["verify", "--help"], 0),
    (["explain", "--help"], 0),
    (["reference", "--help"], 0),
    (["reproduce", "--help"], 0),
    (["compare", "--help"], 0),
    (["trace", "--help"], 0),
    (["run", "cubic", "--momentum", "2", "--out", "x"], 2),
    (["run", "nope", "--out", "x"], 2),
    (["run", "cubic"], 2),  # --out missing
    (["run", "cubic", "--out", "full"], 2),  # an existing non-empty directory
    (["compare", "--steps", "0", "--out", "x"], 2),
    (["compare", "--methods", "xx", "--out", "x"], 2),
    (["trace", "--out", "x", "no_such_script.py"], 2),
]


def environment():
    """The current environment with the variables bnrepro sets before TensorFlow is imported."""
    env = dict(os.environ)
    env.update(TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    return env


def bnrepro_command(entry):
    """How to start bnrepro: ``python -m bnrepro`` or the installed ``bnrepro`` script."""
    if entry == "module":
        return [sys.executable, "-m", "bnrepro"]
    script = os.path.join(os.path.dirname(sys.executable), "bnrepro")
    if not os.path.exists(script):
        script = shutil.which("bnrepro")
    if script is None:
        sys.exit("cli_timing: no bnrepro script beside the interpreter or on PATH; use --entry module")
    return [script]


def timed_run(command, cwd, env):
    """(wall seconds, exit status, first line of output) of one run of ``command``."""
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    output = (result.stdout.strip() or result.stderr.strip()).splitlines()
    return seconds, result.returncode, output[0] if output else ""


def measure(jobs, repeats, warmup, cwd, env, progress):
    """``{label: [seconds, ...]}``, each job run ``warmup`` times untimed and then ``repeats`` times,
    round by round; exits if a job's status is not the expected one."""
    times = {label: [] for label, _, _ in jobs}
    for round_number in range(warmup + repeats):
        for label, command, expected in jobs:
            seconds, status, first = timed_run(command, cwd, env)
            if status != expected:
                sys.exit(f"cli_timing: {label!r} exited with {status}, expected {expected}: {first}")
            if round_number >= warmup:
                times[label].append(seconds)
        kind = "warm-up" if round_number < warmup else "timed"
        progress(f"round {round_number + 1} of {warmup + repeats} ({kind}) done")
    return times


def table(times, baseline_label, repeats):
    """Markdown: median, min and max seconds of each job and the ratio of its median to the
    baseline's median; and whether every answer is below the target."""
    baseline = statistics.median(times[baseline_label])
    lines = [f"| command | median s (of {repeats}) | min s | max s | / TF import | below 1/3 |",
             "| --- | ---: | ---: | ---: | ---: | --- |"]
    all_below = True
    for label, seconds in times.items():
        median = statistics.median(seconds)
        ratio = median / baseline
        if label == baseline_label:
            verdict = "(the baseline)"
        else:
            below = ratio < TARGET_RATIO
            all_below &= below
            verdict = "yes" if below else "NO"
        lines.append(f"| `{label}` | {median:.3f} | {min(seconds):.3f} | {max(seconds):.3f} | "
                     f"{ratio:.3f} | {verdict} |")
    return "\n".join(lines), baseline, all_below


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] + " Prints a Markdown table of median wall times "
        "(fresh subprocesses) and each answer's ratio to TensorFlow's import time; exit status 0 "
        "when every answer is below 1/3 of it, 1 otherwise.")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed runs of each command; the table shows their median [5]")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed runs of each command first (file caches) [1]")
    parser.add_argument("--entry", choices=("module", "script"), default="module",
                        help="start bnrepro as 'python -m bnrepro' (module) or with the installed "
                             "'bnrepro' script beside the interpreter (script) [module]")
    arguments = parser.parse_args()
    if arguments.repeats < 1 or arguments.warmup < 0:
        parser.error("--repeats must be at least 1 and --warmup at least 0")

    env = environment()
    bnrepro = bnrepro_command(arguments.entry)
    shown = "python -m bnrepro" if arguments.entry == "module" else "bnrepro"
    baseline_label = 'python -c "import tensorflow"'
    jobs = [(baseline_label, [sys.executable, "-c", "import tensorflow"], 0)]
    jobs += [(" ".join([shown, *argv]), bnrepro + argv, status) for argv, status in ANSWERS]

    with tempfile.TemporaryDirectory(prefix="cli-timing-") as cwd:
        os.mkdir(os.path.join(cwd, "full"))
        with open(os.path.join(cwd, "full", "mine.txt"), "w", encoding="utf-8") as handle:
            handle.write("not bnrepro's\n")
        times = measure(jobs, arguments.repeats, arguments.warmup, cwd, env,
                        lambda line: print(f"cli_timing: {line}", file=sys.stderr, flush=True))
        left_behind = sorted(set(os.listdir(cwd)) - {"full"})
        if left_behind:
            sys.exit(f"cli_timing: a command wrote {left_behind} into {cwd}")

    text, baseline, all_below = table(times, baseline_label, arguments.repeats)
    print(f"Python {sys.version.split()[0]} ({sys.executable}), {os.cpu_count()} CPUs; "
          f"env TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=2; {arguments.warmup} untimed + "
          f"{arguments.repeats} timed runs of each, interleaved")
    print()
    print(text)
    print()
    print(f"TensorFlow import: median {baseline:.3f} s; target: every answer below "
          f"{baseline * TARGET_RATIO:.3f} s (1/3 of it): {'met' if all_below else 'NOT met'}")
    return 0 if all_below else 1


if __name__ == "__main__":
    sys.exit(main())
