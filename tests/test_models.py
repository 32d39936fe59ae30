"""Tests of mlkd.models: shapes for every paper backbone, weights loading, head oracles,
gradients / frozen queries, RepVGG deploy, errors, determinism, catalog."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mlkd.errors import CheckpointError, ConfigError
from mlkd.models import (
    PAPER_BACKBONES,
    LabelWiseHead,
    ModelOutput,
    build_model,
    can_reparameterize,
    deploy,
    format_catalog,
    model_catalog,
)

SMALL = dict(embed_dim=64, ffn_dim=128, num_heads=8)


def _size_kwargs(name: str) -> dict:
    return {"img_size": 64} if name.startswith("swin") else {}


def _check_output(model, out: ModelOutput, batch: int, size: int, q: int, embed_dim: int | None) -> None:
    assert out.logits.shape == (batch, q)
    if embed_dim is None:
        assert out.label_embeddings is None
    else:
        assert out.label_embeddings.shape == (batch, q, embed_dim)
    assert out.pooled.shape == (batch, model.pooled_dim)
    assert [f.shape[1] for f in out.features] == model.feature_channels
    for fmap, stride in zip(out.features, model.backbone.feature_reductions):
        assert fmap.ndim == 4 and fmap.shape[0] == batch
        assert fmap.shape[2:] == (size // stride, size // stride)  # NCHW, not NHWC
    assert torch.isfinite(out.logits).all()


@pytest.mark.parametrize("name", PAPER_BACKBONES)
def test_paper_backbone_shapes(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=5, **SMALL, **_size_kwargs(name)).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    _check_output(model, out, 1, 64, 5, SMALL["embed_dim"])
    assert out.attention is None  # cheap path by default
    last = out.features[-1]
    if name.startswith("swin"):  # the head sees the last stage after Swin's final LayerNorm
        with torch.no_grad():
            want = model.backbone.model.norm(last.permute(0, 2, 3, 1)).mean(dim=(1, 2))
        assert torch.allclose(out.pooled, want, atol=1e-5)
    elif name != "mobilenetv2":  # MobileNetV2's pooled feature follows its 1x1 conv head (1280)
        assert torch.allclose(out.pooled, last.mean(dim=(2, 3)), atol=1e-5)
    else:
        assert model.pooled_dim == 1280 and model.feature_channels[-1] == 320


def test_full_size_head_and_swin_native_size():
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=80).eval()  # paper head: 768, 8 heads, 2048
    with torch.no_grad():
        out = model(torch.randn(2, 3, 96, 96), return_attention=True)
    _check_output(model, out, 2, 96, 80, 768)
    assert out.attention.shape == (2, 80, 9)  # 3x3 tokens
    swin = build_model("swin_t", num_classes=3, **SMALL).eval()
    with torch.no_grad():
        out = swin(torch.randn(1, 3, 224, 224))
    _check_output(swin, out, 1, 224, 3, SMALL["embed_dim"])
    assert swin.feature_channels == [96, 192, 384, 768] and swin.timm_name.startswith("swin_tiny")


def test_linear_head_and_model_attributes():
    model = build_model("tiny", num_classes=7, head="linear").eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64), return_attention=True)
    _check_output(model, out, 2, 64, 7, None)
    assert out.attention is None
    assert torch.allclose(out.logits, model.head.fc(out.pooled))
    assert model.num_classes == 7 and model.backbone_name == "tiny" and model.timm_name == "test_resnet"


def test_logits_equal_per_class_loop():
    torch.manual_seed(1)
    head = LabelWiseHead(in_dim=16, num_classes=6, embed_dim=32, num_heads=4, ffn_dim=48).eval()
    with torch.no_grad():
        head.class_bias.normal_()
        out = head(torch.randn(3, 16, 4, 5))
    emb, w, b = out.label_embeddings, head.class_weight, head.class_bias
    loop = torch.stack([emb[:, k] @ w[k] + b[k] for k in range(6)], dim=1)
    assert torch.allclose(out.logits, loop, atol=1e-5)


def _hand_written_head(head: LabelWiseHead, feats: torch.Tensor):
    """Eval-mode oracle of the decoder layer with explicit per-head attention."""
    B, C, h, w = feats.shape
    H, D = head.attn.num_heads, head.embed_dim
    d = D // H
    tokens = feats.reshape(B, C, h * w).permute(0, 2, 1)
    mem = torch.relu(tokens @ head.proj.weight.T + head.proj.bias)
    q0 = head.query_embed.weight.expand(B, -1, -1)
    qn = F.layer_norm(2 * q0, (D,), head.query_norm.weight, head.query_norm.bias)
    wq, wk, wv = head.attn.in_proj_weight.chunk(3)
    bq, bk, bv = head.attn.in_proj_bias.chunk(3)
    ctx_heads, weights = [], []
    for i in range(H):
        sl = slice(i * d, (i + 1) * d)
        qi = qn @ wq[sl].T + bq[sl]
        ki = mem @ wk[sl].T + bk[sl]
        vi = mem @ wv[sl].T + bv[sl]
        a = torch.softmax(qi @ ki.transpose(1, 2) / math.sqrt(d), dim=-1)  # [B,q,T]
        weights.append(a)
        ctx_heads.append(a @ vi)
    ctx = torch.cat(ctx_heads, dim=-1) @ head.attn.out_proj.weight.T + head.attn.out_proj.bias
    e = F.layer_norm(qn + ctx, (D,), head.norm1.weight, head.norm1.bias)
    ffn = torch.relu(e @ head.ffn[0].weight.T + head.ffn[0].bias) @ head.ffn[3].weight.T + head.ffn[3].bias
    e = F.layer_norm(e + ffn, (D,), head.norm2.weight, head.norm2.bias)
    return e, torch.stack(weights).mean(0)


def test_head_matches_hand_written_attention():
    torch.manual_seed(2)
    head = LabelWiseHead(in_dim=12, num_classes=5, embed_dim=32, num_heads=4, ffn_dim=40).eval()
    feats = torch.randn(2, 12, 3, 4)
    with torch.no_grad():
        fast = head(feats)  # fused path, no weights
        slow = head(feats, return_attention=True)
        want_e, want_a = _hand_written_head(head, feats)
    assert fast.attention is None
    assert torch.allclose(fast.label_embeddings, want_e, atol=1e-5)
    assert torch.allclose(slow.label_embeddings, want_e, atol=1e-5)
    assert slow.attention.shape == (2, 5, 12)
    assert torch.allclose(slow.attention, want_a, atol=1e-6)
    assert torch.allclose(slow.attention.sum(-1), torch.ones(2, 5), atol=1e-5)
    head.keep_attention = True
    with torch.no_grad():
        assert head(feats).attention is not None


def test_sdpa_cross_attention_trains_like_multihead_attention():
    """In training mode (dropout off to compare) the single SDPA call gives nn.MultiheadAttention's
    outputs and parameter gradients; the parameters (and so old checkpoints) are the MHA's."""
    torch.manual_seed(4)
    head = LabelWiseHead(in_dim=12, num_classes=5, embed_dim=32, num_heads=4, ffn_dim=40, dropout=0.0).train()
    query, memory = torch.randn(3, 5, 32), torch.randn(3, 7, 32)
    grads = []
    for attend in (
        lambda: head.attn(query, memory, memory, need_weights=False)[0],
        lambda: head.cross_attend(query, memory),
    ):
        head.zero_grad()
        out = attend()
        (out * torch.linspace(-1, 1, 32)).sum().backward()
        grads.append((out.detach(), head.attn.in_proj_weight.grad.clone(), head.attn.out_proj.weight.grad.clone()))
    for want, got in zip(*grads):
        assert torch.allclose(got, want, atol=1e-5)
    assert {"attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight"} <= set(head.state_dict())


def test_gradients_and_frozen_queries():
    torch.manual_seed(3)
    model = build_model("tiny", num_classes=4, **SMALL).train()
    frozen = model.head.query_embed.weight.detach().clone()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
    out = model(torch.randn(2, 3, 64, 64))
    loss = F.binary_cross_entropy_with_logits(out.logits, torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 0]]))
    loss.backward()
    assert model.head.query_embed.weight.grad is None
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.backbone.model.conv1[0].weight.grad.abs().sum() > 0
    assert model.head.class_weight.grad.abs().sum() > 0 and model.head.proj.weight.grad.abs().sum() > 0
    opt.step()
    assert torch.equal(model.head.query_embed.weight, frozen)

    learn = build_model("tiny", num_classes=4, learnable_queries=True, **SMALL).train()
    before = learn.head.query_embed.weight.detach().clone()
    opt = torch.optim.Adam(learn.parameters(), lr=1e-2)
    learn(torch.randn(2, 3, 64, 64)).logits.sum().backward()
    assert learn.head.query_embed.weight.grad.abs().sum() > 0
    opt.step()
    assert not torch.equal(learn.head.query_embed.weight, before)


def test_same_seed_same_weights():
    states = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        states.append(build_model("tiny", num_classes=3, **SMALL).state_dict())
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not torch.equal(states[0]["head.query_embed.weight"], states[2]["head.query_embed.weight"])
    assert not torch.equal(states[0]["backbone.model.conv1.0.weight"], states[2]["backbone.model.conv1.0.weight"])


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights_file_is_loaded_exactly(tmp_path, suffix):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(10)
    source = timm.create_model("test_resnet", num_classes=1000)  # a timm checkpoint, classifier included
    for m in source.modules():  # non-default BN buffers, so buffers are compared too
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    path = tmp_path / f"w{suffix}"
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)

    torch.manual_seed(11)
    model = build_model("tiny", num_classes=3, pretrained=str(path), **SMALL)
    loaded = model.backbone.model.state_dict()
    assert loaded.keys() == {k for k in state if not k.startswith("fc.")}
    for key, value in loaded.items():
        assert torch.equal(value, state[key]), key
    torch.manual_seed(11)
    fresh = build_model("tiny", num_classes=3, **SMALL).backbone.model.state_dict()
    assert not torch.equal(fresh["conv1.0.weight"], state["conv1.0.weight"])


def test_weights_from_whole_network_with_ddp_prefix(tmp_path):
    torch.manual_seed(12)
    src = build_model("tiny", num_classes=3, **SMALL)
    torch.save({"model": {f"module.{k}": v for k, v in src.state_dict().items()}}, tmp_path / "net.pt")
    torch.manual_seed(13)
    dst = build_model("tiny", num_classes=3, pretrained=str(tmp_path / "net.pt"), **SMALL)
    for key, value in dst.backbone.state_dict().items():
        assert torch.equal(value, src.backbone.state_dict()[key]), key
    assert not torch.equal(dst.head.class_weight, src.head.class_weight)  # only the backbone is loaded


def test_weights_file_errors(tmp_path):
    missing = tmp_path / "nope" / "weights.safetensors"
    with pytest.raises(ConfigError, match=str(missing)):
        build_model("tiny", num_classes=3, pretrained=str(missing), **SMALL)
    state = build_model("tiny", num_classes=3, **SMALL).backbone.model.state_dict()
    state.pop("conv1.0.weight")
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match=r"partial\.pth.*conv1\.0\.weight.*extra\.weight"):
        build_model("tiny", num_classes=3, pretrained=str(tmp_path / "partial.pth"), **SMALL)
    other = build_model("resnet10t", num_classes=3, **SMALL).backbone.model.state_dict()
    torch.save(other, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="other.pth"):
        build_model("tiny", num_classes=3, pretrained=str(tmp_path / "other.pth"), **SMALL)


def test_offline_hub_is_a_clear_config_error(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)  # no network, no retries
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))  # empty cache
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match=r"model\.pretrained: /path/to/weights\.safetensors"):
        build_model("tiny", num_classes=3, pretrained=True, **SMALL)


def test_bad_names_are_config_errors():
    with pytest.raises(ConfigError, match="no_such_net"):
        build_model("no_such_net", num_classes=3)
    with pytest.raises(ConfigError, match="head"):
        build_model("tiny", num_classes=3, head="mlp")
    with pytest.raises(ConfigError, match="divisible"):
        build_model("tiny", num_classes=3, embed_dim=60, num_heads=8)


def test_repvgg_deploy_matches_training_form():
    torch.manual_seed(4)
    model = build_model("repvgg_a0", num_classes=5, **SMALL)
    for m in model.modules():  # non-trivial BN statistics so the fusion is really tested
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    model.eval()
    assert can_reparameterize(model)
    n_before = sum(p.numel() for p in model.parameters())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        fused = deploy(model, inplace=False)
        after = fused(x)
    assert sum(p.numel() for p in fused.parameters()) < n_before
    assert torch.allclose(before.logits, after.logits, atol=1e-4)
    for a, b in zip(before.features, after.features):  # random RepVGG stages grow large: relative check
        assert (a - b).abs().max() <= 1e-5 * a.abs().max()
    assert sum(p.numel() for p in model.parameters()) == n_before  # inplace=False left it alone
    model.reparameterize()
    with torch.no_grad():
        assert torch.allclose(model(x).logits, before.logits, atol=1e-4)


def test_catalog_counts():
    rows = model_catalog(["resnet18", "swin_t"], img_size=224, num_classes=80, head="linear")
    r18, swin = rows
    # timm resnet18 backbone: 11.18 M params, 1.82 GMACs at 224; + fc 512 -> 80
    assert r18["params_M"] == pytest.approx((11_176_512 + 512 * 80 + 80) / 1e6, abs=0.01)
    assert r18["gflops"] == pytest.approx(2 * 1.82, abs=0.05)
    assert swin["img_size"] == 224 and swin["timm_name"] == "swin_tiny_patch4_window7_224"
    full = model_catalog(["resnet18"], img_size=64)[0]
    assert full["params_M"] > r18["params_M"] and full["img_size"] == 64
    table = format_catalog(rows)
    assert table.splitlines()[0].startswith("| model") and len(table.splitlines()) == 6
