"""Access settings: the token, allowed websocket origins, TLS. Pure checks, no I/O."""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass, field
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
