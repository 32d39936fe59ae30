"""Attention maps per queried class: LayerCAM on the backbone and the head's cross-attention.

- **CAM** (the paper's attention-map figure): LayerCAM (default) or Grad-CAM from the ``grad-cam`` package
  (``pytorch_grad_cam``) on the backbone's penultimate stage — the module that produces
  ``ModelOutput.features[-2]`` (timm ``feature_info[-2]``, e.g. ``layer3`` of a ResNet), or
  any module named with ``layer``. The target is the queried class's logit z_c. The package
  keeps the positive part, upsamples to the input size (bilinear) and min-max scales each map
  to [0, 1].
- **Cross-attention**: the label-wise head's attention weights of the query of class c over
  the T = h*w tokens of the final feature map (``model(x, return_attention=True)``, averaged
  over heads, eval mode): [h, w] maps that sum to 1, upsampled bilinearly to the input size
  for display and scoring.

Numbers, over the first ``score_images`` test images and every positive class of each:
- ``cam_vs_teacher`` / ``xattn_vs_teacher``: mean Pearson correlation (over (image, class)
  pairs, pixels at input resolution) between a model's map and the teacher's; any dataset.
- ``cam_in_class`` / ``xattn_in_class`` (mosaic data only, where the cell of every item is
  known): the fraction of the map's mass inside the cells holding the queried class, averaged
  over pairs; ``chance`` is the same fraction for a uniform map (the mean area of those cells).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlkd import optional
from mlkd.analysis.common import Analysis, pyplot, write_json
from mlkd.errors import ConfigError

CAM_METHODS = ("layercam", "gradcam")


class _Logits(nn.Module):
    """The network seen as x -> logits [B,q] (what pytorch_grad_cam expects)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).logits


def penultimate_layer(model: nn.Module, layer: Optional[str] = None) -> tuple[str, nn.Module, int]:
    """(module name inside ``model``, module, its channel count) of the penultimate backbone stage
    (timm ``feature_info[-2]``, the map ``ModelOutput.features[-2]`` holds), or of ``layer``."""
    timm_model = model.backbone.model
    info = list(timm_model.feature_info)
    if layer is None:
        if len(info) < 2:
            raise ConfigError("attention: the backbone has a single stage; name a layer with --layer")
        entry = info[-2]
        name, channels = entry["module"], int(entry["num_chs"])
        return f"backbone.model.{name}", timm_model.get_submodule(name), channels
    try:
        module = model.get_submodule(layer)
    except AttributeError:
        raise ConfigError(f"attention: no module {layer!r} in the model (e.g. backbone.model.layer3)") from None
    return layer, module, -1


def class_activation_maps(
    model: nn.Module,
    images: torch.Tensor,
    classes: Sequence[int],
    method: str = "layercam",
    layer: Optional[str] = None,
) -> np.ndarray:
    """CAMs [B,H,W] float32 in [0,1] of ``images [B,3,H,W]`` for target logits ``classes [B]``."""
    grad_cam = optional.optional_import("pytorch_grad_cam", extra="analysis", purpose="attention maps")
    model_targets = optional.optional_import(
        "pytorch_grad_cam.utils.model_targets", extra="analysis", purpose="attention maps"
    )
    GradCAM, LayerCAM = grad_cam.GradCAM, grad_cam.LayerCAM
    ClassifierOutputTarget = model_targets.ClassifierOutputTarget

    if method not in CAM_METHODS:
        raise ConfigError(f"attention: unknown CAM method {method!r}; use one of {CAM_METHODS}")
    _, module, channels = penultimate_layer(model, layer)

    def to_nchw(t: torch.Tensor) -> torch.Tensor:  # Swin-like stages are NHWC
        if t.ndim == 4 and channels > 0 and t.shape[1] != channels and t.shape[-1] == channels:
            return t.permute(0, 3, 1, 2)
        return t

    was_training = model.training
    model.eval()
    cam_cls = LayerCAM if method == "layercam" else GradCAM
    cam = cam_cls(model=_Logits(model), target_layers=[module], reshape_transform=to_nchw)
    try:
        with torch.enable_grad():
            maps = cam(
                input_tensor=images.detach().clone().requires_grad_(True),
                targets=[ClassifierOutputTarget(int(c)) for c in classes],
            )
    finally:
        cam.activations_and_grads.release()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return np.asarray(maps, dtype=np.float32)


@torch.no_grad()
def cross_attention_maps(
    model: nn.Module, images: torch.Tensor, classes: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """(raw [B,h,w], upsampled [B,H,W]) head cross-attention of class ``classes[b]``'s query on
    image b. Each raw map sums to 1 over its h*w positions (softmax weights, mean over heads)."""
    was_training = model.training
    model.eval()
    out = model(images, return_attention=True)
    model.train(was_training)
    if out.attention is None:
        raise ConfigError("attention: this model's head has no cross-attention (a linear head); use CAM only")
    attn = out.attention.float()  # [B,q,T]
    t = attn.shape[-1]
    h, w = out.features[-1].shape[-2:] if out.features and out.features[-1].ndim == 4 else (0, 0)
    if h * w != t:
        side = int(round(math.sqrt(t)))
        if side * side != t:
            raise ConfigError(f"attention: cannot lay {t} attention tokens out on a grid")
        h, w = side, side
    picked = attn[torch.arange(len(images)), torch.as_tensor(list(classes), dtype=torch.long)]  # [B,T]
    raw = picked.reshape(-1, h, w)
    up = F.interpolate(raw[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return raw.cpu().numpy(), up.cpu().numpy()


def mosaic_class_masks(
    dataset, positions: Sequence[int], classes: Sequence[int], size: tuple[int, int]
) -> Optional[np.ndarray]:
    """bool [n,H,W]: the input-image pixels of the mosaic cells that hold class ``classes[j]`` in
    test image ``positions[j]``; None when ``dataset`` is not a mosaic dataset."""
    from mlkd.data.sources import load_source

    base = getattr(dataset, "dataset", dataset)  # a Subset of the first images
    if not hasattr(base, "cells") or not hasattr(base, "grid"):
        return None
    opts = base.options
    source = load_source(opts["source"], base.split, opts["source_dir"], opts["cell_size"])
    cells = base.cells[np.asarray(positions)]  # [n, g*g]
    cell_class = np.where(cells >= 0, source.labels[np.maximum(cells, 0)], -1)
    hit = cell_class == np.asarray(classes)[:, None]  # [n, g*g]
    g, (height, width) = base.grid, size
    rows = np.minimum(np.arange(height) * g // height, g - 1)
    cols = np.minimum(np.arange(width) * g // width, g - 1)
    cell_of_pixel = rows[:, None] * g + cols[None, :]  # [H,W]
    return hit[:, cell_of_pixel]


def mass_fraction(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """[n]: share of each non-negative map's total inside its mask (NaN for an all-zero map)."""
    total = maps.reshape(len(maps), -1).sum(axis=1)
    inside = (maps * masks).reshape(len(maps), -1).sum(axis=1)
    return np.divide(inside, total, out=np.full(len(maps), np.nan), where=total > 0)


def map_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[n]: Pearson correlation of each pair of maps a[j], b[j] (NaN when either is constant)."""
    x = a.reshape(len(a), -1).astype(np.float64)
    y = b.reshape(len(b), -1).astype(np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    den = np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
    return np.divide((x * y).sum(axis=1), den, out=np.full(len(x), np.nan), where=den > 0)


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


def _maps(
    analysis: Analysis,
    name: str,
    positions: list[int],
    classes: list[int],
    method: str,
    layer: Optional[str],
    batch: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    model = analysis.get(name).model
    cams, xattn = [], []
    for start in range(0, len(positions), batch):
        images = analysis.input_batch(positions[start : start + batch])
        chosen = classes[start : start + batch]
        cams.append(class_activation_maps(model, images, chosen, method, layer))
        xattn.append(cross_attention_maps(model, images, chosen)[1])
    return np.concatenate(cams), np.concatenate(xattn)


def figure(analysis: Analysis, position: int, classes: list[int], maps: dict, path: Path, method: str) -> None:
    """Rows = models; columns = the image, then CAM and cross-attention for each class."""
    plt = pyplot()
    names = list(maps)
    cols = 1 + 2 * len(classes)
    fig, axes = plt.subplots(len(names), cols, figsize=(1.7 * cols, 1.8 * len(names)), squeeze=False)
    image = analysis.image(position)
    gray = image.mean(axis=2)
    for r, name in enumerate(names):
        axes[r, 0].imshow(image)
        axes[r, 0].set_ylabel(name, fontsize=8)
        for j, c in enumerate(classes):
            cam, xattn = maps[name][0][j], maps[name][1][j]
            for k, (m, label) in enumerate(((cam, method), (xattn / max(float(xattn.max()), 1e-12), "x-attn"))):
                ax = axes[r, 1 + 2 * j + k]
                ax.imshow(gray, cmap="gray")
                ax.imshow(m, cmap="jet", alpha=0.5, vmin=0, vmax=1)
                if r == 0:
                    ax.set_title(f"{analysis.classes[c]}: {label}", fontsize=7)
    if len(names):
        axes[0, 0].set_title(f"test image {position}", fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(
    analysis: Analysis,
    out: Path,
    images: Optional[list[int]] = None,
    classes: Optional[list[str]] = None,
    score_images: int = 64,
    method: str = "layercam",
    layer: Optional[str] = None,
    max_classes: int = 2,
) -> dict:
    """Write attention_<image>.png per chosen image and attention.json; return the numbers."""
    out.mkdir(parents=True, exist_ok=True)
    targets = analysis.targets().astype(bool)
    n = len(targets)
    names = [analysis.teacher] + analysis.students()
    images = images if images is not None else [int(i) for i in np.where(targets.any(axis=1))[0][:2]]
    bad = [i for i in images if not 0 <= i < n]
    if bad:
        raise ConfigError(f"attention: image positions {bad} are outside the test split (0..{n - 1})")
    if classes is not None:
        unknown = [c for c in classes if c not in analysis.classes]
        if unknown:
            raise ConfigError(f"attention: unknown classes {unknown}; the classes are {analysis.classes}")
        class_ids = [analysis.classes.index(c) for c in classes]
    files = []
    for position in images:
        chosen = class_ids if classes is not None else [int(c) for c in np.where(targets[position])[0][:max_classes]]
        if not chosen:
            continue
        maps = {name: _maps(analysis, name, [position] * len(chosen), chosen, method, layer) for name in names}
        path = out / f"attention_{position}.png"
        figure(analysis, position, chosen, maps, path, method)
        files.append(str(path))
    # Numbers over every (image, positive class) pair of the first score_images images.
    pairs = [(i, int(c)) for i in range(min(score_images, n)) for c in np.where(targets[i])[0]]
    scores: dict[str, dict[str, float]] = {name: {} for name in names}
    chance = math.nan
    if pairs:
        positions, pair_classes = [p for p, _ in pairs], [c for _, c in pairs]
        all_maps = {name: _maps(analysis, name, positions, pair_classes, method, layer) for name in names}
        size = all_maps[names[0]][0].shape[-2:]
        masks = mosaic_class_masks(analysis.dataset, positions, pair_classes, size)
        if masks is not None:
            chance = float(masks.reshape(len(masks), -1).mean(axis=1).mean())
        teacher_maps = all_maps[analysis.teacher]
        for name in names:
            cam, xattn = all_maps[name]
            if masks is not None:
                scores[name]["cam_in_class"] = _nanmean(mass_fraction(cam, masks))
                scores[name]["xattn_in_class"] = _nanmean(mass_fraction(xattn, masks))
            if name != analysis.teacher:
                scores[name]["cam_vs_teacher"] = _nanmean(map_correlation(cam, teacher_maps[0]))
                scores[name]["xattn_vs_teacher"] = _nanmean(map_correlation(xattn, teacher_maps[1]))
    summary = {
        "analysis": "attention",
        "method": method,
        "layer": {name: penultimate_layer(analysis.get(name).model, layer)[0] for name in names},
        "teacher": analysis.teacher,
        "shown_images": images,
        "scored_pairs": len(pairs),
        "chance_in_class": chance,
        "scores": scores,
        "files": files,
    }
    write_json(summary, out / "attention.json")
    return summary
