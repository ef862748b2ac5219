"""Rate-quality benchmark: rtcodec, Opus and Lyra v2 side by side on the dev speech, streaming.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/quality.py --max-files 10 --max-seconds 8 \\
        --lyra-models ../shared/anchors/lyra

Every clip goes frame by frame through each codec's streaming encoder, the packet bytes and its
streaming decoder. Writes quality.json, quality.md and quality.png (PESQ-WB and DNSMOS against the
bitrate measured from the packets) into --out, and the decoded first clips into <out>/clips/.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from common import (
    CODEC_COLORS,
    DEFAULT_DATA,
    DNSMOS_METRICS,
    LYRA_KBPS,
    METRICS,
    Condition,
    Dnsmos,
    StreamRun,
    add_codec_arguments,
    bitrate_kbps,
    dev_files,
    load_dnsmos,
    markdown_table,
    mean,
    models_line,
    new_figure,
    non_intrusive_metrics,
    number,
    positive_int,
    positive_number,
    quality_metrics,
    read_clip,
    select_conditions,
    stream,
    use_one_thread,
    write_results,
)
from rtcodec import metrics
from rtcodec.audio import write_wav
from rtcodec.config import SAMPLE_RATE, STANDARD_KBPS

RATES = {"rtcodec": STANDARD_KBPS, "opus": (6.0, 8.0, 12.0, 16.0, 24.0), "lyra": LYRA_KBPS}
"""Default bitrates per codec, in kbps."""
METRIC_FORMATS = {
    "pesq_wb": ("PESQ-WB", 2),
    "stoi": ("STOI", 3),
    "estoi": ("ESTOI", 3),
    "dnsmos_ovrl": ("DNSMOS OVRL", 2),
    "dnsmos_p808": ("DNSMOS P.808", 2),
}
"""Table heading and decimals of each metric."""
PLOTTED_METRICS = ("pesq_wb", "dnsmos_ovrl", "dnsmos_p808")
BANDS = [f"{low}-{high} Hz" for low, high in metrics.LEVEL_BANDS_HZ]
BALANCE_KBPS = 6.0
"""The spectral-balance plot shows each codec at its rate nearest this."""
BALANCE_RANGE_DB = (-20.0, 5.0)
"""The spectral-balance plot's range: a cut band (Opus at 6 and 8 kbps above 4 kHz) runs off below."""
PITCH_TOLERANCE = 0.01
"""A frame's pitch counts as kept within 1 %."""
LISTENING_FILES = 2
"""Decoded clips are written for the first this many files (the originals stay in --data)."""
MISSING_WEIGHTS_HINT = "pass --weights DIR, or leave rtcodec out: --codecs opus lyra"

Entry = dict[str, Any]
"""JSON-ready result of one file (or one condition)."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, metavar="DIR",
        help=f"speech folder, searched recursively (default: {DEFAULT_DATA})",
    )
    parser.add_argument("--max-files", type=positive_int, metavar="N", help="use at most N files")
    parser.add_argument(
        "--max-seconds", type=positive_number, metavar="S", help="use the first S seconds of each file"
    )
    add_codec_arguments(parser, RATES, allow_untrained=False)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    use_one_thread()
    files = dev_files(args.data, args.max_files)
    conditions = select_conditions(args, MISSING_WEIGHTS_HINT)
    dnsmos = load_dnsmos()
    (args.out / "clips").mkdir(parents=True, exist_ok=True)
    references: list[Entry] = []
    per_condition: dict[str, list[Entry]] = {condition.label: [] for condition in conditions}
    for index, path in enumerate(files):
        listen_dir = args.out / "clips" if index < LISTENING_FILES else None
        name = str(path.relative_to(args.data))
        reference = read_clip(path, args.max_seconds)
        references.append({
            "file": name,
            "seconds": len(reference) / SAMPLE_RATE,
            **non_intrusive_metrics(reference, dnsmos),
        })
        for condition in conditions:
            run = stream(condition, reference)
            save_clip(listen_dir, f"{path.stem}__{condition.slug}", run.audio)
            entry = {"file": name, **file_entry(run, reference, dnsmos)}
            per_condition[condition.label].append(entry)
            counter = f"[{index + 1}/{len(files)}]"
            print(f"{counter} {name} {condition.label}: {score_line(entry)}", flush=True)
    summaries = [summarize(condition, per_condition[condition.label]) for condition in conditions]
    report(args, references, summaries)


def save_clip(listen_dir: Path | None, stem: str, audio: np.ndarray) -> None:
    """Write `audio` as `stem`.wav into `listen_dir`, if given."""
    if listen_dir is not None:
        write_wav(listen_dir / f"{stem}.wav", audio)


def file_entry(run: StreamRun, reference: np.ndarray, dnsmos: Dnsmos | None) -> Entry:
    """Bytes and METRICS of one file through one condition."""
    return {
        "seconds": run.seconds,
        "total_bytes": run.total_bytes,
        "payload_bytes": run.payload_bytes,
        **quality_metrics(reference, run.audio, dnsmos),
        "band_levels": metrics.band_levels(reference, run.audio),
        "pitch": pitch_entry(metrics.pitch_deviations(reference, run.audio)),
    }


def pitch_entry(deviations: np.ndarray) -> Entry:
    """How far the decoded pitch strays in one file's voiced frames: median, in percent (None where
    most frames kept no pitch at all), and the share of frames within PITCH_TOLERANCE; both None for
    a file with no voiced frame."""
    if not len(deviations):
        return {"frames": 0, "median_percent": None, "within_tolerance": None}
    median = float(100 * np.median(deviations))
    return {"frames": len(deviations), "median_percent": median if np.isfinite(median) else None,
            "within_tolerance": float(np.mean(deviations < PITCH_TOLERANCE))}


def score_line(entry: Entry) -> str:
    """The METRICS of one file, for the progress line."""
    cells = zip(METRICS, metric_cells(entry), strict=True)
    return "  ".join(f"{METRIC_FORMATS[metric][0]} {cell}" for metric, cell in cells)


def summarize(condition: Condition, entries: list[Entry]) -> Entry:
    """Means over `entries` (the files of `condition`), and its bitrate measured from bytes."""
    seconds = sum(entry["seconds"] for entry in entries)
    return {
        "label": condition.label,
        "codec": condition.codec,
        "model": condition.model,
        "kbps": condition.kbps,
        "kbps_payload": bitrate_kbps(sum(entry["payload_bytes"] for entry in entries), seconds),
        "kbps_total": bitrate_kbps(sum(entry["total_bytes"] for entry in entries), seconds),
        "metrics": {metric: mean([entry[metric] for entry in entries]) for metric in METRICS},
        "band_levels": {band: mean([entry["band_levels"][band] for entry in entries]) for band in BANDS},
        "pitch": {key: mean([entry["pitch"][key] for entry in entries if entry["pitch"]["frames"]])
                  for key in ("median_percent", "within_tolerance")},
        "files": entries,
    }


def matched_ratios(summaries: list[Entry]) -> list[Entry]:
    """rtcodec / Opus of every metric, each rtcodec condition against the Opus condition nearest
    in measured payload bitrate (the higher Opus one on a tie)."""
    rtcodec = [summary for summary in summaries if summary["codec"] == "rtcodec"]
    opus = [summary for summary in summaries if summary["codec"] == "opus"]
    if not opus:
        return []
    ratios = []
    for ours in rtcodec:
        theirs = min(opus, key=lambda other: (
            abs(other["kbps_payload"] - ours["kbps_payload"]), -other["kbps_payload"]
        ))
        ratios.append({
            "rtcodec": ours["label"],
            "opus": theirs["label"],
            **{
                metric: ratio(ours["metrics"][metric], theirs["metrics"][metric])
                for metric in METRICS
            },
        })
    return ratios


def ratio(ours: float | None, theirs: float | None) -> float | None:
    return None if ours is None or not theirs else ours / theirs


def report(args: argparse.Namespace, references: list[Entry], summaries: list[Entry]) -> None:
    """Write quality.json, quality.md and quality.png, and say where."""
    reference_means = {
        metric: mean([entry[metric] for entry in references]) for metric in DNSMOS_METRICS
    }
    data = {
        "settings": {
            "data": str(args.data),
            "files": len(references),
            "max_seconds": args.max_seconds,
            "seconds": sum(entry["seconds"] for entry in references),
        },
        "reference": {"metrics": reference_means, "files": references},
        "conditions": summaries,
        "ratios": matched_ratios(summaries),
    }
    paths = write_results(args.out, "quality", data, markdown(data), plot(data))
    print("wrote", *map(str, paths), sep="\n  ")


def markdown(data: Entry) -> str:
    settings, reference = data["settings"], data["reference"]["metrics"]
    headings = [METRIC_FORMATS[metric][0] for metric in METRICS]
    condition_rows = [
        [
            summary["label"],
            number(summary["kbps_payload"]),
            number(summary["kbps_total"]),
            *metric_cells(summary["metrics"]),
        ]
        for summary in data["conditions"]
    ]
    ratio_rows = [
        [entry["rtcodec"], entry["opus"], *(number(entry[metric]) for metric in METRICS)]
        for entry in data["ratios"]
    ]
    return "\n".join([
        "# Quality: rtcodec, Opus and Lyra v2, streaming\n",
        f"{settings['files']} file(s) from `{settings['data']}`, "
        f"{settings['seconds']:.1f} s of speech in all"
        + (f" (the first {settings['max_seconds']:g} s of each)" if settings["max_seconds"] else "")
        + ". Means over files. Bitrates are measured from the packets: payload, and total with the "
        "5-byte packet header (2 kbps at 50 packets/s).\n",
        f"Models: {models_line(data['conditions'])}.\n",
        f"Uncoded reference: DNSMOS OVRL {number(reference['dnsmos_ovrl'])}, "
        f"DNSMOS P.808 {number(reference['dnsmos_p808'])}.\n",
        markdown_table(["condition", "payload kbps", "total kbps", *headings], condition_rows),
        "## rtcodec / Opus at matched bitrates\n",
        "Each rtcodec rate against the Opus rate nearest in payload bitrate; above 1 means rtcodec "
        "scores higher.\n",
        markdown_table(["rtcodec", "Opus", *headings], ratio_rows) if ratio_rows else "n/a\n",
        "## Spectral balance\n",
        "Level of the decoded speech against the original in each band, dB, over the loud frames "
        "(`rtcodec.metrics.band_levels`): 0 is faithful; a cut band reads strongly negative.\n",
        markdown_table(["condition", *BANDS], [
            [summary["label"], *(number(summary["band_levels"][band], 1) for band in BANDS)]
            for summary in data["conditions"]
        ]),
        "## Pitch\n",
        "How far the decoded voice's pitch strays from the original's in its clearly voiced 25 ms "
        "frames (`rtcodec.metrics.pitch_deviations`): the median deviation, and the share of frames "
        f"within {100 * PITCH_TOLERANCE:g} %. Means over files.\n",
        markdown_table(["condition", "median deviation %", f"frames within {100 * PITCH_TOLERANCE:g} %"], [
            [summary["label"], number(summary["pitch"]["median_percent"], 2),
             number(summary["pitch"]["within_tolerance"], 2)]
            for summary in data["conditions"]
        ]),
    ])


def metric_cells(values: Entry) -> list[str]:
    """`values` of METRICS formatted for a table, each to its decimals."""
    return [number(values[metric], METRIC_FORMATS[metric][1]) for metric in METRICS]


def plot(data: Entry) -> Figure:
    """One panel per PLOTTED_METRICS: the metric against payload kbps, one line per codec; and the
    spectral balance of each codec's condition nearest BALANCE_KBPS."""
    figure, axes = new_figure(len(PLOTTED_METRICS) + 1)
    plot_balance(axes[-1], data["conditions"])
    for axis, metric in zip(axes, PLOTTED_METRICS, strict=False):
        for codec, color in CODEC_COLORS.items():
            points = sorted(
                (summary["kbps_payload"], summary["metrics"][metric])
                for summary in data["conditions"]
                if summary["codec"] == codec and summary["metrics"][metric] is not None
            )
            if points:
                axis.plot(*zip(*points, strict=True), "o-", color=color, label=codec)
        reference = data["reference"]["metrics"].get(metric)
        if reference is not None:
            axis.axhline(reference, color="gray", linestyle="--", label="uncoded")
        axis.set(xlabel="measured payload kbps", ylabel=METRIC_FORMATS[metric][0])
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(f"Rate-quality, {data['settings']['files']} dev files, streaming")
    return figure


def plot_balance(axis: Any, conditions: list[Entry]) -> None:
    """Band level (dB) against band, one line per codec at its rate nearest BALANCE_KBPS."""
    for codec, color in CODEC_COLORS.items():
        ours = [summary for summary in conditions if summary["codec"] == codec]
        if ours:
            nearest = min(ours, key=lambda summary: abs(summary["kbps"] - BALANCE_KBPS))
            axis.plot(BANDS, [nearest["band_levels"][band] for band in BANDS], "o-", color=color,
                      label=nearest["label"])
    axis.axhline(0.0, color="gray", linestyle="--", label="faithful")
    axis.set(xlabel="band", ylabel="level vs original, dB (loud frames)", ylim=BALANCE_RANGE_DB)
    axis.tick_params(axis="x", labelrotation=30)
    axis.grid(alpha=0.3)
    axis.legend()


if __name__ == "__main__":
    main()
