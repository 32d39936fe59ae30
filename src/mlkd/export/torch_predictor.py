"""The PyTorch side of ``mlkd predict``: a run folder, checkpoint or safetensors export folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


class TorchPredictor:
    """Scores images with the model of ``path`` (eval mode, RepVGG branches fused), with the
    thresholds an export of it would carry."""

    def __init__(self, path: str | Path):
        from mlkd.export.weights import CONFIG, WEIGHTS, load_safetensors

        path = Path(path)
        if (path / WEIGHTS).is_file() and (path / CONFIG).is_file():
            self.net, info = load_safetensors(path)
            self.classes, self.img_size = list(info["classes"]), int(info["img_size"])
            thresholds = info["thresholds"]
        else:
            from mlkd.export.source import load_student

            student = load_student(path)
            self.net, self.classes, self.img_size = student.net, student.classes, student.img_size
            thresholds = student.thresholds
        self.thresholds = np.asarray(thresholds, dtype=np.float64)

    @torch.no_grad()
    def probabilities(self, images: np.ndarray) -> np.ndarray:
        return self.net(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)))[1].numpy()
