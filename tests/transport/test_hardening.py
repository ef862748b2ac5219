"""Hardening of a call between two real aiortc peers: a peer that floods the other with copies and
oversized messages, and signalling whose DTLS fingerprint was tampered with."""

from __future__ import annotations

import asyncio
import gc
import re
from pathlib import Path

import pytest
import soundfile

from calls import FrameList, meet, talker
from rtcodec.audio import WavFileSink
from rtcodec.config import FRAME_RATE, FRAME_SAMPLES
from rtcodec.opus import OpusStreamDecoder
from rtcodec.transport import CallStats, Peer, PeerError, Session
from rtcodec.transport.jitter import FRAME_SECONDS
from rtcodec.transport.peer import (
    INCOMING_QUEUE_SIZE,
    MESSAGE_BURST,
    MESSAGE_RATE,
    Message,
    MessageRateLimit,
)
from rtcodec.transport.session import MAX_PACKET_BYTES, OPEN_TIMEOUT

FLOOD_SECONDS = 3.0
COPIES = 10
"""The flooding peer sends every packet this many times, and as many oversized messages: each at
10x the packet rate."""
OVERSIZED = bytes(2 * MAX_PACKET_BYTES)
FRAMES_OFF = 3
"""How many frames the received file's length may be off by."""
ARRIVED_AT_LEAST = 0.8
"""Share of the genuine packets that must get through the flood: each packet's first copy leads its
frame's messages, so only a stalled receiver, which then meets many frames' messages at once,
loses some."""
OPENING_SLACK_SECONDS = 0.25
"""The flooded side's stats start when its session sees the channel open; messages may arrive a
little before."""
CALL_LIMIT = 20.0
"""Seconds after which a test's call counts as hung."""
WAITING_TIMEOUT = 2.0
"""Open timeout of the side that is not told about the tampered fingerprint."""
PROMPTLY = 3.0
"""Seconds within which the side that sees the tampered fingerprint must give up."""


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FloodingPeer(Peer):
    """A hostile peer: each packet goes out COPIES times, each copy with an oversized message."""

    def send(self, message: Message) -> None:
        if isinstance(message, str):
            super().send(message)
            return
        for _ in range(COPIES):
            super().send(message)
            super().send(OVERSIZED)


def passed(limit: MessageRateLimit, messages: int) -> int:
    """How many of `messages` arriving at once the rate limit lets through."""
    return sum(limit.allow() for _ in range(messages))


def test_the_rate_limit_passes_a_burst_and_refills_up_to_the_burst() -> None:
    clock = FakeClock()
    limit = MessageRateLimit(clock)
    assert passed(limit, 3 * MESSAGE_BURST) == MESSAGE_BURST
    clock.now += 0.1
    assert passed(limit, MESSAGE_BURST) == round(0.1 * MESSAGE_RATE)
    clock.now += 10.0  # a long stall: the packets held back arrive together
    assert passed(limit, 3 * MESSAGE_BURST) == MESSAGE_BURST


def test_the_rate_limit_never_drops_an_honest_peer_and_cuts_a_flood_to_the_rate() -> None:
    clock = FakeClock()
    limit = MessageRateLimit(clock)
    seconds = 10
    for frame in range(seconds * FRAME_RATE):
        clock.now = frame * FRAME_SECONDS
        assert passed(limit, 2) == 2  # two messages every frame: twice what an honest peer sends
    let_through = 0
    for frame in range(seconds * FRAME_RATE):
        clock.now = (seconds * FRAME_RATE + frame) * FRAME_SECONDS
        let_through += passed(limit, COPIES)
    assert seconds * MESSAGE_RATE <= let_through <= MESSAGE_BURST + seconds * MESSAGE_RATE


def test_messages_nobody_reads_wait_in_a_bounded_queue() -> None:
    extra = 20

    async def exchange() -> Peer:
        caller, callee = await meet()
        await asyncio.gather(caller.wait_open(10.0), callee.wait_open(10.0))
        for index in range(INCOMING_QUEUE_SIZE + extra):
            caller.send(index.to_bytes(2, "big"))
            await asyncio.sleep(2 / MESSAGE_RATE)  # half the rate limit
        while callee.incoming.qsize() + callee.dropped.total < INCOMING_QUEUE_SIZE + extra:
            await asyncio.sleep(0.01)
        await asyncio.gather(caller.close(), callee.close())
        return callee

    callee = asyncio.run(asyncio.wait_for(exchange(), CALL_LIMIT))
    assert callee.incoming.qsize() == INCOMING_QUEUE_SIZE
    assert (callee.dropped.queue_full, callee.dropped.rate_limited) == (extra, 0)


def test_a_flooding_peer_is_cut_to_the_rate_limit_and_the_call_goes_on(tmp_path: Path) -> None:
    output = tmp_path / "received.wav"

    async def call() -> CallStats:
        flooder, callee_peer = await meet(caller=FloodingPeer())
        callee = Session(callee_peer, sink=WavFileSink(output), decoder=OpusStreamDecoder())
        _, stats = await asyncio.wait_for(
            asyncio.gather(talker(flooder, FLOOD_SECONDS).run(), callee.run()), CALL_LIMIT
        )
        return stats

    stats = asyncio.run(call())
    frames = round(FLOOD_SECONDS * FRAME_RATE)
    assert stats.end_reason == "the peer hung up"
    assert stats.flooded > 0 and stats.rejected > 0
    let_through = stats.packets_received + stats.rejected
    assert let_through <= MESSAGE_BURST + MESSAGE_RATE * (stats.duration_s + OPENING_SLACK_SECONDS)
    assert stats.packets_received - stats.duplicate >= ARRIVED_AT_LEAST * frames
    received_frames = len(soundfile.read(output)[0]) / FRAME_SAMPLES
    assert abs(received_frames - frames) <= FRAMES_OFF


def flip_fingerprint(sdp: str) -> str:
    """`sdp` with the first byte of every DTLS fingerprint inverted: another certificate's."""

    def flip(match: re.Match[str]) -> str:
        return f"{match[1]}{int(match[2], 16) ^ 0xFF:02X}"

    tampered, count = re.subn(r"(a=fingerprint:\S+ )([0-9A-Fa-f]{2})", flip, sdp)
    assert count > 0, "no fingerprint to tamper with"
    return tampered


async def failure(session: Session, open_timeout: float, started: float) -> tuple[PeerError, float]:
    """The PeerError that ends `session` before its call begins, and its time since `started`
    (on the event loop's clock)."""
    with pytest.raises(PeerError) as raised:
        await session.run(open_timeout)
    return raised.value, asyncio.get_running_loop().time() - started


@pytest.mark.parametrize("tampered", ["offer", "answer"])
def test_a_tampered_dtls_fingerprint_fails_promptly_and_no_media_flows(tampered: str) -> None:
    sink = FrameList()

    async def call() -> tuple[tuple[PeerError, float], tuple[PeerError, float], CallStats]:
        started = asyncio.get_running_loop().time()  # signalling included: the handshake may fail during it
        caller_peer, callee_peer = await meet(
            Peer(rewrite_sdp=flip_fingerprint if tampered == "offer" else None),
            Peer(rewrite_sdp=flip_fingerprint if tampered == "answer" else None),
        )
        caller = talker(caller_peer, 1.0)
        callee = Session(callee_peer, sink=sink, decoder=OpusStreamDecoder())
        # The side that received the tampered SDP checks the certificate against it and refuses;
        # the other side's handshake succeeds, and its channel never opens.
        refusing, waiting = (callee, caller) if tampered == "offer" else (caller, callee)
        refused, waited = await asyncio.wait_for(
            asyncio.gather(failure(refusing, OPEN_TIMEOUT, started), failure(waiting, WAITING_TIMEOUT, started)),
            CALL_LIMIT,
        )
        return refused, waited, caller.stats()

    (refusal, refusal_seconds), (wait, wait_seconds), caller = asyncio.run(call())
    assert "DTLS handshake" in str(refusal) and "fingerprint" in str(refusal)
    assert refusal_seconds < PROMPTLY
    assert f"did not open within {WAITING_TIMEOUT:g} s" in str(wait)
    assert wait_seconds < WAITING_TIMEOUT + PROMPTLY
    assert caller.packets_sent == 0 and not sink.frames and sink.closed


def test_a_close_cancelled_while_the_remote_hangs_up_still_closes_cleanly() -> None:
    """aiortc starts its own close when the remote hangs up; cancelling ours at that moment must
    neither leave the connection half closed nor leave a failed task behind."""
    errors: list[dict[str, object]] = []

    async def hang_ups() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context))
        caller, callee = await meet()
        await asyncio.gather(caller.wait_open(10.0), callee.wait_open(10.0))
        await callee.close()
        closing = asyncio.create_task(caller.close())
        await asyncio.sleep(0)
        closing.cancel()
        await asyncio.gather(closing, return_exceptions=True)
        await asyncio.wait_for(caller.closed.wait(), 5.0)
        shutdown = caller._closing
        assert shutdown is not None and shutdown.done() and not shutdown.cancelled()  # ran to its end
        await asyncio.sleep(0.5)

    asyncio.run(hang_ups())
    gc.collect()
    assert errors == []


def test_hanging_up_while_the_channel_opens_ends_the_call_at_once() -> None:
    sink = FrameList()

    async def lonely_call() -> tuple[CallStats, float]:
        session = Session(Peer(), sink=sink, decoder=OpusStreamDecoder())  # nobody will answer
        loop = asyncio.get_running_loop()
        started = loop.time()
        loop.call_later(0.2, session.hang_up)
        return await session.run(open_timeout=OPEN_TIMEOUT), loop.time() - started

    stats, seconds = asyncio.run(lonely_call())
    assert stats.end_reason == "hung up" and seconds < 2.0
    assert sink.closed and not sink.frames
