"""A UDP relay that two aiortc peers talk through, impairing each direction with a `Network`.

Kernel netem is not available everywhere (containers, CI, laptops), so the relay does it in user
space, under everything a call sends: ICE checks, DTLS, SCTP and the packets themselves.

    async with ImpairmentRelay(Network(loss=Bernoulli(0.1), delay=Delay(30, 10)), seed=1) as relay:
        caller = Peer(rewrite_sdp=relay.advertise("a"))
        callee = Peer(rewrite_sdp=relay.advertise("b"))
        # signal as usual (listen / connect), then run a Session on each peer

How the peers end up talking through it: each peer's SDP passes through `advertise(side)` on its
way to signalling (`Peer(rewrite_sdp=relay.advertise("a"))`), which notes the peer's own IPv4 UDP
candidate and replaces all its candidates by one: the relay's public socket for that side. Side
"a" therefore only knows relay address R_b for "b", and "b" only knows R_a for "a":

    a  --->  R_b  ==[a->b network]==>  sent from R_a  --->  b    (b sees a at R_a, as advertised)
    a  <---  sent from R_b  <==[b->a network]==  R_a  <---  b

A datagram from `a` arriving on R_b goes to `b`'s candidate from the socket that stands for `a`'s
source address: R_a for the candidate that `a` advertised, or a socket of its own for any other
source address (`a` checks connectivity from every local address it gathered). `b` then learns
such an address as a peer-reflexive candidate, as it would behind a NAT, and its replies find
their way back through the same socket. No traffic can bypass the relay: neither side ever learns
an address of the other.

Each direction is one `Link` (`Network.link`), seeded from `seed`, clocked by the event loop:
every datagram is sent at the arrival time that the link gives it (`loop.call_at`), once per
copy, or never. The loss pattern is deterministic in datagram order; which datagrams a call
sends depends on timing (ICE and SCTP retransmissions), so whole calls are not bit-exact.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final, Literal, Self

import numpy as np

from rtcodec.netsim.models import Link, LinkCounters, Network

Side = Literal["a", "b"]
SIDES: Final[tuple[Side, Side]] = ("a", "b")
Address = tuple[str, int]


def _other(side: Side) -> Side:
    return "b" if side == "a" else "a"


class RelayError(RuntimeError):
    """The relay cannot stand between these peers (e.g. a side has no IPv4 UDP candidate)."""


@dataclass
class _Endpoint(asyncio.DatagramProtocol):
    """One relay socket. It stands for `address` of `side`: the other side sends to it, and it
    sends what comes from that address of `side` to the other side."""

    relay: ImpairmentRelay
    side: Side
    address: Address | None
    transport: asyncio.DatagramTransport | None = None
    pending: list[tuple[bytes, Address]] = field(default_factory=list)
    """Datagrams due before the socket was open; sent as soon as it is."""
    unavailable: bool = False
    """The socket could not be opened: what it would send is dropped, as on a lost route."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram transport
        for data, target in self.pending:
            self.transport.sendto(data, target)
        self.pending.clear()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.relay._received(self, data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        """ICMP errors (a peer that has closed its socket): UDP gives no guarantee anyway."""
        self.relay.socket_errors += 1

    def send(self, data: bytes, target: Address) -> None:
        if self.unavailable:
            return
        if self.transport is None:
            self.pending.append((data, target))
        elif not self.transport.is_closing():
            self.transport.sendto(data, target)

    @property
    def local_address(self) -> Address:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return str(host), int(port)


class ImpairmentRelay:
    """The relay; `async with ImpairmentRelay(network) as relay:` opens and closes it.

    `network` impairs side a -> side b, `reverse` side b -> side a (default: `network` too), each
    direction with its own stream of randomness drawn from `seed`. `host` is the IPv4 address
    the relay listens on; both peers must be able to reach it (the default suits peers on this
    host).
    """

    def __init__(
        self,
        network: Network,
        *,
        reverse: Network | None = None,
        seed: int = 0,
        host: str = "127.0.0.1",
    ) -> None:
        if ipaddress.ip_address(host).version != 4:
            raise RelayError(f"the relay listens on IPv4, got {host}")
        self.networks: dict[Side, Network] = {"a": network, "b": reverse or network}
        """By sending side: "a" is the network from a to b."""
        self.socket_errors = 0
        """ICMP errors reported on the relay's sockets, and sockets it could not open."""
        self.unroutable = 0
        """Datagrams that arrived before the relay knew where to send them; dropped."""
        self._host = host
        self._seeds = dict(zip(SIDES, np.random.SeedSequence(seed).spawn(2), strict=True))
        self._links: dict[Side, Link] = {}
        self._public: dict[Side, _Endpoint] = {}
        self._extra: dict[tuple[Side, Address], _Endpoint] = {}
        self._opening: set[asyncio.Task[None]] = set()
        self._epoch = 0.0
        self._closed = False

    async def start(self) -> Self:
        """Open the two public sockets; the links' clocks start now."""
        loop = asyncio.get_running_loop()
        self._epoch = loop.time()
        self._links = {side: self.networks[side].link(self._seeds[side]) for side in SIDES}
        for side in SIDES:
            endpoint = _Endpoint(self, side, None)
            await loop.create_datagram_endpoint(lambda e=endpoint: e, local_addr=(self._host, 0))
            self._public[side] = endpoint
        return self

    def address(self, side: Side) -> Address:
        """The public address that stands for `side`, where the other side sends."""
        return self._public[side].local_address

    def advertise(self, side: Side) -> Callable[[str], str]:
        """The SDP rewrite for the peer on `side`: pass it as `Peer(rewrite_sdp=...)`."""
        if side not in SIDES:
            raise ValueError(f"side must be 'a' or 'b', got {side!r}")
        return lambda sdp: self._masquerade(sdp, side)

    @property
    def counters(self) -> dict[str, LinkCounters]:
        """What each direction's link did so far, keyed "a->b" and "b->a" (datagrams)."""
        return {f"{side}->{_other(side)}": self._links[side].counters for side in self._links}

    async def close(self) -> None:
        """Stop relaying: close every socket; datagrams still in flight are dropped."""
        self._closed = True
        for task in self._opening:
            task.cancel()
        await asyncio.gather(*self._opening, return_exceptions=True)
        for endpoint in [*self._public.values(), *self._extra.values()]:
            if endpoint.transport is not None:
                endpoint.transport.close()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # Rewriting the SDP.

    def _masquerade(self, sdp: str, side: Side) -> str:
        """`sdp` with `side`'s candidates replaced by the relay's public socket for `side`, which
        from now on forwards to `side`'s best IPv4 UDP candidate."""
        if not self._public:
            raise RelayError("start the relay before advertising through it")
        candidates = [_Candidate.parse(line) for line in sdp.splitlines() if _is_candidate(line)]
        usable = [c for c in candidates if c.transport == "udp" and _is_ipv4(c.host)]
        if not usable:
            raise RelayError(f"side {side} offers no IPv4 UDP candidate that the relay could use")
        target = max(usable, key=lambda candidate: candidate.priority)
        self._public[side].address = (target.host, target.port)
        host, port = self.address(side)
        newline = "\r\n" if "\r\n" in sdp else "\n"
        lines: list[str] = []
        replaced = False
        for line in sdp.splitlines():
            if line.startswith("m="):
                replaced = False
                fields = line.split(" ")
                lines.append(" ".join([fields[0], str(port), *fields[2:]]))
            elif line.startswith("c=IN "):
                lines.append(f"c=IN IP4 {host}")
            elif _is_candidate(line):
                if not replaced:
                    lines.append(target.relayed_as(host, port))
                    replaced = True
            else:
                lines.append(line)
        return newline.join(lines) + (newline if sdp.endswith(("\n", "\r\n")) else "")

    # Relaying.

    def _received(self, endpoint: _Endpoint, data: bytes, source: Address) -> None:
        """A datagram for `endpoint.side` from `source` (an address of the other side)."""
        if self._closed:
            return
        if endpoint.address is None:
            self.unroutable += 1
            return
        sender = _other(endpoint.side)
        loop = asyncio.get_running_loop()
        target = endpoint.address
        for arrival in self._links[sender].send(loop.time() - self._epoch, len(data)):
            loop.call_at(self._epoch + arrival, self._deliver, sender, source, data, target)

    def _deliver(self, sender: Side, source: Address, data: bytes, target: Address) -> None:
        if not self._closed:
            self._endpoint_for(sender, source).send(data, target)

    def _endpoint_for(self, side: Side, address: Address) -> _Endpoint:
        """The socket that stands for `address` of `side`; opened on first use."""
        public = self._public[side]
        if public.address == address:
            return public
        key = (side, address)
        if key not in self._extra:
            endpoint = self._extra[key] = _Endpoint(self, side, address)
            task = asyncio.get_running_loop().create_task(self._open(endpoint))
            self._opening.add(task)
            task.add_done_callback(self._opening.discard)
        return self._extra[key]

    async def _open(self, endpoint: _Endpoint) -> None:
        """Open `endpoint`'s socket; one that cannot be opened (out of ports or file descriptors)
        is counted in `socket_errors`, and the address it stands for stays unreachable."""
        loop = asyncio.get_running_loop()
        try:
            await loop.create_datagram_endpoint(lambda: endpoint, local_addr=(self._host, 0))
        except OSError:
            self.socket_errors += 1
            endpoint.unavailable = True
            endpoint.pending.clear()


@dataclass(frozen=True)
class _Candidate:
    """The fields of an "a=candidate:" line that the relay needs."""

    foundation: str
    component: str
    transport: str
    priority: int
    host: str
    port: int

    @classmethod
    def parse(cls, line: str) -> _Candidate:
        fields = line.removeprefix("a=").removeprefix("candidate:").split()
        try:
            foundation, component, transport, priority, host, port = fields[:6]
            return cls(foundation, component, transport.lower(), int(priority), host, int(port))
        except (IndexError, ValueError):
            raise RelayError(f"malformed candidate line in the SDP: {line!r}") from None

    def relayed_as(self, host: str, port: int) -> str:
        return (
            f"a=candidate:{self.foundation} {self.component} udp {self.priority} {host} {port} "
            "typ host"
        )


def _is_candidate(line: str) -> bool:
    return line.startswith("a=candidate:")


def _is_ipv4(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 4
    except ValueError:
        return False
