"""Runtime faults of valid inputs: 16-bit images, degenerate OneCycle schedules, a model that
diverges under ``train.nonfinite=skip``. Each test performs the case for real."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mlkd.data.images import MultiLabelImageDataset


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_16_bit_grayscale_is_scaled_to_8_bits_not_clipped(tmp_path, mode):
    """A 16-bit ramp (every 64th value of 0..65535) read as a dataset sample: each pixel is
    round(v * 255 / 65535) in all three channels (PIL's convert clipped everything above 255)."""
    ramp = (np.arange(1024, dtype=np.int64).reshape(4, 256) * 64)
    path = tmp_path / "ramp.png"
    Image.fromarray(ramp.astype(np.uint16)).save(path)  # a 16-bit grayscale PNG
    image = Image.open(path)
    assert image.mode == "I;16"
    if mode != "I;16":  # the other 16-bit modes PIL hands out (big-endian TIFF, 32-bit "I")
        path = tmp_path / "ramp.tiff"
        image.convert(mode).save(path) if mode == "I" else Image.frombytes(
            "I;16B", image.size, ramp.astype(">u2").tobytes()).save(path)
        assert Image.open(path).mode == mode
    dataset = MultiLabelImageDataset([(path, (0,))], ["a"])
    pixels = (dataset[0][0] * 255).round().numpy().astype(np.int64)
    expected = np.rint(ramp / 257.0).astype(np.int64)
    assert pixels.shape == (3, 4, 256)
    for channel in pixels:
        np.testing.assert_array_equal(channel, expected)
