"""Packet fuzzing of the parser and of a call's whole receive path (jitter buffer + decoder), for
rtcodec (a tiny untrained model) and Opus: see tests/fuzzing.py; benchmarks/fuzz.py runs the long
campaign."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import random
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fuzzing import (
    FUZZED_MODEL,
    CountingDecoder,
    Event,
    HostileStream,
    OpusPackets,
    PacketMaker,
    Receiver,
    mutate,
    random_events,
    rtcodec_packet,
)
from rtcodec.bitstream import SEQ_MODULO, Packet, PacketError
from rtcodec.codec import Codec, untrained
from rtcodec.opus import OpusStreamDecoder
from rtcodec.transport.jitter import FRAME_SECONDS, JitterBuffer

CODECS = ("rtcodec", "opus")
CAPACITY = 20
"""Jitter buffer capacity in the fuzzed receivers: small, so that streams overflow it often."""
STREAM_EVENTS = 200
WARM_UP_MESSAGES = 5_000
MEASURED_MESSAGES = 3_000
MAX_GROWTH_BYTES = 32 * 1024
"""Memory that the receiver may keep from MEASURED_MESSAGES: about 10 bytes a message."""
FUZZ_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz.py"


@pytest.fixture(scope="module")
def tiny_codec() -> Codec:
    return untrained(FUZZED_MODEL)


@pytest.fixture(scope="module")
def makers() -> dict[str, PacketMaker]:
    """A valid packet maker per codec."""
    return {"rtcodec": rtcodec_packet, "opus": OpusPackets(seconds=1.0)}


def receiver_for(codec: str, tiny_codec: Codec) -> Receiver:
    decoder: CountingDecoder = tiny_codec.stream_decoder() if codec == "rtcodec" else OpusStreamDecoder()
    return Receiver(decoder, JitterBuffer(max_frames=CAPACITY // 2, capacity=CAPACITY))


def hostile_stream(codec: str, makers: dict[str, PacketMaker], rng: random.Random) -> HostileStream:
    """A stream of `codec`'s packets, with the other codec's as the foreign ones."""
    foreign = makers["opus" if codec == "rtcodec" else "rtcodec"]
    return HostileStream(makers[codec], foreign, rng)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(CODECS), st.integers(0, SEQ_MODULO - 1), st.randoms(use_true_random=False))
def test_mutated_packets_parse_canonically_or_raise_packet_error(
    makers: dict[str, PacketMaker], codec: str, seq: int, rng: random.Random
) -> None:
    original = makers[codec](seq, rng)
    assert Packet.parse(original).to_bytes() == original
    data = mutate(original, rng)
    try:
        packet = Packet.parse(data)
    except PacketError:
        return
    assert packet.to_bytes() == data


@pytest.mark.parametrize(("codec", "floor"), [("rtcodec", 0.06), ("opus", 0.25)])
def test_the_parser_accepts_the_mutated_packets_that_are_still_well_formed(
    makers: dict[str, PacketMaker], codec: str, floor: float
) -> None:
    """A parser that refused too much would pass the test above: here a fixed stream of mutated
    packets must parse at about its measured rate (12.6 % for rtcodec, 49 % for Opus; floors at
    half), rtcodec's with redundancy among them."""
    rng = random.Random(0)
    parsed = []
    for seq in range(3000):
        with contextlib.suppress(PacketError):
            parsed.append(Packet.parse(mutate(makers[codec](seq, rng), rng)))
    assert len(parsed) >= floor * 3000
    assert codec == "opus" or any(packet.redundancy for packet in parsed)


@pytest.mark.parametrize("codec", CODECS)
@settings(max_examples=25, deadline=None)
@given(
    events=st.lists(st.sampled_from(Event), min_size=STREAM_EVENTS // 4, max_size=STREAM_EVENTS),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_hostile_stream_never_breaks_the_receive_path(
    tiny_codec: Codec, makers: dict[str, PacketMaker], codec: str, events: list[Event], seed: int
) -> None:
    receiver = receiver_for(codec, tiny_codec)
    for message, arrival in hostile_stream(codec, makers, random.Random(seed)).messages(events):
        receiver.arrive(message, arrival)
    stats, counters = receiver.stats, receiver.jitter.counters
    assert stats.malformed_frames == 0 and stats.non_finite_samples == 0 and stats.max_abs <= 1.0
    assert stats.max_buffered_frames <= CAPACITY
    parsed = stats.messages - stats.rejected
    assert counters.accepted + counters.duplicate + counters.late + counters.outlier == parsed


@pytest.mark.parametrize("codec", CODECS)
def test_a_long_hostile_stream_reaches_every_counter(
    tiny_codec: Codec, makers: dict[str, PacketMaker], codec: str
) -> None:
    """Some counters (overflow) need rare sequences of events: the stream goes on, 1,000 events at
    a time, until every counter has moved, within 10,000 events (seed 3 takes 1,000 for Opus and
    3,000 for rtcodec; seed 7 once never overflowed Opus's buffer in 10,000)."""
    receiver = receiver_for(codec, tiny_codec)
    rng = random.Random(3)
    stream = hostile_stream(codec, makers, rng)
    counters = receiver.jitter.counters
    for _ in range(10):
        for message, arrival in stream.messages(random_events(rng, 1_000)):
            receiver.arrive(message, arrival)
        reached = [counters.duplicate, counters.late, counters.overflow, counters.resyncs, counters.concealed,
                   counters.outlier, receiver.decoder.corrupt_packets]  # corrupt: foreign, and mutated Opus
        if all(reached):
            break
    assert all(reached), counters
    stats = receiver.stats
    assert stats.frames > stats.messages / 2 and stats.rejected > 0.05 * stats.messages


def test_memory_stays_bounded_over_a_long_hostile_stream(
    tiny_codec: Codec, makers: dict[str, PacketMaker]
) -> None:
    """rtcodec: every stored packet is small (an oversized one fails to parse), so once warmed up
    (numpy's and Python's caches filled) the receiver must not keep more memory as messages go."""
    receiver = receiver_for("rtcodec", tiny_codec)
    rng = random.Random(3)
    events = random_events(rng, WARM_UP_MESSAGES + MEASURED_MESSAGES)
    stream = list(hostile_stream("rtcodec", makers, rng).messages(events))
    for message, arrival in stream[:WARM_UP_MESSAGES]:
        receiver.arrive(message, arrival)
    tracemalloc.start()
    try:
        for message, arrival in stream[WARM_UP_MESSAGES:]:
            receiver.arrive(message, arrival)
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept < MAX_GROWTH_BYTES


def test_one_packet_with_a_wild_sequence_number_does_not_mute_the_call(
    tiny_codec: Codec, makers: dict[str, PacketMaker]
) -> None:
    receiver = receiver_for("opus", tiny_codec)
    rng = random.Random(0)
    packets = [makers["opus"](seq, rng) for seq in range(300)]
    packets.insert(100, makers["opus"](20_000, rng))
    for index, packet in enumerate(packets):
        receiver.arrive(packet, index * FRAME_SECONDS + 0.01)
    counters = receiver.jitter.counters
    assert counters.late <= CAPACITY and counters.outlier == 1 and counters.resyncs == 0


def test_the_campaign_script_writes_its_summary(tmp_path: Path) -> None:
    atheris_runs = 200 if importlib.util.find_spec("atheris") else 0
    command = [sys.executable, str(FUZZ_SCRIPT), "--packets", "300", "--atheris-runs",
               str(atheris_runs), "--out", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "fuzz.json").read_text())
    assert summary["totals"]["packets_fuzzed"] == 600 + atheris_runs
    assert summary["totals"]["crashes"] == 0 and summary["totals"]["rejected"] > 0
    assert set(summary["campaigns"]) == {"rtcodec", "opus"}
    assert summary["atheris"]["ran"] == bool(atheris_runs)
