"""Telephony sample codecs: G.711 μ-law and little-endian 16-bit linear PCM (L16), both ways."""

from __future__ import annotations

import numpy as np


def _mulaw_table() -> np.ndarray:
    """G.711 μ-law byte → float32 sample in [-1, 1)."""
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 0x07
    magnitude = (((codes & 0x0F) << 3) + 0x84) << exponent
    linear = np.where(codes & 0x80, 0x84 - magnitude, magnitude - 0x84)
    return (linear / 32768.0).astype(np.float32)


MULAW = _mulaw_table()


def mulaw_to_float(payload: bytes) -> np.ndarray:
    """Decode G.711 μ-law bytes to float32 samples."""
    return MULAW[np.frombuffer(payload, np.uint8)]


def l16_to_float(payload: bytes, channels: int = 1) -> np.ndarray:
    """Little-endian signed 16-bit PCM, interleaved, to float32 ``(n, channels)``; ValueError if not whole samples."""
    if len(payload) % (2 * channels):
        raise ValueError(f"a frame of {len(payload)} bytes is not whole {channels}-channel samples")
    return (np.frombuffer(payload, "<i2").astype(np.float32) / 32768.0).reshape(-1, channels)


def mulaw_encode(samples: np.ndarray) -> bytes:
    """float32 samples → G.711 μ-law bytes (the nearest code by the decoder's table)."""
    order = np.argsort(MULAW)
    table = MULAW[order]
    idx = np.clip(np.searchsorted(table, samples), 1, len(table) - 1)
    nearer = np.where(np.abs(samples - table[idx - 1]) <= np.abs(table[idx] - samples), idx - 1, idx)
    return order[nearer].astype(np.uint8).tobytes()


def l16_encode(samples: np.ndarray) -> bytes:
    """float32 samples (n,) or (n, channels) → little-endian interleaved 16-bit PCM."""
    return (np.clip(samples, -1.0, 32767 / 32768) * 32768).astype("<i2").tobytes()
