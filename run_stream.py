#!/usr/bin/env python3
"""Live speech-emotion analyzer: capture -> windows -> model -> dashboard.

Examples
--------
  ./run.sh                                   # default input device
  ./run.sh --device softphone.monitor        # a PulseAudio/PipeWire source
  ./run.sh --list-devices
  ./run.sh --input call1.wav call2.flac      # files, as concurrent real-time streams
  ./run.sh --device 3 --channels agent,caller
  ./run.sh --device softphone.monitor --mqtt mqtt://broker:1883 --alert "caller:angry>=0.6 for 5s"
  ./run.sh --serve --mqtt mqtt://broker:1883  # supervisor dashboard of every analyzer on the broker

Then open http://127.0.0.1:8765/ .
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
from pathlib import Path

log = logging.getLogger("run_stream")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="run_stream.py",
        description="Live speech-emotion analyzer with a web dashboard.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Find PulseAudio/PipeWire source names with: pactl list short sources",
    )
    src = p.add_argument_group("audio source")
    src.add_argument("--device", help="input device: index, part of its name, or a PulseAudio source name")
    src.add_argument("--list-devices", action="store_true", help="print the input devices and exit")
    src.add_argument("--input", nargs="+", type=Path, metavar="FILE", help="stream files instead of a device")
    src.add_argument("--fast", action="store_true", help="with --input: as fast as possible, not real time")
    src.add_argument("--exit-when-done", action="store_true", help="with --input: exit when all files are analysed")
    src.add_argument("--stream-id", default=socket.gethostname(), help="name of a device stream (default: host)")
    src.add_argument(
        "--channels", help="comma-separated names of channels to score separately, e.g. agent,caller (default: mono)"
    )
    src.add_argument(
        "--serve", action="store_true", help="capture nothing: serve the dashboard (with --mqtt: of all analyzers)"
    )
    ana = p.add_argument_group("analysis")
    ana.add_argument("--window", type=float, help="window length in seconds (must match the model's, 2.0)")
    ana.add_argument("--hop", type=float, default=0.5, help="seconds between windows (default 0.5)")
    ana.add_argument("--horizon", type=float, default=4.0, help="seconds of speech the rolling scores average")
    ana.add_argument(
        "--adapt-reset-s",
        type=float,
        default=30.0,
        help="seconds without speech on a channel after which its speaker adaptation starts afresh "
        "(a new call; default 30)",
    )
    ana.add_argument("--model-dir", type=Path, help="folder of the trained model (default: models/)")
    ana.add_argument("--workers", type=int, help="analysis threads, each with its own model (default: one per core)")
    srv = p.add_argument_group("server")
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    srv.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    srv.add_argument(
        "--client-queue", type=int, default=2000, help="messages a slow dashboard may lag before its oldest are dropped"
    )
    srv.add_argument("--max-upload-mb", type=float, default=50.0, help="upload limit of /api/analyze (default 50)")
    srv.add_argument(
        "--max-upload-seconds",
        type=float,
        default=3600.0,
        help="longest recording /api/analyze decodes; longer ones get 413 (default 3600)",
    )
    srv.add_argument(
        "--send-buffer-kb",
        type=int,
        default=256,
        help="kernel send buffer per connection: bounds what a stalled dashboard holds (default 256)",
    )
    mq = p.add_argument_group("MQTT and alerts")
    mq.add_argument("--mqtt", metavar="URL", help="broker: mqtt://[user:pass@]host[:port] or mqtts://…")
    mq.add_argument("--mqtt-ca", metavar="FILE", help="CA certificate for mqtts://")
    mq.add_argument("--mqtt-prefix", default="emotion", help="topic prefix (default: emotion)")
    mq.add_argument("--mqtt-interval", type=float, default=1.0, help="seconds between scores per channel (default 1)")
    mq.add_argument("--mqtt-spool", type=Path, metavar="DIR", help="keep undelivered alerts in files here")
    mq.add_argument("--alert", action="append", default=[], metavar="RULE", help='e.g. "caller:angry>=0.6 for 5s"')
    mq.add_argument("--alerts", type=Path, metavar="FILE", help="alert rules from a TOML file")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    args = p.parse_args(argv)
    if args.hop <= 0 or args.horizon <= 0:
        p.error("--hop and --horizon must be positive")
    if not 0 < args.adapt_reset_s < float("inf"):  # also rejects nan
        p.error("--adapt-reset-s must be a positive number of seconds")
    if not 0 < args.max_upload_seconds < float("inf"):
        p.error("--max-upload-seconds must be a positive number of seconds")
    names = [n.strip() for n in args.channels.split(",")] if args.channels else ["mono"]
    if not all(names) or len(set(names)) != len(names) or not all(map(valid_name, names)):
        p.error("--channels needs distinct, non-empty names without '/', '+', '#' or spaces")
    if not valid_name(args.stream_id):
        p.error("--stream-id must be non-empty, without '/', '+', '#' or spaces")
    if args.serve and (args.input or args.device):
        p.error("--serve captures nothing: it cannot be combined with --input or --device")
    if (args.mqtt_ca or args.mqtt_spool) and not args.mqtt:
        p.error("--mqtt-ca and --mqtt-spool need --mqtt")
    args.channel_names = names
    return args


def valid_name(name: str) -> bool:
    """Stream and channel names are MQTT topic levels."""
    return bool(name) and not any(c in name for c in "/+# \t\n")


def fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def unique_ids(paths: list[Path]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for path in paths:
        stem = "".join("_" if c in "/+# " else c for c in path.stem) or "stream"
        seen[stem] = seen.get(stem, 0) + 1
        out.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return out


def build_sources(args, config) -> list:
    from streamer.sources import DeviceError, DeviceSource, FileSource, describe_devices

    kw = {"hop_s": args.hop, "horizon_s": args.horizon, "adapt_reset_s": args.adapt_reset_s}
    if args.input:
        sources = []
        for path, stream_id in zip(args.input, unique_ids(args.input)):
            try:
                sources.append(FileSource(path, stream_id, args.channel_names, config, fast=args.fast, **kw))
            except DeviceError as exc:
                print(f"error: {exc}; skipping it", file=sys.stderr)
        if not sources:
            raise SystemExit(fail("none of the input files can be read"))
        return sources
    try:
        source = DeviceSource(args.stream_id, args.device, args.channel_names, config, **kw)
        source.start()
    except DeviceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(describe_devices(), file=sys.stderr)
        raise SystemExit(2) from None
    return [source]


def bind(host: str, port: int, send_buffer_kb: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this: a stalled browser's backlog is then held
    # in its bounded hub queue (counted drops), not in megabytes of kernel buffer.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_kb * 1024)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SystemExit(fail(f"cannot listen on {host}:{port}: {exc.strerror}")) from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def serve(args, model, sources, sock: socket.socket, alerts) -> None:
    import contextlib

    import uvicorn

    from streamer.hub import Hub, LoopBridge
    from streamer.pipeline import AnalysisWorker
    from streamer.server import create_app
    from streamer.sources import FileSource

    loop = asyncio.get_running_loop()
    hub = Hub(hop_s=args.hop, client_queue=args.client_queue)
    stop = asyncio.Event()
    publishers = subscriber = mqtt_stats = None
    if args.mqtt:
        from streamer import mqtt

        broker = mqtt.parse_broker_url(args.mqtt, args.mqtt_ca)
        if args.serve:
            mqtt_stats = mqtt.SubscriberStats()
            subscriber = asyncio.create_task(mqtt.subscribe(broker, args.mqtt_prefix, hub.publish, stop, mqtt_stats))
        else:
            publishers = mqtt.Publishers(
                lambda stream: mqtt.StreamPublisher(
                    broker, args.mqtt_prefix, stream, args.mqtt_interval, spool_dir=args.mqtt_spool
                )
            )

    def dispatch(message: dict) -> None:  # on the event loop
        hub.publish(message)
        if publishers is not None:
            publishers.offer(message)

    bridge = LoopBridge(loop, dispatch)
    hub.extra_stats = lambda: {
        "bridge_dropped": bridge.dropped,
        **({"mqtt_invalid": mqtt_stats.invalid} if mqtt_stats is not None else {}),
    }
    workers = [AnalysisWorker(m, bridge.put, alerts=alerts) for m in worker_models(args, model, len(sources))]
    for i, source in enumerate(sources):
        workers[i % len(workers)].add(source)  # a stream stays on one worker: its state is not shared
        if isinstance(source, FileSource):
            source.start()
    for worker in workers:
        worker.start()
    upload_worker = workers[0]  # also runs the model for uploads, between its live batches

    from streamer.analyze import analyze_source

    def analyze_upload(f):  # in a thread; refuses recordings over the limit before decoding them whole
        return analyze_source(f, model, args.hop, upload_worker.predict, max_seconds=args.max_upload_seconds)

    app = create_app(hub, analyze_upload, max_upload_mb=args.max_upload_mb)
    server = uvicorn.Server(uvicorn.Config(app, log_level=args.log_level, lifespan="off"))
    server.capture_signals = contextlib.nullcontext  # we handle SIGINT/SIGTERM below
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def stop_when_files_done() -> None:
        while not all(getattr(s, "finished", False) for s in sources):
            await asyncio.sleep(0.2)
        await asyncio.sleep(args.hop * 2)  # let the last statuses go out
        stop.set()

    tasks = [asyncio.create_task(server.serve(sockets=[sock]))]
    if args.input and args.exit_when_done:
        tasks.append(asyncio.create_task(stop_when_files_done()))
    host, port = sock.getsockname()[:2]
    print(f"dashboard: http://{host}:{port}/  (Ctrl-C to stop)", file=sys.stderr, flush=True)
    await asyncio.wait([asyncio.create_task(stop.wait()), tasks[0]], return_when=asyncio.FIRST_COMPLETED)

    # Shutdown: stop capture, finish the windows in flight, close clients, exit.
    for source in sources:
        source.stop()
    await asyncio.gather(*(loop.run_in_executor(None, w.stop) for w in workers))
    await asyncio.sleep(0.1)  # deliver what the worker emitted last
    if publishers is not None:
        await publishers.close()
    if subscriber is not None:
        subscriber.cancel()
        await asyncio.gather(subscriber, return_exceptions=True)
    hub.close()
    await asyncio.sleep(0.2)  # let clients get a 1001 "going away" close before the server stops
    server.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.list_devices:
        from streamer.sources import describe_devices

        print(describe_devices())
        return 0

    from streamer.runtime import DEFAULT_MODEL_DIR, EmotionModel, ModelError

    try:
        model = EmotionModel(args.model_dir or DEFAULT_MODEL_DIR)
    except ModelError as exc:
        return fail(str(exc))
    if args.window is not None and abs(args.window - model.config.window_s) > 1e-9:
        return fail(f"the model classifies {model.config.window_s} s windows; --window {args.window} needs retraining")
    try:
        alerts = load_alerts(args)
        if args.mqtt:
            from streamer.mqtt import parse_broker_url

            parse_broker_url(args.mqtt, args.mqtt_ca)
    except ValueError as exc:
        return fail(str(exc))
    if args.mqtt_ca and not Path(args.mqtt_ca).is_file():
        return fail(f"--mqtt-ca: no such file '{args.mqtt_ca}'")
    if args.mqtt_spool:
        args.mqtt_spool.mkdir(parents=True, exist_ok=True)
    model.warm_up()
    sock = bind(args.host, args.port, args.send_buffer_kb)
    sources = [] if args.serve else build_sources(args, model.config)
    asyncio.run(serve(args, model, sources, sock, alerts))
    return 0


def worker_models(args, model, n_sources: int) -> list:
    """One model per analysis worker (LiteRT interpreters are not shared between threads)."""
    import os

    from streamer.runtime import EmotionModel

    count = max(1, min(args.workers or os.cpu_count() or 1, n_sources))
    return [model] + [EmotionModel(args.model_dir or model.model_dir) for _ in range(count - 1)]


def load_alerts(args):
    """The AlertEngine for --alert/--alerts, or None; raises RuleError (a ValueError)."""
    from streamer.alerts import AlertEngine, load_rules, parse_rule

    rules = [parse_rule(text) for text in args.alert]
    if args.alerts:
        rules += load_rules(args.alerts)
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        raise ValueError("alert rule names must be unique")
    return AlertEngine(rules) if rules else None


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
