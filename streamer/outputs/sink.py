"""The Sink interface: where the analysis's messages go (the dashboard's hub, MQTT, ...).

Every message (``scores``, ``status``, ``alert``; see ``streamer.core.messages``)
is offered to every sink on the event loop, in the order the workers made
them. A sink must not block: it queues, counts what it drops, and sends from
tasks of its own. The application registers its sinks in one list
(``Application.sinks``) and closes them in reverse order at shutdown.
"""

from __future__ import annotations

from typing import Protocol


class Sink(Protocol):
    def offer(self, message: dict) -> None:
        """Take one message (on the event loop; must not block or raise)."""

    def stats(self) -> dict:
        """Counters for ``/api/status`` and ``/metrics``."""

    async def close(self) -> None:
        """Deliver what can be delivered within the sink's own bound, then let go."""
