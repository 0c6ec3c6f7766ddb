"""``bnrepro reproduce``, the main job: every post rebuilt, traced, verified and compared.

For each post the scenario runs with the post's settings into ``OUT/<scenario>/``, ``verify``
checks its trace, the NumPy whole-step reference replays it, and a table puts each number the post
printed next to ours. Post 002 (MNIST, no
printed numbers) gets a short ``bnrepro compare`` on the embedded digits (:data:`POST_002_COMPARE`)
into ``OUT/compare/``, its bn trace verified. ``OUT/report.md`` collects the tables. The run fails
(non-zero exit) if any trace fails verification, the reference disagrees with a trace
(:func:`bnrepro.check.reference.agrees`) or any printed number differs beyond
:data:`bnrepro.check.tolerances.PRINTED_MATCH_RULE`.
"""
from __future__ import annotations

import os

from bnrepro.config import EMBEDDED_DATA, CompareConfig

from bnrepro.compare.progress import ProgressBar

from bnrepro.compare.run import run_compare
from bnrepro.outdir import check_output_directory, output_directory
from bnrepro.check.posts import POSTS, compare_printed
from bnrepro.check.tolerances import PRINTED_MATCH_RULE
from bnrepro.check.reference import agrees, format_replay, replay
from bnrepro.scenarios import get_scenario, run_scenario
from bnrepro.trace import TRACE_FILE, read_trace, to_json_value
from bnrepro.graphs.two_sample import POST_HIDDEN_KERNEL, POST_OUTPUT_KERNEL
from bnrepro.check.verify import verify_trace

# scenario -> the config overrides that put it in the post's situation
POST_SETTINGS = {
    "cubic": {},
    "two-sample": {"hidden_kernel_init": POST_HIDDEN_KERNEL, "output_kernel_init": POST_OUTPUT_KERNEL},
}
# scenario -> the step whose printout the post shows (post 000 shows the one before its 10th step)
SHOWN_STEP = {"cubic": 10, "two-sample": 1}
# post 002: the five methods, 300 steps (about 10 epochs of the 4000 embedded training digits)
POST_002_COMPARE = CompareConfig(steps=300, data=EMBEDDED_DATA)


def format_table(rows):
    """A Markdown table of ``(label, printed, ours, difference, verdict)`` rows."""
    lines = ["| number | post printed | ours | difference | verdict |",
             "| --- | ---: | ---: | ---: | --- |"]
    for label, printed, ours, difference, verdict in rows:
        lines.append(f"| {label} | {printed:.10g} | {ours:.10g} | {difference:.2g} | {verdict} |")
    return "\n".join(lines)


def reproduce(out, *, force=False, write=print, compare_config=POST_002_COMPARE,
              progress_stream=None):
    """Run every post's scenario into ``out``; return ``True`` when everything matched and verified.
    ``compare_config``: post 002's comparison (tests shorten it). Progress: one bar over the posts
    and, inside post 002's, one per method, on ``progress_stream`` (default stderr; ``write``'s
    lines are the results)."""
    check_output_directory(out, force=force)  # a refused --out: its one-line error, no bar
    stages = ProgressBar("reproduce", len(POSTS) + 1, progress_stream, unit="post")
    try:
        all_ok, verdict = _reproduce(out, force, stages.beside(write), compare_config,
                                     progress_stream, stages)
    finally:
        stages.close()
    write(f"reproduce: {verdict}; tables in {os.path.join(out, 'report.md')}")
    return all_ok


def _reproduce(out, force, write, compare_config, progress_stream, stages):
    """:func:`reproduce`'s work, the bar ``stages`` moved along; returns ``(all_ok, verdict)``."""
    all_ok = True
    report = ["# bnrepro reproduce", ""]
    with output_directory(out, force=force) as staging:
        for done, (post, (scenario_name, printed_numbers)) in enumerate(POSTS.items()):
            stages.update(done, f"post {post.split()[0]}: {scenario_name}")
            scenario = get_scenario(scenario_name)
            config = scenario.config_type(**POST_SETTINGS[scenario_name])
            write(f"== post {post}: bnrepro run {scenario_name} with {config}")
            shown = SHOWN_STEP[scenario_name]
            printed_lines = []
            trace_path = run_scenario(scenario_name, config, os.path.join(staging, scenario_name),
                                      write=None)
            trace = read_trace(trace_path)
            trace.path = os.path.join(out, scenario_name, TRACE_FILE)  # where it will be
            scenario.print_step(trace_as_json(trace, shown - 1), trace_as_json(trace, shown),
                                printed_lines.append)
            write(f"-- the printout of step {shown}, as the post prints it:")
            for line in printed_lines:
                write(line)
            verification = verify_trace(trace)
            write("-- " + verification.format().replace("\n", "\n   "))
            comparisons = replay(trace)
            replay_table = format_replay(comparisons)
            write("-- the NumPy whole-step reference (bnrepro reference), every variable:")
            write("   " + replay_table.replace("\n", "\n   "))
            rows = compare_printed(trace, printed_numbers)
            table = format_table(rows)
            matched = all(row[-1] == "match" for row in rows)
            all_ok = all_ok and matched and verification.passed and agrees(comparisons)
            write(f"-- post {post}: the post's printed numbers against ours (match: {PRINTED_MATCH_RULE})")
            write(table)
            write("")
            report += [f"## Post {post}", "", f"Scenario `{scenario_name}`, config `{config}`.", "",
                       table, "", "Verification:", "", "```", verification.format(), "```", "",
                       "NumPy whole-step reference:", "", "```", replay_table, "```", ""]
        stages.update(len(POSTS), "post 002: compare")
        write(f"== post 002: bnrepro compare --steps {compare_config.steps} "
              f"(MNIST: {compare_config.methods})")
        comparison = run_compare(compare_config, os.path.join(staging, "compare"), write=write,
                                 progress_stream=progress_stream,
                                 shown_as=os.path.join(out, "compare"))
        stages.update(len(POSTS) + 1, "")
        all_ok = all_ok and comparison.verification.passed
        report += ["## Post 002", "", f"`bnrepro compare --steps {compare_config.steps}`: "
                   f"{comparison.data_source}.", "", comparison.table, "",
                   "Batch-norm trace verification:", "", "```", comparison.verification.format(),
                   "```", "", "Figures and history: `compare/`.", ""]
        verdict = "everything matched and verified" if all_ok else "SOME NUMBERS DIFFER OR FAIL"
        report.append(f"Result: {verdict}.")
        with open(os.path.join(staging, "report.md"), "w", encoding="utf-8") as handle:
            handle.write("\n".join(report) + "\n")
    return all_ok, verdict


def trace_as_json(trace, step):
    """A step of a read trace with its arrays as nested lists, as the printers receive them."""
    return to_json_value(trace.step(step))
