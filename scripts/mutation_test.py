"""Mutation testing of the code that decides ``bnrepro verify``'s verdicts, with mutmut.

    pip install mutmut                      # 3.8 or later; not a dependency of bnrepro
    python scripts/mutation_test.py         # a full run: one to two hours on 2 cores
    python scripts/mutation_test.py --survivors      # again, only the mutants that survived last time
    python scripts/mutation_test.py --report         # the scores of the last run, per module
    python scripts/mutation_test.py --show NAME      # one mutant's diff

mutmut changes one operator, number, name or string at a time in the modules of :data:`MODULES` and
runs the tests of :data:`TESTS` that reach the changed function; a mutant the tests let pass
("survived") is a change to how verdicts are decided that no test notices. ``docs/mutation_testing.md``
gives the scores and the survivors accepted, with why.

The run works on a copy of the files of a commit (``--revision``, default ``HEAD``; or with
``--working-tree`` the checkout's, tracked and untracked) in ``--work`` (default
``/tmp/bnrepro-mutation``): mutmut writes its mutants, under ``mutants/``, there, not in
the checkout. The tests' traces come from TensorFlow: ``BNREPRO_TEST_TRACE_CACHE`` (see
``tests/conftest.py``) keeps them in ``--work``'s ``traces-<hash>/``, traced once, ``<hash>`` that of
the code that makes them (everything but the mutated ``bnrepro/check/``, and the tests' programs), so
each mutant's tests only read them. Two tests that train a whole comparison per session are left out
(:data:`DESELECTED`). Not part of CI: far too slow.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MODULES = [  # the code that decides verify's verdicts
    "bnrepro/check/tolerances.py", "bnrepro/check/verify.py", "bnrepro/check/records.py",
    "bnrepro/check/formulas.py", "bnrepro/check/coverage.py", "bnrepro/check/conventions.py",
    "bnrepro/check/layer_modes.py", "bnrepro/check/diagnose.py",
]
MORE_MODULES = ["bnrepro/check/explain.py", "bnrepro/check/reference/*"]  # with --all
TESTS = [
    "tests/test_verify.py", "tests/test_verdicts.py", "tests/test_diagnose.py",
    "tests/test_tightness.py", "tests/test_moving_average.py", "tests/test_verify_real_programs.py",
    "tests/test_explain.py", "tests/test_reference.py", "tests/test_pitfalls.py",
    "tests/test_posts.py", "tests/test_check_bounds.py", "tests/test_diagnosis_conventions.py",
]
DESELECTED = [  # each trains a bnrepro compare run in its own module fixture (5 s a mutant)
    "tests/test_verdicts.py::test_a_diverged_run_is_named_not_passed",
    "tests/test_verdicts.py::test_the_default_comparison_passes_without_a_spurious_diagnosis",
]
# The code that makes the traces the tests read: a change to it makes new traces.
TRACING_CODE = ("bnrepro/", "tests/verify_programs/", "tests/conftest.py", "setup.py")
NOT_TRACING_CODE = ("bnrepro/check/",)
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped",
          36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout",
          37: "type check", None: "not checked", -9: "segfault", -11: "segfault"}


def _files(revision):
    """``{path: bytes}``: the files of ``revision`` (a commit), or with ``None`` the checkout's as
    they are (tracked and untracked, not ignored)."""
    if revision is not None:
        listed = subprocess.run(["git", "ls-tree", "-r", "-z", "--name-only", revision], cwd=ROOT,
                                check=True, capture_output=True).stdout.decode()
        return {path: subprocess.run(["git", "show", f"{revision}:{path}"], cwd=ROOT, check=True,
                                     capture_output=True).stdout
                for path in listed.split("\0") if path}
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, check=True, capture_output=True).stdout.decode()
    files = {}
    for path in listed.split("\0"):
        if path and os.path.isfile(os.path.join(ROOT, path)):
            with open(os.path.join(ROOT, path), "rb") as handle:
                files[path] = handle.read()
    return files


def _tracing_hash(files):
    digest = hashlib.sha256()
    for path in sorted(files):
        if path.startswith(TRACING_CODE) and not path.startswith(NOT_TRACING_CODE):
            digest.update(path.encode() + b"\0" + files[path])
    return digest.hexdigest()[:12]


def _config(tree, modules):
    lines = ["[mutmut]", "source_paths = bnrepro", "only_mutate ="]
    lines += [f"    {module}" for module in modules]
    lines += ["pytest_add_cli_args_test_selection ="]
    lines += [f"    {test}" for test in TESTS if os.path.exists(os.path.join(tree, test))]
    lines += ["pytest_add_cli_args =", "    -p", "    no:cacheprovider"]
    for test in DESELECTED:
        lines += ["    --deselect", f"    {test}"]
    lines += ["also_copy =", "    pytest.ini", "    scripts", "    README.md", "    docs",
              "process_isolation = forkserver", "use_git_change_detection = false",
              "timeout_multiplier = 5", ""]
    return "\n".join(lines)


def _write(path, content):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(content)


def _sync(work, fresh, modules, revision):
    """Write ``revision``'s files (or the checkout's) into ``work/tree``, from scratch with
    ``fresh``; returns the tree and the trace cache for them."""
    tree = os.path.join(work, "tree")
    if fresh:
        shutil.rmtree(tree, ignore_errors=True)
    files = _files(revision)
    for path, content in files.items():
        _write(os.path.join(tree, path), content)
    mutated = os.path.join(tree, "mutants")
    if os.path.isdir(mutated):  # mutmut copies the package (but the mutated modules) only once
        for path, content in files.items():
            if path.startswith("bnrepro/") and not path.startswith("bnrepro/check/"):
                _write(os.path.join(mutated, path), content)
    with open(os.path.join(tree, "setup.cfg"), "w", encoding="utf-8") as handle:
        handle.write(_config(tree, modules))
    return tree, os.path.join(work, f"traces-{_tracing_hash(files)}")


def _environment(tree, cache):
    """The tests' environment: the trace cache, and the copy's package first on the path (for the
    programs the tests trace in subprocesses: not the checkout's, which may be mid-edit)."""
    path = os.pathsep.join(filter(None, [tree, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
            "BNREPRO_TEST_TRACE_CACHE": cache, "PYTHONPATH": path}


def _results(tree):
    """``{module: {mutant: status}}`` from mutmut's files."""
    results = {}
    base = os.path.join(tree, "mutants")
    for directory, _, names in os.walk(os.path.join(base, "bnrepro")):
        for name in names:
            if name.endswith(".py.meta"):
                with open(os.path.join(directory, name), encoding="utf-8") as handle:
                    codes = json.load(handle)["exit_code_by_key"]
                module = os.path.relpath(os.path.join(directory, name[:-len(".meta")]), base)
                results[module] = {mutant: STATUS.get(code, "suspicious")
                                   for mutant, code in codes.items()}
    return results


def _report(tree):
    results = _results(tree)
    if not results:
        print("no results: run the mutation test first")
        return 1
    statuses = ["killed", "survived", "timeout", "no tests", "suspicious", "not checked"]
    print(f"{'module':40s} {'mutants':>7s} " + " ".join(f"{s:>11s}" for s in statuses) + "  score")
    total = Counter()
    for module in sorted(results):
        counts = Counter(results[module].values())
        total.update(counts)
        _row(module, counts, statuses)
    _row("all", total, statuses)
    print("\nsurvived:")
    for module in sorted(results):
        for mutant, status in sorted(results[module].items()):
            if status == "survived":
                print(f"    {mutant}")
    return 0


def _row(name, counts, statuses):
    count = sum(counts.values())
    checked = counts["killed"] + counts["survived"] + counts["timeout"]
    score = f"{100 * (counts['killed'] + counts['timeout']) / checked:.1f}%" if checked else "-"
    print(f"{name:40s} {count:7d} " + " ".join(f"{counts[s]:11d}" for s in statuses) + f"  {score}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default="/tmp/bnrepro-mutation",
                        help="where the copy, the mutants and the traces go")
    parser.add_argument("--max-children", type=int, default=2,
                        help="mutants tested at once (default 2: the machine has 2 cores)")
    parser.add_argument("--revision", default="HEAD", help="the commit to test (default HEAD)")
    parser.add_argument("--working-tree", action="store_true",
                        help="test the checkout's files as they are, not a commit")
    parser.add_argument("--all", action="store_true",
                        help="also explain.py and reference/ (about 1600 mutants more)")
    parser.add_argument("--fresh", action="store_true", help="forget the previous run's results")
    parser.add_argument("--survivors", action="store_true",
                        help="run only the mutants that survived the previous run")
    parser.add_argument("--report", action="store_true", help="print the last run's scores")
    parser.add_argument("--show", metavar="MUTANT", help="print one mutant's diff")
    parser.add_argument("mutants", nargs="*", help="run only these mutants (mutmut's names)")
    args = parser.parse_args(argv)
    work = os.path.abspath(args.work)
    tree = os.path.join(work, "tree")
    if args.report:
        return _report(tree)
    mutmut = [shutil.which("mutmut") or "mutmut"]
    if args.show:
        return subprocess.run(mutmut + ["show", args.show], cwd=tree).returncode
    names = list(args.mutants)
    if args.survivors:
        names += [mutant for module in _results(tree).values()
                  for mutant, status in module.items() if status == "survived"]
        if not names:
            print("no survivors to run")
            return 0
    tree, cache = _sync(work, args.fresh, MODULES + (MORE_MODULES if args.all else []),
                        None if args.working_tree else args.revision)
    done = subprocess.run(mutmut + ["run", "--max-children", str(args.max_children)] + names,
                          cwd=tree, env=_environment(tree, cache))
    _report(tree)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
