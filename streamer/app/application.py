"""The running analyzer: every part built in one place, started and stopped in one explicit order.

``streamer.app.cli`` turns the options into :class:`Settings` and runs an
:class:`Application` on them. Start order: the AudioSocket listener (the
one start that can fail on its own), analysis workers (ready: model and VAD
loaded), file pacing, the web server (dashboard, uploads, calls' websockets), the MQTT
subscriber, housekeeping. Stop order, each step bounded (5 s in all, which
the CLI enforces with a timer): stop capture and calls; refuse uploads still
arriving; finish the windows in flight (workers get 1.5 s); deliver what
they emitted; close the sinks (MQTT flushes for 1.5 s, dashboard clients
0.5 s); stop the server (1 s grace).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import sys

import uvicorn

from streamer.analysis.files import analyze_source
from streamer.app.settings import Settings
from streamer.calls.desk import CallDesk
from streamer.calls.net.audiosocket import serve_audiosocket
from streamer.calls.net.front_door import front_door
from streamer.calls.net.gate import ConnectionGate
from streamer.core.access import AccessConfig
from streamer.core.messages import valid_queue
from streamer.core.tasks import TaskRestarts, keep_running
from streamer.outputs import prometheus
from streamer.outputs.bridge import LoopBridge
from streamer.outputs.http import create_app
from streamer.outputs.hub import Hub
from streamer.outputs.sink import Sink
from streamer.sources.base import Source
from streamer.sources.files import FilePacer, FileSource
from streamer.workers.pool import build_workers, choose_kind, worker_count
from streamer.workers.supervision import WorkerSupervisor

log = logging.getLogger(__name__)
WORKER_STOP_S = 1.5
HOUSEKEEPING_S = 1.0
DRAIN_REPORT_S = 30.0  # how often a drain logs the calls it still waits for
# Messages dropped, by the names /api/status gives them (and /metrics labels them):
# slow dashboard clients, the workers' hand-off to the loop, not JSON, beyond --max-streams,
# invalid and overflowing MQTT input, alerts and unserialisable messages not published.
DROPPED = (
    "dropped",
    "bridge_dropped",
    "invalid",
    "streams_refused",
    "mqtt_invalid",
    "mqtt_queue_full",
    "mqtt_alerts_dropped",
    "mqtt_invalid_dropped",
)
# The line printed once the server listens; tests and benchmarks read the scheme and port from it.
DASHBOARD_LINE = re.compile(r"dashboard: (https?)://[^ ]+:(\d+)/")


class Application:
    """Sources, workers, calls, sinks and web server of one analyzer process.

    Parameters
    ----------
    settings : Settings
    model : EmotionModel
        Loaded and warmed up; the first thread worker's, or (with worker
        processes) the uploads' own.
    sources : list of Source
        Devices, files or any other source started with the analyzer (calls
        come and go through the ``CallDesk``).
    sock : socket.socket
        The bound, listening socket of the web server.
    alerts, access, broker
        The alert engine (or None), access settings, MQTT broker (or None).
    """

    def __init__(
        self,
        settings: Settings,
        model,
        sources: list[Source],
        sock: socket.socket,
        alerts=None,
        access: AccessConfig | None = None,
        broker=None,
    ) -> None:
        self.settings, self.sources, self.sock = settings, sources, sock
        self.access = access or AccessConfig()
        self.broker = broker
        self._local = frozenset(source.stream_id for source in sources)  # devices and files (calls come and go)
        self.stopping = asyncio.Event()
        self.task_restarts = TaskRestarts()
        self.tasks: list[asyncio.Task] = []
        self.hub = Hub(
            hop_s=settings.hop,
            client_queue=settings.client_queue,
            max_streams=settings.max_streams,
            stream_ttl_s=settings.stream_ttl,
        )
        self.sinks: list[Sink] = [self.hub]
        self.publishers = self.mqtt_stats = None
        self.queues_invalid = 0  # calls whose queue from the phone system cannot be a topic level
        if broker is not None:  # devices, files and calls publish; with --serve it also shows other analyzers'
            from streamer.outputs.mqtt.publisher import Publishers, StreamPublisher

            self.publishers = Publishers(
                lambda stream: StreamPublisher(
                    broker,
                    settings.mqtt_prefix,
                    stream,
                    settings.mqtt_interval,
                    spool_dir=settings.mqtt_spool,
                    queue=self.queue_of(stream),
                    clear_legacy_status=stream in self._local,  # devices and files may have one from before
                ),
                restarts=self.task_restarts,
                keep=self._local,
            )
            self.sinks.append(self.publishers)
        self.bridge = LoopBridge(asyncio.get_running_loop(), self._dispatch)
        self.analysis = choose_kind(settings.analysis, settings.serve, len(sources))
        workers, self.uploads = build_workers(
            self.analysis,
            worker_count(settings.workers, settings.serve, len(sources)),
            model,
            self.bridge.put,
            settings.analysis_settings,
            alerts,
            settings.log_level,
        )
        for i, source in enumerate(sources):
            workers[i % len(workers)].add(source)  # a stream stays on one worker: its state is not shared
        self.supervisor = WorkerSupervisor(workers)
        self.desk = CallDesk(
            self._attach,
            analyze_agent=settings.analyze_agent,
            max_calls=settings.max_calls,
            resume_s=settings.call_resume,
        )
        self.pacer = FilePacer([s for s in sources if isinstance(s, FileSource)], fast=settings.fast)

        def analyze_upload(f):  # in a thread; refuses recordings over the limit before decoding them whole
            return analyze_source(f, model, settings.hop, self.uploads.predict, max_seconds=settings.max_upload_seconds)

        self.hub.extra_stats = self.counters
        self.app = create_app(
            self.hub,
            analyze_upload,
            max_upload_mb=settings.max_upload_mb,
            concurrent_uploads=settings.concurrent_uploads,
            upload_read_timeout_s=settings.upload_read_timeout,
            access=self.access,
            metrics=prometheus.collector(self.snapshot),
            readiness=self.unready_reason,
            drain=self.drain,
        )
        # Calls' websockets share the port, handled without ASGI (see streamer.calls.net.front_door).
        self.gate = ConnectionGate(settings.gate_limits)
        paths = {settings.twilio_path: "twilio", settings.fork_path: "fork"}
        self.doors = front_door(self.desk, self.access, paths, self.gate)
        tls = {"ssl_certfile": settings.certfile, "ssl_keyfile": settings.keyfile} if self.access.tls else {}
        # A short graceful timeout: shutdown must end within its budget whatever clients do.
        config = uvicorn.Config(
            self.app, http=self.doors, log_level=settings.log_level, lifespan="off", timeout_graceful_shutdown=1, **tls
        )
        self.server = uvicorn.Server(config)
        self.server.capture_signals = contextlib.nullcontext  # the CLI handles SIGINT/SIGTERM
        self.audiosocket: asyncio.Server | None = None
        self.audiosocket_connections: set = set()
        self.serving: asyncio.Task | None = None
        self.ready = False  # workers started and loaded

    # -- wiring --

    def _dispatch(self, message: dict) -> None:  # on the event loop, from the workers
        for sink in self.sinks:
            sink.offer(message)

    def _from_broker(self, message: dict) -> None:  # with --serve --mqtt: other analyzers' streams
        stream = message["stream"]
        if stream not in self._local and stream not in self.desk.calls and stream not in self.publishers:
            self.hub.offer(message)  # this analyzer's own come back from the broker: shown already

    def queue_of(self, stream: str) -> str:
        """The queue ``stream`` publishes under: its call's own (from the phone system), else ``--default-queue``.

        A call's queue that cannot be a topic level (``/``, ``+``, ``#``,
        spaces…) does not end the call: it goes to the default queue, counted
        in ``queues_invalid`` and logged (the first, then every 1000th).
        """
        call = self.desk.calls.get(stream)
        queue = call.queue if call is not None else None
        if queue is None:
            return self.settings.default_queue
        if valid_queue(queue):
            return queue
        self.queues_invalid += 1
        if self.queues_invalid == 1 or self.queues_invalid % 1000 == 0:
            log.warning(
                "call %s: its queue %r cannot be an MQTT topic level (no '/', '+', '#' or spaces, at most "
                "128 characters); published in the default queue %r (%d such calls so far)",
                stream,
                queue[:40],
                self.settings.default_queue,
                self.queues_invalid,
            )
        return self.settings.default_queue

    def _attach(self, call: Source) -> None:  # a new call goes to the least busy worker, and stays there
        min(self.supervisor.workers, key=lambda w: len(w.sources)).add(call)

    def counters(self) -> dict:
        """The parts' counters, by the names ``/api/status`` shows (``snapshot`` maps them for /metrics)."""
        steps = [w.step for w in self.supervisor.workers]
        stats = self.mqtt_stats
        return {
            "analysis": self.analysis,
            "workers": len(self.supervisor.workers),
            "errors": sum(s.errors for s in steps),
            "restarts": self.supervisor.restarts + self.task_restarts.count,
            "bridge_dropped": self.bridge.dropped,
            **({"mqtt_invalid": stats.invalid, "mqtt_queue_full": stats.queue_full} if stats is not None else {}),
            **(self.publishers.stats() if self.publishers is not None else {}),
            **self.desk.stats(),
            **self.gate.stats(),
            "queues_invalid": self.queues_invalid,
            "draining": self.desk.draining,
        }

    def snapshot(self) -> prometheus.Snapshot:
        """The figures ``/metrics`` shows; drops are labelled by their ``/api/status`` names."""
        workers = self.supervisor.workers
        steps = [w.step for w in workers]
        status = self.hub.stats()  # the hub's own figures and ``counters()``
        return prometheus.Snapshot(
            windows_scored=sum(s.windows for s in steps),
            errors=status["errors"],
            restarts=status["restarts"],
            overruns=sum(s.ring.overruns + getattr(s, "overflows", 0) for w in workers for s in w.sources),
            dropped={name: status.get(name, 0) for name in DROPPED},
            clients=status["clients"],
            streams=len(status["streams"]),
            mqtt_queue=status.get("mqtt_alerts_queued", 0),
            latencies=[s.latency for s in steps],
        )

    # -- start and stop --

    async def start(self) -> None:
        """Start every part; raises OSError if the AudioSocket address cannot be bound,
        RuntimeError if an analysis worker cannot start."""
        settings = self.settings
        if settings.audiosocket:  # first: the one start that can fail on its own
            addr = settings.audiosocket_addr
            self.audiosocket = await serve_audiosocket(
                *addr, self.desk, settings.audiosocket_networks, self.gate, self.audiosocket_connections
            )
        for worker in self.supervisor.workers:
            worker.start()
        await asyncio.gather(*(asyncio.to_thread(w.wait_ready) for w in self.supervisor.workers))
        self.ready = True
        self.pacer.start()  # files play once the analysis is ready (a device captures from its start)
        self.serving = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        if self.broker is not None and settings.serve and not settings.own_streams_only:
            from streamer.outputs.mqtt.subscriber import SubscriberStats, subscribe

            self.mqtt_stats = stats = SubscriberStats()

            def subscribing():
                return subscribe(
                    self.broker, settings.mqtt_prefix, self._from_broker, self.stopping, stats, settings.queues
                )

            self._task(keep_running("the MQTT subscriber", subscribing, self.stopping, self.task_restarts))
        self._task(keep_running("housekeeping", self._housekeeping, self.stopping, self.task_restarts))
        if settings.input and settings.exit_when_done:
            self._task(self._stop_when_files_done())
        self._announce()

    def _task(self, coroutine) -> None:
        self.tasks.append(asyncio.create_task(coroutine))

    def _announce(self) -> None:
        host, port = self.sock.getsockname()[:2]
        scheme = "https" if self.access.tls else "http"
        needs = "; open it once with ?token=<token>" if self.access.token else ""
        print(f"dashboard: {scheme}://{host}:{port}/  (Ctrl-C to stop{needs})", file=sys.stderr, flush=True)
        count = len(self.supervisor.workers)
        print(f"analysis: {self.analysis} ({count} workers)", file=sys.stderr, flush=True)
        if self.audiosocket is not None:
            as_host, as_port = self.audiosocket.sockets[0].getsockname()[:2]
            print(f"audiosocket: {as_host}:{as_port}", file=sys.stderr, flush=True)

    async def _housekeeping(self) -> None:
        """Once a second: replace dead workers, expire ended streams, end calls whose reconnect grace ran
        out and call connections that bring no audio."""
        loop = asyncio.get_running_loop()
        while True:
            self.supervisor.check()
            self.hub.expire()
            self.desk.housekeeping()
            now = loop.time()
            for connection in [*self.doors.connections, *self.audiosocket_connections]:
                connection.end_if_idle(now)
            await asyncio.sleep(HOUSEKEEPING_S)

    # -- readiness and draining (a load balancer's view) --

    def unready_reason(self) -> str | None:
        """Why no new call should come here now, or None: ready."""
        if not self.ready:
            return "starting: the model and workers are loading"
        if self.desk.draining or self.stopping.is_set():
            return "draining: running calls are finishing, new ones go elsewhere"
        if not all(w.is_alive() for w in self.supervisor.workers):
            return "an analysis worker is down (being restarted)"
        if self.desk.live >= self.settings.max_calls:
            return f"at --max-calls ({self.settings.max_calls})"
        return None

    def drain(self) -> dict:
        """Take no new calls; once the running calls have ended (or ``--drain-timeout``), stop.

        Readiness fails at once, so the load balancer sends new calls
        elsewhere; a new call that still arrives is refused (503 at the
        websocket handshake, closed at AudioSocket's). Idempotent.
        """
        if not self.desk.draining and not self.stopping.is_set():
            self.desk.draining = True
            if self.audiosocket is not None:
                self.audiosocket.close()  # no new AudioSocket calls; the running ones go on
            log.warning("draining: %d calls to finish, no new ones taken; then exiting", self.desk.live)
            self._task(self._finish_drain())
        return {"draining": True, "calls": self.desk.live}

    async def _finish_drain(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.drain_timeout
        next_report = loop.time() + DRAIN_REPORT_S
        while self.desk.live and loop.time() < deadline:
            await asyncio.sleep(0.2)
            if loop.time() >= next_report:
                next_report += DRAIN_REPORT_S
                log.warning("draining: %d calls still running", self.desk.live)
        if self.desk.live:
            log.warning("draining: --drain-timeout reached with %d calls running; ending them", self.desk.live)
        else:
            log.warning("drained: every call has ended; exiting")
        self.stopping.set()

    async def _stop_when_files_done(self) -> None:
        while not all(s.finished for s in self.sources):
            await asyncio.sleep(0.2)
        self.stopping.set()  # the workers' last statuses go out as they stop

    async def run(self) -> None:
        """Start, serve until ``stopping`` is set (or the server ends), then stop."""
        await self.start()
        await asyncio.wait(
            [asyncio.create_task(self.stopping.wait()), self.serving], return_when=asyncio.FIRST_COMPLETED
        )
        await self.stop()

    async def stop(self) -> None:
        """The bounded shutdown, in order (see the module's docstring)."""
        self.stopping.set()
        for task in self.tasks:
            task.cancel()
        self.app.state.closing.set()  # uploads still arriving end with 503
        if self.audiosocket is not None:
            self.audiosocket.close()
        for connection in list(self.doors.connections):
            connection.shutdown()
        self.pacer.stop()
        for source in [*self.sources, *self.desk.calls.values()]:
            source.stop()
        self.uploads.close()
        workers = self.supervisor.workers
        await asyncio.gather(*(asyncio.to_thread(w.stop, WORKER_STOP_S) for w in workers))
        self.bridge.flush()  # what the workers emitted last, delivered now they have stopped
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for sink in reversed(self.sinks):  # MQTT first (its flush), the dashboard's clients last
            await sink.close()
        self.server.should_exit = True
        await asyncio.gather(self.serving, return_exceptions=True)
