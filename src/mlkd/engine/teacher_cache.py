"""Teacher-output cache: run the frozen teacher once over a deterministic view of the training
data, store its outputs on disk, and serve them to every distillation epoch (and every student
that shares the teacher, data and view) instead of a teacher forward per step.

Config (``distill`` section):

- ``cache``: ``off`` (default) | ``auto`` (a folder named by the fingerprint under
  ``$MLKD_CACHE/teacher``, else ``~/.cache/mlkd/teacher``: built when absent, reused when
  present) | a folder (reused when it exists and matches, built there when absent).
- ``cache_view``: which images the teacher sees, and so which images the student trains on
  while the cache is on:
  ``eval`` (default): the recipe's evaluation transform of the training images (resize,
  no augmentation; one view);
  ``train``: the recipe's training augmentation made deterministic per (``train.seed``, view,
  image): the random draws of image i in view v come from a generator seeded with
  (seed, v, i). ``cache_views`` = V views are stored and epoch e uses view e mod V, so the
  student sees exactly the images the teacher saw (V = epochs gives a new augmentation every
  epoch, at the cost of one teacher pass per view).

What is stored, per view and dataset index, as float16 ``.npy`` files read through
``numpy.memmap``: ``logits`` [N, q], ``label_embeddings`` [N, q, D] (when the teacher has the
label-wise head) and ``pooled`` [N, F] (so RKD and PKT can use the cache too), plus a
``written`` mask. ReviewKD reads the teacher's stage feature maps, which are not stored (at
224 px a ResNet's four stages take ~1.5 MB per image in fp16): the cache refuses that method.
Size: N x V x (q x (D + 1) + F) x 2 bytes, e.g. COCO (82,081 images, q = 80, D = 768,
F = 2048 for a ResNet-101) ~10.4 GB per view; free disk space is checked before building.

Each field is stored as float16 deviations from a float32 reference (the mean output over the
first 64 images of view 0, ``offset_<field>.npy``) and served as reference + deviation in
float32: the rounding error is relative to how much outputs differ between images, not to
their size. Distances between label embeddings (CD/ID) are differences of nearly equal vectors
when a teacher's embeddings of a class vary little between images; stored as plain float16
they changed the CD loss by ~1% in the tests' small teacher, centred they do not.

Correctness: the folder's ``meta.json`` holds a fingerprint of what produced it: the teacher
(a SHA-256 of its weights, its class list and the autocast dtype of its forward), the dataset
(name, options, number of images, classes, a digest of the label matrix) and the view (the
transform's description, the policy, the number of views and the seed). Opening a folder whose
fingerprint differs is a ConfigError naming the parts that differ (never rebuilt over). A cache
is written to a temporary folder next to the target and renamed into place when complete, so a
crash never leaves a half-written cache under the target name. Under torchrun every rank builds
its shard of the images into the same temporary folder; rank 0 renames it; barriers separate
the phases.

Integrity (``mlkd.engine.cache_files``): the fingerprint says what a cache was built for, not
that its bytes are still those written. When a build completes, ``meta.json`` records the size
and SHA-256 of every array file (``files``: the fields, their ``offset_*`` and ``written``);
opening a cache checks each file against them, streamed in 1 MiB reads, once per file per
process (``mlkd.fileio.file_sha256``). A file that is missing, truncated, longer, or whose
digest differs (a flipped bit, another teacher's arrays copied in), and a ``meta.json`` without
digests (an earlier mlkd), is derived data gone bad: ``open_or_build`` (a run with its teacher
at hand; under torchrun rank 0 checks and every rank follows) logs one line naming the file and
what is wrong, removes the folder and rebuilds it; ``TeacherCache`` opened on a folder by itself
raises a CacheCorruptError naming the file and saying to delete the folder. Checking costs one
read of the cache per process (``mlkd bench cache`` measures it against an epoch).

Each build first removes the temporary folders that killed builds left next to its target
(``mlkd.engine.stale_builds``): a build holds an flock on its folder's ``.lock`` until it ends,
so a free lock written on this host marks a dead build, removed at once; a live build's folder,
locked, is never touched (a folder of another host, or one without a lock file, is removed only
once a week old). Under torchrun rank 0 holds the lock for every rank writing into the folder.

Cached values equal the live teacher outputs for the same view up to float16 rounding of the
deviations (error <= 2**-11 x |output - reference|); they are served as float32.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from mlkd.data.batch import collate
from mlkd.data.views import SeededViews, ViewSampler, view_dataset
from mlkd.engine.cache_files import META, damage, discard, make_temporary, publish
from mlkd.engine.distributed import DistInfo, ShardSampler, barrier
from mlkd.errors import CacheCorruptError, ConfigError, DataError
from mlkd.models.output import ModelOutput

log = logging.getLogger("mlkd")

FORMAT_VERSION = 1
VIEW_POLICIES = ("eval", "train")
#: ModelOutput fields a cache can serve (ReviewKD's ``features`` are not stored).
SERVABLE = ("logits", "label_embeddings", "pooled")


# ---------------------------------------------------------------- fingerprint
def weights_digest(model: nn.Module) -> str:
    """SHA-256 of a model's state dict (names, dtypes, shapes and bytes) and of its own input
    normalisation, if any."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    norm = getattr(model, "input_normalization", None)
    if norm is not None:  # not in the state dict (non-persistent) but part of the teacher
        digest.update(f"input_norm:{norm};".encode())
    return digest.hexdigest()


def fingerprint(
    teacher: nn.Module,
    teacher_dtype: Optional[torch.dtype],
    dataset: Dataset,
    data_name: str,
    data_options: dict,
    policy: str,
    views: int,
    seed: int,
) -> dict:
    """What determines a cache's content (see the module docstring); JSON-serialisable."""
    base = dataset.dataset if isinstance(dataset, SeededViews) else dataset
    labels = base.labels_matrix()
    return {
        "format": FORMAT_VERSION,
        "teacher": {
            "weights_sha256": weights_digest(teacher),
            "autocast": str(teacher_dtype) if teacher_dtype is not None else "off",
        },
        "dataset": {
            "name": data_name,
            "options": {k: v for k, v in sorted(data_options.items()) if k != "cache_dir"},
            "num_images": len(dataset),
            "classes": list(dataset.classes),
            "labels_sha256": (
                hashlib.sha256(np.ascontiguousarray(labels, np.uint8).tobytes()).hexdigest()
                if labels is not None
                else None
            ),
        },
        "view": {
            "policy": policy,
            "views": views,
            "seed": seed if policy == "train" else None,
            "transform": repr(getattr(dataset, "transform", None)),
        },
    }


def _digest(fp: dict) -> str:
    return hashlib.sha256(json.dumps(fp, sort_keys=True, default=str).encode()).hexdigest()


def _differences(built: dict, wanted: dict) -> list[str]:
    out = []
    for section in sorted(set(built) | set(wanted)):
        a, b = built.get(section), wanted.get(section)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            keys = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
            out.append(f"{section} ({', '.join(keys)})")
        else:
            out.append(section)
    return out


def auto_folder(fp: dict) -> Path:
    """``$MLKD_CACHE/teacher/<digest>`` (default root ``~/.cache/mlkd``)."""
    root = os.environ.get("MLKD_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "mlkd"
    return base / "teacher" / _digest(fp)[:20]


# ---------------------------------------------------------------- the folder's files
def read_meta(folder: Path, expected: Optional[dict] = None) -> dict:
    """A cache folder's meta.json, checked against the fingerprint ``expected`` (if given)."""
    try:
        meta = json.loads((folder / META).read_text())
    except FileNotFoundError:
        raise DataError(
            f"teacher cache {folder} is incomplete (no {META}): delete the folder and it is rebuilt"
        ) from None
    except (OSError, ValueError) as err:
        raise DataError(f"teacher cache {folder}: unreadable {META} ({err}); delete the folder") from None
    if expected is not None and meta.get("fingerprint") != expected:
        parts = _differences(meta.get("fingerprint") or {}, expected)
        raise ConfigError(
            f"distill.cache: {folder} was built for another {', '.join(parts)}; it cannot "
            "serve this run. Use distill.cache=auto (one folder per fingerprint), another folder, "
            "or delete this one to rebuild it"
        )
    return meta


# ---------------------------------------------------------------- the cache
class TeacherCache:
    """A complete cache folder, opened read-only (memory-mapped). ``expected``: the fingerprint
    it must have (ConfigError naming the parts that differ); ``verify``: check every file against
    its digest first (CacheCorruptError naming the file; False where that was just done).

    ``lookup(index [B] long, view, device) -> ModelOutput`` (logits [B, q], label_embeddings
    [B, q, D] or None, pooled [B, F], float32 on ``device``; no stage features).
    """

    def __init__(self, folder: str | Path, expected: Optional[dict] = None, verify: bool = True):
        self.folder = Path(folder)
        self.meta = read_meta(self.folder, expected)
        problem = damage(self.folder, self.meta) if verify else None
        if problem:
            raise CacheCorruptError(
                f"teacher cache {self.folder}: {problem}; delete the folder (a run with distill.cache "
                "set to it and its teacher rebuilds it)"
            )
        self.views = int(self.meta["views"])
        self.policy = self.meta["fingerprint"]["view"]["policy"]
        self.fields = list(self.meta["fields"])
        self._arrays = {name: np.load(self.folder / f"{name}.npy", mmap_mode="r") for name in self.fields}
        self._offsets = {name: torch.from_numpy(np.load(self.folder / f"offset_{name}.npy")) for name in self.fields}
        self._written = np.load(self.folder / "written.npy", mmap_mode="r")

    def __len__(self) -> int:
        return int(self.meta["num_images"])

    def view_of_epoch(self, epoch: int) -> int:
        return epoch % self.views

    def wrap_sampler(self, sampler: Sampler) -> Sampler:
        """The training sampler for this cache's views (identity for the eval view)."""
        return ViewSampler(sampler, self.views) if self.policy == "train" else sampler

    def lookup(self, index: torch.Tensor, view: int, device: torch.device | str = "cpu") -> ModelOutput:
        """The cached teacher outputs of dataset items ``index`` [B] under ``view``."""
        idx = np.asarray(index.cpu().numpy() if isinstance(index, torch.Tensor) else index, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise DataError(f"teacher cache {self.folder}: index out of range [0, {len(self)})")
        missing = idx[~self._written[view, idx].astype(bool)]
        if missing.size:
            raise DataError(
                f"teacher cache {self.folder}: no entry for image(s) {missing[:5].tolist()} in "
                f"view {view} (unreadable when the cache was built?); delete the folder to rebuild"
            )
        device = torch.device(device)
        out = {}
        for name in SERVABLE:
            if name in self._arrays:
                rows = torch.from_numpy(self._arrays[name][view][idx])
                if device.type == "cuda":
                    rows = rows.pin_memory()
                offset = self._offsets[name]
                if offset.device != device:
                    offset = self._offsets[name] = offset.to(device)
                out[name] = rows.to(device, non_blocking=True).float().add_(offset)
        return ModelOutput(
            logits=out["logits"], label_embeddings=out.get("label_embeddings"), pooled=out["pooled"], features=[]
        )


def _shapes(teacher: nn.Module) -> dict[str, tuple[int, ...]]:
    q = int(teacher.num_classes)
    shapes = {"logits": (q,), "pooled": (int(teacher.pooled_dim),)}
    if getattr(teacher, "embed_dim", None):
        shapes["label_embeddings"] = (q, int(teacher.embed_dim))
    return shapes


def _from_rank0(value, info: DistInfo):
    """Rank 0's ``value`` on every rank (a picklable object)."""
    if not info.enabled:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@torch.no_grad()
def _offsets(teacher, dataset, fields, policy, device, precision, count: int = 64) -> dict[str, np.ndarray]:
    """Mean teacher output over the first ``count`` images of view 0 (the same on every rank)."""
    keys = [(i, 0) if policy == "train" else i for i in range(min(count, len(dataset)))]
    batch = collate([dataset[key] for key in keys])
    if batch["images"] is None:
        return {name: np.zeros(shape, np.float32) for name, shape in fields.items()}
    with precision.autocast(device):
        out = teacher(batch["images"].to(device))
    return {name: getattr(out, name).float().mean(0).cpu().numpy() for name in fields}


@torch.no_grad()
def _fill(
    teacher, dataset, arrays, written, views, policy, info, device, precision, batch_size, workers, offsets
) -> None:
    """Write this rank's shard of every view into the (open, writable) arrays."""
    shard = ShardSampler(len(dataset), info.rank, info.world_size)
    for view in range(views):
        sampler = ViewSampler(shard, views, view) if policy == "train" else shard
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=workers,
            collate_fn=collate,
            pin_memory=device.type == "cuda",
        )
        for batch in loader:
            if batch["images"] is None:
                continue
            rows = batch["index"].numpy()
            with precision.autocast(device):
                out = teacher(batch["images"].to(device, non_blocking=True))
            for name in arrays:
                value = getattr(out, name).float().cpu().numpy() - offsets[name]
                half = value.astype(np.float16)
                if not np.isfinite(half).all():
                    where = "is not finite" if not np.isfinite(value).all() else "overflows float16"
                    raise DataError(
                        f"teacher cache: the teacher's {name} {where} for image(s) "
                        f"{rows[:5].tolist()}; it cannot be cached (distill.cache=off)"
                    )
                arrays[name][view, rows] = half
            written[view, rows] = 1


def build_cache(
    folder: Path,
    teacher: nn.Module,
    dataset: Dataset,
    fp: dict,
    views: int,
    info: DistInfo,
    device: torch.device,
    precision,
    batch_size: int,
    workers: int,
) -> TeacherCache:
    """Run ``teacher`` over every view of ``dataset`` and write the cache at ``folder``
    atomically (temporary folder + rename). Returns the opened cache."""
    folder = Path(folder)
    shapes, n = _shapes(teacher), len(dataset)
    policy = fp["view"]["policy"]
    need = sum(views * n * int(np.prod(s)) * 2 for s in shapes.values()) + views * n
    lock, published = contextlib.ExitStack(), False
    tmp = make_temporary(folder, need, lock) if info.is_main else None
    tmp = Path(_from_rank0(str(tmp) if tmp else None, info))
    start = time.perf_counter()
    was_training = teacher.training
    teacher.eval()
    try:
        if info.is_main:
            for name, shape in shapes.items():
                np.lib.format.open_memmap(tmp / f"{name}.npy", "w+", np.float16, (views, n, *shape)).flush()
            np.lib.format.open_memmap(tmp / "written.npy", "w+", np.uint8, (views, n)).flush()
            log.info("teacher cache: building %s (%d images x %d view(s), %.2f GiB)", folder, n, views, need / 2**30)
        barrier(info)
        offsets = _offsets(teacher, dataset, shapes, policy, device, precision)
        if info.is_main:
            for name, offset in offsets.items():
                np.save(tmp / f"offset_{name}.npy", offset.astype(np.float32))
        arrays = {name: np.load(tmp / f"{name}.npy", mmap_mode="r+") for name in shapes}
        written = np.load(tmp / "written.npy", mmap_mode="r+")
        _fill(teacher, dataset, arrays, written, views, policy, info, device, precision, batch_size, workers, offsets)
        for array in (*arrays.values(), written):
            array.flush()
        del arrays, written
        barrier(info)
        if info.is_main:
            meta = {
                "format": FORMAT_VERSION,
                "fingerprint": fp,
                "num_images": n,
                "views": views,
                "fields": {name: list(shape) for name, shape in shapes.items()},
                "dtype": "float16",
                "build_seconds": round(time.perf_counter() - start, 3),
                "complete": True,
            }
            published = publish(tmp, folder, meta)
    finally:
        teacher.train(was_training)
        if info.is_main and not published and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        lock.close()
    published = _from_rank0(published, info)
    barrier(info)
    log.info("teacher cache: %s ready in %.1fs", folder, time.perf_counter() - start)
    return TeacherCache(folder, fp, verify=not published)  # its digests were just taken from these bytes


def open_or_build(
    location: str,
    teacher: nn.Module,
    dataset: Dataset,
    fp: dict,
    views: int,
    info: DistInfo,
    device: torch.device,
    precision,
    batch_size: int,
    workers: int,
) -> TeacherCache:
    """``location``: "auto" or a folder. A complete folder is opened (its fingerprint must
    equal ``fp``, its files their digests); an absent (or empty) one is built, and so is one
    whose files are missing, truncated, damaged or unverifiable (a log line names the file).
    Under torchrun rank 0 checks the files and every rank follows its verdict."""
    folder = auto_folder(fp) if location == "auto" else Path(location).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"distill.cache: {folder} is a file, not a folder")
    if folder.is_dir() and any(folder.iterdir()):
        meta = read_meta(folder, fp)  # on every rank: a ConfigError for another fingerprint
        problem = _from_rank0(damage(folder, meta) if info.is_main else None, info)
        if problem is None:
            log.info("teacher cache: using %s", folder)
            return TeacherCache(folder, fp, verify=False)  # just verified (by rank 0)
        if info.is_main:
            log.warning("teacher cache %s: %s; rebuilding it", folder, problem)
            discard(folder, problem)
    return build_cache(folder, teacher, dataset, fp, views, info, device, precision, batch_size, workers)


def teacher_reads(terms) -> dict[str, set[str]]:
    """{term name: the teacher's ModelOutput fields it reads} of the terms that read the teacher."""
    return {term.name: set(term.requires()) for term in terms if term.needs_teacher}


def unservable_reads(terms) -> dict[str, list[str]]:
    """{term name: the teacher fields it reads that a cache does not store}, for the terms that
    read such a field (empty: a cache can serve them all)."""
    return {
        name: sorted(fields - set(SERVABLE)) for name, fields in teacher_reads(terms).items() if fields - set(SERVABLE)
    }


def cache_can_serve(method: str, weights=None) -> bool:
    """Whether a teacher-output cache can serve ``method`` (its terms with default options)."""
    from mlkd.losses import LOSS_TERMS, method_weights

    return not unservable_reads(LOSS_TERMS.get(name)() for name in method_weights(method, weights))


def prepare(
    cfg, teacher: nn.Module, objective: nn.Module, train_set: Dataset, info: DistInfo, device: torch.device, precision
) -> tuple[Dataset, TeacherCache]:
    """For ``fit``: check that the method can use a cache, then open or build it. Returns the
    training dataset to use (the cache's view of the images) and the cache."""
    from mlkd.data.transforms import build_transform

    d = cfg.distill
    unservable_by_term = unservable_reads(objective.terms.values())
    if unservable_by_term:
        terms = list(unservable_by_term)
        unservable = sorted(set().union(*unservable_by_term.values()))
        raise ConfigError(
            f"distill.cache: method {d.method!r} (term(s) {', '.join(terms)}) reads the teacher's "
            f"{', '.join(unservable)}, which a teacher-output cache does not store; "
            "use distill.cache=off for this method"
        )
    if d.cache_view == "eval" and d.cache_views != 1:
        raise ConfigError(
            "distill.cache_views: the eval view is one view; use distill.cache_view=train for several augmented views"
        )
    if d.cache_view == "train" and d.cache_views > cfg.optim.epochs:
        log.warning(
            "distill.cache_views=%d > optim.epochs=%d: the extra views are never used", d.cache_views, cfg.optim.epochs
        )
    data = cfg.data
    eval_transform = build_transform(data.recipe, data.img_size, False, data.normalize)
    dataset = view_dataset(train_set, eval_transform, d.cache_view, cfg.train.seed)
    fp = fingerprint(
        teacher, precision.dtype, dataset, data.name, dict(data.options), d.cache_view, d.cache_views, cfg.train.seed
    )
    # Building must not draw from the training RNG streams (the DataLoader draws a base seed):
    # a run is the same whether its cache existed or was built first.
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        cache = open_or_build(
            d.cache,
            teacher,
            dataset,
            fp,
            d.cache_views,
            info,
            device,
            precision,
            data.eval_batch_size or data.batch_size,
            data.num_workers,
        )
    needed = set().union(*teacher_reads(objective.terms.values()).values())
    if "label_embeddings" in needed and "label_embeddings" not in cache.fields:
        raise ConfigError(f"distill.cache: method {d.method!r} needs label embeddings; the teacher has none")
    if d.cache_view == "eval":
        log.info(
            "teacher cache: the student trains on the eval view of the training images (no "
            "augmentation); distill.cache_view=train keeps the recipe's augmentation"
        )
    return dataset, cache
