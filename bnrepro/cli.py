"""The ``bnrepro`` command: run, verify, explain, reference, reproduce, compare.

Problems a user can fix end in one line, ``bnrepro: error: ...``, and exit status 2; a verification
that fails exits with status 1.

The command answers at once when it has nothing to compute: ``--help``, ``--version``, a bad option
or config value and an unusable ``--out`` are handled before TensorFlow (about 4 s to import) is
imported. This module imports only TensorFlow-free modules (the config types live in
:mod:`bnrepro.config`); each command imports what it needs after its options have been checked.
``tests/test_cli_startup.py`` keeps it so, ``scripts/cli_timing.py`` measures it.

A command is a ``_add_<command>(commands)`` function that adds its sub-parser and sets ``handler``
to the function that runs it (parsed arguments -> exit status); add it to :data:`COMMANDS`.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing

from bnrepro import __version__
from bnrepro.config import CompareConfig, check_compare_config, check_scenario_config
from bnrepro.errors import UserError
from bnrepro.trace.keep import BUDGET_BYTES, KEEP_EVERY, KEEP_FIRST, KeepPolicy
from bnrepro.outdir import check_output_directory
from bnrepro.scenarios import (SCENARIO_CONFIGS, SCENARIO_SUMMARIES, check_scenario_name,
                               run_scenario)

EXIT_FAILED = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) and exits with status 2."""

    def error(self, message):
        raise UserError(f"{self.prog}: error: {message}")


def _option_type(annotation):
    """int / float / Optional[float] -> the argparse type."""
    arguments = [a for a in typing.get_args(annotation) if a is not type(None)]
    return arguments[0] if arguments else annotation


def add_config_options(parser, config_type):
    """One ``--option`` per field of a config dataclass, with its default and help text."""
    hints = typing.get_type_hints(config_type)
    for item in dataclasses.fields(config_type):
        flag, help_text = "--" + item.name.replace("_", "-"), item.metadata.get("help", "")
        if hints[item.name] is bool:  # a switch: absent = the default (False), present = True
            parser.add_argument(flag, dest=item.name, action="store_true", default=item.default,
                                help=help_text)
            continue
        parser.add_argument(flag, dest=item.name, type=_option_type(hints[item.name]),
                            default=item.default, help=f"{help_text} [default: {item.default}]")


def config_from_arguments(config_type, arguments):
    """Build ``config_type`` from the parsed options of :func:`add_config_options`."""
    return config_type(**{item.name: getattr(arguments, item.name)
                          for item in dataclasses.fields(config_type)})


def _add_out(parser, what):
    parser.add_argument("--out", required=True, metavar="DIR",
                        help=f"directory to write {what} into (must not exist or be empty; "
                             f"missing parents are created)")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing --out directory as a whole, in place, if "
                             "bnrepro wrote it (its .bnrepro-output.json lists everything in it); "
                             "any other non-empty directory is refused and left untouched")


def _add_csv(parser):
    parser.add_argument("--csv", action="store_true",
                        help="also write trace.csv: every number of the trace as text, one line "
                             "each (step, section, key, quantity, index, value), for spreadsheets; "
                             "large (about 20 bytes per number)")


def build_parser():
    """The parser of every command in :data:`COMMANDS`; each sets ``handler`` (see the module
    docstring). Every option is known here, without TensorFlow, so ``--help`` lists them all."""
    parser = _Parser(prog="bnrepro", description=(
        "Rebuild TensorFlow 1.x batch-normalisation experiments from blog posts, trace every step's "
        "moving statistics, and check them with NumPy."))
    parser.add_argument("--version", action="version", version=f"bnrepro {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    for add_command in COMMANDS:
        add_command(commands)
    return parser


def _add_run(commands):
    run = commands.add_parser("run", help="train one scenario and write its trace",
                              description="Train one scenario; write DIR/trace.jsonl and its "
                                          "arrays (DIR/trace_arrays/), and with --csv trace.csv.")
    run.set_defaults(handler=_run)
    scenarios = run.add_subparsers(dest="scenario", metavar="SCENARIO", parser_class=_Parser)
    scenarios.required = True
    for name, summary in SCENARIO_SUMMARIES.items():
        scenario_parser = scenarios.add_parser(name, help=summary, description=summary)
        _add_out(scenario_parser, "trace.jsonl and its arrays (trace_arrays/)")
        _add_csv(scenario_parser)
        scenario_parser.add_argument("--quiet", action="store_true",
                                     help="do not print the post-style printout")
        add_config_options(scenario_parser, SCENARIO_CONFIGS[name])


def _run(arguments):
    config_type = SCENARIO_CONFIGS[arguments.scenario]
    config = check_scenario_config(config_from_arguments(config_type, arguments))
    check_output_directory(arguments.out, force=arguments.force)  # both before TensorFlow
    write = None if arguments.quiet else print
    path = run_scenario(arguments.scenario, config, arguments.out, force=arguments.force,
                        write=write, csv=arguments.csv)
    also = " (and trace.csv)" if arguments.csv else ""
    print(f"trace written to {path}{also}; check it with: bnrepro verify {path}")
    return 0


def _add_verify(commands):
    verify = commands.add_parser("verify", help="recompute a trace with NumPy and compare",
                                 description="Check every moving-average update, batch statistic "
                                             "and inference output of a trace with NumPy.")
    verify.add_argument("trace", metavar="TRACE", help="trace.jsonl, or the directory holding it")
    verify.add_argument("--plot", nargs="?", const="", default=None, metavar="DIR",
                        help="also draw each layer's figure (bnrepro plot) into DIR [default: "
                             "TRACE's directory with -plots added]; its progress goes to stderr")
    verify.set_defaults(handler=_verify)


def _read_trace(path, streamed=False):
    """:func:`bnrepro.trace.read_trace` of ``path`` (``streamed``: :func:`~bnrepro.trace.open_trace`,
    its steps read a block at a time); where it does not exist but a run writing it was killed,
    the error names the staging directory it left (its trace reads, INCOMPLETE)."""
    from bnrepro.outdir import unfinished_outputs
    from bnrepro.trace import open_trace, read_trace

    if not os.path.exists(path):
        left = unfinished_outputs(path.rstrip(os.sep))
        if left:
            raise UserError(f"trace {path} does not exist; a run writing it that did not finish "
                            f"left {left[0]}: bnrepro verify {left[0]}")
    return open_trace(path) if streamed else read_trace(path)


def _verify(arguments):
    from bnrepro.check.verify import verify_trace

    trace = _read_trace(arguments.trace, streamed=True)
    report = verify_trace(trace)
    print(report.format(), flush=True)
    if arguments.plot is not None and trace.steps:
        from bnrepro.plot_files import write_plots

        write_plots(trace, arguments.plot or _plots_beside(trace),
                    write=lambda line: print(line, file=sys.stderr))
    return 0 if report.passed else EXIT_FAILED


def _add_explain(commands):
    explain = commands.add_parser("explain", help="write out one step's arithmetic",
                                  description="The hand calculation of one step, numbers filled in.")
    explain.add_argument("trace", metavar="TRACE", help="trace.jsonl, or the directory holding it")
    explain.add_argument("--step", type=int, required=True, help="training step (1 = first)")
    explain.add_argument("--layer", help="batch-norm layer name (default: the first)")
    explain.add_argument("--channel", type=int, default=0, help="channel (unit) index [default: 0]")
    explain.set_defaults(handler=_explain)


def _explain(arguments):
    from bnrepro.check.explain import explain_step

    trace = _read_trace(arguments.trace, streamed=True)
    print(explain_step(trace, arguments.step, arguments.layer, arguments.channel))
    return 0


def _add_reference(commands):
    reference = commands.add_parser("reference", help="replay a trace with the NumPy whole-step "
                                    "reference", description="Re-run every step of a cubic or "
                                    "two-sample trace in NumPy (forward, backward, optimizer, moving "
                                    "averages) and compare every variable with TensorFlow's.")
    reference.add_argument("trace", metavar="TRACE", help="trace.jsonl, or the directory holding it")
    reference.set_defaults(handler=_reference)


def _reference(arguments):
    from bnrepro.check.reference import agrees, format_replay, replay

    comparisons = replay(_read_trace(arguments.trace))
    print(format_replay(comparisons))
    return 0 if agrees(comparisons) else EXIT_FAILED


def _add_reproduce(commands):
    reproduce = commands.add_parser("reproduce", help="the main job: every post, verified",
                                    description="Run every post's scenario, verify the traces and "
                                                "compare with the numbers the posts printed.")
    _add_out(reproduce, "one trace directory per scenario and report.md")
    reproduce.set_defaults(handler=_reproduce)


def _reproduce(arguments):
    check_output_directory(arguments.out, force=arguments.force)  # before TensorFlow
    from bnrepro.reproduce import reproduce

    return 0 if reproduce(arguments.out, force=arguments.force) else EXIT_FAILED


def _add_compare(commands):
    compare = commands.add_parser("compare", help="post 002: none / wn / wn-init / bn / ln on MNIST",
                                  description="Train post 002's 784-128-10 net with each "
                                              "normalisation method; write history.csv, results.md, "
                                              "figures and the verified bn trace.")
    _add_out(compare, "history.csv, results.md, the figures and bn/trace.jsonl")
    add_config_options(compare, CompareConfig)
    compare.set_defaults(handler=_compare)


def _compare(arguments):
    config = check_compare_config(config_from_arguments(CompareConfig, arguments))
    check_output_directory(arguments.out, force=arguments.force)  # both before TensorFlow
    from bnrepro.compare.run import run_compare

    comparison = run_compare(config, arguments.out, force=arguments.force)
    print(f"compare: results in {arguments.out}/results.md")
    return 0 if comparison.verification is None or comparison.verification.passed \
        else EXIT_FAILED


def _add_trace(commands):
    trace = commands.add_parser(
        "trace", help="run your own TF1-style program and trace its moving statistics",
        description="Run SCRIPT as `python SCRIPT ARGS` would, unchanged, with every "
                    "session.run (and Keras' graph-mode fit) traced: each batch-norm layer or "
                    "moving average found in its graphs, every run that moves them, the values "
                    "each update consumed. Writes DIR/trace.jsonl (bnrepro-trace/2) and its arrays "
                    "as the run goes, for `bnrepro verify DIR`; a long run keeps its first steps, "
                    "then checkable pairs (see --keep-first, --keep-every). The script's output "
                    "and exit status are its own; bnrepro's summary goes to stderr.")
    _add_out(trace, "trace.jsonl and its arrays (trace_arrays/)")
    _add_csv(trace)
    trace.add_argument("--inputs-every", type=int, default=None, metavar="N",
                       help="record each layer's input every N steps (the batch statistics are "
                            "recorded at every step) [default: every step up to 100, then every "
                            "100th]")
    trace.add_argument("--keep-first", type=int, default=KEEP_FIRST, metavar="N",
                       help=f"keep every step up to N [default: {KEEP_FIRST}]")
    trace.add_argument("--keep-every", type=int, default=KEEP_EVERY, metavar="K",
                       help="after --keep-first, keep the pairs (k - 1, k) of every K-th step, "
                            "each checked against the step before it; 1 keeps every step "
                            f"[default: {KEEP_EVERY}]")
    trace.add_argument("--inputs-budget-mb", type=float, default=BUDGET_BYTES / 1e6, metavar="MB",
                       help="keep the layers' inputs only while the trace is smaller than MB "
                            f"megabytes [default: {BUDGET_BYTES / 1e6:g}]")
    trace.add_argument("script", metavar="SCRIPT", help="the Python program to run")
    trace.add_argument("arguments", nargs=argparse.REMAINDER, metavar="ARGS",
                       help="its arguments")
    trace.set_defaults(handler=_trace)


def _trace(arguments):
    if not os.path.isfile(arguments.script):
        raise UserError(f"{arguments.script} is not a file")
    if arguments.inputs_every is not None and arguments.inputs_every <= 0:
        raise UserError(f"--inputs-every must be a positive whole number, got "
                        f"{arguments.inputs_every}")
    if arguments.keep_first < 0 or arguments.keep_every < 1 or arguments.inputs_budget_mb < 0:
        raise UserError("--keep-first must be at least 0, --keep-every at least 1 and "
                        "--inputs-budget-mb at least 0, got "
                        f"{arguments.keep_first}, {arguments.keep_every}, "
                        f"{arguments.inputs_budget_mb:g}")
    keep = KeepPolicy(arguments.keep_first, arguments.keep_every,
                      int(arguments.inputs_budget_mb * 1e6))
    check_output_directory(arguments.out, force=arguments.force)
    from bnrepro.graphs.tracing import trace_script

    return trace_script(arguments.script, arguments.arguments, arguments.out, force=arguments.force,
                        inputs_every=arguments.inputs_every, csv=arguments.csv, keep=keep,
                        write=lambda line: print(line, file=sys.stderr))


def _step_range(text):
    """``A:B`` -> ``(A, B)`` step numbers (either side may be left out: from the first, to the
    last)."""
    first, colon, last = text.partition(":")
    try:
        window = (int(first) if first else 0, int(last) if last else 2 ** 62)
    except ValueError:
        window = None
    if not colon or window is None or window[0] < 0 or window[0] > window[1]:
        raise argparse.ArgumentTypeError(f"{text!r} is not a step range A:B (0 <= A <= B)")
    return window


def _channel_list(text):
    try:
        channels = [int(part) for part in text.split(",")]
    except ValueError:
        channels = None
    if not channels or min(channels) < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of channel indices (0,5,9)")
    return channels


def _plots_beside(trace):
    """The default directory of a trace's figures: beside the trace's directory, ``-plots``
    added (not inside it, which bnrepro's --force would then refuse to replace)."""
    return os.path.normpath(os.path.dirname(os.path.abspath(trace.path))) + "-plots"


def _add_plot(commands):
    plot = commands.add_parser(
        "plot", help="draw each layer's moving statistics against the batch statistics",
        description="One figure per batch-norm layer of a trace: the moving mean and variance of "
                    "a few channels against the batch statistics that fed them and the momentum "
                    "formula's prediction, all channels as a band, and marked the steps where a "
                    "moving statistic is off its prediction beyond float32 rounding (what verify "
                    "fails), a run moved the statistics without training, or they were set; a "
                    "long run whole (binned) and a zoom. Reads the trace a block at a time.")
    plot.add_argument("trace", metavar="TRACE", help="trace.jsonl, or the directory holding it")
    plot.add_argument("--out", metavar="DIR", default=None,
                      help="directory to write the figures into [default: TRACE's directory with "
                           "-plots added: out/mine -> out/mine-plots]")
    plot.add_argument("--force", action="store_true",
                      help="replace an existing --out directory bnrepro wrote")
    plot.add_argument("--layer", action="append", metavar="NAME",
                      help="a layer to draw (repeat for more) [default: every layer]")
    plot.add_argument("--channels", type=_channel_list, metavar="C,C,...",
                      help="channel indices to draw [default: the first, middle and last]")
    plot.add_argument("--steps", type=_step_range, metavar="A:B",
                      help="only steps A to B [default: the whole run]")
    plot.add_argument("--zoom", type=_step_range, metavar="A:B",
                      help="the zoomed steps [default: around the first marked step, else the "
                           "first 200; none for a run of 200 steps or fewer]")
    plot.add_argument("--format", choices=("png", "svg"), default="png",
                      help="image format [default: png]")
    plot.set_defaults(handler=_plot)


def _plot(arguments):
    from bnrepro.plot_files import write_plots

    trace = _read_trace(arguments.trace, streamed=True)
    write_plots(trace, arguments.out or _plots_beside(trace), layers=arguments.layer,
                channels=arguments.channels, steps=arguments.steps, zoom=arguments.zoom,
                extension=arguments.format, force=arguments.force)
    print(f"plot: what to look for: the stored moving statistic (line) should lie on the "
          f"prediction (dotted/x) at every step; a mark is a step to check with bnrepro explain "
          f"{arguments.trace} --step N")
    return 0


def _add_tensorboard(commands):
    board = commands.add_parser(
        "tensorboard", help="write a trace's statistics as TensorBoard summaries",
        description="Write each layer's moving and batch statistics (scalars of a few channels, "
                    "histograms of all) and the largest error of its update as a fraction of "
                    "the float32 bound verify allows, per step, as TensorBoard summaries in "
                    "LOGDIR (a new event file): `tensorboard --logdir LOGDIR` shows them beside "
                    "your own. Reads the trace a block at a time.")
    board.add_argument("trace", metavar="TRACE", help="trace.jsonl, or the directory holding it")
    board.add_argument("--logdir", required=True, metavar="LOGDIR",
                       help="directory of the event file (created if missing; other files in it "
                            "are left alone)")
    board.add_argument("--layer", action="append", metavar="NAME",
                       help="a layer to write (repeat for more) [default: every layer]")
    board.add_argument("--channels", type=_channel_list, metavar="C,C,...",
                       help="channels written as scalars [default: the first, middle and last]")
    board.add_argument("--histogram-every", type=int, metavar="N", default=None,
                       help="a histogram of all channels every N-th step [default: some 500 "
                            "per layer over the run]")
    board.set_defaults(handler=_tensorboard)


def _tensorboard(arguments):
    trace = _read_trace(arguments.trace, streamed=True)
    if arguments.histogram_every is not None and arguments.histogram_every < 1:
        raise UserError(f"--histogram-every must be at least 1, got {arguments.histogram_every}")
    if os.path.exists(arguments.logdir) and not os.path.isdir(arguments.logdir):
        raise UserError(f"--logdir {arguments.logdir} is a file, not a directory")
    from bnrepro.trace.tensorboard import write_summaries

    try:
        write_summaries(trace, arguments.logdir, layers=arguments.layer,
                        channels=arguments.channels, histogram_every=arguments.histogram_every,
                        write=lambda line: print(line, file=sys.stderr))
    except ValueError as error:
        raise UserError(str(error)) from None
    print(f"tensorboard: summaries in {arguments.logdir}; see them with: tensorboard --logdir "
          f"{arguments.logdir}")
    return 0


# The commands, in the order --help lists them: each adds its sub-parser and handler.
COMMANDS = (_add_run, _add_verify, _add_explain, _add_plot, _add_tensorboard, _add_reference,
            _add_reproduce, _add_compare, _add_trace)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return _dispatch(argv)
    except UserError as error:
        message = str(error)
        if not message.startswith("bnrepro"):
            message = f"bnrepro: error: {message}"
        print(message, file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("bnrepro: interrupted; nothing was written", file=sys.stderr)
        return 130
    except _trace_writer_error() as error:  # e.g. the disk filled up while the trace was written
        print(f"bnrepro: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:  # the reader went away (``bnrepro verify T | head``): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit's flush
        return 141  # 128 + SIGPIPE, as a shell reports a command killed by it


def _trace_writer_error():
    """:class:`bnrepro.trace.process.TraceWriterError`, if that module has been imported (only then
    can one have been raised), else ``()``, which catches nothing. Evaluated only when an exception
    reaches its ``except``, so ``--help`` does not pay for importing it (and NumPy)."""
    module = sys.modules.get("bnrepro.trace.process")
    return module.TraceWriterError if module is not None else ()


def _dispatch(argv):
    if argv[:1] == ["run"] and len(argv) >= 2 and not argv[1].startswith("-"):
        check_scenario_name(argv[1])  # "unknown scenario 'x'; choose from ...", not argparse's
    arguments = build_parser().parse_args(argv)
    return arguments.handler(arguments)


if __name__ == "__main__":
    sys.exit(main())
