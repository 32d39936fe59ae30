"""Derive mlkd's shipped COCO label sets from the official L2D list JSON.

    PYTHONPATH=src python scripts/derive_coco_label_sets.py \
        ../shared/data/coco2014_val_label_sets.json src/mlkd/data/assets/coco2014_val_label_sets.npz

The format is described in ``mlkd.data.coco_label_sets``; the attribution in
``src/mlkd/data/assets/README.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mlkd.data.coco_label_sets import derive_from_official_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="official list JSON (appendix/val_anno.json)")
    parser.add_argument("output", type=Path, help="the .npz to write")
    args = parser.parse_args()
    arrays = derive_from_official_json(args.source)
    np.savez_compressed(args.output, **arrays)
    print(f"{args.output}: {len(arrays['counts'])} label sets, {arrays['counts'].mean():.4f} labels per image")


if __name__ == "__main__":
    main()
