"""Impairment models: their statistics over many packets match their parameters, they are
deterministic per seed, and a trace replays exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rtcodec.netsim import (
    Bandwidth,
    Bernoulli,
    Delay,
    GilbertElliott,
    Network,
    Trace,
    TraceError,
)

PACKETS = 40_000
INTERVAL = 0.02


def run(network: Network, count: int = PACKETS, seed: int = 0, size: int = 100) -> list[list[float]]:
    """Arrival times of every packet (sent every 20 ms) through a fresh link."""
    link = network.link(seed)
    return [link.send(index * INTERVAL, size) for index in range(count)]


def lost_flags(arrivals: list[list[float]]) -> np.ndarray:
    return np.array([not copies for copies in arrivals])


def burst_lengths(lost: np.ndarray) -> np.ndarray:
    """Lengths of the runs of consecutive losses."""
    edges = np.diff(np.concatenate([[0], lost.astype(np.int8), [0]]))
    return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)


def delays_ms(arrivals: list[list[float]]) -> np.ndarray:
    return np.array([(copies[0] - index * INTERVAL) * 1000 for index, copies in enumerate(arrivals)])


def test_bernoulli_loss_rate_and_bursts() -> None:
    lost = lost_flags(run(Network(loss=Bernoulli(0.1))))
    assert lost.mean() == pytest.approx(0.1, abs=0.01)
    # Independent losses: bursts are geometric with mean 1 / (1 - p).
    assert burst_lengths(lost).mean() == pytest.approx(1 / 0.9, rel=0.05)


@pytest.mark.parametrize(("rate", "burst"), [(0.1, 2.0), (0.2, 4.0), (0.05, 1.5), (0.3, 2.0)])
def test_gilbert_elliott_loss_rate_and_mean_burst(rate: float, burst: float) -> None:
    lost = lost_flags(run(Network(loss=GilbertElliott(rate, burst)), count=100_000))
    assert lost.mean() == pytest.approx(rate, rel=0.1)
    assert burst_lengths(lost).mean() == pytest.approx(burst, rel=0.07)


def test_bursty_and_random_loss_differ_at_the_same_rate() -> None:
    random = burst_lengths(lost_flags(run(Network(loss=Bernoulli(0.1)))))
    bursty = burst_lengths(lost_flags(run(Network(loss=GilbertElliott(0.1, 4.0)))))
    assert (bursty >= 4).mean() > 10 * (random >= 4).mean()


@pytest.mark.parametrize(
    ("rate", "burst"), [(0.1, 0.5), (0.6, 1.0), (1.0, 3.0), (-0.1, 2.0)]
)
def test_impossible_gilbert_elliott_parameters_are_refused(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        GilbertElliott(rate, burst)


@pytest.mark.parametrize("distribution", ["normal", "uniform", "pareto"])
def test_jitter_has_the_configured_mean_and_spread(distribution: str) -> None:
    delay = Delay(base_ms=100, jitter_ms=10, distribution=distribution)  # type: ignore[arg-type]
    measured = delays_ms(run(Network(delay=delay)))
    assert measured.mean() == pytest.approx(100, abs=0.5)
    assert measured.std() == pytest.approx(10, rel=0.05)
    skew = ((measured - measured.mean()) ** 3).mean() / measured.std() ** 3
    if distribution == "uniform":
        assert np.abs(measured - 100).max() <= 10 * np.sqrt(3) + 1e-9
    elif distribution == "normal":
        assert abs(skew) < 0.1
    else:
        assert skew > 1  # a heavy right tail: a few packets very late


def test_delay_is_clipped_at_zero_and_constant_without_jitter() -> None:
    assert delays_ms(run(Network(delay=Delay(base_ms=5, jitter_ms=20)))).min() >= 0
    assert np.allclose(delays_ms(run(Network(delay=Delay(base_ms=30)), count=100)), 30)


def test_jitter_larger_than_the_packet_interval_reorders() -> None:
    def out_of_order(network: Network) -> float:
        arrivals = np.array([copies[0] for copies in run(network, count=10_000)])
        return float((np.diff(arrivals) < 0).mean())

    assert out_of_order(Network(delay=Delay(40, jitter_ms=2))) == 0
    assert out_of_order(Network(delay=Delay(40, jitter_ms=20))) > 0.1


def test_explicit_reordering_holds_back_the_configured_share() -> None:
    network = Network(delay=Delay(30), reorder=0.1, reorder_ms=30)
    link = network.link(0)
    arrivals = np.array([link.send(index * INTERVAL, 100)[0] for index in range(PACKETS)])
    assert link.counters.reordered / PACKETS == pytest.approx(0.1, abs=0.01)
    # A packet held back by 30 ms arrives after its successor (unless that one was held too).
    assert (np.diff(arrivals) < 0).mean() == pytest.approx(0.1 * 0.9, abs=0.01)


def test_duplication_rate_and_counts() -> None:
    network = Network(loss=Bernoulli(0.2), duplicate=0.05, delay=Delay(20, jitter_ms=5))
    link = network.link(3)
    copies = [link.send(index * INTERVAL, 100) for index in range(PACKETS)]
    delivered = [len(c) for c in copies if c]
    assert (np.array(delivered) == 2).mean() == pytest.approx(0.05, abs=0.005)
    counters = link.counters
    assert counters.sent == PACKETS and counters.lost == sum(not c for c in copies)
    assert counters.delivered == counters.sent - counters.lost + counters.duplicated
    assert counters.delivered == sum(map(len, copies))


def test_a_bandwidth_cap_is_respected_and_its_queue_drops_the_excess() -> None:
    cap = Bandwidth(kbps=24, queue_bytes=1500)
    link = Network(bandwidth=cap).link(0)
    size, count = 100, 5_000  # 100 bytes every 20 ms: 40 kbps offered to a 24 kbps link
    arrivals = sorted(time for index in range(count) for time in link.send(index * INTERVAL, size))
    span = arrivals[-1] - arrivals[0]
    delivered_kbps = (len(arrivals) - 1) * size * 8 / span / 1000
    assert delivered_kbps <= 24 * 1.001
    assert delivered_kbps == pytest.approx(24, rel=0.01)  # the link is kept busy
    assert link.counters.queue_dropped == pytest.approx(count * (1 - 24 / 40), rel=0.02)
    assert min(np.diff(arrivals)) >= size * 8 / 24_000 - 1e-9  # one packet at a time on the wire
    assert link.counters.delivered == len(arrivals)
    # Queueing delay never exceeds what the queue holds: 1500 bytes at 24 kbps = 0.5 s.
    held = Network(bandwidth=cap).link(0)
    for index in range(count):
        for time in held.send(index * INTERVAL, size):
            assert time - index * INTERVAL <= 1500 * 8 / 24_000 + 1e-9


def test_below_the_cap_packets_only_take_their_serialisation_time() -> None:
    link = Network(bandwidth=Bandwidth(kbps=64)).link(0)
    for index in range(100):
        (arrival,) = link.send(index * INTERVAL, 80)
        assert arrival - index * INTERVAL == pytest.approx(80 * 8 / 64_000)
    assert link.counters.queue_dropped == 0


def test_a_queue_drop_leaves_the_later_packets_delays_alone() -> None:
    network = Network(delay=Delay(40, 15, "pareto"), reorder=0.2, bandwidth=Bandwidth(kbps=64, queue_bytes=400))
    small, mixed = network.link(3), network.link(3)
    for index in range(200):  # 80 bytes every 20 ms leave a 64 kbps queue empty between packets
        plain, other = small.send(index * INTERVAL, 80), mixed.send(index * INTERVAL, 500 if index == 5 else 80)
        assert other == ([] if index == 5 else plain)  # only the packet too big for the queue differs
    assert (small.counters.reordered, mixed.counters.queue_dropped) > (0, 0)


def test_same_seed_same_fates_other_seed_other_fates() -> None:
    network = Network(loss=GilbertElliott(0.1, 2), delay=Delay(30, 10), duplicate=0.02, reorder=0.01)
    assert run(network, 2_000, seed=7) == run(network, 2_000, seed=7)
    assert run(network, 2_000, seed=7) != run(network, 2_000, seed=8)


def test_changing_the_jitter_leaves_the_losses_alone() -> None:
    loss = GilbertElliott(0.1, 2)
    steady = lost_flags(run(Network(loss=loss), 5_000, seed=4))
    jittery = lost_flags(run(Network(loss=loss, delay=Delay(50, 20, "pareto")), 5_000, seed=4))
    assert np.array_equal(steady, jittery)


TRACE_CSV = """\
# a hand-written trace
seq,lost,delay_ms
0,0,30
1,1,
2,0,55.5
3,0,0
"""


def test_a_seq_trace_replays_exactly_and_starts_over() -> None:
    trace = Trace.parse(TRACE_CSV)
    arrivals = run(Network.replay(trace), count=10)
    for index, copies in enumerate(arrivals):
        row = index % 4
        if trace.lost[row]:
            assert copies == []
        else:
            assert copies == [pytest.approx(index * INTERVAL + trace.delay_ms[row] / 1000)]
    assert [bool(c) for c in arrivals] == [True, False, True, True] * 2 + [True, False]


def test_a_time_trace_holds_each_row_until_the_next() -> None:
    trace = Trace.parse("time_ms,lost,delay_ms\n0,0,10\n100,1,\n160,0,80\n")
    arrivals = run(Network.replay(trace), count=12)  # sent at 0, 20, ..., 220 ms
    expected = [10] * 5 + [None] * 3 + [80] * 4
    for index, (copies, delay) in enumerate(zip(arrivals, expected, strict=True)):
        assert copies == ([] if delay is None else [pytest.approx(index * INTERVAL + delay / 1000)])


def test_a_time_trace_counts_from_the_first_packet_even_when_it_is_lost() -> None:
    trace = Trace.parse("time_ms,lost,delay_ms\n0,1,\n100,0,30\n200,0,80\n")
    arrivals = run(Network.replay(trace), count=15)
    expected = [None] * 5 + [30] * 5 + [80] * 5
    for index, (copies, delay) in enumerate(zip(arrivals, expected, strict=True)):
        assert copies == ([] if delay is None else [pytest.approx(index * INTERVAL + delay / 1000)])


def test_a_trace_round_trips_through_its_csv_file(tmp_path: Path) -> None:
    trace = Trace.per_packet([False, True, False], [12.5, None, 40])
    path = tmp_path / "trace.csv"
    trace.save(path)
    assert Trace.load(path) == trace
    assert path.read_text().splitlines()[0] == "seq,lost,delay_ms"
    long = Trace("time_ms", (0, 1_000_001, 1_000_002.25), (False, False, True), (1.23456789, 1e-9, None))
    long.save(path)
    assert Trace.load(path) == long


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty trace"),
        ("seq,lost\n0,0\n", "header"),
        ("seq,lost,delay_ms\n", "no rows"),
        ("seq,lost,delay_ms\n0,0,10\n2,0,10\n", "without gaps"),
        ("seq,lost,delay_ms\n0,2,10\n", ":2: lost must be 0 or 1"),
        ("seq,lost,delay_ms\n0,0,\n", "needs a delay_ms"),
        ("seq,lost,delay_ms\n0,0,-5\n", ">= 0"),
        ("seq,lost,delay_ms\n0,0,soon\n", ":2: delay_ms must be a number"),
        ("time_ms,lost,delay_ms\n5,0,10\n", "at 0"),
        ("time_ms,lost,delay_ms\n0,0,10\n0,0,10\n", "increasing"),
    ],
)
def test_malformed_traces_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(TraceError, match=message):
        Trace.parse(text)


def test_invalid_parameters_are_refused() -> None:
    for make in (
        lambda: Bernoulli(1.5),
        lambda: Delay(-1),
        lambda: Delay(10, jitter_ms=-1),
        lambda: Delay(10, 5, "gamma"),  # type: ignore[arg-type]
        lambda: Bandwidth(0),
        lambda: Network(duplicate=2),
        lambda: Network(reorder=-0.1),
    ):
        with pytest.raises(ValueError):
            make()
