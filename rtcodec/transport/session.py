"""A call over a connected `Peer`: send one side's source, play the other side's packets.

Sending: a task paces the FrameSource at one frame per FRAME_SECONDS on the loop clock (or lets a
self-paced source such as a microphone set the pace), reads and encodes each frame in the send
executor, and sends `envelope + packet` as one binary message. The envelope is the capture time
(wall clock, microseconds modulo 2**32): the receiver subtracts it from the time it hands the
decoded frame to its sink to estimate the one-way (mouth-to-ear) delay. The codec Packet format is
untouched. Receiving: message (the Peer drops a flood first: counted as flooded) ->
Packet.parse (a PacketError counts as rejected) -> JitterBuffer. Playout: a 20 ms tick pops the
jitter buffer, decodes and writes to the FrameSink in the receive executor. Each executor has one
thread, so each codec sees its frames in order from one thread; the loop itself only moves bytes
and timestamps.

Text messages are control: {"type": "bye", "last_seq": int | null} when a side hangs up, and
{"type": "alive"} every KEEPALIVE_SECONDS so that a silent peer can be told from a dead one.

The call ends when this side's source ends or `hang_up()` is called (bye sent, then the peer is
given LINGER_SECONDS to close first so nothing in flight is cut), when the peer says bye, when the
connection closes, or when nothing has arrived for `peer_timeout` seconds. Whatever ends it, the
frames already received are played out and the sink is closed, so an output file is complete.
"""

from __future__ import annotations

import asyncio
import json
import signal
import struct
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

from aiortc import RTCIceServer

from rtcodec.audio import FileSource, FrameSink, FrameSource, WavFileSink, read_audio
from rtcodec.bitstream import SEQ_MODULO, Packet, PacketError, wrapped_difference
from rtcodec.devices import Device, MicrophoneSource, SpeakerSink
from rtcodec.fileio import atomic_write_bytes, check_output_path
from rtcodec.protocols import StreamDecoder, StreamEncoder
from rtcodec.transport.jitter import FRAME_SECONDS, JitterBuffer, PutResult
from rtcodec.transport.peer import Peer, ice_servers
from rtcodec.transport.signalling import (
    DEFAULT_PORT,
    CodecChoice,
    connect,
    listen,
    paste_answer,
    paste_offer,
)
from rtcodec.transport.stats import CallStats, DelayMeter, StatusLine

OPEN_TIMEOUT: Final = 15.0
"""Seconds for ICE, DTLS and SCTP to open the data channel after signalling."""
KEEPALIVE_SECONDS: Final = 1.0
PEER_TIMEOUT: Final = 3.0
"""Default seconds of silence from the peer (no packet, no keepalive) that end the call."""
LINGER_SECONDS: Final = 2.0
"""After saying bye, how long to wait for the peer to play out and close before closing."""
BYE_REPEATS: Final = 3
BYE_SPACING_SECONDS: Final = 0.02
"""The bye goes out this many times, this far apart, so that one lost datagram cannot hide it."""
MAX_CONTROL_CHARS: Final = 1024
"""Longer text messages are not control messages: they are counted as rejected, never parsed."""
MAX_PACKET_BYTES: Final = 1500
"""Larger binary messages are rejected before parsing; real packets are far smaller (a 24-codebook
rtcodec packet with redundancy is about 50 bytes; an Opus frame at 510 kbps about 1300)."""
STATUS_SECONDS: Final = 0.5
_ENVELOPE: Final = struct.Struct(">I")
_CLOCK_MODULO: Final = 1 << 32
_CLOCK_UNITS: Final = 1_000_000
"""Capture times travel in microseconds modulo _CLOCK_MODULO (wrapping every 71 minutes)."""

_LiveDevice = TypeVar("_LiveDevice", MicrophoneSource, SpeakerSink)
Role = Literal["listen", "connect", "offer", "answer"]
"""How `run_call` meets the peer: TCP listen/connect, or copy-paste offer/answer."""


@dataclass
class _Traffic:
    """Messages this side sent and received, counted on the loop."""

    packets_sent: int = 0
    bytes_sent: int = 0
    packets_received: int = 0
    bytes_received: int = 0
    rejected: int = 0


class Session:
    """One call on an open or opening `Peer`. Either direction may be absent: a side without a
    source only listens, a side without a sink only talks. `run()` returns when the call has
    ended and the peer is closed."""

    def __init__(
        self,
        peer: Peer,
        *,
        source: FrameSource | None = None,
        encoder: StreamEncoder | None = None,
        sink: FrameSink | None = None,
        decoder: StreamDecoder | None = None,
        jitter: JitterBuffer | None = None,
        pace: bool = True,
        peer_timeout: float = PEER_TIMEOUT,
        on_status: Callable[[CallStats], None] | None = None,
    ) -> None:
        """`pace`: send at one frame per FRAME_SECONDS on the loop clock (a file source); False
        for a source whose reads block in real time (a microphone). `on_status` is called with
        fresh stats every STATUS_SECONDS."""
        if (source is None) != (encoder is None) or (sink is None) != (decoder is None):
            raise ValueError("a source needs an encoder and a sink needs a decoder")
        self._peer = peer
        self._source = source
        self._encoder = encoder
        self._sink = sink
        self._decoder = decoder
        self._jitter = jitter if jitter is not None else JitterBuffer()
        self._pace = pace
        self._peer_timeout = peer_timeout
        self._on_status = on_status
        self._send_executor = ThreadPoolExecutor(1, thread_name_prefix="rtcodec-send")
        self._receive_executor = ThreadPoolExecutor(1, thread_name_prefix="rtcodec-receive")
        self._timing: list[tuple[int, float] | None] = [None] * SEQ_MODULO
        """Per sequence number: (capture time, arrival time) of the packet in the jitter buffer."""
        self._one_way = DelayMeter()
        self._buffer_delay = DelayMeter()
        self._ended = asyncio.Event()
        self._end_reason = ""
        self._hung_up_here = False
        self._failure: BaseException | None = None
        self._opened_at: float | None = None
        self._ended_at: float | None = None
        self._last_heard = 0.0
        self._heard_from_peer = False
        self._last_sent: bytes | None = None
        self._traffic = _Traffic()
        self._frames_played = 0

    def hang_up(self) -> None:
        """End the call from this side (as when the source ends); safe from signal handlers."""
        self._end("hung up", here=True)

    def stats(self) -> CallStats:
        """The call so far, as this side sees it."""
        now = asyncio.get_running_loop().time()
        counters = self._jitter.counters
        return CallStats(
            duration_s=round((self._ended_at or now) - (self._opened_at or now), 3),
            **asdict(self._traffic),
            flooded=self._peer.dropped.total,
            lost=self._jitter.lost if self._sink else 0,
            late=counters.late,
            duplicate=counters.duplicate,
            overflow=counters.overflow,
            frames_played=self._frames_played,
            concealed=counters.concealed,
            stretched=counters.stretched,
            skipped=counters.skipped,
            outlier=counters.outlier,
            capture_glitches=self._source.glitches if self._source else 0,
            playback_glitches=self._sink.glitches if self._sink else 0,
            jitter_target_ms=round(self._jitter.target_frames * FRAME_SECONDS * 1000, 1),
            jitter_delay_p50_ms=self._buffer_delay.percentile_ms(50),
            one_way_delay_p50_ms=self._one_way.percentile_ms(50),
            one_way_delay_p95_ms=self._one_way.percentile_ms(95),
            end_reason=self._end_reason,
        )

    async def run(self, open_timeout: float = OPEN_TIMEOUT) -> CallStats:
        """Run the call to its end; re-raises a failure of the source, codec or sink. Hung up
        while the channel is still opening, it ends at once."""
        tasks: list[asyncio.Task[None]] = []
        try:
            if not await self._open(open_timeout):
                return self.stats()
            self._opened_at = self._last_heard = asyncio.get_running_loop().time()
            tasks = [self._spawn(job) for job in self._background_jobs()]
            sender = self._spawn(self._send_loop()) if self._source else None
            playout = self._spawn(self._playout_loop()) if self._sink else None
            tasks += [task for task in (sender, playout) if task is not None]
            await self._ended.wait()
            await self._wind_down(sender, playout)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._release()
        if self._failure is not None:
            raise self._failure
        return self.stats()

    async def _open(self, timeout: float) -> bool:
        """Wait for the data channel to open (PeerError if it does not); False if the call was
        hung up first."""
        opening = asyncio.ensure_future(self._peer.wait_open(timeout))
        ending = asyncio.ensure_future(self._ended.wait())
        await asyncio.wait({opening, ending}, return_when=asyncio.FIRST_COMPLETED)
        ending.cancel()
        if not opening.done():
            opening.cancel()
            await asyncio.gather(opening, return_exceptions=True)
            return False
        opening.result()
        return True

    def _background_jobs(self) -> list[Coroutine[Any, Any, None]]:
        jobs = [self._receive_loop(), self._keepalive_loop(), self._watch_peer()]
        if self._on_status is not None:
            jobs.append(self._status_loop(self._on_status))
        return jobs

    def _spawn(self, job: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(job)
        task.add_done_callback(self._check_task)
        return task

    def _check_task(self, task: asyncio.Task[None]) -> None:
        """A task that failed ends the call; `run()` re-raises its exception."""
        if not task.cancelled() and task.exception() is not None:
            self._failure = self._failure or task.exception()
            self._end(f"failed: {task.exception()}", here=True)

    def _end(self, reason: str, *, here: bool, last_seq: int | None = None) -> None:
        """End the call (the first reason wins); the jitter buffer plays out what it may."""
        if self._ended.is_set():
            return
        self._end_reason = reason
        self._ended_at = asyncio.get_running_loop().time()
        self._hung_up_here = here
        self._jitter.end(last_seq)
        self._ended.set()

    async def _wind_down(
        self, sender: asyncio.Task[None] | None, playout: asyncio.Task[None] | None
    ) -> None:
        """After the end: stop sending, say bye if this side hung up, play out what arrived, and
        give the peer LINGER_SECONDS to close first, so that nothing in flight is cut off."""
        if sender is not None:
            sender.cancel()
        if self._hung_up_here:
            await self._send_bye()
        if playout is not None:
            await asyncio.wait({playout})
        if self._hung_up_here:
            await self._peer.flush(LINGER_SECONDS)
            with suppress(TimeoutError):
                await asyncio.wait_for(self._peer.closed.wait(), LINGER_SECONDS)

    async def _release(self) -> None:
        """Close the source, finish the sink (even when cancelled), close the peer."""
        if self._source is not None:
            self._source.close()
        self._send_executor.shutdown(wait=False, cancel_futures=True)
        try:
            if self._sink is not None:
                loop = asyncio.get_running_loop()
                await asyncio.shield(loop.run_in_executor(self._receive_executor, self._sink.close))
        finally:
            self._receive_executor.shutdown(wait=False)
            await self._peer.close()

    # Sending.

    async def _send_loop(self) -> None:
        """Read, encode and send frames until the source ends, then hang up."""
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            if self._pace:
                await asyncio.sleep(max(deadline - loop.time(), 0.0))
                deadline = max(deadline + FRAME_SECONDS, loop.time())
            captured = await loop.run_in_executor(self._send_executor, self._capture)
            if captured is None:
                break
            capture_time, data = captured
            self._peer.send(_ENVELOPE.pack(capture_time) + data)
            self._last_sent = data
            self._traffic.packets_sent += 1
            self._traffic.bytes_sent += len(data)
        self._end("source ended", here=True)

    def _capture(self) -> tuple[int, bytes] | None:
        """Send executor: the next frame's capture time and packet, or None at the source's end."""
        assert self._source is not None and self._encoder is not None
        frame = self._source.read_frame()
        if frame is None:
            return None
        return _clock(), self._encoder.push(frame)

    async def _send_bye(self) -> None:
        """Say bye BYE_REPEATS times, spaced out: the channel is unreliable and one may be lost."""
        last_seq = None if self._last_sent is None else Packet.parse(self._last_sent).seq
        for _ in range(BYE_REPEATS):
            self._peer.send(json.dumps({"type": "bye", "last_seq": last_seq}))
            await asyncio.sleep(BYE_SPACING_SECONDS)

    async def _keepalive_loop(self) -> None:
        while True:
            self._peer.send(json.dumps({"type": "alive"}))
            await asyncio.sleep(KEEPALIVE_SECONDS)

    # Receiving.

    async def _receive_loop(self) -> None:
        while True:
            message, arrival = await self._peer.incoming.get()
            self._last_heard = arrival
            self._heard_from_peer = True
            if isinstance(message, str):
                self._on_control(message)
            else:
                self._on_packet(message, arrival)

    def _on_control(self, message: str) -> None:
        control = None
        if len(message) <= MAX_CONTROL_CHARS:
            with suppress(json.JSONDecodeError, RecursionError):
                control = json.loads(message)
        if not isinstance(control, dict) or control.get("type") not in ("bye", "alive"):
            self._traffic.rejected += 1
        elif control["type"] == "bye":
            last_seq = control.get("last_seq")
            valid = type(last_seq) is int and 0 <= last_seq < SEQ_MODULO
            self._end("the peer hung up", here=False, last_seq=last_seq if valid else None)

    def _on_packet(self, message: bytes, arrival: float) -> None:
        try:
            if not _ENVELOPE.size <= len(message) <= _ENVELOPE.size + MAX_PACKET_BYTES:
                raise PacketError(f"a {len(message)}-byte message cannot be one frame's packet")
            (capture_time,) = _ENVELOPE.unpack_from(message)
            packet = Packet.parse(message[_ENVELOPE.size :])
        except PacketError:
            self._traffic.rejected += 1
            return
        self._traffic.packets_received += 1
        self._traffic.bytes_received += len(message) - _ENVELOPE.size
        if self._sink is not None and self._jitter.put(packet, arrival) is PutResult.ACCEPTED:
            self._timing[packet.seq] = (capture_time, arrival)

    async def _watch_peer(self) -> None:
        """End the call when the connection closes or the peer falls silent."""
        loop = asyncio.get_running_loop()
        while True:
            silent_for = loop.time() - self._last_heard
            # Until the peer is first heard, its side of the channel may still be opening (a lost
            # SCTP handshake packet costs seconds), so it gets the open timeout instead.
            limit = self._peer_timeout if self._heard_from_peer else max(self._peer_timeout, OPEN_TIMEOUT)
            if silent_for >= limit:
                self._end(f"nothing from the peer for {limit:g} s", here=False)
                return
            try:
                await asyncio.wait_for(self._peer.closed.wait(), min(limit - silent_for, self._peer_timeout))
            except TimeoutError:
                continue
            self._end("the peer disconnected", here=False)
            return

    # Playout.

    async def _playout_loop(self) -> None:
        """Every FRAME_SECONDS: pop a frame, decode and play it; until the buffer is drained."""
        loop = asyncio.get_running_loop()
        tick = loop.time()
        while True:
            tick += FRAME_SECONDS
            await asyncio.sleep(max(tick - loop.time(), 0.0))
            if self._jitter.drained:
                return
            if self._jitter.playing:
                packet, following = self._jitter.pop()
                popped_at = loop.time()
                played_at = await loop.run_in_executor(
                    self._receive_executor, self._play, packet, following
                )
                self._frames_played += 1
                if packet is not None:
                    self._measure(packet.seq, popped_at, played_at)

    def _play(self, packet: Packet | None, following: Sequence[Packet | None]) -> int:
        """Receive executor: decode one frame (`following`: the packets after it, from the jitter
        buffer), hand it to the sink; the time it was handed over."""
        assert self._sink is not None and self._decoder is not None
        self._sink.write_frame(self._decoder.push(packet, following))
        return _clock()

    def _measure(self, seq: int, popped_at: float, played_at: int) -> None:
        timing = self._timing[seq]
        if timing is None:
            return
        capture_time, arrival = timing
        self._timing[seq] = None
        self._buffer_delay.add(popped_at - arrival)
        self._one_way.add(wrapped_difference(played_at, capture_time, _CLOCK_MODULO) / _CLOCK_UNITS)

    async def _status_loop(self, on_status: Callable[[CallStats], None]) -> None:
        while True:
            await asyncio.sleep(STATUS_SECONDS)
            on_status(self.stats())


def run_call(
    role: Role,
    encoder_factory: Callable[[], StreamEncoder],
    decoder_factory: Callable[[], StreamDecoder],
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    token: str | None = None,
    input_path: Path | None = None,
    output_path: Path | None = None,
    input_device: Device = None,
    output_device: Device = None,
    stun: str | None = None,
    turn: str | None = None,
    turn_username: str | None = None,
    turn_password: str | None = None,
    stats_path: Path | None = None,
) -> CallStats:
    """A whole call from the command line; returns its stats once it has ended.

    `role`: "listen" (wait for a TCP caller on host:port), "connect" (call host:port), "offer" or
    "answer" (copy-paste signalling on stdin/stdout). Audio comes from `input_path` (paced in real
    time) or the microphone `input_device`, and goes to `output_path` (WAV) or the speaker
    `output_device` (devices: index, name substring, or None for the default). A live status line
    goes to stderr; Ctrl-C hangs up cleanly; `stats_path` receives the final stats as JSON.
    Raises SignallingError, PeerError or AudioError when the call cannot be set up, and ValueError
    for a `stats_path` that cannot be written; devices and files are checked before signalling.
    """
    return asyncio.run(
        _call(
            role,
            encoder_factory,
            decoder_factory,
            host=host,
            port=port,
            token=token,
            input_path=input_path,
            output_path=output_path,
            input_device=input_device,
            output_device=output_device,
            servers=ice_servers(stun, turn, turn_username, turn_password),
            stats_path=stats_path,
        )
    )


async def _call(
    role: Role,
    encoder_factory: Callable[[], StreamEncoder],
    decoder_factory: Callable[[], StreamDecoder],
    *,
    host: str,
    port: int,
    token: str | None,
    input_path: Path | None,
    output_path: Path | None,
    input_device: Device,
    output_device: Device,
    servers: Sequence[RTCIceServer],
    stats_path: Path | None,
) -> CallStats:
    encoder = encoder_factory()
    if stats_path is not None:
        check_output_path(stats_path)
    async with AsyncExitStack() as on_failure:
        # Inputs and outputs are opened before signalling: a missing device or an unwritable file
        # fails here, not after the other side has answered.
        if input_path:
            source: FrameSource = FileSource(read_audio(input_path))
        else:
            source = _announced("microphone", MicrophoneSource(input_device))
        on_failure.callback(source.close)
        sink = WavFileSink(output_path) if output_path else _announced("speaker", SpeakerSink(output_device))
        on_failure.callback(sink.close)
        peer = Peer(servers)
        on_failure.push_async_callback(peer.close)
        await _meet(role, peer, CodecChoice(encoder.name, encoder.kbps), host, port, token)
        on_failure.pop_all()
    status = StatusLine()
    session = Session(
        peer,
        source=source,
        encoder=encoder,
        sink=sink,
        decoder=decoder_factory(),
        pace=input_path is not None,
        on_status=status.update,
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, session.hang_up)
    try:
        stats = await session.run()
    finally:
        loop.remove_signal_handler(signal.SIGINT)
    status.finish(stats)
    if stats_path is not None:
        atomic_write_bytes(stats_path, stats.to_json().encode() + b"\n")
    return stats


def _announced(label: str, device: _LiveDevice) -> _LiveDevice:
    """`device`, once its `label` and description are on stderr."""
    print(f"{label}: {device.description}", file=sys.stderr)
    return device


async def _meet(
    role: Role, peer: Peer, choice: CodecChoice, host: str, port: int, token: str | None
) -> None:
    """Signalling for `role`: connect `peer` to the other side."""
    if role == "listen":
        async with await listen(host, port) as listener:
            print(f"listening on {host}:{listener.port}; waiting for the caller", file=sys.stderr, flush=True)
            await listener.accept(peer, choice, token=token, on_refused=_report_stranger)
    elif role == "connect":
        await connect(peer, choice, host=host, port=port, token=token)
    elif role == "offer":
        await paste_offer(peer, choice)
    else:
        await paste_answer(peer, choice)


def _report_stranger(reason: str) -> None:
    print(f"{reason}; still waiting for the caller", file=sys.stderr)


def _clock() -> int:
    """Wall-clock time in microseconds modulo 2**32: the envelope's capture-time format."""
    return time.time_ns() // 1000 % _CLOCK_MODULO
