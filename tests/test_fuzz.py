"""Packet fuzzing of the parser and of a call's whole receive path (jitter buffer + decoder), for
rtcodec (a tiny untrained model) and Opus: see tests/fuzzing.py; benchmarks/fuzz.py runs the long
campaign."""

from __future__ import annotations

import random
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fuzzing import (
    CountingDecoder,
    HostileStream,
    OpusPackets,
    PacketMaker,
    Receiver,
    mutate,
    rtcodec_packet,
)
from rtcodec.bitstream import SEQ_MODULO, Packet, PacketError
from rtcodec.codec import Codec, untrained
from rtcodec.config import CodecConfig
from rtcodec.opus import OpusStreamDecoder
from rtcodec.transport.jitter import JitterBuffer

TINY = CodecConfig(channels=4, latent_dim=32, bottleneck_hidden=32)
CODECS = ("rtcodec", "opus")
CAPACITY = 20
"""Jitter buffer capacity in the fuzzed receivers: small, so that streams overflow it often."""
STREAM_MESSAGES = 300
WARM_UP_MESSAGES = 1_000
MEASURED_MESSAGES = 3_000
MAX_GROWTH_BYTES = 32 * 1024
"""Traced memory that MEASURED_MESSAGES may add: about 10 bytes a message."""


@pytest.fixture(scope="module")
def tiny_codec() -> Codec:
    return untrained(TINY)


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
    data = mutate(makers[codec](seq, rng), rng)
    try:
        packet = Packet.parse(data)
    except PacketError:
        return
    assert packet.to_bytes() == data


@pytest.mark.parametrize("codec", CODECS)
@settings(max_examples=25, deadline=None)
@given(rng=st.randoms(use_true_random=False))
def test_a_hostile_stream_never_breaks_the_receive_path(
    tiny_codec: Codec, makers: dict[str, PacketMaker], codec: str, rng: random.Random
) -> None:
    receiver = receiver_for(codec, tiny_codec)
    for message, arrival in hostile_stream(codec, makers, rng).messages(STREAM_MESSAGES):
        receiver.arrive(message, arrival)
    stats, counters = receiver.stats, receiver.jitter.counters
    assert stats.frames > 0 and stats.malformed_frames == 0
    assert stats.non_finite_samples == 0 and stats.max_abs <= 1.0
    assert stats.max_buffered_frames <= CAPACITY
    parsed = stats.messages - stats.rejected
    assert counters.accepted + counters.duplicate + counters.late == parsed


@pytest.mark.parametrize("codec", CODECS)
def test_a_long_hostile_stream_reaches_every_counter(
    tiny_codec: Codec, makers: dict[str, PacketMaker], codec: str
) -> None:
    receiver = receiver_for(codec, tiny_codec)
    for message, arrival in hostile_stream(codec, makers, random.Random(7)).messages(2_000):
        receiver.arrive(message, arrival)
    counters = receiver.jitter.counters
    assert receiver.stats.rejected > 100
    assert counters.duplicate > 0 and counters.late > 0 and counters.overflow > 0
    assert counters.resyncs > 0 and counters.concealed > 0
    assert receiver.decoder.corrupt_packets > 0  # foreign packets, and for Opus mutated payloads


def test_memory_stays_bounded_over_a_long_hostile_stream(
    tiny_codec: Codec, makers: dict[str, PacketMaker]
) -> None:
    """rtcodec: every stored packet is small (an oversized one fails to parse), so the traced
    memory must not grow with the number of messages."""
    receiver = receiver_for("rtcodec", tiny_codec)
    stream = hostile_stream("rtcodec", makers, random.Random(3)).messages(
        WARM_UP_MESSAGES + MEASURED_MESSAGES
    )
    tracemalloc.start()
    try:
        for index, (message, arrival) in enumerate(stream):
            if index == WARM_UP_MESSAGES:
                before, _ = tracemalloc.get_traced_memory()
            receiver.arrive(message, arrival)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < MAX_GROWTH_BYTES
