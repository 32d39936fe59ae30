"""Derive mlkd's packaged digits (the mosaic's ``digits`` source) from scikit-learn's load_digits.

    PYTHONPATH=src python scripts/derive_digits.py src/mlkd/data/assets/digits.npz

The split and scaling are ``mlkd.data.sources.derive_digits_splits``; the attribution is in
``src/mlkd/data/assets/README.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mlkd.data.sources import derive_digits_splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="the .npz to write")
    args = parser.parse_args()
    arrays = derive_digits_splits()
    np.savez_compressed(args.output, **arrays)
    sizes = ", ".join(f"{split} {len(arrays[f'{split}_labels'])}" for split in ("train", "test"))
    print(f"{args.output}: {sizes} images, {args.output.stat().st_size} bytes")


if __name__ == "__main__":
    main()
