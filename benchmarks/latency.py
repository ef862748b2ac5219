"""Latency benchmark: algorithmic latency, per-frame compute and mouth-to-ear delay over real calls,
rtcodec, Opus and Lyra v2 side by side.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/latency.py --untrained --quick

1. Algorithmic latency: one frame (FRAME_SAMPLES / SAMPLE_RATE = 20 ms) plus the codec's
   lookahead: `delay_samples` of each codec's encoder: for rtcodec its decoder's overlap-add (none
   for the SEANet decoder, 5 ms for the spectral one at the default overlap), for Opus the libopus
   lookahead (6.5 ms); none for Lyra v2 (its README: output time-aligned).
2. Compute per 20 ms frame on one thread: each codec streams the same speech frame by frame,
   encode and decode timed separately (encode: `encoder.push`, packet serialisation included;
   decode: `Packet.parse` + `decoder.push`). rtcodec runs on its numpy fast path (as calls run
   it) and, at REFERENCE_KBPS, on the PyTorch reference path too. The conditions take turns in
   blocks of BLOCK_FRAMES frames (round robin, the first one rotating), so that a noisy machine
   slows them all alike; each keeps its own encoder and decoder throughout, and the first
   WARMUP_FRAMES frames of each are not counted. The real-time factor is the mean time per frame
   over the 20 ms that a frame lasts.
3. Mouth-to-ear: a real aiortc call on this host (TCP signalling, data channel over UDP) sends the
   built-in speech, paced in real time, from a caller to a callee, which decodes it through its
   jitter buffer into a sink that discards it. The call measures, per frame, the time from
   capture (the source handing the frame over, before encoding) to playout (the decoded frame
   handed to the sink): encode + network + jitter buffer + decode (`CallStats.one_way_delay`).
   Adding the algorithmic latency gives mouth-to-ear: the first sample of a frame is spoken one
   frame before the frame is captured, and a lookahead delays the decoded audio further. Sound
   device buffers are not included. Networks: plain loopback, and through the netsim UDP
   ImpairmentRelay with a small base delay and normal jitter (standard deviation 10 and 30 ms).
   The breakdown takes medians: compute is the median encode + decode time in the call, the
   jitter buffer the median time a packet waited in it, and "network + transport" the rest of
   the median capture-to-playout time (relay, UDP, DTLS, SCTP, aiortc and event-loop handoffs).

Writes latency.json, latency.md, latency.png (mouth-to-ear breakdown) and latency_frames.png
(histograms of the per-frame compute times) into --out.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import secrets
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy as np
import torch
from matplotlib.figure import Figure

from common import (
    CODEC_COLORS,
    FRAME_SECONDS,
    LYRA_KBPS,
    Condition,
    LyraStreamEncoder,
    Streamer,
    add_codec_arguments,
    check_bitrates,
    load_rtcodec,
    markdown_table,
    models_line,
    new_figure,
    non_negative_number,
    number,
    opus_conditions,
    positive_int,
    positive_number,
    rtcodec_conditions,
    select_conditions,
    use_one_thread,
    write_results,
)
from rtcodec.audio import FileSource, default_speech, frames
from rtcodec.bitstream import Packet
from rtcodec.codec import Codec, RtcStreamEncoder
from rtcodec.config import FRAME_SAMPLES, SAMPLE_RATE
from rtcodec.netsim import Delay, ImpairmentRelay, Network
from rtcodec.opus import OpusStreamEncoder
from rtcodec.protocols import StreamDecoder, StreamEncoder
from rtcodec.transport import CallStats, CodecChoice, Peer, Session, connect, listen

RATES: Final = {"rtcodec": (3.0, 6.0, 12.0), "opus": (6.0, 16.0), "lyra": LYRA_KBPS}
"""Default compute bitrates per codec, in kbps."""
REFERENCE_KBPS: Final = 6.0
"""rtcodec also runs on its PyTorch reference path at this rate, to show the fast path's gain."""
CALL_KBPS: Final = {"rtcodec": 6.0, "opus": 16.0}
"""The codecs and bitrates of the calls."""
WARMUP_FRAMES: Final = 20
BLOCK_FRAMES: Final = 25
"""Frames a condition streams before the next one takes its turn."""
DEFAULT_FRAMES: Final = 1000
QUICK_FRAMES: Final = 250
DEFAULT_CALL_SECONDS: Final = 10.0
QUICK_CALL_SECONDS: Final = 3.0
JITTER_MS: Final = (10.0, 30.0)
"""Standard deviations of the relay's normal jitter; plain loopback always runs as well."""
BASE_DELAY_MS: Final = 5.0
"""One-way base delay of the relay, under its jitter (a delay drawn below 0 is clipped to 0)."""
RELAY_SEED: Final = 1
OPEN_TIMEOUT: Final = 25.0
"""Seconds for ICE, DTLS and SCTP to open, both sides (handshakes cross the relay's jitter)."""
CALL_MARGIN_SECONDS: Final = 30.0
"""A call is given up (an error) this long after its audio should have been sent."""
LOOPBACK: Final = "127.0.0.1"
DIRECTIONS: Final = ("encode", "decode", "total")
"""Per-frame times: encode, decode, and encode + decode of the same frame."""
DIRECTION_TITLES: Final = {"encode": "encode", "decode": "decode", "total": "enc+dec"}
STATISTICS: Final = ("p50_ms", "p99_ms", "max_ms")
"""The per-frame statistics in the compute table (latency.json also has the mean)."""
TARGETS: Final = {"compute_p50_ms": 1.0, "compute_p99_ms": 2.0, "mouth_to_ear_p50_ms": 45.0}
"""What rtcodec aims for: streaming encode + decode per frame on one thread (p50, p99), and
mouth-to-ear p50 on loopback without jitter. Reported, never asserted."""
BREAKDOWN: Final = {
    "algorithmic": ("algorithmic (frame + lookahead)", "tab:gray"),
    "compute": ("compute (encode + decode)", "tab:purple"),
    "jitter_buffer": ("jitter buffer", "tab:olive"),
    "network": ("network + transport (rest)", "tab:cyan"),
}
"""The parts of the mouth-to-ear p50, in stacking order: heading and colour."""
MISSING_WEIGHTS_HINT: Final = (
    "pass --weights DIR, or --untrained (compute and delays do not depend on training)"
)
LINE_STYLES: Final = ("-", "--", ":", "-.")
"""Histogram line style per condition of one codec."""

Entry = dict[str, Any]
"""JSON-ready result of one condition or call."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true",
        help=f"{QUICK_FRAMES} frames per compute condition and calls of {QUICK_CALL_SECONDS:g} s "
        "(--frames and --call-seconds still override it)",
    )
    parser.add_argument(
        "--frames", type=positive_int, metavar="N",
        help=f"frames timed per compute condition after {WARMUP_FRAMES} warm-up frames "
        f"(default: {DEFAULT_FRAMES})",
    )
    parser.add_argument(
        "--call-seconds", type=positive_number, metavar="S",
        help=f"seconds of speech each call sends (default: {DEFAULT_CALL_SECONDS:g})",
    )
    parser.add_argument(
        "--jitter", nargs="*", type=positive_number, default=list(JITTER_MS), metavar="MS",
        help="jitter standard deviations of the relayed calls, besides plain loopback "
        f"(default: {' '.join(f'{ms:g}' for ms in JITTER_MS)}; none: loopback only)",
    )
    parser.add_argument(
        "--base-delay", type=non_negative_number, default=BASE_DELAY_MS, metavar="MS",
        help=f"one-way base delay of the relay under its jitter (default: {BASE_DELAY_MS:g})",
    )
    add_codec_arguments(parser, RATES, allow_untrained=True)
    args = parser.parse_args(argv)
    if args.frames is None:
        args.frames = QUICK_FRAMES if args.quick else DEFAULT_FRAMES
    if args.call_seconds is None:
        args.call_seconds = QUICK_CALL_SECONDS if args.quick else DEFAULT_CALL_SECONDS
    if not args.call_seconds >= FRAME_SECONDS:
        parser.error(f"--call-seconds must be at least one frame ({FRAME_SECONDS:g} s)")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    use_one_thread()
    started = time.monotonic()
    codec = None
    if "rtcodec" in args.codecs:
        codec = load_rtcodec(args.weights, args.untrained, MISSING_WEIGHTS_HINT)
    conditions = compute_conditions(args, codec)
    calls = call_conditions(args, codec)
    speech = default_speech((WARMUP_FRAMES + args.frames) * FRAME_SECONDS)
    algorithmic = [algorithmic_latency(condition) for condition in first_of_each_codec(conditions)]
    for entry in algorithmic:
        print(f"algorithmic latency {entry['codec']}: {number(entry['total_ms'], 1)} ms "
              f"(frame {number(entry['frame_ms'], 1)} + lookahead "
              f"{number(entry['lookahead_ms'], 1)})", flush=True)
    timings = time_conditions(conditions, speech.audio, started)
    call_results = run_calls(calls, networks(args), args.call_seconds, started)
    data = {
        "settings": settings(args, speech.description),
        "targets": dict(TARGETS),
        "algorithmic": algorithmic,
        "compute": [timing.summary() for timing in timings],
        "calls": call_results,
    }
    data["checks"] = target_checks(data)
    paths = write_results(
        args.out, "latency", data, markdown(data), plot_breakdown(data),
        {"frames": plot_frames(timings)},
    )
    print(f"done in {time.monotonic() - started:.0f} s; wrote", *map(str, paths), sep="\n  ")


# --- conditions -------------------------------------------------------------------------------


def compute_conditions(args: argparse.Namespace, codec: Codec | None) -> list[Condition]:
    """The conditions `--codecs` asks for, with rtcodec's PyTorch reference path (at
    REFERENCE_KBPS) after its fast ones; `codec`: the loaded rtcodec, if it runs."""
    conditions = select_conditions(args, MISSING_WEIGHTS_HINT, codec)
    if codec is None:
        return conditions
    last_rtcodec = max(i for i, condition in enumerate(conditions) if condition.codec == "rtcodec")
    reference = check_bitrates(rtcodec_conditions(codec, [REFERENCE_KBPS], fast=False))
    return conditions[: last_rtcodec + 1] + reference + conditions[last_rtcodec + 1 :]


def call_conditions(args: argparse.Namespace, codec: Codec | None) -> list[Condition]:
    """rtcodec and Opus at CALL_KBPS, those that `--codecs` asks for (Lyra makes no calls)."""
    calls: list[Condition] = []
    if codec is not None:
        calls += rtcodec_conditions(codec, [CALL_KBPS["rtcodec"]])
    if "opus" in args.codecs:
        calls += opus_conditions([CALL_KBPS["opus"]])
    return check_bitrates(calls)


def first_of_each_codec(conditions: Sequence[Condition]) -> list[Condition]:
    return list({condition.codec: condition for condition in reversed(conditions)}.values())[::-1]


# --- 1. algorithmic latency -------------------------------------------------------------------


def algorithmic_latency(condition: Condition) -> Entry:
    """Frame + lookahead of `condition`'s codec, and where the lookahead comes from."""
    encoder = condition.new_encoder()
    if isinstance(encoder, OpusStreamEncoder):
        lookahead, source = encoder.delay_samples, "libopus encoder lookahead (delay_samples)"
    elif isinstance(encoder, RtcStreamEncoder):
        lookahead = encoder.delay_samples
        source = ("causal model: a packet codes its own frame"
                  + (", then the decoder's overlap-add (delay_samples)" if lookahead else ", no lookahead"))
    elif isinstance(encoder, LyraStreamEncoder):
        lookahead, source = 0, "Lyra v2 README: output time-aligned with the input"
    else:
        raise TypeError(f"no known lookahead for {type(encoder).__name__}")
    frame_ms = FRAME_SAMPLES / SAMPLE_RATE * 1000
    lookahead_ms = lookahead / SAMPLE_RATE * 1000
    return {
        "codec": condition.codec,
        "frame_samples": FRAME_SAMPLES,
        "frame_ms": frame_ms,
        "lookahead_samples": lookahead,
        "lookahead_ms": lookahead_ms,
        "total_ms": frame_ms + lookahead_ms,
        "source": source,
    }


# --- 2. compute per frame ---------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Timing:
    """Per-frame times of one condition, warm-up frames dropped."""

    condition: Condition
    seconds: dict[str, np.ndarray]
    """float64 [frames] per direction ("encode", "decode", "total")."""

    def summary(self) -> Entry:
        return {
            "label": self.condition.label,
            "codec": self.condition.codec,
            "model": self.condition.model,
            "kbps": self.condition.kbps,
            "variant": self.condition.variant or None,
            "frames": len(self.seconds["total"]),
            **{direction: statistics(self.seconds[direction]) for direction in DIRECTIONS},
            "rtf": float(self.seconds["total"].mean() / FRAME_SECONDS),
        }


def time_conditions(
    conditions: Sequence[Condition], audio: np.ndarray, started: float
) -> list[Timing]:
    """Stream `audio` through every condition, BLOCK_FRAMES frames at a time in turn (the round's
    first condition rotating); the per-frame times after WARMUP_FRAMES."""
    streamers = [Streamer(condition) for condition in conditions]
    chunks = list(frames(audio))
    times: list[dict[str, list[float]]] = [{"encode": [], "decode": []} for _ in conditions]
    starts = range(0, len(chunks), BLOCK_FRAMES)
    report_every = max(len(starts) // 5, 1)
    for round_index, start in enumerate(starts):
        shift = round_index % len(streamers)
        for index in [*range(shift, len(streamers)), *range(shift)]:
            for frame in chunks[start : start + BLOCK_FRAMES]:
                result = streamers[index].push(frame)
                times[index]["encode"].append(result.encode_seconds)
                times[index]["decode"].append(result.decode_seconds)
        done = min(start + BLOCK_FRAMES, len(chunks))
        if (round_index + 1) % report_every == 0 or done == len(chunks):
            print(f"compute ({time.monotonic() - started:.0f} s): {done}/{len(chunks)} frames "
                  f"of each of {len(conditions)} conditions", flush=True)
    timings = []
    for condition, measured in zip(conditions, times, strict=True):
        encode = np.array(measured["encode"][WARMUP_FRAMES:])
        decode = np.array(measured["decode"][WARMUP_FRAMES:])
        timing = Timing(condition, {"encode": encode, "decode": decode, "total": encode + decode})
        print(f"  {condition.label}: {compute_line(timing.summary())}", flush=True)
        timings.append(timing)
    return timings


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


def compute_line(result: Entry) -> str:
    parts = [
        f"{DIRECTION_TITLES[direction]} p50 {number(result[direction]['p50_ms'], 3)} ms "
        f"p99 {number(result[direction]['p99_ms'], 3)} ms"
        for direction in DIRECTIONS
    ]
    return ", ".join([*parts, f"RTF {number(result['rtf'], 4)}"])


# --- 3. mouth-to-ear over real calls ----------------------------------------------------------


@dataclass(frozen=True)
class CallNetwork:
    """Where a call's datagrams go: straight over loopback, or through the impairment relay."""

    jitter_ms: float | None
    """Standard deviation of the relay's normal jitter; None: no relay."""
    base_ms: float = 0.0

    @property
    def label(self) -> str:
        if self.jitter_ms is None:
            return "loopback"
        return f"relay {self.base_ms:g} ms, jitter {self.jitter_ms:g} ms"

    def network(self) -> Network | None:
        if self.jitter_ms is None:
            return None
        return Network(delay=Delay(base_ms=self.base_ms, jitter_ms=self.jitter_ms))

    def describe(self) -> Entry:
        network = self.network()
        return {
            "label": self.label,
            "relay": network is not None,
            "base_delay_ms": self.base_ms if network else None,
            "jitter_ms": self.jitter_ms,
            "netsim": network.describe() if network else None,
        }


def networks(args: argparse.Namespace) -> list[CallNetwork]:
    return [CallNetwork(None), *(CallNetwork(ms, args.base_delay) for ms in args.jitter)]


class TimedEncoder:
    """A StreamEncoder that times every `push` of the encoder it wraps."""

    def __init__(self, inner: StreamEncoder) -> None:
        self.inner = inner
        self.seconds: list[float] = []

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def kbps(self) -> float:
        return self.inner.kbps

    def push(self, frame: np.ndarray) -> bytes:
        started = time.perf_counter()
        packet = self.inner.push(frame)
        self.seconds.append(time.perf_counter() - started)
        return packet


class TimedDecoder:
    """A StreamDecoder that times every `push` of the decoder it wraps (concealment included)."""

    def __init__(self, inner: StreamDecoder) -> None:
        self.inner = inner
        self.seconds: list[float] = []

    def push(self, packet: Packet | None, following: Sequence[Packet | None] = ()) -> np.ndarray:
        started = time.perf_counter()
        audio = self.inner.push(packet, following)
        self.seconds.append(time.perf_counter() - started)
        return audio


class Discard:
    """A FrameSink that drops what it is given: playout is the moment it is handed a frame."""

    glitches = 0

    def write_frame(self, frame: np.ndarray) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class CallRecord:
    """What one call gave: both sides' stats, the codec times in it, and the relay's counters."""

    caller: CallStats
    callee: CallStats
    encode_seconds: list[float]
    decode_seconds: list[float]
    relay: dict[str, Any] | None


def run_calls(
    conditions: Sequence[Condition], paths: Sequence[CallNetwork], seconds: float, started: float
) -> list[Entry]:
    """One call per codec and network, in that order; their results."""
    audio = default_speech(seconds).audio
    results = []
    plan = [(path, condition) for path in paths for condition in conditions]
    for index, (path, condition) in enumerate(plan):
        record = asyncio.run(call(condition, path, audio))
        result = call_result(condition, path, record)
        print(f"call [{index + 1}/{len(plan)}] ({time.monotonic() - started:.0f} s) "
              f"{result['label']}: {call_line(result)}", flush=True)
        results.append(result)
    return results


async def call(condition: Condition, path: CallNetwork, audio: np.ndarray) -> CallRecord:
    """A caller sends `audio` (paced in real time) to a callee over a real aiortc data channel,
    through the relay if `path` has one; TCP signalling on loopback with a fresh token."""
    encoder = TimedEncoder(condition.new_encoder())
    decoder = TimedDecoder(condition.new_decoder())
    choice = CodecChoice(encoder.name, encoder.kbps)
    token = secrets.token_urlsafe(16)
    network = path.network()
    async with AsyncExitStack() as stack:
        relay = None
        if network is None:
            caller, callee = Peer(), Peer()
        else:
            relay = await stack.enter_async_context(ImpairmentRelay(network, seed=RELAY_SEED))
            caller = Peer(rewrite_sdp=relay.advertise("a"))
            callee = Peer(rewrite_sdp=relay.advertise("b"))
        async with await listen(LOOPBACK, 0) as listener:
            await asyncio.gather(
                listener.accept(callee, choice, token=token),
                connect(caller, choice, host=LOOPBACK, port=listener.port, token=token),
            )
        # Both sides open before either talks: a session alone gives up on a silent peer.
        await asyncio.gather(caller.wait_open(OPEN_TIMEOUT), callee.wait_open(OPEN_TIMEOUT))
        talking = Session(caller, source=FileSource(audio), encoder=encoder)
        hearing = Session(callee, sink=Discard(), decoder=decoder)
        limit = len(audio) / SAMPLE_RATE + CALL_MARGIN_SECONDS
        sent, heard = await asyncio.wait_for(asyncio.gather(talking.run(), hearing.run()), limit)
        counters = None if relay is None else {
            direction: asdict(link) for direction, link in relay.counters.items()
        }
    return CallRecord(sent, heard, encoder.seconds, decoder.seconds, counters)


def call_result(condition: Condition, path: CallNetwork, record: CallRecord) -> Entry:
    """One call's delays: measured capture->playout, + algorithmic = mouth-to-ear, breakdown."""
    heard = record.callee
    algorithmic = algorithmic_latency(condition)["total_ms"]
    encode_ms = _median_ms(record.encode_seconds)
    decode_ms = _median_ms(record.decode_seconds)
    measured = {"p50_ms": heard.one_way_delay_p50_ms, "p95_ms": heard.one_way_delay_p95_ms}
    mouth_to_ear = {
        key: None if value is None else value + algorithmic for key, value in measured.items()
    }
    breakdown = None
    p50, buffered = heard.one_way_delay_p50_ms, heard.jitter_delay_p50_ms
    if p50 is not None and buffered is not None and encode_ms is not None and decode_ms is not None:
        compute = encode_ms + decode_ms
        breakdown = {
            "algorithmic": algorithmic,
            "compute": compute,
            "jitter_buffer": buffered,
            "network": max(p50 - compute - buffered, 0.0),
        }
    return {
        "label": f"{condition.label}, {path.label}",
        "codec": condition.codec,
        "kbps": condition.kbps,
        "model": condition.model,
        "network": path.describe(),
        "algorithmic_ms": algorithmic,
        "measured": measured,
        "mouth_to_ear": mouth_to_ear,
        "encode_p50_ms": encode_ms,
        "decode_p50_ms": decode_ms,
        "jitter_buffer_p50_ms": heard.jitter_delay_p50_ms,
        "jitter_target_ms": heard.jitter_target_ms,
        "breakdown_ms": breakdown,
        "callee": heard.to_dict(),
        "caller": record.caller.to_dict(),
        "relay": record.relay,
    }


def _median_ms(seconds: list[float]) -> float | None:
    return float(np.median(seconds)) * 1000 if seconds else None


def call_line(result: Entry) -> str:
    measured, total, stats = result["measured"], result["mouth_to_ear"], result["callee"]
    return (
        f"capture->playout p50 {number(measured['p50_ms'], 1)} p95 {number(measured['p95_ms'], 1)}"
        f" ms, + algorithmic {number(result['algorithmic_ms'], 1)} = mouth-to-ear p50 "
        f"{number(total['p50_ms'], 1)} p95 {number(total['p95_ms'], 1)} ms; jitter buffer p50 "
        f"{number(result['jitter_buffer_p50_ms'], 1)} ms; played {stats['frames_played']}, "
        f"lost {stats['lost']}, late {stats['late']}, concealed {stats['concealed']}"
    )


# --- results ----------------------------------------------------------------------------------


def target_checks(data: Entry) -> list[Entry]:
    """Each TARGETS value against rtcodec's numbers: compute per fast-path rate, mouth-to-ear on
    loopback. Reported only."""
    checks = []
    for result in data["compute"]:
        if result["codec"] != "rtcodec" or result["variant"]:
            continue
        for statistic in ("p50_ms", "p99_ms"):
            target = TARGETS[f"compute_{statistic}"]
            value = result["total"][statistic]
            checks.append({
                "what": f"{result['label']} encode+decode {statistic.removesuffix('_ms')}",
                "value_ms": value, "target_ms": target, "met": value <= target,
            })
    for result in data["calls"]:
        if result["codec"] == "rtcodec" and not result["network"]["relay"]:
            value = result["mouth_to_ear"]["p50_ms"]
            target = TARGETS["mouth_to_ear_p50_ms"]
            checks.append({
                "what": f"{result['label']} mouth-to-ear p50",
                "value_ms": value, "target_ms": target,
                "met": None if value is None else value <= target,
            })
    return checks


def settings(args: argparse.Namespace, audio: str) -> Entry:
    """How the times were taken: frames, calls, threads, machine, input."""
    return {
        "frames": args.frames,
        "warmup_frames": WARMUP_FRAMES,
        "block_frames": BLOCK_FRAMES,
        "call_seconds": args.call_seconds,
        "base_delay_ms": args.base_delay,
        "jitter_ms": list(args.jitter),
        "relay_seed": RELAY_SEED,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "audio": audio,
    }


def markdown(data: Entry) -> str:
    setup = data["settings"]
    sections = [
        "# Latency: algorithmic, compute per frame, mouth-to-ear\n",
        f"Machine: {setup['cpu_count']} CPUs ({setup['machine']}), load average "
        f"{_load(setup['load_average'])} at the start; torch {setup['torch']} on "
        f"{setup['torch_threads']} thread(s), OMP_NUM_THREADS={setup['omp_num_threads']}. "
        f"Input: {setup['audio']}.\n",
        f"Models: {models_line(data['compute'] or data['calls'])}.\n",
        "## Algorithmic latency\n",
        "One frame (the encoder needs all of it) plus the codec's lookahead.\n",
        markdown_table(
            ["codec", "frame ms", "lookahead ms", "algorithmic ms", "lookahead from"],
            [
                [entry["codec"], number(entry["frame_ms"], 1), number(entry["lookahead_ms"], 1),
                 number(entry["total_ms"], 1), entry["source"]]
                for entry in data["algorithmic"]
            ],
        ),
        "## Compute per 20 ms frame, one thread\n",
        f"{setup['frames']} frames per condition after {setup['warmup_frames']} warm-up frames, "
        f"the conditions taking turns in blocks of {setup['block_frames']} frames. Times in ms; "
        "enc+dec is encode + decode of the same frame; the real-time factor is its mean / 20 ms. "
        "rtcodec runs on its numpy fast path unless the row says PyTorch reference.\n",
        compute_table(data["compute"]),
        *speed_up_lines(data["compute"]),
        "## Mouth-to-ear over a real aiortc call on loopback\n",
        f"Calls of {setup['call_seconds']:g} s of speech, paced in real time, caller to callee on "
        "this host, straight over loopback or through the netsim UDP relay (base delay plus "
        "normal jitter of the given standard deviation, both directions). Measured "
        "capture->playout: from the caller's source handing a frame over (before encoding) to "
        "the callee handing its decoded frame to the sink: encode + network + jitter buffer + "
        "decode. Adding the algorithmic latency gives mouth-to-ear (sound device buffers "
        "excluded). Breakdown of the p50: compute = median encode + decode in the call, jitter "
        "buffer = median wait in it, network + transport = the rest (relay, UDP, DTLS, SCTP, "
        "aiortc, event-loop handoffs).\n",
        calls_table(data["calls"]),
        "## Targets (reported, not enforced)\n",
        targets_table(data["checks"]),
    ]
    return "\n".join(sections)


def _load(load_average: list[float] | None) -> str:
    return "n/a" if load_average is None else " / ".join(f"{value:.2f}" for value in load_average)


def compute_table(results: Sequence[Entry]) -> str:
    columns = [(direction, statistic) for direction in DIRECTIONS for statistic in STATISTICS]
    header = [
        "condition",
        *(f"{DIRECTION_TITLES[d]} {s.removesuffix('_ms')}" for d, s in columns),
        "RTF enc+dec",
    ]
    rows = [
        [
            result["label"],
            *(number(result[direction][statistic], 3) for direction, statistic in columns),
            number(result["rtf"], 4),
        ]
        for result in results
    ]
    return markdown_table(header, rows) if rows else "n/a\n"


def speed_up_lines(results: Sequence[Entry]) -> list[str]:
    """The fast path's speed-up over the PyTorch reference at the same rate, from the p50s."""
    lines = []
    for reference in (result for result in results if result["variant"]):
        fast = next(
            (result for result in results if result["codec"] == reference["codec"]
             and result["kbps"] == reference["kbps"] and not result["variant"]), None,
        )
        if fast is None:
            continue
        ratios = ", ".join(
            f"{DIRECTION_TITLES[direction]} x{reference[direction]['p50_ms'] / fast[direction]['p50_ms']:.1f}"
            for direction in DIRECTIONS
        )
        lines.append(f"Fast path against the {reference['variant']} at {fast['kbps']:g} kbps "
                     f"(p50): {ratios}.\n")
    return lines


def calls_table(results: Sequence[Entry]) -> str:
    header = [
        "codec", "network", "measured capture->playout p50 / p95", "+ algorithmic",
        "= mouth-to-ear p50 / p95", "compute p50 (enc + dec)", "jitter buffer p50",
        "network + transport", "jitter target", "played / lost / late / concealed",
    ]
    rows = []
    for result in results:
        stats, parts = result["callee"], result["breakdown_ms"] or {}
        rows.append([
            f"{result['codec']} {result['kbps']:g} kbps",
            result["network"]["label"],
            f"{number(result['measured']['p50_ms'], 1)} / {number(result['measured']['p95_ms'], 1)}",
            number(result["algorithmic_ms"], 1),
            f"**{number(result['mouth_to_ear']['p50_ms'], 1)}** / "
            f"{number(result['mouth_to_ear']['p95_ms'], 1)}",
            f"{number(parts.get('compute'), 2)} ({number(result['encode_p50_ms'], 2)} + "
            f"{number(result['decode_p50_ms'], 2)})",
            number(result["jitter_buffer_p50_ms"], 1),
            number(parts.get("network"), 1),
            number(result["jitter_target_ms"], 0),
            f"{stats['frames_played']} / {stats['lost']} / {stats['late']} / {stats['concealed']}",
        ])
    if not rows:
        return "n/a\n"
    return markdown_table(header, rows) + (
        "\nAll times in ms. The jitter buffer plays a packet at the first playout tick after it "
        "arrives (its target only decides how long to hold for a missing one), so on loopback "
        "its wait is mostly the phase between the caller's 20 ms send clock and the callee's "
        "playout tick: anywhere from 0 to 20 ms from one call to the next, plus 20 ms for each "
        "frame it held (a held frame is concealed, even without loss).\n"
    )


def targets_table(checks: Sequence[Entry]) -> str:
    rows = [
        [check["what"], number(check["value_ms"], 2), f"<= {check['target_ms']:g}",
         "n/a" if check["met"] is None else ("yes" if check["met"] else "**no**")]
        for check in checks
    ]
    return markdown_table(["what", "ms", "target ms", "met"], rows) if rows else "n/a\n"


def plot_breakdown(data: Entry) -> Figure:
    """Mouth-to-ear p50 of every call as stacked bars of its parts, p95 marked."""
    calls = [result for result in data["calls"] if result["breakdown_ms"] is not None]
    figure, (axis,) = new_figure(1, width=9.0, height=max(2.5, 0.55 * len(calls) + 1.5))
    positions = np.arange(len(calls))[::-1]
    left = np.zeros(len(calls))
    for part, (title, color) in BREAKDOWN.items():
        widths = np.array([result["breakdown_ms"][part] for result in calls], dtype=float)
        axis.barh(positions, widths, left=left, color=color, label=title, height=0.6)
        left += widths
    for position, total in zip(positions, left, strict=True):
        axis.annotate(f"{total:.1f}", (total, position), xytext=(3, 0),
                      textcoords="offset points", va="center", fontsize="small")
    p95 = [result["mouth_to_ear"]["p95_ms"] for result in calls]
    axis.plot(p95, positions, "k|", markersize=16, label="mouth-to-ear p95")
    axis.axvline(TARGETS["mouth_to_ear_p50_ms"], color="red", linestyle="--",
                 label=f"target p50 (rtcodec, loopback): {TARGETS['mouth_to_ear_p50_ms']:g} ms")
    axis.set_yticks(positions, [result["label"] for result in calls])
    for tick, result in zip(axis.get_yticklabels(), calls, strict=True):
        tick.set_color(CODEC_COLORS.get(result["codec"], "black"))
    axis.set(xlabel="ms (bars: parts of the mouth-to-ear p50)")
    axis.grid(axis="x", alpha=0.3)
    figure.legend(fontsize="small", loc="outside lower center", ncols=3)
    figure.suptitle("Mouth-to-ear latency over a real aiortc call, one host")
    return figure


def plot_frames(timings: Sequence[Timing]) -> Figure:
    """Histograms of per-frame encode and decode times, one line per condition, log time axis."""
    figure, axes = new_figure(2, width=6.0)
    if not timings:
        return figure
    milliseconds = np.concatenate(
        [timing.seconds[d] for timing in timings for d in ("encode", "decode")]
    ) * 1000
    bins = np.geomspace(max(milliseconds.min(), 1e-3), milliseconds.max() * 1.01, 60)
    for axis, direction in zip(axes, ("encode", "decode"), strict=True):
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
    figure.suptitle("Per-frame streaming compute time, one thread")
    return figure


if __name__ == "__main__":
    main()
