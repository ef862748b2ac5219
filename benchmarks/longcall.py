"""Long-call benchmark: a 30-minute call with clock drift between the peers, run faster than real
time through the in-process packet path; the jitter buffer, the send-to-playout delay and the
resident memory over the whole call.

    nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/longcall.py \\
        --audio ../shared/data/dev

Speech (up to LOOP_SECONDS read from --audio, else the built-in speech) is looped, frame by frame,
into `rtcodec.netsim.simulate.simulate_stream`: one codec's streaming encoder, a network with a
little jitter and 1 % random loss, the call engine's adaptive jitter buffer on a playout clock
that runs 1 + drift times as fast as the capture clock, and the streaming decoder. Nothing of the
call is kept but per-second figures in arrays allocated up front: memory that grows is the
engine's. At +1 % drift the receiver plays faster than the sender sends, and the buffer stretches
about one frame in a hundred; at -1 % it skips as often. The call does not drift when the
send-to-playout delay (from a frame's send time to its playout, on the sender's clock) stays
bounded and ends where it started. Resident memory (VmRSS) is read at the start, after
WARMUP_SECONDS of simulated audio, at every checkpoint (each simulated minute; 10 s in --quick),
at the end of the call (its last frame sent) and once the call is released; the drifts run one
after the other in one process.

Writes longcall.json, longcall.md and longcall.png (RSS, delay and buffer over simulated time, one
line per drift) into --out.
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
from common import (
    DEFAULT_OUT,
    Condition,
    dev_files,
    load_rtcodec,
    markdown_table,
    new_figure,
    non_negative_int,
    number,
    opus_conditions,
    positive_number,
    read_clip,
    rtcodec_conditions,
    use_one_thread,
    write_results,
)
from matplotlib.figure import Figure

from rtcodec.audio import default_speech, frames
from rtcodec.config import FRAME_RATE, SAMPLE_RATE
from rtcodec.netsim import Bernoulli, Delay, Network
from rtcodec.netsim.simulate import (
    AdaptivePlayout,
    PlayoutTick,
    SimulationStats,
    check_clock_drift,
    simulate_stream,
)
from rtcodec.transport.jitter import SHRINK_MARGIN

MINUTES: Final = 30.0
QUICK_MINUTES: Final = 1.0
CHECKPOINT_SECONDS: Final = 60.0
QUICK_CHECKPOINT_SECONDS: Final = 10.0
"""Simulated seconds between RSS readings; also the window of the start and end delays."""
WARMUP_SECONDS: Final = 10.0
"""Simulated seconds after which the RSS baseline is read (codec and buffer warmed up)."""
DRIFTS: Final = (0.01, -0.01)
KBPS: Final = {"rtcodec": 6.0, "opus": 16.0}
BASE_DELAY_MS: Final = 40.0
JITTER_MS: Final = 10.0
LOSS_PERCENT: Final = 1.0
SEED: Final = 1
LOOP_SECONDS: Final = 60.0
"""At most this much speech is read from --audio, then looped."""
SERIES_POINTS: Final = 180
"""About this many bins of the call in the JSON series and the plot (10 s each in 30 minutes)."""
TAIL_SECONDS: Final = 5
"""Per-second slots beyond the sent audio: the playout drains for a little while after it."""
DELAY_LIMIT_MS: Final = 200.0
"""The send-to-playout delay must stay under this throughout the call."""
DELAY_CHANGE_LIMIT_MS: Final = 40.0
"""The mean delay of the last window may differ from the first window's by this much (2 frames);
without correction, 1 % drift would move it by 600 ms a minute."""
RSS_GROWTH_LIMIT_MIB: Final = 5.0
"""Resident memory may grow this much from the warm-up reading to the end of a run."""
CORRECTION_BAND: Final = (0.8, 1.25)
"""Net corrections (stretched - skipped) over drift x frames sent must fall in this band."""
END_OF_CALL: Final = "end of call"
"""The reading at the first tick after the last frame was sent: the last one in the call."""
AFTER_CALL: Final = "after the call"
"""The reading once the call's encoder, decoder and jitter buffer are released."""
MISSING_WEIGHTS_HINT: Final = "pass --weights DIR, or --untrained, or --codec opus"

Entry = dict[str, Any]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=positive_number, metavar="M",
                        help=f"simulated call length (default: {MINUTES:g}; "
                             f"{QUICK_MINUTES:g} with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help=f"a short run: {QUICK_MINUTES:g} minute, RSS every "
                             f"{QUICK_CHECKPOINT_SECONDS:g} s")
    parser.add_argument("--drift", nargs="+", type=float, default=list(DRIFTS), metavar="D",
                        help="receiver clock drift, as a fraction: 0.01 plays 1 %% faster "
                             "(default: 0.01 -0.01)")
    parser.add_argument("--codec", choices=tuple(KBPS), default="rtcodec")
    parser.add_argument("--kbps", type=float, help="bitrate (default: 6 rtcodec, 16 Opus)")
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--weights", type=Path, metavar="DIR",
                         help="rtcodec weights folder (default: the shipped ones)")
    weights.add_argument("--untrained", action="store_true",
                         help="random rtcodec weights of the default size")
    parser.add_argument("--audio", type=Path, metavar="DIR",
                        help="speech folder to loop, e.g. ../shared/data/dev (default: the "
                             "built-in speech)")
    parser.add_argument("--seed", type=non_negative_int, default=SEED, help="seed of the network")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                        help=f"results folder (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    if args.minutes is None:
        args.minutes = QUICK_MINUTES if args.quick else MINUTES
    if args.kbps is None:
        args.kbps = KBPS[args.codec]
    args.checkpoint = QUICK_CHECKPOINT_SECONDS if args.quick else CHECKPOINT_SECONDS
    if not args.minutes * 60 >= WARMUP_SECONDS + args.checkpoint:
        parser.error(f"--minutes must cover the warm-up and one checkpoint "
                     f"({(WARMUP_SECONDS + args.checkpoint) / 60:g} min)")
    for drift in args.drift:
        try:
            check_clock_drift(drift)
        except ValueError as error:
            parser.error(str(error))
    return args


def main(argv: Sequence[str] | None = None) -> None:
    rss_at_start = rss_mib()
    args = parse_args(argv)
    use_one_thread()
    condition = select_condition(args)
    clip, audio = loop_clip(args.audio)
    network = Network(loss=Bernoulli(LOSS_PERCENT / 100), delay=Delay(BASE_DELAY_MS, JITTER_MS))
    rss_ready = rss_mib()
    print(f"{condition.label} over {network.describe()}; {args.minutes:g} min of {audio}; "
          f"RSS {rss_at_start:.1f} MiB at the start, {rss_ready:.1f} MiB ready", flush=True)
    runs = [run(condition, network, clip, drift, args) for drift in args.drift]
    data = {
        "settings": settings(args, condition, network, audio),
        "rss_at_start_mib": rss_at_start,
        "rss_ready_mib": rss_ready,
        "runs": runs,
        "checks": [check for result in runs for check in checks(result)],
    }
    paths = write_results(args.out, "longcall", data, markdown(data), plot(data))
    print("wrote", *map(str, paths), sep="\n  ")


def select_condition(args: argparse.Namespace) -> Condition:
    """The codec at `args.kbps`; exits with the codec's message if it does not take that rate."""
    if args.codec == "opus":
        condition = opus_conditions([args.kbps])[0]
    else:
        codec = load_rtcodec(args.weights, args.untrained, MISSING_WEIGHTS_HINT)
        condition = rtcodec_conditions(codec, [args.kbps])[0]
    try:
        condition.new_encoder()
    except ValueError as error:
        raise SystemExit(f"error: {condition.label}: {error}") from None
    return condition


def loop_clip(folder: Path | None) -> tuple[np.ndarray, str]:
    """The speech to loop, float32 [samples], and what it is: the files of `folder` end to end,
    up to LOOP_SECONDS, or the built-in speech."""
    if folder is None:
        speech = default_speech()
        return speech.audio, speech.description
    clips: list[np.ndarray] = []
    for path in dev_files(folder, None):
        clips.append(read_clip(path, LOOP_SECONDS))
        if sum(map(len, clips)) >= LOOP_SECONDS * SAMPLE_RATE:
            break
    clip = np.concatenate(clips)[: round(LOOP_SECONDS * SAMPLE_RATE)]
    return clip, f"{len(clips)} file(s) from {folder} ({len(clip) / SAMPLE_RATE:.1f} s, looped)"


def looped_frames(clip: np.ndarray, count: int) -> Iterator[np.ndarray]:
    """`count` float32 frames [FRAME_SAMPLES] of `clip` [samples] played end to end, again and
    again (its last frame zero-padded); nothing is copied."""
    return itertools.islice(itertools.cycle(list(frames(clip))), count)


def rss_mib(field: str = "VmRSS") -> float:
    """`field` of /proc/self/status in MiB: VmRSS, resident memory now; VmHWM, its peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


# --- one run ----------------------------------------------------------------------------------


class Recorder:
    """The sink of one run: per-second playout figures, RSS readings, progress lines.

    The per-second arrays are allocated (and written) up front, and the readings are a few dozen,
    so the recorder itself adds nothing to RSS as the call goes on.
    """

    def __init__(self, label: str, frame_count: int, checkpoint: float) -> None:
        """`frame_count`: frames sent; `checkpoint`: simulated seconds between readings."""
        slots = math.ceil(frame_count / FRAME_RATE) + TAIL_SECONDS
        self.delay_sum = np.full(slots, 0.0)
        """Per simulated second: the sum of the delays (ms) of the frames played with a packet."""
        self.delay_count = np.full(slots, 0.0)
        self.delay_min = np.full(slots, np.inf)
        self.delay_max = np.full(slots, -np.inf)
        self.buffered_max = np.full(slots, -1.0)
        """Per second: the most frames buffered after a pop (-1: nothing played)."""
        self.target_max = np.full(slots, -1.0)
        self.readings: list[Entry] = []
        """RSS readings, each with the delay over the simulated seconds since the one before."""
        self.time = 0.0
        """Simulated seconds of the latest tick."""
        self.concealed = 0
        self._label = label
        self._checkpoint = checkpoint
        self._last_send = (frame_count - 1) / FRAME_RATE
        self._next_reading = WARMUP_SECONDS
        self._started = time.perf_counter()

    def __call__(self, audio: np.ndarray, tick: PlayoutTick) -> None:
        second = self._slot(tick.time)
        if tick.delay is None:
            self.concealed += 1
        else:
            delay_ms = tick.delay * 1000
            self.delay_sum[second] += delay_ms
            self.delay_count[second] += 1
            self.delay_min[second] = min(self.delay_min[second], delay_ms)
            self.delay_max[second] = max(self.delay_max[second], delay_ms)
        self.buffered_max[second] = max(self.buffered_max[second], tick.buffered_frames)
        self.target_max[second] = max(self.target_max[second], tick.target_frames)
        self.time = tick.time
        if tick.time >= self._next_reading:
            self._read_in_call()

    def _read_in_call(self) -> None:
        """The warm-up reading, a checkpoint, or the end of the call (its last frame sent)."""
        if self.time >= self._last_send:
            self.read(END_OF_CALL)
            self._next_reading = math.inf
            return
        self.read("checkpoint" if self.readings else "warm-up")
        following = (self.time // self._checkpoint + 1) * self._checkpoint
        self._next_reading = min(following, self._last_send)

    @property
    def wall_seconds(self) -> float:
        return time.perf_counter() - self._started

    def read(self, at: str) -> None:
        """Take an RSS reading now (`at`: "warm-up", "checkpoint", END_OF_CALL or AFTER_CALL);
        print progress."""
        since = self.readings[-1]["seconds"] if self.readings else 0.0
        window = slice(self._slot(since), self._slot(self.time) + 1)
        reading = {
            "at": at, "seconds": self.time, "wall_s": self.wall_seconds, "rss_mib": rss_mib(),
            "delay_mean_ms": self.mean_delay(window),
            "delay_max_ms": float(self.delay_max[window].max()),
            "buffered_max": int(self.buffered_max[window].max()),
            "target_max": int(self.target_max[window].max()),
        }
        self.readings.append(reading)
        print(self._progress(reading), flush=True)

    def _progress(self, reading: Entry) -> str:
        """One line for people about `reading`."""
        wall, rss = reading["wall_s"], reading["rss_mib"]
        mean, most = reading["delay_mean_ms"], reading["delay_max_ms"]
        return (f"[drift {self._label}] {self.time / 60:5.1f} min ({reading['at']}), wall "
                f"{wall:4.0f} s (x{self.time / wall:.0f} real time): RSS {rss:.1f} MiB; delay "
                f"mean {mean:.0f}, max {most:.0f} ms; buffered <= {reading['buffered_max']}, "
                f"target <= {reading['target_max']}; concealed {self.concealed}")

    def mean_delay(self, window: slice) -> float:
        """Mean delay (ms) of the frames played with a packet in `window` (simulated seconds)."""
        count = self.delay_count[window].sum()
        return float(self.delay_sum[window].sum() / count) if count else math.nan

    def _slot(self, seconds: float) -> int:
        return min(int(seconds), len(self.delay_sum) - 1)


def run(
    condition: Condition, network: Network, clip: np.ndarray, drift: float,
    args: argparse.Namespace,
) -> Entry:
    """One call of `args.minutes` at `drift`, summarised."""
    count = round(args.minutes * 60 * FRAME_RATE)
    recorder = Recorder(f"{drift:+.1%}", count, args.checkpoint)
    stats = simulate_stream(
        looped_frames(clip, count), condition.new_encoder(), condition.new_decoder(), network,
        sink=recorder, seed=args.seed, clock_drift=drift,
    )
    wall = recorder.wall_seconds
    recorder.read(AFTER_CALL)
    return summary(drift, stats, recorder, wall, args.checkpoint)


def summary(
    drift: float, stats: SimulationStats, recorder: Recorder, wall: float, window: float
) -> Entry:
    """What one run measured: RSS, delay, buffer, corrections, speed (JSON-ready)."""
    readings = recorder.readings
    in_call = [reading for reading in readings if reading["at"] != AFTER_CALL]
    sent_seconds = stats.seconds_sent
    start = slice(int(WARMUP_SECONDS), int(WARMUP_SECONDS + window))
    end = slice(int(sent_seconds - window), int(sent_seconds))
    last = int(sent_seconds) - 1  # the last second sent, before the playout drains
    expected = drift * stats.frames_sent
    return {
        "drift": drift,
        "stats": stats.to_dict(),
        "wall_s": wall,
        "speed_up": sent_seconds / wall,
        "rss": {
            "readings": readings,
            "after_warmup_mib": in_call[0]["rss_mib"],
            "end_of_call_mib": in_call[-1]["rss_mib"],
            "growth_mib": in_call[-1]["rss_mib"] - in_call[0]["rss_mib"],
            "after_call_mib": readings[-1]["rss_mib"],
            "peak_mib": rss_mib("VmHWM"),
        },
        "delay_ms": {
            "start": recorder.mean_delay(start),
            "end": recorder.mean_delay(end),
            "change": recorder.mean_delay(end) - recorder.mean_delay(start),
            "min": float(recorder.delay_min.min()),
            "max": float(recorder.delay_max.max()),
            "window_s": window,
        },
        "buffer": {
            "max_buffered": int(recorder.buffered_max.max()),
            "final_buffered": int(recorder.buffered_max[last]),
            "max_target": int(recorder.target_max.max()),
            "final_target": int(recorder.target_max[last]),
            "limit": AdaptivePlayout().max_frames + SHRINK_MARGIN,
        },
        "corrections": {
            "stretched": stats.stretched,
            "skipped": stats.skipped,
            "net": stats.stretched - stats.skipped,
            "expected": expected,
            "ratio": (stats.stretched - stats.skipped) / expected if expected else None,
        },
        "series": _series(recorder, max(round(sent_seconds / SERIES_POINTS), 1)),
    }


def _series(recorder: Recorder, seconds: int) -> Entry:
    """The per-second figures over bins of `seconds`, as JSON lists (None where no frame, or no
    frame with a packet, played): mean, min and max delay (ms), most frames buffered, target."""

    def binned(values: np.ndarray, reduce: Callable[..., np.ndarray], fill: float) -> np.ndarray:
        padded = np.concatenate([values, np.full(-len(values) % seconds, fill)])
        return reduce(padded.reshape(-1, seconds), axis=1)

    def listed(values: np.ndarray, keep: np.ndarray) -> list[float | None]:
        return [round(float(v), 2) if ok else None for v, ok in zip(values, keep, strict=True)]

    count = binned(recorder.delay_count, np.sum, 0.0)
    buffered = binned(recorder.buffered_max, np.max, -1.0)
    mean = binned(recorder.delay_sum, np.sum, 0.0) / np.maximum(count, 1)
    return {
        "bin_s": seconds,
        "delay_mean_ms": listed(mean, count > 0),
        "delay_min_ms": listed(binned(recorder.delay_min, np.min, np.inf), count > 0),
        "delay_max_ms": listed(binned(recorder.delay_max, np.max, -np.inf), count > 0),
        "buffered_max": listed(buffered, buffered >= 0),
        "target_max": listed(binned(recorder.target_max, np.max, -1.0), buffered >= 0),
    }


# --- results ----------------------------------------------------------------------------------


def settings(args: argparse.Namespace, condition: Condition, network: Network, audio: str) -> Entry:
    playout = AdaptivePlayout()
    return {
        "minutes": args.minutes,
        "codec": condition.codec,
        "kbps": condition.kbps,
        "model": condition.model,
        "label": condition.label,
        "network": network.describe(),
        "seed": args.seed,
        "audio": audio,
        "drifts": list(args.drift),
        "jitter_buffer": {"min_frames": playout.min_frames, "max_frames": playout.max_frames,
                          "capacity": playout.capacity},
        "warmup_s": WARMUP_SECONDS,
        "checkpoint_s": args.checkpoint,
        "limits": {"delay_ms": DELAY_LIMIT_MS, "delay_change_ms": DELAY_CHANGE_LIMIT_MS,
                   "rss_growth_mib": RSS_GROWTH_LIMIT_MIB, "correction_band": CORRECTION_BAND},
    }


def checks(result: Entry) -> list[Entry]:
    """What a long call must hold, for one run: reported, not enforced."""
    label = f"drift {result['drift']:+.1%}"
    delay, buffer, ratio = result["delay_ms"], result["buffer"], result["corrections"]["ratio"]
    low, high = CORRECTION_BAND
    return [
        {"what": f"{label}: max send-to-playout delay (ms)", "value": delay["max"],
         "limit": f"< {DELAY_LIMIT_MS:g}", "met": delay["max"] < DELAY_LIMIT_MS},
        {"what": f"{label}: delay change, last window - first (ms)", "value": delay["change"],
         "limit": f"within +-{DELAY_CHANGE_LIMIT_MS:g}",
         "met": abs(delay["change"]) <= DELAY_CHANGE_LIMIT_MS},
        {"what": f"{label}: max frames buffered", "value": buffer["max_buffered"],
         "limit": f"<= {buffer['limit']}", "met": buffer["max_buffered"] <= buffer["limit"]},
        {"what": f"{label}: RSS growth after warm-up (MiB)", "value": result["rss"]["growth_mib"],
         "limit": f"<= {RSS_GROWTH_LIMIT_MIB:g}",
         "met": result["rss"]["growth_mib"] <= RSS_GROWTH_LIMIT_MIB},
        {"what": f"{label}: net corrections / (drift x frames sent)", "value": ratio,
         "limit": f"{low:g} .. {high:g}", "met": ratio is not None and low <= ratio <= high},
    ]


def markdown(data: Entry) -> str:
    setup = data["settings"]
    buffer = setup["jitter_buffer"]
    intro = (
        f"{setup['label']} (`{setup['model']}`), {setup['minutes']:g} minutes of "
        f"{setup['audio']}, through the in-process packet path (`simulate_stream`) over "
        f"{setup['network']}, seed {setup['seed']}; the call engine's adaptive jitter buffer "
        f"(target {buffer['min_frames']}..{buffer['max_frames']} frames) on a playout clock "
        "1 + drift times as fast as the capture clock. The drifts run one after the other in one "
        f"process, which held {data['rss_at_start_mib']:.1f} MiB at the start (torch imported) and "
        f"{data['rss_ready_mib']:.1f} MiB with the codec and the speech loaded. "
        f"RSS growth: from the reading after {setup['warmup_s']:g} s of simulated audio to the "
        "one at the end of the call (its last frame sent); after: once the call's encoder, "
        "decoder and jitter buffer are released; peak: the process's so far. Delay: from a "
        "frame's send time to its playout, both on the sender's clock; start and end are its "
        f"means over the first {setup['checkpoint_s']:g} s after warm-up and the last "
        f"{setup['checkpoint_s']:g} s sent. Expected net corrections (stretched - skipped): "
        "drift x frames sent.\n"
    )
    readings = (
        "At each RSS reading: resident memory, and the send-to-playout delay and the jitter "
        "buffer since the reading before.\n"
    )
    checks_table = markdown_table(["what", "value", "limit", "met"], [
        [check["what"], number(check["value"], 1), check["limit"],
         "yes" if check["met"] else "**no**"]
        for check in data["checks"]
    ])
    return "\n".join([
        "# Long call with clock drift\n", intro, runs_table(data["runs"]),
        "## Over the call\n", readings, readings_table(data["runs"]),
        "## Checks (reported, not enforced)\n", checks_table,
    ])


def runs_table(runs: Sequence[Entry]) -> str:
    header = ["drift", "frames sent", "wall s", "x real time",
              "RSS after warm-up -> end of call (MiB)", "RSS after / peak (MiB)",
              "delay start -> end (ms)", "delay min / max (ms)",
              "buffered max (final) / target max (final)",
              "stretched / skipped (expected net)", "concealed / lost"]
    rows = []
    for result in runs:
        rss, delay, buffer = result["rss"], result["delay_ms"], result["buffer"]
        corrections, stats = result["corrections"], result["stats"]
        rows.append([
            f"{result['drift']:+.1%}", str(stats["frames_sent"]), number(result["wall_s"], 0),
            number(result["speed_up"], 1),
            _rss_change(rss),
            f"{rss['after_call_mib']:.1f} / {rss['peak_mib']:.1f}",
            f"{delay['start']:.1f} -> {delay['end']:.1f} ({delay['change']:+.1f})",
            f"{delay['min']:.1f} / {delay['max']:.1f}",
            "{max_buffered} ({final_buffered}) / {max_target} ({final_target})".format(**buffer),
            "{stretched} / {skipped} ({expected:+.0f})".format(**corrections),
            f"{stats['concealed']} / {stats['lost']}",
        ])
    return markdown_table(header, rows)


def _rss_change(rss: Entry) -> str:
    """"475.6 -> 475.6 (+0.0)": after warm-up -> end of call (growth), MiB."""
    before, after, growth = rss["after_warmup_mib"], rss["end_of_call_mib"], rss["growth_mib"]
    return f"{before:.1f} -> {after:.1f} ({growth:+.1f})"


def readings_table(runs: Sequence[Entry]) -> str:
    """One row per RSS reading; per drift: RSS (MiB), and the mean / max delay (ms) and most
    frames buffered / target since the reading before."""
    header = ["simulated min"]
    for result in runs:
        header += [f"{result['drift']:+.1%}: RSS", "delay mean / max", "buffered / target"]
    rows = []
    for readings in zip(*(result["rss"]["readings"] for result in runs), strict=False):
        row = [f"{readings[0]['seconds'] / 60:.2f} ({readings[0]['at']})"]
        for reading in readings:
            row += [f"{reading['rss_mib']:.1f}",
                    f"{reading['delay_mean_ms']:.1f} / {reading['delay_max_ms']:.1f}",
                    f"{reading['buffered_max']} / {reading['target_max']}"]
        rows.append(row)
    return markdown_table(header, rows)


def plot(data: Entry) -> Figure:
    """RSS, send-to-playout delay (mean per bin, min-max shaded) and buffer over simulated time,
    one colour per drift."""
    figure, (rss_axis, delay_axis, buffer_axis) = new_figure(3, width=5.0, height=3.6)
    for index, result in enumerate(data["runs"]):
        color, label = f"C{index}", f"drift {result['drift']:+.1%}"
        readings = result["rss"]["readings"]
        rss_axis.plot([r["seconds"] / 60 for r in readings], [r["rss_mib"] for r in readings],
                      marker="o", markersize=3, color=color, label=label)
        series = result["series"]
        minutes = (np.arange(len(series["delay_mean_ms"])) + 0.5) * series["bin_s"] / 60
        delay_axis.plot(minutes, _floats(series["delay_mean_ms"]), color=color, label=label,
                        linewidth=0.8)
        delay_axis.fill_between(minutes, _floats(series["delay_min_ms"]),
                                _floats(series["delay_max_ms"]), color=color, alpha=0.2)
        buffer_axis.plot(minutes, _floats(series["buffered_max"]), color=color,
                         label=f"{label}: buffered", linewidth=0.8)
        buffer_axis.plot(minutes, _floats(series["target_max"]), color=color,
                         linestyle=":", label=f"{label}: target")
    delay_axis.axhline(DELAY_LIMIT_MS, color="gray", linestyle="--", label="limit")
    rss_axis.set(xlabel="simulated minutes", ylabel="resident memory (MiB)", title="RSS")
    rss_axis.ticklabel_format(axis="y", useOffset=False)
    delay_axis.set(xlabel="simulated minutes", ylabel="ms", ylim=(0, DELAY_LIMIT_MS * 1.1),
                   title="send-to-playout delay (mean, min..max)")
    buffer_axis.set(xlabel="simulated minutes", ylabel="frames",
                    title="jitter buffer (max frames)")
    for axis in (rss_axis, delay_axis, buffer_axis):
        axis.grid(alpha=0.3)
        axis.legend(fontsize="x-small")
    figure.suptitle(f"{data['settings']['label']}, {data['settings']['minutes']:g}-minute call "
                    "with clock drift")
    return figure


def _floats(values: Sequence[float | None]) -> np.ndarray:
    """JSON values as float64, NaN for None (a gap in the line)."""
    return np.array([math.nan if value is None else value for value in values])


if __name__ == "__main__":
    main()
