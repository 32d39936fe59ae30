"""Run-folder logs: metrics.jsonl (rewritten atomically from the run's history; its format is
``mlkd.runrecord``'s) and progress."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import numbers
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterable

from mlkd.errors import RunFolderError
from mlkd.metrics import SCALAR_METRICS

log = logging.getLogger("mlkd")


def json_safe(value: Any) -> Any:
    """JSON-safe copy: NaN / inf become None (JSON has no NaN; the AP of a class without
    positives is NaN), numpy numbers become Python numbers."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value) if math.isfinite(value) else None
    return value


def write_jsonl(records: Iterable[dict], path: Path) -> None:
    """Write one JSON object per line, atomically (temporary file + rename)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        with open(tmp, "w") as handle:
            for record in records:
                handle.write(json.dumps(json_safe(record)) + "\n")
        os.replace(tmp, path)
    except OSError as err:  # disk full, quota: the previous metrics.jsonl stays as it was
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise RunFolderError.cannot_write(tmp, err) from None


def read_jsonl(path: str | Path) -> list[dict]:
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


class Progress:
    """A tqdm bar on an interactive terminal; otherwise a log line every ``interval`` steps."""

    def __init__(self, total: int, desc: str, mode: str, interval: int, enabled: bool):
        self.interval, self.desc, self.total, self.enabled = interval, desc, total, enabled
        interactive = mode == "on" or (mode == "auto" and sys.stderr.isatty())
        self.bar = None
        if enabled and interactive:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)
        self.start = time.perf_counter()

    def update(self, step: int, images: int, values: dict[str, float] | None) -> None:
        """Advance one step; ``values`` (already host floats) are shown when given."""
        if self.bar is not None:
            self.bar.update(1)
        if not values or not self.enabled:
            return
        rate = images / max(time.perf_counter() - self.start, 1e-9)
        text = " ".join(f"{key}={val:.4g}" for key, val in values.items()) + f" img/s={rate:.0f}"
        if self.bar is not None:
            self.bar.set_postfix_str(text)
        else:
            log.info("%s step %d/%d %s", self.desc, step, self.total, text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class TensorBoardLog:
    """Each epoch's scalars (train terms, every protocol's metrics, the mean effective weights
    under ``distill.balance``) as TensorBoard events.

    Needs the optional ``tensorboard`` package (``pip install 'mlkd[tensorboard]'``).
    """

    METRICS = SCALAR_METRICS

    def __init__(self, folder: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            from mlkd.errors import ConfigError
            from mlkd.optional import install_hint

            raise ConfigError(
                "mlkd needs tensorboard for train.tensorboard=true: "
                f"{install_hint('tensorboard')} (or set train.tensorboard=false)"
            ) from None
        self.writer = SummaryWriter(str(folder))

    def write(self, record: dict) -> None:
        epoch = record["epoch"]
        for name, value in record.get("train", {}).items():
            if isinstance(value, (int, float)):
                self.writer.add_scalar(f"train/{name}", value, epoch)
        for name, entry in (record.get("balance") or {}).get("terms", {}).items():
            self.writer.add_scalar(f"balance/{name}", entry["effective"], epoch)  # mean effective weight
        for protocol, metrics in record.get("eval", {}).items():
            if isinstance(metrics, dict):
                for key in self.METRICS:
                    if key in metrics:
                        self.writer.add_scalar(f"eval/{protocol}/{key}", metrics[key], epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
