"""Analyses (per-class AP, correlation, retrieval, attention): numbers against direct
computations, and every ``mlkd analyze`` subcommand on tiny checkpoints."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import average_precision_score

from engine_helpers import tiny_config
from mlkd.analysis import attention, correlation, retrieval
from mlkd.analysis.common import infer_roles, load_models, open_analysis
from mlkd.analysis.per_class import class_order
from mlkd.analysis.per_class import run as per_class_run
from mlkd.cli import main as cli_main
from mlkd.engine.builders import model_from_config
from mlkd.engine.checkpoint import save_rotating
from mlkd.engine.evaluation import evaluate_checkpoint

NAMES = ("teacher", "vanilla", "l2d")


def _checkpoint(root, cache, name, seed, teacher=None):
    """A tiny untrained network saved as an mlkd checkpoint (fast; the analyses need no training)."""
    method = "vanilla" if teacher is None else "l2d"
    cfg = tiny_config(root / name, cache, method=method, teacher=teacher)
    torch.manual_seed(seed)
    model = model_from_config(cfg.model, 10, pretrained=False).eval()
    with torch.no_grad():  # move the BatchNorm statistics off their init so outputs differ per image
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    state = {"model": model.state_dict(), "classes": [str(d) for d in range(10)], "config": cfg.to_dict(), "epoch": 0}
    return str(save_rotating(state, root / name / "checkpoints"))


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis")
    cache = root / "cache"
    teacher = _checkpoint(root, cache, "teacher", 0)
    paths = {
        "teacher": teacher,
        "vanilla": _checkpoint(root, cache, "vanilla", 1),
        "l2d": _checkpoint(root, cache, "l2d", 2, teacher=teacher),
    }
    return {"root": root, "paths": paths, "specs": [f"{n}={paths[n]}" for n in NAMES]}


@pytest.fixture(scope="module")
def analysis(ckpts):
    return open_analysis(ckpts["specs"], device="cpu")


# ---- retrieval -------------------------------------------------------------------------


def _brute_force_retrieval(feats, labels, ks, gallery=None, gallery_labels=None):
    """Loop oracle: cosine ranking (self excluded when the gallery is the query set)."""
    loo = gallery is None
    gallery = feats if loo else gallery
    gallery_labels = labels if loo else gallery_labels
    out = {f"{m}@{k}": [] for k in ks for m in ("mAP", "P")}
    for i in range(len(feats)):
        if not labels[i].any():
            continue
        sims = []
        for j in range(len(gallery)):
            if loo and j == i:
                continue
            a, b = feats[i], gallery[j]
            sims.append((float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))), j))
        ranked = [j for _, j in sorted(sims, key=lambda t: -t[0])]
        for k in ks:
            hits, precisions = 0, []
            for rank, j in enumerate(ranked[:k], start=1):
                if any(labels[i][c] and gallery_labels[j][c] for c in range(labels.shape[1])):
                    hits += 1
                    precisions.append(hits / rank)
            out[f"P@{k}"].append(hits / k)
            out[f"mAP@{k}"].append(sum(precisions) / hits if hits else 0.0)
    return {key: float(np.mean(v)) for key, v in out.items()}


def test_retrieval_matches_brute_force_loop():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(41, 7))
    labels = (rng.random((41, 5)) < 0.3).astype(np.uint8)
    labels[3] = 0  # a query without labels is left out
    ks = (1, 5, 10)
    x = retrieval.normalize_rows(feats).double()
    top, sims = retrieval.knn(x, x, 10, leave_one_out=True, max_block=100)  # chunks of 2 queries
    assert not (top == torch.arange(41)[:, None]).any()
    assert torch.all(sims[:, :-1] >= sims[:, 1:])
    valid = labels.any(axis=1)
    got = retrieval.retrieval_metrics(retrieval.relevance(top.numpy(), labels, labels), ks, valid)
    want = _brute_force_retrieval(feats, labels, ks)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key
    # A separate gallery (no leave-one-out).
    gallery, gallery_labels = rng.normal(size=(23, 7)), (rng.random((23, 5)) < 0.4).astype(np.uint8)
    g = retrieval.normalize_rows(gallery).double()
    top, _ = retrieval.knn(x, g, 5, leave_one_out=False, max_block=7)
    got = retrieval.retrieval_metrics(retrieval.relevance(top.numpy(), labels, gallery_labels), (5,), valid)
    want = _brute_force_retrieval(feats, labels, (5,), gallery, gallery_labels)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key


def test_retrieval_hand_case_and_k_check():
    # Relevance pattern of one query: hit, miss, hit -> P@3 = 2/3, AP@3 = (1 + 2/3) / 2.
    got = retrieval.retrieval_metrics(np.array([[1, 0, 1]]), (3,))
    assert got == pytest.approx({"mAP@3": (1 + 2 / 3) / 2, "P@3": 2 / 3})
    assert retrieval.retrieval_metrics(np.array([[0, 0]]), (2,)) == {"mAP@2": 0.0, "P@2": 0.0}
    x = torch.eye(3)
    with pytest.raises(ValueError, match="k=3"):
        retrieval.knn(x, x, 3, leave_one_out=True)


# ---- correlation ------------------------------------------------------------------------


def test_correlation_matches_numpy_and_is_nan_safe():
    rng = np.random.default_rng(1)
    student, teacher = rng.random((50, 6)), rng.random((50, 6))
    student[:, 2] = 0.25  # a constant class: no correlation
    mine_s, mine_t = correlation.prediction_correlation(student), correlation.prediction_correlation(teacher)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref_s, ref_t = np.corrcoef(student, rowvar=False), np.corrcoef(teacher, rowvar=False)
    np.testing.assert_allclose(mine_s, ref_s, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(mine_t, ref_t, atol=1e-12)
    assert np.isnan(mine_s[2]).all() and np.isnan(mine_s[:, 2]).all()
    result = correlation.correlation_difference(mine_s, mine_t)
    diffs = [abs(ref_s[i, j] - ref_t[i, j]) for i in range(6) for j in range(6) if i != j and np.isfinite(ref_s[i, j])]
    assert result["mad"] == pytest.approx(np.mean(diffs), abs=1e-12)
    assert result["excluded_pairs"] == 5 and result["pairs"] == 15
    everything_constant = correlation.prediction_correlation(np.ones((4, 3)))
    assert np.isnan(correlation.correlation_difference(everything_constant, mine_t[:3, :3])["mad"])
    np.testing.assert_allclose(
        correlation.probabilities64(np.array([[-800.0, 0.0, 3.0]])), [[0.0, 0.5, 1 / (1 + np.exp(-3.0))]], atol=1e-15
    )


# ---- per-class AP ------------------------------------------------------------------------


def test_per_class_ap_matches_sklearn_and_mlkd_eval(analysis, ckpts, tmp_path):
    summary = per_class_run(analysis, tmp_path)
    targets = analysis.targets()
    classes = analysis.classes
    for name in NAMES:
        scores = analysis.outputs(name)["scores"]
        for c, cls in enumerate(classes):
            if targets[:, c].any():
                want = 100 * average_precision_score(targets[:, c], scores[:, c])
                assert summary["AP"][name][cls] == pytest.approx(want, abs=1e-9)
    # The same probabilities `mlkd eval` scores: the row's mAP is the checkpoint's evaluated mAP.
    evaluated = evaluate_checkpoint(ckpts["paths"]["l2d"], ["thr@0.5"], device="cpu")["thr@0.5"]["mAP"]
    assert summary["mAP"]["l2d"] == pytest.approx(100 * evaluated, abs=1e-9)
    base = summary["AP"]["vanilla"]
    assert summary["class_order"] == sorted(base, key=lambda c: base[c])
    assert summary["mean_gain"]["l2d"] == pytest.approx(summary["mAP"]["l2d"] - summary["mAP"]["vanilla"], abs=1e-9)
    table = (tmp_path / "per_class.md").read_text().splitlines()
    assert table[0].split(" | ")[1] == summary["class_order"][0] and len(table) == 2 + 3
    assert list(class_order(np.array([0.5, np.nan, 0.2]))) == [2, 0, 1]


def test_roles_from_checkpoints(ckpts):
    models = load_models([ckpts["specs"][i] for i in (1, 2, 0)], torch.device("cpu"))  # teacher not first
    assert infer_roles(models) == ("teacher", "vanilla")
    assert infer_roles(models, teacher="vanilla", baseline="l2d") == ("vanilla", "l2d")


# ---- attention ---------------------------------------------------------------------------


def test_cam_and_cross_attention_maps(analysis):
    model = analysis.get("teacher").model
    images = analysis.input_batch([0, 1, 2])
    out = model(images, return_attention=True)
    name, module, _ = attention.penultimate_layer(model)
    seen = []
    handle = module.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    cams = attention.class_activation_maps(model, images, [0, 3, 9])
    handle.remove()
    assert name == "backbone.model.layer3" and seen[0] == out.features[-2].shape
    assert cams.shape == (3, 32, 32) and cams.dtype == np.float32
    assert np.isfinite(cams).all() and cams.min() >= 0 and cams.max() <= 1 + 1e-6
    assert all(p.grad is None for p in model.parameters())
    raw, up = attention.cross_attention_maps(model, images, [0, 3, 9])
    h, w = out.features[-1].shape[-2:]
    assert raw.shape == (3, h, w) and up.shape == (3, 32, 32)
    np.testing.assert_allclose(raw.reshape(3, -1).sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(raw[1].ravel(), out.attention[1, 3].detach().numpy(), atol=1e-6)
    assert attention.cross_attention_maps(model, images, [0, 0, 0])[0].shape == (3, h, w)


def test_mosaic_masks_and_map_scores(analysis):
    targets = analysis.targets().astype(bool)
    pairs = [(i, c) for i in range(8) for c in np.where(targets[i])[0]]
    masks = attention.mosaic_class_masks(analysis.dataset, [p for p, _ in pairs], [c for _, c in pairs], (32, 32))
    base = analysis.test_set
    g = base.grid
    for (i, _), mask in zip(pairs, masks):
        assert mask.any()  # every positive class lies in some cell
        cells = mask.reshape(g, 32 // g, g, 32 // g).any(axis=(1, 3)).ravel()
        assert (base.cells[i][cells] >= 0).all()  # only filled cells
        assert mask.reshape(g, 32 // g, g, 32 // g).all(axis=(1, 3)).ravel().tolist() == cells.tolist()
    maps = np.array([[[1.0, 3.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    m = np.array([[[True, False], [False, False]]] * 2)
    frac = attention.mass_fraction(maps, m)
    assert frac[0] == pytest.approx(0.25) and np.isnan(frac[1])
    r = attention.map_correlation(np.array([[1.0, 2.0, 3.0]]), np.array([[2.0, 4.0, 7.0]]))
    assert r[0] == pytest.approx(np.corrcoef([1, 2, 3], [2, 4, 7])[0, 1])


# ---- CLI ---------------------------------------------------------------------------------


def _valid_png(path) -> bool:
    with Image.open(path) as image:
        image.verify()
        return image.format == "PNG"


@pytest.mark.parametrize(
    "kind, pngs",
    [
        ("per-class", ["per_class_gain.png"]),
        ("correlation", ["correlation.png"]),
        ("retrieval", ["retrieval_pooled.png", "retrieval_label_embeddings.png"]),
        ("attention", ["attention_0.png"]),
    ],
)
def test_cli_analyze_writes_png_and_numbers(ckpts, tmp_path, capsys, kind, pngs):
    extra = {"retrieval": ["--k", "3", "--queries", "0"], "attention": ["--images", "0", "--score-images", "4"]}
    capsys.readouterr()
    code = cli_main(
        [
            "analyze",
            kind,
            *ckpts["specs"],
            "--out",
            str(tmp_path),
            "--device",
            "cpu",
            "--limit",
            "24",
            *extra.get(kind, []),
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)[kind]
    for png in pngs:
        assert (tmp_path / png).is_file() and _valid_png(tmp_path / png)
    assert json.loads((tmp_path / f"{kind.replace('-', '_')}.json").read_text()) == summary
    if kind == "per-class":
        assert set(summary["mAP"]) == set(NAMES) and (tmp_path / "per_class.csv").is_file()
    elif kind == "correlation":
        assert set(summary["mad"]) == {"vanilla", "l2d"} and all(0 <= v <= 2 for v in summary["mad"].values())
    elif kind == "retrieval":
        assert set(summary["metrics"]["l2d"]) == {"pooled", "label_embeddings"}
        assert set(summary["metrics"]["l2d"]["pooled"]) == {"mAP@3", "P@3"}
    else:
        assert summary["scored_pairs"] > 0 and 0 < summary["chance_in_class"] < 1
        assert set(summary["scores"]["l2d"]) == {"cam_in_class", "xattn_in_class", "cam_vs_teacher", "xattn_vs_teacher"}


def test_cli_analyze_errors_are_one_line(ckpts, tmp_path, capsys):
    assert cli_main(["analyze", "per-class", f"x={tmp_path}/missing.pt", "--out", str(tmp_path)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert (
        cli_main(
            [
                "analyze",
                "attention",
                ckpts["specs"][0],
                "--classes",
                "cat",
                "--out",
                str(tmp_path),
                "--device",
                "cpu",
                "--limit",
                "5",
            ]
        )
        == 2
    )
    assert "unknown classes" in capsys.readouterr().err


def test_analyze_all_runs_one_forward_pass_per_model(ckpts, tmp_path, monkeypatch):
    from mlkd.analysis import common
    from mlkd.analysis.analyze import analyze

    calls = []
    forward = common.Analysis._forward
    monkeypatch.setattr(common.Analysis, "_forward", lambda self, m, e: calls.append(m.name) or forward(self, m, e))
    result = analyze(
        ["all"],
        ckpts["specs"],
        tmp_path,
        device="cpu",
        limit=12,
        options={"retrieval": {"ks": (3,)}, "attention": {"score_images": 2, "images": [1]}},
    )
    assert list(result) == ["per-class", "correlation", "retrieval", "attention"]
    assert sorted(calls) == sorted(NAMES)
    assert {p.name for p in tmp_path.glob("*.png")} == {
        "per_class_gain.png",
        "correlation.png",
        "retrieval_pooled.png",
        "retrieval_label_embeddings.png",
        "attention_1.png",
    }
