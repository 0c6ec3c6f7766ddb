"""The package's layout is its architecture: the checks never use TensorFlow, and imports point one
way, entry points -> graphs and tracer -> trace format -> checks, with no cycle.

The TensorFlow test imports every module of ``bnrepro.check`` and ``bnrepro.trace`` in a fresh
interpreter and looks at ``sys.modules``. The direction and cycle tests read every ``import`` in
every module of the package (those inside functions too) with :mod:`ast`, so a module added later is
held to the same rules.
"""
import ast
import os
import pkgutil
import subprocess
import sys

import pytest

import bnrepro

PACKAGE = os.path.dirname(bnrepro.__file__)

# the layers from the bottom up; a module may import its own layer and those below it
LAYERS = (
    ("bnrepro.errors",),
    ("bnrepro.check",),
    ("bnrepro.trace",),
    ("bnrepro.config", "bnrepro.outdir"),
    ("bnrepro.graphs",),
    ("bnrepro.compare", "bnrepro.scenarios", "bnrepro.reproduce", "bnrepro.cli", "bnrepro.__main__",
     "bnrepro"),
)


def _modules():
    """Every module of the package: name -> path."""
    found = {"bnrepro": os.path.join(PACKAGE, "__init__.py")}
    for info in pkgutil.walk_packages([PACKAGE], prefix="bnrepro."):
        spec = info.module_finder.find_spec(info.name)
        found[info.name] = spec.origin
    return found


def _layer(module):
    """The index in :data:`LAYERS` of the longest prefix naming ``module``."""
    best = None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    assert best is not None, f"{module} is in no layer of tests/test_layout.py"
    return best[0]


def _imports(name, path, modules):
    """The package's modules that ``name`` imports anywhere in its source (``from bnrepro.x import
    y`` counts ``bnrepro.x.y`` when that is a module, else ``bnrepro.x``)."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        else:
            continue
        found.update(target for target in targets if target in modules and target != name)
    return found


@pytest.fixture(scope="module")
def graph():
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_the_checks_and_the_trace_format_never_import_tensorflow():
    names = sorted(name for name in _modules()
                   if name.startswith(("bnrepro.check", "bnrepro.trace")))
    assert "bnrepro.check.verify" in names and "bnrepro.trace.reader" in names
    program = ("import sys\n" + "".join(f"import {name}\n" for name in names)
               + "print(sorted({m.split('.')[0] for m in sys.modules} & "
                 "{'tensorflow', 'tf_keras', 'keras'}))")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]", done.stdout[:2000]


def test_imports_point_down_the_layers(graph):
    upward = sorted(f"{name} imports {target}" for name, targets in graph.items()
                    for target in targets
                    if _layer(target) > _layer(name)
                    and not (name == "bnrepro" and target.startswith("bnrepro.")))
    assert upward == []


def test_the_checks_import_nothing_but_checks_and_errors(graph):
    outside = sorted(f"{name} imports {target}" for name, targets in graph.items()
                     if name.startswith("bnrepro.check") for target in targets
                     if not target.startswith(("bnrepro.check", "bnrepro.errors")))
    assert outside == []


def test_no_import_cycle(graph):
    """Depth-first search for a back edge; the cycle found is named."""
    state, stack = {}, []

    def visit(name):
        state[name] = "open"
        stack.append(name)
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                cycle = stack[stack.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name)
