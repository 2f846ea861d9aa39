"""Soak test: ``python -m tools.soak --minutes N --streams M [--analysis KIND] [--out DIR]`` (not in CI).

Runs the capacity server of ``tools.bench`` (the product's Application with
simulated sound cards, to a websocket client) with M real-time streams for
N minutes and reports per minute: RSS (summed over the analyzer and its
worker processes), p95 latency (window end to its message at the client),
windows, and what was lost (ring overruns, dropped messages, failed
batches). At the end: the RSS slope in MB/h (a line fitted over the minutes
after the first, which is warm-up), the totals, ``soak.json`` and
``soak.png`` (RSS, p95 and losses per minute).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import numpy as np

from tools.harness import (
    P95_TARGET_MS,
    TICK_S,
    BenchError,
    expected_windows,
    start_stream_server,
    stream_name,
    stream_ticks,
    watch_capacity_run,
)

RAMP_S = 5.0


async def soak(minutes: float, streams: int, log, analysis: str | None = None) -> dict:
    seconds = minutes * 60
    proc, ready = await start_stream_server(streams, seconds, RAMP_S, report_s=60.0, analysis=analysis)
    log(f"  analysis: {ready['analysis']} x{ready['workers']}")
    latencies: dict[int, list[float]] = {}  # minute -> latencies of messages received in it
    counts: dict[str, int] = {}
    rows: list[dict] = []
    final: dict = {}

    async def read_reports() -> None:
        nonlocal final
        previous = {"overruns": 0, "dropped": 0, "errors": 0, "windows_scored": 0}
        while True:
            line = await proc.stdout.readline()
            if not line:
                return
            data = json.loads(line)
            if "report" not in data:
                final = data
                return
            report = data["report"]
            minute = len(rows)
            got = latencies.get(minute, [])
            row = {
                "minute": minute + 1,
                "rss_mb": report["rss_mb"],
                "p95_latency_ms": round(float(np.percentile(got, 95)), 1) if got else None,
                "windows": report["windows_scored"] - previous["windows_scored"],
                "overruns": report["overruns"] - previous["overruns"],
                "dropped": report["dropped"] - previous["dropped"],
                "errors": report["errors"] - previous["errors"],
            }
            previous = report
            rows.append(row)
            log(
                f"  minute {row['minute']:3d}: RSS {row['rss_mb']} MB, p95 {row['p95_latency_ms']} ms, "
                f"{row['windows']} windows, {row['overruns']} overruns, {row['dropped']} dropped, "
                f"{row['errors']} errors"
            )

    def record(message: dict, latency_ms: float, since_start_s: float) -> None:
        latencies.setdefault(int(since_start_s // 60), []).append(latency_ms)
        counts[message["stream"]] = counts.get(message["stream"], 0) + 1

    await watch_capacity_run(proc, ready, RAMP_S, record, read_reports)
    if not final:
        raise BenchError("the capacity server exited before its counters")
    expected = expected_windows(stream_ticks(seconds) * TICK_S, ready["window_s"], ready["hop_s"])
    missing = sum(max(0, expected - counts.get(stream_name(i), 0)) for i in range(streams))
    every = [v for values in latencies.values() for v in values]
    return {
        "minutes": minutes,
        "streams": streams,
        "analysis": ready["analysis"],
        "workers": ready["workers"],
        "per_minute": rows,
        **rss_slopes(rows),
        "rss_mb_first_last": [rows[0]["rss_mb"], rows[-1]["rss_mb"]] if rows else None,
        "p95_latency_ms": round(float(np.percentile(every, 95)), 1) if every else None,
        "worst_minute_p95_ms": max((r["p95_latency_ms"] or 0) for r in rows) if rows else None,
        "windows_received": len(every),
        "missing_windows": missing,
        "overruns": final.get("overruns"),
        "dropped": final.get("dropped"),
        "errors": final.get("errors"),
        "rss_mb_end": final.get("rss_mb"),
        "pss_mb_end": final.get("pss_mb"),
    }


def rss_slopes(rows: list[dict]) -> dict:
    """RSS growth in MB/h: fitted over every minute after the first (warm-up), and over the second
    half alone. The hub's bounded score history (5 min per channel) fills during the first minutes,
    so a leak shows as a second-half slope well above zero."""

    def slope(part: list[dict]) -> float | None:
        if len(part) < 2:
            return None
        x, y = np.array([(r["minute"], r["rss_mb"]) for r in part], dtype=float).T
        return round(float(np.polyfit(x, y, 1)[0]) * 60, 1)  # MB per minute -> MB per hour

    return {"rss_slope_mb_per_h": slope(rows[1:]), "rss_slope_mb_per_h_second_half": slope(rows[len(rows) // 2 :])}


def chart(result: dict, path: Path) -> None:
    """RSS, p95 latency and losses per minute as a PNG (matplotlib, a dev dependency)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["per_minute"]
    minutes = [r["minute"] for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    axes[0].plot(minutes, [r["rss_mb"] for r in rows], marker=".")
    axes[0].set_ylabel("RSS, with workers (MB)")
    axes[0].set_ylim(0, max(r["rss_mb"] for r in rows) * 1.2)  # from zero: a slope is not exaggerated
    slope = result["rss_slope_mb_per_h_second_half"]
    axes[0].set_title(
        f"Soak: {result['streams']} real-time streams for {result['minutes']:g} min"
        + (f" — RSS slope over the second half {slope} MB/h" if slope is not None else "")
    )
    axes[1].plot(minutes, [r["p95_latency_ms"] for r in rows], marker=".", color="tab:orange")
    axes[1].axhline(P95_TARGET_MS, color="grey", linestyle="--", linewidth=1)
    axes[1].set_ylabel("p95 latency (ms)")
    axes[1].set_ylim(0, None)
    width = 0.4
    axes[2].bar([m - width / 2 for m in minutes], [r["overruns"] for r in rows], width, label="overruns")
    axes[2].bar(
        [m + width / 2 for m in minutes], [r["dropped"] + r["errors"] for r in rows], width, label="dropped + errors"
    )
    axes[2].set_ylabel("lost per minute")
    axes[2].set_ylim(0, max(1, *(max(r["overruns"], r["dropped"] + r["errors"]) for r in rows)) * 1.2)
    axes[2].set_xlabel("minute")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("soak-results"), help="folder for soak.json and soak.png")
    parser.add_argument(
        "--analysis", choices=["threads", "processes"], help="the analyzer's --analysis (default: the product's choice)"
    )
    args = parser.parse_args(argv)
    if args.minutes < 2 or args.streams < 1:
        parser.error("--minutes must be at least 2 and --streams at least 1")

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    log(f"soak: {args.streams} streams for {args.minutes:g} min …")
    try:
        result = asyncio.run(soak(args.minutes, args.streams, log, args.analysis))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(result, indent=1) + "\n")
    chart(result, args.out / "soak.png")
    summary = {k: v for k, v in result.items() if k != "per_minute"}
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
