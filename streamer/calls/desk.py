"""The call desk: opens, resumes and retires calls; decides which voices are analysed."""

from __future__ import annotations

import time
from collections.abc import Callable

from streamer.calls.call import CallSource
from streamer.calls.sessions.base import AGENT, CALLER, MIXED, ProtocolError


class CallDesk:
    """Opens, resumes and retires calls; the one place that decides which voices are analysed.

    Parameters
    ----------
    attach : callable
        Receives each new :class:`CallSource` (the adapter hands it to a
        worker); a MemoryError from it refuses the call.
    analyze_agent : bool
        Analyse the agent's voice too. Off by default: in the EU, recognising
        the emotions of workers is prohibited (AI Act, Art. 5(1)(f)).
    max_calls : int
        Calls at once; more are refused.
    resume_s : float
        How long a call whose connection dropped waits for the same call id.
    clock : callable
        Wall clock for the reconnect grace only (never for stream time).
    """

    def __init__(
        self,
        attach: Callable[[CallSource], None],
        analyze_agent: bool = False,
        max_calls: int = 1000,
        resume_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.attach = attach
        self.analyze_agent = analyze_agent
        self.max_calls = max_calls
        self.resume_s = resume_s
        self.clock = clock
        self.calls: dict[str, CallSource] = {}
        self.connected: set[str] = set()
        self.started = 0
        self.errors = 0  # connections closed for bad input
        self.draining = False  # no new calls; running ones (and their reconnects) go on

    def voices(self, offered: list[str]) -> list[str]:
        """Of the voices a connection carries, those analysed (caller first)."""
        wanted = [CALLER, AGENT, MIXED] if self.analyze_agent else [CALLER]
        return [v for v in wanted if v in offered]

    def open(self, call_id: str, protocol: str, rate: int, offered: list[str], **meta) -> CallSource:
        """The call's source: a new one, or the same call resumed after its connection dropped."""
        voices = self.voices(offered)
        if not voices:
            raise ProtocolError(
                f"call {call_id}: it carries no voice this analyzer may analyse ({', '.join(offered) or 'none'}); "
                "the agent's voice needs --analyze-agent"
            )
        if call_id in self.connected:
            raise ProtocolError(f"call {call_id} is already connected")
        source = self.calls.get(call_id)
        if source is not None and not source.finished and source.rate == rate and source.channels == voices:
            source.resume()  # a reconnect, or a new stream of the same call
        else:
            if self.draining:
                raise ProtocolError(f"call {call_id}: this analyzer is draining; send the call to another")
            if self.live >= self.max_calls:
                raise ProtocolError(f"call {call_id}: already {self.max_calls} calls (--max-calls)")
            if source is not None:
                source.end()
            source = CallSource(call_id, protocol, rate, voices, **meta)
            try:
                self.attach(source)
            except MemoryError as exc:  # no room for its ring in shared memory: refused, the others go on
                raise ProtocolError(f"call {call_id}: {exc}") from None
            self.calls[call_id] = source
            self.started += 1
        self.connected.add(call_id)
        return source

    def close(self, source: CallSource, ended: bool, error: str | None = None) -> None:
        """A connection closed: the call ended (stop/hangup/bad input), or may come back."""
        self.connected.discard(source.stream_id)
        if ended:
            source.end(error)
        else:
            source.connection_lost(self.clock())

    def housekeeping(self) -> None:
        """End calls whose reconnect grace ran out; forget finished ones (their worker drops them)."""
        now = self.clock()
        for call_id, source in list(self.calls.items()):
            if source.lost_at is not None and not source.input_ended and now - source.lost_at > self.resume_s:
                source.end("connection lost")
            if source.finished:
                del self.calls[call_id]

    @property
    def live(self) -> int:
        """Calls whose audio is still coming (or may, after a dropped connection)."""
        return sum(not s.input_ended for s in self.calls.values())

    def stats(self) -> dict:
        return {"calls": self.live, "call_errors": self.errors}
