"""``python -m mlkd.bench <name> [options]``: dispatch to ``mlkd.bench.<name>.main``.

``all`` runs every benchmark with its defaults.
"""

from __future__ import annotations

import importlib
import sys
from typing import Sequence

from mlkd.bench import BENCHES


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = f"usage: python -m mlkd.bench {{{','.join([*BENCHES, 'all'])}}} [options]\n"
    if argv and argv[0] in ("-h", "--help"):
        sys.stdout.write(usage)
        return 0
    if not argv or argv[0] not in (*BENCHES, "all"):
        sys.stderr.write(usage)
        return 2
    names = list(BENCHES) if argv[0] == "all" else [argv[0]]
    status = 0
    for name in names:
        status |= importlib.import_module(BENCHES[name]).main(argv[1:] if name == argv[0] else [])
    return status


if __name__ == "__main__":
    raise SystemExit(main())
