"""DistributedDataParallel helpers (torchrun). Single-process runs use the same code paths."""

from __future__ import annotations

import datetime
import os

import numpy as np
import torch
import torch.distributed as dist

from mlkd.data.samplers import DistInfo, ShardSampler  # noqa: F401 - re-exported

#: How long ranks may take to join each other (start-up skew: imports, data on a slow disk).
JOIN_TIMEOUT_S = 600.0


def init_distributed(device_type: str, timeout_s: float = 600.0) -> DistInfo:
    """Join the process group torchrun describes in the environment (no-op without it).

    NCCL on CUDA, gloo elsewhere. ``timeout_s`` (``train.dist_timeout_s``) bounds every
    collective once the group is formed, so a dead or hung rank makes the others fail instead
    of waiting forever. Joining waits up to ``max(timeout_s, JOIN_TIMEOUT_S)``, so a short
    collective timeout does not turn uneven start-up times into failures: the rendezvous store
    is made with the join timeout and the group with ``timeout_s`` (no ``dist.set_timeout``,
    which older torch versions lack).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        join = datetime.timedelta(seconds=max(timeout_s, JOIN_TIMEOUT_S))
        store, rank, world = next(dist.rendezvous("env://", timeout=join))
        store.set_timeout(join)
        # The prefix init_process_group puts on a store it makes itself (the store is shared).
        dist.init_process_group(
            backend,
            store=dist.PrefixStore("default_pg", store),
            rank=rank,
            world_size=world,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def local_rank_from_env() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def gather_arrays(arrays: dict[str, np.ndarray], info: DistInfo) -> dict[str, np.ndarray]:
    """Concatenate each rank's arrays (same keys) on every rank; identity when single-process."""
    if not info.enabled:
        return arrays
    parts: list[dict[str, np.ndarray]] = [None] * info.world_size  # type: ignore[list-item]
    dist.all_gather_object(parts, arrays)
    return {key: np.concatenate([part[key] for part in parts]) for key in arrays}


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_mean(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of ``tensor`` over ranks (in place on a copy)."""
    if not info.enabled:
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out)
    return out / info.world_size


def any_rank(flag: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """``flag`` (a bool tensor) OR-ed over the ranks, the same on every rank: one all_reduce
    on the flag's device, no host sync; identity when single-process."""
    if not info.enabled:
        return flag
    out = flag.detach().to(torch.int32)
    dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return out.bool()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_buffers(module: torch.nn.Module, info: DistInfo) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP syncs buffers at the start of each forward, so after the last training step each rank
    holds the statistics of its own last batch; evaluation and checkpoints need rank 0's.
    """
    if not info.enabled:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=0)
