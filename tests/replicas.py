"""Tiny on-disk replicas of the real dataset layouts, in their exact official file formats.

Each ``write_*`` function writes real (small, noisy) JPEGs with Pillow and real annotation files,
and returns what a builder needs. The default samples are chosen to catch mistakes: VOC has
difficult-only classes, COCO uses categories whose id order differs from alphabetical order
(plus a crowd annotation and an image without labels), NUS-WIDE lists concepts in a
non-alphabetical order with backslash paths and CRLF line ends.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from PIL import Image

from mlkd.data.coco import COCO_CATEGORIES

# ---------------------------------------------------------------- images


def write_jpeg(path: str | Path, size: tuple[int, int] = (40, 30), seed: int = 0) -> Path:
    """A small noisy RGB JPEG (noise makes truncation cut real image data)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    noise = bytes(rng.randrange(256) for _ in range(3 * size[0] * size[1]))
    image = Image.frombytes("RGB", size, noise)
    image.save(path, "JPEG", quality=90)
    return path


def corrupt_file(path: str | Path) -> Path:
    """Overwrite a file with bytes that are not an image."""
    Path(path).write_bytes(b"this is not a JPEG\x00\x01\x02" * 8)
    return Path(path)


def truncate_file(path: str | Path, keep: float = 0.5) -> Path:
    """Keep only the first ``keep`` fraction of a file's bytes (a truncated download)."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * keep)])
    return Path(path)


# ---------------------------------------------------------------- Pascal VOC 2007

# image set -> {image id: [(class name, difficult)]}
VOC_SAMPLE: dict[str, dict[str, list[tuple[str, int]]]] = {
    "trainval": {
        "000005": [("chair", 0), ("chair", 1), ("pottedplant", 1)],
        "000007": [("car", 0)],
        "000009": [("horse", 0), ("person", 0), ("person", 1)],
        "000012": [("tvmonitor", 1)],
    },
    "test": {
        "000001": [("dog", 0), ("person", 0)],
        "000002": [("train", 0)],
        "000004": [("car", 1), ("bottle", 0), ("bottle", 1)],
    },
}


def voc_xml(image_id: str, objects: Sequence[tuple[str, int]], size=(40, 30)) -> str:
    """One annotation file in the VOC2007 format."""
    objs = "".join(
        f"\t<object>\n\t\t<name>{name}</name>\n\t\t<pose>Unspecified</pose>\n"
        f"\t\t<truncated>0</truncated>\n\t\t<difficult>{difficult}</difficult>\n"
        f"\t\t<bndbox>\n\t\t\t<xmin>{1 + k}</xmin>\n\t\t\t<ymin>2</ymin>\n"
        f"\t\t\t<xmax>{20 + k}</xmax>\n\t\t\t<ymax>25</ymax>\n\t\t</bndbox>\n\t</object>\n"
        for k, (name, difficult) in enumerate(objects)
    )
    return (
        f"<annotation>\n\t<folder>VOC2007</folder>\n\t<filename>{image_id}.jpg</filename>\n"
        "\t<source>\n\t\t<database>The VOC2007 Database</database>\n"
        "\t\t<annotation>PASCAL VOC2007</annotation>\n\t\t<image>flickr</image>\n"
        "\t</source>\n"
        f"\t<size>\n\t\t<width>{size[0]}</width>\n\t\t<height>{size[1]}</height>\n"
        "\t\t<depth>3</depth>\n\t</size>\n\t<segmented>0</segmented>\n"
        f"{objs}</annotation>\n"
    )


def write_voc2007(folder: Path, image_set: str, images: Mapping[str, Sequence]) -> Path:
    """Write one image set into a VOC2007 folder; returns the folder."""
    (folder / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    (folder / "Annotations").mkdir(parents=True, exist_ok=True)
    (folder / "ImageSets" / "Main" / f"{image_set}.txt").write_text("".join(f"{image_id}\n" for image_id in images))
    for k, (image_id, objects) in enumerate(images.items()):
        (folder / "Annotations" / f"{image_id}.xml").write_text(voc_xml(image_id, objects))
        write_jpeg(folder / "JPEGImages" / f"{image_id}.jpg", seed=k)
    return folder


def write_voc(root: str | Path, sample=VOC_SAMPLE, layout: str = "devkit") -> dict[str, str]:
    """VOC 2007 replica; returns the builder options (root, and test_root if separate).

    layout "devkit": root/VOCdevkit/VOC2007 holds both image sets (both tarballs extracted in
    one place); "separate": root/trainval/VOCdevkit/VOC2007 and root/test/VOCdevkit/VOC2007;
    "l2d": root/VOCtrainval2007/VOCdevkit/VOC2007 and root/VOCtest2007/VOCdevkit/VOC2007.
    """
    root = Path(root)
    if layout == "devkit":
        for image_set, images in sample.items():
            write_voc2007(root / "VOCdevkit" / "VOC2007", image_set, images)
        return {"root": str(root / "VOCdevkit")}
    if layout == "separate":
        write_voc2007(root / "trainval" / "VOCdevkit" / "VOC2007", "trainval", sample["trainval"])
        write_voc2007(root / "test" / "VOCdevkit" / "VOC2007", "test", sample["test"])
        return {"root": str(root / "trainval"), "test_root": str(root / "test")}
    if layout == "l2d":
        write_voc2007(root / "VOCtrainval2007" / "VOCdevkit" / "VOC2007", "trainval", sample["trainval"])
        write_voc2007(root / "VOCtest2007" / "VOCdevkit" / "VOC2007", "test", sample["test"])
        return {"root": str(root)}
    raise ValueError(layout)


# ---------------------------------------------------------------- MS-COCO 2014

# subset -> {image id: [category names, one per annotation]}; "*" marks a crowd annotation.
COCO_SAMPLE: dict[str, dict[int, list[str]]] = {
    "train2014": {
        9: ["bowl", "broccoli", "orange", "orange"],
        25: ["giraffe", "*zebra"],
        30: ["potted plant", "vase", "bicycle"],
        34: [],
    },
    "val2014": {
        42: ["dog"],
        73: ["motorcycle", "person", "airplane"],
        74: ["person", "dog", "bicycle", "toothbrush"],
    },
}


def coco_file_name(subset: str, image_id: int) -> str:
    return f"COCO_{subset}_{image_id:012d}.jpg"


def coco_instances(subset: str, images: Mapping[int, Sequence[str]], size=(40, 30)) -> dict:
    """An instances_<subset>.json document (pycocotools-valid, all 80 categories)."""
    ids = {name: cid for cid, name in COCO_CATEGORIES}
    doc = {
        "info": {"description": "mlkd replica", "version": "1.0", "year": 2014},
        "licenses": [{"id": 1, "name": "replica", "url": ""}],
        "images": [],
        "annotations": [],
        "categories": [
            {"supercategory": "thing", "id": cid, "name": name} for cid, name in reversed(COCO_CATEGORIES)
        ],  # file order is irrelevant
    }
    ann_id = 1
    for image_id, names in images.items():
        doc["images"].append(
            {
                "license": 1,
                "file_name": coco_file_name(subset, image_id),
                "coco_url": "",
                "height": size[1],
                "width": size[0],
                "date_captured": "2013-11-14 16:28:13",
                "flickr_url": "",
                "id": image_id,
            }
        )
        for name in names:
            crowd = name.startswith("*")
            ann = {
                "id": ann_id,
                "image_id": image_id,
                "category_id": ids[name.lstrip("*")],
                "bbox": [2.0, 3.0, 10.0, 12.0],
                "area": 120.0,
                "iscrowd": int(crowd),
                "segmentation": (
                    {"counts": [6, 10, 1184], "size": [size[1], size[0]]}
                    if crowd
                    else [[2.0, 3.0, 12.0, 3.0, 12.0, 15.0, 2.0, 15.0]]
                ),
            }
            doc["annotations"].append(ann)
            ann_id += 1
    return doc


def write_coco(root: str | Path, sample=COCO_SAMPLE) -> Path:
    """root/{train2014,val2014}/*.jpg + root/annotations/instances_{train,val}2014.json."""
    root = Path(root)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for subset, images in sample.items():
        for k, image_id in enumerate(images):
            write_jpeg(root / subset / coco_file_name(subset, image_id), seed=image_id + k)
        (root / "annotations" / f"instances_{subset}.json").write_text(json.dumps(coco_instances(subset, images)))
    return root


def write_coco_list(
    path: str | Path, subset: str, images: Mapping[int, Sequence[str]], keep_empty: bool = False
) -> Path:
    """An official L2D list file: indices into the 80 names SORTED ALPHABETICALLY."""
    alphabetical = sorted(name for _, name in COCO_CATEGORIES)
    entries = []
    for image_id, names in images.items():
        labels = sorted({alphabetical.index(n.lstrip("*")) for n in names}, reverse=True)
        if labels or keep_empty:
            entries.append({"file_name": coco_file_name(subset, image_id), "labels": labels})
    Path(path).write_text(json.dumps(entries))
    return Path(path)


# ---------------------------------------------------------------- NUS-WIDE

NUS_CONCEPTS = ["sky", "animal", "water", "airport", "beach"]  # file order, not alphabetical
# part -> [(concept folder, file name, concepts)]
NUS_SAMPLE: dict[str, list[tuple[str, str, list[str]]]] = {
    "Train": [
        ("actor", "0001_2124494179.jpg", ["sky", "water"]),
        ("airport", "0002_1234567890.jpg", ["airport", "sky"]),
        ("animal", "0003_2222222222.jpg", ["animal"]),
        ("beach", "0004_3333333333.jpg", []),
        ("beach", "0005_4444444444.jpg", ["beach", "water", "sky"]),
    ],
    "Test": [
        ("water", "0001_5555555555.jpg", ["water"]),
        ("sky", "0002_6666666666.jpg", ["sky", "animal"]),
        ("zebra", "0003_7777777777.jpg", []),
    ],
}


def write_nuswide(
    root: str | Path, concepts=NUS_CONCEPTS, sample=NUS_SAMPLE, missing: Iterable[str] = (), sep: str = "\\"
) -> Path:
    """Official NUS-WIDE layout; files named in ``missing`` are listed but not written."""
    root = Path(root)
    missing = set(missing)
    (root / "ImageList").mkdir(parents=True, exist_ok=True)
    (root / "TrainTestLabels").mkdir(parents=True, exist_ok=True)
    (root / "Concepts81.txt").write_text("".join(f"{c}\r\n" for c in concepts), newline="")
    for part, rows in sample.items():
        (root / "ImageList" / f"{part}Imagelist.txt").write_text(
            "".join(f"{folder}{sep}{name}\r\n" for folder, name, _ in rows), newline=""
        )
        for concept in concepts:
            (root / "TrainTestLabels" / f"Labels_{concept}_{part}.txt").write_text(
                "".join(f"{int(concept in labels)} \r\n" for _, _, labels in rows), newline=""
            )
        for k, (folder, name, _) in enumerate(rows):
            if name not in missing:
                write_jpeg(root / "Flickr" / folder / name, seed=k)
    return root


# ---------------------------------------------------------------- generic list files

LIST_SAMPLE: dict[str, list[tuple[str, list[str]]]] = {
    "train": [
        ("img/a.jpg", ["dog", "person"]),
        ("img/b.jpg", ["cat"]),
        ("img/sub/c.jpg", []),
        ("img/d.jpg", ["person"]),
    ],
    "test": [("img/e.jpg", ["cat", "dog"]), ("img/f.jpg", ["zebra"])],
}


def write_list(
    path: str | Path,
    rows: Sequence[tuple[str, Sequence[str]]],
    image_root: str | Path | None = None,
    images: bool = True,
) -> Path:
    """A list file (.csv: header path,labels with '|'-separated names; .json: list of
    {"path", "labels"}), plus its JPEGs under image_root (default: the list file's folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        path.write_text("path,labels\n" + "".join(f"{p},{'|'.join(n)}\n" for p, n in rows))
    else:
        path.write_text(json.dumps([{"path": p, "labels": list(n)} for p, n in rows], indent=1))
    base = Path(image_root) if image_root else path.parent
    if images:
        for k, (rel, _) in enumerate(rows):
            write_jpeg(base / rel, seed=k)
    return path


def write_classes(path: str | Path, classes: Sequence[str]) -> Path:
    Path(path).write_text("".join(f"{c}\n" for c in classes))
    return Path(path)
