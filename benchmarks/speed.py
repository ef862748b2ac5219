"""Speed benchmark: per-frame streaming encode and decode time of rtcodec, Opus and Lyra v2 on one
thread, side by side.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/speed.py --untrained --quick

Each codec streams the same speech frame by frame; the first WARMUP_FRAMES frames are not counted.
Encode time is `encoder.push` (packet serialisation included), decode time is `Packet.parse` +
`decoder.push`. The real-time factor is the mean time per frame over the 20 ms a frame lasts.
Writes speed.json, speed.md and speed.png (histograms of the per-frame times) into --out.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from common import (
    CODEC_COLORS,
    FRAME_SECONDS,
    LYRA_KBPS,
    Condition,
    add_codec_arguments,
    markdown_table,
    models_line,
    new_figure,
    number,
    select_conditions,
    stream,
    use_one_thread,
    write_results,
)
from rtcodec.audio import default_speech

RATES = {"rtcodec": (3.0, 6.0, 12.0), "opus": (6.0, 16.0), "lyra": LYRA_KBPS}
"""Default bitrates per codec, in kbps."""
WARMUP_FRAMES = 20
DEFAULT_FRAMES = 1000
QUICK_FRAMES = 150
DIRECTIONS = ("encode", "decode")
STATISTICS = ("p50_ms", "p99_ms", "max_ms")
"""The per-frame statistics in the table (speed.json also has the mean)."""
MISSING_WEIGHTS_HINT = "pass --weights DIR, or --untrained (speed does not depend on training)"
LINE_STYLES = ("-", "--", ":", "-.")
"""Histogram line style per rate of one codec."""

Entry = dict[str, Any]
"""JSON-ready result of one condition."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    length = parser.add_mutually_exclusive_group()
    length.add_argument(
        "--frames", type=int, default=DEFAULT_FRAMES, metavar="N",
        help=f"frames timed per condition after {WARMUP_FRAMES} warm-up frames "
        f"(default: {DEFAULT_FRAMES})",
    )
    length.add_argument(
        "--quick", action="store_const", const=QUICK_FRAMES, dest="frames",
        help=f"time {QUICK_FRAMES} frames per condition",
    )
    add_codec_arguments(parser, RATES, allow_untrained=True)
    args = parser.parse_args(argv)
    if args.frames < 1:
        parser.error("--frames must be at least 1")
    return args


@dataclass(frozen=True, eq=False)
class Timing:
    """Per-frame times of one condition, warm-up frames dropped."""

    condition: Condition
    seconds: dict[str, np.ndarray]
    """float64 [frames] per direction ("encode", "decode")."""

    def summary(self) -> Entry:
        """Statistics per direction, and the real-time factor of encode + decode."""
        total = self.seconds["encode"] + self.seconds["decode"]
        return {
            "label": self.condition.label,
            "codec": self.condition.codec,
            "model": self.condition.model,
            "kbps": self.condition.kbps,
            **{direction: statistics(self.seconds[direction]) for direction in DIRECTIONS},
            "rtf": float(total.mean() / FRAME_SECONDS),
        }


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    use_one_thread()
    conditions = select_conditions(args, MISSING_WEIGHTS_HINT)
    speech = default_speech((WARMUP_FRAMES + args.frames) * FRAME_SECONDS)
    timings = []
    for condition in conditions:
        timing = time_condition(condition, speech.audio)
        print(f"{condition.label}: {summary_line(timing.summary())}", flush=True)
        timings.append(timing)
    data = {
        "settings": settings(args, speech.description),
        "conditions": [timing.summary() for timing in timings],
    }
    paths = write_results(args.out, "speed", data, markdown(data), plot(timings))
    print("wrote", *map(str, paths), sep="\n  ")


def time_condition(condition: Condition, audio: np.ndarray) -> Timing:
    """Stream `audio` through `condition` and keep the per-frame times after the warm-up."""
    run = stream(condition, audio)
    times = (run.encode_seconds, run.decode_seconds)
    return Timing(condition, {d: t[WARMUP_FRAMES:] for d, t in zip(DIRECTIONS, times, strict=True)})


def statistics(seconds: np.ndarray) -> Entry:
    """p50 / p99 / max / mean in ms of per-frame `seconds`, and their real-time factor."""
    milliseconds = seconds * 1000
    return {
        "p50_ms": float(np.percentile(milliseconds, 50)),
        "p99_ms": float(np.percentile(milliseconds, 99)),
        "max_ms": float(milliseconds.max()),
        "mean_ms": float(milliseconds.mean()),
        "rtf": float(seconds.mean() / FRAME_SECONDS),
    }


def summary_line(result: Entry) -> str:
    parts = [
        f"{direction} p50 {number(result[direction]['p50_ms'], 3)} ms "
        f"p99 {number(result[direction]['p99_ms'], 3)} ms"
        for direction in DIRECTIONS
    ]
    return ", ".join([*parts, f"RTF {number(result['rtf'], 4)}"])


def settings(args: argparse.Namespace, audio: str) -> Entry:
    """How the times were taken: frames, threads, machine, input."""
    return {
        "frames": args.frames,
        "warmup_frames": WARMUP_FRAMES,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "audio": audio,
    }


def markdown(data: Entry) -> str:
    setup = data["settings"]
    columns = [(direction, statistic) for direction in DIRECTIONS for statistic in STATISTICS]
    header = ["condition", *(f"{d} {s.removesuffix('_ms')}" for d, s in columns), "RTF enc+dec"]
    rows = [
        [
            result["label"],
            *(number(result[direction][statistic], 3) for direction, statistic in columns),
            number(result["rtf"], 4),
        ]
        for result in data["conditions"]
    ]
    return "\n".join([
        "# Speed: per-frame streaming time on one thread\n",
        f"{setup['frames']} frames of 20 ms per condition after {setup['warmup_frames']} warm-up "
        f"frames; torch {setup['torch']} on {setup['torch_threads']} thread(s), "
        f"{setup['cpu_count']} CPUs ({setup['machine']}). Times in ms; the real-time factor is "
        "(encode + decode) time per frame / 20 ms.\n",
        f"Models: {models_line(data['conditions'])}.\n",
        markdown_table(header, rows),
    ])


def plot(timings: list[Timing]) -> Figure:
    """Histograms of per-frame encode and decode times, one line per condition, log time axis."""
    figure, axes = new_figure(len(DIRECTIONS), width=6.0)
    milliseconds = np.concatenate([t.seconds[d] for t in timings for d in DIRECTIONS]) * 1000
    bins = np.geomspace(max(milliseconds.min(), 1e-3), milliseconds.max() * 1.01, 60)
    for axis, direction in zip(axes, DIRECTIONS, strict=True):
        for codec, color in CODEC_COLORS.items():
            of_codec = [timing for timing in timings if timing.condition.codec == codec]
            for style, timing in zip(itertools.cycle(LINE_STYLES), of_codec):
                axis.hist(
                    timing.seconds[direction] * 1000, bins=bins, histtype="step", color=color,
                    linestyle=style, label=timing.condition.label,
                )
        axis.set(xscale="log", xlabel=f"{direction} time per frame (ms)", ylabel="frames")
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    figure.suptitle("Per-frame streaming time, one thread")
    return figure


if __name__ == "__main__":
    main()
