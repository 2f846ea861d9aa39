"""Replace analysis workers that died, with backoff."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from streamer.core.backoff import Backoff
from streamer.core.tasks import STABLE_S
from streamer.workers.thread import AnalysisWorker

log = logging.getLogger(__name__)


class WorkerSupervisor:
    """Replaces analysis workers whose thread died; call ``check()`` periodically.

    The replacement takes over the dead worker's step (alert state, VAD),
    sources and upload queue, so streams and waiting uploads go on.
    """

    def __init__(
        self,
        workers: list[AnalysisWorker],
        clock: Callable[[], float] = time.monotonic,
        backoff: Callable[[], Backoff] = Backoff,
    ) -> None:
        self.workers = workers  # replaced in place
        self.restarts = 0
        self._clock = clock
        self._backoff = [backoff() for _ in workers]
        self._due: list[float | None] = [None] * len(workers)

    def check(self) -> None:
        now = self._clock()
        for i, worker in enumerate(self.workers):
            if worker.is_alive() or worker.stopping or worker.started_at is None:
                continue
            if self._due[i] is None:
                if now - worker.started_at >= STABLE_S:
                    self._backoff[i].reset()
                delay = self._backoff[i].next_delay()
                self._due[i] = now + delay
                log.error("analysis worker %d died; restarting it in %.1f s", i, delay)
            if now >= self._due[i]:
                self._due[i] = None
                self.workers[i] = worker.replacement()
                self.workers[i].start()
                self.restarts += 1
                log.warning("analysis worker %d restarted (%d restarts so far)", i, self.restarts)
