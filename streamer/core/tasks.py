"""Keep asyncio tasks alive: a task that dies is logged and restarted with backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from streamer.core.backoff import Backoff

log = logging.getLogger(__name__)


STABLE_S = 60.0  # a part that ran this long before dying starts its backoff afresh


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
