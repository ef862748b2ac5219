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
  then (else it is concealed, or rebuilt from the next packet if that has arrived). Nothing is
  stretched or skipped: the received audio is exactly as long as the sent frames and in step
  with them, which is what a codec comparison wants (see benchmarks/loss.py).
"""

from __future__ import annotations

import heapq
from dataclasses import asdict, dataclass
from typing import Final

import numpy as np

from rtcodec.audio import frames
from rtcodec.bitstream import HEADER_BYTES, Packet, PacketError
from rtcodec.config import FRAME_RATE
from rtcodec.netsim.fec import rebuilds_previous
from rtcodec.netsim.models import LinkCounters, Network
from rtcodec.protocols import StreamDecoder, StreamEncoder
from rtcodec.transport.jitter import FRAME_SECONDS, JitterBuffer

TICK_PHASE: Final = 0.37
"""Adaptive playout ticks fall this fraction of a frame after the send clock's: an odd phase, so
that round-number delays do not land exactly on a tick (where rounding would decide)."""


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
    to rebuild a lost frame, the next packet must be in by then: `delay_ms` >= 20 ms plus the
    network delay."""

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
    """Of the concealed frames, those rebuilt from the next packet's redundancy or Opus FEC."""
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
        return _kbps(self.bytes_sent, self.frames_sent)

    @property
    def payload_kbps(self) -> float:
        """As `total_kbps`, without the fixed HEADER_BYTES of each packet."""
        return _kbps(self.bytes_sent - HEADER_BYTES * self.frames_sent, self.frames_sent)

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


def simulate(
    audio: np.ndarray,
    encoder: StreamEncoder,
    decoder: StreamDecoder,
    network: Network | None = None,
    *,
    playout: Playout | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, SimulationStats]:
    """Send float32 `audio` [samples] through `encoder`, `network` (seeded with `seed`) and
    `decoder`; return the received float32 audio [frames_played * FRAME_SAMPLES] and the stats.

    `playout`: `AdaptivePlayout()` (the call engine's jitter buffer, the default) or
    `FixedPlayout(delay_ms)`. The same arguments give the same result, bit for bit.
    """
    link = (network or Network()).link(seed)
    packets = [encoder.push(frame) for frame in frames(audio)]
    heap: list[_Arrival] = []
    for index, data in enumerate(packets):
        for arrival in link.send(index * FRAME_SECONDS, len(data)):
            heap.append(_Arrival(arrival, len(heap), index, data))
    heapq.heapify(heap)
    arrivals = [heapq.heappop(heap) for _ in range(len(heap))]
    chosen = playout or AdaptivePlayout()
    if isinstance(chosen, FixedPlayout):
        played, counts = _fixed_playout(arrivals, len(packets), decoder, chosen)
    else:
        last_seq = Packet.parse(packets[-1]).seq if packets else None
        played, counts = _adaptive_playout(arrivals, len(packets), last_seq, decoder, chosen)
    arrived = {arrival.index for arrival in arrivals}
    stats = SimulationStats(
        frames_sent=len(packets),
        bytes_sent=sum(map(len, packets)),
        lost=len(packets) - len(arrived),
        frames_played=len(played),
        network=link.counters,
        **counts,
    )
    audio_out = np.concatenate(played) if played else np.zeros(0, dtype=np.float32)
    return audio_out.astype(np.float32, copy=False), stats


class _Decoding:
    """Decodes popped frames and counts what was concealed and what was rebuilt."""

    def __init__(self, decoder: StreamDecoder) -> None:
        self.decoder = decoder
        self.played: list[np.ndarray] = []
        self.concealed = 0
        self.recovered = 0

    def play(self, packet: Packet | None, following: Packet | None) -> None:
        if packet is None:
            self.concealed += 1
            self.recovered += following is not None and rebuilds_previous(following)
        self.played.append(np.asarray(self.decoder.push(packet, following), dtype=np.float32))


def _parse(data: bytes) -> Packet | None:
    try:
        return Packet.parse(data)
    except PacketError:
        return None


def _adaptive_playout(
    arrivals: list[_Arrival],
    count: int,
    last_seq: int | None,
    decoder: StreamDecoder,
    settings: AdaptivePlayout,
) -> tuple[list[np.ndarray], dict[str, int]]:
    buffer = settings.buffer()
    decoding = _Decoding(decoder)
    rejected = 0
    last_send = (count - 1) * FRAME_SECONDS
    pending = iter(arrivals)
    upcoming = next(pending, None)
    tick = TICK_PHASE * FRAME_SECONDS
    while True:
        while upcoming is not None and upcoming.time <= tick:
            packet = _parse(upcoming.data)
            if packet is None:
                rejected += 1
            else:
                buffer.put(packet, upcoming.time)
            upcoming = next(pending, None)
        if upcoming is None and tick >= last_send and not buffer.drained:
            buffer.end(last_seq)
        if buffer.drained:
            break
        if buffer.playing:
            decoding.play(*buffer.pop())
        tick += FRAME_SECONDS
    counters = buffer.counters
    return decoding.played, {
        "late": counters.late,
        "duplicate": counters.duplicate,
        "rejected": rejected,
        "concealed": decoding.concealed,
        "recovered": decoding.recovered,
        "stretched": counters.stretched,
        "skipped": counters.skipped,
    }


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
    late = 0

    def in_time(index: int, deadline: float) -> Packet | None:
        entry = first.get(index)
        return entry[1] if entry is not None and entry[0] <= deadline else None

    for index in range(count):
        deadline = index * FRAME_SECONDS + delay
        packet = in_time(index, deadline)
        late += packet is None and index in first
        decoding.play(packet, None if packet is not None else in_time(index + 1, deadline))
    return decoding.played, {
        "late": late,
        "duplicate": duplicate,
        "rejected": rejected,
        "concealed": decoding.concealed,
        "recovered": decoding.recovered,
        "stretched": 0,
        "skipped": 0,
    }


def _kbps(byte_count: int, frame_count: int) -> float:
    return byte_count * 8 * FRAME_RATE / frame_count / 1000 if frame_count else 0.0
