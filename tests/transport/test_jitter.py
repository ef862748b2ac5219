"""JitterBuffer: ordering, duplicates, late packets, wrap-around, bounds, resync, adaptation."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rtcodec.bitstream import MAX_REDUNDANT_FRAMES, SEQ_MODULO, Packet
from rtcodec.transport.jitter import (
    FRAME_SECONDS,
    PROBATION,
    SHRINK_WINDOW,
    JitterBuffer,
    PutResult,
)


def packet(seq: int) -> Packet:
    """A small rtcodec packet whose code identifies its seq."""
    return Packet(seq % SEQ_MODULO, np.array([seq % 1000]))


def arrive(buffer: JitterBuffer, seqs: list[int], at: float = 0.0) -> list[PutResult]:
    """Put `seqs` in this order, each at its nominal time plus `at` (no jitter)."""
    return [buffer.put(packet(seq), at + index * FRAME_SECONDS) for index, seq in enumerate(seqs)]


def played(buffer: JitterBuffer, count: int) -> list[int | None]:
    """The seqs of the next `count` popped frames (None where concealed)."""
    frames = [buffer.pop()[0] for _ in range(count)]
    return [None if frame is None else frame.seq for frame in frames]


def test_in_order_stream_plays_in_order_with_the_packets_after_each_frame() -> None:
    buffer = JitterBuffer()
    arrive(buffer, [0, 1, 2])
    assert buffer.pop() == (packet(0), (packet(1), packet(2), None))
    assert played(buffer, 2) == [1, 2]
    assert buffer.counters.concealed == 0


def test_reordered_packets_play_in_sequence_order() -> None:
    buffer = JitterBuffer(min_frames=3)
    arrive(buffer, [1, 0, 3, 2, 5, 4])
    assert played(buffer, 6) == [0, 1, 2, 3, 4, 5]
    assert buffer.counters.accepted == 6 and buffer.counters.late == 0


@settings(max_examples=50, deadline=None)
@given(st.permutations(list(range(12))))
def test_any_reordering_within_the_buffered_delay_is_undone(order: list[int]) -> None:
    buffer = JitterBuffer(min_frames=12, max_frames=12)
    arrive(buffer, order)
    assert played(buffer, 12) == list(range(12))


def test_duplicates_are_counted_and_dropped_before_and_after_playout() -> None:
    buffer = JitterBuffer()
    results = arrive(buffer, [0, 0, 1])
    assert results == [PutResult.ACCEPTED, PutResult.DUPLICATE, PutResult.ACCEPTED]
    assert played(buffer, 1) == [0]
    assert buffer.put(packet(0), 1.0) is PutResult.DUPLICATE
    assert buffer.counters.duplicate == 2
    assert played(buffer, 1) == [1]


def test_a_packet_after_its_playout_tick_is_late_and_its_frame_was_concealed() -> None:
    buffer = JitterBuffer()
    arrive(buffer, [0, 2, 3])
    assert played(buffer, 1) == [0]
    assert buffer.pop() == (None, (packet(2), packet(3), None))
    assert buffer.put(packet(1), 0.1) is PutResult.LATE
    assert buffer.put(packet(1), 0.11) is PutResult.DUPLICATE  # a second copy: one late packet
    assert played(buffer, 2) == [2, 3]
    assert buffer.counters.late == 1 and buffer.counters.concealed == 1
    assert buffer.counters.duplicate == 1
    assert buffer.lost == 0  # it arrived, too late: late, not lost


def test_sequence_numbers_wrap_around() -> None:
    buffer = JitterBuffer(min_frames=2)
    arrive(buffer, [65534, 0, 65535, 1, 2])
    assert played(buffer, 5) == [65534, 65535, 0, 1, 2]
    assert buffer.counters.late == 0 and buffer.lost == 0


def test_a_long_stream_plays_straight_through_the_wrap() -> None:
    buffer = JitterBuffer()
    for index, seq in enumerate(range(SEQ_MODULO - 500, SEQ_MODULO + 500)):
        buffer.put(packet(seq), index * FRAME_SECONDS)
        assert buffer.pop()[0] == packet(seq)
    assert buffer.counters.late == 0 and buffer.counters.duplicate == 0


def test_size_is_bounded_and_the_oldest_excess_is_dropped() -> None:
    buffer = JitterBuffer(min_frames=2, max_frames=4, capacity=5)
    arrive(buffer, list(range(9)))
    assert buffer.counters.overflow == 4
    assert buffer.buffered_frames == 5
    assert played(buffer, 5) == [4, 5, 6, 7, 8]


def test_a_lost_frame_is_concealed_with_the_following_packet_for_fec() -> None:
    buffer = JitterBuffer()
    arrive(buffer, [0, 2])
    assert played(buffer, 1) == [0]
    assert buffer.pop() == (None, (packet(2), None, None))
    assert buffer.lost == 1


def test_lost_frames_come_with_every_later_packet_that_redundancy_can_reach() -> None:
    """Frames 1 and 2 lost: frame 1 gets packets 3 and 4 (two and three frames later), frame 2
    gets them one and two frames later; packet 5 lies beyond MAX_REDUNDANT_FRAMES of frame 1."""
    assert MAX_REDUNDANT_FRAMES == 3
    buffer = JitterBuffer()
    arrive(buffer, [0, 3, 4, 5])
    assert played(buffer, 1) == [0]
    assert buffer.pop() == (None, (None, packet(3), packet(4)))
    assert buffer.pop() == (None, (packet(3), packet(4), packet(5)))
    assert buffer.pop() == (packet(3), (packet(4), packet(5), None))
    assert buffer.lost == 2


def test_a_burst_is_held_through_until_the_packet_after_it_can_rebuild_it() -> None:
    buffer = JitterBuffer()
    arrive(buffer, [0])
    assert played(buffer, 1) == [0]
    assert [buffer.pop(), buffer.pop()] == [(None, ()), (None, ())]  # frames 1, 2: not here yet
    buffer.put(packet(3), 0.06)
    assert buffer.pop() == (None, (None, packet(3), None))
    assert buffer.pop() == (None, (packet(3), None, None))
    assert buffer.counters.stretched == 2 and buffer.lost == 2


def test_an_underrun_holds_the_playout_index_and_grows_the_delay() -> None:
    buffer = JitterBuffer()
    arrive(buffer, [0])
    assert played(buffer, 1) == [0]
    assert buffer.pop() == (None, ())  # packet 1 is not here yet: hold, do not skip it
    buffer.put(packet(1), 0.05)
    assert played(buffer, 1) == [1]
    assert buffer.counters.stretched == 1 and buffer.counters.late == 0


def test_pre_roll_waits_for_the_target_delay_and_accepts_earlier_packets() -> None:
    buffer = JitterBuffer(min_frames=3)
    buffer.put(packet(11), 11 * FRAME_SECONDS)
    buffer.put(packet(10), 11 * FRAME_SECONDS)
    assert not buffer.playing
    assert buffer.pop() == (None, ())
    assert buffer.counters.concealed == 0  # nothing to conceal before the call's first frame
    buffer.put(packet(12), 12 * FRAME_SECONDS)
    assert buffer.playing
    assert played(buffer, 3) == [10, 11, 12]


def test_target_delay_follows_the_jitter_within_bounds() -> None:
    steady = JitterBuffer(min_frames=1, max_frames=6)
    arrive(steady, list(range(50)))
    assert steady.target_frames == 1
    jittery = JitterBuffer(min_frames=1, max_frames=6)
    rng = np.random.default_rng(0)
    for seq in range(100):
        jittery.put(packet(seq), seq * FRAME_SECONDS + rng.uniform(0, 0.05))
    assert 3 <= jittery.target_frames <= 4  # 95th percentile of up to 50 ms, plus one tick
    wild = JitterBuffer(min_frames=1, max_frames=6)
    for seq in range(100):
        wild.put(packet(seq), seq * FRAME_SECONDS + rng.uniform(0, 0.5))
    assert wild.target_frames == 6


def test_a_buffer_that_stays_above_target_skips_back_down() -> None:
    buffer = JitterBuffer(min_frames=1, max_frames=4, capacity=50)
    arrive(buffer, list(range(10)))  # a burst: ten frames buffered, target one
    assert played(buffer, 1) == [0]
    for seq in range(10, 10 + SHRINK_WINDOW):
        buffer.put(packet(seq), seq * FRAME_SECONDS)
        buffer.pop()
    assert buffer.counters.skipped == 8
    buffer.put(packet(10 + SHRINK_WINDOW), (10 + SHRINK_WINDOW) * FRAME_SECONDS)
    assert buffer.buffered_frames == buffer.target_frames + 1
    assert buffer.counters.concealed == 0


def test_a_long_gap_starts_afresh_with_a_new_sequence_base() -> None:
    buffer = JitterBuffer(min_frames=2, resync_after=1.0)
    arrive(buffer, [0, 1, 2])
    assert played(buffer, 3) == [0, 1, 2]
    restart = 40_000  # the sender restarted far away in sequence space
    buffer.put(packet(restart), 5.0)
    assert buffer.counters.resyncs == 1
    assert buffer.pop() == (None, ())  # pre-roll again: the target is not buffered yet
    buffer.put(packet(restart + 1), 5.02)
    assert played(buffer, 2) == [restart, restart + 1]
    assert buffer.lost == 0 and buffer.counters.late == 0


def test_end_drains_to_the_last_packet_and_counts_missing_ones_as_lost() -> None:
    buffer = JitterBuffer(min_frames=5)
    arrive(buffer, [0, 1, 3])
    buffer.end(last_seq=5)
    assert buffer.playing  # the stream ended: no more pre-roll
    assert played(buffer, 6) == [0, 1, None, 3, None, None]
    assert buffer.drained
    assert buffer.lost == 3 and buffer.counters.stretched == 0


def test_an_end_far_beyond_the_stream_is_capped_at_the_capacity() -> None:
    buffer = JitterBuffer(max_frames=5, capacity=5)
    arrive(buffer, [0])
    buffer.end(last_seq=30_000)  # a bogus bye must not keep the call playing for minutes
    assert played(buffer, 6) == [0, None, None, None, None, None]
    assert buffer.drained


def test_duplicate_detection_memory_stays_bounded_in_a_long_call() -> None:
    buffer = JitterBuffer(capacity=10)
    for seq in range(1000):
        buffer.put(packet(seq), seq * FRAME_SECONDS)
        buffer.pop()
    assert buffer.put(packet(995), 20.0) is PutResult.DUPLICATE
    assert buffer.put(packet(100), 20.0) is PutResult.OUTLIER  # forgotten long ago, far behind


def test_one_stray_sequence_number_is_an_outlier_and_the_stream_plays_on() -> None:
    buffer = JitterBuffer(capacity=10)
    arrive(buffer, [0, 1, 2])
    assert played(buffer, 1) == [0]
    assert buffer.put(packet(20_000), 0.06) is PutResult.OUTLIER  # far ahead: not the newest
    assert buffer.put(packet(3), 0.06) is PutResult.ACCEPTED
    assert buffer.put(packet(65_000), 0.07) is PutResult.OUTLIER  # far behind the playout index
    assert buffer.put(packet(4), 0.08) is PutResult.ACCEPTED
    assert played(buffer, 4) == [1, 2, 3, 4]
    assert buffer.counters.outlier == 2 and buffer.counters.late == 0
    assert buffer.counters.resyncs == 0 and buffer.lost == 0


def test_packets_just_inside_the_capacity_window_are_not_outliers() -> None:
    buffer = JitterBuffer(max_frames=5, capacity=5)
    arrive(buffer, [100])
    assert played(buffer, 1) == [100]
    assert buffer.put(packet(96), 0.02) is PutResult.LATE  # playout index - capacity
    assert buffer.put(packet(95), 0.02) is PutResult.OUTLIER
    assert buffer.put(packet(107), 0.02) is PutResult.OUTLIER  # newest + capacity + 1
    assert buffer.put(packet(105), 0.02) is PutResult.ACCEPTED  # newest + capacity
    assert buffer.put(packet(110), 0.02) is PutResult.ACCEPTED  # overflow: playout moves up
    assert buffer.counters.outlier == 2 and buffer.counters.overflow == 1
    assert played(buffer, 1) == [None]  # 101..105 dropped (105 stored, overflow): 106 missing


def test_a_sender_that_restarts_its_sequence_numbers_plays_again_after_probation() -> None:
    assert PROBATION == 2
    buffer = JitterBuffer(min_frames=2, capacity=10)
    arrive(buffer, list(range(10)))
    assert played(buffer, 10) == list(range(10))
    restart = 30_000  # no gap in arrivals: the sender restarted far away in sequence space
    at = 10 * FRAME_SECONDS
    assert buffer.put(packet(restart), at) is PutResult.OUTLIER  # probation: maybe a stray one
    assert buffer.put(packet(restart + 1), at) is PutResult.ACCEPTED  # agreed: a fresh epoch
    assert buffer.counters.resyncs == 1 and buffer.counters.outlier == 1
    buffer.put(packet(restart + 2), at + FRAME_SECONDS)
    assert played(buffer, 2) == [restart + 1, restart + 2]
    for offset in range(3, 50):
        result = buffer.put(packet(restart + offset), at + offset * FRAME_SECONDS)
        assert result is PutResult.ACCEPTED
        assert played(buffer, 1) == [restart + offset]
    assert buffer.put(packet(9), 2.0) is PutResult.OUTLIER  # a straggler of the old stream
    assert buffer.counters.late == 0 and buffer.counters.concealed == 0 and buffer.lost == 0


def test_outliers_that_do_not_agree_never_move_the_stream() -> None:
    buffer = JitterBuffer(capacity=10)
    arrive(buffer, [0])
    for seq in [20_000, 20_002, 40_000, 40_000, 30_000, 29_999, 50_000]:
        assert buffer.put(packet(seq), 0.0) is PutResult.OUTLIER
    assert buffer.counters.resyncs == 0 and buffer.counters.outlier == 7
    assert buffer.put(packet(1), FRAME_SECONDS) is PutResult.ACCEPTED  # ends the probation
    assert buffer.put(packet(50_001), FRAME_SECONDS) is PutResult.OUTLIER
    assert played(buffer, 2) == [0, 1]


def test_overflow_after_a_jump_costs_the_stored_packets_not_the_jump() -> None:
    buffer = JitterBuffer(min_frames=1, max_frames=4, capacity=5)
    arrive(buffer, [0, 1, 2])
    assert buffer._discard(10**12) == 3  # loops over the 3 stored packets, not 10**12 frames
    assert buffer.counters.overflow == 0 and buffer.buffered_frames == 0
