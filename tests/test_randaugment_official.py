"""The official recipe's RandAugment against the rules of the ``randaugment==1.0.2`` package.

The oracle is the package's own definition, restated here: ``RandAugment()`` draws one policy
uniformly among all pairs of (operation, level) with 15 operations x levels 1..9, builds a
``SubPolicy(0.5, op1, level1, 0.5, op2, level2)`` and applies each half when
``random.random() < 0.5``; the magnitudes are ``linspace`` tables of 10 points. Frequencies are
checked within 5 binomial standard deviations (a chance failure is below 1e-6 per check).
"""

import math
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps
from torchvision import transforms as T

from mlkd.data.randaugment_official import (
    CUTOUT_FILL,
    LEVELS,
    OPERATIONS,
    Draw,
    OfficialRandAugment,
    apply_operation,
    magnitude,
)
from mlkd.data.transforms import Cutout, build_transform

PACKAGE_OPERATIONS = {
    "Invert",
    "Cutout",
    "Sharpness",
    "AutoContrast",
    "Posterize",
    "ShearX",
    "TranslateX",
    "TranslateY",
    "ShearY",
    "Rotate",
    "Equalize",
    "Contrast",
    "Color",
    "Solarize",
    "Brightness",
}


def within(count: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def noisy(width=48, height=40, seed=0) -> Image.Image:
    """Uniform noise: every channel spans 0..255 (so AutoContrast is the identity on it)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    pixels[0, 0], pixels[0, 1] = 0, 255
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def draws():
    torch.manual_seed(0)
    policy = OfficialRandAugment()
    return [policy.sample() for _ in range(20000)]


def test_the_fifteen_operations_and_levels_of_the_package():
    assert set(OPERATIONS) == PACKAGE_OPERATIONS and len(OPERATIONS) == 15
    assert LEVELS == tuple(range(1, 10))  # the package loops range(1, 10) over a 10-point scale


def test_operation_frequencies_are_uniform(draws):
    slots = [d for pair in draws for d in pair]
    counts = Counter(d.operation for d in slots)
    assert set(counts) == PACKAGE_OPERATIONS
    for op in OPERATIONS:
        assert within(counts[op], len(slots), 1 / 15), (op, counts[op])
    # the two slots are independent (the policy is any ordered pair, the same op allowed twice)
    same = sum(a.operation == b.operation for a, b in draws)
    assert within(same, len(draws), 1 / 15)


def test_levels_are_uniform_on_one_to_nine(draws):
    levels = Counter(d.level for pair in draws for d in pair)
    assert sorted(levels) == list(range(1, 10))  # never 0 (no-op) nor 10
    for level in range(1, 10):
        assert within(levels[level], 2 * len(draws), 1 / 9)


def test_each_slot_applied_with_probability_half_and_a_quarter_untouched(draws):
    applied = [d.applied for pair in draws for d in pair]
    assert within(sum(applied), len(applied), 0.5)
    none = sum(not a.applied and not b.applied for a, b in draws)
    both = sum(a.applied and b.applied for a, b in draws)
    assert within(none, len(draws), 0.25) and within(both, len(draws), 0.25)
    signs = Counter(d.sign for pair in draws for d in pair if d.applied and d.operation == "ShearX")
    assert set(signs) == {-1, 1} and within(signs[1], sum(signs.values()), 0.5)


def test_magnitude_tables_are_the_packages():
    expected = {
        "ShearX": np.linspace(0, 0.3, 10),
        "TranslateY": np.linspace(0, 150 / 331, 10),
        "Rotate": np.linspace(0, 30, 10),
        "Color": np.linspace(0.0, 0.9, 10),
        "Solarize": np.linspace(256, 0, 10),
        "Posterize": np.round(np.linspace(8, 4, 10), 0).astype(int),
        "Cutout": np.round(np.linspace(0, 20, 10), 0).astype(int),
    }
    for op, table in expected.items():
        assert [magnitude(op, level) for level in range(10)] == pytest.approx(list(table), abs=1e-12)
    assert [magnitude("Posterize", lv) for lv in LEVELS] == [8, 7, 7, 6, 6, 5, 5, 4, 4]
    assert [magnitude("Cutout", lv) for lv in LEVELS] == [2, 4, 7, 9, 11, 13, 16, 18, 20]
    assert magnitude("Invert", 5) is None and magnitude("Equalize", 1) is None
    # the strongest drawn magnitudes are level 9 of 0..9
    assert magnitude("Rotate", 9) == 30.0 and magnitude("Brightness", 9) == pytest.approx(0.9)


def test_pixel_operations_match_their_definitions():
    image = noisy()
    x = np.asarray(image).astype(int)
    assert np.array_equal(np.asarray(apply_operation(image, "Invert", 3)), 255 - x)
    assert np.array_equal(np.asarray(apply_operation(image, "Posterize", 9)), x & 0xF0)  # 4 bits
    assert np.array_equal(np.asarray(apply_operation(image, "Posterize", 1)), x)  # 8 bits: no-op
    threshold = 256 - 256 * 5 / 9
    assert np.array_equal(np.asarray(apply_operation(image, "Solarize", 5)), np.where(x < threshold, x, 255 - x))
    assert np.array_equal(np.asarray(apply_operation(image, "AutoContrast", 1)), x)  # full range already
    for op, cls in (
        ("Color", ImageEnhance.Color),
        ("Contrast", ImageEnhance.Contrast),
        ("Sharpness", ImageEnhance.Sharpness),
        ("Brightness", ImageEnhance.Brightness),
    ):
        for sign in (1, -1):
            want = np.asarray(cls(image).enhance(1 + sign * 0.9 * 4 / 9))
            assert np.array_equal(np.asarray(apply_operation(image, op, 4, sign)), want), (op, sign)
    assert np.array_equal(np.asarray(apply_operation(image, "Equalize", 2)), np.asarray(ImageOps.equalize(image)))


def test_translate_moves_by_the_tabled_fraction_and_fills_grey():
    image = noisy(width=331, height=6)  # level 9 moves 150/331 of the width: exactly 150 px
    x = np.asarray(image)
    out = np.asarray(apply_operation(image, "TranslateX", 9, sign=1))
    assert np.array_equal(out[:, :181], x[:, 150:]) and (out[:, 181:] == 128).all()
    out = np.asarray(apply_operation(image, "TranslateX", 9, sign=-1))
    assert np.array_equal(out[:, 150:], x[:, :181]) and (out[:, :150] == 128).all()


def test_rotate_is_the_packages_rgba_composite():
    image = noisy()
    for level in (1, 5, 9):
        rotated = image.convert("RGBA").rotate(magnitude("Rotate", level))  # the package's rotate_with_fill
        want = Image.composite(rotated, Image.new("RGBA", rotated.size, (128,) * 4), rotated).convert("RGB")
        assert np.array_equal(np.asarray(apply_operation(image, "Rotate", level)), np.asarray(want))


def test_shear_is_bicubic_affine_with_grey_fill():
    image = noisy()
    want = image.transform(image.size, Image.AFFINE, (1, -0.3, 0, 0, 1, 0), Image.BICUBIC, fillcolor=(128, 128, 128))
    assert np.array_equal(np.asarray(apply_operation(image, "ShearX", 9, sign=-1)), np.asarray(want))


def test_cutout_box_size_and_colour():
    torch.manual_seed(0)
    base = Image.new("RGB", (40, 30), (0, 0, 0))
    sides = set()
    for _ in range(60):
        out = np.asarray(apply_operation(base, "Cutout", 3))  # side 7 -> 3 either way: 6 x 6
        changed = (out != 0).any(axis=2)
        rows, cols = np.nonzero(changed)
        assert (out[changed] == CUTOUT_FILL).all()
        height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert changed.sum() == height * width and height <= 6 and width <= 6
        sides.add((height, width))
    assert (6, 6) in sides and len(sides) > 1  # full size inside, clipped at the borders


def test_call_applies_exactly_what_was_drawn():
    torch.manual_seed(1)
    policy = OfficialRandAugment()
    image = noisy()
    for _ in range(50):
        out = policy(image)
        a, b = policy.last_draws
        if not a.applied and not b.applied:
            assert np.array_equal(np.asarray(out), np.asarray(image))
        deterministic = all(d.operation != "Cutout" for d in (a, b))
        if deterministic:
            want = image
            for d in (a, b):
                if d.applied:
                    want = apply_operation(want, d.operation, d.level, d.sign)
            assert np.array_equal(np.asarray(out), np.asarray(want))
    with pytest.raises(TypeError):
        policy(torch.zeros(3, 8, 8))


def test_untouched_share_on_a_full_range_image():
    """Pixel-identical outputs: the quarter with no operation, plus the applied no-ops, which on
    a full-range noise image are AutoContrast (any level) and Posterize at level 1 (8 bits):
    p = 10 / 135 per applied slot, so P(untouched) = (0.5 + 0.5 p)^2 = 0.2884."""
    torch.manual_seed(2)
    policy = OfficialRandAugment()
    image = noisy(width=24, height=24)
    before = np.asarray(image)
    n = 1500
    untouched = sum(np.array_equal(np.asarray(policy(image)), before) for _ in range(n))
    p = 10 / 135
    assert within(untouched, n, (0.5 + 0.5 * p) ** 2)


def test_official_torchvision_is_the_former_official_pipeline():
    """``official_torchvision`` = Resize -> Cutout(0.5) -> torchvision RandAugment() -> ToTensor,
    draw for draw (the pipeline ``official`` named before issue 14)."""
    image = noisy(50, 37)
    former = T.Compose([T.Resize((32, 32)), Cutout(0.5), T.RandAugment(), T.ToTensor()])
    named = build_transform("official_torchvision", 32, True)
    for seed in range(5):
        torch.manual_seed(seed)
        a = former(image)
        torch.manual_seed(seed)
        assert torch.equal(named(image), a)


def test_official_pipeline_uses_the_package_policy_after_cutout():
    t = build_transform("official", 32, True)
    policy = t.transforms[2]
    assert isinstance(policy, OfficialRandAugment)
    torch.manual_seed(3)
    out = t(noisy())
    assert out.shape == (3, 32, 32) and len(policy.last_draws) == 2
    assert all(isinstance(d, Draw) for d in policy.last_draws)
