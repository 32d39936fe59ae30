"""MS-COCO 2014 (``coco2014``) from the instances files or from the official L2D list files.

Split "train" is train2014, "test" is val2014. Targets follow the category-id order
(:data:`COCO_CATEGORIES`: person=1 ... toothbrush=90), never the alphabetical order of the
official L2D lists, whose label indices are mapped through the class names.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path
from typing import Any, Callable, Mapping

from pycocotools.coco import COCO

from mlkd.data.images import MultiLabelImageDataset, dataset_builder
from mlkd.data.registry import DATASETS
from mlkd.errors import ConfigError, DataError

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
_IDS = (*range(1, 12), *range(13, 26), 27, 28, *range(31, 45), *range(46, 66), 67, 70,
        *range(72, 83), *range(84, 91))
#: The 80 COCO categories as (category id, name), in category-id order.
COCO_CATEGORIES = tuple((cid, name.replace("_", " ")) for cid, name in zip(_IDS, _NAMES))
COCO_CLASSES = [name for _, name in COCO_CATEGORIES]
_SUBSETS = {"train": "train2014", "test": "val2014"}


def alphabetical_to_category_order(classes: list[str] = COCO_CLASSES) -> list[int]:
    """Position in ``classes`` of each name of ``sorted(classes)``: maps an official L2D label
    index (alphabetical order; 49 is person) to the category-id order (person is 0)."""
    return [classes.index(name) for name in sorted(classes)]


def load_instances(path: Path) -> COCO:
    """A pycocotools COCO index of an instances file; a DataError if it cannot be read."""
    if not path.is_file():
        raise DataError(f"coco2014: instances file not found: {path}; set root to the folder "
                        "holding train2014/, val2014/ and annotations/ (or use list_file)")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            return COCO(str(path))
    except Exception as err:  # json errors, "annotation file format ... not supported", ...
        raise DataError(f"coco2014: cannot read instances file {path} "
                        f"({type(err).__name__}: {err})") from err


def samples_from_instances(coco: COCO, path: Path, image_dir: Path):
    """(classes in category-id order, [(image path, labels)]) from a COCO index.

    Every annotation counts, crowd ones included (82,081 labelled train2014 images).
    """
    try:
        cats = sorted(coco.dataset["categories"], key=lambda c: int(c["id"]))
        classes = [str(c["name"]) for c in cats]
        position = {int(c["id"]): k for k, c in enumerate(cats)}
        images = coco.dataset["images"]
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"coco2014: malformed instances file {path}: bad or missing "
                        f"'categories'/'images' ({type(err).__name__}: {err})") from err
    if not classes:
        raise DataError(f"coco2014: instances file {path} lists no categories")
    samples = []
    for info in images:
        labels = set()
        for ann in coco.imgToAnns.get(info["id"], []):
            if ann.get("category_id") not in position:
                raise DataError(f"coco2014: annotation {ann.get('id')} in {path} has category_id "
                                f"{ann.get('category_id')!r}, which is not in its categories")
            labels.add(position[ann["category_id"]])
        samples.append((str(image_dir / info["file_name"]), tuple(labels)))
    return classes, samples


def samples_from_list(path: Path, classes: list[str], image_dir: Path):
    """[(image path, labels)] from an official L2D list ``[{"file_name", "labels"}]``.

    Its label indices refer to the class names sorted alphabetically; they are mapped to
    ``classes`` (category-id order) through the names.
    """
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"coco2014: list file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"coco2014: malformed JSON in list file {path}: {err}") from err
    if not isinstance(entries, list):
        raise DataError(f"coco2014: list file {path} must hold a JSON list of "
                        '{"file_name": ..., "labels": [indices]} objects')
    to_ours = alphabetical_to_category_order(classes)
    samples = []
    for k, entry in enumerate(entries):
        if (not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str)
                or not isinstance(entry.get("labels"), list)):
            raise DataError(f"coco2014: entry {k} of list file {path} must be "
                            f'{{"file_name": str, "labels": [int]}}, got {entry!r:.80}')
        labels = []
        for j in entry["labels"]:
            if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < len(classes):
                raise DataError(f"coco2014: entry {k} ({entry['file_name']}) of list file "
                                f"{path} has label {j!r}; expected an index in "
                                f"[0, {len(classes)}) into the alphabetical class names")
            labels.append(to_ours[j])
        samples.append((str(image_dir / entry["file_name"]), tuple(labels)))
    return samples


def _list_path(list_file: Any, split: str) -> Path:
    if isinstance(list_file, Mapping):
        if split not in list_file:
            raise ConfigError(f"coco2014: list_file has no {split!r} entry; give "
                              "{train: path, test: path}")
        return Path(list_file[split]).expanduser()
    if isinstance(list_file, (str, Path)):
        return Path(list_file).expanduser()
    raise ConfigError(f"coco2014: list_file must be a path or {{train: path, test: path}}, "
                      f"got {list_file!r}")


@DATASETS.register("coco2014")
@dataset_builder("coco2014")
def build_coco2014(split: str, transform: Callable | None = None, *, root: str,
                   list_file: Any = None, keep_empty: bool = False, on_missing: str = "error",
                   on_bad_image: str = "error") -> MultiLabelImageDataset:
    """MS-COCO 2014, split "train" (train2014) or "test" (val2014).

    Options:
      root: the folder holding train2014/, val2014/ and annotations/instances_{train,val}2014.json
        (images are root/<train2014|val2014>/<file_name>).
      list_file: instead of the instances files, the official L2D lists
        (``[{"file_name": ..., "labels": [indices]}]``, indices into the 80 names sorted
        alphabetically): ``{train: path, test: path}``, or one path for the split being built.
        The instances files are not read then; targets follow the built-in
        :data:`COCO_CATEGORIES` (category-id order), like the instances path.
      keep_empty: keep images without any label (default False, as the paper: 82,081 / 40,137).
      on_missing: "error" (default) | "skip" for image files absent on disk (checked at
        construction, one stat per image).
      on_bad_image: "error" (default) | "skip" for images that fail to decode when loaded.
    """
    if split not in _SUBSETS:
        raise ConfigError(f"coco2014: split must be 'train' or 'test', got {split!r}")
    root_dir = Path(root).expanduser()
    subset = _SUBSETS[split]
    image_dir = root_dir / subset
    instances = root_dir / "annotations" / f"instances_{subset}.json"
    if list_file is None:
        classes, samples = samples_from_instances(load_instances(instances), instances, image_dir)
        source = instances
    else:
        source = _list_path(list_file, split)
        classes = COCO_CLASSES
        samples = samples_from_list(source, classes, image_dir)
    if not keep_empty:
        before = len(samples)
        samples = [s for s in samples if s[1]]
        logger.info("coco2014 %s: dropped %d images without labels (keep_empty=False)",
                    split, before - len(samples))
    return MultiLabelImageDataset(samples, classes, transform, on_bad_image=on_bad_image,
                                  on_missing=on_missing, name="coco2014", split=split,
                                  source=source)
