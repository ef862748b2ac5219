"""The UDP impairment relay: SDP rewriting, forwarding both ways (NAT-like for addresses that
were not advertised), impairments per direction, and a whole aiortc call through it."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import soundfile

from rtcodec.audio import FileSource, WavFileSink, default_speech
from rtcodec.bitstream import Packet
from rtcodec.config import FRAME_SAMPLES, SAMPLE_RATE
from rtcodec.netsim import (
    Bernoulli,
    Delay,
    FixedPlayout,
    ImpairmentRelay,
    Network,
    RelayError,
    simulate,
)
from rtcodec.opus import OpusStreamDecoder, OpusStreamEncoder
from rtcodec.transport import CallStats, CodecChoice, Peer, Session, connect, listen

Address = tuple[str, int]


class Inbox(asyncio.DatagramProtocol):
    """A UDP socket that keeps what it receives, with the sender's address and the time."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, Address, float]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.received.put_nowait((data, (addr[0], addr[1]), asyncio.get_running_loop().time()))

    @property
    def address(self) -> Address:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    def send(self, data: bytes, to: Address) -> None:
        assert self.transport is not None
        self.transport.sendto(data, to)

    async def next(self, timeout: float = 2.0) -> tuple[bytes, Address, float]:
        return await asyncio.wait_for(self.received.get(), timeout)


async def inbox() -> Inbox:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(Inbox, local_addr=("127.0.0.1", 0))
    return protocol


def sdp_for(*candidates: tuple[str, int]) -> str:
    """A minimal data-channel SDP with these host candidates (and an IPv6 one)."""
    lines = ["v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0",
             f"m=application {candidates[0][1]} UDP/DTLS/SCTP webrtc-datachannel",
             f"c=IN IP4 {candidates[0][0]}", "a=mid:0"]
    for index, (host, port) in enumerate(candidates):
        lines.append(f"a=candidate:f{index} 1 udp {2130706431 - index} {host} {port} typ host")
    lines += ["a=candidate:f9 1 udp 2130706000 fd00::2 4444 typ host", "a=end-of-candidates",
              "a=ice-ufrag:abcd", "a=setup:actpass"]
    return "\r\n".join(lines) + "\r\n"


def test_the_advertised_sdp_names_only_the_relay() -> None:
    async def rewrite() -> tuple[str, Address]:
        async with ImpairmentRelay(Network()) as relay:
            sdp = relay.advertise("a")(sdp_for(("127.0.0.1", 5000), ("127.0.0.1", 5002)))
            return sdp, relay.address("a")

    sdp, (host, port) = asyncio.run(rewrite())
    candidates = [line for line in sdp.split("\r\n") if line.startswith("a=candidate")]
    assert candidates == [f"a=candidate:f0 1 udp 2130706431 {host} {port} typ host"]
    assert f"m=application {port} UDP/DTLS/SCTP webrtc-datachannel" in sdp
    assert f"c=IN IP4 {host}" in sdp and "a=ice-ufrag:abcd" in sdp and sdp.endswith("\r\n")
    assert "5000" not in sdp and "fd00::2" not in sdp


def test_a_side_without_an_ipv4_candidate_is_refused() -> None:
    async def rewrite() -> None:
        async with ImpairmentRelay(Network()) as relay:
            relay.advertise("b")("v=0\r\na=candidate:x 1 udp 1 fd00::2 4444 typ host\r\n")

    with pytest.raises(RelayError, match="no IPv4 UDP candidate"):
        asyncio.run(rewrite())


def test_datagrams_flow_both_ways_and_other_source_addresses_get_their_own_mapping() -> None:
    async def exchange() -> None:
        async with ImpairmentRelay(Network()) as relay:
            a, a_other, b = await inbox(), await inbox(), await inbox()
            relay.advertise("a")(sdp_for(a.address))
            relay.advertise("b")(sdp_for(b.address))
            a.send(b"ping", relay.address("b"))
            data, source, _ = await b.next()
            assert (data, source) == (b"ping", relay.address("a"))  # b sees a as advertised
            b.send(b"pong", relay.address("a"))
            assert (await a.next())[:2] == (b"pong", relay.address("b"))
            # a checks from an address it did not advertise: b sees a new (peer-reflexive)
            # address, and its reply reaches that socket of a, from where a sent.
            a_other.send(b"ping 2", relay.address("b"))
            data, mapped, _ = await b.next()
            assert data == b"ping 2" and mapped != relay.address("a")
            b.send(b"pong 2", mapped)
            assert (await a_other.next())[:2] == (b"pong 2", relay.address("b"))
            assert a.received.empty()
            a.send(b"again", relay.address("b"))
            assert (await b.next())[1] == relay.address("a")  # mappings are stable

    asyncio.run(exchange())


def test_a_mapping_socket_that_cannot_be_opened_is_counted_and_its_address_stays_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def out_of_sockets(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    async def exchange() -> None:
        async with ImpairmentRelay(Network()) as relay:
            a, a_other, b = await inbox(), await inbox(), await inbox()
            relay.advertise("a")(sdp_for(a.address))
            relay.advertise("b")(sdp_for(b.address))
            monkeypatch.setattr(asyncio.get_running_loop(), "create_datagram_endpoint", out_of_sockets)
            for _ in range(3):
                a_other.send(b"unmapped", relay.address("b"))
            a.send(b"mapped", relay.address("b"))
            assert (await b.next())[0] == b"mapped"  # the relay carries on for the others
            with pytest.raises(TimeoutError):
                await b.next(timeout=0.3)
            assert relay.socket_errors == 1

    asyncio.run(exchange())


def test_each_direction_has_its_own_impairments() -> None:
    count = 400

    async def exchange() -> tuple[int, int, list[float], dict[str, object]]:
        lossy = Network(loss=Bernoulli(0.3))
        slow = Network(delay=Delay(base_ms=60))
        async with ImpairmentRelay(lossy, reverse=slow, seed=1) as relay:
            a, b = await inbox(), await inbox()
            relay.advertise("a")(sdp_for(a.address))
            relay.advertise("b")(sdp_for(b.address))
            loop = asyncio.get_running_loop()
            for index in range(count):
                a.send(index.to_bytes(2, "big"), relay.address("b"))
                if index % 20 == 19:
                    await asyncio.sleep(0.002)  # do not overrun the sockets' buffers
            await asyncio.sleep(0.3)
            delays = []
            for _ in range(20):
                sent = loop.time()
                b.send(b"slow", relay.address("a"))
                delays.append((await a.next())[2] - sent)
            return b.received.qsize(), a.received.qsize(), delays, relay.counters

    arrived, leftover, delays, counters = asyncio.run(exchange())
    assert counters["a->b"].sent == count  # type: ignore[attr-defined]
    assert arrived == count - counters["a->b"].lost  # type: ignore[attr-defined]
    assert arrived / count == pytest.approx(0.7, abs=0.07)
    assert leftover == 0 and counters["b->a"].lost == 0  # type: ignore[attr-defined]
    assert min(delays) >= 0.06 and np.median(delays) < 0.3  # 60 ms, plus what a loaded machine adds


# --- concealment checks ----------------------------------------------------------------------


def normal_range(clean: np.ndarray) -> float:
    """The clean signal's largest sample-to-sample step."""
    return float(np.abs(np.diff(clean)).max())


def clicks(received: np.ndarray, concealed: np.ndarray, reference: float) -> list[int]:
    """Frame boundaries next to a concealed frame where the step exceeds `reference`."""
    boundaries = np.arange(1, len(concealed)) * FRAME_SAMPLES
    steps = np.abs(received[boundaries] - received[boundaries - 1])
    touched = concealed[1:] | concealed[:-1]
    return [int(b) for b, step, near in zip(boundaries, steps, touched, strict=True)
            if near and step > reference]


def silent_gaps(received: np.ndarray, concealed: np.ndarray) -> list[int]:
    """Concealed frames right after a played speech frame that fall (nearly) silent."""
    rms = np.sqrt((received.reshape(-1, FRAME_SAMPLES).astype(np.float64) ** 2).mean(axis=1))
    after_speech = [i for i in range(1, len(concealed))
                    if concealed[i] and not concealed[i - 1] and rms[i - 1] > 0.02]
    return [i for i in after_speech if rms[i] < 0.05 * rms[i - 1]]


class RecordingDecoder:
    """The Opus decoder, noting for every frame it produces whether it had its packet."""

    def __init__(self) -> None:
        self.inner = OpusStreamDecoder()
        self.concealed: list[bool] = []

    def push(self, packet: Packet | None, following: Sequence[Packet | None] = ()) -> np.ndarray:
        self.concealed.append(packet is None)
        return self.inner.push(packet, following)


def test_the_concealment_checks_catch_silence_and_clicks() -> None:
    """The checks used on the call below fail on gaps filled with silence or with a step."""
    speech = default_speech(3.0).audio
    decoder = RecordingDecoder()
    received, _ = simulate(speech, OpusStreamEncoder(16), decoder, Network(loss=Bernoulli(0.1)),
                           playout=FixedPlayout(60), seed=4)
    concealed = np.array(decoder.concealed)
    reference = normal_range(speech)
    assert concealed.sum() >= 5
    assert clicks(received, concealed, reference) == [] and silent_gaps(received, concealed) == []
    frames = received.reshape(-1, FRAME_SAMPLES)
    zeroed = frames.copy()
    zeroed[concealed] = 0
    assert silent_gaps(zeroed.ravel(), concealed)
    stepped = frames.copy()
    stepped[concealed] = np.clip(stepped[concealed] + 2 * reference, -1, 1)
    assert clicks(stepped.ravel(), concealed, reference)


# --- a whole call ----------------------------------------------------------------------------

KBPS = 16.0
SECONDS = 3.0
SENT_FRAMES = int(SECONDS * SAMPLE_RATE) // FRAME_SAMPLES


def test_a_call_through_the_relay_at_10_percent_loss_and_30_ms_jitter(tmp_path: Path) -> None:
    speech = default_speech(SECONDS).audio
    received_path = tmp_path / "received.wav"
    decoder = RecordingDecoder()
    network = Network(loss=Bernoulli(0.1), delay=Delay(base_ms=30, jitter_ms=10))

    async def call() -> tuple[CallStats, CallStats, dict[str, object]]:
        async with ImpairmentRelay(network, seed=11) as relay:
            caller = Peer(rewrite_sdp=relay.advertise("a"))
            callee = Peer(rewrite_sdp=relay.advertise("b"))
            choice = CodecChoice("opus", KBPS)
            async with await listen("127.0.0.1", 0) as listener:
                await asyncio.gather(
                    listener.accept(callee, choice, token="t"),
                    connect(caller, choice, port=listener.port, token="t"),
                )
            # ICE, DTLS and SCTP cross the lossy relay too; a lost SCTP handshake packet costs
            # a 3 s retransmission on one side only, so wait for both before talking (a session
            # that opens alone gives up on a silent peer after its 3 s timeout).
            await asyncio.gather(caller.wait_open(25), callee.wait_open(25))
            talking = Session(caller, source=FileSource(speech), encoder=OpusStreamEncoder(KBPS))
            hearing = Session(callee, sink=WavFileSink(received_path), decoder=decoder)
            sent, heard = await asyncio.wait_for(asyncio.gather(talking.run(), hearing.run()), 30)
            return sent, heard, relay.counters

    sent, heard, counters = asyncio.run(call())
    # The call completed: everything was sent, a tenth of it lost, and both sides hung up.
    assert sent.packets_sent == SENT_FRAMES and sent.end_reason == "source ended"
    assert heard.end_reason in ("the peer hung up", "the peer disconnected")
    assert counters["a->b"].lost > 0 and counters["b->a"].sent > 0  # type: ignore[attr-defined]
    assert 0 < heard.lost < 0.25 * SENT_FRAMES
    assert heard.packets_received + heard.lost >= SENT_FRAMES - 5
    # The file holds every frame played, and every frame sent was played once (or skipped);
    # frames the jitter buffer held add concealment on top. Only frames lost before the first
    # arrival or after the last one (when the bye is lost too) can be missing.
    audio, rate = soundfile.read(received_path, dtype="float32")
    assert rate == SAMPLE_RATE
    assert len(audio) == heard.frames_played * FRAME_SAMPLES == len(decoder.concealed) * FRAME_SAMPLES
    accounted = heard.frames_played - heard.stretched + heard.skipped
    assert SENT_FRAMES - 5 <= accounted <= SENT_FRAMES
    # Gaps are concealed: not silent, and without steps beyond the clean signal's range.
    concealed = np.array(decoder.concealed)
    assert concealed.sum() == heard.concealed > 0
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0.05
    assert clicks(audio, concealed, normal_range(speech)) == []
    assert silent_gaps(audio, concealed) == []
