"""The in-process packet path: a whole call's audio through a codec and a simulated network, in
simulated time (nothing sleeps), fast enough for sweeps.

    audio -> 20 ms frames -> StreamEncoder.push -> packet bytes -> Link.send (loss, delay, ...)
          -> Packet.parse at each arrival time -> playout every 20 ms -> StreamDecoder.push

Frame i is captured and sent at i x 20 ms. Two playouts:

- `AdaptivePlayout` (default): the call engine's own `JitterBuffer`: each copy is `put` at its
  arrival time, and a playout clock, out of phase with the send clock, pops one frame every
  20 ms while the buffer is playing, as `Session` does. The stream ends (as a bye arriving after
  the last packet would end it) once every copy has arrived and the last frame has been sent.
  The buffer holds the playout index when it runs dry (the delay grows and a concealed frame is
  inserted) and skips frames to shrink the delay again, so the received audio can be longer or
  shorter than the sent audio, and starts at the first packet that arrived.
- `FixedPlayout`: frame i plays at i x 20 ms + `delay_ms`, with the packet if it has arrived by
  then (else it is concealed, or rebuilt from a later packet that has arrived by then: packet
  i + d, sent d x 20 ms after frame i, if its redundancy reaches d frames back). Nothing is
  stretched or skipped: the received audio is exactly as long as the sent frames and in step
  with them, which is what a codec comparison wants (see benchmarks/loss.py).

Clock drift (adaptive playout only): with `clock_drift` d, the receiver's clock runs 1 + d times
as fast as the sender's, as two sound cards' crystals do (1 % is a bad case; tens of ppm are
usual). The receiver stamps arrivals on its own clock and ticks every 20 ms of it, so it plays
1 + d frames for each frame sent: at d > 0 the buffer runs dry and stretches (about d x frames
sent), at d < 0 it fills up and skips. A fixed playout follows the sender's clock by definition,
so it takes no drift.

`simulate` takes the whole audio and returns the whole received audio. `simulate_stream` (adaptive
playout) takes frames from any iterable, sends each at its send time, and hands each played frame
to a sink as it plays: its memory does not grow with the length of the call, so it runs hours.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Final

import numpy as np

from rtcodec.audio import frames
from rtcodec.bitstream import (
    HEADER_BYTES,
    MAX_REDUNDANT_FRAMES,
    SEQ_MODULO,
    Packet,
    PacketError,
    kbps_of,
    wrapped_difference,
)
from rtcodec.config import FRAME_RATE
from rtcodec.netsim.fec import rebuildable
from rtcodec.netsim.models import Link, LinkCounters, Network
from rtcodec.protocols import StreamDecoder, StreamEncoder
from rtcodec.transport.jitter import FRAME_SECONDS, JitterBuffer

TICK_PHASE: Final = 0.37
"""Adaptive playout ticks fall this fraction of a frame after the send clock's: an odd phase, so
that round-number delays do not land exactly on a tick (where rounding would decide)."""
MAX_CLOCK_DRIFT: Final = 0.1
"""`clock_drift` must lie strictly within +-this (10 %: far beyond any real pair of clocks)."""


@dataclass(frozen=True)
class AdaptivePlayout:
    """The call engine's adaptive `JitterBuffer` with these settings (its defaults by default)."""

    min_frames: int = 1
    max_frames: int = 10
    capacity: int = FRAME_RATE

    def buffer(self) -> JitterBuffer:
        return JitterBuffer(
            min_frames=self.min_frames, max_frames=self.max_frames, capacity=self.capacity
        )


@dataclass(frozen=True)
class FixedPlayout:
    """A fixed playout delay: frame i plays `delay_ms` after it was sent. For redundancy or FEC
    to rebuild a lost frame from the packet d frames later, that packet must be in by then:
    `delay_ms` >= d x 20 ms plus the network delay."""

    delay_ms: float = 60.0

    def __post_init__(self) -> None:
        if not self.delay_ms >= 0:
            raise ValueError(f"playout delay must be >= 0 ms, got {self.delay_ms}")


Playout = AdaptivePlayout | FixedPlayout


@dataclass(frozen=True)
class SimulationStats:
    """What one simulated stream did. Counts are packets (one per frame) unless they say copies."""

    frames_sent: int
    bytes_sent: int
    """Packet bytes as the encoder made them: header, codes, redundancy, Opus payload."""
    lost: int
    """Frames of which no copy ever arrived."""
    late: int
    """Packets (first copies) that arrived after their frame had been played; dropped."""
    duplicate: int
    """Extra copies that arrived; dropped."""
    rejected: int
    """Copies that did not parse as packets."""
    frames_played: int
    concealed: int
    """Played frames without their own packet: lost, late, or inserted by the jitter buffer."""
    recovered: int
    """Of the concealed frames, those rebuilt from a later packet's redundancy or Opus FEC."""
    stretched: int
    """Concealed frames the adaptive jitter buffer inserted to grow its delay (0 when fixed)."""
    skipped: int
    """Frames the adaptive jitter buffer skipped to shrink its delay (0 when fixed)."""
    network: LinkCounters
    """What the network link did (copies lost, duplicated, queue-dropped, reordered)."""

    @property
    def seconds_sent(self) -> float:
        return self.frames_sent / FRAME_RATE

    @property
    def total_kbps(self) -> float:
        """Bitrate of everything sent, measured from the bytes: headers and redundancy included."""
        return kbps_of(self.bytes_sent, self.frames_sent)

    @property
    def payload_kbps(self) -> float:
        """As `total_kbps`, without the fixed HEADER_BYTES of each packet."""
        return kbps_of(self.bytes_sent - HEADER_BYTES * self.frames_sent, self.frames_sent)

    @property
    def loss_rate(self) -> float:
        """Share of the frames sent that never arrived."""
        return self.lost / self.frames_sent if self.frames_sent else 0.0

    def to_dict(self) -> dict[str, object]:
        return asdict(self) | {
            "total_kbps": self.total_kbps,
            "payload_kbps": self.payload_kbps,
            "loss_rate": self.loss_rate,
        }

    def summary(self, recovery: str = "redundancy/FEC") -> str:
        """Lines for people; `recovery` names what rebuilt frames ("redundancy", "FEC")."""
        return "\n".join(
            [
                f"sent {self.frames_sent} packets, {self.seconds_sent:.2f} s: "
                f"{self.total_kbps:.2f} kbps in all, {self.payload_kbps:.2f} kbps without "
                f"the {HEADER_BYTES}-byte headers",
                f"lost {self.lost} ({self.loss_rate:.1%}), late {self.late}, duplicate "
                f"{self.duplicate}, rejected {self.rejected}",
                f"played {self.frames_played} frames: concealed {self.concealed}, of which "
                f"recovered by {recovery} {self.recovered}; jitter buffer stretched "
                f"{self.stretched}, skipped {self.skipped}",
            ]
        )


@dataclass(frozen=True, order=True)
class _Arrival:
    time: float
    order: int
    """Tie-break: copies arriving at the same time keep the order in which they were sent."""
    index: int
    """Which frame (send order) this is a copy of."""
    data: bytes


@dataclass(frozen=True)
class PlayoutTick:
    """One frame that the adaptive playout played, as `simulate_stream` hands it to its sink."""

    time: float
    """When it played, in seconds on the sender's clock (which sends frame i at i x 20 ms)."""
    delay: float | None
    """Seconds from the played packet's send time to `time` (network, jitter buffer and tick
    phase together); None for a concealed frame, which has no packet."""
    buffered_frames: int
    """Frames in the jitter buffer after this pop: from the playout index to the newest arrival."""
    target_frames: int
    """The jitter buffer's target delay, in frames, after this pop."""


Sink = Callable[[np.ndarray, PlayoutTick], None]
"""Receives each played frame, float32 [FRAME_SAMPLES], with its `PlayoutTick`."""


def simulate(
    audio: np.ndarray,
    encoder: StreamEncoder,
    decoder: StreamDecoder,
    network: Network | None = None,
    *,
    playout: Playout | None = None,
    seed: int = 0,
    clock_drift: float = 0.0,
) -> tuple[np.ndarray, SimulationStats]:
    """Send float32 `audio` [samples] through `encoder`, `network` (seeded with `seed`) and
    `decoder`; return the received float32 audio [frames_played * FRAME_SAMPLES] and the stats.

    `playout`: `AdaptivePlayout()` (the call engine's jitter buffer, the default) or
    `FixedPlayout(delay_ms)`. `clock_drift`: how much faster the receiver's clock runs than the
    sender's (0.01: 1 % faster; adaptive playout only, see the module docstring). The same
    arguments give the same result, bit for bit.
    """
    check_clock_drift(clock_drift)
    chosen = playout or AdaptivePlayout()
    if isinstance(chosen, FixedPlayout):
        if clock_drift != 0:
            raise ValueError("clock drift needs the adaptive playout: a fixed playout follows "
                             "the sender's clock")
        return _simulate_fixed(audio, encoder, decoder, network, chosen, seed)
    played: list[np.ndarray] = []
    stats = simulate_stream(
        frames(audio), encoder, decoder, network,
        sink=lambda frame, tick: played.append(frame),
        playout=chosen, seed=seed, clock_drift=clock_drift,
    )
    return _joined(played), stats


def simulate_stream(
    frames_in: Iterable[np.ndarray],
    encoder: StreamEncoder,
    decoder: StreamDecoder,
    network: Network | None = None,
    *,
    sink: Sink,
    playout: AdaptivePlayout | None = None,
    seed: int = 0,
    clock_drift: float = 0.0,
) -> SimulationStats:
    """`simulate` with the adaptive playout, streamed: float32 frames [FRAME_SAMPLES] are taken
    from `frames_in` as their send time comes, and each played frame goes to `sink` as it plays.
    Only the packets in flight and the jitter buffer are held, so memory does not grow with the
    call. Gives the frames and stats that `simulate` gives for the same audio.

    The send-to-playout delay of `PlayoutTick` takes the encoder to number its packets one per
    frame, as every StreamEncoder does.
    """
    check_clock_drift(clock_drift)
    link = (network or Network()).link(seed)
    sender = _Sender(frames_in, encoder, link)
    rate = 1.0 + clock_drift
    receiver = _AdaptiveReceiver(decoder, playout or AdaptivePlayout(), rate, sink)
    tick = TICK_PHASE * FRAME_SECONDS  # on the receiver's clock
    while True:
        now = tick / rate  # the same instant on the sender's clock
        receiver.receive(sender.arrivals(now))
        if sender.done:
            receiver.end(sender.last_seq)
        if receiver.drained:
            break
        receiver.play(now)
        tick += FRAME_SECONDS
    return SimulationStats(
        frames_sent=sender.frames_sent,
        bytes_sent=sender.bytes_sent,
        lost=sender.lost,
        network=link.counters,
        **receiver.counts(),
    )


def check_clock_drift(clock_drift: float) -> None:
    """ValueError unless `clock_drift` is finite and strictly within +-MAX_CLOCK_DRIFT."""
    if not (math.isfinite(clock_drift) and abs(clock_drift) < MAX_CLOCK_DRIFT):
        raise ValueError(
            f"clock drift must be a finite fraction within +-{MAX_CLOCK_DRIFT:g} "
            f"(0.01 is 1 %), got {clock_drift}"
        )


class _Sender:
    """Encodes each frame at its send time and keeps the copies that the link lets through in
    flight until they arrive. Times are seconds on the sender's clock."""

    def __init__(self, frames_in: Iterable[np.ndarray], encoder: StreamEncoder, link: Link) -> None:
        self._frames = iter(frames_in)
        self._upcoming = next(self._frames, None)
        self._encoder = encoder
        self._link = link
        self._in_flight: list[_Arrival] = []
        self._copies = 0
        self.frames_sent = 0
        self.bytes_sent = 0
        self.lost = 0
        """Frames of which no copy got through."""
        self.last_seq: int | None = None
        """The sequence number of the last frame, once it has been sent."""

    @property
    def done(self) -> bool:
        """Whether every frame has been sent and every copy has arrived."""
        return self._upcoming is None and not self._in_flight

    def arrivals(self, now: float) -> Iterator[_Arrival]:
        """The copies that arrive by `now`, in order of arrival, after sending every frame due by
        then (a copy never arrives before it is sent)."""
        while self._upcoming is not None and self.frames_sent * FRAME_SECONDS <= now:
            frame, self._upcoming = self._upcoming, next(self._frames, None)
            self._send(frame)
        while self._in_flight and self._in_flight[0].time <= now:
            yield heapq.heappop(self._in_flight)

    def _send(self, frame: np.ndarray) -> None:
        index = self.frames_sent
        data = self._encoder.push(frame)
        times = self._link.send(index * FRAME_SECONDS, len(data))
        for time in times:
            heapq.heappush(self._in_flight, _Arrival(time, self._copies, index, data))
            self._copies += 1
        self.frames_sent += 1
        self.bytes_sent += len(data)
        self.lost += not times
        if self._upcoming is None:
            self.last_seq = Packet.parse(data).seq


class _Decoding:
    """Decodes popped frames and counts what was concealed and what was rebuilt."""

    def __init__(self, decoder: StreamDecoder) -> None:
        self.decoder = decoder
        self.concealed = 0
        self.recovered = 0

    def play(self, packet: Packet | None, following: Sequence[Packet | None]) -> np.ndarray:
        """The decoded float32 frame [FRAME_SAMPLES]; `following` as `StreamDecoder.push` takes."""
        if packet is None:
            self.concealed += 1
            self.recovered += rebuildable(following)
        return np.asarray(self.decoder.push(packet, following), dtype=np.float32)


class _AdaptiveReceiver:
    """The receiving end of `simulate_stream`: the jitter buffer on a clock that runs `rate`
    times as fast as the sender's, the decoder, and the sink."""

    def __init__(
        self, decoder: StreamDecoder, settings: AdaptivePlayout, rate: float, sink: Sink
    ) -> None:
        self._buffer = settings.buffer()
        self._decoding = _Decoding(decoder)
        self._rate = rate
        self._sink = sink
        self._reference: tuple[int, int] | None = None
        """(frame index, sequence number) of the latest packet stored: unwraps played seqs."""
        self._rejected = 0
        self._played = 0

    @property
    def drained(self) -> bool:
        return self._buffer.drained

    def receive(self, arrivals: Iterable[_Arrival]) -> None:
        """Parse each copy and store it, stamped with its arrival time on the receiver's clock."""
        for arrival in arrivals:
            packet = _parse(arrival.data)
            if packet is None:
                self._rejected += 1
                continue
            self._buffer.put(packet, arrival.time * self._rate)
            self._reference = (arrival.index, packet.seq)

    def end(self, last_seq: int | None) -> None:
        """The stream is over: play out up to `last_seq`."""
        if not self._buffer.drained:
            self._buffer.end(last_seq)

    def play(self, now: float) -> None:
        """This tick, at `now` on the sender's clock: pop, decode and sink one frame if playing."""
        if not self._buffer.playing:
            return
        packet, following = self._buffer.pop()
        audio = self._decoding.play(packet, following)
        self._played += 1
        delay = None if packet is None else now - self._index(packet.seq) * FRAME_SECONDS
        buffer = self._buffer
        self._sink(audio, PlayoutTick(now, delay, buffer.buffered_frames, buffer.target_frames))

    def _index(self, seq: int) -> int:
        """The frame index of `seq`: the one nearest to the latest packet stored."""
        assert self._reference is not None  # a packet was stored before any was popped
        index, reference_seq = self._reference
        return index + wrapped_difference(seq, reference_seq, SEQ_MODULO)

    def counts(self) -> dict[str, int]:
        """The SimulationStats fields that the receiver counts."""
        counters = self._buffer.counters
        return {
            "late": counters.late,
            "duplicate": counters.duplicate,
            "rejected": self._rejected,
            "frames_played": self._played,
            "concealed": self._decoding.concealed,
            "recovered": self._decoding.recovered,
            "stretched": counters.stretched,
            "skipped": counters.skipped,
        }


def _parse(data: bytes) -> Packet | None:
    try:
        return Packet.parse(data)
    except PacketError:
        return None


def _simulate_fixed(
    audio: np.ndarray,
    encoder: StreamEncoder,
    decoder: StreamDecoder,
    network: Network | None,
    settings: FixedPlayout,
    seed: int,
) -> tuple[np.ndarray, SimulationStats]:
    """`simulate` with a fixed playout: every copy is known before the first frame plays."""
    link = (network or Network()).link(seed)
    sender = _Sender(frames(audio), encoder, link)
    arrivals = list(sender.arrivals(math.inf))
    played, counts = _fixed_playout(arrivals, sender.frames_sent, decoder, settings)
    stats = SimulationStats(
        frames_sent=sender.frames_sent,
        bytes_sent=sender.bytes_sent,
        lost=sender.lost,
        frames_played=len(played),
        network=link.counters,
        **counts,
    )
    return _joined(played), stats


def _fixed_playout(
    arrivals: list[_Arrival], count: int, decoder: StreamDecoder, settings: FixedPlayout
) -> tuple[list[np.ndarray], dict[str, int]]:
    first: dict[int, tuple[float, Packet]] = {}
    duplicate = rejected = 0
    for arrival in arrivals:
        packet = _parse(arrival.data)
        if packet is None:
            rejected += 1
        elif arrival.index in first:
            duplicate += 1
        else:
            first[arrival.index] = (arrival.time, packet)
    delay = settings.delay_ms / 1000
    decoding = _Decoding(decoder)
    played: list[np.ndarray] = []
    late = 0

    def in_time(index: int, deadline: float) -> Packet | None:
        entry = first.get(index)
        return entry[1] if entry is not None and entry[0] <= deadline else None

    for index in range(count):
        deadline = index * FRAME_SECONDS + delay
        packet = in_time(index, deadline)
        late += packet is None and index in first
        distances = range(1, MAX_REDUNDANT_FRAMES + 1)
        following = tuple(in_time(index + distance, deadline) for distance in distances)
        played.append(decoding.play(packet, following))
    return played, {
        "late": late,
        "duplicate": duplicate,
        "rejected": rejected,
        "concealed": decoding.concealed,
        "recovered": decoding.recovered,
        "stretched": 0,
        "skipped": 0,
    }


def _joined(played: list[np.ndarray]) -> np.ndarray:
    """Played frames, each float32 [FRAME_SAMPLES], as one float32 [frames * FRAME_SAMPLES]."""
    return np.concatenate(played) if played else np.zeros(0, dtype=np.float32)


