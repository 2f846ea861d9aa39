"""Analysis in worker processes: shared rings, a real worker process with the shipped model, its
statuses mirrored in the main process, finished calls retired, a killed process replaced."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from conftest import MessageCollector, wait_until

from streamer.analysis.analyzer import AnalysisSettings
from streamer.analysis.model import DEFAULT_MODEL_DIR
from streamer.calls.call import CallSource
from streamer.calls.sessions.base import CALLER
from streamer.core.alerts import AlertEngine, parse_rule
from streamer.sources.ring import AudioRing
from streamer.workers.process import ProcessWorker, WorkerOptions
from streamer.workers.supervision import WorkerSupervisor

KW = {"hop_s": 0.5, "horizon_s": 4.0, "adapt_reset_s": 30.0}


def _read_in_child(handle, conn) -> None:
    ring = AudioRing.attach(*handle)
    start, frames = ring.read()
    conn.send((start, frames.copy(), ring.ended))
    ring.release()


def shm_exists(name: str) -> bool:
    return Path("/dev/shm", name.lstrip("/")).exists()


def test_a_shared_ring_is_read_in_another_process_and_freed_by_its_owner():
    ring = AudioRing(100, channels=2)
    ring.write(np.ones((30, 2), np.float32))  # before sharing: moved along with the ring
    name = ring.share()
    assert ring.share() == name and shm_exists(name)
    ring.write(np.full((20, 2), 2.0, np.float32))
    ring.ended = True
    context = multiprocessing.get_context("spawn")
    here, there = context.Pipe()
    child = context.Process(target=_read_in_child, args=((name, 100, 2), there))
    child.start()
    start, frames, ended = here.recv()
    child.join(30)
    assert start == 0 and frames.shape == (50, 2) and frames[29, 0] == 1.0 and frames[30, 1] == 2.0 and ended
    assert ring.read_pos == 50 and ring.available == 0  # the reader's position came back through the block
    ring.release()
    assert not shm_exists(name)
    ring.write(np.zeros((5, 2), np.float32))  # a late writer does no harm
    assert ring.written == 55


def to_8k(audio: np.ndarray) -> np.ndarray:
    return audio[::2].copy()  # the test clip at 16 kHz, as a phone line's 8 kHz


@pytest.fixture
def process_worker():
    out = MessageCollector()
    alerts = AlertEngine([parse_rule("caller:angry>=0.01 for 1s")])
    options = WorkerOptions(DEFAULT_MODEL_DIR, AnalysisSettings(**KW), alerts, status_every_s=0.2, log_level="warning")
    worker = ProcessWorker(options, out)
    worker.start()
    worker.wait_ready()
    yield worker, out
    worker.stop(3.0)


def test_a_worker_process_scores_a_call_mirrors_its_status_and_retires_it(process_worker, speech_audio):
    worker, out = process_worker
    call = CallSource("call-1", "twilio", 8000, [CALLER], agent="ana")
    worker.add(call)
    name = call.ring.shared_name
    assert name is not None and shm_exists(name)
    audio = to_8k(speech_audio)
    for k in range(0, len(audio), 160):  # 20 ms media, as the loop writes them
        call.push(0, audio[k : k + 160])
    wait_until(lambda: len(out.of("scores", "call-1")) >= 4, 30.0)
    scores = out.of("scores", "call-1")
    assert [m["channel"] for m in scores] == [CALLER] * len(scores)
    assert np.all(np.diff([m["t"] for m in scores]) > 0) and any(m["probs"] for m in scores)
    wait_until(lambda: any(m["windows"] >= 4 for m in out.of("status", "call-1")), 30.0)
    status = out.of("status", "call-1")[-1]
    assert status["agent"] == "ana" and status["state"] == "running" and status["errors"] == 0
    raised = [m for m in out.of("alert", "call-1") if m["state"] == "raised"]
    assert raised  # the alert state lives in the worker process
    call.end()
    wait_until(lambda: any(m["state"] == "finished" for m in out.of("status", "call-1")), 30.0)
    wait_until(lambda: worker.sources == [], 30.0)
    final = out.of("status", "call-1")[-1]
    assert final["state"] == "finished" and call.figures.windows == final["windows"]  # reported by the process
    assert [m["state"] for m in out.of("alert", "call-1")][-1] == "cleared"  # forgotten with the call
    last_t = out.of("scores", "call-1")[-1]["t"]
    assert abs(last_t - len(audio) / 8000) < 0.01  # the last partial window: time ends with the audio
    wait_until(lambda: not shm_exists(name), 10.0)  # unlinked once the process has let go of it


def test_a_killed_worker_process_is_replaced_and_its_calls_go_on(process_worker, speech_audio):
    worker, out = process_worker
    call = CallSource("call-2", "twilio", 8000, [CALLER])
    worker.add(call)
    audio = to_8k(speech_audio)
    call.push(0, audio[: 8000 * 3])
    wait_until(lambda: len(out.of("scores", "call-2")) >= 2, 30.0)
    windows_before = worker.step.windows
    now = [100.0]

    class NoDelay:
        def next_delay(self):
            return 0.0

        def reset(self):
            pass

    supervisor = WorkerSupervisor([worker], clock=lambda: now[0], backoff=NoDelay)
    os.kill(worker._process.pid, signal.SIGKILL)
    wait_until(lambda: not worker.is_alive(), 30.0)
    supervisor.check()
    replacement = supervisor.workers[0]
    try:
        assert replacement is not worker and supervisor.restarts == 1
        assert replacement.sources == [call]
        replacement.wait_ready()
        seen = len(out.of("scores", "call-2"))
        t_before = out.of("scores", "call-2")[-1]["t"]
        call.push(0, np.tile(audio, 2)[: 8000 * 3])
        wait_until(lambda: len(out.of("scores", "call-2")) >= seen + 3, 30.0)
        after = [m["t"] for m in out.of("scores", "call-2")[seen:]]
        assert min(after) > t_before  # stream time goes on: the new process starts where the ring is
        wait_until(lambda: replacement.step.windows > windows_before, 30.0)  # counts add up across processes
    finally:
        replacement.stop(3.0)


def test_hundreds_of_streams_added_before_the_process_starts_all_reach_it(speech_audio):
    """An analyzer started with many files hands them over before its processes have loaded their models."""
    import threading

    out = MessageCollector()
    options = WorkerOptions(DEFAULT_MODEL_DIR, AnalysisSettings(**KW), None, status_every_s=0.2, log_level="warning")
    worker = ProcessWorker(options, out)
    calls = [CallSource(f"c{i:03d}", "twilio", 8000, [CALLER]) for i in range(400)]
    adding = threading.Thread(target=lambda: [worker.add(call) for call in calls], daemon=True)
    adding.start()
    adding.join(20)
    assert not adding.is_alive()  # adding does not wait for the process to read its pipe
    try:
        worker.start()
        worker.wait_ready()
        audio = to_8k(speech_audio)
        for call in (calls[0], calls[-1]):
            call.push(0, audio)
            call.end()
        wait_until(lambda: {"c000", "c399"} <= {m["stream"] for m in out.of("scores")}, 60.0)
        wait_until(lambda: len({m["stream"] for m in out.of("status")}) == 400, 30.0)  # every stream reached it
    finally:
        worker.stop(3.0)


def test_a_worker_process_that_cannot_load_its_model_says_why(tmp_path):
    options = WorkerOptions(tmp_path, AnalysisSettings(**KW), None, status_every_s=1.0, log_level="error")
    worker = ProcessWorker(options, lambda message: None)
    worker.start()
    with pytest.raises(RuntimeError, match="an analysis process could not start: .*no trained model"):
        worker.wait_ready()
    worker.stop(1.0)
    assert not worker.is_alive()


def test_a_ring_that_finds_shared_memory_full_says_so_and_a_call_is_refused(monkeypatch):
    import streamer.sources.ring as ringbuffer
    from streamer.calls.desk import CallDesk
    from streamer.calls.sessions.base import ProtocolError

    class Full:
        f_bavail, f_frsize = 10, 4096

    monkeypatch.setattr(ringbuffer.os, "statvfs", lambda path: Full())
    ring = AudioRing(80_000)
    with pytest.raises(MemoryError, match=r"^/dev/shm is full: no room for another 312 kB audio ring$"):
        ring.share()
    assert ring.shared_name is None

    desk = CallDesk(lambda source: source.ring.share())  # as ProcessWorker.add does
    with pytest.raises(ProtocolError, match="call CA1: /dev/shm is full"):
        desk.open("CA1", "twilio", 8000, [CALLER])
    assert desk.calls == {} and desk.stats()["calls"] == 0  # never counted as a live call
