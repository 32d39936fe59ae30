"""Pretrained backbone weights: timm's hub (online) or a local file (always).

A local file may be a ``.safetensors`` file or a ``torch.save`` file (``.pth`` / ``.pt`` /
``.bin``) holding a state dict, or a dict wrapping one under ``state_dict`` / ``model`` /
``state_dict_ema``. Accepted key layouts: a plain timm model of the same name, the same under
``module.`` (DDP), or a whole mlkd ``MultiLabelNet`` (only its ``backbone.`` keys are used).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Union

import torch
from torch import nn

from mlkd.errors import CheckpointError, ConfigError

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
    """``timm.create_model(timm_name, pretrained=True, **kwargs)``; a ConfigError when offline.

    Set ``HF_HUB_OFFLINE=1`` to skip the hub's network retries when the weights are cached.
    """
    import timm

    try:
        return timm.create_model(timm_name, pretrained=True, **kwargs)
    except (OSError, RuntimeError) as err:  # hub / connection / cache errors are OSErrors
        raise ConfigError(
            f"model.pretrained=true: could not get ImageNet weights for {timm_name!r} from the "
            f"timm / Hugging Face hub (offline, or not cached?): {type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}. To use a local file, "
            + HOW_TO_PASS_A_FILE
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
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    if state and all(k.startswith("model.") for k in state) and not any(k.startswith("model.") for k in target_keys):
        state = {k[len("model."):]: v for k, v in state.items()}
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
    bad_shape = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(target[k].shape)}"
        for k in target if k in state and state[k].shape != target[k].shape
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
