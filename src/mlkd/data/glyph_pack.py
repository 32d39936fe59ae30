"""A glyph pack: the ``coco_scenes`` sprites pre-rendered into one file, for machines without
the emoji fonts (or without fontTools, or with another FreeType).

:func:`write_pack` renders each font's sprites with :mod:`mlkd.data.sprites` (the arrays the
scene renderer pastes: uint8 RGBA [h, w, 4] per class, cropped to their alpha) and stores them,
unchanged, in one compressed ``.npz`` with a JSON header: the format, the fonts (in
``sprites.FONT_NAMES`` order), each font's version string (what the ``coco_scenes`` cache key
records for it), the class names and code points the sprites were drawn for, and a SHA-256 of
each font's sprites. :func:`load_pack` reads and checks all of it.

With ``data.options.glyph_pack: <file>`` (:mod:`mlkd.data.scenes`) scenes are drawn from the
pack's sprites and keyed by the pack's font versions: a split drawn from a pack has the cache
name and the pixels of the split drawn from the fonts it was made from.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from mlkd.data import sprites
from mlkd.data.coco import COCO_CLASSES
from mlkd.data.glyphs import CLASS_GLYPHS
from mlkd.errors import ConfigError
from mlkd.fileio import make_temporary

log = logging.getLogger(__name__)

FORMAT = 1
_HEADER = "header"


def _key(font: str, index: int) -> str:
    return f"{font}_{index:02d}"


def _digest(arrays: Sequence[np.ndarray]) -> str:
    """SHA-256 over each sprite's shape and bytes, in class order."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(repr(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _glyph_table() -> list[list[Any]]:
    """[[class name, code point], ...] in class order: what the sprites were drawn for."""
    return [[name, CLASS_GLYPHS[name].codepoint] for name in COCO_CLASSES]


@dataclass(frozen=True)
class GlyphPack:
    """A loaded pack: ``sprites[font]`` is a tuple of uint8 RGBA [h, w, 4], one per class."""

    path: Path
    fonts: tuple[str, ...]
    versions: dict[str, str]
    sprites: dict[str, tuple[np.ndarray, ...]]

    def select(self, value: Any) -> list[str]:
        """The ``fonts`` option resolved against the pack: ``"auto"`` = every font it holds;
        a name or a list must name fonts it holds (a ConfigError names the missing one)."""
        if value == "auto":
            return list(self.fonts)
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not names:
            raise ConfigError(f"coco_scenes option fonts must be 'auto' or a list of font names, got {value!r}")
        missing = [n for n in names if n not in self.fonts]
        if missing:
            raise ConfigError(
                f"coco_scenes option fonts: the glyph pack {self.path} has no font "
                f"{missing[0]!r} (it holds {', '.join(self.fonts)})"
            )
        return sorted(set(names), key=sprites.FONT_NAMES.index)

    def versions_of(self, fonts: Sequence[str]) -> dict[str, str]:
        """{font: version string} as the scenes cache key records it."""
        return {name: self.versions[name] for name in fonts}

    def sprite_sets(self, fonts: Sequence[str]) -> list[list[Image.Image]]:
        """[font][class] RGBA sprites, as ``mlkd.data.scenes.sprite_sets`` gives them."""
        return [[Image.fromarray(a) for a in self.sprites[name]] for name in fonts]


def write_pack(path: str | Path, fonts: Sequence[str], versions: dict[str, str]) -> Path:
    """Render ``fonts`` (installed here) and write the pack to ``path`` atomically.

    ``versions``: {font: version string} of those fonts (``mlkd.data.scenes.font_versions``).
    Returns the path. A DataError (from :mod:`mlkd.data.sprites`) if a font is missing."""
    path = Path(path)
    fonts = sorted(set(fonts), key=sprites.FONT_NAMES.index)
    arrays: dict[str, np.ndarray] = {}
    digests = {}
    for name in fonts:
        drawn = sprites.font_sprites(name)
        digests[name] = _digest(drawn)
        arrays.update({_key(name, k): a for k, a in enumerate(drawn)})
    header = {
        "format": FORMAT,
        "fonts": fonts,
        "versions": {n: str(versions[n]) for n in fonts},
        "glyphs": _glyph_table(),
        "sha256": digests,
    }
    arrays[_HEADER] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = make_temporary(path, prefix=path.stem)
    with os.fdopen(fd, "wb") as f:
        np.savez_compressed(f, **arrays)
    os.replace(tmp, path)
    log.info("glyph pack %s: fonts %s, %d bytes", path, ", ".join(fonts), path.stat().st_size)
    return path


def load_pack(path: str | Path) -> GlyphPack:
    """The pack at ``path``, checked (format, glyph table, digests); a ConfigError says what is
    wrong and how to rebuild it. Cached per file (path, size, modification time)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"coco_scenes option glyph_pack: no file {path}; write one with "
            "mlkd.data.glyph_pack.write_pack on a machine with the emoji fonts"
        )
    stat = path.stat()
    return _load(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _load(path: str, size: int, mtime_ns: int) -> GlyphPack:
    problem = "rebuild it with mlkd.data.glyph_pack.write_pack"
    try:
        with np.load(io.BytesIO(Path(path).read_bytes()), allow_pickle=False) as data:
            header = json.loads(data[_HEADER].tobytes().decode())
            fonts = tuple(header["fonts"])
            loaded = {n: tuple(data[_key(n, k)] for k in range(len(COCO_CLASSES))) for n in fonts}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"glyph pack {path} cannot be read ({type(err).__name__}: {err}); {problem}") from None
    if header.get("format") != FORMAT:
        raise ConfigError(f"glyph pack {path} has format {header.get('format')!r}, expected {FORMAT}; {problem}")
    if header.get("glyphs") != _glyph_table():
        raise ConfigError(
            f"glyph pack {path} was drawn for another class / glyph table than mlkd.data.glyphs; {problem}"
        )
    unknown = [n for n in fonts if n not in sprites.FONT_NAMES]
    if unknown or not fonts:
        raise ConfigError(f"glyph pack {path} holds unknown font(s) {unknown or 'none'}; {problem}")
    for name in fonts:
        if _digest(loaded[name]) != header["sha256"][name]:
            raise ConfigError(f"glyph pack {path}: the {name} sprites do not match their SHA-256; {problem}")
    return GlyphPack(Path(path), fonts, dict(header["versions"]), loaded)
