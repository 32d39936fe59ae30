"""Command line of the paper-scale scenes run (``scripts/device_paper_scenes.sh`` calls it).

python -m mlkd.reproduce.paper_scenes prepare --pack .device_pack
python -m mlkd.reproduce.paper_scenes run --pack .device_pack --out OUT [--smoke]
    [--work DIR] [--grid configs/study/paper_scenes.yaml] [--started-at EPOCH_S] [--budget-s S]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from mlkd.errors import MLKDError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mlkd.reproduce.paper_scenes", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    prepare = sub.add_parser("prepare", help="write the device pack (glyphs, weight packages)")
    prepare.add_argument("--pack", type=Path, default=Path(".device_pack"))
    run = sub.add_parser("run", help="measure, size, train Teacher / Student / MLD / L2D, report")
    run.add_argument("--pack", type=Path, default=Path(".device_pack"))
    run.add_argument("--out", type=Path, required=True, help="folder for the table and summary")
    run.add_argument(
        "--work", type=Path, default=Path("/tmp/mlkd-paper-scenes"), help="scenes cache and run folders (checkpoints)"
    )
    run.add_argument("--grid", type=Path, default=None, help="grid file (default configs/study/paper_scenes.yaml)")
    run.add_argument("--smoke", action="store_true", help="toy size on the CPU, fp32")
    run.add_argument("--started-at", type=float, default=None, help="time.time() of the command's start")
    run.add_argument("--budget-s", type=float, default=None, help="wall seconds for the whole command")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from mlkd.reproduce.paper_scenes import driver, pack

    try:
        if args.command == "prepare":
            manifest = pack.write_device_pack(args.pack)
            print(
                f"device pack {args.pack}: {len(manifest['files'])} files, {manifest['bytes']} bytes "
                f"({manifest['bytes'] / 2**20:.1f} MiB); fonts {', '.join(manifest['fonts'])}; "
                f"models {', '.join(manifest['models'])}",
                flush=True,
            )
            return 0
        scale = driver.smoke_scale() if args.smoke else driver.full_scale(driver.machine_cpus())
        if args.budget_s is not None:
            scale = replace(scale, budget_s=args.budget_s)
        started = args.started_at if args.started_at is not None else time.time()
        summary = driver.run_paper_scenes(
            args.pack,
            args.out,
            args.work,
            scale,
            started,
            args.grid or driver.GRID,
            say=lambda text: print(text, flush=True),
        )
    except MLKDError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from mlkd.reproduce.paper_scenes.report import MARKDOWN

    print((args.out / MARKDOWN).read_text(), flush=True)
    print(f"done in {summary['elapsed_s']:.0f} s; table and summary in {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
