"""Live capture from a sound device (sounddevice/PortAudio), reopened with backoff when lost."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
import time

from streamer.core.backoff import Backoff
from streamer.core.messages import status_message
from streamer.sources.base import MONO, AnalysisFigures, DeviceError, Source
from streamer.sources.ring import RING_SECONDS, AudioRing

log = logging.getLogger(__name__)


STALL_S = 2.0  # no callback for this long means the device is gone


def pulse_sources() -> list[str]:
    """Names of PulseAudio/PipeWire sources (``pactl list short sources``), if pactl exists."""
    if not shutil.which("pactl"):
        return []
    try:
        out = subprocess.run(["pactl", "list", "short", "sources"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.split("\t")[1] for line in out.stdout.splitlines() if "\t" in line]


def describe_devices() -> str:
    """The input devices, as ``--list-devices`` prints them."""
    import sounddevice as sd

    lines = ["Input devices (use --device NAME or INDEX):"]
    try:
        devices = sd.query_devices()
    except Exception as exc:  # PortAudio missing or broken
        return f"could not list devices: {exc}"
    for index, dev in enumerate(devices):
        if dev["max_input_channels"] > 0:
            lines.append(
                f"  {index:3d}  {dev['name']}  ({dev['max_input_channels']} ch, {dev['default_samplerate']:.0f} Hz)"
            )
    pulse = pulse_sources()
    if pulse:
        lines.append("PulseAudio/PipeWire sources (use --device SOURCE_NAME, via the 'pulse' device):")
        lines += [f"       {name}" for name in pulse]
    return "\n".join(lines)


def resolve_device(spec: str | None) -> tuple[int | str | None, str | None]:
    """``(device for sounddevice, PulseAudio source name or None)``.

    ``spec`` is an index, a substring of a PortAudio device name, or the name
    of a PulseAudio/PipeWire source, captured through PortAudio's ``pulse``
    device with ``PULSE_SOURCE`` set.
    """
    import sounddevice as sd

    if spec is None:
        return None, None
    if spec.isdigit():
        return int(spec), None
    try:
        sd.query_devices(spec, "input")
        return spec, None
    except ValueError:
        pass
    if spec in pulse_sources():
        try:
            sd.query_devices("pulse", "input")
        except ValueError:
            raise DeviceError(f"'{spec}' is a PulseAudio source, but PortAudio has no 'pulse' device") from None
        return "pulse", spec
    raise DeviceError(f"no input device or PulseAudio source matches '{spec}'")


class DeviceSource(Source):
    """Live capture from one input device.

    Parameters
    ----------
    device : str or None
        As for :func:`resolve_device`; None for the system default.
    channels : list of str
        Channel names to capture (their count is opened), or ``["mono"]``.
    preferred_rate : int
        Opened at this rate if the device takes it (the model's: no resampling), else at its default.
    """

    def __init__(self, stream_id: str, device: str | None, channels: list[str], preferred_rate: int = 16000):
        import sounddevice as sd

        self._sd = sd
        self.stream_id = stream_id
        self.device, self.pulse_source = resolve_device(device)
        self.label = device or "default input"
        self.n_channels = 1 if channels == [MONO] else len(channels)
        self.channels = channels
        self.rate = self._pick_rate(preferred_rate)
        self.ring = AudioRing(int(RING_SECONDS * self.rate), self.n_channels)
        self.figures = AnalysisFigures()
        self.state = "running"
        self.error: str | None = None
        self.overflows = 0
        self.reconnects = 0
        self._last_callback = time.monotonic()
        self._stream = None
        self._stop = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, name=f"capture-{stream_id}", daemon=True)

    def _pick_rate(self, preferred: int) -> int:
        """The model rate if the device takes it (PulseAudio resamples), else its default."""
        if self.pulse_source:
            os.environ["PULSE_SOURCE"] = self.pulse_source
        try:
            self._sd.check_input_settings(self.device, channels=self.n_channels, samplerate=preferred)
            return preferred
        except Exception:
            try:
                info = self._sd.query_devices(self.device, "input")
            except Exception as exc:
                raise DeviceError(f"cannot open input device '{self.label}': {exc}") from None
            if info["max_input_channels"] < self.n_channels:
                have, want = info["max_input_channels"], self.n_channels
                raise DeviceError(f"device '{self.label}' has {have} input channels, {want} requested") from None
            return int(info["default_samplerate"])

    def _callback(self, indata, frames, time_info, status) -> None:
        # Runs on PortAudio's thread: copy and count only; never block or raise.
        if status.input_overflow:
            self.overflows += 1
        self.ring.write(indata)
        self._last_callback = time.monotonic()

    def _open(self) -> None:
        if self.pulse_source:
            os.environ["PULSE_SOURCE"] = self.pulse_source
        try:
            stream = self._sd.InputStream(
                device=self.device,
                channels=self.n_channels,
                samplerate=self.rate,
                dtype="float32",
                blocksize=int(self.rate * 0.05),
                callback=self._callback,
            )
            stream.start()
        except Exception as exc:
            raise DeviceError(f"cannot open input device '{self.label}': {exc}") from None
        self._stream = stream
        self._last_callback = time.monotonic()

    def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.abort()
                stream.close()
            except Exception:
                pass

    def start(self) -> None:
        """Open the device now (errors raise DeviceError), then watch it."""
        self._open()
        self._supervisor.start()

    def _supervise(self) -> None:
        backoff = Backoff()
        while not self._stop.wait(0.5):
            stream = self._stream
            lost = stream is None or not stream.active or time.monotonic() - self._last_callback > STALL_S
            if not lost:
                backoff.reset()
                continue
            if self.state == "running":
                log.warning("stream %s: input device '%s' lost; reconnecting", self.stream_id, self.label)
                self.state, self.error = "reconnecting", "input device lost"
            self._close()
            if self._stop.wait(backoff.next_delay()):
                break
            try:
                self._open()
                self.state, self.error = "running", None
                self.reconnects += 1
                log.warning("stream %s: input device '%s' is back", self.stream_id, self.label)
            except DeviceError as exc:
                self.error = str(exc)

    def stop(self) -> None:
        self._stop.set()
        self._close()
        self.state = "stopped"

    def status(self) -> dict:
        return status_message(
            self.stream_id,
            self.label,
            self.state,
            overruns=self.overflows + self.ring.overruns,
            windows=self.figures.windows,
            lost_s=round(self.ring.overrun_samples / self.rate, 3),
            channels=self.channels,
            latency_ms=self.figures.latency_ms,
            reconnects=self.reconnects,
            error=self.error,
        )
