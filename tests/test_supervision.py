"""Faults inside the analysis are contained: a failing batch costs its windows (counted, shown in the
stream's status) and scoring goes on; a thread or task that dies anyway is replaced with backoff."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from conftest import MessageCollector, wait_until

from streamer.analysis.vad import FunctionVAD
from streamer.core.features import FeatureConfig
from streamer.core.messages import status_message
from streamer.core.tasks import TaskRestarts, keep_running
from streamer.sources.base import AnalysisFigures, Source
from streamer.sources.ring import AudioRing
from streamer.workers.supervision import WorkerSupervisor
from streamer.workers.thread import AnalysisWorker

CONFIG = FeatureConfig()
LOUD = FunctionVAD(lambda chunk: float(np.abs(chunk).max() > 0.01))


class Fatal(BaseException):
    """Not an Exception: escapes every handler meant for ordinary faults, as a real killer would."""


class FlakyModel:
    """Answers 'angry'; raises ``error`` on the calls listed in ``fail_on`` (1-based)."""

    config = CONFIG

    def __init__(self, fail_on=(), error: BaseException | None = None):
        self.calls = 0
        self.fail_on = set(fail_on)
        self.error = error or RuntimeError("model exploded")

    def predict(self, frames, stats=None):
        self.calls += 1
        if self.calls in self.fail_on:
            raise self.error
        return np.tile(np.eye(8, dtype=np.float32)[4], (len(frames), 1))


class LiveSource(Source):
    """A source whose audio the test writes as it goes."""

    def __init__(self, stream_id: str):
        self.stream_id = stream_id
        self.ring = AudioRing(16000 * 20)
        self.rate, self.channels, self.figures = 16000, ["mono"], AnalysisFigures()

    def status(self):
        return status_message(self.stream_id, "test", "running", 0, self.figures.windows)


def speech(seconds: float) -> np.ndarray:
    return (0.3 * np.sin(np.arange(int(seconds * 16000)) / 5)).astype(np.float32)


def test_a_failing_batch_costs_its_windows_and_scoring_goes_on():
    model = FlakyModel(fail_on={2})
    out = MessageCollector()
    worker = AnalysisWorker(model, out, poll_s=0.01, status_every_s=0.05, vad=LOUD)
    source = LiveSource("call")
    worker.add(source)
    worker.start()
    try:
        for _ in range(16):  # half a second at a time, as a device delivers
            source.ring.write(speech(0.5))
            time.sleep(0.05)
        wait_until(lambda: len(out.of("scores")) >= 12, 10.0)
        wait_until(lambda: out.of("status")[-1]["errors"] == 1, 10.0)
    finally:
        worker.stop()
    assert worker.is_alive() is False and model.calls >= 13
    ends = [m["t"] for m in out.of("scores")]
    assert ends == sorted(ends) and 2.5 not in ends  # the failed window is missing, the rest in order
    status = out.of("status")[-1]
    assert status["errors"] == 1 and status["last_error"] == "RuntimeError: model exploded"
    assert worker.step.errors == 1


def test_a_vad_failure_is_contained_too():
    class BrokenOnce(FunctionVAD):
        failed = False

        def score(self, trackers):
            if not self.failed:
                self.failed = True
                raise ValueError("bad chunk")
            super().score(trackers)

    model = FlakyModel()
    out = MessageCollector()
    worker = AnalysisWorker(model, out, vad=BrokenOnce(lambda c: 1.0))
    source = LiveSource("call")
    worker.add(source)
    source.ring.write(speech(2.0))
    assert worker.step.turn(worker.analyzers) == 0  # the turn's windows are lost...
    (analyzer,) = worker.analyzers
    assert analyzer.errors == 1 and "ValueError: bad chunk" in analyzer.last_error
    source.ring.write(speech(1.0))
    for _ in range(4):
        worker.step.turn(worker.analyzers)
    assert len(out.of("scores")) >= 2  # ...and the next turns score again


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_worker_thread_is_replaced_and_takes_over_its_streams():
    model = FlakyModel(fail_on={1}, error=Fatal())
    out = MessageCollector()
    worker = AnalysisWorker(model, out, poll_s=0.01, vad=LOUD)
    source = LiveSource("call")
    worker.add(source)
    now = [100.0]
    delays = []

    class Delays:
        def next_delay(self):
            delays.append(2.0)
            return 2.0

        def reset(self):
            pass

    supervisor = WorkerSupervisor([worker], clock=lambda: now[0], backoff=Delays)
    worker.start()
    source.ring.write(speech(2.5))
    worker.join(10)
    assert not worker.is_alive()  # killed by the model
    supervisor.check()
    assert supervisor.workers[0] is worker and delays == [2.0]  # waits out the backoff first
    now[0] += 2.0
    supervisor.check()
    replacement = supervisor.workers[0]
    assert replacement is not worker and replacement.is_alive() and supervisor.restarts == 1
    assert replacement.sources == [source] and replacement.step is worker.step
    try:
        source.ring.write(speech(1.0))
        wait_until(lambda: len(out.of("scores")) >= 2, 10.0)
    finally:
        replacement.stop()
    supervisor.check()  # a stopped worker is not restarted
    assert supervisor.restarts == 1


def test_a_task_that_dies_is_restarted_until_it_returns():
    runs = []

    async def flaky():
        runs.append(1)
        if len(runs) < 3:
            raise ConnectionError("lost")

    class Quick:
        def next_delay(self):
            return 0.01

        def reset(self):
            pass

    async def main():
        restarts = TaskRestarts()
        await asyncio.wait_for(keep_running("flaky", flaky, asyncio.Event(), restarts, backoff=Quick), 5)
        return restarts.count

    assert asyncio.run(main()) == 2 and len(runs) == 3


def test_stop_ends_a_task_waiting_out_its_backoff():
    async def always_fails():
        raise ConnectionError("lost")

    class Slow:
        def next_delay(self):
            return 60.0

        def reset(self):
            pass

    async def main():
        stop = asyncio.Event()
        task = asyncio.create_task(keep_running("doomed", always_fails, stop, backoff=Slow))
        await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 2)

    asyncio.run(main())


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--client-queue", "0"),
        ("--mqtt-interval", "0"),
        ("--mqtt-interval", "nan"),
        ("--hop", "-1"),
        ("--workers", "0"),
        ("--port", "70000"),
        ("--send-buffer-kb", "x"),
        ("--max-upload-mb", "inf"),
        ("--max-streams", "0"),
        ("--stream-ttl", "-5"),
        ("--concurrent-uploads", "0"),
        ("--upload-read-timeout", "0"),
    ],
)
def test_numeric_options_are_validated_with_one_line(option, value, capsys):
    from streamer.app import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args([option, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: argument {option}:") and "\n" not in err


def test_backoff_doubles_to_its_cap_and_resets():
    from streamer.core.backoff import Backoff

    delays = Backoff(1.0, 5.0)
    assert delays.first
    assert [delays.next_delay() for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert not delays.first
    delays.reset()
    assert delays.first and delays.next_delay() == 1.0
    for bad in ((0, 1), (2, 1), (1, float("inf"))):
        with pytest.raises(ValueError):
            Backoff(*bad)


def test_mqtt_prefix_must_be_topic_levels(capsys):
    from streamer.app import cli

    assert cli.parse_args(["--mqtt-prefix", "site/emotion"]).mqtt_prefix == "site/emotion"
    for bad in ("", "emotion/#", "a//b", "em otion"):
        with pytest.raises(SystemExit):
            cli.parse_args(["--mqtt-prefix", bad])
        assert "--mqtt-prefix" in capsys.readouterr().err
