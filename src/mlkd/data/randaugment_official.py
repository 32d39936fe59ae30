"""The official L2D code's RandAugment: the policy of the ``randaugment==1.0.2`` package, on Pillow.

The official training transform calls that package's ``RandAugment()`` (no arguments). Its rules,
re-implemented here with Pillow operations (the package itself needs ``numpy < 1.24``, whose
``np.int`` it uses, and is unmaintained):

- 15 operations (:data:`OPERATIONS`): Invert, Cutout, Sharpness, AutoContrast, Posterize, ShearX,
  TranslateX, TranslateY, ShearY, Rotate, Equalize, Contrast, Color, Solarize, Brightness.
- Each image draws a pair of (operation, level) uniformly among the 15 x 9 choices (levels
  1..9 of a 10-point scale, :data:`LEVELS`), independently for the two slots (the same
  operation may come twice). Each of the two is then applied with probability 0.5, in order:
  a quarter of the images get no operation at all.
- The level picks a value from a 10-point ``linspace`` per operation (:func:`magnitude`):
  shear 0..0.3, translate 0..150/331 of the image side, rotate 0..30 degrees, the four
  enhancements (colour, contrast, sharpness, brightness) a factor 1 +- 0..0.9, posterize 8..4
  bits (rounded: level 1 keeps all 8 bits, a no-op), solarize threshold 256..0, Cutout a
  square of side round(0..20) pixels (absolute, whatever the image size).
- Shear, translate and the enhancements take a random sign; rotate is always counter-clockwise.
  Shear is bicubic, translate and rotate nearest-neighbour; uncovered pixels are grey
  (128, 128, 128). Cutout centres its box on a uniform pixel, spans ``side // 2`` either way
  (clipped at the borders, so an odd side loses one pixel) and fills it with (125, 122, 113).

Randomness: torch's global generator (seeded per item by ``mlkd.data.loaders.ItemSeeded``, as
the rest of mlkd's augmentation), not the package's mix of Python's and NumPy's streams, so the
same seed gives the same images here, not the package's images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps

OPERATIONS: tuple[str, ...] = (
    "Invert",
    "Cutout",
    "Sharpness",
    "AutoContrast",
    "Posterize",
    "ShearX",
    "TranslateX",
    "TranslateY",
    "ShearY",
    "Rotate",
    "Equalize",
    "Contrast",
    "Color",
    "Solarize",
    "Brightness",
)
LEVELS: tuple[int, ...] = tuple(range(1, 10))  # of the 10-point scale 0..9; 0 is never drawn
APPLY_PROBABILITY = 0.5
FILL = (128, 128, 128)  # uncovered pixels of shear / translate / rotate
CUTOUT_FILL = (125, 122, 113)  # the package's Cutout colour

#: (first, last) of each operation's 10-point scale; None: the operation takes no magnitude.
_SCALES: dict[str, Optional[tuple[float, float]]] = {
    "ShearX": (0.0, 0.3),
    "ShearY": (0.0, 0.3),
    "TranslateX": (0.0, 150 / 331),
    "TranslateY": (0.0, 150 / 331),
    "Rotate": (0.0, 30.0),
    "Color": (0.0, 0.9),
    "Contrast": (0.0, 0.9),
    "Sharpness": (0.0, 0.9),
    "Brightness": (0.0, 0.9),
    "Posterize": (8.0, 4.0),
    "Solarize": (256.0, 0.0),
    "Cutout": (0.0, 20.0),
    "AutoContrast": None,
    "Equalize": None,
    "Invert": None,
}
_ROUNDED = ("Posterize", "Cutout")  # integer scales (bits, pixels)
SIGNED: tuple[str, ...] = (
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Color",
    "Contrast",
    "Sharpness",
    "Brightness",
)


def magnitude(operation: str, level: int):
    """The value ``operation`` uses at ``level`` (0..9): ``linspace(first, last, 10)[level]``,
    rounded for Posterize (bits) and Cutout (pixels); None for the magnitude-free operations."""
    scale = _SCALES[operation]
    if scale is None:
        return None
    value = float(np.linspace(scale[0], scale[1], 10)[level])
    return int(round(value)) if operation in _ROUNDED else value


@dataclass(frozen=True)
class Draw:
    """One slot of one image: the operation, its level, whether it was applied, and its sign
    (+1 / -1 for the signed operations, else +1)."""

    operation: str
    level: int
    applied: bool
    sign: int = 1


def _uniform_int(n: int) -> int:
    return int(torch.randint(n, ()))


def _cutout(image: Image.Image, side: int) -> Image.Image:
    """A box of ``2 * (side // 2)`` pixels a side (clipped) centred on a uniform pixel."""
    width, height = image.size
    cx, cy, half = _uniform_int(width), _uniform_int(height), side // 2
    box = (max(cx - half, 0), max(cy - half, 0), min(cx + half, width), min(cy + half, height))
    image = image.copy()
    image.paste(CUTOUT_FILL if image.mode == "RGB" else CUTOUT_FILL[0], box)
    return image


def _affine(image: Image.Image, matrix: tuple, resample) -> Image.Image:
    fill = FILL if image.mode == "RGB" else FILL[0]
    return image.transform(image.size, Image.AFFINE, matrix, resample, fillcolor=fill)


def _rotate(image: Image.Image, degrees: float) -> Image.Image:
    return image.rotate(degrees, resample=Image.NEAREST, fillcolor=FILL if image.mode == "RGB" else FILL[0])


#: operation -> f(image, magnitude, sign) -> image
_APPLY = {
    "ShearX": lambda im, m, s: _affine(im, (1, m * s, 0, 0, 1, 0), Image.BICUBIC),
    "ShearY": lambda im, m, s: _affine(im, (1, 0, 0, m * s, 1, 0), Image.BICUBIC),
    "TranslateX": lambda im, m, s: _affine(im, (1, 0, m * im.size[0] * s, 0, 1, 0), Image.NEAREST),
    "TranslateY": lambda im, m, s: _affine(im, (1, 0, 0, 0, 1, m * im.size[1] * s), Image.NEAREST),
    "Rotate": lambda im, m, s: _rotate(im, m),
    "Color": lambda im, m, s: ImageEnhance.Color(im).enhance(1 + m * s),
    "Contrast": lambda im, m, s: ImageEnhance.Contrast(im).enhance(1 + m * s),
    "Sharpness": lambda im, m, s: ImageEnhance.Sharpness(im).enhance(1 + m * s),
    "Brightness": lambda im, m, s: ImageEnhance.Brightness(im).enhance(1 + m * s),
    "Posterize": lambda im, m, s: ImageOps.posterize(im, m),
    "Solarize": lambda im, m, s: ImageOps.solarize(im, m),
    "Cutout": lambda im, m, s: _cutout(im, m),
    "AutoContrast": lambda im, m, s: ImageOps.autocontrast(im),
    "Equalize": lambda im, m, s: ImageOps.equalize(im),
    "Invert": lambda im, m, s: ImageOps.invert(im),
}


def apply_operation(image: Image.Image, operation: str, level: int, sign: int = 1) -> Image.Image:
    """``operation`` at ``level`` (with ``sign`` where it takes one) on a PIL image -> a new image."""
    return _APPLY[operation](image, magnitude(operation, level), sign)


class OfficialRandAugment(torch.nn.Module):
    """The ``randaugment==1.0.2`` policy (see the module docstring): PIL image -> PIL image.

    ``last_draws`` holds the two :class:`Draw` of the last call (what was drawn and applied).
    """

    def __init__(self):
        super().__init__()
        self.last_draws: tuple[Draw, ...] = ()

    def sample(self) -> tuple[Draw, Draw]:
        """The two slots' draws (operation, level, applied, sign) from torch's generator."""
        draws = []
        for _ in range(2):
            operation = OPERATIONS[_uniform_int(len(OPERATIONS))]
            level = LEVELS[_uniform_int(len(LEVELS))]
            applied = bool(torch.rand(()) < APPLY_PROBABILITY)
            sign = (1 if _uniform_int(2) else -1) if applied and operation in SIGNED else 1
            draws.append(Draw(operation, level, applied, sign))
        return draws[0], draws[1]

    def forward(self, image: Image.Image) -> Image.Image:
        if not isinstance(image, Image.Image):
            raise TypeError(f"OfficialRandAugment takes a PIL image, got {type(image)}")
        self.last_draws = ()
        draws = []
        for draw in self.sample():
            if draw.applied:
                image = apply_operation(image, draw.operation, draw.level, draw.sign)
            draws.append(draw)
        self.last_draws = tuple(draws)
        return image

    def extra_repr(self) -> str:
        return f"randaugment==1.0.2 policy: 2 of {len(OPERATIONS)} ops, p={APPLY_PROBABILITY}, levels 1-9 of 10"
