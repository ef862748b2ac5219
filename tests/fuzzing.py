"""Packet fuzzing, shared by tests/test_fuzz.py and the campaigns benchmarks/fuzz.py and
benchmarks/fuzz_atheris.py.

`Receiver` is a call's receive path without the network, step for step as
`rtcodec.transport.session.Session` runs it: each message -> `Packet.parse` (a PacketError counts
as rejected) -> `JitterBuffer.put`; each 20 ms playout tick, while the buffer is playing ->
`JitterBuffer.pop` -> `StreamDecoder.push`. The session first strips its 4-byte capture-time
envelope; the messages here start after it.

`HostileStream` mixes valid packets with mutated, random, foreign (the other codec's), duplicated,
replayed, held-back (reordered, late) ones, sequence-number jumps (short skips ahead, and restarts
at a random seq) and long silences, all drawn from one `random.Random`: a seed, or hypothesis
through `st.randoms()`, replays a stream.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import numpy as np

from rtcodec.audio import default_speech, frames
from rtcodec.bitstream import MAX_REDUNDANT_FRAMES, SEQ_MODULO, WIRE_VERSION, Packet, PacketError
from rtcodec.config import CODEBOOK_SIZE, FRAME_SAMPLES, MAX_CODEBOOKS, CodecConfig
from rtcodec.opus import OpusStreamEncoder
from rtcodec.protocols import StreamDecoder
from rtcodec.transport.jitter import FRAME_SECONDS, JitterBuffer

FUZZED_MODEL = CodecConfig(channels=4, latent_dim=32, bottleneck_hidden=32, decoder="spectral",
                           decoder_dim=32, decoder_layers=2)
"""The rtcodec receivers' model: the shipped architecture (24 codebooks, spectral decoder with its
overlap-add), small and untrained, so that campaigns run fast."""
MAX_MESSAGE_BYTES = 262_144
"""The largest data-channel message aiortc accepts (its LOCAL_MAX_MESSAGE_SIZE)."""
OVERSIZE_BYTES = (1, 100, 1_500, MAX_MESSAGE_BYTES // 4)
"""Junk appended by the oversize mutation."""
REPLAY_WINDOW = 500
"""Replays pick among this many of the last valid packets (10 s)."""
MAX_HELD = 64
"""Packets held back for later (reordered or late) at most; more are lost."""
SKIP_FRAMES = (1, 64)
"""Range of a short jump's skip ahead in sequence numbers, with no time passing: beyond a small
jitter buffer's capacity (overflow) or far beyond it (an outlier, then a new base)."""
MEAN_JITTER_SECONDS = 0.02
SILENCE_SECONDS = (1.0, 3.0)
"""Range of the silences in a stream: longer than the jitter buffer's resync_after."""

PacketMaker = Callable[[int, random.Random], bytes]
"""A valid serialised packet with sequence number `seq`, from `rng`."""
Mutation = Callable[[bytes, random.Random], bytes]

_NO_CODES = np.zeros(0, dtype=np.int64)


@dataclass
class ReceiverStats:
    """What a `Receiver` saw; every field should stay zero or in range whatever arrives."""

    messages: int = 0
    rejected: int = 0
    """Messages that `Packet.parse` refused: the session's `rejected`."""
    frames: int = 0
    malformed_frames: int = 0
    """Decoded frames that are not float32 [FRAME_SAMPLES]."""
    non_finite_samples: int = 0
    max_abs: float = 0.0
    """Largest |sample| of every finite decoded sample."""
    max_buffered_frames: int = 0
    """Largest `JitterBuffer.buffered_frames` after any put."""


class CountingDecoder(StreamDecoder, Protocol):
    """A StreamDecoder that counts the packets it concealed because it could not decode them."""

    @property
    def corrupt_packets(self) -> int: ...


class Receiver:
    """A call's receive path, as `Session._on_packet` and `Session._playout_loop` run it."""

    def __init__(self, decoder: CountingDecoder, jitter: JitterBuffer | None = None) -> None:
        self.decoder = decoder
        self.jitter = jitter if jitter is not None else JitterBuffer()
        self.stats = ReceiverStats()
        self._next_tick = 0.0

    def arrive(self, message: bytes, arrival: float) -> None:
        """Play every playout tick up to `arrival` (seconds), then receive `message`."""
        while self._next_tick <= arrival:
            self.tick()
            self._next_tick += FRAME_SECONDS
        self.receive(message, arrival)

    def receive(self, message: bytes, arrival: float) -> None:
        """`Session._on_packet`: parse, count a reject, or put the packet in the jitter buffer."""
        self.stats.messages += 1
        try:
            packet = Packet.parse(message)
        except PacketError:
            self.stats.rejected += 1
            return
        self.jitter.put(packet, arrival)
        self.stats.max_buffered_frames = max(self.stats.max_buffered_frames, self.jitter.buffered_frames)

    def tick(self) -> None:
        """One pass of `Session._playout_loop`: pop and decode a frame if the buffer plays."""
        if self.jitter.playing:
            packet, following = self.jitter.pop()
            self._check(self.decoder.push(packet, following))

    def _check(self, frame: np.ndarray) -> None:
        stats = self.stats
        stats.frames += 1
        if frame.dtype != np.float32 or frame.shape != (FRAME_SAMPLES,):
            stats.malformed_frames += 1
        finite = np.isfinite(frame)
        stats.non_finite_samples += frame.size - int(np.count_nonzero(finite))
        if finite.any():
            stats.max_abs = max(stats.max_abs, float(np.abs(frame[finite]).max()))


# --- valid packets -----------------------------------------------------------------------------


def rtcodec_packet(seq: int, rng: random.Random) -> bytes:
    """An rtcodec packet of 1..MAX_CODEBOOKS random codes and up to MAX_REDUNDANT_FRAMES
    redundant frames of 0..3 codes."""
    redundancy = tuple(
        _random_codes(rng, rng.randint(0, 3)) for _ in range(rng.randint(0, MAX_REDUNDANT_FRAMES))
    )
    return Packet(seq, _random_codes(rng, rng.randint(1, MAX_CODEBOOKS)), redundancy).to_bytes()


def _random_codes(rng: random.Random, count: int) -> np.ndarray:
    return np.array([rng.randrange(CODEBOOK_SIZE) for _ in range(count)], dtype=np.int64)


class OpusPackets:
    """Real Opus packets (speech at 24 kbps with in-band FEC, which libopus codes at this rate
    and not at 16 kbps), their payloads reused in turn."""

    def __init__(self, seconds: float = 2.0) -> None:
        encoder = OpusStreamEncoder(24.0, fec=True, packet_loss_perc=10)
        speech = default_speech(seconds).audio
        self._payloads = [Packet.parse(encoder.push(frame)).opus for frame in frames(speech)]

    def __call__(self, seq: int, rng: random.Random) -> bytes:
        return Packet(seq, _NO_CODES, opus=self._payloads[seq % len(self._payloads)]).to_bytes()


# --- mutations ---------------------------------------------------------------------------------


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data))] if data else data


def oversize(data: bytes, rng: random.Random) -> bytes:
    return data + rng.randbytes(rng.choice(OVERSIZE_BYTES))


def wrong_version(data: bytes, rng: random.Random) -> bytes:
    return _with_byte(data, 0, (WIRE_VERSION + rng.randrange(1, 256)) % 256)


def wild_flags(data: bytes, rng: random.Random) -> bytes:
    return _with_byte(data, 1, rng.randrange(256))


def wild_seq(data: bytes, rng: random.Random) -> bytes:
    return _with_byte(_with_byte(data, 2, rng.randrange(256)), 3, rng.randrange(256))


def impossible_codebooks(data: bytes, rng: random.Random) -> bytes:
    """A codebook count above MAX_CODEBOOKS in the header, or in any later byte (where a
    redundant frame's count may be)."""
    return _with_byte(data, rng.randint(4, max(len(data), 5) - 1), rng.randint(MAX_CODEBOOKS + 1, 255))


def flip_bits(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return data
    flipped = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        flipped[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(flipped)


def splice(data: bytes, rng: random.Random) -> bytes:
    """Cut out, or repeat, a random run of bytes."""
    start, stop = sorted(rng.randrange(len(data) + 1) for _ in range(2))
    return data[:start] + data[stop:] if rng.random() < 0.5 else data[:stop] + data[start:]


MUTATIONS: tuple[Mutation, ...] = (
    truncate, oversize, wrong_version, wild_flags, wild_seq, impossible_codebooks, flip_bits, splice,
)


def mutate(data: bytes, rng: random.Random) -> bytes:
    """`data` through one to three random mutations."""
    for _ in range(rng.randint(1, 3)):
        data = rng.choice(MUTATIONS)(data, rng)
    return data


def random_message(rng: random.Random) -> bytes:
    """Random bytes, mostly about the size of a packet."""
    return rng.randbytes(rng.randrange(300))


def _with_byte(data: bytes, index: int, value: int) -> bytes:
    """`data` with byte `index` set to `value`, zero-padded first if it is shorter."""
    padded = bytearray(data.ljust(index + 1, b"\x00"))
    padded[index] = value
    return bytes(padded)


# --- hostile streams ---------------------------------------------------------------------------


class Event(Enum):
    """What the next message of a `HostileStream` is."""

    VALID = "the next packet"
    MUTATED = "the next packet, mutated"
    RANDOM = "random bytes"
    FOREIGN = "the next packet, made by the other codec"
    DUPLICATE = "the last valid packet again"
    REPLAY = "one of the last REPLAY_WINDOW valid packets again"
    HOLD = "the next packet is held back; the one after it is sent"
    RELEASE = "the oldest held-back packet (reordered, or late)"
    JUMP = "the next packet, after a jump to a random seq, or (half the time) SKIP_FRAMES ahead"
    SILENCE = "the next packet, after a silence longer than the jitter buffer's resync"


WEIGHTS: dict[Event, float] = {
    Event.VALID: 60, Event.MUTATED: 12, Event.RANDOM: 3, Event.FOREIGN: 3, Event.DUPLICATE: 5,
    Event.REPLAY: 3, Event.HOLD: 6, Event.RELEASE: 6, Event.JUMP: 0.5, Event.SILENCE: 0.5,
}
"""Mostly valid packets, so that the decoders decode as well as conceal. A packet with a wild
sequence number (a mutation, a jump) is the jitter buffer's outlier; after a jump the stream plays
again once PROBATION packets agree on the new base."""


def random_events(rng: random.Random, count: int) -> list[Event]:
    """`count` events drawn with WEIGHTS."""
    return rng.choices(list(WEIGHTS), list(WEIGHTS.values()), k=count)


class HostileStream:
    """Messages and their arrival times (non-decreasing, seconds): a sender's packets at one per
    FRAME_SECONDS with random delay, interleaved with hostile ones as the events say. Where an
    event has nothing to repeat (no packet sent or held yet), the next packet goes instead."""

    def __init__(self, valid: PacketMaker, foreign: PacketMaker, rng: random.Random) -> None:
        self._valid, self._foreign, self._rng = valid, foreign, rng
        self._seq = rng.randrange(SEQ_MODULO)
        self._send_time = 0.0
        self._arrival = 0.0
        self._recent: deque[bytes] = deque(maxlen=REPLAY_WINDOW)
        self._held: deque[bytes] = deque(maxlen=MAX_HELD)

    def messages(self, events: Iterable[Event]) -> Iterator[tuple[bytes, float]]:
        """One message per event, with its arrival time."""
        for event in events:
            message = self._message(event)
            delay = self._rng.expovariate(1 / MEAN_JITTER_SECONDS)
            self._arrival = max(self._arrival, self._send_time + delay)
            yield message, self._arrival

    def _message(self, event: Event) -> bytes:
        if event is Event.RANDOM:
            return random_message(self._rng)
        if event in (Event.DUPLICATE, Event.REPLAY) and self._recent:
            return self._recent[-1] if event is Event.DUPLICATE else self._rng.choice(self._recent)
        if event is Event.RELEASE and self._held:
            return self._held.popleft()
        if event is Event.HOLD:
            self._held.append(self._next_packet(self._valid))
        elif event is Event.JUMP and self._rng.random() < 0.5:
            self._seq = (self._seq + self._rng.randint(*SKIP_FRAMES)) % SEQ_MODULO
        elif event is Event.JUMP:
            self._seq = self._rng.randrange(SEQ_MODULO)
        elif event is Event.SILENCE:
            self._send_time += self._rng.uniform(*SILENCE_SECONDS)
        packet = self._next_packet(self._foreign if event is Event.FOREIGN else self._valid)
        return mutate(packet, self._rng) if event is Event.MUTATED else packet

    def _next_packet(self, maker: PacketMaker) -> bytes:
        """The sender's next packet, one frame after the last, made by `maker`."""
        packet = maker(self._seq, self._rng)
        self._recent.append(packet)
        self._seq = (self._seq + 1) % SEQ_MODULO
        self._send_time += FRAME_SECONDS
        return packet
