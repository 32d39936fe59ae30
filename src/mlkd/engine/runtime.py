"""Device, precision and seeding: the one place that knows about hardware."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
from dataclasses import dataclass

import numpy as np
import torch

from mlkd.errors import ConfigError

log = logging.getLogger("mlkd")


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all devices); optionally force deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA (this process's local rank), then MPS, then CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(
            f"train.device: {name!r} is not a device ({err}); use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: cuda was asked for but CUDA is not available; use train.device=cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


@dataclass(frozen=True)
class Precision:
    """Autocast dtype (None = full precision) and whether a GradScaler is needed."""

    dtype: torch.dtype | None
    use_scaler: bool

    def autocast(self, device: torch.device):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.dtype)


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AMX tiles or AVX-512 BF16), where
    bf16 autocast speeds training up; checked (and logged) once per process. The environment
    variable ``MLKD_CPU_BF16`` (``0`` / ``1``) overrides the detection, e.g. to keep one
    precision across machines."""
    forced = os.environ.get("MLKD_CPU_BF16", "").strip()
    if forced not in ("", "0", "1"):
        raise ConfigError(f"MLKD_CPU_BF16={forced!r}: use 0 (full precision) or 1 (bf16) for train.amp=auto on CPU")
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    native = forced == "1" if forced else any(getattr(torch.cpu, name, lambda: False)() for name in probes)
    if native:
        log.info("this CPU has native bf16 matrix support (AMX / AVX-512 BF16): train.amp=auto uses bf16 autocast")
    return native


def resolve_precision(amp: str, device: torch.device) -> Precision:
    """The autocast dtype and GradScaler use of ``train.amp`` on ``device``.

    - ``auto``: bf16 without a scaler on CUDA with bf16 support, else fp16 + GradScaler on CUDA;
      bf16 on a CPU with native bf16 matrix support (``cpu_has_native_bf16``: AMX or AVX-512
      BF16); full precision elsewhere.
    - ``official`` (the official L2D code: ``torch.cuda.amp.autocast()`` + ``GradScaler()``):
      fp16 + GradScaler on CUDA, whatever bf16 support; full precision elsewhere (the official
      code runs on CUDA only), so a config naming it still runs on a CPU.
    - ``fp16``: fp16 (+ GradScaler on CUDA); a ConfigError on CPU. ``bf16``: bf16, no scaler.
    - ``off``: full precision.

    The scaler skips a step whose gradients are not finite and lowers its scale (fp16
    overflow); a step whose *loss* is not finite follows ``train.nonfinite`` (``stop`` or
    ``skip``) in every mode.
    """
    if amp == "official":
        return Precision(torch.float16, True) if device.type == "cuda" else Precision(None, False)
    if amp == "auto" and device.type == "cpu" and cpu_has_native_bf16():
        return Precision(torch.bfloat16, False)
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return Precision(None, False)
    if amp == "auto":
        amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if amp == "fp16":
        if device.type == "cpu":
            raise ConfigError("train.amp: fp16 autocast is for CUDA; use train.amp=bf16, official or off on CPU")
        return Precision(torch.float16, device.type == "cuda")
    return Precision(torch.bfloat16, False)
