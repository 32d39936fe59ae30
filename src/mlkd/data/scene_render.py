"""Drawing one ``coco_scenes`` image: instances of each labelled class pasted on a background.

Every class of the label set gets 1 to ``max_per_class`` instances (extras only while the image
has fewer than ``max_objects``); each instance has a random font (drawing style), size,
position (inside the canvas), horizontal flip and stacking order. **Visible fraction**: every
pasted instance keeps at least ``VISIBLE_FRACTION`` (50%) of its own mask pixels (sprite alpha
> 127) uncovered by the instances above it. A placement that would break this for an instance
below is retried (up to ``_TRIES`` times, each smaller); an extra instance that still does not
fit is dropped; a class's first instance that does not fit restarts the scene at a smaller
scale, so every labelled class keeps at least one instance.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np
from PIL import Image

from mlkd.errors import DataError

VISIBLE_FRACTION = 0.5
_TRIES = 30
_RESTARTS = 8
_MIN_SIDE = 8


class Scene(NamedTuple):
    """image uint8 [S, S, 3]; per instance in stacking order (bottom first): classes int [n],
    fonts int [n] (index into the sprite sets) and masks bool [n, S, S] (its own footprint,
    occluded or not)."""

    image: np.ndarray
    classes: np.ndarray
    fonts: np.ndarray
    masks: np.ndarray


def background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A random plain, gradient or smooth-noise (blotches around one colour, plus grain)
    background, uint8 [size, size, 3]."""
    kind = rng.integers(3)
    if kind == 0:
        return np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (size, size, 3)).copy()
    if kind == 1:
        a, b = rng.uniform(0, 255, (2, 3))
        angle = rng.uniform(0, 2 * math.pi)
        ramp = np.linspace(-1, 1, size)
        t = (np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None]) / 2**0.5 / 2 + 0.5
        return (a + (b - a) * t[..., None]).astype(np.uint8)
    cells = (int(rng.integers(2, 6)),) * 2 + (1,)  # colour blotches around one random colour
    coarse = np.clip(
        rng.uniform(40, 215, 3) + rng.uniform(-70, 70, cells) + rng.uniform(-25, 25, cells[:2] + (3,)), 0, 255
    ).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), np.float32)
    grain = rng.normal(0, rng.uniform(2, 14), (size, size, 1)).astype(np.float32)
    return np.clip(smooth + grain, 0, 255).astype(np.uint8)


def _instance_classes(labels: Sequence[int], rng, max_per_class: int, max_objects: int):
    """(classes [n], required [n]): one required instance per label, then extras."""
    classes, required = list(labels), [True] * len(labels)
    for c in labels:
        for _ in range(int(rng.integers(0, max_per_class))):
            if len(classes) >= max_objects:
                break
            classes.append(c)
            required.append(False)
    order = rng.permutation(len(classes))  # stacking order, bottom first
    return np.asarray(classes)[order], np.asarray(required)[order]


def _fits(owner: np.ndarray, visible: np.ndarray, need: np.ndarray, box, mask) -> np.ndarray | None:
    """Pixels each placed instance would lose [n] if ``mask`` is pasted at ``box``, or None if
    one would fall below its need."""
    x, y = box
    region = owner[y : y + mask.shape[0], x : x + mask.shape[1]]
    lost = np.bincount(region[mask & (region >= 0)], minlength=len(visible))
    return None if np.any(visible - lost < need) else lost


def _place(sprite: Image.Image, side: float, owner, visible, need, rng):
    """(resized sprite, box (x, y), mask bool [h, w], pixels lost by each placed instance [n])
    of the first of ``_TRIES`` random placements, each 10% smaller, that keeps every placed
    instance at its need; None if none does."""
    size = owner.shape[0]
    w, h = sprite.size
    for _ in range(_TRIES):
        f = min(side / max(w, h), (size - 1) / max(w, h))
        shape = (max(_MIN_SIDE // 2, round(w * f)), max(_MIN_SIDE // 2, round(h * f)))
        placed = sprite.resize(shape, Image.BILINEAR)
        mask = np.asarray(placed.getchannel("A")) > 127
        box = (int(rng.integers(0, size - shape[0] + 1)), int(rng.integers(0, size - shape[1] + 1)))
        lost = _fits(owner, visible, need, box, mask) if mask.any() else None
        if lost is not None:
            return placed, box, mask, lost
        side = max(_MIN_SIDE, side * 0.9)
    return None


def _try_layout(classes, required, sprite_sets, size, rng, scale) -> Scene | None:
    """The scene at ``scale``, or None when a required instance does not fit."""
    n = len(classes)
    canvas = Image.fromarray(background(size, rng))
    owner = np.full((size, size), -1, np.int64)  # the instance on top at each pixel
    visible, need = np.zeros(n, np.int64), np.zeros(n, np.int64)
    fonts, masks, kept = np.zeros(n, np.int64), np.zeros((n, size, size), bool), np.zeros(n, bool)
    base = size * scale * min(0.6, max(0.22, 0.95 / math.sqrt(n)))
    for k in range(n):
        fonts[k] = rng.integers(len(sprite_sets))
        sprite = sprite_sets[fonts[k]][classes[k]]
        if rng.random() < 0.5:
            sprite = sprite.transpose(Image.FLIP_LEFT_RIGHT)
        found = _place(sprite, base * rng.uniform(0.7, 1.3), owner, visible, need, rng)
        if found is None:
            if required[k]:
                return None
            continue
        placed, (x, y), mask, lost = found
        canvas.paste(placed, (x, y), placed)
        h, w = mask.shape
        owner[y : y + h, x : x + w][mask] = k
        masks[k, y : y + h, x : x + w] = mask
        visible -= lost
        visible[k] = int(mask.sum())
        need[k] = math.ceil(VISIBLE_FRACTION * visible[k])
        kept[k] = True
    return Scene(np.asarray(canvas), classes[kept], fonts[kept], masks[kept])


def render_scene(
    labels: Sequence[int],
    sprite_sets: Sequence[Sequence[Image.Image]],
    size: int,
    rng: np.random.Generator,
    max_per_class: int = 3,
    max_objects: int = 12,
) -> Scene:
    """One scene of the class indices ``labels`` (each drawn at least once) on a ``size`` px
    canvas; ``sprite_sets[f][c]`` is class c's RGBA sprite in font f."""
    classes, required = _instance_classes(labels, rng, max_per_class, max(max_objects, len(labels)))
    scale = 1.0
    for _ in range(_RESTARTS):
        scene = _try_layout(classes, required, sprite_sets, size, rng, scale)
        if scene is not None:
            return scene
        scale *= 0.7
    raise DataError(
        f"coco_scenes: cannot place {len(classes)} objects of classes {list(labels)} "
        f"on a {size} px canvas with {VISIBLE_FRACTION:.0%} of each visible; use a "
        "larger img_size or a smaller max_objects"
    )
