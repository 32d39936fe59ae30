"""The inference graph of a trained network, and where an export of it fails.

:class:`InferenceNet` is what every export holds: the network in eval mode with RepVGG-style
branches fused, preceded by the data pipeline's normalisation when the run normalised its
inputs there (``data.normalize``), so that it takes RGB in [0, 1] whatever the run did.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from mlkd.errors import MLKDError, shorten
from mlkd.models.input_norm import InputNorm, NormSpec


class ExportError(MLKDError, RuntimeError):
    """An export that cannot be made or that does not reproduce the PyTorch outputs."""


class InferenceNet(nn.Module):
    """images [B,3,S,S] float RGB in [0, 1] -> (logits [B,q], probabilities [B,q] = sigmoid(logits)).

    ``net``: an mlkd ``MultiLabelNet`` (its own input normalisation inside), in deploy form.
    ``data_norm``: (mean, std) of the data pipeline's normalisation (``data.normalize``), or None.
    """

    def __init__(self, net: nn.Module, data_norm: NormSpec = None):
        super().__init__()
        self.data_norm = InputNorm(*data_norm) if data_norm else nn.Identity()
        self.net = net
        self.eval()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.net(self.data_norm(images)).logits
        return logits, torch.sigmoid(logits)


def _inputs_of(module: nn.Module, example: tuple) -> dict[str, tuple[tuple, dict]]:
    """(args, kwargs) each direct child of ``module`` is called with during ``module(*example)``."""
    seen: dict[str, tuple[tuple, dict]] = {}
    hooks = []
    for name, child in module.named_children():

        def hook(_, args, kwargs, name=name):
            seen.setdefault(name, (args, kwargs))

        hooks.append(child.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        with torch.no_grad():
            module(*example)
    finally:
        for h in hooks:
            h.remove()
    return seen


def failing_part(
    module: nn.Module,
    example: tuple,
    export: Callable[[nn.Module, tuple, dict], None],
    prefix: str = "",
    depth: int = 4,
) -> Optional[tuple[str, nn.Module, Exception]]:
    """The deepest submodule (dotted path, module, its error) whose own export fails, looking
    through the children ``module`` calls; None when every child exports (the failure is in
    ``module``'s own code between them)."""
    if depth == 0:
        return None
    for name, (args, kwargs) in _inputs_of(module, example).items():
        child = getattr(module, name)
        try:
            export(child, args, kwargs)
        except Exception as err:  # noqa: BLE001 - any exporter failure localises the same way
            path = f"{prefix}{name}"
            deeper = failing_part(child, args, export, path + ".", depth - 1) if not kwargs else None
            return deeper or (path, child, err)
    return None


def describe_failure(net: nn.Module, example: tuple, export: Callable, err: Exception, fmt: str) -> ExportError:
    """A one-line ExportError naming the part of ``net`` that cannot be exported to ``fmt``."""
    found = failing_part(net, example, export)
    path, module, cause = found if found else ("the model", net, err)
    first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return ExportError(
        f"cannot export to {fmt}: {path} ({type(module).__name__}) fails: {type(cause).__name__}: {shorten(first, 300)}"
    )
