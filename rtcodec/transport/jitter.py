"""The receiver's adaptive jitter buffer: packets in, in any order, at any time; one frame out per
20 ms playout tick.

Sequence numbers are 16-bit and wrap; the buffer extends each to an unbounded index (the nearest
one to the newest index so far). The target delay, in frames, follows the measured jitter: the
95th percentile of recent transit times (arrival minus the frame's nominal send time) above their
minimum, rounded up to frames, plus one frame for the phase of the playout tick, within
[min_frames, max_frames].

One pop per tick. The frame to play is the packet at the playout index when it is there. When it is
missing, the buffer either declares it lost (the decoder conceals it, or rebuilds it from the
packets after it that have arrived, up to MAX_REDUNDANT_FRAMES later: redundancy, FEC) or, when
fewer frames than the target are buffered, holds the index for one tick: the decoder conceals and
the delay grows by a frame. So, until the stream ends, a frame is declared lost only once a later
packet has arrived and the target is buffered: when packets arrive in order, the packet after a
burst of losses is there by then, and with redundancy of depth d a burst of up to d frames is
rebuilt whole, once the buffer has held (and stretched) through it. When the buffer has stayed at
least two frames above target for half a second, it skips frames to come back to one above target.
Packets that arrive after their tick are late; arrivals that span more than `capacity` frames push
the playout index forward (overflow). An arrival after a gap of `resync_after` seconds starts
afresh: new index base, new jitter history, and a new pre-roll.

A packet more than `capacity` frames outside the window (ahead of the newest index, or behind the
playout index) is an outlier: dropped, so that one stray sequence number cannot become the newest
and make every genuine packet late. Only when PROBATION consecutive arrivals are outliers with
consecutive sequence numbers (RFC 3550 appendix A.1's probation: the sender really restarted its
sequence numbers) does the buffer start afresh there, as after a gap; the probation packets before
the last one stay dropped.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Final

import numpy as np

from rtcodec.bitstream import MAX_REDUNDANT_FRAMES, SEQ_MODULO, Packet, wrapped_difference
from rtcodec.config import FRAME_RATE, FRAME_SAMPLES, SAMPLE_RATE

FRAME_SECONDS: Final = FRAME_SAMPLES / SAMPLE_RATE
"""Duration of one frame, and the playout tick."""
JITTER_PERCENTILE: Final = 95.0
"""Share of packets that the target delay lets arrive in time, in percent."""
JITTER_WINDOW: Final = 2 * FRAME_RATE
"""Arrivals (two seconds' worth) over which the jitter is measured."""
SHRINK_WINDOW: Final = FRAME_RATE // 2
"""Pops (half a second) that the buffer must stay above target before it skips frames."""
SHRINK_MARGIN: Final = 2
"""Frames above target, throughout SHRINK_WINDOW, that make the buffer skip frames."""
PROBATION: Final = 2
"""Consecutive outliers, with consecutive sequence numbers, that move the stream to a new base."""


class PutResult(Enum):
    """What `JitterBuffer.put` did with a packet."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    LATE = "late"
    OUTLIER = "outlier"


@dataclass
class JitterCounters:
    """What the buffer has done since it was created (resyncs included)."""

    accepted: int = 0
    """Packets stored for playout (first arrivals in time)."""
    duplicate: int = 0
    """Packets whose index had already arrived; dropped."""
    late: int = 0
    """Packets that arrived after their playout tick; dropped."""
    overflow: int = 0
    """Stored packets dropped because arrivals spanned more than the capacity."""
    concealed: int = 0
    """Frames played without their own packet (lost, late, or held)."""
    stretched: int = 0
    """Of the concealed frames, those inserted by holding the playout index (delay grew)."""
    skipped: int = 0
    """Frames skipped to shrink the delay after the buffer stayed above target."""
    resyncs: int = 0
    """Fresh starts: after a gap in arrivals, or after PROBATION outliers agreed on a new base."""
    outlier: int = 0
    """Packets more than `capacity` frames outside the window; dropped (a stray sequence number,
    or the first of a restarted stream's probation packets)."""


class JitterBuffer:
    """Reorders packets, absorbs jitter with an adaptive delay, and paces them out one per tick.

    `put()` on arrival, `pop()` once per FRAME_SECONDS tick while `playing`, `end()` when the
    stream ends, then keep popping until `drained`. Not thread-safe: use it from the loop only.
    """

    def __init__(
        self,
        *,
        min_frames: int = 1,
        max_frames: int = 10,
        capacity: int = FRAME_RATE,
        resync_after: float = 1.0,
    ) -> None:
        """`min_frames` <= target delay <= `max_frames` <= `capacity`, the most frames buffered;
        `resync_after`: seconds without arrivals after which the next arrival starts afresh."""
        if not 1 <= min_frames <= max_frames <= capacity:
            raise ValueError(
                f"need 1 <= min_frames <= max_frames <= capacity, got {min_frames}, "
                f"{max_frames}, {capacity}"
            )
        if not resync_after > max_frames * FRAME_SECONDS:
            raise ValueError(f"resync_after must exceed the maximum delay, got {resync_after} s")
        self.counters = JitterCounters()
        self._min_frames = min_frames
        self._max_frames = max_frames
        self._capacity = capacity
        self._resync_after = resync_after
        self._started = False
        self._ended = False
        self._end_index: int | None = None
        self._last_arrival: float | None = None
        self._expected_before = 0
        self._start_epoch()

    @property
    def target_frames(self) -> int:
        """Current target delay in frames, from the jitter of the last JITTER_WINDOW arrivals."""
        return self._target

    @property
    def buffered_frames(self) -> int:
        """Frames from the playout index to the newest arrival: the delay the buffer holds now."""
        if self._next is None or self._newest is None:
            return 0
        return max(self._newest - self._next + 1, 0)

    @property
    def playing(self) -> bool:
        """Whether `pop()` yields frames: from the first pre-roll's end until the stream ends."""
        return self._started or self._ready()

    @property
    def drained(self) -> bool:
        """Whether `end()` was called and every frame up to the end has been popped."""
        if not self._ended:
            return False
        return self._next is None or self._end_index is None or self._next > self._end_index

    @property
    def lost(self) -> int:
        """Frames that never arrived: expected (first to newest, over every epoch) minus arrived."""
        expected = self._expected_before + self._epoch_span()
        return max(expected - self.counters.accepted - self.counters.late, 0)

    def put(self, packet: Packet, arrival: float) -> PutResult:
        """Store `packet`, which arrived at `arrival` seconds on the playout clock."""
        if self._last_arrival is not None and arrival - self._last_arrival > self._resync_after:
            self._resync()
        self._last_arrival = arrival
        index = self._extend(packet.seq)
        if self._is_outlier(index):
            if self._on_probation(packet.seq):
                return PutResult.OUTLIER
            self._resync()
            index = self._extend(packet.seq)
        else:
            self._probation_seq = None
        if index in self._seen:
            self.counters.duplicate += 1
            return PutResult.DUPLICATE
        if self._next is not None and index < self._next and self._started:
            self.counters.late += 1
            self._seen.add(index)  # its other copies are duplicates, not more late packets
            return PutResult.LATE
        self._store(index, packet, arrival)
        return PutResult.ACCEPTED

    def pop(self) -> tuple[Packet | None, tuple[Packet | None, ...]]:
        """The frame for this tick, and the MAX_REDUNDANT_FRAMES indices after it: each one's
        packet if it has arrived, else None (the `following` of `StreamDecoder.push`).

        The frame is None when it must be concealed. Before the first pre-roll ends
        (`playing` False) this returns (None, ()) and changes nothing; a held tick returns
        (None, ()) too, since the frame may still arrive and must not be rebuilt yet.
        """
        if not self._started and not self._ready():
            return None, ()
        self._started = True
        if self._buffering and not self._ready():
            return self._hold()
        self._buffering = False
        self._shrink_if_above_target()
        index = self._next
        assert index is not None  # _ready() guarantees a playout index
        packet = self._packets.pop(index, None)
        if packet is None and not self._ended and self.buffered_frames < self.target_frames:
            return self._hold()
        self._next = index + 1
        self._forget_old_indices()
        if packet is None:
            self.counters.concealed += 1
        return packet, self._following(index)

    def end(self, last_seq: int | None = None) -> None:
        """No packets after `last_seq` (default: after the newest one) will be played. Missing
        frames are no longer held for, and the buffer is `drained` once `last_seq` is popped.
        A `last_seq` more than `capacity` frames past the newest arrival is taken as that far."""
        self._ended = True
        if last_seq is None or self._newest is None:
            self._end_index = self._newest
        else:
            self._end_index = min(self._extend(last_seq), self._newest + self._capacity)
            self._newest = max(self._newest, self._end_index)

    def _start_epoch(self) -> None:
        """Forget the stream so far: the next arrival starts a new index base and a pre-roll."""
        self._packets: dict[int, Packet] = {}
        self._seen: set[int] = set()
        self._transits: deque[float] = deque(maxlen=JITTER_WINDOW)
        self._first: int | None = None
        self._next: int | None = None
        self._newest: int | None = None
        self._buffering = True
        self._target = self._min_frames
        self._min_excess = math.inf
        self._window_pops = 0
        self._probation_seq: int | None = None
        self._probation_count = 0

    def _is_outlier(self, index: int) -> bool:
        """Whether `index` lies more than `capacity` frames ahead of the newest index or behind
        the playout index."""
        if self._newest is None or self._next is None:
            return False
        return index > self._newest + self._capacity or index < self._next - self._capacity

    def _on_probation(self, seq: int) -> bool:
        """Count the outlier `seq`; whether the stream stays where it is (False: PROBATION
        consecutive outliers with consecutive sequence numbers moved it, and this one is not an
        outlier but the first packet of the new base)."""
        if self._probation_seq is not None and seq == (self._probation_seq + 1) % SEQ_MODULO:
            self._probation_count += 1
        else:
            self._probation_count = 1
        self._probation_seq = seq
        if self._probation_count >= PROBATION:
            return False
        self.counters.outlier += 1
        return True

    def _resync(self) -> None:
        self._expected_before += self._epoch_span()
        self.counters.resyncs += 1
        self._start_epoch()

    def _epoch_span(self) -> int:
        if self._first is None or self._newest is None:
            return 0
        return self._newest - self._first + 1

    def _extend(self, seq: int) -> int:
        """The index of `seq`: the one nearest to the newest index (the seq itself at first)."""
        if self._newest is None:
            return seq
        return self._newest + wrapped_difference(seq, self._newest, SEQ_MODULO)

    def _store(self, index: int, packet: Packet, arrival: float) -> None:
        self.counters.accepted += 1
        self._packets[index] = packet
        self._seen.add(index)
        self._transits.append(arrival - index * FRAME_SECONDS)
        self._target = self._measure_target()
        self._first = index if self._first is None else min(self._first, index)
        self._next = index if self._next is None else min(self._next, index)
        self._newest = index if self._newest is None else max(self._newest, index)
        self._drop_beyond_capacity()

    def _measure_target(self) -> int:
        """The target delay for the transits in the window: their JITTER_PERCENTILE above their
        minimum, in whole frames, plus one frame for the phase of the playout tick."""
        if len(self._transits) < 2:
            return self._min_frames
        transits = np.fromiter(self._transits, dtype=np.float64)
        spread = np.percentile(transits, JITTER_PERCENTILE) - transits.min()
        frames = math.ceil(spread / FRAME_SECONDS - 1e-9) + 1
        return min(max(frames, self._min_frames), self._max_frames)

    def _drop_beyond_capacity(self) -> None:
        """Move the playout index up so that at most `capacity` frames are buffered."""
        excess = self.buffered_frames - self._capacity
        if excess > 0:
            self.counters.overflow += self._discard(excess)

    def _discard(self, count: int) -> int:
        """Advance the playout index by `count` frames; the number of stored packets dropped."""
        assert self._next is not None
        self._next += count
        stale = [index for index in self._packets if index < self._next]  # at most `capacity`
        for index in stale:
            del self._packets[index]
        dropped = len(stale)
        self._forget_old_indices()
        return dropped

    def _forget_old_indices(self) -> None:
        """Keep duplicate detection to the last `capacity` frames before the playout index."""
        if self._next is not None and len(self._seen) > 2 * self._capacity:
            oldest = self._next - self._capacity
            self._seen = {index for index in self._seen if index >= oldest}

    def _ready(self) -> bool:
        """Whether the pre-roll is over: the target delay is buffered, or the stream has ended."""
        if self._next is None:
            return False
        return self._ended or self.buffered_frames >= self.target_frames

    def _hold(self) -> tuple[None, tuple[()]]:
        """Conceal one frame without advancing: the delay grows by one frame."""
        self.counters.concealed += 1
        self.counters.stretched += 1
        return None, ()

    def _following(self, index: int) -> tuple[Packet | None, ...]:
        """The packets at the MAX_REDUNDANT_FRAMES indices after `index`, None where missing."""
        distances = range(1, MAX_REDUNDANT_FRAMES + 1)
        return tuple(self._packets.get(index + distance) for distance in distances)

    def _shrink_if_above_target(self) -> None:
        """Skip frames once the buffer has stayed SHRINK_MARGIN or more above target for a whole
        SHRINK_WINDOW, leaving it one frame above target."""
        self._min_excess = min(self._min_excess, self.buffered_frames - self.target_frames)
        self._window_pops += 1
        if self._window_pops < SHRINK_WINDOW:
            return
        if self._min_excess >= SHRINK_MARGIN and not self._ended:
            skip = int(self._min_excess) - 1
            self._discard(skip)
            self.counters.skipped += skip
        self._min_excess = math.inf
        self._window_pops = 0
