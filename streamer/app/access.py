"""Resolve the access settings from options and the environment (reads the token file)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from streamer.core.access import MIN_TOKEN_LEN, TOKEN_ENV, AccessConfig, is_loopback, normalise_origin


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
