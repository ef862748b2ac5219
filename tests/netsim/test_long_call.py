"""Long calls with clock drift through `simulate_stream`: the jitter buffer stays bounded, the
send-to-playout delay does not drift, the buffer corrects at the drift rate, and memory stays
flat. Opus (fast), three simulated minutes across the 16-bit sequence-number wrap."""

from __future__ import annotations

import functools
import gc
import itertools
import math
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from rtcodec.audio import default_speech, frames
from rtcodec.bitstream import SEQ_MODULO
from rtcodec.config import FRAME_RATE
from rtcodec.netsim import Bernoulli, Delay, FixedPlayout, Network
from rtcodec.netsim.simulate import (
    AdaptivePlayout,
    PlayoutTick,
    SimulationStats,
    simulate,
    simulate_stream,
)
from rtcodec.opus import OpusStreamDecoder, OpusStreamEncoder
from rtcodec.transport.jitter import SHRINK_MARGIN

MINUTES = 3
FRAMES = MINUTES * 60 * FRAME_RATE
FIRST_SEQ = SEQ_MODULO - FRAMES // 2
"""The sequence numbers wrap half-way through the call."""
NETWORK = Network(loss=Bernoulli(0.01), delay=Delay(40, jitter_ms=10))
WARMUP_SECONDS = 10.0
WINDOW_SECONDS = 20.0
"""The delay at the start and at the end: its mean over this long."""
DELAY_LIMIT = 0.2
"""Seconds the send-to-playout delay must stay under throughout."""
DELAY_CHANGE_LIMIT = 0.04
"""Seconds (two frames) by which the delay at the end may differ from the delay at the start;
uncorrected, 1 % drift over three minutes would move it by 1.8 s."""


@dataclass(frozen=True)
class Call:
    stats: SimulationStats
    ticks: list[PlayoutTick]

    def mean_delay(self, start: float, stop: float) -> float:
        """Mean send-to-playout delay (s) of the frames played with a packet in [start, stop)."""
        delays = [t.delay for t in self.ticks if t.delay is not None and start <= t.time < stop]
        return float(np.mean(delays))


@functools.cache
def speech_frames() -> tuple[np.ndarray, ...]:
    """The built-in speech, float32 frames [FRAME_SAMPLES] (espeak-ng runs once)."""
    return tuple(frames(default_speech().audio))


def looped_speech(count: int) -> Iterator[np.ndarray]:
    """`count` frames of the built-in speech, looped."""
    return itertools.islice(itertools.cycle(speech_frames()), count)


def long_call(drift: float, count: int = FRAMES) -> Call:
    ticks: list[PlayoutTick] = []
    stats = simulate_stream(
        looped_speech(count), OpusStreamEncoder(16, first_seq=FIRST_SEQ), OpusStreamDecoder(),
        NETWORK, sink=lambda frame, tick: ticks.append(tick), seed=3, clock_drift=drift,
    )
    return Call(stats, ticks)


@pytest.fixture(scope="module", params=[0.01, -0.01], ids=["receiver 1% fast", "receiver 1% slow"])
def drifting(request: pytest.FixtureRequest) -> tuple[float, Call]:
    return request.param, long_call(request.param)


def test_the_jitter_buffer_stays_within_its_bounds(drifting: tuple[float, Call]) -> None:
    _, call = drifting
    playout = AdaptivePlayout()
    assert max(tick.buffered_frames for tick in call.ticks) <= playout.max_frames + SHRINK_MARGIN
    targets = {tick.target_frames for tick in call.ticks}
    assert playout.min_frames <= min(targets) and max(targets) <= playout.max_frames
    assert call.stats.late == 0 and call.stats.lost == call.stats.network.lost > 0


def test_the_delay_does_not_drift(drifting: tuple[float, Call]) -> None:
    _, call = drifting
    delays = [tick.delay for tick in call.ticks if tick.delay is not None]
    assert len(delays) == call.stats.frames_played - call.stats.concealed
    assert min(delays) > 0 and max(delays) < DELAY_LIMIT
    start = call.mean_delay(WARMUP_SECONDS, WARMUP_SECONDS + WINDOW_SECONDS)
    end_time = FRAMES / FRAME_RATE
    end = call.mean_delay(end_time - WINDOW_SECONDS, end_time)
    assert abs(end - start) <= DELAY_CHANGE_LIMIT


def test_the_buffer_corrects_at_the_drift_rate(drifting: tuple[float, Call]) -> None:
    drift, call = drifting
    stats = call.stats
    expected = drift * FRAMES  # +90 stretched at +1 %, -90 (skipped) at -1 %
    corrections, against = (
        (stats.stretched, stats.skipped) if drift > 0 else (stats.skipped, stats.stretched)
    )
    assert 0.8 * abs(expected) <= corrections <= 1.25 * abs(expected)
    assert against <= 0.1 * abs(expected)
    played_more = stats.frames_played - stats.frames_sent
    assert played_more == pytest.approx(expected, abs=0.2 * abs(expected))


def test_without_drift_the_buffer_hardly_corrects() -> None:
    stats = long_call(0.0, FRAMES // 3).stats
    assert stats.stretched + stats.skipped <= 10
    assert abs(stats.frames_played - stats.frames_sent) <= 10


def test_without_jitter_or_drift_the_delay_is_constant() -> None:
    ticks: list[PlayoutTick] = []
    simulate_stream(
        looped_speech(500), OpusStreamEncoder(16), OpusStreamDecoder(), Network(delay=Delay(30)),
        sink=lambda frame, tick: ticks.append(tick),
    )
    delays = {round(tick.delay, 9) for tick in ticks if tick.delay is not None}
    assert len(ticks) == 500 and len(delays) == 1
    assert 0.03 < delays.pop() < 0.03 + 0.02 * (AdaptivePlayout().min_frames + 1)


def live_bytes() -> int:
    """Python allocations (numpy's included) still reachable: opuslib leaves cyclic garbage."""
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def test_memory_stays_flat_through_a_long_call() -> None:
    """Live memory after the warm-up and a second before the end of 90 s at -1 % drift (the
    buffer fills), both taken while the call runs."""
    count = FRAMES // 2
    readings = iter([WARMUP_SECONDS, count / FRAME_RATE - 1])
    due = next(readings)
    traced: list[int] = []

    def sink(frame: np.ndarray, tick: PlayoutTick) -> None:
        nonlocal due
        if tick.time >= due:
            traced.append(live_bytes())
            due = next(readings, math.inf)

    tracemalloc.start()
    try:
        simulate_stream(looped_speech(count), OpusStreamEncoder(16), OpusStreamDecoder(), NETWORK,
                        sink=sink, clock_drift=-0.01)
    finally:
        tracemalloc.stop()
    assert len(traced) == 2
    assert traced[1] - traced[0] < 32 * 1024  # keeping every packet sent would take 300 KB


@pytest.mark.parametrize("drift", [math.nan, math.inf, -math.inf, 0.1, -0.1, 0.5])
def test_impossible_drifts_are_refused(drift: float) -> None:
    with pytest.raises(ValueError, match="clock drift must be a finite fraction within"):
        simulate(np.zeros(3200, np.float32), OpusStreamEncoder(16), OpusStreamDecoder(),
                 clock_drift=drift)


def test_a_fixed_playout_takes_no_drift() -> None:
    audio = np.zeros(3200, np.float32)
    with pytest.raises(ValueError, match="needs the adaptive playout"):
        simulate(audio, OpusStreamEncoder(16), OpusStreamDecoder(), playout=FixedPlayout(60),
                 clock_drift=0.01)
    received, _ = simulate(audio, OpusStreamEncoder(16), OpusStreamDecoder(),
                           playout=FixedPlayout(60), clock_drift=0.0)
    assert len(received) == 3200
