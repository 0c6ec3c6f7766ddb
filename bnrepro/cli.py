"""The ``bnrepro`` command: run, verify, explain, reference, reproduce, compare.

Problems a user can fix end in one line, ``bnrepro: error: ...``, and exit status 2; a verification
that fails exits with status 1.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing

from bnrepro.errors import UserError
from bnrepro.trace_process import TraceWriterError
from bnrepro.scenarios import SCENARIO_SUMMARIES, get_scenario

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


def build_parser():
    """The parser, and the per-scenario ``run`` sub-parsers (their config options are added only
    when that scenario is chosen, since the config types live beside TensorFlow code)."""
    parser = _Parser(prog="bnrepro", description=(
        "Rebuild TensorFlow 1.x batch-normalisation experiments from blog posts, trace every step's "
        "moving statistics, and check them with NumPy."))
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    run = commands.add_parser("run", help="train one scenario and write its trace",
                              description="Train one scenario; write DIR/trace.jsonl and trace.csv.")
    scenarios = run.add_subparsers(dest="scenario", metavar="SCENARIO", parser_class=_Parser)
    scenarios.required = True
    scenario_parsers = {}
    for name, summary in SCENARIO_SUMMARIES.items():
        scenario_parser = scenarios.add_parser(name, help=summary, description=summary)
        _add_out(scenario_parser, "trace.jsonl and trace.csv")
        scenario_parser.add_argument("--quiet", action="store_true",
                                     help="do not print the post-style printout")
        scenario_parsers[name] = scenario_parser

    verify = commands.add_parser("verify", help="recompute a trace with NumPy and compare",
                                 description="Check every moving-average update, batch statistic "
                                             "and inference output of a trace with NumPy.")
    verify.add_argument("trace", metavar="TRACE", help="trace.jsonl, or the directory holding it")

    explain = commands.add_parser("explain", help="write out one step's arithmetic",
                                  description="The hand calculation of one step, numbers filled in.")
    explain.add_argument("trace", metavar="TRACE", help="trace.jsonl, or the directory holding it")
    explain.add_argument("--step", type=int, required=True, help="training step (1 = first)")
    explain.add_argument("--layer", help="batch-norm layer name (default: the first)")
    explain.add_argument("--channel", type=int, default=0, help="channel (unit) index [default: 0]")

    reference = commands.add_parser("reference", help="replay a trace with the NumPy whole-step "
                                    "reference", description="Re-run every step of a cubic or "
                                    "two-sample trace in NumPy (forward, backward, optimizer, moving "
                                    "averages) and compare every variable with TensorFlow's.")
    reference.add_argument("trace", metavar="TRACE", help="trace.jsonl, or the directory holding it")

    reproduce = commands.add_parser("reproduce", help="the main job: every post, verified",
                                    description="Run every post's scenario, verify the traces and "
                                                "compare with the numbers the posts printed.")
    _add_out(reproduce, "one trace directory per scenario and report.md")

    compare = commands.add_parser("compare", help="post 002: none / wn / wn-init / bn / ln on MNIST",
                                  description="Train post 002's 784-128-10 net with each "
                                              "normalisation method; write history.csv, results.md, "
                                              "figures and the verified bn trace.")
    _add_out(compare, "history.csv, results.md, the figures and bn/trace.jsonl")
    scenario_parsers["compare"] = compare  # its options come with its config type, when chosen
    return parser, scenario_parsers


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
    except TraceWriterError as error:  # e.g. the disk filled up while the trace was written
        print(f"bnrepro: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:  # the reader went away (``bnrepro verify T | head``): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit's flush
        return 141  # 128 + SIGPIPE, as a shell reports a command killed by it


def _dispatch(argv):
    parser, scenario_parsers = build_parser()
    scenario = None
    if len(argv) >= 2 and argv[0] == "run" and not argv[1].startswith("-"):
        scenario = get_scenario(argv[1])  # an unknown name fails here, listing the choices
        add_config_options(scenario_parsers[scenario.name], scenario.config_type)
    if argv[:1] == ["compare"]:
        from bnrepro.compare import CompareConfig
        add_config_options(scenario_parsers["compare"], CompareConfig)
    arguments = parser.parse_args(argv)
    if arguments.command == "run":
        from bnrepro.scenarios import run_scenario
        config = config_from_arguments(scenario.config_type, arguments)
        write = None if arguments.quiet else print
        path = run_scenario(scenario.name, config, arguments.out, force=arguments.force,
                            write=write)
        print(f"trace written to {path} (and trace.csv); check it with: bnrepro verify {path}")
        return 0
    if arguments.command == "verify":
        from bnrepro.verify import verify_path
        report = verify_path(arguments.trace)
        print(report.format())
        return 0 if report.passed else EXIT_FAILED
    if arguments.command == "explain":
        from bnrepro.explain import explain_path
        print(explain_path(arguments.trace, arguments.step, arguments.layer, arguments.channel))
        return 0
    if arguments.command == "reference":
        from bnrepro.reference import agrees, format_replay, replay_path
        _, comparisons = replay_path(arguments.trace)
        print(format_replay(comparisons))
        return 0 if agrees(comparisons) else EXIT_FAILED
    if arguments.command == "reproduce":
        from bnrepro.reproduce import reproduce
        return 0 if reproduce(arguments.out, force=arguments.force) else EXIT_FAILED
    if arguments.command == "compare":
        from bnrepro.compare import CompareConfig, run_compare
        comparison = run_compare(config_from_arguments(CompareConfig, arguments), arguments.out,
                                 force=arguments.force)
        print(f"compare: results in {arguments.out}/results.md")
        return 0 if comparison.verification is None or comparison.verification.passed \
            else EXIT_FAILED
    raise AssertionError(arguments.command)  # argparse allows only the commands above


if __name__ == "__main__":
    sys.exit(main())
