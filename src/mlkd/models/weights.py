"""Pretrained backbone weights: offline weight packages, timm's hub (online, or its local
cache), or a local file (always).

A local file may be a ``.safetensors`` file or a ``torch.save`` file (``.pth`` / ``.pt`` /
``.bin``) holding a state dict, or a dict wrapping one under ``state_dict`` / ``model`` /
``state_dict_ema``. Accepted key layouts: a plain timm model of the same name, the same under
``module.`` (DDP), or a whole mlkd ``MultiLabelNet`` (only its ``backbone.`` keys are used).
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any, Optional, Union
from urllib.parse import urlsplit

import torch
from torch import nn

from mlkd.errors import CheckpointError, ConfigError
from mlkd.models.names import resolve_model_name
from mlkd.models.packaged import packaged_source, packaged_state_dict

log = logging.getLogger(__name__)

PretrainedArg = Union[bool, str, Path, None]

HOW_TO_PASS_A_FILE = (
    "download the weights on a machine with internet access (e.g. timm.create_model(name, "
    "pretrained=True) then safetensors.torch.save_file(model.state_dict(), 'weights.safetensors')) "
    "and pass the file: `model.pretrained: /path/to/weights.safetensors` "
    "(build_model(..., pretrained='/path/to/weights.safetensors'))"
)

_WRAPPER_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model")


def create_with_hub_weights(timm_name: str, **kwargs: Any) -> nn.Module:
    """``timm.create_model(timm_name, pretrained=True, **kwargs)`` without waiting on a network.

    Offline weights packages (``mlkd.models.packaged``) come first; then a file already in the
    Hugging Face cache (loaded with no network attempt); otherwise the hub, after a 3 s
    reachability probe. Any failure is one ConfigError naming the model and the way out.
    """
    import timm

    source = packaged_source(timm_name)
    if source is not None:
        overlay: dict[str, Any] = {"state_dict": packaged_state_dict(source)}
    else:
        cached = hub_cached_file(timm_name)
        if cached is None:
            _probe_hub(timm_name)
        else:
            log.info("%s: ImageNet weights from the local hub cache %s (no network)", timm_name, cached)
        overlay = {"file": cached} if cached else {}
    try:
        return timm.create_model(timm_name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    except (OSError, RuntimeError) as err:  # hub / connection / cache errors are OSErrors
        raise _hub_error(timm_name, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from err


def _hub_error(timm_name: str, why: str) -> ConfigError:
    return ConfigError(
        f"model.pretrained=true: could not get ImageNet weights for {timm_name!r} from the "
        f"timm / Hugging Face hub (offline, or not cached?): {why}. To use a local file, " + HOW_TO_PASS_A_FILE
    )


def hub_cached_file(timm_name: str) -> Optional[str]:
    """The weights file of ``timm_name``'s default pretrained tag already in the Hugging Face
    cache (or, for a model with a download URL only, torch's hub cache), or None."""
    import timm
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.get_pretrained_cfg(timm_name, allow_unregistered=True)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
        paths = [try_to_load_from_cache(cfg.hf_hub_id, name) for name in names]
    else:
        url = cfg.url[0] if isinstance(cfg.url, (list, tuple)) else cfg.url
        paths = [os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))] if url else []
    return next((p for p in paths if isinstance(p, str) and os.path.isfile(p)), None)


def _probe_hub(timm_name: str, timeout_s: float = 3.0) -> None:
    """A ConfigError at once when the hub is switched off (``HF_HUB_OFFLINE``) or its host (or
    the HTTPS proxy) does not accept a TCP connection within ``timeout_s``."""
    import huggingface_hub.constants as hf_constants

    if hf_constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise _hub_error(timm_name, "HF_HUB_OFFLINE is set and the weights are not in the local cache")
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlsplit(proxy if proxy else os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as err:
        raise _hub_error(
            timm_name, f"{host}:{port} unreachable ({type(err).__name__}) and the weights are not in the local cache"
        ) from err


def read_state_dict(path: Union[str, Path]) -> dict[str, torch.Tensor]:
    """The tensors stored in ``path`` (CPU). ConfigError if missing, CheckpointError if unreadable."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"model.pretrained: weights file {str(path)!r} does not exist; pass an existing "
            ".safetensors / .pth / .pt file, true for the hub, or false"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt file, pickle refused, ...
        raise CheckpointError(f"cannot read weights file {str(path)!r}: {err}") from err
    for key in _WRAPPER_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"weights file {str(path)!r} does not hold a state dict of tensors")
    return state


def _strip_prefixes(state: dict[str, torch.Tensor], target_keys: set[str]) -> dict[str, torch.Tensor]:
    """Map file keys onto the timm model's keys (``module.``, ``backbone.``, ``model.`` prefixes)."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith("backbone.") for k in state) and not any(k.startswith("backbone.") for k in target_keys):
        state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    if state and all(k.startswith("model.") for k in state) and not any(k.startswith("model.") for k in target_keys):
        state = {k[len("model.") :]: v for k, v in state.items()}
    return state


def load_backbone_weights(
    model: nn.Module, path: Union[str, Path], ignore_prefixes: tuple[str, ...] = ()
) -> dict[str, list[str]]:
    """Copy the weights in ``path`` into the timm ``model`` (in place).

    ``ignore_prefixes`` name the file keys expected to be unused (the timm classifier, e.g.
    ``("fc.",)``). Any missing key, any other unused key, or a shape mismatch is a
    CheckpointError naming the file and the keys. Returns ``{"missing": [], "unexpected": [...],
    "ignored": [...]}`` (the ignored classifier keys).
    """
    target = model.state_dict()
    state = _strip_prefixes(read_state_dict(path), set(target))
    ignored = sorted(k for k in state if k not in target and k.startswith(ignore_prefixes))
    unexpected = sorted(k for k in state if k not in target and k not in ignored)
    missing = sorted(k for k in target if k not in state)
    counters = [k for k in missing if k.endswith(".num_batches_tracked")]
    if counters:  # converted weights often lack them; torch's own loading tolerates it
        state = {**state, **{k: torch.zeros_like(target[k]) for k in counters}}
        missing = [k for k in missing if k not in counters]
        log.info("weights file %s lacks %d BatchNorm num_batches_tracked counters: reset to 0", path, len(counters))
    bad_shape = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(target[k].shape)}"
        for k in target
        if k in state and state[k].shape != target[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys {_short(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys {_short(unexpected)}")
    if bad_shape:
        problems.append(f"{len(bad_shape)} shape mismatches {_short(bad_shape)}")
    if problems:
        raise CheckpointError(
            f"weights file {str(path)!r} does not match backbone {type(model).__name__}: "
            + "; ".join(problems)
            + ". Save the file from a timm model of the same name (model.state_dict())."
        )
    model.load_state_dict({k: state[k] for k in target}, strict=True)
    log.info("loaded backbone weights from %s (%d tensors, %d classifier keys unused)", path, len(target), len(ignored))
    return {"missing": missing, "unexpected": unexpected, "ignored": ignored}


def _short(keys: list[str], n: int = 6) -> str:
    return str(keys[:n])[:-1] + (f", ... +{len(keys) - n} more]" if len(keys) > n else "]")


def pretrained_state_dict(name: str) -> dict[str, torch.Tensor]:
    """ImageNet weights of backbone ``name`` (mlkd alias or timm name) in timm naming, with its
    ImageNet classifier: the offline package for ``efficientnet_lite0/1/2``, else timm's hub
    (or its local cache; a ConfigError at once when offline and not cached)."""
    timm_name = resolve_model_name(name)
    source = packaged_source(timm_name)
    if source is not None:
        return packaged_state_dict(source)
    return dict(create_with_hub_weights(timm_name).state_dict())
