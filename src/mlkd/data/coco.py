"""MS-COCO 2014 (``coco2014``, the paper's) and 2017 (``coco2017``) from the instances files or
from the official L2D list files.

Split "train" is train2014 / train2017, "test" is val2014 / val2017. Both years have the same 80
categories; targets follow the category-id order (:data:`COCO_CATEGORIES`: person=1 ...
toothbrush=90), never the alphabetical order of the official L2D lists, whose label indices are
mapped through the class names. File names: ``COCO_val2014_000000000042.jpg`` (2014),
``000000000139.jpg`` (2017).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from mlkd.data.images import MultiLabelImageDataset, dataset_builder
from mlkd.errors import ConfigError, DataError
from mlkd.optional import optional_import
from mlkd.registries import DATASETS

if TYPE_CHECKING:
    from pycocotools.coco import COCO

logger = logging.getLogger(__name__)

_NAMES = (
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant "
    "stop_sign parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe "
    "backpack umbrella handbag tie suitcase frisbee skis snowboard sports_ball kite baseball_bat "
    "baseball_glove skateboard surfboard tennis_racket bottle wine_glass cup fork knife spoon "
    "bowl banana apple sandwich orange broccoli carrot hot_dog pizza donut cake chair couch "
    "potted_plant bed dining_table toilet tv laptop mouse remote keyboard cell_phone microwave "
    "oven toaster sink refrigerator book clock vase scissors teddy_bear hair_drier toothbrush"
).split()
_IDS = (*range(1, 12), *range(13, 26), 27, 28, *range(31, 45), *range(46, 66), 67, 70, *range(72, 83), *range(84, 91))
#: The 80 COCO categories as (category id, name), in category-id order.
COCO_CATEGORIES = tuple((cid, name.replace("_", " ")) for cid, name in zip(_IDS, _NAMES))
COCO_CLASSES = [name for _, name in COCO_CATEGORIES]
YEARS = ("2014", "2017")
_PARTS = {"train": "train", "test": "val"}


def alphabetical_to_category_order(classes: list[str] = COCO_CLASSES) -> list[int]:
    """Position in ``classes`` of each name of ``sorted(classes)``: maps an official L2D label
    index (alphabetical order; 49 is person) to the category-id order (person is 0)."""
    return [classes.index(name) for name in sorted(classes)]


def other_year_hint(root: Path, year: str) -> str:
    """ "; <root> holds COCO <other year>: use data.name=coco<other>" when ``root`` has the other
    year's instances files or image folders, else ""."""
    for other in YEARS:
        marks = [root / "annotations" / f"instances_{part}{other}.json" for part in _PARTS.values()]
        marks += [root / f"{part}{other}" for part in _PARTS.values()]
        if other != year and any(mark.exists() for mark in marks):
            paper = " (the paper used 2014)" if other == "2017" else ""
            return f"; {root} holds COCO {other}: use data.name=coco{other}{paper}"
    return ""


def load_instances(path: Path, name: str = "coco2014", hint: str = "") -> COCO:
    """A pycocotools COCO index of an instances file; a DataError if it cannot be read.
    ``hint`` ends the not-found message (default: where the file is expected)."""
    if not path.is_file():
        year = name[-4:]
        hint = hint or (
            f"; set root to the folder holding train{year}/, val{year}/ and "
            "annotations/ (or give list_file: {train: path, test: path})"
        )
        raise DataError(f"{name}: instances file not found: {path}{hint}")
    coco_api = optional_import("pycocotools.coco", extra="coco", purpose="the COCO loader")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            return coco_api.COCO(str(path))
    except Exception as err:  # json errors, "annotation file format ... not supported", ...
        raise DataError(f"{name}: cannot read instances file {path} ({type(err).__name__}: {err})") from err


def samples_from_instances(coco: COCO, path: Path, image_dir: Path, name: str = "coco2014"):
    """(classes in category-id order, [(image path, labels)]) from a COCO index.

    Every annotation counts, crowd ones included (82,081 labelled train2014 images).
    """
    try:
        cats = sorted(coco.dataset["categories"], key=lambda c: int(c["id"]))
        classes = [str(c["name"]) for c in cats]
        position = {int(c["id"]): k for k, c in enumerate(cats)}
        images = coco.dataset["images"]
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(
            f"{name}: malformed instances file {path}: bad or missing "
            f"'categories'/'images' ({type(err).__name__}: {err})"
        ) from err
    if not classes:
        raise DataError(f"{name}: instances file {path} lists no categories")
    samples = []
    for info in images:
        labels = set()
        for ann in coco.imgToAnns.get(info["id"], []):
            if ann.get("category_id") not in position:
                raise DataError(
                    f"{name}: annotation {ann.get('id')} in {path} has category_id "
                    f"{ann.get('category_id')!r}, which is not in its categories"
                )
            labels.add(position[ann["category_id"]])
        samples.append((str(image_dir / info["file_name"]), tuple(labels)))
    return classes, samples


def samples_from_list(path: Path, classes: list[str], image_dir: Path, name: str = "coco2014"):
    """[(image path, labels)] from an official L2D list ``[{"file_name", "labels"}]``.

    Its label indices refer to the class names sorted alphabetically; they are mapped to
    ``classes`` (category-id order) through the names.
    """
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{name}: list file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{name}: malformed JSON in list file {path}: {err}") from err
    if not isinstance(entries, list):
        raise DataError(
            f'{name}: list file {path} must hold a JSON list of {{"file_name": ..., "labels": [indices]}} objects'
        )
    to_ours = alphabetical_to_category_order(classes)
    samples = []
    for k, entry in enumerate(entries):
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("file_name"), str)
            or not isinstance(entry.get("labels"), list)
        ):
            raise DataError(
                f"{name}: entry {k} of list file {path} must be "
                f'{{"file_name": str, "labels": [int]}}, got {entry!r:.80}'
            )
        labels = []
        for j in entry["labels"]:
            if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < len(classes):
                raise DataError(
                    f"{name}: entry {k} ({entry['file_name']}) of list file "
                    f"{path} has label {j!r}; expected an index in "
                    f"[0, {len(classes)}) into the alphabetical class names"
                )
            labels.append(to_ours[j])
        samples.append((str(image_dir / entry["file_name"]), tuple(labels)))
    return samples


_SUBSET_IN_NAME = re.compile(r"COCO_(train|val)(\d{4})_")


def check_list_subset(samples, path: Path, subset: str, split: str, name: str) -> None:
    """A DataError if the list file of ``split`` names another subset's images
    (``COCO_train2014_...`` in the test list: the two list files are swapped)."""
    for image, _ in samples:
        found = _SUBSET_IN_NAME.search(Path(image).name)
        if found and found.group(1) + found.group(2) != subset:
            raise DataError(
                f"{name} {split}: list file {path} (list_file.{split}) names "
                f"{found.group(1)}{found.group(2)} images ({Path(image).name}), not "
                f"{subset}; give each split its own file: list_file: "
                "{train: <train list>, test: <val list>}"
            )


def list_path(list_file: Any, split: str, name: str) -> Path:
    """The list file of ``split`` from ``list_file: {train: path, test: path}``. A single path is
    refused: it would be read for both splits (the test split's images looked for in the train
    folder)."""
    if isinstance(list_file, Mapping):
        if split not in list_file or not list_file[split]:
            raise ConfigError(f"{name}: list_file has no {split!r} entry; give list_file: {{train: path, test: path}}")
        return Path(list_file[split]).expanduser()
    if isinstance(list_file, (str, Path)):
        raise ConfigError(
            f"{name}: list_file is one path ({list_file}), which would be read for "
            "both the train and the test split; give one file per split: "
            f"list_file: {{train: <train list>, test: <val list>}}"
        )
    raise ConfigError(f"{name}: list_file must be {{train: path, test: path}}, got {list_file!r:.80}")


def image_folder(root: Path, subset: str) -> Path:
    """root/<subset>, or root/images/<subset> where the images sit there (a common layout)."""
    for folder in (root / subset, root / "images" / subset):
        if folder.is_dir():
            return folder
    return root / subset


def build_coco(
    year: str,
    split: str,
    transform: Callable | None,
    *,
    root: str,
    list_file: Any = None,
    keep_empty: bool = False,
    on_missing: str = "error",
    on_bad_image: str = "error",
) -> MultiLabelImageDataset:
    """COCO ``year`` ("2014" | "2017"), split "train" or "test" (val); options as
    :func:`build_coco2014`."""
    name = f"coco{year}"
    if split not in _PARTS:
        raise ConfigError(f"{name}: split must be 'train' or 'test', got {split!r}")
    root_dir = Path(root).expanduser()
    subset = f"{_PARTS[split]}{year}"
    image_dir = image_folder(root_dir, subset)
    if list_file is None:
        instances = root_dir / "annotations" / f"instances_{subset}.json"
        coco = load_instances(instances, name, other_year_hint(root_dir, year))
        classes, samples = samples_from_instances(coco, instances, image_dir, name)
        source = instances
    else:
        source = list_path(list_file, split, name)
        classes = COCO_CLASSES
        samples = samples_from_list(source, classes, image_dir, name)
        check_list_subset(samples, source, subset, split, name)
    if not keep_empty:
        before = len(samples)
        samples = [s for s in samples if s[1]]
        logger.info("%s %s: dropped %d images without labels (keep_empty=False)", name, split, before - len(samples))
    return MultiLabelImageDataset(
        samples,
        classes,
        transform,
        on_bad_image=on_bad_image,
        on_missing=on_missing,
        name=name,
        split=split,
        source=source,
    )


@DATASETS.register("coco2014")
@dataset_builder("coco2014")
def build_coco2014(
    split: str,
    transform: Callable | None = None,
    *,
    root: str,
    list_file: Any = None,
    keep_empty: bool = False,
    on_missing: str = "error",
    on_bad_image: str = "error",
) -> MultiLabelImageDataset:
    """MS-COCO 2014 (the paper's), split "train" (train2014) or "test" (val2014).

    Options:
      root: the folder holding train2014/, val2014/ and annotations/instances_{train,val}2014.json
        (images are root/<train2014|val2014>/<file_name>, or root/images/<subset>/<file_name>).
      list_file: instead of the instances files, the official L2D lists
        (``[{"file_name": ..., "labels": [indices]}]``, indices into the 80 names sorted
        alphabetically), one per split: ``{train: path, test: path}`` (a single path is refused:
        it would serve both splits). The instances files are not read then; targets follow the
        built-in :data:`COCO_CATEGORIES` (category-id order), like the instances path.
      keep_empty: keep images without any label (default False, as the paper: 82,081 / 40,137).
      on_missing: "error" (default) | "skip" for image files absent on disk (checked at
        construction, one stat per image) | "unchecked" (labels only: the files are not looked at).
      on_bad_image: "error" (default) | "skip" for images that fail to decode when loaded.
    """
    return build_coco(
        "2014",
        split,
        transform,
        root=root,
        list_file=list_file,
        keep_empty=keep_empty,
        on_missing=on_missing,
        on_bad_image=on_bad_image,
    )


@DATASETS.register("coco2017")
@dataset_builder("coco2017")
def build_coco2017(
    split: str,
    transform: Callable | None = None,
    *,
    root: str,
    list_file: Any = None,
    keep_empty: bool = False,
    on_missing: str = "error",
    on_bad_image: str = "error",
) -> MultiLabelImageDataset:
    """MS-COCO 2017, split "train" (train2017) or "test" (val2017): the same 80 categories and
    class order as 2014 (the paper used 2014; its numbers are not comparable with 2017's).

    root holds train2017/, val2017/ and annotations/instances_{train,val}2017.json (file names
    ``000000000139.jpg``); labelled images: 117,266 / 4,952 of 118,287 / 5,000. The other options
    are those of ``coco2014`` (an L2D-style list_file: ``{train: path, test: path}``).
    """
    return build_coco(
        "2017",
        split,
        transform,
        root=root,
        list_file=list_file,
        keep_empty=keep_empty,
        on_missing=on_missing,
        on_bad_image=on_bad_image,
    )
