"""The allowed import directions between jaxdl's packages, read from the AST of every module
(function-level imports included). Layers (nn) know nothing of models, training, data, benchmarks
or weight files; models know nothing of training, data or benchmarks; training does not depend on
the benchmarks; only the CLI and the package root see everything. Inside jaxdl/data no module
imports another that (directly or through others) imports it back."""

import ast
import re
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "jaxdl"
# package (or top-level module) -> the other jaxdl packages it may import
ALLOWED = {
    "errors": set(),
    "functional": {"errors"},
    # layers and models declare their parameters' logical axes (jaxdl.parallel.logical); the
    # parallel package imports only errors and functional, so this closes no circle
    "nn": {"errors", "functional", "parallel"},
    "models": {"errors", "functional", "nn", "parallel"},
    "parallel": {"errors", "functional"},
    "data": {"errors", "functional", "parallel"},
    "train": {"errors", "functional", "nn", "models", "data", "parallel", "viz"},
    "weights": {"errors", "functional", "nn", "models", "parallel"},
    "viz": {"errors", "functional"},
    "bench": {"errors", "functional", "nn", "models", "data", "parallel", "train"},
}
UNRESTRICTED = {"cli", "__init__"}


def owner(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("").parts
    return rel[0]


def jaxdl_imports(path: Path):
    """(line, imported jaxdl package) for every absolute import of jaxdl in the module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.ImportFrom):  # relative imports would hide the direction
            yield node.lineno, "<relative import>"
            continue
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "jaxdl" and len(parts) > 1:
                yield node.lineno, parts[1]


def test_every_package_has_a_rule():
    top = {owner(p) for p in PACKAGE.rglob("*.py")}
    assert top - UNRESTRICTED <= set(ALLOWED), top - UNRESTRICTED - set(ALLOWED)


def test_import_directions():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        src = owner(path)
        if src in UNRESTRICTED:
            continue
        for line, dst in jaxdl_imports(path):
            if dst != src and dst not in ALLOWED[src]:
                bad.append(f"{path.relative_to(ROOT)}:{line}: {src} imports jaxdl.{dst}")
    assert not bad, "\n".join(bad)


def test_the_rule_catches_a_wrong_way_import(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from jaxdl.bench.flops import xla_flops\n")
    assert list(jaxdl_imports(f)) == [(2, "bench")]


def module_imports(package_dir: Path, prefix: str) -> dict[str, set[str]]:
    """module -> the modules of the same package it imports (function-level imports included).

    `from P import name` counts as importing P.name when that is a module of the package, else P;
    a package's own __init__ is the module P."""
    files = {}
    for path in package_dir.rglob("*.py"):
        parts = path.relative_to(package_dir).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join((prefix, *parts))] = path
    graph = {}
    for name, path in files.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in files else node.module
                    for a in node.names
                ]
            else:
                continue
            deps |= {t for t in targets if t in files and t != name}
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle [a, b, ..., a] in `graph`, or None."""
    done, path = set(), []

    def visit(node):
        if node in path:
            return path[path.index(node) :] + [node]
        if node in done:
            return None
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if cycle := visit(dep):
                return cycle
        path.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        if cycle := visit(node):
            return cycle
    return None


def test_data_modules_import_no_circle():
    graph = module_imports(PACKAGE / "data", "jaxdl.data")
    assert "jaxdl.data.registry" in graph and "jaxdl.data.loaders.idx" in graph
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_circle_check_catches_a_circle(tmp_path):
    pkg = tmp_path / "data"
    (pkg / "loaders").mkdir(parents=True)
    (pkg / "core.py").write_text("import numpy\n")
    (pkg / "text.py").write_text("from jaxdl.data.core import A\n")
    (pkg / "loaders" / "__init__.py").write_text("")
    (pkg / "loaders" / "text.py").write_text("from jaxdl.data.text import B\n")
    assert find_cycle(module_imports(pkg, "jaxdl.data")) is None
    (pkg / "core.py").write_text("def f():\n    from jaxdl.data.loaders import text\n")
    assert find_cycle(module_imports(pkg, "jaxdl.data")) == [
        "jaxdl.data.core",
        "jaxdl.data.loaders.text",
        "jaxdl.data.text",
        "jaxdl.data.core",
    ]


def test_keys_are_typed():
    """Random keys are made with jax.random.key (typed); the legacy raw-key constructor appears
    in no module of the package, the experiments or the benchmarks."""
    legacy = "PRNG" + "Key("
    found = [
        f"{p.relative_to(ROOT)}:{i}"
        for folder in ("jaxdl", "experiments", "benchmarks")
        for p in sorted((ROOT / folder).rglob("*.py"))
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if legacy in line
    ]
    assert not found, found


def test_ci_runs_exactly_the_readme_test_command():
    """.ci/run's last line is README.md's second opening command, which runs ruff first."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```bash\n(.*?)^```", readme, re.M | re.S)
    test_command = blocks[1].strip()
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1].strip()
    assert ci == test_command
    assert "ruff format --check ." in ci and "ruff check ." in ci and "pytest" in ci


# test modules that check the project across packages live at the top of tests/
CROSS_CUTTING = {
    "test_cli_experiments.py",
    "test_cli_help.py",
    "test_fault_injection.py",
    "test_functional.py",
    "test_house_rules.py",
    "test_docs.py",
    "test_readme.py",
    "test_reliability.py",
    "test_viz.py",
}


def test_tests_are_laid_out_as_the_package():
    """Every test module sits in the folder of the jaxdl package it tests (tests/nn for
    jaxdl/nn, ...; tests/experiments for experiments/), or is one of the cross-cutting checks
    at the top; no folder names a package that does not exist."""
    tests = ROOT / "tests"
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    folders = {"experiments", "fixtures"} | packages
    top = {p.name for p in tests.glob("test_*.py")}
    assert top == CROSS_CUTTING, f"test modules at the top of tests/: {sorted(top ^ CROSS_CUTTING)}"
    for p in tests.rglob("test_*.py"):
        rel = p.relative_to(tests)
        if len(rel.parts) > 1:
            assert len(rel.parts) == 2 and rel.parts[0] in folders, rel
    subfolders = {p.name for p in tests.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert subfolders <= folders, sorted(subfolders - folders)
    assert not (folders - {"fixtures"}) - subfolders - {"viz"}, "a package without tests"


def test_no_citation_of_documents_outside_the_repository():
    """Code, tests and docs cite docs/design.md and published sources, never the planning
    documents that sit beside the repository (a newcomer's clone does not have them)."""
    outside = [name + ".md" for name in ("DESIGN", "SCOPE", "REFERENCE")]
    found = [
        f"{p.relative_to(ROOT)}:{i}"
        for folder in ("jaxdl", "experiments", "benchmarks", "tests", "docs")
        for p in sorted((ROOT / folder).rglob("*"))
        if p.suffix in (".py", ".md")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if any(name in line for name in outside)
    ]
    found += [
        f"README.md:{i}"
        for i, line in enumerate((ROOT / "README.md").read_text().splitlines(), 1)
        if any(n in line for n in outside)
    ]
    assert not found, found
