"""The documentation pages: the generated configuration reference is current, and every
relative link of docs/*.md points to a file that exists (independently of mkdocs)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.MULTILINE)
_HTML = re.compile(r"""<(?:a|img)\b[^>]*\b(?:href|src)=["']([^"']+)["']""", re.IGNORECASE)


def _load_generator():
    spec = importlib.util.spec_from_file_location("config_reference", ROOT / "scripts" / "config_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def link_targets(text: str) -> list[str]:
    """The link and image targets of a Markdown text, code blocks and code spans left out."""
    text = _CODE_SPAN.sub("", _FENCE.sub("", text))
    return _LINK.findall(text) + _REFERENCE.findall(text) + _HTML.findall(text)


def is_relative(target: str) -> bool:
    parts = urlsplit(target)
    return not (parts.scheme or parts.netloc or target.startswith(("#", "/")))


def test_configuration_page_is_current():
    generator = _load_generator()
    page = DOCS / "configuration.md"
    assert page.read_text(encoding="utf-8") == generator.render(), (
        "docs/configuration.md is stale: run python scripts/config_reference.py"
    )
    assert generator.main(["--check"]) == 0


def test_configuration_page_lists_every_key():
    generator = _load_generator()
    text = generator.render()
    for prefix, model in generator.SECTIONS:
        for name, field in model.model_fields.items():
            if prefix or not hasattr(field.annotation, "model_fields"):
                key = f"{prefix}.{name}" if prefix else name
                assert f"| `{key}` |" in text, key
                assert field.description, f"{key} has no description (Field(description=...) in config.py)"


def test_link_extraction():
    text = (
        "[a](install.md) ![b](figures/x.png) `[c](not-a-link.md)` [d](https://x.org/y.md) [e](#here)\n"
        '```\n[f](in-a-block.md)\n```\n[g](api.md#anchor "title")\n[ref]: cli.md\n'
    )
    assert link_targets(text) == [
        "install.md",
        "figures/x.png",
        "https://x.org/y.md",
        "#here",
        "api.md#anchor",
        "cli.md",
    ]
    assert [t for t in link_targets(text) if is_relative(t)] == [
        "install.md",
        "figures/x.png",
        "api.md#anchor",
        "cli.md",
    ]


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda path: path.name)
def test_relative_links_resolve(page: Path):
    missing = []
    for target in link_targets(page.read_text(encoding="utf-8")):
        if not is_relative(target):
            continue
        path = unquote(urlsplit(target).path)
        if path and not (page.parent / path).exists():
            missing.append(target)
    assert not missing, f"{page.name}: links to missing files: {missing}"
