"""How often Silero VAD at 8 kHz agrees with 16 kHz on speech windows.

``python scripts/compare_vad_rates.py [--data DIR] [--clips N]``

Each clip (RAVDESS and TESS, FLAC) is placed between 1 s stretches of faint
noise (-50 dBFS, so the level gate does not decide them), and the stream's
2 s / 0.5 s windows are gated at both rates, exactly as the analyzer does.
Prints chunk and window agreement; the serving default is 8 kHz because it
costs about half as much per chunk.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from streamer.analysis.decode import load_audio
from streamer.analysis.vad import CHUNK, VAD_RATE, SileroVAD, SpeechTracker
from streamer.core.features import window_starts

WINDOW, HOP = 2 * VAD_RATE, VAD_RATE // 2


def calls(data: Path, clips: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    paths = sorted(data.glob("ravdess/**/*.flac")) + sorted(data.glob("tess/**/*.flac"))
    if not paths:
        raise SystemExit(f"no FLAC files under {data}")
    chosen = rng.choice(len(paths), size=min(clips, len(paths)), replace=False)
    out = []
    for i in chosen:
        clip = load_audio(paths[i], VAD_RATE)
        noise = (rng.standard_normal(clip.size + 2 * VAD_RATE) * 10 ** (-50 / 20)).astype(np.float32)
        noise[VAD_RATE : VAD_RATE + clip.size] += clip
        out.append(noise)
    return out


def decisions(audio: list[np.ndarray], rate: int) -> tuple[np.ndarray, np.ndarray]:
    trackers = [SpeechTracker(history_chunks=a.size // CHUNK + 2) for a in audio]
    for tracker, a in zip(trackers, audio):
        tracker.feed(a)
    SileroVAD(rate=rate).score(trackers)
    chunks, windows = [], []
    for tracker, a in zip(trackers, audio):
        n = a.size // CHUNK
        chunks += [tracker.speech_fraction(i * CHUNK, (i + 1) * CHUNK) for i in range(n)]
        windows += [tracker.is_speech(s, s + WINDOW) for s in window_starts(a.size, WINDOW, HOP)]
    return np.array(chunks) > 0.5, np.array(windows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("EMOTION_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--data", type=Path, default=Path(default))
    parser.add_argument("--clips", type=int, default=600)
    args = parser.parse_args()
    audio = calls(args.data, args.clips)
    chunks16, windows16 = decisions(audio, 16000)
    chunks8, windows8 = decisions(audio, 8000)
    print(f"{len(audio)} clips, {chunks16.size} chunks, {windows16.size} windows")
    print(f"speech chunks: 16 kHz {chunks16.mean():.3f}, 8 kHz {chunks8.mean():.3f}")
    print(f"chunk agreement: {np.mean(chunks16 == chunks8):.3f}")
    print(f"speech windows: 16 kHz {windows16.mean():.3f}, 8 kHz {windows8.mean():.3f}")
    print(f"window agreement: {np.mean(windows16 == windows8):.3f}")


if __name__ == "__main__":
    main()
