"""The docs (docs/*.md and README.md) name only what exists today: every dotted `jaxdl.` name
imports or resolves to an attribute, every repository path they cite (`jaxdl/...`, `tests/...`,
`benchmarks/...`, `experiments/...`, `docs/...`) is there, every relative link points inside the
repository at a file that exists, and every `from jaxdl... import` line of their Python blocks
resolves. A renamed or removed module, function or test makes this fail."""

import ast
import importlib
import re

import pytest
from conftest import ROOT

PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
# `.jaxdl.lock`, `jaxdl.csv`: file names that read like dotted names
FILE_SUFFIXES = (".lock", ".csv", ".txt", ".py", ".md", ".json", ".png")
PATH = re.compile(r"\b((?:jaxdl|tests|benchmarks|experiments|docs)/[A-Za-z0-9_/.\-*{},]+)")


def resolves(name: str) -> bool:
    """Whether `a.b.c` is a module, or a module's attribute chain."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def dotted_names(text: str) -> set[str]:
    found = set()
    for m in re.finditer(r"(?<![\w/.])jaxdl(?:\.[A-Za-z_]\w*)+", text):
        name = m.group(0)
        if not name.endswith(FILE_SUFFIXES):
            found.add(name)
    return found


def python_imports(text: str):
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jaxdl"):
                for alias in node.names:
                    yield f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                yield from (a.name for a in node.names if a.name.startswith("jaxdl"))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_docs_name_what_exists(page):
    text = page.read_text()
    bad = [f"name {n}" for n in sorted(dotted_names(text)) if not resolves(n)]
    bad += [f"import {n}" for n in python_imports(text) if not resolves(n)]
    for m in sorted(set(PATH.findall(text))):
        path = m.rstrip(".,:;)").split("::")[0]
        if not any(c in path for c in "*{}") and not (ROOT / path).exists():
            bad.append(f"path {path}")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://", "#", "mailto:")):
            continue
        file = (page.parent / target.split("#")[0]).resolve()
        if not file.is_relative_to(ROOT) or not file.exists():
            bad.append(f"link {target}")
    assert not bad, f"{page.relative_to(ROOT)}: " + "; ".join(bad)


def test_the_check_catches_a_stale_name():
    assert resolves("jaxdl.train.Trainer") and resolves("jaxdl.parallel.sharding.put")
    assert not resolves("jaxdl.train.NoSuchTrainer")
    assert not resolves("jaxdl.no_such_module.x")
    assert dotted_names("see `jaxdl.bench.flops` and W/.jaxdl.lock") == {"jaxdl.bench.flops"}
    assert list(python_imports("```python\nfrom jaxdl.nn import Dense\n```")) == ["jaxdl.nn.Dense"]
