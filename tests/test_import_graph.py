"""The modules of mlkd.models import one another one way (no circle): names are data in a leaf."""

import ast
from pathlib import Path

MODELS = Path(__file__).resolve().parents[1] / "src" / "mlkd" / "models"


def _imports() -> dict[str, set[str]]:
    """{module: the mlkd.models modules it imports anywhere (top level or inside a function)}."""
    graph = {}
    for path in MODELS.glob("*.py"):
        if path.stem == "__init__":
            continue
        tree = ast.parse(path.read_text())
        graph[f"mlkd.models.{path.stem}"] = {
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mlkd.models.")
        }
    return graph


def test_models_modules_import_each_other_one_way():
    graph = _imports()

    def reaches(start: str, goal: str, seen: frozenset = frozenset()) -> bool:
        return any(
            dep == goal or (dep not in seen and reaches(dep, goal, seen | {dep})) for dep in graph.get(start, ())
        )

    assert [module for module in sorted(graph) if reaches(module, module)] == []


def test_model_names_are_a_leaf():
    assert _imports()["mlkd.models.names"] == set()
    source = (MODELS / "names.py").read_text()
    assert "import mlkd" not in source and "from mlkd" not in source
