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
  ./run.sh --serve --audiosocket 127.0.0.1:9092  # calls from the phone system (also at /twilio and /fork)

Then open http://127.0.0.1:8765/ .
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import NoReturn

log = logging.getLogger("run_stream")
TOKEN_ENV = "EMOTION_TOKEN"  # as streamer.access (not imported before the arguments are parsed)


class OneLineErrors(argparse.ArgumentParser):
    """Usage mistakes get one line (the usage is in --help), like every other startup error."""

    def error(self, message: str) -> NoReturn:
        raise SystemExit(fail(f"{message} (see --help)"))


def number(kind: type, minimum: float = 0.0, inclusive: bool = False, what: str | None = None):
    """An argparse type: a finite ``kind`` above ``minimum`` (or at least it, if ``inclusive``)."""
    what = what or f"{'an integer' if kind is int else 'a number'} {'>=' if inclusive else '>'} {minimum:g}"

    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got '{text}'") from None
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"must be {what}, got '{text}'")
        return value

    return convert


POSITIVE = number(float)
COUNT = number(int, 1, inclusive=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = OneLineErrors(
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
    ana.add_argument("--window", type=POSITIVE, help="window length in seconds (must match the model's, 2.0)")
    ana.add_argument("--hop", type=POSITIVE, default=0.5, help="seconds between windows (default 0.5)")
    ana.add_argument("--horizon", type=POSITIVE, default=4.0, help="seconds of speech the rolling scores average")
    ana.add_argument(
        "--adapt-reset-s",
        type=POSITIVE,
        default=30.0,
        help="seconds without speech on a channel after which its speaker adaptation starts afresh "
        "(a new call; default 30)",
    )
    ana.add_argument("--model-dir", type=Path, help="folder of the trained model (default: models/)")
    ana.add_argument("--workers", type=COUNT, help="analysis workers, each with its own model (default: one per core)")
    ana.add_argument(
        "--analysis",
        choices=["threads", "processes"],
        help="run the workers as threads, or as processes that do not share the event loop's interpreter lock "
        "(default: processes with --serve, for many calls; threads otherwise)",
    )
    srv = p.add_argument_group("server")
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    srv.add_argument(
        "--port", type=number(int, 0, True, "a port, 0-65535"), default=8765, help="port (default 8765; 0: any free)"
    )
    srv.add_argument(
        "--client-queue",
        type=COUNT,
        default=2000,
        help="messages a slow dashboard may lag before its oldest are dropped",
    )
    srv.add_argument("--max-upload-mb", type=POSITIVE, default=50.0, help="upload limit of /api/analyze (default 50)")
    srv.add_argument(
        "--max-upload-seconds",
        type=POSITIVE,
        default=3600.0,
        help="longest recording /api/analyze decodes; longer ones get 413 (default 3600)",
    )
    srv.add_argument(
        "--send-buffer-kb",
        type=COUNT,
        default=256,
        help="kernel send buffer per connection: bounds what a stalled dashboard holds (default 256)",
    )
    srv.add_argument(
        "--concurrent-uploads", type=COUNT, default=2, help="uploads received and analysed at once; more get 503"
    )
    srv.add_argument(
        "--upload-read-timeout",
        type=POSITIVE,
        default=30.0,
        help="seconds an upload's body may stall (and ten times that in all) before 408 (default 30)",
    )
    acc = p.add_argument_group("access (needed when --host is not loopback)")
    acc.add_argument("--token-file", type=Path, metavar="FILE", help=f"the access token (or ${TOKEN_ENV})")
    acc.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="URL",
        help="another web origin allowed to open /ws, e.g. https://wall.example:8443 (repeatable)",
    )
    acc.add_argument("--certfile", type=Path, help="TLS certificate (PEM): serve https and wss")
    acc.add_argument("--keyfile", type=Path, help="TLS private key (PEM)")
    mq = p.add_argument_group("MQTT and alerts")
    mq.add_argument("--mqtt", metavar="URL", help="broker: mqtt://[user:pass@]host[:port] or mqtts://…")
    mq.add_argument("--mqtt-ca", metavar="FILE", help="CA certificate for mqtts://")
    mq.add_argument(
        "--mqtt-password-file",
        type=Path,
        metavar="FILE",
        help="the broker password (or $EMOTION_MQTT_PASSWORD); not in the URL, where `ps` shows it",
    )
    mq.add_argument("--mqtt-prefix", default="emotion", help="topic prefix (default: emotion)")
    mq.add_argument(
        "--mqtt-interval", type=POSITIVE, default=1.0, help="seconds between scores per channel (default 1)"
    )
    mq.add_argument("--mqtt-spool", type=Path, metavar="DIR", help="keep undelivered alerts in files here")
    mq.add_argument("--alert", action="append", default=[], metavar="RULE", help='e.g. "caller:angry>=0.6 for 5s"')
    mq.add_argument("--alerts", type=Path, metavar="FILE", help="alert rules from a TOML file")
    mq.add_argument(
        "--max-streams", type=COUNT, default=1000, help="streams a dashboard keeps; more are dropped (default 1000)"
    )
    mq.add_argument(
        "--stream-ttl",
        type=POSITIVE,
        default=600.0,
        help="seconds an ended (stopped, finished, offline) stream stays on the dashboard (default 600)",
    )
    calls = p.add_argument_group("calls from the phone system (Twilio, FreeSWITCH, Asterisk)")
    calls.add_argument("--twilio-path", default="/twilio", help="Twilio Media Streams websocket path (default /twilio)")
    calls.add_argument("--fork-path", default="/fork", help="FreeSWITCH mod_audio_fork websocket path (default /fork)")
    calls.add_argument("--audiosocket", metavar="HOST:PORT", help="listen for Asterisk AudioSocket calls here")
    calls.add_argument(
        "--audiosocket-allow",
        action="append",
        default=[],
        metavar="CIDR",
        help="addresses that may connect to --audiosocket (default: loopback only)",
    )
    calls.add_argument(
        "--analyze-agent",
        action="store_true",
        help="analyse the agent's voice too (prohibited for workers in the EU: AI Act Art. 5(1)(f))",
    )
    calls.add_argument("--max-calls", type=COUNT, default=1000, help="calls at once; more are refused (default 1000)")
    calls.add_argument(
        "--call-resume",
        type=POSITIVE,
        default=10.0,
        help="seconds a dropped call waits for its connection to come back (default 10)",
    )
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    args = p.parse_args(argv)
    paths = [args.twilio_path, args.fork_path]
    reserved = ("/ws", "/api", "/static", "/metrics", "/docs", "/openapi.json")
    if len(set(paths)) < 2 or not all(x.startswith("/") and x != "/" and not x.startswith(reserved) for x in paths):
        p.error("--twilio-path and --fork-path must be distinct paths like /twilio, not the dashboard's own")
    if args.audiosocket:
        host, _, port = args.audiosocket.rpartition(":")
        if not host or not port.isdigit() or int(port) > 65535:
            p.error(f"argument --audiosocket: want HOST:PORT, got '{args.audiosocket}'")
        args.audiosocket_addr = (host.strip("[]"), int(port))
    elif args.audiosocket_allow:
        p.error("--audiosocket-allow needs --audiosocket")
    if args.port > 65535:
        p.error(f"argument --port: must be a port, 0-65535, got '{args.port}'")
    names = [n.strip() for n in args.channels.split(",")] if args.channels else ["mono"]
    if not all(names) or len(set(names)) != len(names) or not all(map(valid_name, names)):
        p.error("--channels needs distinct, non-empty names without '/', '+', '#' or spaces")
    if not all(valid_name(level) for level in args.mqtt_prefix.split("/")):
        p.error("--mqtt-prefix needs non-empty topic levels without '+', '#' or spaces")
    if not valid_name(args.stream_id):
        p.error("--stream-id must be non-empty, without '/', '+', '#' or spaces")
    if args.serve and (args.input or args.device):
        p.error("--serve captures nothing: it cannot be combined with --input or --device")
    if (args.mqtt_ca or args.mqtt_spool or args.mqtt_password_file) and not args.mqtt:
        p.error("--mqtt-ca, --mqtt-spool and --mqtt-password-file need --mqtt")
    args.channel_names = names
    if args.analysis is None:
        args.analysis = "processes" if args.serve else "threads"
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


SHUTDOWN_BUDGET_S = 5.0  # SIGTERM to exit, whatever clients and uploads do


def force_exit(reason: str, code: int) -> NoReturn:
    print(f"error: {reason}; exiting now", file=sys.stderr, flush=True)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(code)


def begin_shutdown(stop: asyncio.Event) -> None:
    """First signal: an orderly stop within the budget (a timer enforces it); second: exit at once."""
    if stop.is_set():
        force_exit("interrupted again during shutdown", 130)
        return  # (only reached when a test replaces os._exit)
    stop.set()
    timer = threading.Timer(SHUTDOWN_BUDGET_S - 0.3, force_exit, (f"shutdown took over {SHUTDOWN_BUDGET_S:g} s", 1))
    timer.daemon = True
    timer.start()


async def serve(args, models, sources, sock: socket.socket, alerts, access, broker) -> None:
    from streamer.app import Application

    application = Application(args, models, sources, sock, alerts, access, broker)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, begin_shutdown, application.stopping)
    try:
        await application.run()
    except OSError as exc:  # the AudioSocket address (started first, before anything else)
        raise SystemExit(fail(f"--audiosocket: cannot listen on {args.audiosocket}: {exc.strerror}")) from None
    except RuntimeError as exc:  # an analysis process could not start
        raise SystemExit(fail(str(exc))) from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.list_devices:
        from streamer.sources import describe_devices

        print(describe_devices())
        return 0

    from streamer.access import mqtt_plaintext_warning, resolve_access

    try:
        access = resolve_access(args.host, args.token_file, os.environ, args.allow_origin, args.certfile, args.keyfile)
        alerts = load_alerts(args)
        broker = None
        if args.mqtt:
            from streamer.mqtt import load_mqtt_password, parse_broker_url

            password = load_mqtt_password(args.mqtt_password_file, os.environ)
            broker = parse_broker_url(args.mqtt, args.mqtt_ca, password)
            warning = mqtt_plaintext_warning(bool(broker.username or broker.password), broker.tls, broker.hostname)
            if warning:
                print(warning, file=sys.stderr)
            if password is None and broker.password:
                print(
                    "warning: the MQTT password in --mqtt is visible to every user of this machine (ps); "
                    "use --mqtt-password-file or $EMOTION_MQTT_PASSWORD",
                    file=sys.stderr,
                )
        args.audiosocket_nets = None
        if args.audiosocket:
            from streamer.access import is_loopback
            from streamer.ingest import parse_networks

            args.audiosocket_nets = parse_networks(args.audiosocket_allow) or None
            if args.audiosocket_nets is None and not is_loopback(args.audiosocket_addr[0]):
                raise ValueError(
                    f"--audiosocket {args.audiosocket} is reachable from the network and AudioSocket has no "
                    "authentication: list the PBX addresses with --audiosocket-allow"
                )
    except ValueError as exc:
        return fail(str(exc))

    from streamer.runtime import DEFAULT_MODEL_DIR, EmotionModel, ModelError

    try:
        model = EmotionModel(args.model_dir or DEFAULT_MODEL_DIR)
    except ModelError as exc:
        return fail(str(exc))
    if args.window is not None and abs(args.window - model.config.window_s) > 1e-9:
        return fail(f"the model classifies {model.config.window_s} s windows; --window {args.window} needs retraining")
    if args.mqtt_ca and not Path(args.mqtt_ca).is_file():
        return fail(f"--mqtt-ca: no such file '{args.mqtt_ca}'")
    if args.mqtt_spool:
        args.mqtt_spool.mkdir(parents=True, exist_ok=True)
    model.warm_up()
    sock = bind(args.host, args.port, args.send_buffer_kb)
    sources = [] if args.serve else build_sources(args, model.config)
    import uvloop

    uvloop.run(serve(args, worker_models(args, model, len(sources)), sources, sock, alerts, access, broker))
    return 0


def worker_models(args, model, n_sources: int) -> list:
    """One model per analysis worker (LiteRT interpreters are not shared between threads)."""
    import os

    from streamer.runtime import EmotionModel

    if args.analysis == "processes":
        return [model]  # each process loads its own; this one serves uploads
    cores = args.workers or os.cpu_count() or 1
    count = cores if args.serve else max(1, min(cores, n_sources))  # --serve: for calls as they come
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
