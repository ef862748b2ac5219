"""The network simulator: impairment models, an in-process packet path, and a UDP relay.

    from rtcodec.netsim import Network, GilbertElliott, Delay, simulate
    network = Network(loss=GilbertElliott(rate=0.1, mean_burst=2), delay=Delay(40, jitter_ms=10))
    received, stats = simulate(audio, encoder, decoder, network, seed=1)

- `models`: what a network does to each packet (loss, delay and jitter, reordering,
  duplication, a bandwidth cap), seeded and deterministic; `trace`: replaying a CSV trace.
- `simulate`: encoder -> bytes -> impairments -> Packet.parse -> jitter buffer -> decoder, in
  simulated time.
- `relay`: the same impairments on real UDP, between two aiortc peers.

Like `rtcodec.transport`, it knows codecs only through the StreamEncoder / StreamDecoder
protocols and never imports torch.
"""

from __future__ import annotations

from rtcodec.netsim.fec import opus_has_fec, rebuilds
from rtcodec.netsim.models import (
    Bandwidth,
    Bernoulli,
    Delay,
    GilbertElliott,
    Link,
    LinkCounters,
    Network,
    NoLoss,
)
from rtcodec.netsim.relay import ImpairmentRelay, RelayError
from rtcodec.netsim.simulate import AdaptivePlayout, FixedPlayout, SimulationStats, simulate
from rtcodec.netsim.trace import Trace, TraceError

__all__ = [
    "AdaptivePlayout",
    "Bandwidth",
    "Bernoulli",
    "Delay",
    "FixedPlayout",
    "GilbertElliott",
    "ImpairmentRelay",
    "Link",
    "LinkCounters",
    "Network",
    "NoLoss",
    "RelayError",
    "SimulationStats",
    "Trace",
    "TraceError",
    "opus_has_fec",
    "rebuilds",
    "simulate",
]
