"""Loss benchmark: speech quality against packet loss, rtcodec (concealment, redundancy) and Opus
(PLC, in-band FEC), through the network simulator.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/loss.py --weights runs/codec/best \\
        --max-files 4 --max-seconds 6

Every clip goes frame by frame through each codec's streaming encoder, then `rtcodec.netsim`'s
packet path (`simulate`): the packet bytes cross a lossy network, `Packet.parse`, a fixed 60 ms
playout and the streaming decoder, which conceals a lost frame or rebuilds it from the next
packet (rtcodec redundancy, Opus FEC). A fixed playout keeps the received audio in step with the
sent audio, so that PESQ and STOI compare like with like; the network has no delay or jitter
here, only loss. At each loss point every condition sees exactly the same lost packets (one seed
per file and point). Loss patterns: independent ("random") and Gilbert-Elliott bursts of mean 2
and 4 packets ("ge2", "ge4"), at the same average loss.

Writes loss.json, loss.md and loss.png (PESQ-WB, STOI and PLCMOS against the loss, one column
per pattern) into --out, and the received first clip at 10 % ge2 into <out>/clips/.
"""

from __future__ import annotations

import argparse
import functools
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import opuslib.api.info
from matplotlib.figure import Figure

from common import (
    CODEC_COLORS,
    DEFAULT_DATA,
    DEFAULT_OUT,
    Plcmos,
    bitrate_kbps,
    dev_files,
    load_plcmos,
    load_rtcodec,
    markdown_table,
    mean,
    new_figure,
    non_negative_int,
    non_negative_number,
    number,
    positive_int,
    positive_number,
    read_clip,
    use_one_thread,
    write_results,
)
from rtcodec import metrics
from rtcodec.audio import frames, write_wav
from rtcodec.bitstream import HEADER_BYTES
from rtcodec.config import FRAME_RATE, SAMPLE_RATE
from rtcodec.netsim import (
    Bernoulli,
    FixedPlayout,
    GilbertElliott,
    Network,
    NoLoss,
    SimulationStats,
    simulate,
)
from rtcodec.opus import OpusStreamDecoder, OpusStreamEncoder
from rtcodec.protocols import StreamDecoder, StreamEncoder

LOSSES: Final = (0.0, 5.0, 10.0, 20.0, 30.0)
"""Average packet loss of each point, in percent."""
PATTERNS: Final = {"random": None, "ge2": 2.0, "ge4": 4.0}
"""Loss patterns: independent losses, or Gilbert-Elliott with this mean burst length."""
PATTERN_TITLES: Final = {
    "random": "random loss",
    "ge2": "bursty loss (Gilbert-Elliott, mean burst 2)",
    "ge4": "bursty loss (Gilbert-Elliott, mean burst 4)",
}
RTCODEC_KBPS: Final = 6.0
REDUNDANCY: Final = (1, 2)
REDUNDANT_CODEBOOKS: Final = 3
MAX_CODES_KBPS: Final = 9.0
"""rtcodec with redundancy must stay within this many kbps of codes (main + redundant)."""
OPUS_KBPS: Final = (9.0, 16.0, 24.0)
PLAYOUT_DELAY_MS: Final = 60.0
METRICS: Final = ("pesq_wb", "stoi", "plcmos")
METRIC_FORMATS: Final = {"pesq_wb": ("PESQ-WB", 2), "stoi": ("STOI", 3), "plcmos": ("PLCMOS", 2)}
TARGET_POINT: Final = ("ge2", 10.0)
TARGET_OPUS: Final = "opus 16 kbps + FEC"
MISSING_WEIGHTS_HINT: Final = "pass --weights DIR (e.g. runs/codec/best), or --codecs opus"

Entry = dict[str, Any]


@dataclass(frozen=True)
class LossCondition:
    """One codec set-up. `new_encoder(loss_percent)` builds a fresh encoder for a network of that
    average loss (only Opus FEC uses it, as its packet_loss_perc)."""

    label: str
    codec: str
    kbps: float
    model: str
    new_encoder: Callable[[float], StreamEncoder]
    new_decoder: Callable[[], StreamDecoder]
    codes_kbps: float | None = None
    """rtcodec: kbps of codes, redundancy included, headers and counts excluded."""
    depends_on_loss: bool = False

    @property
    def slug(self) -> str:
        return self.label.replace(" + ", "_").replace(" ", "_")


@dataclass(frozen=True)
class Point:
    """One network condition: a loss pattern at an average loss."""

    pattern: str
    loss: float
    """Percent."""

    @property
    def label(self) -> str:
        return "no loss" if self.loss == 0 else f"{self.pattern} {self.loss:g}%"

    def network(self) -> Network:
        rate, burst = self.loss / 100, PATTERNS[self.pattern]
        if rate == 0:
            return Network(loss=NoLoss())
        return Network(loss=Bernoulli(rate) if burst is None else GilbertElliott(rate, burst))


class ReplayEncoder:
    """Gives back packets made earlier by the same encoder on the same audio, one per push, so
    that one encoding serves every loss point (encoders are deterministic)."""

    def __init__(self, name: str, kbps: float, packets: list[bytes]) -> None:
        self.name, self.kbps = name, kbps
        self._packets = iter(packets)

    def push(self, frame: np.ndarray) -> bytes:
        return next(self._packets)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, metavar="DIR",
                        help=f"speech folder, searched recursively (default: {DEFAULT_DATA})")
    parser.add_argument("--max-files", type=positive_int, metavar="N", help="use at most N files")
    parser.add_argument("--max-seconds", type=positive_number, metavar="S",
                        help="use the first S seconds of each file")
    parser.add_argument("--codecs", nargs="+", choices=("rtcodec", "opus"),
                        default=["rtcodec", "opus"])
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--weights", type=Path, metavar="DIR",
                         help="rtcodec weights folder (model.safetensors + config.json)")
    weights.add_argument("--untrained", action="store_true",
                         help="random rtcodec weights of the default size (for timing the run)")
    parser.add_argument("--losses", nargs="+", type=float, default=list(LOSSES), metavar="PCT",
                        help="average losses in percent (default: "
                             f"{' '.join(map('{:g}'.format, LOSSES))})")
    parser.add_argument("--patterns", nargs="+", choices=tuple(PATTERNS), default=list(PATTERNS),
                        help="loss patterns (default: all)")
    parser.add_argument("--points", nargs="+", type=_point, metavar="PATTERN:PCT",
                        help="run only these points, e.g. ge2:10 random:20 (instead of every "
                             "pattern at every loss)")
    parser.add_argument("--redundancy", nargs="+", type=int, default=list(REDUNDANCY),
                        metavar="N",
                        help="rtcodec redundant frames per packet, besides none (default: 1 2)")
    parser.add_argument("--opus-kbps", nargs="+", type=float, default=list(OPUS_KBPS),
                        metavar="KBPS", help="Opus bitrates (default: 9 16 24)")
    parser.add_argument("--playout-delay", type=non_negative_number, default=PLAYOUT_DELAY_MS, metavar="MS",
                        help=f"fixed playout delay (default: {PLAYOUT_DELAY_MS:g})")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the loss patterns")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                        help=f"results folder (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    for loss in args.losses:
        if not 0 <= loss < 100:
            parser.error(f"a loss must be a percentage in [0, 100), got {loss:g}")
    return args


def _point(text: str) -> Point:
    """"ge2:10" -> Point("ge2", 10.0), for --points."""
    pattern, _, loss = text.partition(":")
    try:
        value = float(loss)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected PATTERN:PCT such as ge2:10, got '{text}'") \
            from None
    if pattern not in PATTERNS or not 0 <= value < 100:
        raise argparse.ArgumentTypeError(
            f"expected PATTERN:PCT with PATTERN in {', '.join(PATTERNS)} and 0 <= PCT < 100, "
            f"got '{text}'"
        )
    return Point(pattern if value else "random", value)


def points(losses: Sequence[float], patterns: Sequence[str]) -> list[Point]:
    """Every pattern at every loss; the lossless point once."""
    chosen = [Point("random", 0.0)] if 0 in losses else []
    for pattern in patterns:
        chosen += [Point(pattern, loss) for loss in sorted(set(losses)) if loss > 0]
    return chosen


def conditions(args: argparse.Namespace) -> list[LossCondition]:
    chosen: list[LossCondition] = []
    if "rtcodec" in args.codecs:
        codec = load_rtcodec(args.weights, args.untrained, MISSING_WEIGHTS_HINT)
        for redundancy in (0, *args.redundancy):
            encoder = functools.partial(
                codec.stream_encoder, RTCODEC_KBPS, redundancy, REDUNDANT_CODEBOOKS
            )
            codes = encoder().total_kbps
            if codes > MAX_CODES_KBPS:
                raise SystemExit(f"error: redundancy {redundancy} takes {codes:g} kbps of codes, "
                                 f"more than {MAX_CODES_KBPS:g}")
            suffix = f" + redundancy {redundancy}" if redundancy else " concealment"
            chosen.append(LossCondition(
                f"rtcodec {RTCODEC_KBPS:g} kbps{suffix}", "rtcodec", RTCODEC_KBPS, codec.model_id,
                lambda loss, encoder=encoder: encoder(), codec.stream_decoder, codes_kbps=codes,
            ))
    if "opus" in args.codecs:
        version = opuslib.api.info.get_version_string().decode()
        for kbps in args.opus_kbps:
            chosen.append(LossCondition(
                f"opus {kbps:g} kbps PLC", "opus", kbps, version,
                lambda loss, kbps=kbps: OpusStreamEncoder(kbps), OpusStreamDecoder,
            ))
        for kbps in args.opus_kbps:
            chosen.append(LossCondition(
                f"opus {kbps:g} kbps + FEC", "opus", kbps, version,
                lambda loss, kbps=kbps: OpusStreamEncoder(
                    kbps, fec=True, packet_loss_perc=min(round(loss), 100)
                ),
                OpusStreamDecoder, depends_on_loss=True,
            ))
    if not chosen:
        raise SystemExit("error: no codec left to run")
    return chosen


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    use_one_thread()
    files = dev_files(args.data, args.max_files)
    try:
        chosen = conditions(args)
        for condition in chosen:  # each codec must take its bitrate and settings before the work
            condition.new_encoder(0.0)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    grid = list(dict.fromkeys(args.points)) if args.points else points(args.losses, args.patterns)
    plcmos = load_plcmos()
    playout = FixedPlayout(args.playout_delay)
    (args.out / "clips").mkdir(parents=True, exist_ok=True)
    results: dict[tuple[str, str], list[Entry]] = {
        (condition.label, point.label): [] for condition in chosen for point in grid
    }
    references: list[Entry] = []
    started = time.monotonic()
    for file_index, path in enumerate(files):
        name = str(path.relative_to(args.data))
        reference = read_clip(path, args.max_seconds)
        references.append({"file": name, "seconds": len(reference) / SAMPLE_RATE,
                           "plcmos": plcmos(reference) if plcmos else None})
        encoded: dict[tuple[str, float | None], list[bytes]] = {}
        for point in grid:
            seed = zlib.crc32(f"{args.seed}|{name}|{point.label}".encode())
            cells = []
            for condition in chosen:
                key = (condition.label, point.loss if condition.depends_on_loss else None)
                if key not in encoded:
                    encoder = condition.new_encoder(point.loss)
                    encoded[key] = _encode(encoder, reference)
                replay = ReplayEncoder(condition.codec, condition.kbps, encoded[key])
                received, stats = simulate(reference, replay, condition.new_decoder(),
                                           point.network(), playout=playout, seed=seed)
                entry = {"file": name, **stats_entry(stats),
                         **score(reference, received, plcmos)}
                results[(condition.label, point.label)].append(entry)
                cells.append(f"{condition.label} {number(entry['pesq_wb'])}")
                if file_index == 0 and (point.pattern, point.loss) == TARGET_POINT:
                    write_wav(args.out / "clips" / f"{path.stem}__{point.pattern}_{point.loss:g}__"
                              f"{condition.slug}.wav", received)
            elapsed = time.monotonic() - started
            print(f"[{file_index + 1}/{len(files)}] {name} {point.label} ({elapsed:.0f} s): "
                  f"PESQ-WB {'; '.join(cells)}", flush=True)
    summaries = [summarize(condition, grid, results) for condition in chosen]
    report(args, references, grid, summaries)


def _encode(encoder: StreamEncoder, audio: np.ndarray) -> list[bytes]:
    return [encoder.push(frame) for frame in frames(audio)]


def stats_entry(stats: SimulationStats) -> Entry:
    return {
        "frames": stats.frames_sent,
        "total_bytes": stats.bytes_sent,
        "payload_bytes": stats.bytes_sent - HEADER_BYTES * stats.frames_sent,
        "lost": stats.lost,
        "concealed": stats.concealed,
        "recovered": stats.recovered,
    }


def score(reference: np.ndarray, received: np.ndarray, plcmos: Plcmos | None) -> Entry:
    """PESQ-WB and STOI against `reference` (aligned by rtcodec.metrics), PLCMOS of `received`."""
    clip = received[: len(reference)]
    return {
        "pesq_wb": _safely(metrics.pesq_wb, reference, received),
        "stoi": _safely(metrics.stoi, reference, received),
        "plcmos": plcmos(clip) if plcmos else None,
    }


def _safely(metric: Callable[[np.ndarray, np.ndarray], float], *audio: np.ndarray) -> float | None:
    """The metric, or None (said on stdout) when it fails, e.g. PESQ finding no speech."""
    try:
        return metric(*audio)
    except Exception as error:  # pesq raises its own exception types
        print(f"  {metric.__name__} failed: {error}")
        return None


def summarize(
    condition: LossCondition, grid: list[Point], results: dict[tuple[str, str], list[Entry]]
) -> Entry:
    summaries = [_point_summary(point, results[(condition.label, point.label)]) for point in grid]
    return {
        "label": condition.label,
        "codec": condition.codec,
        "kbps": condition.kbps,
        "codes_kbps": condition.codes_kbps,
        "kbps_payload": mean([point["kbps_payload"] for point in summaries]),
        "kbps_total": mean([point["kbps_total"] for point in summaries]),
        "model": condition.model,
        "points": summaries,
    }


def _point_summary(point: Point, entries: list[Entry]) -> Entry:
    frames = sum(entry["frames"] for entry in entries)
    seconds = frames / FRAME_RATE
    lost = sum(entry["lost"] for entry in entries)
    concealed = sum(entry["concealed"] for entry in entries)
    return {
        "pattern": point.pattern,
        "loss": point.loss,
        "label": point.label,
        "measured_loss": lost / frames if frames else None,
        "kbps_payload": bitrate_kbps(sum(entry["payload_bytes"] for entry in entries), seconds),
        "kbps_total": bitrate_kbps(sum(entry["total_bytes"] for entry in entries), seconds),
        "concealed": concealed,
        "recovered": sum(entry["recovered"] for entry in entries),
        "metrics": {metric: mean([entry[metric] for entry in entries]) for metric in METRICS},
        "files": entries,
    }


def target_check(summaries: list[Entry]) -> Entry | None:
    """At TARGET_POINT: does rtcodec 6 kbps + redundancy (<= 9 kbps of codes) score at least
    Opus 16 kbps + FEC on PESQ-WB and PLCMOS? One verdict per redundancy setting."""
    def at_target(summary: Entry) -> Entry | None:
        return next((point for point in summary["points"]
                     if (point["pattern"], point["loss"]) == TARGET_POINT), None)

    opus = next((summary for summary in summaries if summary["label"] == TARGET_OPUS), None)
    theirs = at_target(opus) if opus else None
    if theirs is None:
        return None
    verdicts = []
    for summary in summaries:
        ours = at_target(summary)
        if summary["codec"] != "rtcodec" or "redundancy" not in summary["label"] or ours is None:
            continue
        comparison = {
            metric: {"rtcodec": ours["metrics"][metric], "opus": theirs["metrics"][metric]}
            for metric in ("pesq_wb", "plcmos")
        }
        met = all(values["rtcodec"] is not None and values["opus"] is not None
                  and values["rtcodec"] >= values["opus"] for values in comparison.values())
        verdicts.append({"rtcodec": summary["label"], "codes_kbps": summary["codes_kbps"],
                         "kbps_payload": ours["kbps_payload"],
                         "opus_kbps_payload": theirs["kbps_payload"],
                         "metrics": comparison, "met": met})
    return {"point": Point(*TARGET_POINT).label, "opus": TARGET_OPUS, "verdicts": verdicts}


def report(
    args: argparse.Namespace, references: list[Entry], grid: list[Point], summaries: list[Entry]
) -> None:
    data = {
        "settings": {
            "data": str(args.data),
            "files": len(references),
            "max_seconds": args.max_seconds,
            "seconds": sum(entry["seconds"] for entry in references),
            "playout_delay_ms": args.playout_delay,
            "seed": args.seed,
            "points": [point.label for point in grid],
        },
        "reference": {
            "plcmos": mean([entry["plcmos"] for entry in references]),
            "files": references,
        },
        "conditions": summaries,
        "target": target_check(summaries),
    }
    paths = write_results(args.out, "loss", data, markdown(data), plot(data))
    print("wrote", *map(str, paths), sep="\n  ")


def markdown(data: Entry) -> str:
    settings = data["settings"]
    models = {summary["codec"]: summary["model"] for summary in data["conditions"]}
    lines = [
        "# Quality under packet loss: rtcodec and Opus\n",
        f"{settings['files']} file(s) from `{settings['data']}`, {settings['seconds']:.1f} s of "
        "speech in all" + (f" (the first {settings['max_seconds']:g} s of each)"
                           if settings["max_seconds"] else "")
        + f". Fixed {settings['playout_delay_ms']:g} ms playout, loss only (no delay or jitter); "
        "every condition sees the same lost packets at each point. Means over files.\n",
        "Models: " + ", ".join(f"{codec} `{model}`" for codec, model in models.items()) + ".\n",
        f"Uncoded reference: PLCMOS {number(data['reference']['plcmos'])}.\n",
        "## Bitrates\n",
        "Codes: rtcodec's codebooks including the redundant ones (10 bits each), nothing else. "
        "Payload and total are measured from the packets sent, averaged over the loss points: "
        f"payload leaves out the {HEADER_BYTES}-byte header, total includes it. rtcodec's "
        "payload also counts one byte per redundant frame (its codebook count) and the padding of "
        "each code block to whole bytes. Opus spends its FEC bits within its bitrate.\n",
        markdown_table(["condition", "codes kbps", "payload kbps", "total kbps"], [
            [summary["label"], number(summary["codes_kbps"]) if summary["codes_kbps"] else "-",
             number(summary["kbps_payload"]), number(summary["kbps_total"])]
            for summary in data["conditions"]
        ]),
    ]
    lines += _target_lines(data["target"])
    lines += _recovery_lines(data["conditions"])
    patterns = list(dict.fromkeys(point["pattern"] for point in data["conditions"][0]["points"]
                                  if point["loss"] > 0))
    lossless = [point for point in data["conditions"][0]["points"] if point["loss"] == 0]
    for pattern in patterns:
        columns = [point for point in data["conditions"][0]["points"]
                   if point["pattern"] == pattern and point["loss"] > 0]
        headings = (["no loss"] if lossless else []) + [f"{point['loss']:g}%" for point in columns]
        rows = []
        for summary in data["conditions"]:
            cells = [_cell(point) for point in summary["points"]
                     if point["loss"] == 0 or point["pattern"] == pattern]
            rows.append([summary["label"], *cells])
        measured = [f"{point['measured_loss']:.1%}" for point in columns]
        lines += [
            f"## {PATTERN_TITLES[pattern]}\n",
            "Each cell: PESQ-WB / STOI / PLCMOS. Measured loss: " + ", ".join(measured) + ".\n",
            markdown_table(["condition", *headings], rows),
        ]
    return "\n".join(lines)


def _cell(point: Entry) -> str:
    values = point["metrics"]
    return " / ".join(number(values[metric], METRIC_FORMATS[metric][1]) for metric in METRICS)


def _recovery_lines(summaries: list[Entry]) -> list[str]:
    """How many of the frames missing at playout each recovering condition rebuilt."""
    recovering = [summary for summary in summaries if _recovers(summary)]
    if not recovering:
        return []
    columns = [point["label"] for point in recovering[0]["points"] if point["loss"] > 0]
    rows = [
        [summary["label"], *(f"{point['recovered']} of {point['concealed']}"
                             for point in summary["points"] if point["loss"] > 0)]
        for summary in recovering
    ]
    return [
        "## Lost frames rebuilt\n",
        "Frames missing at playout that the redundancy or in-band FEC of a later packet rebuilt, "
        "over all files; the others were concealed. libopus codes FEC only when its bitrate "
        "leaves room for it: where it rebuilt none, FEC only changed how the encoder coded.\n",
        markdown_table(["condition", *columns], rows),
    ]


def _recovers(summary: Entry) -> bool:
    return "redundancy" in summary["label"] or "FEC" in summary["label"]


def _target_lines(target: Entry | None) -> list[str]:
    if target is None:
        return []
    rows = []
    for verdict in target["verdicts"]:
        pesq, plcmos = verdict["metrics"]["pesq_wb"], verdict["metrics"]["plcmos"]
        rows.append([
            verdict["rtcodec"], number(verdict["codes_kbps"]), number(verdict["kbps_payload"]),
            number(pesq["rtcodec"]), number(pesq["opus"]), number(plcmos["rtcodec"]),
            number(plcmos["opus"]), "met" if verdict["met"] else "not met",
        ])
    return [
        f"## Target: at {target['point']}, rtcodec 6 kbps + redundancy (<= {MAX_CODES_KBPS:g} kbps "
        f"of codes) scores at least {target['opus']} on PESQ-WB and PLCMOS\n",
        markdown_table(["rtcodec", "codes kbps", "payload kbps", "PESQ-WB", "Opus PESQ-WB",
                        "PLCMOS", "Opus PLCMOS", "target"], rows) if rows else "n/a\n",
    ]


def plot(data: Entry) -> Figure:
    """Rows: PESQ-WB, STOI, PLCMOS; columns: loss patterns; one line per condition."""
    patterns = list(dict.fromkeys(point["pattern"] for point in data["conditions"][0]["points"]
                                  if point["loss"] > 0)) or ["random"]
    figure, axes = new_figure(len(patterns), width=5.0, height=3.6, rows=len(METRICS))
    highest = max(point["loss"] for point in data["conditions"][0]["points"])
    for row, metric in enumerate(METRICS):
        for column, pattern in enumerate(patterns):
            axis = axes[row * len(patterns) + column]
            for summary in data["conditions"]:
                points = sorted(
                    (point["loss"], point["metrics"][metric]) for point in summary["points"]
                    if (point["loss"] == 0 or point["pattern"] == pattern)
                    and point["metrics"][metric] is not None
                )
                if points:
                    axis.plot(*zip(*points, strict=True), **_style(summary), label=summary["label"])
            if metric == "plcmos" and data["reference"]["plcmos"] is not None:
                axis.axhline(data["reference"]["plcmos"], color="gray", linestyle=":",
                             label="uncoded")
            axis.set(xlabel="packet loss (%)", ylabel=METRIC_FORMATS[metric][0],
                     xlim=(-1, highest + 2))
            if row == 0:
                axis.set_title(PATTERN_TITLES[pattern])
            axis.grid(alpha=0.3)
    axes[0].legend(fontsize="x-small")
    figure.suptitle(f"Quality under packet loss, {data['settings']['files']} dev files")
    return figure


def _style(summary: Entry) -> dict[str, Any]:
    """rtcodec in blue, Opus in orange, lighter for less; dashed: no recovery, solid: redundancy
    or FEC."""
    label = summary["label"]
    if summary["codec"] == "rtcodec":
        shade = {"concealment": 1.0, "redundancy 1": 0.75, "redundancy 2": 0.5}
        alpha = next((value for key, value in shade.items() if key in label), 0.6)
    else:
        alpha = {9.0: 0.5, 16.0: 0.75, 24.0: 1.0}.get(summary["kbps"], 0.6)
    marker = {9.0: "v", 16.0: "s", 24.0: "^"}.get(summary["kbps"], "o")
    return {"color": CODEC_COLORS[summary["codec"]], "alpha": alpha, "marker": marker,
            "linestyle": "-" if _recovers(summary) else "--", "markersize": 4}


if __name__ == "__main__":
    main()
