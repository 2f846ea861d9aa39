"""The MQTT broker's address, credentials and client ids."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiomqtt

from streamer.core.access import is_loopback

MAX_BACKOFF_S = 30.0


PASSWORD_ENV = "EMOTION_MQTT_PASSWORD"


@dataclass(frozen=True)
class Broker:
    hostname: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in logs or error messages
    tls: bool = False
    ca_file: str | None = None

    def client(self, identifier: str, will: aiomqtt.Will | None = None, **options) -> aiomqtt.Client:
        tls = aiomqtt.TLSParameters(ca_certs=self.ca_file) if self.tls else None
        return aiomqtt.Client(
            self.hostname,
            self.port,
            username=self.username,
            password=self.password,
            identifier=identifier,
            will=will,
            tls_params=tls,
            keepalive=15,
            timeout=10,
            **options,
        )

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.hostname}:{self.port}"


def client_id(role: str) -> str:
    """Unique per connection: host and pid alone collide across containers (pid 1 everywhere)."""
    return f"emotion-{role}-{secrets.token_hex(4)}"[:64]


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    return url.replace(netloc[0], f"{parts.username or ''}:***", 1) if len(netloc) == 2 else url


def load_mqtt_password(password_file: Path | None, env: Mapping[str, str]) -> str | None:
    """The broker password from ``--mqtt-password-file`` or ``$EMOTION_MQTT_PASSWORD`` (file first)."""
    if password_file is not None:
        try:
            return Path(password_file).read_text().rstrip("\r\n")
        except OSError as exc:
            raise ValueError(f"--mqtt-password-file: cannot read '{password_file}' ({exc.strerror})") from None
    return env.get(PASSWORD_ENV) or None


def parse_broker_url(url: str, ca_file: str | None = None, password: str | None = None) -> Broker:
    """``mqtt://[user[:pass]@]host[:port]`` or ``mqtts://…``; ``password`` (from a file or the
    environment) replaces one in the URL. Raises ValueError with a readable, redacted message."""
    shown = redact_url(url)
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"broker URL must start with mqtt:// or mqtts://, got '{shown}'")
    if not parts.hostname:
        raise ValueError(f"broker URL has no host: '{shown}'")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"broker URL has an invalid port: '{shown}'") from None
    tls = parts.scheme == "mqtts"
    return Broker(
        hostname=parts.hostname,
        port=port or (8883 if tls else 1883),
        username=unquote(parts.username) if parts.username else None,
        password=password if password is not None else (unquote(parts.password) if parts.password else None),
        tls=tls,
        ca_file=ca_file,
    )


def mqtt_plaintext_warning(has_credentials: bool, tls: bool, hostname: str) -> str | None:
    """A warning when MQTT credentials would cross the network unencrypted."""
    if has_credentials and not tls and not is_loopback(hostname):
        return (
            f"warning: MQTT credentials go to {hostname} unencrypted over mqtt://; use mqtts:// "
            "(with --mqtt-ca) unless the network is trusted"
        )
    return None
