"""``fit``: one training loop for teachers (BCE) and students (frozen teacher + objective).

The teacher stays outside DDP, in eval mode, without gradients, and runs under ``no_grad``.
Student and objective (ReviewKD's fusion modules have parameters) are one module so DDP syncs
both. The step itself is ``mlkd.engine.step.train_step`` (also timed by ``mlkd bench step``);
the loss is read on the host only every ``log_interval`` steps (and, on CPU, for the per-step
finiteness check; on CUDA that check runs on the device, see ``mlkd.engine.step``). With
``distill.cache`` the teacher's outputs come from a teacher-output cache
(``mlkd.engine.teacher_cache``). Every epoch ends with an atomic checkpoint; the last epoch's
metrics are the result.
"""

from __future__ import annotations

import logging
import os
import random
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from mlkd import __version__
from mlkd.config import RESUMABLE_KEYS, Config, config_differences, read_yaml, save_config
from mlkd.data.loaders import build_datasets
from mlkd.engine import checkpoint as ckpt
from mlkd.engine.assembly import Run, assemble
from mlkd.engine.builders import check_normalisation, load_teacher, model_from_config
from mlkd.engine.checks import check_config
from mlkd.engine.diagnostics import TermDiagnostics
from mlkd.engine.distributed import barrier, broadcast_buffers, cleanup, init_distributed, local_rank_from_env
from mlkd.engine.evaluation import evaluate
from mlkd.engine.logs import Progress, TensorBoardLog, write_jsonl
from mlkd.engine.preemption import stop_on_signals
from mlkd.engine.runlock import run_lock
from mlkd.engine.runtime import resolve_device, resolve_precision, seed_everything
from mlkd.engine.step import NonFiniteGuard, defers_checks, train_step
from mlkd.errors import ConfigError, NonFiniteLossError, Preempted
from mlkd.losses import method_needs_teacher
from mlkd.runrecord import METRICS_FILE

log = logging.getLogger("mlkd")


def _rng_state() -> dict:
    """Every RNG's state as tensors and plain data (a checkpoint holds nothing else)."""
    name, keys, *rest = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), *rest),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]  # keys: a tensor, or an ndarray in older checkpoints
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def build_run(cfg: Config) -> Run:
    """Datasets, models, objective, optimiser and loaders for ``cfg`` (nothing trained yet).

    Builds the seeded student and loads the teacher, then :func:`mlkd.engine.assembly.assemble`
    adds the rest (as it does for the benchmarks)."""
    local_rank = local_rank_from_env()
    device = resolve_device(cfg.train.device, local_rank)
    info = init_distributed(device.type, cfg.train.dist_timeout_s)
    precision = resolve_precision(cfg.train.amp, device)
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    train_set, test_set = build_datasets(cfg.data)
    classes = list(train_set.classes)
    # The student is built before the teacher is loaded, so its initial weights depend only on
    # the seed: a distilled student starts exactly where the vanilla student of its seed does.
    student = model_from_config(cfg.model, len(classes)).to(device)
    needs_teacher = method_needs_teacher(cfg.distill.method, cfg.distill.weights)
    teacher = load_teacher(cfg.distill.teacher, classes, device) if needs_teacher else None
    check_normalisation(student, cfg.data.normalize, "student")
    check_normalisation(teacher, cfg.data.normalize, "teacher")
    if cfg.distill.teacher and not needs_teacher:
        log.warning("distill.teacher is ignored: method %s uses no teacher output", cfg.distill.method)
    return assemble(
        cfg,
        student,
        teacher,
        classes,
        device=device,
        precision=precision,
        info=info,
        train_set=train_set,
        test_set=test_set,
    )


def _objective(run: Run) -> nn.Module:
    step = run.step
    step = getattr(step, "_orig_mod", step)
    step = getattr(step, "module", step)
    return step.objective


def _state(run: Run) -> dict:
    return {
        "model": run.student.state_dict(),
        "objective": _objective(run).state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(),
        "epoch": run.epoch,
        "global_step": run.global_step,
        "rng": _rng_state(),
        "config": run.cfg.to_dict(),
        "classes": run.classes,
        "history": run.history,
        "metrics": run.history[-1] if run.history else None,
        "partial": run.partial,
        "mlkd_version": __version__,
        **({"balance": run.balancer.state_dict()} if run.balancer is not None else {}),
    }


def restore(run: Run) -> bool:
    """Load the run folder's newest good checkpoint into ``run``; False when there is none."""
    state = ckpt.load_latest(run.run_dir / "checkpoints", quarantine=run.info.is_main)
    if state is None:
        log.info("--resume: no checkpoint in %s yet; starting from scratch", run.run_dir / "checkpoints")
        return False
    changed = config_differences(state["config"], run.cfg.to_dict(), RESUMABLE_KEYS)
    if changed:
        raise ConfigError(
            f"--resume: the config differs from the checkpoint's in {', '.join(changed)}; "
            f"resume with the same config or start a new run_dir"
        )
    ckpt.check_classes(state["classes"], run.classes, f"--resume: the checkpoint {state.get('path')}")
    run.student.load_state_dict(state["model"])
    _objective(run).load_state_dict(state["objective"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    run.epoch, run.global_step, run.history = state["epoch"], state["global_step"], state["history"]
    run.partial = state.get("partial")
    if run.balancer is not None:
        run.balancer.load_state_dict(state["balance"])
    _set_rng_state(state["rng"])
    within = f" and {run.partial['batches']} batches of epoch {run.epoch + 1}" if run.partial else ""
    log.info("resumed %s from %s after epoch %d%s", run.run_dir, state.get("path"), run.epoch, within)
    return True


def train_one_epoch(run: Run) -> dict[str, float]:
    """One pass over the training data (``train_step`` per batch); returns the epoch's mean of
    each loss term over the applied steps. The host reads the loss only every
    ``train.log_interval`` steps (and, on CPU, for the per-step non-finite check).

    A pre-empted epoch (``run.partial``, from the checkpoint) continues at its next batch with
    its sums so far; a stop signal (``run.stop_request``) ends the epoch after the current step
    with a checkpoint of that point and :class:`Preempted`.
    """
    cfg, loader = run.cfg, run.train_loader
    done = run.partial or {}
    loader.sampler.set_epoch(run.epoch)
    loader.sampler.start = done.get("batches", 0) * loader.batch_size
    run.step.train()
    guard = NonFiniteGuard(cfg.train.nonfinite, defers_checks(run.device), run.optimizer)
    diagnostics = TermDiagnostics(
        cfg.train.diagnostics_every, cfg.train.diagnostics_warn_ratio, _objective(run).weights, done.get("diagnostics")
    )
    sums: dict[str, Any] = dict(done.get("sums", {}))
    batches, steps = done.get("batches", 0), done.get("steps", 0)
    images_seen, skipped = done.get("images", 0), done.get("skipped_images", 0)
    total_batches = batches + len(loader)
    progress = Progress(
        total_batches, f"epoch {run.epoch + 1}", cfg.train.progress, cfg.train.log_interval, run.info.is_main
    )
    start = time.perf_counter() - done.get("seconds", 0.0)
    rng = _rng_state() if done else None
    batch_iter = iter(loader)
    if rng is not None:  # making the iterator drew a seed: the resumed random stream goes on exactly
        _set_rng_state(rng)
    for batch in batch_iter:
        batches += 1
        skipped += batch["skipped"]
        if batch["images"] is not None:
            result = train_step(run, batch, guard, diagnostics if diagnostics.due(run.global_step) else None)
            steps += 1
            images_seen += batch["images"].shape[0]
            if result is not None:  # None: skipped by the per-step non-finite check
                total, terms = result
                for name, value in {"loss": total, **terms}.items():
                    sums[name] = sums.get(name, 0.0) + guard.masked(value).float()
                shown = None
                if steps % cfg.train.log_interval == 0:
                    guard.check(run)
                    shown = {"loss": float(total), "lr": run.scheduler.get_last_lr()[0]}
                progress.update(steps, images_seen, shown)
        request = run.stop_request
        if request is not None and request.agreed(run.info, run.device, batches, cfg.train.log_interval):
            guard.check(run)
            progress.close()
            run.partial = {
                "batches": batches,
                "steps": steps,
                "images": images_seen,
                "skipped_images": skipped,
                "skipped_steps": done.get("skipped_steps", 0) + guard.skipped,
                "seconds": time.perf_counter() - start,
                "sums": {name: float(value) for name, value in sums.items()},
                "diagnostics": diagnostics.state(),
            }
            _stop(run, f"at epoch {run.epoch + 1}, batch {batches} of {total_batches}")
    guard.check(run)
    progress.close()
    seconds = time.perf_counter() - start
    skipped_steps = done.get("skipped_steps", 0) + guard.skipped
    applied = max(steps - skipped_steps, 1)
    means = {name: float(value) / applied for name, value in sums.items()}
    means.update(
        {
            "images_per_s": images_seen * run.info.world_size / max(seconds, 1e-9),
            "seconds": seconds,
            "skipped_images": skipped,
            "skipped_steps": skipped_steps,
            "lr": run.scheduler.get_last_lr()[0],
        }
    )
    summary = diagnostics.summary()
    if summary is not None:
        means["diagnostics"] = summary
        if run.info.is_main:
            diagnostics.warn(summary, run.epoch + 1)
    balance = run.balancer.summary() if run.balancer is not None else None
    if balance is not None:
        means["balance"] = balance
        if run.info.is_main:
            run.balancer.report(balance, run.epoch + 1)
    if skipped:
        log.warning("epoch %d: %d unreadable image(s) skipped", run.epoch + 1, skipped)
    run.partial, loader.sampler.start = None, 0
    return means


def _stop(run: Run, where: str, save: bool = True) -> None:
    """Save a checkpoint of this exact point (rank 0; ``save=False`` when the epoch's checkpoint
    was just written), then raise Preempted on every rank."""
    path = run.run_dir / "checkpoints" / ckpt.LAST
    if save and run.info.is_main:
        path = ckpt.save_rotating(_state(run), run.run_dir / "checkpoints")
    barrier(run.info)
    run.stop_request.handled = True
    raise Preempted(f"stopped by {run.stop_request.name} {where}; saved {path}: continue with --resume")


def _evaluate_now(run: Run, last: bool) -> bool:
    every = run.cfg.train.eval_every
    return last or (every > 0 and run.epoch % every == 0)


def prepare_run_dir(cfg: Config, resume: bool) -> Path:
    """Create ``run_dir`` before anything is built; a ConfigError naming it when it cannot be
    written, or when starting from scratch would overwrite a run's history (``run_history``):
    without ``resume`` whenever there is any, with ``resume`` when there is history but no
    checkpoint to continue from (both damaged and set aside, say). Nothing is ever deleted:
    the way out is ``--resume`` or moving the folder aside."""
    run_dir = Path(cfg.run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"run_dir: cannot create {run_dir} ({err.strerror or err}); choose a writable folder"
        ) from None
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"run_dir: {run_dir} is not writable; choose a writable folder")
    history = run_history(run_dir, cfg)
    checkpoints = [item for item in history if item.endswith(".pt")]
    if history and not (resume and checkpoints):
        way_out = "continue it with --resume or" if checkpoints else "nothing to resume from:"
        raise ConfigError(
            f"run_dir {run_dir} already holds a run ({', '.join(history)}); {way_out} move the "
            f"folder aside (mv {run_dir} {run_dir}.old) or choose another run_dir"
        )
    return run_dir


def run_history(run_dir: Path, cfg: Config) -> list[str]:
    """What ``run_dir`` holds of an earlier run: its checkpoints (last.pt, prev.pt), damaged
    ones set aside (``*.corrupt``), a non-empty metrics.jsonl, and a config.yaml that differs
    from ``cfg`` (beyond the keys a resumption may change)."""
    folder = run_dir / "checkpoints"
    found = [f"checkpoints/{name}" for name in (ckpt.LAST, ckpt.PREV) if (folder / name).exists()]
    found += sorted(f"checkpoints/{path.name}" for path in folder.glob("*.corrupt"))
    metrics = run_dir / METRICS_FILE
    if metrics.is_file() and metrics.stat().st_size:
        found.append(METRICS_FILE)
    saved = run_dir / "config.yaml"
    if saved.is_file():
        changed = config_differences(read_yaml(saved), cfg.to_dict(), RESUMABLE_KEYS)
        if changed:
            found.append(f"config.yaml of another config ({', '.join(changed[:3])} differ)")
    return found


def _data_report(run: Run) -> dict[str, dict[str, int]]:
    """Images dropped before training, per split: listed but absent (``missing``) and, with
    ``data.verify_images``, undecodable (``unreadable``)."""
    report = {}
    for split, loader in (("train", run.train_loader), ("test", run.test_loader)):
        dataset = loader.dataset
        report[split] = {
            "images": len(dataset),
            "missing": int(dataset.missing),
            "unreadable": len(dataset.unreadable_files),
        }
    return report


def fit(cfg: Config, resume: bool = False) -> dict:
    """Train (a teacher with ``vanilla``, or a student with a teacher) and return the last record.

    The record is also the last line of ``run_dir/metrics.jsonl``. Runs under torchrun as is.
    The config's named choices are checked first (``check_config``), then ``run_dir``
    (``prepare_run_dir``), then data, teacher and models are built.
    ``train.threads`` sets torch's CPU threads for the run (restored afterwards). Rank 0 holds
    the run folder's lock (``mlkd.engine.runlock``): a second process on it gets RunBusyError.
    """
    check_config(cfg)  # named choices first: a refused config leaves no run folder
    threads = torch.get_num_threads()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    try:
        prepare_run_dir(cfg, resume)
        with run_lock(cfg.run_dir):
            return _fit(cfg, resume)
    finally:
        torch.set_num_threads(threads)


def _fit(cfg: Config, resume: bool) -> dict:
    run = build_run(cfg)
    try:
        if resume and restore(run):
            pass
        elif run.info.is_main:
            run.run_dir.mkdir(parents=True, exist_ok=True)
        if run.info.is_main:
            save_config(cfg, run.run_dir / "config.yaml")
        board = TensorBoardLog(run.run_dir / "tensorboard") if cfg.train.tensorboard and run.info.is_main else None
        stop = cfg.optim.final_epoch
        with stop_on_signals() as run.stop_request:
            _epochs(run, stop, board)
        if board is not None:
            board.close()
        return run.history[-1] if run.history else {}
    finally:
        cleanup(run.info)


def _epochs(run: Run, stop: int, board: Optional[TensorBoardLog]) -> None:
    """Train, evaluate and checkpoint each remaining epoch up to ``stop``."""
    while run.epoch < stop:
        train_stats = train_one_epoch(run)
        diagnostics = train_stats.pop("diagnostics", None)
        balance = train_stats.pop("balance", None)
        run.epoch += 1
        broadcast_buffers(run.student, run.info)
        record: dict[str, Any] = {"epoch": run.epoch, "train": train_stats, "data": _data_report(run)}
        if diagnostics is not None:
            record["diagnostics"] = diagnostics
        if balance is not None:
            record["balance"] = balance
        failure = None
        if _evaluate_now(run, run.epoch == stop):
            record["eval"], failure = _evaluate_epoch(run)
        run.history.append(record)
        if run.info.is_main:
            ckpt.save_rotating(_state(run), run.run_dir / "checkpoints")
            write_jsonl(run.history, run.run_dir / METRICS_FILE)
            if board is not None:
                board.write(record)
            log.info("epoch %d/%d %s", run.epoch, stop, _summary(record))
        barrier(run.info)
        if failure is not None:
            raise NonFiniteLossError(
                f"epoch {run.epoch} ({train_stats['skipped_steps']} non-finite steps skipped): "
                f"{failure}; the epoch is saved in {run.run_dir / 'checkpoints' / ckpt.LAST}"
            )
        if run.epoch < stop and run.stop_request.agreed(run.info, run.device, 0, 1):
            _stop(run, f"after epoch {run.epoch}", save=False)


def _evaluate_epoch(run: Run) -> tuple[dict, Optional[NonFiniteLossError]]:
    """The epoch's metrics, or, for a diverged model (NaN scores), ``{"error": message}`` and the
    error: the epoch is checkpointed and logged first, then the run stops with it (a diverged
    model stays diverged: later steps would all be skipped under ``train.nonfinite=skip``)."""
    cfg = run.cfg
    try:
        return evaluate(
            run.student,
            run.test_loader,
            run.device,
            run.precision,
            cfg.train.protocols,
            run.info,
            cfg.train.channels_last,
        ), None
    except NonFiniteLossError as err:
        return {"error": str(err)}, err


def _summary(record: dict) -> str:
    text = f"loss={record['train'].get('loss', float('nan')):.4g}"
    for protocol, metrics in record.get("eval", {}).items():
        if isinstance(metrics, dict) and "mAP" in metrics:
            text += f" [{protocol}] mAP={metrics['mAP']:.4f} OF1={metrics['OF1']:.4f} CF1={metrics['CF1']:.4f}"
    return text
