"""Exports reproduce PyTorch (ONNX Runtime as the oracle) for each head and backbone family;
a toy run goes through calibrate -> export -> predict with its true labels checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

from engine_helpers import tiny_config  # noqa: E402
from mlkd.config import Config  # noqa: E402
from mlkd.engine.builders import model_from_config  # noqa: E402
from mlkd.export.graph import ExportError  # noqa: E402
from mlkd.export.onnx_export import export_onnx  # noqa: E402
from mlkd.export.source import student_from_model  # noqa: E402

SMALL_HEAD = {"embed_dim": 32, "ffn_dim": 64, "num_heads": 4}
CLASSES = ["cat", "dog", "car", "tree", "sky"]


def _config(name: str, head: str, img_size: int, normalize: bool = False) -> Config:
    model = {"name": name, "head": head, **SMALL_HEAD}
    if name == "swin_t":
        model["img_size"] = img_size
    return Config.model_validate({"data": {"img_size": img_size, "normalize": normalize}, "model": model})


def _net(cfg: Config, seed: int = 0):
    torch.manual_seed(seed)
    return model_from_config(cfg.model, len(CLASSES), pretrained=False)


def _randomise_batchnorm(net: torch.nn.Module) -> None:
    """Non-trivial BN statistics, so fusing them into convolutions is really exercised."""
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def _ops(path: Path) -> list[str]:
    return [node.op_type for node in onnx.load(str(path)).graph.node]


@pytest.mark.parametrize(
    "name,head,size",
    [
        ("tiny", "label_wise", 32),  # ResNet (timm test_resnet)
        ("tiny", "linear", 32),
        ("efficientnet_lite0", "label_wise", 32),
        ("mobilenetv2", "linear", 32),
        ("repvgg_a0", "label_wise", 32),
        ("swin_t", "label_wise", 64),
    ],
)
def test_onnx_export_matches_pytorch_at_two_batch_sizes(tmp_path, name, head, size):
    cfg = _config(name, head, size, normalize=(name == "mobilenetv2"))
    net = _net(cfg)
    _randomise_batchnorm(net)
    train_form_convs = sum(isinstance(m, torch.nn.Conv2d) for m in net.modules())
    reference = _net(cfg)
    reference.load_state_dict(net.state_dict())
    reference.eval()
    student = student_from_model(net, CLASSES, cfg, thresholds=[0.1, 0.2, 0.3, 0.4, 0.5])
    report = export_onnx(student, tmp_path / "m.onnx")
    assert report["opset"] == 20 and report["max_abs_logit_diff"] <= 1e-4
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["logits", "probabilities"]
    for batch in (1, 3):
        images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(10 + batch))
        x = images
        if name == "mobilenetv2":  # the run normalised in its data pipeline: the graph must do it
            x = (images - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
                [0.229, 0.224, 0.225]
            ).view(1, 3, 1, 1)
        with torch.no_grad():
            expected = reference(x).logits.numpy()  # the unfused training-form network in eval mode
        logits, probs = sess.run(None, {"images": images.numpy()})
        assert logits.shape == (batch, len(CLASSES))
        np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)
        np.testing.assert_allclose(probs, 1 / (1 + np.exp(-expected)), atol=1e-5, rtol=0)
    meta = sess.get_modelmeta().custom_metadata_map
    assert json.loads(meta["mlkd.classes"]) == CLASSES
    assert json.loads(meta["mlkd.thresholds"]) == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert json.loads(meta["mlkd.img_size"]) == size
    ops = _ops(tmp_path / "m.onnx")
    assert "Dropout" not in ops and "BatchNormalization" not in ops  # eval mode, BN folded
    if name == "repvgg_a0":  # fused: one 3x3 conv per block instead of 3x3 + 1x1 branches
        fused_convs = sum(isinstance(m, torch.nn.Conv2d) for m in student.net.modules())
        assert ops.count("Conv") == fused_convs < train_form_convs


def test_unsupported_part_is_named_in_one_line_and_nothing_is_written(tmp_path):
    cfg = _config("tiny", "linear", 32)
    net = _net(cfg)
    original = net.head.forward

    def data_dependent(feats, pooled=None, return_attention=None):
        out = original(feats, pooled=pooled, return_attention=return_attention)
        if int(out.logits.argmax()) > 2:  # a Python branch on tensor values: no static graph
            return out._replace(logits=out.logits * 2)
        return out

    net.head.forward = data_dependent
    with pytest.raises(ExportError) as info:
        export_onnx(student_from_model(net, CLASSES, cfg), tmp_path / "m.onnx")
    message = str(info.value)
    assert "\n" not in message and "head (LinearHead)" in message
    assert not list(tmp_path.iterdir())


def test_parity_failure_refuses_to_write(tmp_path, monkeypatch):
    import mlkd.export.parity as parity

    real = parity.torch_outputs
    monkeypatch.setattr(parity, "torch_outputs", lambda s, images: tuple(a + 0.01 for a in real(s, images)))
    cfg = _config("tiny", "linear", 32)
    with pytest.raises(ExportError, match=r"differ from PyTorch's by up to 0\.01.*nothing written"):
        export_onnx(student_from_model(_net(cfg), CLASSES, cfg), tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


def test_predict_preprocessing_equals_the_eval_transform(tmp_path):
    from PIL import Image

    from mlkd.data.transforms import build_transform
    from mlkd.export.predict import load_image

    pixels = np.random.default_rng(0).integers(0, 256, (50, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    with Image.open(tmp_path / "a.png") as image:
        expected = build_transform("none", 32, False)(image.convert("RGB")).numpy()
    np.testing.assert_allclose(load_image(tmp_path / "a.png", 32), expected, atol=1e-6, rtol=0)


# ---- a toy run end to end -------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A tiny ResNet + linear head trained on digits mosaics (mAP ~0.99 on the test split),
    with a 20 % validation split (data.holdout), and three test images saved as PNG."""
    from PIL import Image

    from mlkd.data.loaders import build_datasets
    from mlkd.engine.trainer import fit

    root = tmp_path_factory.mktemp("export")
    options = {"source": "digits", "num_train": 1024, "num_test": 67, "seed": 0, "cache_dir": str(root / "cache")}
    cfg = tiny_config(
        root / "run",
        root / "cache",
        epochs=15,
        model={"name": "tiny", "head": "linear"},
        data={"holdout": 0.2, "options": options},
        optim={"lr": 3e-3, "epochs": 15},
    )
    fit(cfg)
    _, test = build_datasets(cfg.data.model_copy(update={"holdout": 0.0}))
    images, truth = [], []
    for i in range(3):
        Image.fromarray(test.images[i]).save(root / f"img{i}.png")
        images.append(str(root / f"img{i}.png"))
        truth.append({test.classes[k] for k in np.flatnonzero(test.labels_matrix()[i])})
    return {"run": root / "run", "images": images, "truth": truth, "root": root}


def _cli(args, capsys) -> str:
    from mlkd.cli import main

    capsys.readouterr()
    assert main(["-q", *map(str, args)]) == 0
    return capsys.readouterr().out


def test_calibrate_export_predict_on_a_toy_run(toy_run, capsys):
    run = toy_run["run"]
    summary = json.loads(_cli(["calibrate", run], capsys))
    stored = json.loads((run / "thresholds.json").read_text())
    assert stored["validation"] == {
        "split": "data.holdout",
        "fraction": 0.2,
        "images": 205,
        "model_trained_on_it": False,
    }
    assert summary["labels_by_f1"] == stored["rules"].count("f1") == 10
    # `mlkd eval -p calibrated` recomputes the stored metrics with the stored thresholds
    evaluated = json.loads(_cli(["eval", run, "-p", "calibrated", "--compact"], capsys))
    for key in ("mAP", "OF1", "CF1"):
        assert evaluated["calibrated"][key] == pytest.approx(stored["eval"]["calibrated"][key], abs=1e-12)
    table = _cli(["table", run, "-p", "calibrated"], capsys)
    assert f"{100 * stored['eval']['calibrated']['CF1']:.2f}" in table

    report = json.loads(_cli(["export", run, "--check-map"], capsys))
    onnx_path = run / "export" / "model.onnx"
    assert report["path"] == str(onnx_path) and report["max_abs_logit_diff"] <= 1e-3
    assert report["test_map"]["map_diff_points"] <= 0.01 and report["test_map"]["images"] == 67
    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert json.loads(meta["mlkd.thresholds"]) == stored["thresholds"]
    assert json.loads(meta["mlkd.classes"]) == [str(d) for d in range(10)]

    rows = [json.loads(line) for line in _cli(["predict", onnx_path, *toy_run["images"]], capsys).splitlines()]
    assert [row["image"] for row in rows] == toy_run["images"]
    assert [{item["label"] for item in row["labels"]} for row in rows] == toy_run["truth"]
    for row in rows:
        for item in row["labels"]:
            assert (
                item["score"] >= item["threshold"] == pytest.approx(stored["thresholds"][int(item["label"])], abs=1e-6)
            )
    # the run itself (PyTorch) prints the same labels
    listing = toy_run["root"] / "images.txt"
    listing.write_text("# three test images\n" + "".join(Path(p).name + "\n" for p in toy_run["images"]))
    torch_rows = [json.loads(line) for line in _cli(["predict", run, "--list", listing], capsys).splitlines()]
    assert [[i["label"] for i in r["labels"]] for r in torch_rows] == [[i["label"] for i in r["labels"]] for r in rows]


def test_safetensors_export_rebuilds_the_model(toy_run, capsys, tmp_path):
    from mlkd.engine.builders import model_from_checkpoint
    from mlkd.export.weights import load_safetensors

    report = json.loads(_cli(["export", toy_run["run"], "-f", "safetensors", "-o", tmp_path / "st"], capsys))
    assert report["max_abs_logit_diff"] == 0.0
    net, info = load_safetensors(tmp_path / "st")
    model, state = model_from_checkpoint(toy_run["run"], torch.device("cpu"))
    assert info["classes"] == state["classes"] and info["img_size"] == 32
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(net(x)[0], model(x).logits)


def test_onnx_predict_needs_no_torch(toy_run):
    """The ONNX predict path imports numpy, Pillow and onnxruntime, not torch."""
    onnx_path = toy_run["run"] / "export" / "model.onnx"
    if not onnx_path.exists():
        pytest.skip("needs the export of test_calibrate_export_predict_on_a_toy_run")
    code = (
        "import sys, json; from mlkd.export.predict import OnnxPredictor, predict_files;"
        f"rows = predict_files(OnnxPredictor({str(onnx_path)!r}), {toy_run['images'][:1]!r});"
        "print(json.dumps([sorted(i['label'] for i in rows[0]['labels']), 'torch' in sys.modules]))"
    )
    src = str(Path(__file__).resolve().parent.parent / "src")
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"},
    )
    labels, torch_loaded = json.loads(out.stdout)
    assert set(labels) == toy_run["truth"][0] and torch_loaded is False


def test_bench_export_smoke():
    from mlkd.bench import BENCHES
    from mlkd.bench.export import bench_export, format_tables

    result = bench_export(
        student="tiny", teacher="tiny", img_size=32, num_classes=5, batches=(1, 2), repeats=1, head=SMALL_HEAD
    )
    assert [(r["batch"], r["runtime"]) for r in result["latency"]] == [
        (1, "pytorch eager"),
        (1, "onnxruntime"),
        (2, "pytorch eager"),
        (2, "onnxruntime"),
    ]
    assert all(r["ms"] > 0 for r in result["latency"])
    student, teacher = result["sizes"]
    params = sum(p.numel() for p in _net(_config("tiny", "label_wise", 32)).parameters())
    assert student["params_M"] == round(params / 1e6, 3) == teacher["params_M"]
    assert student["gflops"] > 0 and student["onnx_MB"] > 0 and result["export"]["max_abs_logit_diff"] <= 1e-4
    assert "vs PyTorch eager" in format_tables(result) and BENCHES["export"] == "mlkd.bench.export"
