"""``mlkd predict``: labels above their thresholds, with scores, for image files.

For an ONNX export this module needs only numpy, Pillow and onnxruntime (no torch, no mlkd
training code): the class names, thresholds and input size are read from the model's
metadata_props. Images are prepared as the run's evaluation transform prepares them: RGB,
resized to S x S with bilinear filtering (aspect ratio not kept), scaled to [0, 1], NCHW. A run
folder, checkpoint or safetensors export is scored by PyTorch instead
(``mlkd.export.torch_predictor``), with the same preparation and output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Protocol, Sequence

import numpy as np

from mlkd.optional import optional_import


class Predictor(Protocol):
    classes: list[str]
    thresholds: np.ndarray
    img_size: int

    def probabilities(self, images: np.ndarray) -> np.ndarray: ...


def load_image(path: str | Path, size: int) -> np.ndarray:
    """An image file as float32 [3, size, size] RGB in [0, 1]."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB").resize((size, size), Image.BILINEAR)
        return np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / np.float32(255.0)


class OnnxPredictor:
    """An ``mlkd export --format onnx`` file run by ONNX Runtime on CPU."""

    def __init__(self, path: str | Path, threads: int | None = None):
        ort = optional_import("onnxruntime", extra="export", purpose="running an ONNX export")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            self.classes = list(json.loads(meta["mlkd.classes"]))
            self.thresholds = np.asarray(json.loads(meta["mlkd.thresholds"]), dtype=np.float64)
            self.img_size = int(json.loads(meta["mlkd.img_size"]))
        except KeyError as err:
            raise ValueError(f"{path}: no {err.args[0]} in its metadata; export it with mlkd export") from None

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """images float32 [B,3,S,S] -> probabilities [B,q]."""
        return self.session.run(["probabilities"], {"images": np.ascontiguousarray(images, dtype=np.float32)})[0]


def load_predictor(path: str | Path) -> Predictor:
    """An ONNX file -> :class:`OnnxPredictor`; a run folder, checkpoint or safetensors export
    folder -> the PyTorch predictor."""
    if Path(path).suffix == ".onnx":
        return OnnxPredictor(path)
    from mlkd.export.torch_predictor import TorchPredictor

    return TorchPredictor(path)


def read_list(path: str | Path) -> list[str]:
    """Image paths of a list file: one a line; blank lines and lines starting with # skipped;
    relative paths are relative to the list file's folder."""
    path = Path(path)
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [
        str(path.parent / line) if not Path(line).is_absolute() else line
        for line in lines
        if line and not line.startswith("#")
    ]


def predict_files(predictor: Predictor, files: Sequence[str], batch_size: int = 16) -> list[dict]:
    """One dict per image: {"image", "labels": [{"label", "score", "threshold"}, ...]} (labels
    scoring >= their threshold, highest score first)."""
    rows = []
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        images = np.stack([load_image(f, predictor.img_size) for f in chunk])
        for file, probs in zip(chunk, predictor.probabilities(images)):
            above = np.flatnonzero(probs >= predictor.thresholds)
            above = above[np.argsort(-probs[above], kind="stable")]
            rows.append(
                {
                    "image": str(file),
                    "labels": [
                        {
                            "label": predictor.classes[k],
                            "score": round(float(probs[k]), 6),
                            "threshold": round(float(predictor.thresholds[k]), 6),
                        }
                        for k in above
                    ],
                }
            )
    return rows


def format_rows(rows: Iterable[dict], fmt: str = "jsonl") -> str:
    """JSON lines (one object per image) or a plain table (image, then label:score pairs)."""
    if fmt == "jsonl":
        return "".join(json.dumps(row) + "\n" for row in rows)
    lines = []
    for row in rows:
        labels = ", ".join(f"{item['label']}:{item['score']:.3f}" for item in row["labels"]) or "-"
        lines.append(f"{row['image']}\t{labels}")
    return "\n".join(lines) + "\n"
