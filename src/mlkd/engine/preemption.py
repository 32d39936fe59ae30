"""Stop a run at a step boundary on SIGTERM / SIGUSR1 (cluster pre-emption) and keep its place.

Schedulers send SIGTERM (SLURM: also ``--signal=USR1@<seconds>``) some time before killing a
job. While ``fit`` trains, these signals only set a flag; after the current step the run saves a
checkpoint of that exact point (weights, optimiser, schedule, RNG, and how far into the epoch it
got) and stops with :class:`Preempted`; ``--resume`` continues from the next batch of the same
epoch order. Under torchrun the ranks agree (one all-reduce every ``train.log_interval``
batches) so that all stop at the same batch.
"""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager
from typing import Iterator, Optional

import torch

from mlkd.data.samplers import STOP_SIGNALS, DistInfo, ResumableSampler  # noqa: F401 - re-exported
from mlkd.engine.distributed import any_rank

log = logging.getLogger("mlkd")


class StopRequest:
    """Records the first stop signal received; ``signum`` is None until one arrives."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self.handled = False  # set when the run stopped for it (Preempted raised)

    def __call__(self, signum, frame) -> None:
        if self.signum is None:
            log.warning(
                "received %s: stopping after the current step and saving a checkpoint", signal.Signals(signum).name
            )
        self.signum = signum

    def agreed(self, info: DistInfo, device: torch.device, batch: int, interval: int) -> bool:
        """Whether every rank stops now. Single process: as soon as a signal came. Under DDP:
        decided together every ``interval`` batches (the same batches on every rank)."""
        if not info.enabled:
            return self.signum is not None
        if batch % interval:
            return False
        return bool(any_rank(torch.tensor(self.signum is not None, device=device), info))

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else "a signal on another rank"


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Route STOP_SIGNALS to a StopRequest for the block (main thread only; else a no-op).

    A signal the block did not act on (it came during a run's last evaluation) is passed on to
    the previous handler once that is back: an enclosing ``stop_on_signals`` (``mlkd sweep``
    stops before its next run) or the default action (the process ends as asked).
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {signum: signal.signal(signum, request) for signum in STOP_SIGNALS}
    try:
        yield request
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if request.signum is not None and not request.handled:
            handler = previous[request.signum]
            if callable(handler):
                handler(request.signum, None)
            else:
                signal.raise_signal(request.signum)
