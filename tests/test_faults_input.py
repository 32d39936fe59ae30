"""Hostile or unusual input files and values: every one is a one-line error (exit 2) naming
the file, key or value, bounded in length, or a warning; never a traceback or a silent change.
"""

from __future__ import annotations

import pytest

from fault_helpers import run_cli


def assert_one_line(code, err, *needles, limit=2100):
    text = err.strip()
    assert code == 2 and text.startswith("mlkd: error:") and "\n" not in text, text[:2000]
    assert len(text) < limit, f"{len(text)} characters: {text[:300]}..."
    for needle in needles:
        assert needle in text, text


def alias_bomb(levels: int = 7) -> str:
    """A YAML list whose anchors nest ``levels`` deep, 9 wide: ~20 lines that expand to 9**levels items."""
    anchors = ["&l0 [" + ", ".join(["lol"] * 9) + "]"]
    anchors += [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "[" + ", ".join(anchors) + "]"


@pytest.mark.parametrize("key", ["seed", "protocols"])
def test_a_yaml_alias_bomb_is_quoted_in_a_few_characters(tmp_path, capsys, key):
    path = tmp_path / "bomb.yaml"
    path.write_text(f"train:\n  {key}: {alias_bomb()}\n")
    assert_one_line(*run_cli(["train", "-c", str(path)], capsys), str(path), f"train.{key}", "...")
