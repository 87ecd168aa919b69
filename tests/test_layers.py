"""The import graph of src/: no cycle, and no import from a higher layer than the importer's.

The layers are declared once, in docs/architecture.md (a ```layers block: a number, then
the packages and top-level modules of src/ on that layer). Every module of src/ is parsed
with ast and every import counts, those inside functions too (a lazy import is still a
dependency). `from src.a import b` names the module src.a.b when that is a module, the
package src.a otherwise. Cycles are looked for between modules and between the top-level
units (a package, or a module directly under src/): two packages that import each other
are knotted even when no two of their modules are.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
ARCHITECTURE = REPO / "docs" / "architecture.md"


def declared_layers(text: str) -> dict[str, int]:
    """unit -> layer, from the ```layers block of docs/architecture.md."""
    block = re.search(r"```layers\n(.*?)```", text, re.S)
    assert block, "docs/architecture.md has no ```layers block"
    layers: dict[str, int] = {}
    for line in block.group(1).splitlines():
        number, *units = line.split()
        for unit in units:
            assert unit not in layers, f"{unit} is declared on two layers"
            layers[unit] = int(number)
    return layers


def modules(src: Path = SRC) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under src/ (a package is its __init__)."""
    found = {}
    for path in sorted(src.rglob("*.py")):
        parts = path.relative_to(src.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def import_edges(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the modules of src/ it imports, anywhere in its body."""
    edges = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the importer's package
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            for target in targets:
                # `import src.a.b` (or a name inside it) depends on the deepest module it names.
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name and target != "src":
                    edges[name].add(target)
    return edges


def unit_of(module: str) -> str:
    """The top-level unit: src.training.trainer -> training, src.config -> config."""
    return module.split(".")[1] if module.count(".") else ""


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one node (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
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
                out.append(_one_cycle(sorted(component), edges))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def _one_cycle(component: list[str], edges) -> list[str]:
    """A shortest circle through the component's first node, for the message."""
    members, start = set(component), component[0]
    previous, frontier = {start: None}, [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(edges[v] & members):
                if w == start:
                    route = [v]
                    while previous[route[-1]] is not None:
                        route.append(previous[route[-1]])
                    return route[::-1] + [start]
                if w not in previous:
                    previous[w] = v
                    following.append(w)
        frontier = following
    return component


def unit_edges(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for a, targets in edges.items():
        out.setdefault(unit_of(a), set()).update(unit_of(b) for b in targets if unit_of(b) != unit_of(a))
    return out


def upward_imports(edges, layers) -> list[str]:
    found = []
    for a, targets in sorted(edges.items()):
        for b in sorted(targets):
            if layers[unit_of(b)] > layers[unit_of(a)]:
                found.append(f"{a} (layer {layers[unit_of(a)]}) imports {b} (layer {layers[unit_of(b)]})")
    return found


@functools.lru_cache(maxsize=1)
def graph():
    mods = modules()
    return mods, import_edges(mods), declared_layers(ARCHITECTURE.read_text())


# ---------------------------------------------------------------------------------------


def test_every_unit_of_src_has_a_layer():
    mods, _, layers = graph()
    units = {unit_of(m) for m in mods if m != "src"}
    assert not units - set(layers), f"declare these in docs/architecture.md: {sorted(units - set(layers))}"
    assert not set(layers) - units, f"docs/architecture.md declares what src/ lacks: {sorted(set(layers) - units)}"


def test_no_module_imports_from_a_higher_layer():
    _, edges, layers = graph()
    assert upward_imports(edges, layers) == []


def test_no_import_cycle_between_modules():
    _, edges, _ = graph()
    assert [" -> ".join(c) for c in cycles(edges)] == []


def test_no_import_cycle_between_packages():
    _, edges, _ = graph()
    assert [" -> ".join(c) for c in cycles(unit_edges(edges))] == []


def test_the_trainer_names_no_algorithm():
    """It reaches the training and unlearning algorithms through their interfaces and the
    registry: no name, class or config value of one appears in its code."""
    from src.registry import TRAINING_ALGORITHMS, UNLEARNING_ALGORITHMS

    named = set()
    for registry in (TRAINING_ALGORITHMS, UNLEARNING_ALGORITHMS):
        for name, cls in registry.builtins().items():
            named |= {name, cls.__name__, cls.__module__.rpartition(".")[2]}
    tree = ast.parse((SRC / "training" / "trainer.py").read_text())
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            used.add(node.id)
        elif isinstance(node, ast.Attribute):
            used.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            used |= set(re.findall(r"[A-Za-z_][A-Za-z0-9_-]*", node.value))
    assert "sgd" in named and "langevin" in named and "DPSGDTraining" in named  # the check can fail
    assert used & named == set()


# The checker itself, on small graphs whose answers are known.

def test_the_checker_finds_a_cycle_through_a_function_level_import(tmp_path):
    pkg = tmp_path / "src"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("from src.a import x  # fills a registry\n")
    (pkg / "a" / "x.py").write_text("def f():\n    import src.a\n")
    (pkg / "b.py").write_text("from src.a.x import f\nfrom . import c\n")
    (pkg / "c.py").write_text("def g():\n    from .b import f\n")
    edges = import_edges(modules(pkg))
    assert edges["src.a"] == {"src.a.x"} and edges["src.a.x"] == {"src.a"}
    assert edges["src.b"] == {"src.a.x", "src.c"} and edges["src.c"] == {"src.b"}
    assert sorted(cycles(edges)) == [["src.a", "src.a.x", "src.a"], ["src.b", "src.c", "src.b"]]
    assert cycles(unit_edges(edges)) == [["b", "c", "b"]]
    assert upward_imports(edges, {"a": 2, "b": 1, "c": 1}) == ["src.b (layer 1) imports src.a.x (layer 2)"]
