"""Who may use the server: the token, allowed websocket origins, TLS. Pure checks, no I/O but reading files.

On loopback nothing is required (only this machine can connect). Bound to any
other address the server needs a token, else it refuses to start. Browsers
send the token once (``/?token=…``) and then carry it in an HttpOnly cookie;
scripts send ``Authorization: Bearer …``. ``/ws`` also checks ``Origin``
always, because a page on another site, opened in the supervisor's browser,
could otherwise read the live scores through it.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

TOKEN_ENV = "EMOTION_TOKEN"
COOKIE = "emotion_token"
MIN_TOKEN_LEN = 16


@dataclass(frozen=True)
class AccessConfig:
    """What the server enforces. ``token`` None: no token (loopback only)."""

    token: str | None = None
    allowed_origins: frozenset[str] = field(default_factory=frozenset)
    tls: bool = False

    def token_ok(self, offered: str | None) -> bool:
        if self.token is None:
            return True
        return offered is not None and hmac.compare_digest(offered.encode(), self.token.encode())

    def origin_ok(self, origin: str | None, host: str | None) -> bool:
        """Absent (not a browser), the server's own origin, or one allowed by ``--allow-origin``."""
        if origin is None:
            return True
        origin = origin.rstrip("/").lower()
        if origin in self.allowed_origins:
            return True
        scheme = "https" if self.tls else "http"
        return host is not None and origin == f"{scheme}://{host.lower()}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def normalise_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case; ValueError for anything else."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"--allow-origin needs scheme://host[:port], got '{origin}'")
    return f"{parts.scheme}://{parts.netloc}".lower()


def resolve_access(
    host: str,
    token_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    allow_origins: list[str] | None = None,
    certfile: Path | None = None,
    keyfile: Path | None = None,
) -> AccessConfig:
    """The access rules for a server bound to ``host``; ValueError with one line if they cannot hold."""
    env = env if env is not None else {}
    token = None
    if token_file is not None:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as exc:
            raise ValueError(f"--token-file: cannot read '{token_file}' ({exc.strerror})") from None
    elif env.get(TOKEN_ENV):
        token = env[TOKEN_ENV].strip()
    if token is not None and len(token) < MIN_TOKEN_LEN:
        raise ValueError(f"the token must be at least {MIN_TOKEN_LEN} characters (e.g. `openssl rand -hex 24`)")
    if token is None and not is_loopback(host):
        raise ValueError(
            f"--host {host} is reachable from other machines: give a token with --token-file FILE or {TOKEN_ENV}"
        )
    if (certfile is None) != (keyfile is None):
        raise ValueError("TLS needs both --certfile and --keyfile")
    for name, path in (("--certfile", certfile), ("--keyfile", keyfile)):
        if path is not None and not Path(path).is_file():
            raise ValueError(f"{name}: no such file '{path}'")
    origins = frozenset(normalise_origin(o) for o in allow_origins or [])
    return AccessConfig(token=token, allowed_origins=origins, tls=certfile is not None)


def mqtt_plaintext_warning(has_credentials: bool, tls: bool, hostname: str) -> str | None:
    """A warning when MQTT credentials would cross the network unencrypted."""
    if has_credentials and not tls and not is_loopback(hostname):
        return (
            f"warning: MQTT credentials go to {hostname} unencrypted over mqtt://; use mqtts:// "
            "(with --mqtt-ca) unless the network is trusted"
        )
    return None
