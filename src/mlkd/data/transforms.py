"""Image transforms by recipe: ``build_transform(recipe, img_size, train, normalize)``.

Recipes, train side:

- ``official`` (the L2D code): Resize((s, s)) (aspect ratio not kept) -> Cutout (one box of
  half the side, random colour) -> the ``randaugment==1.0.2`` package's RandAugment (2 of 15
  operations, each applied with probability 0.5, level 1-9 of 10:
  :class:`mlkd.data.randaugment_official.OfficialRandAugment`) -> ToTensor. No flip, no
  mean/std normalisation.
- ``official_torchvision``: the same with torchvision's RandAugment (14 operations, both
  always applied, magnitude 9 of 31) in place of the package's; this was ``official`` before
  issue 14, kept bit for bit for runs made with it.
- ``paper`` (the paper's text): ``official_torchvision`` with a RandomHorizontalFlip after the
  resize.
- ``none``: Resize((s, s)) -> ToTensor (small embedded data, debugging).

Eval side, every recipe: Resize((s, s)) -> ToTensor, deterministic. ``normalize=True`` appends
the ImageNet mean/std normalisation (for pretrained weights that expect it). Randomness comes
from torch's global RNG (Cutout, the official RandAugment, flip) and Python's / torch's
(torchvision's RandAugment); the training loader seeds them per item by (seed, epoch, index)
(``mlkd.data.loaders.ItemSeeded``), with or without DataLoader workers.
"""

from __future__ import annotations

from typing import Callable

import torch
from PIL import Image
from torchvision import transforms as T

from mlkd.data.randaugment_official import OfficialRandAugment
from mlkd.errors import ConfigError
from mlkd.registries import RECIPES

# RECIPES: training augmentations by recipe name, ``recipe() -> list of ops`` applied between
# the resize and ``ToTensor`` (evaluation never augments). A plugin may register more.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Cutout(torch.nn.Module):
    """Fill one box with one random RGB colour (the official ``CutoutPIL``, factor 0.5).

    The box is ``round(factor * h) x round(factor * w)`` pixels, centred on a pixel drawn
    uniformly from the whole image and clipped at the borders (so near an edge it is smaller).
    Takes a PIL image (a filled copy is returned) or a tensor [C, H, W] (uint8 or float in
    [0, 1], a filled clone is returned). ``last_box`` holds (top, left, bottom, right) of the
    last box, bottom/right exclusive.
    """

    def __init__(self, factor: float = 0.5):
        super().__init__()
        if not 0.0 < factor <= 1.0:
            raise ConfigError(f"Cutout factor must be in (0, 1], got {factor}")
        self.factor = factor
        self.last_box: tuple[int, int, int, int] | None = None

    def _box(self, h: int, w: int) -> tuple[int, int, int, int]:
        bh, bw = int(self.factor * h + 0.5), int(self.factor * w + 0.5)
        cy, cx = (int(v) for v in (torch.randint(h, ()), torch.randint(w, ())))
        top, left = cy - bh // 2, cx - bw // 2
        box = (max(top, 0), max(left, 0), min(top + bh, h), min(left + bw, w))
        self.last_box = box
        return box

    def forward(self, image):
        colour = [int(c) for c in torch.randint(0, 256, (3,))]
        if isinstance(image, Image.Image):
            top, left, bottom, right = self._box(image.height, image.width)
            image = image.copy()
            fill = tuple(colour) if image.mode == "RGB" else colour[0]
            image.paste(fill, (left, top, right, bottom))
            return image
        if isinstance(image, torch.Tensor) and image.ndim == 3:
            top, left, bottom, right = self._box(image.shape[-2], image.shape[-1])
            value = torch.tensor([colour[c % 3] for c in range(image.shape[0])])
            if image.is_floating_point():
                value = value.float() / 255.0
            image = image.clone()
            image[:, top:bottom, left:right] = value.to(image.dtype).view(-1, 1, 1)
            return image
        raise TypeError(f"Cutout takes a PIL image or a [C, H, W] tensor, got {type(image)}")

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


@RECIPES.register("official")
def official_recipe() -> list[Callable]:
    """The official L2D code: Cutout 0.5, then its own RandAugment."""
    return [Cutout(0.5), OfficialRandAugment()]


@RECIPES.register("official_torchvision")
def official_torchvision_recipe() -> list[Callable]:
    """Cutout 0.5, then torchvision's RandAugment."""
    return [Cutout(0.5), T.RandAugment()]


@RECIPES.register("paper")
def paper_recipe() -> list[Callable]:
    """The paper's text: horizontal flip, Cutout 0.5, RandAugment."""
    return [T.RandomHorizontalFlip(), Cutout(0.5), T.RandAugment()]


@RECIPES.register("none")
def no_augmentation() -> list[Callable]:
    return []


def build_transform(recipe: str, img_size: int, train: bool, normalize: bool = False) -> Callable:
    """A callable PIL image -> float tensor [3, img_size, img_size] (values in [0, 1] unless
    ``normalize``). ``recipe``: a name in :data:`RECIPES`; ``train`` picks the augmenting side."""
    augment = RECIPES.get(recipe, "data.recipe")
    if isinstance(img_size, bool) or not isinstance(img_size, int) or img_size <= 0:
        raise ConfigError(f"img_size must be a positive integer, got {img_size!r}")
    ops: list[Callable] = [T.Resize((img_size, img_size))]
    if train:
        ops += augment()
    ops.append(T.ToTensor())
    if normalize:
        ops.append(T.Normalize(IMAGENET_MEAN, IMAGENET_STD))
    return T.Compose(ops)
