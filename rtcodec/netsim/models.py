"""What a network does to each packet: loss, delay and jitter, reordering, duplication, a
bandwidth cap, or a replayed trace. All seeded, all deterministic, no wall clock.

A `Network` describes one direction of a path. `Network.link(seed)` starts one stream through it:
a `Link`, whose `send(time, size)` returns the arrival times of the copies of that packet that get
through: [] when it is lost, two times when it is duplicated. Times are seconds on the sender's
clock; the simulator uses simulated time, the UDP relay the event loop's clock.

Per packet, in this order (as Linux netem does it):

1. loss: the `loss` model drops it (`Bernoulli`, `GilbertElliott`, or a `Trace`);
2. duplication: with probability `duplicate`, a second copy follows it;
3. each copy joins the `bandwidth` queue, if the link has one: it is serialised at `kbps` after
   the copies queued before it, and dropped (tail drop) if the backlog would exceed `queue_bytes`;
4. each copy then takes its propagation delay: from the `delay` model (or the trace), plus
   `reorder_ms` with probability `reorder`.

Reordering also follows from jitter alone: every copy draws its own delay, so a packet delayed
more than the packet interval above its successor arrives after it.

Every component draws from its own generator, spawned from the seed. The same seed therefore
gives every packet the same fate, and changing one component (the jitter, say) leaves the draws of
the others (the losses) as they were: two codecs compared at one seed see exactly the same losses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Final, Literal, Protocol

import numpy as np

if TYPE_CHECKING:
    from rtcodec.netsim.trace import Trace

Distribution = Literal["normal", "uniform", "pareto"]
DISTRIBUTIONS: Final = ("normal", "uniform", "pareto")
PARETO_SHAPE: Final = 5.0
"""Shape of the Lomax (Pareto II) law behind "pareto" jitter: a heavy right tail whose fourth
moment is still finite, so that measured spreads settle."""

LossDecision = Callable[[int, float], bool]
"""(index of the packet on the link from 0, s since the link's first packet) -> whether it is lost."""
DelayDraw = Callable[[int, float], float]
"""(index of the packet on the link from 0, s since the link's first packet) -> its one-way delay
in s (>= 0)."""


class LossModel(Protocol):
    """Decides which packets are lost; `start` begins one stream with its own state."""

    def start(self, rng: np.random.Generator) -> LossDecision: ...


class DelayModel(Protocol):
    """Draws each packet's one-way delay; `start` begins one stream with its own state."""

    def start(self, rng: np.random.Generator) -> DelayDraw: ...


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}")


@dataclass(frozen=True)
class NoLoss:
    """Every packet gets through."""

    def start(self, rng: np.random.Generator) -> LossDecision:
        return lambda index, time: False


@dataclass(frozen=True)
class Bernoulli:
    """Independent loss: each packet is lost with probability `rate`."""

    rate: float

    def __post_init__(self) -> None:
        _check_probability("loss rate", self.rate)

    def start(self, rng: np.random.Generator) -> LossDecision:
        return lambda index, time: bool(rng.random() < self.rate)


@dataclass(frozen=True)
class GilbertElliott:
    """Bursty loss: a two-state Markov chain, Good (delivered) and Bad (lost).

    Parameterised by the long-run loss `rate` and the `mean_burst` length in packets (>= 1): the
    chain leaves Bad with probability r = 1 / mean_burst and enters it with probability
    p = rate * r / (1 - rate), so that its stationary loss is p / (p + r) = rate and its loss
    bursts are geometric with mean 1 / r. (This is the classic Gilbert special case of the
    Gilbert-Elliott model: loss probability 1 in Bad and 0 in Good.) `mean_burst` 1 at a small
    rate is close to `Bernoulli`; the first packet's state is drawn from the stationary law.
    """

    rate: float
    mean_burst: float

    def __post_init__(self) -> None:
        _check_probability("loss rate", self.rate)
        if not self.mean_burst >= 1.0:
            raise ValueError(f"mean burst length must be >= 1 packet, got {self.mean_burst}")
        if self.rate >= 1.0 or self.enter_bad > 1.0:
            raise ValueError(
                f"a loss rate of {self.rate:.0%} cannot have mean bursts of {self.mean_burst:g} "
                f"packets (the gaps between bursts would be shorter than one packet)"
            )

    @property
    def enter_bad(self) -> float:
        """P(Good -> Bad) per packet."""
        return self.rate / (1.0 - self.rate) / self.mean_burst if self.rate < 1.0 else math.inf

    @property
    def leave_bad(self) -> float:
        """P(Bad -> Good) per packet."""
        return 1.0 / self.mean_burst

    def start(self, rng: np.random.Generator) -> LossDecision:
        state = {"bad": bool(rng.random() < self.rate)}

        def decide(index: int, time: float) -> bool:
            lost = state["bad"]
            draw = rng.random()
            state["bad"] = draw >= self.leave_bad if lost else draw < self.enter_bad
            return lost

        return decide


@dataclass(frozen=True)
class Delay:
    """One-way delay: `base_ms` plus a zero-mean jitter of standard deviation `jitter_ms`,
    clipped so that no delay is negative (clipping raises the mean and lowers the spread when
    `base_ms` is under about twice `jitter_ms`).

    `distribution`: "normal"; "uniform" (on +-sqrt(3) jitter_ms); or "pareto", a Lomax law of
    shape PARETO_SHAPE shifted to mean 0: most packets a little early, a few very late.
    """

    base_ms: float = 0.0
    jitter_ms: float = 0.0
    distribution: Distribution = "normal"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.base_ms) and self.base_ms >= 0):
            raise ValueError(f"base delay must be >= 0 ms, got {self.base_ms}")
        if not (math.isfinite(self.jitter_ms) and self.jitter_ms >= 0):
            raise ValueError(f"jitter must be >= 0 ms, got {self.jitter_ms}")
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(
                f"unknown jitter distribution '{self.distribution}' "
                f"(choose from {', '.join(DISTRIBUTIONS)})"
            )

    def start(self, rng: np.random.Generator) -> DelayDraw:
        unit = _UNIT_JITTER[self.distribution]
        return lambda index, time: max(self.base_ms + self.jitter_ms * unit(rng), 0.0) / 1000


def _unit_pareto(rng: np.random.Generator) -> float:
    """Lomax(PARETO_SHAPE), standardised to mean 0 and standard deviation 1."""
    a = PARETO_SHAPE
    mean = 1 / (a - 1)
    std = math.sqrt(a / ((a - 1) ** 2 * (a - 2)))
    return (float(rng.pareto(a)) - mean) / std


_UNIT_JITTER: Final[dict[str, Callable[[np.random.Generator], float]]] = {
    "normal": lambda rng: float(rng.standard_normal()),
    "uniform": lambda rng: float(rng.uniform(-math.sqrt(3), math.sqrt(3))),
    "pareto": _unit_pareto,
}
"""Zero-mean, unit-variance jitter draws."""


@dataclass(frozen=True)
class Bandwidth:
    """A bottleneck: copies are serialised at `kbps` one after another, and a copy that would
    find more than `queue_bytes` waiting ahead of it (its own size included) is dropped."""

    kbps: float
    queue_bytes: int = 10_000

    def __post_init__(self) -> None:
        if not (math.isfinite(self.kbps) and self.kbps > 0):
            raise ValueError(f"bandwidth must be > 0 kbps, got {self.kbps}")
        if self.queue_bytes < 1:
            raise ValueError(f"queue must hold at least one byte, got {self.queue_bytes}")


@dataclass
class LinkCounters:
    """What a link has done so far. Copies: a duplicated packet makes two."""

    sent: int = 0
    """Packets offered to the link."""
    bytes_sent: int = 0
    lost: int = 0
    """Packets dropped by the loss model (or the trace)."""
    duplicated: int = 0
    """Extra copies made by duplication."""
    queue_dropped: int = 0
    """Copies dropped because the bandwidth queue was full."""
    reordered: int = 0
    """Copies held back by `reorder_ms` (explicit reordering; jitter reorders on top)."""
    delivered: int = 0
    """Copies that get through."""


@dataclass(frozen=True)
class Network:
    """One direction of a network path; see the module docstring for what each part does."""

    loss: LossModel = field(default_factory=NoLoss)
    delay: DelayModel = field(default_factory=Delay)
    duplicate: float = 0.0
    """Probability that a packet that is not lost arrives twice."""
    reorder: float = 0.0
    """Probability that a copy is held back by an extra `reorder_ms`."""
    reorder_ms: float = 40.0
    """Extra delay of a reordered copy: 40 ms puts it behind the next two 20 ms packets."""
    bandwidth: Bandwidth | None = None

    def __post_init__(self) -> None:
        _check_probability("duplication probability", self.duplicate)
        _check_probability("reorder probability", self.reorder)
        if not self.reorder_ms >= 0:
            raise ValueError(f"reorder_ms must be >= 0, got {self.reorder_ms}")

    @classmethod
    def replay(cls, trace: Trace, **extra: object) -> Network:
        """A network whose losses and delays are those of `trace` (see `rtcodec.netsim.trace`);
        duplication, reordering and a bandwidth cap may still be added through `extra`."""
        return cls(loss=trace.losses(), delay=trace.delays(), **extra)  # type: ignore[arg-type]

    def link(self, seed: int | np.random.SeedSequence = 0) -> Link:
        """A fresh stream through this network, all of its randomness drawn from `seed`."""
        return Link(self, seed)

    def describe(self) -> str:
        """One line for people, naming only what differs from a perfect network."""
        defaults = Network()
        parts = [
            f"{item.name}={getattr(self, item.name)!r}"
            for item in fields(self)
            if getattr(self, item.name) != getattr(defaults, item.name)
        ]
        return ", ".join(parts) or "perfect network"


_STREAMS: Final = ("loss", "delay", "duplicate", "duplicate delay", "reorder")
"""The independent random streams of a link, in spawning order (append only: reordering them
would change every seeded result)."""


class Link:
    """One stream of packets through a `Network`: stateful (burst state, bandwidth queue)."""

    def __init__(self, network: Network, seed: int | np.random.SeedSequence = 0) -> None:
        if not isinstance(seed, np.random.SeedSequence):
            seed = np.random.SeedSequence(seed)
        streams = map(np.random.default_rng, seed.spawn(len(_STREAMS)))
        rngs = dict(zip(_STREAMS, streams, strict=True))
        self.network = network
        self.counters = LinkCounters()
        self._lost = network.loss.start(rngs["loss"])
        self._delay = network.delay.start(rngs["delay"])
        self._duplicate_delay = network.delay.start(rngs["duplicate delay"])
        self._duplicate_rng = rngs["duplicate"]
        self._reorder_rng = rngs["reorder"]
        self._queue_free_at = -math.inf
        """When the bandwidth queue will have sent everything handed to it so far."""
        self._first_sent: float | None = None

    def send(self, time: float, size: int) -> list[float]:
        """A packet of `size` bytes sent at `time` seconds: the arrival times of its copies.

        Calls must come in order of `time`; the result is in the order the copies were made."""
        index = self.counters.sent
        self.counters.sent += 1
        self.counters.bytes_sent += size
        if self._first_sent is None:
            self._first_sent = time
        elapsed = time - self._first_sent
        if self._lost(index, elapsed):
            self.counters.lost += 1
            return []
        copies = [self._delay]
        if self.network.duplicate and self._duplicate_rng.random() < self.network.duplicate:
            self.counters.duplicated += 1
            copies.append(self._duplicate_delay)
        arrivals = []
        for delay in copies:
            # Drawn before the queue decides, so that a drop (which depends on the packet sizes,
            # and so on the codec) leaves the draws of every later copy as they were.
            propagation = delay(index, elapsed)
            reordered = bool(self.network.reorder) and self._reorder_rng.random() < self.network.reorder
            departure = self._through_queue(time, size)
            if departure is None:
                self.counters.queue_dropped += 1
                continue
            if reordered:
                self.counters.reordered += 1
                propagation += self.network.reorder_ms / 1000
            arrivals.append(departure + propagation)
        self.counters.delivered += len(arrivals)
        return arrivals

    def _through_queue(self, time: float, size: int) -> float | None:
        """When a copy entering the bandwidth queue at `time` has been serialised, or None if
        the queue is full. Without a bandwidth cap, at once."""
        cap = self.network.bandwidth
        if cap is None:
            return time
        bytes_per_second = cap.kbps * 1000 / 8
        backlog = max(self._queue_free_at - time, 0.0) * bytes_per_second
        if backlog + size > cap.queue_bytes:
            return None
        self._queue_free_at = max(self._queue_free_at, time) + size / bytes_per_second
        return self._queue_free_at
