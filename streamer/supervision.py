"""Keep the long-running parts alive: analysis threads and asyncio tasks, restarted with backoff.

Each part already contains its own faults (a failed batch, a bad payload, a
lost broker); this is the last line, for a thread or task that dies anyway.
It is logged loudly and replaced, never silently gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from streamer.backoff import Backoff

if TYPE_CHECKING:
    from streamer.worker import AnalysisWorker

log = logging.getLogger(__name__)
STABLE_S = 60.0  # a part that ran this long before dying starts its backoff afresh


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


class TaskRestarts:
    """Restarts of supervised asyncio tasks, for status and metrics."""

    def __init__(self) -> None:
        self.count = 0


async def keep_running(
    name: str,
    run: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
    restarts: TaskRestarts | None = None,
    backoff: Callable[[], Backoff] = Backoff,
) -> None:
    """Await ``run()``; if it raises, log it and run it again after a backoff, until ``stop`` is set.

    A normal return ends supervision (the task finished its job).
    """
    delays = backoff()
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        started = loop.time()
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            if loop.time() - started >= STABLE_S:
                delays.reset()
            delay = delays.next_delay()
            log.exception("%s died; restarting it in %.1f s", name, delay)
        if restarts is not None:
            restarts.count += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
