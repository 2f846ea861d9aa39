"""The running analyzer: every part built in one place, started and stopped in one explicit order.

``run_stream.py`` parses and checks the options, then runs an
:class:`Application`. Start order: file pacing, analysis workers, the
AudioSocket listener, the web server (dashboard, uploads, calls' websockets),
MQTT, housekeeping. Stop order, each step bounded (5 s in all, which
``run_stream`` enforces with a timer): stop capture and calls; refuse uploads
still arriving; finish the windows in flight (workers get 1.5 s); deliver
what they emitted; flush MQTT (1.5 s); close dashboard clients (0.5 s); stop
the server (1 s grace).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import sys

import uvicorn

from streamer import metrics
from streamer.analyze import analyze_source
from streamer.hub import Hub, LoopBridge
from streamer.ingest import front_door, serve_audiosocket
from streamer.procworker import ProcessWorker, WorkerOptions
from streamer.server import create_app
from streamer.sources import FilePacer, FileSource
from streamer.supervision import TaskRestarts, WorkerSupervisor, keep_running
from streamer.telephony import CallDesk
from streamer.worker import AnalysisWorker, DirectUploads

WORKER_STOP_S = 1.5
CLIENTS_CLOSE_S = 0.5
# The line printed once the server listens; tests and benchmarks read the scheme and port from it.
DASHBOARD_LINE = re.compile(r"dashboard: (https?)://[^ ]+:(\d+)/")


class Application:
    """Sources, workers, calls, hub, web server and MQTT of one analyzer process.

    Parameters
    ----------
    args : argparse.Namespace
        ``run_stream.py``'s checked options.
    models : list of EmotionModel
        One per analysis worker (the first also serves uploads).
    sources : list of Source
        Devices and files (calls come and go through the ``CallDesk``).
    sock : socket.socket
        The bound, listening socket of the web server.
    alerts, access, broker
        The alert engine (or None), access settings, MQTT broker (or None).
    """

    def __init__(self, args, models, sources, sock: socket.socket, alerts, access, broker) -> None:
        self.args, self.sources, self.sock, self.access = args, sources, sock, access
        self._local = {source.stream_id for source in sources}  # devices and files (calls come and go)
        self.stopping = asyncio.Event()
        self.hub = Hub(
            hop_s=args.hop, client_queue=args.client_queue, max_streams=args.max_streams, stream_ttl_s=args.stream_ttl
        )
        self.task_restarts = TaskRestarts()
        self.tasks: list[asyncio.Task] = []
        self.publishers = self.mqtt_stats = None
        self.broker = broker
        if broker is not None:  # devices, files and calls publish; with --serve it also shows other analyzers'
            from streamer import mqtt

            self.publishers = mqtt.Publishers(
                lambda stream: mqtt.StreamPublisher(
                    broker, args.mqtt_prefix, stream, args.mqtt_interval, spool_dir=args.mqtt_spool
                ),
                restarts=self.task_restarts,
            )
        self.bridge = LoopBridge(asyncio.get_running_loop(), self._dispatch)
        analyzer_kw = {"hop_s": args.hop, "horizon_s": args.horizon, "adapt_reset_s": args.adapt_reset_s}
        if args.analysis == "processes":  # the loop keeps an interpreter lock of its own (streamer.procworker)
            options = WorkerOptions(models[0].model_dir, analyzer_kw, alerts, 1.0, args.log_level)
            workers = [ProcessWorker(options, self.bridge.put) for _ in range(args.workers or os.cpu_count() or 1)]
            self.uploads = DirectUploads(models[0])  # the main process's model is free for them
        else:
            workers = [AnalysisWorker(model, self.bridge.put, alerts=alerts) for model in models]
            self.uploads = workers[0].uploads  # the first worker runs the uploads' model work between live batches
        for i, source in enumerate(sources):
            workers[i % len(workers)].add(source)  # a stream stays on one worker: its state is not shared
        self.supervisor = WorkerSupervisor(workers)
        self.desk = CallDesk(
            models[0].config,
            self._attach,
            analyze_agent=args.analyze_agent,
            max_calls=args.max_calls,
            resume_s=args.call_resume,
            **analyzer_kw,
        )
        self.pacer = FilePacer([s for s in sources if isinstance(s, FileSource)], fast=args.fast)
        model = models[0]

        def analyze_upload(f):  # in a thread; refuses recordings over the limit before decoding them whole
            return analyze_source(f, model, args.hop, self.uploads.predict, max_seconds=args.max_upload_seconds)

        self.hub.extra_stats = self.counters
        self.app = create_app(
            self.hub,
            analyze_upload,
            max_upload_mb=args.max_upload_mb,
            concurrent_uploads=args.concurrent_uploads,
            upload_read_timeout_s=args.upload_read_timeout,
            access=access,
            metrics=metrics.collector(self.snapshot),
        )
        # Calls' websockets share the port, handled without ASGI (see streamer.ingest).
        self.doors = front_door(self.desk, access, args.twilio_path, args.fork_path)
        tls = {"ssl_certfile": args.certfile, "ssl_keyfile": args.keyfile} if access.tls else {}
        # A short graceful timeout: shutdown must end within its budget whatever clients do.
        config = uvicorn.Config(
            self.app, http=self.doors, log_level=args.log_level, lifespan="off", timeout_graceful_shutdown=1, **tls
        )
        self.server = uvicorn.Server(config)
        self.server.capture_signals = contextlib.nullcontext  # run_stream handles SIGINT/SIGTERM
        self.audiosocket: asyncio.Server | None = None
        self.serving: asyncio.Task | None = None

    # -- wiring --

    def _dispatch(self, message: dict) -> None:  # on the event loop
        self.hub.publish(message)
        if self.publishers is not None:
            self.publishers.offer(message)
            stream = message["stream"]
            if message["type"] == "status" and message["state"] == "finished" and stream not in self._local:
                self.publishers.end(stream)  # a call's last message (its worker retired it)

    def _from_broker(self, message: dict) -> None:  # with --serve --mqtt: other analyzers' streams
        stream = message["stream"]
        if stream not in self._local and stream not in self.desk.calls and stream not in self.publishers:
            self.hub.publish(message)  # this analyzer's own come back from the broker: shown already

    def _attach(self, call) -> None:  # a new call goes to the least busy worker, and stays there
        min(self.supervisor.workers, key=lambda w: len(w.sources)).add(call)

    def counters(self) -> dict:
        steps = [w.step for w in self.supervisor.workers]
        stats = self.mqtt_stats
        return {
            "errors": sum(s.errors for s in steps),
            "restarts": self.supervisor.restarts + self.task_restarts.count,
            "bridge_dropped": self.bridge.dropped,
            **({"mqtt_invalid": stats.invalid, "mqtt_queue_full": stats.queue_full} if stats is not None else {}),
            **(self.publishers.stats() if self.publishers is not None else {}),
            **self.desk.stats(),
        }

    def snapshot(self) -> metrics.Snapshot:
        workers = self.supervisor.workers
        steps = [w.step for w in workers]
        hub_stats = self.hub.stats()
        count = self.counters()
        return metrics.Snapshot(
            windows_scored=sum(s.windows for s in steps),
            errors=count["errors"],
            restarts=count["restarts"],
            overruns=sum(s.ring.overruns + getattr(s, "overflows", 0) for w in workers for s in w.sources),
            dropped={
                "dashboard_client": hub_stats["dropped"],
                "worker_to_loop": self.bridge.dropped,
                "not_json": hub_stats["invalid"],
                "beyond_max_streams": hub_stats["streams_refused"],
                "mqtt_invalid_in": count.get("mqtt_invalid", 0),
                "mqtt_queue_full_in": count.get("mqtt_queue_full", 0),
                "mqtt_alerts_out": count.get("mqtt_alerts_dropped", 0),
                "mqtt_not_json_out": count.get("mqtt_invalid_dropped", 0),
            },
            clients=hub_stats["clients"],
            streams=len(hub_stats["streams"]),
            mqtt_queue=count.get("mqtt_alerts_queued", 0),
            latencies=[s.latency for s in steps],
        )

    # -- start and stop --

    async def start(self) -> None:
        """Start every part; raises OSError if the AudioSocket address cannot be bound."""
        args = self.args
        if args.audiosocket:  # first: the one start that can fail on its own
            self.audiosocket = await serve_audiosocket(*args.audiosocket_addr, self.desk, args.audiosocket_nets)
        self.pacer.start()
        for worker in self.supervisor.workers:
            worker.start()
        waiting = [w.wait_ready for w in self.supervisor.workers if isinstance(w, ProcessWorker)]
        await asyncio.gather(*(asyncio.to_thread(wait) for wait in waiting))  # RuntimeError: cannot start
        self.serving = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        if self.broker is not None and args.serve:
            from streamer import mqtt

            self.mqtt_stats = stats = mqtt.SubscriberStats()

            def subscribe():
                return mqtt.subscribe(self.broker, args.mqtt_prefix, self._from_broker, self.stopping, stats)

            self._task(keep_running("the MQTT subscriber", subscribe, self.stopping, self.task_restarts))
        self._task(self._housekeeping())
        if args.input and args.exit_when_done:
            self._task(self._stop_when_files_done())
        self._announce()

    def _task(self, coroutine) -> None:
        self.tasks.append(asyncio.create_task(coroutine))

    def _announce(self) -> None:
        host, port = self.sock.getsockname()[:2]
        scheme = "https" if self.access.tls else "http"
        needs = "; open it once with ?token=<token>" if self.access.token else ""
        print(f"dashboard: {scheme}://{host}:{port}/  (Ctrl-C to stop{needs})", file=sys.stderr, flush=True)
        if self.audiosocket is not None:
            as_host, as_port = self.audiosocket.sockets[0].getsockname()[:2]
            print(f"audiosocket: {as_host}:{as_port}", file=sys.stderr, flush=True)

    async def _housekeeping(self) -> None:
        while True:
            self.supervisor.check()
            self.hub.expire()
            self.desk.housekeeping()
            await asyncio.sleep(1.0)

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
        if self.publishers is not None:
            await self.publishers.close()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.hub.close_clients(CLIENTS_CLOSE_S)
        self.server.should_exit = True
        await asyncio.gather(self.serving, return_exceptions=True)
