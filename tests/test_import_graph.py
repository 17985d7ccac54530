"""The package's import graph, read from the source: no circles, and the lower layers never import upwards.

Every `import` counts, at module level or inside a function: an import moved into a function still ties the
two modules together, it only hides the circle until the function runs. Importing `a.b.c` also imports the
packages `a.b` and `a` (their `__init__` runs first), so those edges count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nscl"

# Lowest first. A module may import its own layer and the layers below it, never a layer above.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("nscl.files", "nscl.paths", "nscl.nullspace", "nscl.optim", "nscl.metrics", "nscl.atlas"),
    ("nscl.data",),
    ("nscl.models",),
    ("nscl.methods",),
)


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str], root: Path = PACKAGE) -> set[str]:
    """The package's modules that `path` imports, and the packages above them (but not the importer's own
    packages: those are already being initialised when it runs, so they add no edge)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            while target:  # the module and every package above it
                found.add(target)
                target = target.rpartition(".")[0]
    own = {name.rsplit(".", k)[0] for k in range(name.count(".") + 1)}
    return {m for m in found if m in modules and m not in own}


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    paths = sorted(root.rglob("*.py"))
    modules = {module_name(p, root) for p in paths}
    return {module_name(p, root): imported_modules(p, modules, root) for p in paths}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer_of(module: str) -> int | None:
    for level, members in enumerate(LAYERS):
        if any(module == m or module.startswith(m + ".") for m in members):
            return level
    return None


def test_the_graph_is_read_from_the_source():
    graph = import_graph()
    assert len(graph) > 50
    assert "nscl.nsp2.conditions" in graph["nscl.nsp2.method"]
    assert "nscl.data" in graph["nscl.models.tiny"]  # importing nscl.data.x runs nscl/data/__init__ first


def test_circles_finds_a_planted_circle(tmp_path):
    package = tmp_path / "nscl"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from nscl.sub.b import f\n")
    (package / "sub" / "b.py").write_text("def f():\n    from nscl import a   # inside a function: still an edge\n")
    (package / "c.py").write_text("import nscl.a\n")
    assert circles(import_graph(package)) == [["nscl.a", "nscl.sub.b"]]


def test_the_package_has_no_import_circle():
    found = circles(import_graph())
    assert not found, f"import circles: {found}"


@pytest.mark.parametrize("level", range(len(LAYERS)))
def test_lower_layers_never_import_upwards(level):
    upward = {
        (module, target)
        for module, targets in import_graph().items()
        if layer_of(module) == level
        for target in targets
        if (layer_of(target) is None or layer_of(target) > level)
    }
    assert not upward, f"layer {LAYERS[level]} imports from above it: {sorted(upward)}"


# The command line and the config it validates import the recipes (torch, timm, open_clip) only when a
# command needs them, so that `python -m nscl --help` and a config check stay instant.
LAZY_BY_DESIGN = {"nscl.cli", "nscl.experiment.config"}


def test_imports_of_the_package_sit_at_module_level():
    inside = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        top_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ImportFrom)
                and id(node) not in top_level
                and (node.module or "").startswith("nscl")
            ):
                inside.add(module_name(path))
            elif (
                isinstance(node, ast.Import)
                and id(node) not in top_level
                and any(a.name.startswith("nscl") for a in node.names)
            ):
                inside.add(module_name(path))
    assert inside <= LAZY_BY_DESIGN, f"imports of nscl inside functions: {sorted(inside - LAZY_BY_DESIGN)}"
