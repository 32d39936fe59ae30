"""The layers run one way: every module's imports (also those inside functions) read with
``ast``, folded into a graph between mlkd's packages (data, models, losses, engine, analysis,
reproduce, bench, and each top-level module). mlkd.data never imports mlkd.engine, and the
graph has no cycle."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent / "src" / "mlkd"


def module_name(path: Path) -> str:
    parts = ("mlkd", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def imported_modules(name: str, path: Path) -> dict[str, int]:
    """{mlkd module imported by module ``name``: first line}; ``from P import n`` counts as
    ``P.n`` when that is a module, relative imports are resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for target in targets:
            if target == "mlkd" or target.startswith("mlkd."):
                found.setdefault(target, node.lineno)
    return found


def layer(module: str) -> str:
    """The package (or top-level module) ``module`` belongs to: mlkd.data.coco -> data."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "mlkd"


def layer_graph() -> dict[str, dict[str, str]]:
    """{layer: {imported layer: "module:line -> module" of one such import}}."""
    graph: dict[str, dict[str, str]] = {}
    for name, path in MODULES.items():
        for target, line in imported_modules(name, path).items():
            src, dst = layer(name), layer(target)
            if src != dst:
                graph.setdefault(src, {}).setdefault(dst, f"{name}:{line} -> {target}")
    return graph


def find_cycle(graph: dict) -> Optional[list]:
    """One cycle of the directed graph {node: iterable of successors} as [a, b, ..., a]; None
    when it has none."""
    state: dict = {}  # node -> "open" (on the current path) or "done"
    path: list = []

    def visit(node) -> Optional[list]:
        state[node], path[len(path) :] = "open", [node]
        for succ in graph.get(node, ()):
            if state.get(succ) == "open":
                return path[path.index(succ) :] + [succ]
            if succ not in state and (cycle := visit(succ)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for node in list(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_on_hand_made_graphs():
    assert find_cycle({"a": ["b"], "b": ["c"], "c": []}) is None
    assert find_cycle({"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": []}) is None  # a diamond
    assert find_cycle({}) is None
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": ["a"], "a": ["b"], "b": ["a"]}) == ["a", "b", "a"]
    assert find_cycle({"a": ["a"]}) == ["a", "a"]


def test_the_import_reader_sees_every_kind_of_import(tmp_path):
    source = (
        "import mlkd.config\nfrom mlkd.data import loaders\nfrom mlkd.engine.logs import read_jsonl\n"
        "from . import holdout\nfrom ..losses import objective\n"
        "def f():\n    from mlkd.reproduce.grid import Grid\n    import numpy\n"
    )
    (tmp_path / "example.py").write_text(source)  # read as if it were mlkd/data/example.py
    found = imported_modules("mlkd.data.example", tmp_path / "example.py")
    assert set(found) == {
        "mlkd.config",
        "mlkd.data.loaders",
        "mlkd.engine.logs",
        "mlkd.data.holdout",
        "mlkd.losses.objective",
        "mlkd.reproduce.grid",
    }
    assert found["mlkd.reproduce.grid"] == 7
    assert layer("mlkd.data.loaders") == "data" and layer("mlkd.config") == "config" and layer("mlkd") == "mlkd"


def test_the_graph_is_read_from_every_module():
    graph = layer_graph()
    layers = {layer(name) for name in MODULES}
    assert {"data", "models", "losses", "engine", "analysis", "reproduce", "bench", "config", "cli"} <= layers
    assert "data" in graph["engine"] and "config" in graph["data"]


def test_data_does_not_import_engine():
    found = [
        f"{name}:{line} imports {target}"
        for name, path in MODULES.items()
        if layer(name) == "data"
        for target, line in imported_modules(name, path).items()
        if layer(target) == "engine"
    ]
    assert not found, "mlkd.data must not import mlkd.engine: " + "; ".join(found)


def test_no_import_cycle_between_packages():
    graph = layer_graph()
    cycle = find_cycle(graph)
    assert cycle is None, (
        "import cycle between packages: "
        + " -> ".join(cycle)
        + "\n"
        + "\n".join(f"  {a} -> {b}: {graph[a][b]}" for a, b in zip(cycle, cycle[1:]))
    )
