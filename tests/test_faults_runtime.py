"""Runtime faults of valid inputs: 16-bit images, degenerate OneCycle schedules, a model that
diverges under ``train.nonfinite=skip``. Each test performs the case for real."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from engine_helpers import tiny_config
from fault_helpers import CACHE, all_finite, run_cli, write_config
from mlkd.data.images import MultiLabelImageDataset
from mlkd.engine.checkpoint import load_checkpoint
from mlkd.engine.logs import read_jsonl
from mlkd.engine.trainer import fit

DATA = {"source": "digits", "num_train": 128, "num_test": 16, "seed": 0, "cache_dir": str(CACHE)}


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_16_bit_grayscale_is_scaled_to_8_bits_not_clipped(tmp_path, mode):
    """A 16-bit ramp (every 64th value of 0..65535) read as a dataset sample: each pixel is
    round(v * 255 / 65535) in all three channels (PIL's convert clipped everything above 255)."""
    ramp = np.arange(1024, dtype=np.int64).reshape(4, 256) * 64
    path = tmp_path / "ramp.png"
    Image.fromarray(ramp.astype(np.uint16)).save(path)  # a 16-bit grayscale PNG
    image = Image.open(path)
    assert image.mode == "I;16"
    if mode != "I;16":  # the other 16-bit modes PIL hands out (big-endian TIFF, 32-bit "I")
        path = tmp_path / "ramp.tiff"
        image.convert(mode).save(path) if mode == "I" else Image.frombytes(
            "I;16B", image.size, ramp.astype(">u2").tobytes()
        ).save(path)
        assert Image.open(path).mode == mode
    dataset = MultiLabelImageDataset([(path, (0,))], ["a"])
    pixels = (dataset[0][0] * 255).round().numpy().astype(np.int64)
    expected = np.rint(ramp / 257.0).astype(np.int64)
    assert pixels.shape == (3, 4, 256)
    for channel in pixels:
        np.testing.assert_array_equal(channel, expected)


@pytest.mark.parametrize("num_train,epochs", [(160, 1), (32, 5)])
def test_one_cycle_with_a_one_step_warm_up_trains(tmp_path, monkeypatch, num_train, epochs):
    """epochs x steps x pct_start = 1 (5 steps of 32, pct_start 0.2): torch's OneCycleLR divided
    by zero. The run trains; step 0 is at the start of the warm-up, the last step near 0."""
    cfg = tiny_config(
        tmp_path / "run",
        CACHE,
        epochs=epochs,
        train={"eval_every": 0},
        data={"options": {**DATA, "num_train": num_train}},
    )
    lrs = []
    real = torch.optim.Adam.step

    def step(self, *args, **kwargs):
        lrs.append(self.param_groups[0]["lr"])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    record = fit(cfg)
    assert record["epoch"] == epochs and len(lrs) == 5
    assert lrs[0] == pytest.approx(cfg.optim.lr / 25)
    assert lrs[1] == pytest.approx(cfg.optim.lr * (1 + np.cos(np.pi / 4)) / 2, rel=1e-5)  # 1 of 4 annealing steps
    assert lrs[1] > lrs[2] > lrs[3] > lrs[4]


def test_a_diverged_model_under_skip_saves_the_epoch_and_stops_with_a_clear_error(tmp_path, capsys):
    """lr 100 with train.nonfinite=skip: the weights stay finite but the model's scores are NaN.
    The epoch is checkpointed and logged (its eval holds the error), then one error line, exit 2."""
    cfg = tiny_config(
        tmp_path / "run",
        CACHE,
        epochs=3,
        optim={"lr": 100.0},
        data={"options": DATA},
        train={"nonfinite": "skip", "eval_every": 1},
    )
    code, err = run_cli(["train", "-c", str(write_config(cfg, tmp_path / "exp.yaml"))], capsys)
    assert code == 2, err  # an MLKDError: one line, like the other stopped runs
    lines = [line for line in err.splitlines() if line.startswith("mlkd: error")]
    assert len(lines) == 1 and "epoch 1 (" in lines[0] and "test images have NaN scores" in lines[0]
    assert "the epoch is saved in" in lines[0] and "last.pt" in lines[0]
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert saved["epoch"] == 1 and all_finite(saved["model"])
    record = read_jsonl(tmp_path / "run" / "metrics.jsonl")[-1]
    assert record["epoch"] == 1 and "NaN scores" in record["eval"]["error"]
