"""Pascal VOC (``voc2007``, ``voc2012``, ``voc0712``): ImageSets/Main/<set>.txt + Annotations/*.xml.

- ``voc2007`` (the paper's): train = VOC2007 ``trainval`` (5,011 images), test = ``test`` (4,952).
- ``voc2012``: train = VOC2012 ``train`` (5,717), test = ``val`` (5,823); VOC2012's test
  annotations are not public (evaluation server), so ``test_set: test`` is refused.
- ``voc0712`` (the common "07+12"): train = VOC2007 ``trainval`` + VOC2012 ``trainval``
  (16,551), test = VOC2007 ``test`` (4,952).

Targets follow :data:`VOC_CLASSES` (the 20 classes in the standard order) for every year. A
folder of the wrong year is refused (its name VOC<year>, or its image ids: ``000005`` in 2007,
``2008_000002`` in 2012), never loaded under another dataset's name.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable

from mlkd.data.images import MultiLabelImageDataset, dataset_builder, read_lines
from mlkd.errors import ConfigError, DataError
from mlkd.registries import DATASETS

VOC_CLASSES = [
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]
DIFFICULT_POLICIES = ("positive", "ignore", "negative")
IMAGE_SETS = ("train", "val", "trainval", "test")
_ID_FORMS = {"2007": re.compile(r"\d{6}"), "2012": re.compile(r"\d{4}_\d{6}")}
_OTHER_NAMES = "use data.name=voc2007 (trainval/test), voc2012 (train/val) or voc0712 (07+12)"


def _candidates(year: str, image_set: str) -> tuple[str, ...]:
    """Where VOC<year> may sit under a given root: itself, VOC<year>, the devkit, and the
    tarballs' folders as the official L2D README lays them out."""
    tarball = "VOCtest" if image_set == "test" else "VOCtrainval"
    return (".", f"VOC{year}", f"VOCdevkit/VOC{year}", f"{tarball}{year}/VOCdevkit/VOC{year}")


def folder_year(folder: Path, ids: list[str]) -> str | None:
    """The VOC year of ``folder``: from its name (VOC2007, VOC2012), else from its image ids
    (``000005``: 2007; ``2008_000002``: 2012); None if neither says."""
    named = re.fullmatch(r"VOC(\d{4})", folder.name)
    if named:
        return named.group(1)
    for year, form in _ID_FORMS.items():
        if ids and form.fullmatch(ids[0]):
            return year
    return None


def find_voc(root: str | Path, year: str, image_set: str, name: str) -> Path:
    """The VOC<year> folder under ``root`` whose ImageSets/Main holds ``image_set``.txt.

    A folder of another year is refused (one line naming it and the dataset name to use)."""
    root = Path(root).expanduser()
    rel = f"ImageSets/Main/{image_set}.txt"
    tried = [root / c for c in _candidates(year, image_set)]
    wrong = []
    for folder in tried:
        set_file = folder / rel
        if set_file.is_file():
            found = folder_year(folder.resolve(), read_set_ids(set_file)[:1])
            if found in (None, year):
                return folder.resolve()
            wrong.append((folder, found))
    if wrong:
        folder, found = wrong[0]
        raise DataError(
            f"{name}: {folder} is a VOC{found} folder, not VOC{year}; {_OTHER_NAMES}, "
            f"or set root to the folder holding VOC{year}"
        )
    others = [
        str(p) for y in _ID_FORMS if y != year for p in (root / "VOCdevkit" / f"VOC{y}", root / f"VOC{y}") if p.is_dir()
    ]
    hint = f" ({root} holds {', '.join(others)}: {_OTHER_NAMES})" if others else ""
    raise DataError(
        f"{name}: no {rel} of VOC{year} under {root} (looked in "
        f"{', '.join(str(p) for p in tried)}){hint}; set root (and test_root if the "
        f"test set is extracted elsewhere) to a VOCdevkit or VOC{year} folder"
    )


def read_set_ids(path: Path) -> list[str]:
    """The image ids of an ImageSets/Main/<set>.txt file (first column)."""
    return [line.split()[0] for line in read_lines(path, "VOC image set")]


def parse_voc_xml(path: Path) -> list[tuple[str, bool]]:
    """The (class name, difficult) of every object in one VOC annotation file."""
    try:
        tree = ET.parse(path)
    except FileNotFoundError:
        raise DataError(f"VOC annotation file not found: {path}") from None
    except (ET.ParseError, OSError) as err:
        raise DataError(f"VOC: malformed XML in {path}: {err}") from err
    objects = []
    for k, obj in enumerate(tree.getroot().iter("object")):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise DataError(f"VOC: object {k} in {path} has no <name>")
        flag = (obj.findtext("difficult") or "0").strip()
        if flag not in ("0", "1"):
            raise DataError(f"VOC: object {k} ({name}) in {path} has <difficult>{flag}</difficult>; expected 0 or 1")
        objects.append((name, flag == "1"))
    return objects


def read_voc_set(folder: Path, image_set: str, difficult: str, name: str):
    """([(JPEG path, labels)], [difficult-only classes]) of one image set of a VOC folder."""
    set_file = folder / "ImageSets" / "Main" / f"{image_set}.txt"
    index = {c: k for k, c in enumerate(VOC_CLASSES)}
    samples, difficult_only = [], []
    for image_id in read_set_ids(set_file):
        xml_path = folder / "Annotations" / f"{image_id}.xml"
        plain, hard = set(), set()
        for cls, is_difficult in parse_voc_xml(xml_path):
            if cls not in index:
                raise DataError(
                    f"{name}: unknown class {cls!r} in {xml_path}; expected one "
                    f"of the 20 VOC classes ({', '.join(VOC_CLASSES)})"
                )
            (hard if is_difficult else plain).add(index[cls])
        labels = plain | hard if difficult == "positive" else plain
        samples.append((str(folder / "JPEGImages" / f"{image_id}.jpg"), tuple(labels)))
        difficult_only.append(tuple(sorted(hard - plain)))
    return samples, difficult_only


class VOCDataset(MultiLabelImageDataset):
    """VOC images with their image-level labels; see :func:`build_voc2007`.

    ``difficult_only[i]`` lists the classes of sample i that appear only as difficult objects
    (whatever the policy), so that an evaluation may mask them.
    """

    difficult_only: list[tuple[int, ...]]


def _check_options(name: str, split: str, difficult: str, sets: dict[str, str]) -> None:
    if split not in ("train", "test"):
        raise ConfigError(f"{name}: split must be 'train' or 'test', got {split!r}")
    if difficult not in DIFFICULT_POLICIES:
        raise ConfigError(f"{name}: option difficult must be one of {', '.join(DIFFICULT_POLICIES)}, got {difficult!r}")
    for option, value in sets.items():
        if value not in IMAGE_SETS:
            raise ConfigError(f"{name}: option {option} must be one of {', '.join(IMAGE_SETS)}, got {value!r}")


def build_voc(
    name: str,
    split: str,
    transform: Callable | None,
    parts: list[tuple[str, str, str]],
    difficult: str,
    on_missing: str,
    on_bad_image: str,
) -> VOCDataset:
    """The VOCDataset of ``parts``: [(root, year, image set)] read one after the other."""
    samples, difficult_only, sources = [], [], []
    for root, year, image_set in parts:
        folder = find_voc(root, year, image_set, name)
        part_samples, part_difficult = read_voc_set(folder, image_set, difficult, name)
        samples += part_samples
        difficult_only += part_difficult
        sources.append(str(folder / "ImageSets" / "Main" / f"{image_set}.txt"))
    dataset = VOCDataset(
        samples,
        VOC_CLASSES,
        transform,
        on_bad_image=on_bad_image,
        on_missing=on_missing,
        name=name,
        split=split,
        source=" + ".join(sources),
    )
    kept = {path for path, _ in dataset.samples}
    dataset.difficult_only = [d for (path, _), d in zip(samples, difficult_only) if path in kept]
    dataset.difficult = difficult
    return dataset


@DATASETS.register("voc2007")
@dataset_builder("voc2007")
def build_voc2007(
    split: str,
    transform: Callable | None = None,
    *,
    root: str,
    test_root: str | None = None,
    difficult: str = "positive",
    train_set: str = "trainval",
    test_set: str = "test",
    on_missing: str = "error",
    on_bad_image: str = "error",
) -> VOCDataset:
    """Pascal VOC 2007, split "train" (trainval) or "test".

    Options:
      root: a VOCdevkit folder, a VOC2007 folder, or a folder holding VOCtrainval2007/ and
        VOCtest2007/ (each with VOCdevkit/VOC2007 inside). A VOC2012 folder is refused.
      test_root: where the test set lives when it is extracted apart from trainval
        (default: root).
      difficult: how objects marked ``<difficult>1</difficult>`` count.
        "positive" (default, the official L2D code): every object makes its class positive.
        "negative": difficult objects are dropped, so a class seen only as difficult in an image
        is a 0 in its target. "ignore": the same targets as "negative" (targets are 0/1 and
        cannot say "unknown"); the classes in question are listed in ``difficult_only`` for an
        evaluator that wants to mask them.
      train_set, test_set: the image sets of the two splits (default trainval / test; any of
        train, val, trainval, test).
      on_missing: "error" (default) | "skip" for JPEGs absent from JPEGImages/ (checked at
        construction) | "unchecked" (labels only: the files are not looked at).
      on_bad_image: "error" (default) | "skip" for images that fail to decode when loaded.

    Every annotation file is parsed at construction: a missing or malformed XML file or an
    unknown class name is a DataError naming the file.
    """
    _check_options("voc2007", split, difficult, {"train_set": train_set, "test_set": test_set})
    where = test_root if (split == "test" and test_root) else root
    image_set = train_set if split == "train" else test_set
    return build_voc("voc2007", split, transform, [(where, "2007", image_set)], difficult, on_missing, on_bad_image)


@DATASETS.register("voc2012")
@dataset_builder("voc2012")
def build_voc2012(
    split: str,
    transform: Callable | None = None,
    *,
    root: str,
    difficult: str = "positive",
    train_set: str = "train",
    test_set: str = "val",
    on_missing: str = "error",
    on_bad_image: str = "error",
) -> VOCDataset:
    """Pascal VOC 2012, split "train" (``train``, 5,717 images) or "test" (``val``, 5,823).

    root: a VOCdevkit folder or a VOC2012 folder (a VOC2007 folder is refused). train_set /
    test_set choose other image sets (e.g. ``train_set: trainval`` with ``data.holdout``);
    ``test_set: test`` is refused, VOC2012's test annotations being withheld by the evaluation
    server. The other options are those of ``voc2007``.
    """
    _check_options("voc2012", split, difficult, {"train_set": train_set, "test_set": test_set})
    if "test" in (train_set, test_set):
        raise ConfigError(
            "voc2012: the VOC2012 test set has no public annotations (evaluation "
            "server only); use test_set: val, or data.name=voc0712 to test on VOC2007 test"
        )
    image_set = train_set if split == "train" else test_set
    return build_voc("voc2012", split, transform, [(root, "2012", image_set)], difficult, on_missing, on_bad_image)


@DATASETS.register("voc0712")
@dataset_builder("voc0712")
def build_voc0712(
    split: str,
    transform: Callable | None = None,
    *,
    root: str,
    root2012: str | None = None,
    test_root: str | None = None,
    difficult: str = "positive",
    on_missing: str = "error",
    on_bad_image: str = "error",
) -> VOCDataset:
    """VOC "07+12": split "train" is VOC2007 trainval + VOC2012 trainval (16,551 images, 2007's
    first), "test" is VOC2007 test (4,952).

    Options:
      root: a VOCdevkit folder holding VOC2007/ and VOC2012/ (the three tarballs extracted in one
        place), or a folder where each is found as for voc2007 / voc2012.
      root2012: where VOC2012 sits when it is apart from VOC2007 (default: root).
      test_root: where the VOC2007 test set sits when apart (default: root).
      difficult, on_missing, on_bad_image: as for voc2007.
    """
    _check_options("voc0712", split, difficult, {})
    if split == "train":
        parts = [(root, "2007", "trainval"), (root2012 or root, "2012", "trainval")]
    else:
        parts = [(test_root or root, "2007", "test")]
    return build_voc("voc0712", split, transform, parts, difficult, on_missing, on_bad_image)
