"""The package's shape, held: the import-linter layers contract (.importlinter), no import cycles,
no private name imported from another module, and our own modules imported at the top of each
module (inside functions only heavy third-party packages; the CLI is the one exception, below)."""

from __future__ import annotations

import ast
import configparser
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lite_align"
# The CLI imports each command's library module when that command runs: those modules bring numpy,
# rich and the encoder's runtime, and `lite-align --help` or `lite-align models` need none of them
# (0.07 s to start instead of 0.6 s).
LAZY_OWN_IMPORTS = {"lite_align/cli.py"}


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("lite_align", include_external_packages=False, exclude_type_checking_imports=True)


def test_the_layers_contract_is_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    res = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "1 kept, 0 broken" in res.stdout, res.stdout[-3000:]


def test_every_module_has_a_layer() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    layers = config["importlinter:contract:layers"]["layers"]
    named = {name.strip() for line in layers.split("\n") for name in line.split(":") if name.strip()}
    top = {p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    top |= {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert top - named == set(), "place the new module in a layer of .importlinter"


def test_there_are_no_import_cycles() -> None:
    graph = _graph()
    edges = {m: graph.find_modules_directly_imported_by(m) - {m} for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for m in sorted(edges):
        if m not in index:
            visit(m)
    assert cycles == []


def _own_imports() -> list[tuple[str, ast.ImportFrom, bool]]:
    """(file, node, at the top) for every import of a lite_align module, outside TYPE_CHECKING."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

        def type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST] = parents) -> bool:
            while node in parents:
                node = parents[node]
                if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                    return True
            return False

        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("lite_align")):
                if not type_checking(node):
                    out.append((path.relative_to(ROOT).as_posix(), node, node in tree.body))
    return out


def test_no_private_name_is_imported_from_another_module() -> None:
    found = [
        f"{file}:{node.lineno} {alias.name}"
        for file, node, _ in _own_imports()
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]
    assert found == []


def test_our_modules_are_imported_at_the_top() -> None:
    nested = [f"{file}:{node.lineno}" for file, node, top in _own_imports() if not top and file not in LAZY_OWN_IMPORTS]
    assert nested == []


def test_the_readme_development_tree_names_every_module() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tree = readme.split("## Development", 1)[1].split("```", 2)[1]
    files = {p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    files |= {f"{p.name}/" for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert {f for f in files if f not in tree} == set(), "add the module to README.md's Development tree"
