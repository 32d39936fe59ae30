import random

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from mlkd.data.randaugment_official import OfficialRandAugment
from mlkd.data.transforms import RECIPES, Cutout, build_transform
from mlkd.errors import ConfigError


def noisy(size=(50, 37), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def halves(size=32) -> Image.Image:
    """Left half black, right half white."""
    pixels = np.zeros((size, size, 3), np.uint8)
    pixels[:, size // 2 :] = 255
    return Image.fromarray(pixels)


@pytest.mark.parametrize("recipe", RECIPES.names())
@pytest.mark.parametrize("train", [True, False])
def test_shapes_dtypes_range(recipe, train):
    torch.manual_seed(0)
    out = build_transform(recipe, 48, train)(noisy())
    assert out.shape == (3, 48, 48) and out.dtype == torch.float32
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_normalize_uses_imagenet_statistics():
    image = noisy()
    plain = build_transform("official", 32, False)(image)
    normed = build_transform("official", 32, False, normalize=True)(image)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    assert torch.allclose(normed, (plain - mean) / std, atol=1e-6)


@pytest.mark.parametrize("recipe", RECIPES.names())
def test_eval_is_deterministic_resize_to_tensor(recipe):
    image = noisy()
    t = build_transform(recipe, 40, train=False)
    torch.manual_seed(1)
    a = t(image)
    torch.manual_seed(2)
    random.seed(2)
    b = t(image)
    assert torch.equal(a, b)
    assert torch.equal(a, TF.to_tensor(TF.resize(image, [40, 40])))  # aspect ratio not kept


def test_official_train_pipeline_order():
    ops = build_transform("official", 64, True).transforms
    assert [type(op) for op in ops] == [T.Resize, Cutout, OfficialRandAugment, T.ToTensor]
    assert ops[0].size == (64, 64) and ops[1].factor == 0.5
    torchvision = build_transform("official_torchvision", 64, True).transforms
    assert [type(op) for op in torchvision] == [T.Resize, Cutout, T.RandAugment, T.ToTensor]
    paper = build_transform("paper", 64, True).transforms
    assert [type(op) for op in paper] == [T.Resize, T.RandomHorizontalFlip, Cutout, T.RandAugment, T.ToTensor]
    assert [type(op) for op in build_transform("none", 64, True).transforms] == [T.Resize, T.ToTensor]


def test_train_is_random():
    t = build_transform("official", 32, True)
    torch.manual_seed(0)
    outs = [t(noisy()) for _ in range(4)]
    assert not all(torch.equal(outs[0], o) for o in outs[1:])


def check_one_box(before: np.ndarray, after: np.ndarray, box, side_h: int, side_w: int) -> None:
    """Exactly the box changed, to one colour; full size unless clipped at a border."""
    top, left, bottom, right = box
    h, w = before.shape[:2]
    changed = (before != after).any(axis=2)
    inside = np.zeros_like(changed)
    inside[top:bottom, left:right] = True
    assert (changed == inside).all()
    colours = np.unique(after[top:bottom, left:right].reshape(-1, 3), axis=0)
    assert len(colours) == 1
    assert bottom - top <= side_h and right - left <= side_w
    if top > 0 and bottom < h:
        assert bottom - top == side_h
    if left > 0 and right < w:
        assert right - left == side_w


def test_cutout_fills_one_half_size_box_with_one_colour():
    torch.manual_seed(0)
    cutout = Cutout(0.5)
    base = Image.new("RGB", (32, 32), (10, 200, 30))
    before = np.asarray(base)
    full, colours = 0, set()
    for _ in range(40):
        after = np.asarray(cutout(base))
        check_one_box(before, after, cutout.last_box, 16, 16)
        top, left, bottom, right = cutout.last_box
        full += (bottom - top, right - left) == (16, 16)
        colours.add(tuple(after[top, left]))
    assert np.array_equal(np.asarray(base), before)  # the input is not modified
    assert full >= 5 and len(colours) > 30


def test_cutout_on_tensors():
    torch.manual_seed(3)
    cutout = Cutout(0.5)
    image = torch.full((3, 20, 30), 0.5)
    out = cutout(image)
    check_one_box(image.permute(1, 2, 0).numpy(), out.permute(1, 2, 0).numpy(), cutout.last_box, 10, 15)
    assert torch.equal(image, torch.full((3, 20, 30), 0.5))
    assert out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
    with pytest.raises(TypeError):
        cutout(np.zeros((3, 4, 4)))


def flips(recipe: str, trials: int = 40) -> int:
    """How often the train pipeline (Cutout and RandAugment removed) mirrors the image."""
    t = build_transform(recipe, 32, True)
    t.transforms = [op for op in t.transforms if not isinstance(op, (Cutout, T.RandAugment, OfficialRandAugment))]
    torch.manual_seed(0)
    image = halves()
    count = 0
    for _ in range(trials):
        out = t(image)
        left, right = out[:, :, :16].mean(), out[:, :, 16:].mean()
        assert abs(left - right) > 0.9
        count += bool(left > right)
    return count


def test_paper_flips_sometimes_official_never():
    assert 5 <= flips("paper") <= 35
    assert flips("official") == 0
    assert flips("official_torchvision") == 0
    assert flips("none") == 0


def test_unknown_recipe_lists_valid_ones():
    with pytest.raises(
        ConfigError,
        match="data.recipe: unknown transform recipe .fancy.; known: none, official, official_torchvision, paper",
    ):
        build_transform("fancy", 224, True)
    with pytest.raises(ConfigError, match="img_size"):
        build_transform("official", 0, True)
    with pytest.raises(ConfigError):
        Cutout(0.0)


def test_bench_data_smoke():
    from mlkd.bench.data import bench_data, format_table

    rows = bench_data(
        num_images=6, workers=(0,), img_size=32, batch_size=3, image_size=(40, 30), repeats=1, main_threads=1
    )
    assert len(rows) == 1 and rows[0]["workers"] == 0 and rows[0]["images"] == 6
    assert rows[0]["main_threads"] == 1
    assert rows[0]["images_per_s"] > 0
    assert "| 0 |" in format_table(rows)
