"""The analyzer's settings: one frozen, validated object built from the command line and the environment.

``streamer.app.cli`` parses the options into :class:`Settings`;
:class:`~streamer.app.application.Application` consumes it (as uvicorn's
``Server`` consumes its ``Config``). Every option is checked before anything
starts; a bad combination raises ``ValueError`` with one line naming the option.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field, fields
from pathlib import Path

from streamer.analysis.analyzer import AnalysisSettings
from streamer.calls.net.audiosocket import LOOPBACK, parse_networks
from streamer.calls.net.gate import GateLimits
from streamer.core.access import is_loopback
from streamer.core.messages import DEFAULT_QUEUE, valid_queue
from streamer.sources.base import MONO

RESERVED_PATHS = ("/ws", "/api", "/static", "/metrics", "/docs", "/openapi.json")


def valid_name(name: str) -> bool:
    """Stream and channel names are MQTT topic levels."""
    return bool(name) and not any(c in name for c in "/+# \t\n")


@dataclass(frozen=True)
class Settings:
    # audio source
    device: str | None = None
    list_devices: bool = False
    input: tuple[Path, ...] = ()
    fast: bool = False
    exit_when_done: bool = False
    stream_id: str = field(default_factory=socket.gethostname)
    channels: tuple[str, ...] = (MONO,)
    serve: bool = False
    # analysis
    window: float | None = None
    hop: float = 0.5
    horizon: float = 4.0
    adapt_reset_s: float = 30.0
    model_dir: Path | None = None
    workers: int | None = None
    analysis: str | None = None  # threads | processes; None: chosen by streamer.workers.pool
    # server
    host: str = "127.0.0.1"
    port: int = 8765
    client_queue: int = 2000
    max_upload_mb: float = 50.0
    max_upload_seconds: float = 3600.0
    send_buffer_kb: int = 256
    concurrent_uploads: int = 2
    upload_read_timeout: float = 30.0
    # access
    token_file: Path | None = None
    allow_origin: tuple[str, ...] = ()
    certfile: Path | None = None
    keyfile: Path | None = None
    # MQTT and alerts
    mqtt: str | None = None
    mqtt_ca: str | None = None
    mqtt_password_file: Path | None = None
    mqtt_prefix: str = "emotion"
    mqtt_interval: float = 1.0
    mqtt_spool: Path | None = None
    alert: tuple[str, ...] = ()
    alerts: Path | None = None
    max_streams: int = 1000
    stream_ttl: float = 600.0
    queues: tuple[str, ...] = ()  # --queue: the supervisor shows these queues only (default: all)
    default_queue: str = DEFAULT_QUEUE  # of streams whose phone system names none (devices, files too)
    # calls
    twilio_path: str = "/twilio"
    fork_path: str = "/fork"
    audiosocket: str | None = None
    audiosocket_allow: tuple[str, ...] = ()
    analyze_agent: bool = False
    max_calls: int = 1000
    call_resume: float = 10.0
    call_idle_timeout: float = 30.0
    # the front door and draining
    handshake_timeout: float = 10.0
    max_per_address: int = 1000
    drain_timeout: float = 3600.0
    own_streams_only: bool = False  # behind a load balancer: publish, do not subscribe to the others
    log_level: str = "warning"

    def __post_init__(self) -> None:
        paths = [self.twilio_path, self.fork_path]
        if len(set(paths)) < 2 or not all(
            x.startswith("/") and x != "/" and not x.startswith(RESERVED_PATHS) for x in paths
        ):
            raise ValueError(
                "--twilio-path and --fork-path must be distinct paths like /twilio, not the dashboard's own"
            )
        if self.audiosocket is not None:
            host, _ = self.audiosocket_addr
            if not self.audiosocket_allow and not is_loopback(host):
                raise ValueError(
                    f"--audiosocket {self.audiosocket} is reachable from the network and AudioSocket has no "
                    "authentication: list the PBX addresses with --audiosocket-allow"
                )
            parse_networks(list(self.audiosocket_allow))  # raises naming a bad one
        elif self.audiosocket_allow:
            raise ValueError("--audiosocket-allow needs --audiosocket")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"argument --port: must be a port, 0-65535, got '{self.port}'")
        names = self.channels
        if not all(names) or len(set(names)) != len(names) or not all(map(valid_name, names)):
            raise ValueError("--channels needs distinct, non-empty names without '/', '+', '#' or spaces")
        if not all(valid_name(level) for level in self.mqtt_prefix.split("/")):
            raise ValueError("--mqtt-prefix needs non-empty topic levels without '+', '#' or spaces")
        if not valid_name(self.stream_id):
            raise ValueError("--stream-id must be non-empty, without '/', '+', '#' or spaces")
        if self.serve and (self.input or self.device):
            raise ValueError("--serve captures nothing: it cannot be combined with --input or --device")
        if self.own_streams_only and not (self.serve and self.mqtt):
            raise ValueError("--own-streams-only is for --serve --mqtt (an analyzer behind a load balancer)")
        if (self.mqtt_ca or self.mqtt_spool or self.mqtt_password_file) and not self.mqtt:
            raise ValueError("--mqtt-ca, --mqtt-spool and --mqtt-password-file need --mqtt")
        if self.queues and not (self.serve and self.mqtt):
            raise ValueError("--queue chooses the queues a supervisor dashboard shows: it needs --serve and --mqtt")
        for name, queue in [*(("--queue", q) for q in self.queues), ("--default-queue", self.default_queue)]:
            if not valid_queue(queue):
                raise ValueError(f"{name} must be 1-128 characters without '/', '+', '#' or spaces, got '{queue[:40]}'")

    @classmethod
    def from_options(cls, options: object) -> Settings:
        """From parsed options (an ``argparse.Namespace``): each field from its option, lists as tuples."""
        values = {}
        for f in fields(cls):
            if hasattr(options, f.name):
                value = getattr(options, f.name)
                values[f.name] = tuple(value) if isinstance(value, list) else value
        if isinstance(values.get("channels"), str):  # --channels agent,caller
            values["channels"] = tuple(n.strip() for n in values["channels"].split(","))
        elif values.get("channels") is None:
            values.pop("channels", None)
        return cls(**values)

    @property
    def analysis_settings(self) -> AnalysisSettings:
        """How every stream is analysed (the same for devices, files and calls)."""
        return AnalysisSettings(hop_s=self.hop, horizon_s=self.horizon, adapt_reset_s=self.adapt_reset_s)

    @property
    def gate_limits(self) -> GateLimits:
        """What the front door lets hold a connection."""
        return GateLimits(self.handshake_timeout, self.max_per_address, self.call_idle_timeout)

    @property
    def audiosocket_networks(self) -> list:
        """Who may connect to ``--audiosocket`` (default: loopback)."""
        return parse_networks(list(self.audiosocket_allow)) or LOOPBACK

    @property
    def audiosocket_addr(self) -> tuple[str, int] | None:
        """``--audiosocket`` as ``(host, port)``."""
        if self.audiosocket is None:
            return None
        host, _, port = self.audiosocket.rpartition(":")
        if not host or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"argument --audiosocket: want HOST:PORT, got '{self.audiosocket}'")
        return host.strip("[]"), int(port)
