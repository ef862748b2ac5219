"""Whole calls between two real aiortc peers on this host, with Opus, over TCP signalling."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import ifaddr
import numpy as np
import pytest
import soundfile

from calls import KBPS, FrameList, meet, speech, talker
from rtcodec.audio import FileSource, WavFileSink, write_wav
from rtcodec.bitstream import Packet
from rtcodec.config import FRAME_SAMPLES, SAMPLE_RATE
from rtcodec.codecs import CodecSpec
from rtcodec.demo import run_demo
from rtcodec.opus import OpusStreamDecoder, OpusStreamEncoder
from rtcodec.transport import CallStats, JitterBuffer, Peer, Session


class RecordingEncoder:
    """The Opus encoder, keeping a copy of every packet it makes."""

    def __init__(self) -> None:
        self.inner = OpusStreamEncoder(KBPS)
        self.packets: list[bytes] = []

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def kbps(self) -> float:
        return self.inner.kbps

    def push(self, frame: np.ndarray) -> bytes:
        packet = self.inner.push(frame)
        self.packets.append(packet)
        return packet


def test_without_loss_the_callee_plays_exactly_the_offline_decode_of_the_packets() -> None:
    encoder, sink = RecordingEncoder(), FrameList()

    async def call() -> tuple[CallStats, CallStats]:
        caller_peer, callee_peer = await meet()
        caller = Session(caller_peer, source=FileSource(speech(2.0)), encoder=encoder)
        callee = Session(
            callee_peer, sink=sink, decoder=OpusStreamDecoder(), jitter=JitterBuffer(min_frames=5)
        )
        return await asyncio.gather(caller.run(), callee.run())

    caller, callee = asyncio.run(call())
    frames = 2 * SAMPLE_RATE // FRAME_SAMPLES
    assert caller.packets_sent == callee.packets_received == len(encoder.packets) == frames
    assert (callee.lost, callee.late, callee.duplicate, callee.rejected) == (0, 0, 0, 0)
    assert callee.concealed == 0 and callee.end_reason == "the peer hung up" and sink.closed
    offline = OpusStreamDecoder()
    expected = np.concatenate([offline.push(Packet.parse(data)) for data in encoder.packets])
    received = np.concatenate(sink.frames)
    # Frames are written from the first packet on (no pre-roll silence), so no shift is needed.
    assert received.shape == expected.shape
    np.testing.assert_allclose(received, expected, atol=1e-5)
    assert callee.one_way_delay_p50_ms is not None and 0 < callee.one_way_delay_p50_ms < 1000
    assert caller.sent_kbps == pytest.approx(KBPS, rel=0.25)


def test_each_side_reports_the_glitches_of_its_own_source_and_sink() -> None:
    source, sink = FileSource(speech(0.5)), FrameList()
    source.glitches, sink.glitches = 3, 2  # as a microphone that overflowed, a speaker that ran dry

    async def call() -> tuple[CallStats, CallStats]:
        caller_peer, callee_peer = await meet()
        caller = Session(caller_peer, source=source, encoder=OpusStreamEncoder(KBPS))
        callee = Session(callee_peer, sink=sink, decoder=OpusStreamDecoder())
        return await asyncio.gather(caller.run(), callee.run())

    caller, callee = asyncio.run(call())
    assert (caller.capture_glitches, caller.playback_glitches) == (3, 0)
    assert (callee.capture_glitches, callee.playback_glitches) == (0, 2)


def test_a_peer_that_disconnects_mid_call_ends_the_call_with_a_complete_file(
    tmp_path: Path,
) -> None:
    output = tmp_path / "received.wav"

    async def call() -> CallStats:
        caller_peer, callee_peer = await meet()
        caller = talker(caller_peer, 3.0)
        callee = Session(callee_peer, sink=WavFileSink(output), decoder=OpusStreamDecoder())
        caller_task = asyncio.create_task(caller.run())
        callee_task = asyncio.create_task(callee.run())
        while callee.stats().packets_received < 10:  # however long the set-up takes
            await asyncio.sleep(0.02)
        await caller_peer.close()  # gone mid-call, without a bye
        stats = await asyncio.wait_for(callee_task, timeout=5.0)
        await caller_task
        return stats

    stats = asyncio.run(call())
    assert stats.end_reason == "the peer disconnected"
    assert 0 < stats.packets_received < 3 * SAMPLE_RATE // FRAME_SAMPLES
    audio, rate = soundfile.read(output, dtype="float32")
    assert rate == SAMPLE_RATE
    assert len(audio) == stats.frames_played * FRAME_SAMPLES > 0
    assert np.abs(audio).max() > 0.01  # speech made it through


def test_a_peer_that_falls_silent_ends_the_call_after_the_timeout() -> None:
    sink = FrameList()

    async def call() -> float:
        caller_peer, callee_peer = await meet()
        caller = talker(caller_peer, 3.0)
        callee = Session(callee_peer, sink=sink, decoder=OpusStreamDecoder(), peer_timeout=0.5)
        caller_task = asyncio.create_task(caller.run())
        callee_task = asyncio.create_task(callee.run())
        await asyncio.sleep(0.5)
        caller_peer.send = lambda message: None  # type: ignore[method-assign]  # a dead network
        loop = asyncio.get_running_loop()
        silent_since = loop.time()
        stats = await asyncio.wait_for(callee_task, timeout=5.0)
        caller_task.cancel()
        await asyncio.gather(caller_task, return_exceptions=True)
        assert stats.end_reason == "nothing from the peer for 0.5 s"
        return loop.time() - silent_since

    assert asyncio.run(call()) < 5.0  # 0.5 s, plus whatever a loaded machine adds
    assert sink.closed and sink.frames


def test_malformed_messages_are_counted_as_rejected_and_never_raised() -> None:
    async def call() -> CallStats:
        caller_peer, callee_peer = await meet()
        await caller_peer.wait_open(10.0)
        for junk in (b"", b"\x00\x00\x00\x00", b"\x00\x00\x00\x00\x09\x09\x09\x09\x09", "{oops"):
            caller_peer.send(junk)
        caller = talker(caller_peer, 0.4)
        callee = Session(callee_peer, sink=FrameList(), decoder=OpusStreamDecoder())
        return (await asyncio.gather(caller.run(), callee.run()))[1]

    stats = asyncio.run(call())
    assert stats.rejected == 4
    assert stats.packets_received == 20 and stats.end_reason == "the peer hung up"


def test_peers_connect_on_a_host_whose_only_interface_is_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loopback_only = [adapter for adapter in ifaddr.get_adapters() if adapter.name == "lo"]
    monkeypatch.setattr(ifaddr, "get_adapters", lambda: loopback_only)

    async def exchange() -> tuple[str, bytes]:
        caller, callee = Peer(), Peer()
        offer = await caller.offer()
        await caller.accept_answer(await callee.answer(offer))
        await asyncio.gather(caller.wait_open(10.0), callee.wait_open(10.0))
        caller.send(b"over loopback")
        message, _ = await asyncio.wait_for(callee.incoming.get(), 5.0)
        await asyncio.gather(caller.close(), callee.close())
        assert isinstance(message, bytes)
        return offer, message

    offer, message = asyncio.run(exchange())
    candidates = [line for line in offer.splitlines() if line.startswith("a=candidate")]
    assert candidates and all(" 127.0.0.1 " in line for line in candidates)
    assert message == b"over loopback"


def test_the_demo_writes_its_files_and_summary(tmp_path: Path) -> None:
    source = tmp_path / "input.wav"
    write_wav(source, speech(1.0))
    spec = CodecSpec("opus", KBPS)
    summary = run_demo(tmp_path / "demo", spec.encoder, spec.decoder, input_path=source)
    stats = json.loads((tmp_path / "demo" / "stats.json").read_text())
    assert stats["caller"]["packets_sent"] == stats["callee"]["packets_received"] == 50
    received, _ = soundfile.read(tmp_path / "demo" / "received.wav")
    callee = stats["callee"]  # a late packet makes the jitter buffer stretch its delay by a frame
    assert len(received) == (50 + callee["stretched"] - callee["skipped"]) * FRAME_SAMPLES
    assert callee["frames_played"] == 50 + callee["stretched"] - callee["skipped"]
    assert (tmp_path / "demo" / "call.png").read_bytes().startswith(b"\x89PNG")
    assert "packets sent 50, received 50, lost 0" in str(summary)


def test_hostile_messages_are_rejected_without_ending_the_call() -> None:
    async def call() -> CallStats:
        caller_peer, callee_peer = await meet()
        await caller_peer.wait_open(10.0)
        for junk in ("[" * 200_000, '{"type": "bye", "last_seq": true}' + " " * 2000, b"\x00" * 70_000):
            caller_peer.send(junk)
        caller = talker(caller_peer, 0.4)
        callee = Session(callee_peer, sink=FrameList(), decoder=OpusStreamDecoder())
        _, stats = await asyncio.gather(caller.run(), callee.run())
        return stats

    stats = asyncio.run(call())
    assert stats.rejected == 3
    assert stats.end_reason == "the peer hung up"
    assert stats.packets_received == 20  # loopback loses nothing, even unreliable
