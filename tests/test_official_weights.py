"""The official recipe's ImageNet weights: each timm tag exists in the installed timm and points
at the official code's source release, checked through ``timm.get_pretrained_cfg`` (no download);
configs/recipes/official.yaml selects exactly these tags; ``mlkd models`` prints them."""

from pathlib import Path

import pytest
import timm
import yaml

from mlkd.models import format_catalog, model_catalog
from mlkd.models.names import PAPER_BACKBONES, resolve_model_name
from mlkd.models.official_weights import NO_EQUAL, OFFICIAL_WEIGHTS, PORT, SAME

RECIPE = Path(__file__).resolve().parent.parent / "configs" / "recipes" / "official.yaml"
# The official code's sources (its models/*.py): torchvision's download folder (v1 files), the
# Swin v1.0.0 release; timm's tag of a torchvision v1 file is `tv_in1k` (v2: `tv2_in1k`).
TORCHVISION = "https://download.pytorch.org/models/"
SWIN = "https://github.com/SwinTransformer/storage/releases/download/v1.0.0/"


def test_every_paper_backbone_has_an_entry():
    assert set(OFFICIAL_WEIGHTS) == set(PAPER_BACKBONES)


@pytest.mark.parametrize("alias", [a for a in PAPER_BACKBONES if OFFICIAL_WEIGHTS[a].timm_tag])
def test_tag_resolves_to_the_official_release(alias):
    entry = OFFICIAL_WEIGHTS[alias]
    architecture, tag = entry.timm_tag.split(".")
    assert architecture == resolve_model_name(alias)
    assert entry.timm_tag in timm.list_pretrained(architecture + ".*")
    cfg = timm.get_pretrained_cfg(entry.timm_tag)
    assert cfg is not None and cfg.tag == tag and cfg.architecture == architecture
    assert cfg.num_classes == 1000  # ImageNet-1k heads, not 22k
    if architecture.startswith(("resnet", "wide_resnet")):
        # torchvision's v1 file of that architecture (the official code names an older file of it)
        assert tag == "tv_in1k" and cfg.url.startswith(TORCHVISION + architecture + "-")
        assert f"({architecture}-" in entry.official  # the official code's file of the same architecture
    elif architecture.startswith("swin"):
        assert cfg.url == SWIN + architecture + ".pth"  # the very file the official code downloads
        assert architecture + ".pth" in entry.official
    else:
        assert entry.match == PORT and tag == "rvgg_in1k"
    if entry.match == SAME:
        # the official weights are not timm's default for these aliases
        default = timm.get_pretrained_cfg(architecture).tag
        if alias in ("resnet18", "resnet34", "resnet50", "resnet101", "wrn50", "swin_s"):
            assert default != tag


def test_defaults_differ_as_reported():
    defaults = {
        a: timm.get_pretrained_cfg(resolve_model_name(a)).tag for a in ("resnet34", "resnet101", "wrn50", "swin_s")
    }
    assert defaults == {
        "resnet34": "a1_in1k",
        "resnet101": "a1h_in1k",
        "wrn50": "racm_in1k",
        "swin_s": "ms_in22k_ft_in1k",
    }


def test_mobilenetv2_has_no_timm_equal():
    entry = OFFICIAL_WEIGHTS["mobilenetv2"]
    assert entry.match == NO_EQUAL and entry.timm_tag is None and "d-li14" in entry.official
    assert timm.list_pretrained("mobilenetv2_100.*") == ["mobilenetv2_100.ra_in1k"]  # timm's own only


def test_the_recipe_selects_exactly_these_tags():
    models = yaml.safe_load(RECIPE.read_text())["models"]
    expected = {a: {"name": e.timm_tag} for a, e in OFFICIAL_WEIGHTS.items() if e.timm_tag}
    assert models == expected


def test_mlkd_models_prints_the_official_weights():
    rows = model_catalog(["resnet34", "mobilenetv2"], head="linear")
    assert "`resnet34.tv_in1k`" in rows[0]["official_weights"] and "same release" in rows[0]["official_weights"]
    assert rows[1]["official_weights"].startswith("timm default (no timm equal: d-li14")
    table = format_catalog(rows)
    assert "official code's weights" in table.splitlines()[0]
    assert "`resnet34.tv_in1k`" in table and "no timm equal" in table
