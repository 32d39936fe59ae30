"""Pascal VOC 2007 (``voc2007``): ImageSets/Main/{trainval,test}.txt + Annotations/*.xml.

Split "train" is ``trainval`` (5,011 images), "test" is ``test`` (4,952). Targets follow
:data:`VOC_CLASSES` (the 20 classes in the standard order).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable

from mlkd.data.images import MultiLabelImageDataset, dataset_builder, read_lines
from mlkd.data.registry import DATASETS
from mlkd.errors import ConfigError, DataError

VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]
DIFFICULT_POLICIES = ("positive", "ignore", "negative")
_IMAGE_SETS = {"train": "trainval", "test": "test"}
# Where VOC2007 may sit under a given root: itself, the devkit, the two tarballs' folders
# (as the official L2D README lays them out).
_CANDIDATES = {
    "train": (".", "VOC2007", "VOCdevkit/VOC2007", "VOCtrainval2007/VOCdevkit/VOC2007"),
    "test": (".", "VOC2007", "VOCdevkit/VOC2007", "VOCtest2007/VOCdevkit/VOC2007"),
}


def find_voc2007(root: str | Path, split: str) -> Path:
    """The VOC2007 folder under ``root`` whose ImageSets/Main holds the split's image set."""
    root = Path(root).expanduser()
    image_set = f"ImageSets/Main/{_IMAGE_SETS[split]}.txt"
    tried = [root / rel for rel in _CANDIDATES[split]]
    for folder in tried:
        if (folder / image_set).is_file():
            return folder.resolve()
    raise DataError(f"voc2007 {split}: no {image_set} under {root} (looked in "
                    f"{', '.join(str(p) for p in tried)}); set root (and test_root if the test "
                    "set is extracted elsewhere) to a VOCdevkit or VOC2007 folder")


def parse_voc_xml(path: Path) -> list[tuple[str, bool]]:
    """The (class name, difficult) of every object in one VOC annotation file."""
    try:
        tree = ET.parse(path)
    except FileNotFoundError:
        raise DataError(f"voc2007: annotation file not found: {path}") from None
    except (ET.ParseError, OSError) as err:
        raise DataError(f"voc2007: malformed XML in {path}: {err}") from err
    objects = []
    for k, obj in enumerate(tree.getroot().iter("object")):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise DataError(f"voc2007: object {k} in {path} has no <name>")
        flag = (obj.findtext("difficult") or "0").strip()
        if flag not in ("0", "1"):
            raise DataError(f"voc2007: object {k} ({name}) in {path} has <difficult>{flag}"
                            "</difficult>; expected 0 or 1")
        objects.append((name, flag == "1"))
    return objects


class VOCDataset(MultiLabelImageDataset):
    """VOC 2007 images with their image-level labels; see :func:`build_voc2007`.

    ``difficult_only[i]`` lists the classes of sample i that appear only as difficult objects
    (whatever the policy), so that an evaluation may mask them.
    """

    difficult_only: list[tuple[int, ...]]


@DATASETS.register("voc2007")
@dataset_builder("voc2007")
def build_voc2007(split: str, transform: Callable | None = None, *, root: str,
                  test_root: str | None = None, difficult: str = "positive",
                  on_missing: str = "error", on_bad_image: str = "error") -> VOCDataset:
    """Pascal VOC 2007, split "train" (trainval) or "test".

    Options:
      root: a VOCdevkit folder, a VOC2007 folder, or a folder holding VOCtrainval2007/ and
        VOCtest2007/ (each with VOCdevkit/VOC2007 inside).
      test_root: where the test set lives when it is extracted apart from trainval
        (default: root).
      difficult: how objects marked ``<difficult>1</difficult>`` count.
        "positive" (default, the official L2D code): every object makes its class positive.
        "negative": difficult objects are dropped, so a class seen only as difficult in an image
        is a 0 in its target. "ignore": the same targets as "negative" (targets are 0/1 and
        cannot say "unknown"); the classes in question are listed in ``difficult_only`` for an
        evaluator that wants to mask them.
      on_missing: "error" (default) | "skip" for JPEGs absent from JPEGImages/ (checked at
        construction).
      on_bad_image: "error" (default) | "skip" for images that fail to decode when loaded.

    Every annotation file is parsed at construction: a missing or malformed XML file or an
    unknown class name is a DataError naming the file.
    """
    if split not in _IMAGE_SETS:
        raise ConfigError(f"voc2007: split must be 'train' or 'test', got {split!r}")
    if difficult not in DIFFICULT_POLICIES:
        raise ConfigError(f"voc2007: option difficult must be one of "
                          f"{', '.join(DIFFICULT_POLICIES)}, got {difficult!r}")
    folder = find_voc2007(test_root if (split == "test" and test_root) else root, split)
    set_file = folder / "ImageSets" / "Main" / f"{_IMAGE_SETS[split]}.txt"
    ids = [line.split()[0] for line in read_lines(set_file, "VOC image set")]
    index = {name: k for k, name in enumerate(VOC_CLASSES)}
    samples, difficult_only = [], []
    for image_id in ids:
        xml_path = folder / "Annotations" / f"{image_id}.xml"
        plain, hard = set(), set()
        for name, is_difficult in parse_voc_xml(xml_path):
            if name not in index:
                raise DataError(f"voc2007: unknown class {name!r} in {xml_path}; expected one "
                                f"of the 20 VOC classes ({', '.join(VOC_CLASSES)})")
            (hard if is_difficult else plain).add(index[name])
        labels = plain | hard if difficult == "positive" else plain
        samples.append((str(folder / "JPEGImages" / f"{image_id}.jpg"), tuple(labels)))
        difficult_only.append(tuple(sorted(hard - plain)))
    dataset = VOCDataset(samples, VOC_CLASSES, transform, on_bad_image=on_bad_image,
                         on_missing=on_missing, name="voc2007", split=split, source=set_file)
    kept = {path for path, _ in dataset.samples}
    dataset.difficult_only = [d for (path, _), d in zip(samples, difficult_only) if path in kept]
    dataset.difficult = difficult
    return dataset
