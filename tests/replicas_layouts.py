"""Replicas of the dataset layouts users commonly bring, beside the paper's (``replicas.py``):
COCO 2017, Pascal VOC 2012 (and 07+12), NUS-WIDE as NUS distributes it and as ASL / ML-Decoder
users have it, and the list layouts of other repositories.

Written from the formats' public documentation, not from mlkd's tables: the COCO categories
below are typed from the COCO 2017 instances files (id, name, supercategory), the VOC 2012 XML
from the devkit's annotations (owner, person parts, occluded, per-class set files), the NUS-WIDE
files as NUS distributes them (ConceptsList/, Groundtruth/TrainTestLabels/, ImageList/ with
Windows backslash paths and CRLF). Each writer returns what a builder needs.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Mapping, Sequence

from replicas import write_jpeg

# ---------------------------------------------------------------- MS-COCO 2017

# (id, name, supercategory) as in instances_val2017.json's "categories".
COCO2017_CATEGORIES = [
    (1, "person", "person"),
    (2, "bicycle", "vehicle"),
    (3, "car", "vehicle"),
    (4, "motorcycle", "vehicle"),
    (5, "airplane", "vehicle"),
    (6, "bus", "vehicle"),
    (7, "train", "vehicle"),
    (8, "truck", "vehicle"),
    (9, "boat", "vehicle"),
    (10, "traffic light", "outdoor"),
    (11, "fire hydrant", "outdoor"),
    (13, "stop sign", "outdoor"),
    (14, "parking meter", "outdoor"),
    (15, "bench", "outdoor"),
    (16, "bird", "animal"),
    (17, "cat", "animal"),
    (18, "dog", "animal"),
    (19, "horse", "animal"),
    (20, "sheep", "animal"),
    (21, "cow", "animal"),
    (22, "elephant", "animal"),
    (23, "bear", "animal"),
    (24, "zebra", "animal"),
    (25, "giraffe", "animal"),
    (27, "backpack", "accessory"),
    (28, "umbrella", "accessory"),
    (31, "handbag", "accessory"),
    (32, "tie", "accessory"),
    (33, "suitcase", "accessory"),
    (34, "frisbee", "sports"),
    (35, "skis", "sports"),
    (36, "snowboard", "sports"),
    (37, "sports ball", "sports"),
    (38, "kite", "sports"),
    (39, "baseball bat", "sports"),
    (40, "baseball glove", "sports"),
    (41, "skateboard", "sports"),
    (42, "surfboard", "sports"),
    (43, "tennis racket", "sports"),
    (44, "bottle", "kitchen"),
    (46, "wine glass", "kitchen"),
    (47, "cup", "kitchen"),
    (48, "fork", "kitchen"),
    (49, "knife", "kitchen"),
    (50, "spoon", "kitchen"),
    (51, "bowl", "kitchen"),
    (52, "banana", "food"),
    (53, "apple", "food"),
    (54, "sandwich", "food"),
    (55, "orange", "food"),
    (56, "broccoli", "food"),
    (57, "carrot", "food"),
    (58, "hot dog", "food"),
    (59, "pizza", "food"),
    (60, "donut", "food"),
    (61, "cake", "food"),
    (62, "chair", "furniture"),
    (63, "couch", "furniture"),
    (64, "potted plant", "furniture"),
    (65, "bed", "furniture"),
    (67, "dining table", "furniture"),
    (70, "toilet", "furniture"),
    (72, "tv", "electronic"),
    (73, "laptop", "electronic"),
    (74, "mouse", "electronic"),
    (75, "remote", "electronic"),
    (76, "keyboard", "electronic"),
    (77, "cell phone", "electronic"),
    (78, "microwave", "appliance"),
    (79, "oven", "appliance"),
    (80, "toaster", "appliance"),
    (81, "sink", "appliance"),
    (82, "refrigerator", "appliance"),
    (84, "book", "indoor"),
    (85, "clock", "indoor"),
    (86, "vase", "indoor"),
    (87, "scissors", "indoor"),
    (88, "teddy bear", "indoor"),
    (89, "hair drier", "indoor"),
    (90, "toothbrush", "indoor"),
]

# subset -> {image id: [category names, one per annotation]}; "*" marks a crowd annotation.
COCO2017_SAMPLE: dict[str, dict[int, list[str]]] = {
    "train2017": {
        9: ["bowl", "broccoli", "orange", "orange"],
        25: ["giraffe", "*person"],
        30: ["potted plant", "vase"],
        36: [],
        49: ["toothbrush", "airplane", "zebra"],
    },
    "val2017": {
        139: ["person", "tv", "chair", "chair", "potted plant", "dining table"],
        285: ["bear"],
        632: [],
        724: ["*stop sign", "car"],
    },
}


def coco2017_file_name(image_id: int) -> str:
    return f"{image_id:012d}.jpg"


def coco2017_instances(images: Mapping[int, Sequence[str]], size=(40, 30)) -> dict:
    """An instances_<subset>2017.json document as the 2017 release writes it."""
    ids = {name: cid for cid, name, _ in COCO2017_CATEGORIES}
    doc = {
        "info": {
            "description": "COCO 2017 Dataset",
            "url": "http://cocodataset.org",
            "version": "1.0",
            "year": 2017,
            "contributor": "COCO Consortium",
            "date_created": "2017/09/01",
        },
        "licenses": [
            {
                "url": "http://creativecommons.org/licenses/by-nc-sa/2.0/",
                "id": 1,
                "name": "Attribution-NonCommercial-ShareAlike License",
            }
        ],
        "images": [],
        "annotations": [],
        "categories": [{"supercategory": sup, "id": cid, "name": name} for cid, name, sup in COCO2017_CATEGORIES],
    }
    ann_id = 100
    for image_id, names in images.items():
        doc["images"].append(
            {
                "license": 1,
                "file_name": coco2017_file_name(image_id),
                "coco_url": f"http://images.cocodataset.org/val2017/{coco2017_file_name(image_id)}",
                "height": size[1],
                "width": size[0],
                "date_captured": "2013-11-14 17:02:52",
                "flickr_url": "http://farm7.staticflickr.com/x.jpg",
                "id": image_id,
            }
        )
        for name in names:
            crowd = name.startswith("*")
            doc["annotations"].append(
                {
                    "segmentation": (
                        {"counts": [6, 10, 1184], "size": [size[1], size[0]]}
                        if crowd
                        else [[2.0, 3.0, 12.0, 3.0, 12.0, 15.0, 2.0, 15.0]]
                    ),
                    "area": 120.0,
                    "iscrowd": int(crowd),
                    "image_id": image_id,
                    "bbox": [2.0, 3.0, 10.0, 12.0],
                    "category_id": ids[name.lstrip("*")],
                    "id": ann_id,
                }
            )
            ann_id += 7
    return doc


def write_coco2017(root: str | Path, sample=COCO2017_SAMPLE, images_folder: str = "") -> Path:
    """root/{train2017,val2017}/<12-digit id>.jpg (or root/<images_folder>/<subset>/...) and
    root/annotations/instances_{train,val}2017.json."""
    root = Path(root)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for subset, images in sample.items():
        for k, image_id in enumerate(images):
            write_jpeg(root / images_folder / subset / coco2017_file_name(image_id), seed=image_id + k)
        (root / "annotations" / f"instances_{subset}.json").write_text(json.dumps(coco2017_instances(images)))
    return root


# ---------------------------------------------------------------- Pascal VOC 2012

# The 20 classes in the devkit's order (VOCinit.m's VOCopts.classes).
VOC_DEVKIT_CLASSES = (
    "aeroplane bicycle bird boat bottle bus car cat chair cow diningtable dog "
    "horse motorbike person pottedplant sheep sofa train tvmonitor"
).split()

# image set -> {image id: [(class, difficult or None when the tag is absent, person parts)]}
VOC2012_SAMPLE: dict[str, dict[str, list[tuple[str, int | None, tuple[str, ...]]]]] = {
    "train": {
        "2008_000008": [("horse", 0, ()), ("person", 0, ("head", "hand"))],
        "2008_000015": [("bottle", 1, ()), ("bottle", 0, ())],
        "2009_000040": [("sofa", 1, ()), ("cat", None, ())],
        "2011_001022": [("aeroplane", 0, ())],
    },
    "val": {
        "2008_000002": [("tvmonitor", 0, ())],
        "2010_000027": [("person", 1, ("foot",)), ("dog", 0, ())],
        "2012_004331": [("diningtable", 0, ()), ("chair", 0, ()), ("chair", 1, ())],
    },
}


def voc2012_xml(image_id: str, objects, size=(40, 30)) -> str:
    """One annotation file as VOC2012's Annotations/ writes it (tags in alphabetical order,
    person parts with their own <name>, <occluded>, sometimes no <difficult>)."""

    def box(k):
        return f"<bndbox><xmax>{20 + k}</xmax><xmin>{1 + k}</xmin><ymax>25</ymax><ymin>2</ymin></bndbox>"

    objs = []
    for k, (name, difficult, parts) in enumerate(objects):
        tag = "" if difficult is None else f"<difficult>{difficult}</difficult>"
        part = "".join(f"<part>{box(j)}<name>{p}</name></part>" for j, p in enumerate(parts))
        objs.append(
            f"\t<object>\n\t\t<name>{name}</name>\n\t\t{box(k)}\n\t\t{tag}\n"
            f"\t\t<occluded>0</occluded>{part}\n\t\t<pose>Unspecified</pose>\n"
            "\t\t<truncated>1</truncated>\n\t</object>\n"
        )
    return (
        f"<annotation>\n\t<filename>{image_id}.jpg</filename>\n\t<folder>VOC2012</folder>\n"
        + "".join(objs)
        + "\t<segmented>0</segmented>\n"
        f"\t<size>\n\t\t<depth>3</depth>\n\t\t<height>{size[1]}</height>\n"
        f"\t\t<width>{size[0]}</width>\n\t</size>\n\t<source>\n"
        "\t\t<annotation>PASCAL VOC2008</annotation>\n"
        "\t\t<database>The VOC2008 Database</database>\n\t\t<image>flickr</image>\n"
        "\t</source>\n</annotation>\n"
    )


def write_class_set_files(folder: Path, image_set: str, images: Mapping[str, Sequence], classes: Sequence[str]) -> None:
    """ImageSets/Main/<class>_<set>.txt: "<id> 1" present, "<id> 0" only difficult, "-1" absent."""
    for cls in classes:
        lines = []
        for image_id, objects in images.items():
            flags = [d for name, d, *_ in objects if name == cls]
            value = -1 if not flags else (1 if any(not d for d in flags) else 0)
            lines.append(f"{image_id} {value:2d}\n")
        (folder / "ImageSets" / "Main" / f"{cls}_{image_set}.txt").write_text("".join(lines))


def read_class_set_files(folder: Path, image_set: str, classes: Sequence[str]) -> dict[str, dict]:
    """{image id: {class: -1 | 0 | 1}} from the per-class set files (the test oracle)."""
    table: dict[str, dict] = {}
    for cls in classes:
        for line in (folder / "ImageSets" / "Main" / f"{cls}_{image_set}.txt").read_text().splitlines():
            image_id, value = line.split()
            table.setdefault(image_id, {})[cls] = int(value)
    return table


def write_voc2012(folder: str | Path, sample=VOC2012_SAMPLE, classes: Sequence[str] = VOC_DEVKIT_CLASSES) -> Path:
    """A VOC2012 folder (train, val and trainval = train + val, as the devkit ships them)."""
    folder = Path(folder)
    (folder / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    (folder / "Annotations").mkdir(parents=True, exist_ok=True)
    sets = {**sample, "trainval": {**sample["train"], **sample["val"]}}
    for image_set, images in sets.items():
        (folder / "ImageSets" / "Main" / f"{image_set}.txt").write_text(
            "".join(f"{image_id}\n" for image_id in sorted(images))
        )
        write_class_set_files(folder, image_set, {i: images[i] for i in sorted(images)}, classes)
    for k, (image_id, objects) in enumerate(sets["trainval"].items()):
        (folder / "Annotations" / f"{image_id}.xml").write_text(voc2012_xml(image_id, objects))
        write_jpeg(folder / "JPEGImages" / f"{image_id}.jpg", seed=100 + k)
    return folder


# ---------------------------------------------------------------- list layouts of other repositories

# (path, class names, split) rows; the classes are deliberately not in alphabetical order of use
LAYOUT_ROWS: list[tuple[str, list[str], str]] = [
    ("images/0001_2124494179.jpg", ["sky", "clouds"], "train"),
    ("images/0002_1234567890.jpg", ["person"], "train"),
    ("images/0003_2222222222.jpg", [], "train"),
    ("images/0004_3333333333.jpg", ["water", "sky", "beach"], "train"),
    ("images/0005_4444444444.jpg", ["clouds"], "val"),
    ("images/0006_5555555555.jpg", ["beach", "person"], "val"),
]


def _csv_text(rows: Sequence[Sequence[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def write_csv_list(
    path: str | Path,
    rows=LAYOUT_ROWS,
    header=("filepath", "label", "split_name"),
    style: str = "python",
    images: bool = True,
) -> Path:
    """A ``filename,labels,split`` CSV whose labels cell is a Python list (``['a', 'b']``, as
    pandas writes ``str(list)``: the layout of ASL's nus_wid_data.csv) or a JSON list."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cells = [[p, str(names) if style == "python" else json.dumps(names), split] for p, names, split in rows]
    path.write_text(_csv_text([list(header), *cells]))
    if images:
        for k, (rel, _, _) in enumerate(rows):
            write_jpeg(path.parent / rel, seed=k)
    return path


def write_txt_list(path: str | Path, rows, images: bool = True) -> Path:
    """``path label1 label2`` lines (the labels as given: names or index strings)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(" ".join([p, *map(str, labels)]) + "\n" for p, labels in rows))
    if images:
        for k, (rel, _) in enumerate(rows):
            write_jpeg(path.parent / rel, seed=k)
    return path


def write_onehot(
    path: str | Path,
    rows,
    classes: Sequence[str],
    path_header: str = "image",
    split: Sequence[str] | None = None,
    images: bool = True,
) -> Path:
    """A CSV with the path column and one 0/1 column per class (header order = class order)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = [path_header, *classes] + (["split"] if split else [])
    body = [
        [p, *[str(int(c in names)) for c in classes]] + ([split[k]] if split else [])
        for k, (p, names) in enumerate(rows)
    ]
    path.write_text(_csv_text([header, *body]))
    if images:
        for k, (rel, _) in enumerate(rows):
            write_jpeg(path.parent / rel, seed=k)
    return path


# ---------------------------------------------------------------- NUS-WIDE as distributed

# The 81 concepts of ConceptsList/Concepts81.txt, in the file's (alphabetical) order.
NUS_CONCEPTS81 = (
    "airport animal beach bear birds boats book bridge buildings cars castle cat cityscape clouds "
    "computer coral cow dancing dog earthquake elk fire fish flags flowers food fox frost garden "
    "glacier grass harbor horses house lake leaf map military moon mountain nighttime ocean person "
    "plane plants police protest railroad rainbow reflection road rocks running sand sign sky snow "
    "soccer sports statue street sun sunset surf swimmers tattoo temple tiger tower town toy train "
    "tree valley vehicle water waterfall wedding whales window zebra"
).split()


def _crlf(lines) -> str:
    return "".join(f"{line}\r\n" for line in lines)


def nus_image_path(root: Path, layout: str, folder: str, name: str) -> Path:
    """Where an image lies: Flickr/<concept>/<file> ("concept"), images/<file> ("flat") or
    images/<Flickr id>.jpg ("flat_id")."""
    if layout == "concept":
        return root / "Flickr" / folder / name
    return root / "images" / (name if layout == "flat" else name.split("_", 1)[1])


def write_nuswide_distributed(
    root: str | Path, concepts: Sequence[str], sample: Mapping, layout: str = "concept", missing: Sequence[str] = ()
) -> Path:
    """NUS-WIDE.zip (ConceptsList/, Groundtruth/{TrainTestLabels,AllLabels}/) and ImageList.zip
    (ImageList/{Imagelist,TrainImagelist,TestImagelist}.txt, Windows paths, CRLF) extracted in
    root, plus the images in ``layout``. ``sample``: part -> [(concept folder, file, concepts)]."""
    root = Path(root)
    for sub in ("ConceptsList", "Groundtruth/TrainTestLabels", "Groundtruth/AllLabels", "ImageList"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "ConceptsList" / "Concepts81.txt").write_text(_crlf(concepts), newline="")
    every = [row for part in ("Train", "Test") for row in sample[part]]
    (root / "ImageList" / "Imagelist.txt").write_text(
        _crlf(f"C:\\ImageData\\Flickr\\{f}\\{n}" for f, n, _ in every), newline=""
    )
    for concept in concepts:
        (root / "Groundtruth" / "AllLabels" / f"Labels_{concept}.txt").write_text(
            _crlf(int(concept in c) for _, _, c in every), newline=""
        )
    for part, rows in sample.items():
        (root / "ImageList" / f"{part}Imagelist.txt").write_text(_crlf(f"{f}\\{n}" for f, n, _ in rows), newline="")
        for concept in concepts:
            (root / "Groundtruth" / "TrainTestLabels" / f"Labels_{concept}_{part}.txt").write_text(
                _crlf(int(concept in c) for _, _, c in rows), newline=""
            )
    for k, (folder, name, _) in enumerate(every):
        if name not in missing:
            write_jpeg(nus_image_path(root, layout, folder, name), seed=k)
    return root


def write_nus_asl(root: str | Path, sample: Mapping, prefix: str = "images/", layout: str = "flat") -> Path:
    """An ASL / ML-Decoder copy: root/nus_wid_data.csv (filepath,label,split_name; the labels a
    Python list as pandas writes ``str(list)``; Train -> train, Test -> val) and the images."""
    root = Path(root)
    rows = [
        (f"{prefix}{name}", list(concepts), "train" if part == "Train" else "val")
        for part in ("Train", "Test")
        for _, name, concepts in sample[part]
    ]
    write_csv_list(root / "nus_wid_data.csv", rows, images=False)
    every = [row for part in ("Train", "Test") for row in sample[part]]
    for k, (folder, name, _) in enumerate(every):
        write_jpeg(nus_image_path(root, layout, folder, name), seed=k)
    return root
