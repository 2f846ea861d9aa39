"""The one place that picks how analysis runs: worker threads or worker processes, and how many.

Threads share the interpreter lock with the event loop. With many streams
(hundreds of calls or files) the loop's and the analysis's Python then take
turns on it and latency grows, so many streams get processes: each has its
own model, VAD and alert state, and reads its streams' rings in shared
memory. One softphone does not need the processes' extra memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from streamer.analysis.analyzer import AnalysisSettings
from streamer.analysis.uploads import DirectUploads, UploadScheduler
from streamer.workers.base import Worker
from streamer.workers.process import ProcessWorker, WorkerOptions
from streamer.workers.thread import AnalysisWorker

KINDS = ("threads", "processes")
MANY_STREAMS = 8  # more sources than this at start get worker processes by default


def choose_kind(requested: str | None, serve: bool, n_sources: int) -> str:
    """``requested``, or processes for a server of calls or many sources, threads otherwise."""
    if requested is not None:
        if requested not in KINDS:
            raise ValueError(f"analysis must be one of {', '.join(KINDS)}, got '{requested}'")
        return requested
    return "processes" if serve or n_sources > MANY_STREAMS else "threads"


def worker_count(requested: int | None, serve: bool, n_sources: int) -> int:
    """One worker per core; without --serve no more than there are sources."""
    cores = requested or os.cpu_count() or 1
    return cores if serve or requested else max(1, min(cores, n_sources))


def build_workers(
    kind: str,
    count: int,
    model,
    emit: Callable[[dict], None],
    settings: AnalysisSettings,
    alerts=None,
    log_level: str = "warning",
) -> tuple[list[Worker], DirectUploads | UploadScheduler]:
    """``count`` workers of ``kind`` and what serves uploads' model work.

    ``model`` is loaded already: the first thread worker uses it (and serves
    uploads between its live turns); with processes each loads its own and
    ``model`` serves uploads directly.
    """
    if kind == "processes":
        options = WorkerOptions(Path(model.model_dir), settings, alerts, 1.0, log_level)
        return [ProcessWorker(options, emit) for _ in range(count)], DirectUploads(model)
    from streamer.analysis.model import EmotionModel

    models = [model] + [EmotionModel(model.model_dir) for _ in range(count - 1)]  # LiteRT is not shared by threads
    workers = [AnalysisWorker(m, emit, settings=settings, alerts=alerts) for m in models]
    return workers, workers[0].uploads
