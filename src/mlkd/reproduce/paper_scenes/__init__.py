"""The paper's official recipe at paper scale on ``coco_scenes``, sized to a GPU time budget.

One command (``scripts/device_paper_scenes.sh``) on one GPU: Teacher (EfficientNet-Lite2, BCE),
then Student (Lite0, BCE), MLD and L2D, one seed, through ``mlkd sweep`` on
``configs/study/paper_scenes.yaml`` (the official recipe: 224 px, the paper's label-wise head,
Adam + L2, OneCycle, summed BCE, Cutout + RandAugment, the paper's λ; ImageNet-pretrained
EfficientNet-Lite weights), with bf16 autocast and the term diagnostics on.

- :mod:`.pack`: the device pack written on a machine with the fonts and weight packages;
- :mod:`.generate`: the scenes drawn in parallel into the dataset's cache;
- :mod:`.measure` and :mod:`.sizing`: rates measured in the first seconds, sizes that fit;
- :mod:`.driver`: the run; :mod:`.report`: the table, diagnostics and JSON summary.

``python -m mlkd.reproduce.paper_scenes prepare|run ...`` is the command line.
"""

from mlkd.reproduce.paper_scenes.driver import full_scale, run_paper_scenes, smoke_scale
from mlkd.reproduce.paper_scenes.pack import check_device_pack, write_device_pack
from mlkd.reproduce.paper_scenes.sizing import Measured, Plan, Scale, plan_sizes, plan_students

__all__ = [
    "Measured",
    "Plan",
    "Scale",
    "check_device_pack",
    "full_scale",
    "plan_sizes",
    "plan_students",
    "run_paper_scenes",
    "smoke_scale",
    "write_device_pack",
]
