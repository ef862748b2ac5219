"""Fuzz campaign: a call's receive path (Packet.parse -> jitter buffer -> decoder) against a long
hostile packet stream, for rtcodec (a tiny untrained model) and Opus; then, when atheris is
installed, libFuzzer's coverage-guided search (benchmarks/fuzz_atheris.py).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fuzz.py --packets 100000

The stream, its mutations and the receiver are tests/fuzzing.py's, driven by a seeded
`random.Random`: the same seed replays the same campaign. An exception that escapes a receiver is
a crash, counted (the campaign goes on); the decoded audio must be finite and within [-1, 1], the
jitter buffer within its capacity. The receivers' memory is traced (tracemalloc) throughout; the
messages are made before. Writes fuzz.json into --out; exits 1 if anything broke.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the shared harness

from common import BENCHMARKS_DIR, DEFAULT_OUT, non_negative_int, positive_int, use_one_thread
from fuzzing import (
    FUZZED_MODEL,
    CountingDecoder,
    HostileStream,
    OpusPackets,
    PacketMaker,
    Receiver,
    random_events,
    rtcodec_packet,
)
from rtcodec.codec import untrained
from rtcodec.config import FRAME_RATE
from rtcodec.opus import OpusStreamDecoder
from rtcodec.transport.jitter import JitterBuffer

DEFAULT_PACKETS = 100_000
"""Messages per codec."""
JITTER_CAPACITY = FRAME_RATE
"""The capacity of the session's default JitterBuffer (one second)."""
MEMORY_CHECKPOINTS = 10
"""Traced memory is sampled this many times, evenly, through each campaign."""
MAX_CRASH_KINDS = 10
ATHERIS_SCRIPT = BENCHMARKS_DIR / "fuzz_atheris.py"
ATHERIS_SEEDS = 20
"""Valid packets per codec in the seed corpus of the atheris run."""
ATHERIS_MAX_LEN = 4096
ATHERIS_TIMEOUT_SECONDS = 3600

Entry = dict[str, Any]
"""JSON-ready result."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packets", type=positive_int, default=DEFAULT_PACKETS, help="messages per codec")
    parser.add_argument("--atheris-runs", type=non_negative_int, default=DEFAULT_PACKETS,
                        help="libFuzzer inputs (0: no atheris run)")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser.parse_args(argv)


@dataclass
class Delivery:
    """What happened while a campaign's messages went through a receiver."""

    crashes: Counter[str]
    """Escaped exceptions, by kind (see `crash_kind`)."""
    traced_bytes: list[int]
    """Traced memory at MEMORY_CHECKPOINTS evenly spaced messages."""
    traced_peak_bytes: int
    seconds: float


def campaign(decoder: CountingDecoder, valid: PacketMaker, foreign: PacketMaker, packets: int,
             seed: int) -> Entry:
    """`packets` hostile messages through a fresh receiver around `decoder`."""
    rng = random.Random(seed)
    messages = list(HostileStream(valid, foreign, rng).messages(random_events(rng, packets)))
    receiver = Receiver(decoder, JitterBuffer(capacity=JITTER_CAPACITY))
    delivery = deliver(receiver, messages)
    return {
        "seed": seed,
        "seconds": round(delivery.seconds, 1),
        **asdict(receiver.stats),
        "corrupt_packets": decoder.corrupt_packets,
        "crashes": delivery.crashes.total(),
        "crash_kinds": dict(delivery.crashes.most_common(MAX_CRASH_KINDS)),
        "jitter": {**asdict(receiver.jitter.counters), "capacity": JITTER_CAPACITY},
        "largest_message_bytes": max(len(message) for message, _ in messages),
        "traced_peak_bytes": delivery.traced_peak_bytes,
        "traced_bytes_at_checkpoints": delivery.traced_bytes,
    }


def deliver(receiver: Receiver, messages: Sequence[tuple[bytes, float]]) -> Delivery:
    """Every message to `receiver`, under tracemalloc; a crash is counted and the next goes on."""
    crashes: Counter[str] = Counter()
    traced: list[int] = []
    every = max(len(messages) // MEMORY_CHECKPOINTS, 1)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        for index, (message, arrival) in enumerate(messages, 1):
            try:
                receiver.arrive(message, arrival)
            except Exception as error:  # a crash: counted, and the campaign goes on
                crashes[crash_kind(error)] += 1
            if index % every == 0:
                traced.append(tracemalloc.get_traced_memory()[0])
        return Delivery(crashes, traced, tracemalloc.get_traced_memory()[1], time.perf_counter() - start)
    finally:
        tracemalloc.stop()


def crash_kind(error: Exception) -> str:
    """The exception's type and message, numbers masked: one entry per kind of crash."""
    return f"{type(error).__name__}: {re.sub(r'[0-9]+', 'N', str(error))}"


def atheris_run(runs: int, seed: int, seeds: Sequence[bytes], out: Path) -> Entry:
    """`runs` libFuzzer inputs through fuzz_atheris.py, from a corpus of `seeds`."""
    if not runs:
        return {"ran": False, "reason": "--atheris-runs 0"}
    if importlib.util.find_spec("atheris") is None:
        return {"ran": False, "reason": "atheris is not installed (pip install atheris)"}
    with tempfile.TemporaryDirectory() as corpus:
        for index, packet in enumerate(seeds):
            (Path(corpus) / f"seed{index}").write_bytes(packet)
        command = [sys.executable, str(ATHERIS_SCRIPT), f"-runs={runs}", f"-seed={seed + 1}",  # 0: random
                   f"-max_len={ATHERIS_MAX_LEN}", f"-artifact_prefix={out}/atheris-", corpus]
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, timeout=ATHERIS_TIMEOUT_SECONDS)
    log = result.stdout + result.stderr
    done = re.search(r"Done (\d+) runs", log)
    coverage = re.findall(r"cov: (\d+)", log)
    return {
        "ran": True,
        "runs": int(done[1]) if done else None,
        "seconds": round(time.perf_counter() - start, 1),
        "crashed": result.returncode != 0,
        "coverage_edges": int(coverage[-1]) if coverage else None,
        "log_tail": log.splitlines()[-20:] if result.returncode else [],
    }


def totals(campaigns: dict[str, Entry], atheris: Entry) -> Entry:
    entries = campaigns.values()
    return {
        "packets_fuzzed": sum(entry["messages"] for entry in entries) + (atheris.get("runs") or 0),
        "rejected": sum(entry["rejected"] for entry in entries),
        "crashes": sum(entry["crashes"] for entry in entries) + int(atheris.get("crashed", False)),
        "max_abs_audio": max(entry["max_abs"] for entry in entries),
        "non_finite_samples": sum(entry["non_finite_samples"] for entry in entries),
        "malformed_frames": sum(entry["malformed_frames"] for entry in entries),
        "jitter_beyond_capacity": any(
            entry["max_buffered_frames"] > entry["jitter"]["capacity"] for entry in entries
        ),
        "traced_peak_bytes": max(entry["traced_peak_bytes"] for entry in entries),
        "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def broken(summary: Entry) -> bool:
    total = summary["totals"]
    return bool(total["crashes"] or total["non_finite_samples"] or total["malformed_frames"]
                or total["max_abs_audio"] > 1.0 or total["jitter_beyond_capacity"])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    use_one_thread()
    opus = OpusPackets()
    campaigns = {
        "rtcodec": campaign(untrained(FUZZED_MODEL).stream_decoder(), rtcodec_packet, opus, args.packets, args.seed),
        "opus": campaign(OpusStreamDecoder(), opus, rtcodec_packet, args.packets, args.seed + 1),
    }
    rng = random.Random(args.seed)
    seeds = [make(seq, rng) for make in (rtcodec_packet, opus) for seq in range(ATHERIS_SEEDS)]
    atheris = atheris_run(args.atheris_runs, args.seed, seeds, args.out)
    summary = {
        "settings": {"packets_per_codec": args.packets, "atheris_runs": args.atheris_runs,
                     "seed": args.seed, "rtcodec_model": json.loads(FUZZED_MODEL.to_json())},
        "totals": totals(campaigns, atheris),
        "campaigns": campaigns,
        "atheris": atheris,
    }
    (args.out / "fuzz.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    print(json.dumps(summary["totals"], indent=2))
    return 1 if broken(summary) else 0


if __name__ == "__main__":
    sys.exit(main())
