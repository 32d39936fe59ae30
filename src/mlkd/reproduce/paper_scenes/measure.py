"""The rates the sizing rests on, measured on the machine in the run's first seconds.

- training steps: ``mlkd.bench.step.bench_step`` (the engine's ``train_step``: teacher forward,
  student forward + objective, backward, Adam, schedule) on synthetic batches of the run's
  shape (q = 80, COCO's 2.9 labels per image), the run's precision and memory format;
- the data loader: the engine's training loader (the recipe's augmentation, the run's workers)
  over a prefix of the training split, timed once every worker has delivered a batch.
"""

from __future__ import annotations

import logging
import platform
import time

import torch

from mlkd.bench.step import bench_step
from mlkd.config import DataConfig
from mlkd.data import build_dataset
from mlkd.data.loaders import train_loader
from mlkd.data.samplers import DistInfo
from mlkd.data.transforms import build_transform
from mlkd.errors import ConfigError
from mlkd.reproduce.paper_scenes.sizing import Scale

log = logging.getLogger(__name__)

NUM_CLASSES = 80
POSITIVES = 2.9


def _bench(teacher: str, student: str, methods: list[str], scale: Scale, channels_last: bool) -> dict[str, float]:
    """{method: median seconds per step} of ``bench_step`` at the run's shape, with the runs'
    torch CPU threads (``scale.threads``; more threads than free cores can be many times slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(scale.threads)
    try:
        rows = bench_step(
            teacher,
            student,
            scale.img_size,
            scale.batch_size,
            NUM_CLASSES,
            POSITIVES,
            methods,
            scale.bench_repeats,
            scale.bench_warmup,
            scale.device,
            scale.amp,
            channels_last,
            num_batches=1,
        )
    finally:
        torch.set_num_threads(threads)
    return {row["method"]: row["ms"] / 1e3 for row in rows}


def choose_channels_last(student: str, scale: Scale) -> tuple[bool, dict[str, float]]:
    """On CUDA: whether the student's BCE step is faster in channels_last (both timed); on
    other devices: False without timing."""
    if scale.device != "cuda":
        return False, {}
    times = {str(cl): _bench(student, student, ["vanilla"], scale, cl)["vanilla"] for cl in (False, True)}
    return times["True"] < times["False"], times


def measure_steps(teacher: str, student: str, scale: Scale, channels_last: bool) -> dict[str, float]:
    """Seconds per training step of each run: {"teacher", "student", "mld", "l2d"}."""
    students = _bench(teacher, student, ["vanilla", "mld", "l2d"], scale, channels_last)
    alone = _bench(teacher, teacher, ["vanilla"], scale, channels_last)
    return {"teacher": alone["vanilla"], "student": students["vanilla"], "mld": students["mld"], "l2d": students["l2d"]}


def measure_loader(data: DataConfig, batches: int) -> float:
    """Seconds per training image of the engine's training loader for ``data`` (its dataset,
    recipe and workers), over at most ``batches`` batches after each worker's first one."""
    options = {**data.options, "img_size": data.img_size}
    dataset = build_dataset(
        data.name, "train", build_transform(data.recipe, data.img_size, True, data.normalize), **options
    )
    loader = train_loader(dataset, data, DistInfo(), seed=0, pin=torch.cuda.is_available())
    warm = max(1, data.num_workers)
    if len(loader) <= warm:
        raise ConfigError(
            f"loader timing: {len(dataset)} probe scenes give {len(loader)} batches; "
            f"need more than {warm} (one per worker)"
        )
    images, start = 0, None
    for k, batch in enumerate(loader):
        if k + 1 == warm:
            start = time.perf_counter()
        elif k + 1 > warm:
            images += batch["images"].shape[0]
        if k + 1 >= warm + batches:
            break
    seconds = time.perf_counter() - start
    del loader
    log.info("loader: %d images in %.2f s with %d workers", images, seconds, data.num_workers)
    return seconds / images


def machine_notes(device: str) -> dict:
    """Python, torch and timm versions and the device's name."""
    import timm

    name = torch.cuda.get_device_name() if device == "cuda" and torch.cuda.is_available() else platform.processor()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "device": name or device,
    }
