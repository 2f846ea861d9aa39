"""Exceptions as one line, for logs, statuses and close reasons."""

from __future__ import annotations

MAX_LEN = 200


def first_line(exc: BaseException) -> str:
    """The exception's message, first line only (its type's name if it has none), bounded."""
    text = str(exc).strip()
    return text.splitlines()[0][:MAX_LEN] if text else type(exc).__name__


def error_text(exc: BaseException) -> str:
    """One line for logs and status messages: the exception's type and first line, bounded."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {first_line(exc)}"[:MAX_LEN] if text else type(exc).__name__
