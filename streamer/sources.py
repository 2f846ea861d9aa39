"""Capture adapters: a sound device (sounddevice/PortAudio) or audio files.

Each source owns a ring buffer that the worker drains. The device callback
only copies frames into the ring and notes overflow flags; a supervisor
thread reopens a lost device with backoff while the process stays up.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import soundfile as sf

from streamer.features import FeatureConfig
from streamer.messages import status_message
from streamer.pipeline import MONO, Source, StreamAnalyzer
from streamer.ringbuffer import RING_SECONDS, AudioRing

log = logging.getLogger(__name__)
STALL_S = 2.0  # no callback for this long means the device is gone


class DeviceError(RuntimeError):
    """A device that cannot be found or opened; the message is user-facing."""


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
    """

    def __init__(self, stream_id: str, device: str | None, channels: list[str], config: FeatureConfig, **analyzer_kw):
        import sounddevice as sd

        self._sd = sd
        self.stream_id = stream_id
        self.device, self.pulse_source = resolve_device(device)
        self.label = device or "default input"
        self.n_channels = 1 if channels == [MONO] else len(channels)
        self.rate = self._pick_rate(config.sample_rate)
        self.ring = AudioRing(int(RING_SECONDS * self.rate), self.n_channels)
        self.analyzer = StreamAnalyzer(stream_id, channels, self.rate, config, **analyzer_kw)
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
        backoff = 1.0
        while not self._stop.wait(0.5):
            stream = self._stream
            lost = stream is None or not stream.active or time.monotonic() - self._last_callback > STALL_S
            if not lost:
                backoff = 1.0
                continue
            if self.state == "running":
                log.warning("stream %s: input device '%s' lost; reconnecting", self.stream_id, self.label)
                self.state, self.error = "reconnecting", "input device lost"
            self._close()
            if self._stop.wait(backoff):
                break
            backoff = min(backoff * 2, 30.0)
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
            windows=self.analyzer.windows_done,
            lost_s=round(self.ring.overrun_samples / self.rate, 3),
            channels=self.analyzer.channel_names,
            latency_ms=self.analyzer.mean_latency_ms,
            reconnects=self.reconnects,
            error=self.error,
        )


class FileSource(Source):
    """A file through the live path, as a sound card would deliver it.

    It does not pace itself: a ``FilePacer`` (one thread for every file)
    calls ``feed_until`` with the seconds of audio that are due, or
    ``feed_fast`` to fill the ring as fast as the analysis takes it.
    """

    BLOCK_S = 0.05  # read and delivered in 50 ms blocks, as a device callback would

    def __init__(
        self, path: Path, stream_id: str, channels: list[str], config: FeatureConfig, fast: bool = False, **analyzer_kw
    ):
        self.path = Path(path)
        self.stream_id = stream_id
        try:
            info = sf.info(str(self.path))
        except Exception as exc:
            raise DeviceError(f"cannot read '{self.path}': {str(exc).splitlines()[0]}") from None
        self.n_channels = 1 if channels == [MONO] else len(channels)
        if info.channels < self.n_channels:
            raise DeviceError(f"'{self.path}' has {info.channels} channels, {self.n_channels} requested")
        self.rate = info.samplerate
        self.fast = fast
        self.ring = AudioRing(int(RING_SECONDS * self.rate), self.n_channels)
        self.analyzer = StreamAnalyzer(stream_id, channels, self.rate, config, **analyzer_kw)
        self.state = "running"
        self.error: str | None = None
        self.position = 0  # frames delivered to the ring
        self._block = max(1, int(self.rate * self.BLOCK_S))
        self._file: sf.SoundFile | None = None

    def start(self) -> None:
        """Open the file; the pacer delivers it."""
        try:
            self._file = sf.SoundFile(str(self.path))
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        self.error = f"reading failed: {str(exc).splitlines()[0]}"
        log.warning("stream %s: %s", self.stream_id, self.error)
        self._finish_reading()

    def _finish_reading(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self.input_ended = True

    @property
    def reading(self) -> bool:
        return not self.input_ended

    def _deliver_block(self) -> bool:
        """Read one block into the ring; False at the end of the file."""
        frames = self._file.read(self._block, dtype="float32", always_2d=True)
        if not len(frames):
            self._finish_reading()
            return False
        if self.analyzer.channel_names == [MONO]:
            frames = frames.mean(axis=1, keepdims=True)  # downmix every channel
        else:
            frames = frames[:, : self.n_channels]  # named channels: the first N
        self.ring.write(frames)  # real time: if analysis is behind, the oldest is lost and counted
        self.position += len(frames)
        return True

    def feed_until(self, seconds: float) -> None:
        """Deliver the blocks due by ``seconds`` of stream time."""
        try:
            while self.reading and self.position < seconds * self.rate and self._deliver_block():
                pass
        except Exception as exc:
            self._fail(exc)

    def feed_fast(self, max_blocks: int = 4) -> bool:
        """Deliver up to ``max_blocks`` while the ring has room; True if anything was delivered."""
        delivered = False
        try:
            for _ in range(max_blocks):
                room = self.ring.capacity - self.ring.available
                if not self.reading or room < self._block or not self._deliver_block():
                    break
                delivered = True
        except Exception as exc:
            self._fail(exc)
        return delivered

    def stop(self) -> None:
        if self.reading:
            self._finish_reading()
        if self.state == "running":
            self.state = "stopped"

    def status(self) -> dict:
        if self.state == "running" and self.finished:
            self.state = "finished"
        return status_message(
            self.stream_id,
            str(self.path),
            self.state,
            overruns=self.ring.overruns,
            windows=self.analyzer.windows_done,
            channels=self.analyzer.channel_names,
            latency_ms=self.analyzer.mean_latency_ms,
            error=self.error,
        )


class FilePacer:
    """One thread that delivers every file source's audio: in real time, or with ``fast`` as fast
    as the analysis takes it.

    One clock instead of a thread per file: 300 reader threads each waking 20
    times a second fell three times behind real time (issue 13), queueing for
    the GIL with the analysis. A late tick catches up by position, so stream
    time stays true.
    """

    def __init__(self, sources: list[FileSource], fast: bool = False) -> None:
        self.sources = sources
        self.fast = fast
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="file-pacer", daemon=True)

    def start(self) -> None:
        for source in self.sources:
            source.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(1.0)  # not mid-read when the files close
        for source in self.sources:
            source.stop()

    def _run(self) -> None:
        started = time.monotonic()
        ticks = 0
        while not self._stop.is_set():
            reading = [s for s in self.sources if s.reading]
            if not reading:
                return
            if self.fast:
                if not any([s.feed_fast() for s in reading]):
                    self._stop.wait(0.005)  # every ring is full: let the analysis catch up
                continue
            ticks += 1
            due = ticks * FileSource.BLOCK_S
            # A block is delivered once its last sample is due, as a sound card would.
            if self._stop.wait(max(0.0, started + due - time.monotonic())):
                return
            for source in reading:
                source.feed_until(due)
