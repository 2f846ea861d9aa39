"""The analyzer's command line: ``call-emotions`` (or ``./run.sh``, ``run_stream.py``).

Parses the options into :class:`Settings`, resolves what they point at (the
token, the broker, the alert rules, the model, the sources), then runs an
:class:`~streamer.app.application.Application` on uvloop. Every startup
problem is one line on stderr and exit code 2; SIGINT/SIGTERM stop within
{SHUTDOWN_BUDGET_S} s; SIGUSR1 drains (no new calls, exit once the running
ones have ended).
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
from dataclasses import asdict, replace
from pathlib import Path
from typing import NoReturn

from streamer.app.settings import Settings

log = logging.getLogger("streamer")
TOKEN_ENV = "EMOTION_TOKEN"  # as streamer.core.access (named here for --help)
DEFAULTS = Settings(stream_id="-")  # the option defaults; --stream-id's is this host's name, taken by argparse
SHUTDOWN_BUDGET_S = 5.0  # SIGTERM to exit, whatever clients and uploads do
EXAMPLES = """examples:
  call-emotions                                   # default input device; dashboard on http://127.0.0.1:8765/
                                                  # (no input device: serves calls only, as --serve)
  call-emotions --device softphone.monitor        # a PulseAudio/PipeWire source
  call-emotions --list-devices
  call-emotions --input call1.wav call2.flac      # files, as concurrent real-time streams
  call-emotions --device 3 --channels agent,caller
  call-emotions --device softphone.monitor --mqtt mqtt://broker:1883 --alert "caller:angry>=0.6 for 5s"
  call-emotions --serve --mqtt mqtt://broker:1883  # supervisor dashboard of every analyzer on the broker
  call-emotions --serve --mqtt mqtt://broker:1883 --queue sales  # a team lead's: the sales queue only
  call-emotions --serve --audiosocket 127.0.0.1:9092  # calls from the phone system (also at /twilio and /fork)
"""


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


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrors(
        prog="call-emotions",
        description="Live speech-emotion analyzer with a web dashboard.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLES + "\nFind PulseAudio/PipeWire source names with: pactl list short sources",
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
    ana.add_argument("--hop", type=POSITIVE, help="seconds between windows (default %(default)s)")
    ana.add_argument("--horizon", type=POSITIVE, help="seconds of speech the rolling scores average")
    ana.add_argument(
        "--adapt-reset-s",
        type=POSITIVE,
        help="seconds without speech on a channel after which its speaker adaptation starts afresh "
        "(a new call; default 30)",
    )
    ana.add_argument("--model-dir", type=Path, help="folder of the trained model (default: models/)")
    ana.add_argument("--workers", type=COUNT, help="analysis workers, each with its own model (default: one per core)")
    ana.add_argument(
        "--analysis",
        choices=["threads", "processes"],
        help="run the workers as threads, or as processes that do not share the event loop's interpreter lock "
        "(default: processes with --serve or more than 8 sources; threads otherwise)",
    )
    srv = p.add_argument_group("server")
    srv.add_argument("--host", help="address to bind (default %(default)s)")
    srv.add_argument(
        "--port", type=number(int, 0, True, "a port, 0-65535"), help="port (default %(default)s; 0: any free)"
    )
    srv.add_argument(
        "--client-queue",
        type=COUNT,
        help="messages a slow dashboard may lag before its oldest are dropped",
    )
    srv.add_argument("--max-upload-mb", type=POSITIVE, help="upload limit of /api/analyze (default %(default)s)")
    srv.add_argument(
        "--max-upload-seconds",
        type=POSITIVE,
        help="longest recording /api/analyze decodes; longer ones get 413 (default %(default)s)",
    )
    srv.add_argument(
        "--send-buffer-kb",
        type=COUNT,
        help="kernel send buffer per connection: bounds what a stalled dashboard holds (default %(default)s)",
    )
    srv.add_argument("--concurrent-uploads", type=COUNT, help="uploads received and analysed at once; more get 503")
    srv.add_argument(
        "--upload-read-timeout",
        type=POSITIVE,
        help="seconds an upload's body may stall (and ten times that in all) before 408 (default %(default)s)",
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
    mq.add_argument("--mqtt-prefix", help="topic prefix (default: %(default)s)")
    mq.add_argument("--mqtt-interval", type=POSITIVE, help="seconds between scores per channel (default %(default)s)")
    mq.add_argument("--mqtt-spool", type=Path, metavar="DIR", help="keep undelivered alerts in files here")
    mq.add_argument("--alert", action="append", default=[], metavar="RULE", help='e.g. "caller:angry>=0.6 for 5s"')
    mq.add_argument("--alerts", type=Path, metavar="FILE", help="alert rules from a TOML file")
    mq.add_argument(
        "--max-streams", type=COUNT, help="streams a dashboard keeps; more are dropped (default %(default)s)"
    )
    mq.add_argument(
        "--stream-ttl",
        type=POSITIVE,
        help="seconds an ended (stopped, finished, offline) stream stays on the dashboard (default %(default)s)",
    )
    mq.add_argument(
        "--queue",
        dest="queues",
        action="append",
        default=[],
        metavar="NAME",
        help="with --serve --mqtt: show only this queue's streams (repeatable; default: every queue)",
    )
    mq.add_argument(
        "--default-queue",
        metavar="NAME",
        help="queue of the streams whose call names none: devices, files, AudioSocket (default: '%(default)s')",
    )
    calls = p.add_argument_group("calls from the phone system (Twilio, FreeSWITCH, Asterisk)")
    calls.add_argument("--twilio-path", help="Twilio Media Streams websocket path (default %(default)s)")
    calls.add_argument("--fork-path", help="FreeSWITCH mod_audio_fork websocket path (default %(default)s)")
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
    calls.add_argument("--max-calls", type=COUNT, help="calls at once; more are refused (default %(default)s)")
    calls.add_argument(
        "--call-resume",
        type=POSITIVE,
        help="seconds a dropped call waits for its connection to come back (default %(default)s)",
    )
    calls.add_argument(
        "--call-idle-timeout",
        type=POSITIVE,
        help="seconds a call connection may bring no audio before it is ended (default %(default)s)",
    )
    ops = p.add_argument_group("behind a load balancer")
    ops.add_argument(
        "--handshake-timeout",
        type=POSITIVE,
        help="seconds a connection has to send its request head (HTTP or websocket handshake; default %(default)s)",
    )
    ops.add_argument(
        "--max-per-address",
        type=number(int, 0, True, "an integer >= 0"),
        help="connections at once from one client address; 0: no cap (default %(default)s; behind a load "
        "balancer every connection comes from its address)",
    )
    ops.add_argument(
        "--own-streams-only",
        action="store_true",
        help="with --serve --mqtt: publish this analyzer's calls but do not show the other analyzers' (one of "
        "several behind a load balancer; the supervisor shows them all)",
    )
    ops.add_argument(
        "--drain-timeout",
        type=POSITIVE,
        help="on SIGUSR1 or POST /api/drain: seconds running calls may take to end before the analyzer "
        "exits anyway (default %(default)s)",
    )
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    # Defaults come from Settings: one place for every value.
    p.set_defaults(**{k: v for k, v in asdict(DEFAULTS).items() if not isinstance(v, tuple) and k != "stream_id"})
    return p


def parse_args(argv: list[str] | None) -> Settings:
    """The checked settings; a bad option or combination exits 2 with one line."""
    parser = build_parser()
    options = parser.parse_args(argv)
    try:
        return Settings.from_options(options)
    except ValueError as exc:
        parser.error(str(exc))


def fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def unique_ids(paths: list[Path]) -> list[str]:
    """Stream ids from file names (``a.wav`` → ``a``; repeated names numbered)."""
    seen: dict[str, int] = {}
    out = []
    for path in paths:
        stem = "".join("_" if c in "/+# " else c for c in path.stem) or "stream"
        seen[stem] = seen.get(stem, 0) + 1
        out.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return out


def build_sources(settings: Settings, rate: int) -> list:
    """The ``--input`` files, or the capture device (opened now).

    Returns
    -------
    list
        The sources; empty when no capture was asked for (no ``--device``,
        ``--channels`` or ``--input``) and the default input device cannot be
        opened: a server without a sound card then serves calls only (one
        line says so). Exits 2 with one line when what was asked for cannot be opened.
    """
    from streamer.sources.base import MONO, DeviceError
    from streamer.sources.devices import DeviceSource, describe_devices
    from streamer.sources.files import FileSource

    channels = list(settings.channels)
    if settings.input:
        sources = []
        for path, stream_id in zip(settings.input, unique_ids(list(settings.input))):
            try:
                sources.append(FileSource(path, stream_id, channels, fast=settings.fast))
            except DeviceError as exc:
                print(f"error: {exc}; skipping it", file=sys.stderr)
        if not sources:
            raise SystemExit(fail("none of the input files can be read"))
        return sources
    try:
        source = DeviceSource(settings.stream_id, settings.device, channels, preferred_rate=rate)
        source.start()
    except DeviceError as exc:
        if settings.device is None and channels == [MONO]:  # nothing asked of a device: a server of calls
            print(f"no input device here: serving calls only ({exc})", file=sys.stderr)
            return []
        print(f"error: {exc}", file=sys.stderr)
        listing = describe_devices()
        if len(listing.splitlines()) > 1 or not listing.endswith(":"):  # not a heading over an empty list
            print(listing, file=sys.stderr)
        raise SystemExit(2) from None
    return [source]


def feeding_commands(settings: Settings, port: int, tls: bool, token: bool) -> list[str]:
    """What to run to give a server of calls something to analyse (printed when it has no input device).

    Parameters
    ----------
    settings : Settings
        The running analyzer's (host and Twilio path of the load generator's target).
    port : int
        The port it listens on (``--port 0`` picks one).
    tls, token : bool
        Whether it serves wss and wants a token: the load generator's command then says so.

    Returns
    -------
    list of str
        Indented lines: a checkout's ``./run.sh`` and load generator, or the installed command.
    """
    import shlex

    root = Path(__file__).resolve().parents[2]
    checkout = (root / "run.sh").is_file() and (root / "tools" / "loadgen.py").is_file()
    run = "./run.sh" if checkout else "call-emotions"
    lines = []
    if checkout:  # tools/ is not in the wheel
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
        host = f"[{host}]" if ":" in host else host
        target = f"{'wss' if tls else 'ws'}://{host}:{port}{settings.twilio_path}"
        # The token by reference, never its value: this goes to the console and to logs.
        where = f"$(cat {shlex.quote(str(settings.token_file))})" if settings.token_file else f"${TOKEN_ENV}"
        secret = f' --token "{where}"' if token else ""
        python = ".venv/bin/python" if (root / ".venv" / "bin" / "python").exists() else "python3"
        lines.append(
            f"  test calls:    {python} -m tools.loadgen twilio --target {target}{secret} "
            "--calls 3 --seconds 30 FILE.wav"
        )
    lines.append(f"  a recording:   {run} --input FILE.wav   (instead of this server: stop it first)")
    lines.append(f"  a sound card:  {run} --device NAME   (names: {run} --list-devices)")
    return lines


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


async def serve(settings: Settings, model, sources, sock: socket.socket, alerts, access, broker) -> None:
    from streamer.app.application import Application

    application = Application(settings, model, sources, sock, alerts, access, broker)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, begin_shutdown, application.stopping)
    loop.add_signal_handler(signal.SIGUSR1, application.drain)  # a rolling upgrade: finish the calls, then exit
    try:
        await application.run()
    except OSError as exc:  # the AudioSocket address (started first, before anything else)
        raise SystemExit(fail(f"--audiosocket: cannot listen on {settings.audiosocket}: {exc.strerror}")) from None
    except RuntimeError as exc:  # an analysis process could not start
        raise SystemExit(fail(str(exc))) from None


def resolve_broker(settings: Settings, env) -> object | None:
    """The MQTT broker of ``--mqtt`` with its password, warning once about plaintext credentials."""
    if not settings.mqtt:
        return None
    from streamer.outputs.mqtt.broker import load_mqtt_password, mqtt_plaintext_warning, parse_broker_url

    password = load_mqtt_password(settings.mqtt_password_file, env)
    broker = parse_broker_url(settings.mqtt, settings.mqtt_ca, password)
    warning = mqtt_plaintext_warning(bool(broker.username or broker.password), broker.tls, broker.hostname)
    if warning:
        print(warning, file=sys.stderr)
    if password is None and broker.password:
        print(
            "warning: the MQTT password in --mqtt is visible to every user of this machine (ps); "
            "use --mqtt-password-file or $EMOTION_MQTT_PASSWORD",
            file=sys.stderr,
        )
    if settings.mqtt_ca and not Path(settings.mqtt_ca).is_file():
        raise ValueError(f"--mqtt-ca: no such file '{settings.mqtt_ca}'")
    return broker


def load_alerts(settings: Settings):
    """The AlertEngine for --alert/--alerts, or None; raises RuleError (a ValueError)."""
    from streamer.core.alerts import AlertEngine, load_rules, parse_rule

    rules = [parse_rule(text) for text in settings.alert]
    if settings.alerts:
        rules += load_rules(settings.alerts)
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        raise ValueError("alert rule names must be unique")
    return AlertEngine(rules) if rules else None


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.list_devices:
        from streamer.sources.devices import describe_devices

        print(describe_devices())
        return 0

    from streamer.app.access import resolve_access

    try:
        access = resolve_access(
            settings.host,
            settings.token_file,
            os.environ,
            list(settings.allow_origin),
            settings.certfile,
            settings.keyfile,
        )
        alerts = load_alerts(settings)
        broker = resolve_broker(settings, os.environ)
    except ValueError as exc:
        return fail(str(exc))

    from streamer.analysis.model import DEFAULT_MODEL_DIR, EmotionModel, ModelError

    try:
        model = EmotionModel(settings.model_dir or DEFAULT_MODEL_DIR)
    except ModelError as exc:
        return fail(str(exc))
    if settings.window is not None and abs(settings.window - model.config.window_s) > 1e-9:
        return fail(
            f"the model classifies {model.config.window_s} s windows; --window {settings.window} needs retraining"
        )
    if settings.mqtt_spool:
        settings.mqtt_spool.mkdir(parents=True, exist_ok=True)
    model.warm_up()
    sock = bind(settings.host, settings.port, settings.send_buffer_kb)
    sources = [] if settings.serve else build_sources(settings, model.config.sample_rate)
    if not sources and not settings.serve:  # no input device here: serve calls, exactly as --serve does
        settings = replace(settings, serve=True)  # workers.pool: processes, one per core, as calls need
        feeding = feeding_commands(settings, sock.getsockname()[1], access.tls, access.token is not None)
        print("\n".join(["feed it:", *feeding]), file=sys.stderr, flush=True)
    import uvloop

    uvloop.run(serve(settings, model, sources, sock, alerts, access, broker))
    return 0


def entry() -> None:
    """The console script: exit with ``main``'s code; Ctrl-C before the loop runs exits quietly."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
