"""One end of a call: an aiortc peer connection carrying one unreliable, unordered data channel.

Every 20 ms packet travels as one binary message; control messages (end of call, keepalive) as
text messages. The channel is negotiated out of band (same id on both ends), so both peers hold
it from the start and no message can arrive before someone listens: incoming messages wait in
`Peer.incoming` with their arrival time on the loop clock.

A peer cannot flood the other: incoming messages pass a token bucket (`MessageRateLimit`, a few
times the packet rate) and wait in a bounded queue; the excess is dropped on arrival and counted
in `Peer.dropped`, so memory stays bounded and the call goes on.

What a peer advertises can be rewritten on its way out (`rewrite_sdp`): the network simulator's
UDP relay (rtcodec.netsim.relay) uses that to put itself between two peers.

Loopback: aioice never gathers 127.0.0.1 or ::1, so two peers on a host whose only interface is
loopback would have no candidates at all. `_gather_loopback_when_alone` fixes exactly that case.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import aioice.ice
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)

from rtcodec.config import FRAME_RATE

Message = bytes | str
"""A data-channel message: binary (a packet) or text (control)."""

CHANNEL_LABEL: Final = "rtcodec"
CHANNEL_ID: Final = 0
"""SCTP stream id of the negotiated channel: the same on both ends."""
MESSAGE_RATE: Final = 4.0 * FRAME_RATE
"""Incoming messages per second a peer may sustain: four times the packet rate (one packet per
20 ms frame, plus a keepalive per second and a few byes), so that an honest peer never meets it."""
MESSAGE_BURST: Final = FRAME_RATE
"""Incoming messages a peer may send at once: one second of packets, so that the packets a network
stall held back still pass when they arrive together."""
INCOMING_QUEUE_SIZE: Final = 2 * MESSAGE_BURST
"""Messages `Peer.incoming` holds; more arrive only when nobody reads, and are dropped."""
_LOOPBACK_IPV4: Final = "127.0.0.1"
_FAILED_STATES: Final = frozenset({"failed", "closed"})


class PeerError(ConnectionError):
    """The peer connection could not be established or was lost."""


class MessageRateLimit:
    """A token bucket: on average `rate` messages per second, up to `burst` of them at once."""

    def __init__(
        self,
        clock: Callable[[], float],
        rate: float = MESSAGE_RATE,
        burst: int = MESSAGE_BURST,
    ) -> None:
        """`clock`: seconds, monotonic (the loop clock). The bucket starts full."""
        self._clock = clock
        self._rate = rate
        self._burst = burst
        self._tokens = float(burst)
        self._refilled_at = clock()

    def allow(self) -> bool:
        """Whether one more message may pass now; if so, it uses up a token."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._refilled_at) * self._rate)
        self._refilled_at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


@dataclass
class DroppedMessages:
    """Incoming messages dropped on arrival, before anyone read them."""

    rate_limited: int = 0
    """Over the peer's MessageRateLimit."""
    queue_full: int = 0
    """Arrived while `Peer.incoming` held INCOMING_QUEUE_SIZE messages."""

    @property
    def total(self) -> int:
        """Every message dropped on arrival, for whatever reason."""
        return self.rate_limited + self.queue_full


def ice_servers(
    stun: str | None = None,
    turn: str | None = None,
    turn_username: str | None = None,
    turn_password: str | None = None,
) -> list[RTCIceServer]:
    """ICE servers from URLs such as "stun:stun.example.org:3478" and "turn:turn.example.org".

    No servers (the default) means host candidates only: enough on one host or one LAN.
    """
    servers = [] if stun is None else [RTCIceServer(urls=stun)]
    if turn is not None:
        servers.append(RTCIceServer(urls=turn, username=turn_username, credential=turn_password))
    return servers


class Peer:
    """An RTCPeerConnection with the call's data channel (ordered=False, maxRetransmits=0).

    Offerer: `await offer()` then `await accept_answer(sdp)`; answerer: `await answer(offer_sdp)`.
    The SDP returned carries every gathered candidate (aiortc gathers before it returns).
    """

    def __init__(
        self,
        servers: Sequence[RTCIceServer] = (),
        *,
        rewrite_sdp: Callable[[str], str] | None = None,
    ) -> None:
        """`servers`: STUN/TURN servers (see `ice_servers`); none by default, never a public one.
        `rewrite_sdp`: applied to this peer's offer or answer before it is handed to signalling,
        e.g. to advertise a relay's address instead of the gathered candidates; the peer itself
        still uses what it gathered. Create it inside the running event loop that will use it."""
        _gather_loopback_when_alone()
        self._rewrite_sdp = rewrite_sdp
        self._clock = asyncio.get_running_loop().time
        self.incoming: asyncio.Queue[tuple[Message, float]] = asyncio.Queue(INCOMING_QUEUE_SIZE)
        """Messages as they arrived, each with its arrival time on the loop clock."""
        self.dropped = DroppedMessages()
        """Messages that never reached `incoming`: over the rate limit or with the queue full."""
        self._rate_limit = MessageRateLimit(self._clock)
        self.closed = asyncio.Event()
        """Set once the channel or the connection has closed or failed, from either side."""
        self._opened = asyncio.Event()
        self._closing: asyncio.Future[None] | None = None
        self._connection = RTCPeerConnection(RTCConfiguration(iceServers=list(servers)))
        self._channel = self._connection.createDataChannel(
            CHANNEL_LABEL, ordered=False, maxRetransmits=0, negotiated=True, id=CHANNEL_ID
        )
        self._channel.on("open", self._opened.set)
        self._channel.on("close", self.closed.set)
        self._channel.on("message", self._deliver)
        self._connection.on("connectionstatechange", self._on_connection_state)

    async def offer(self) -> str:
        """Create the offer, gather candidates, and return the offer SDP."""
        await self._connection.setLocalDescription(await self._connection.createOffer())
        return self._local_sdp()

    async def answer(self, offer_sdp: str) -> str:
        """Apply the remote offer, gather candidates, and return the answer SDP."""
        await self._set_remote(offer_sdp, "offer")
        await self._connection.setLocalDescription(await self._connection.createAnswer())
        return self._local_sdp()

    async def accept_answer(self, answer_sdp: str) -> None:
        """Apply the remote answer: ICE and DTLS then connect in the background."""
        await self._set_remote(answer_sdp, "answer")

    async def wait_open(self, timeout: float) -> None:
        """Wait until the data channel has opened; a short call may have closed it again since,
        its messages waiting in `incoming`. PeerError saying why as soon as the connection fails
        (no ICE path; a DTLS handshake that failed, e.g. on a certificate that does not match the
        signalled fingerprint) or closes before the channel opened, or once `timeout` s have passed."""
        opened = asyncio.ensure_future(self._opened.wait())
        closed = asyncio.ensure_future(self.closed.wait())
        try:
            await asyncio.wait(
                {opened, closed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            opened.cancel()
            closed.cancel()
        if not self._opened.is_set():
            raise PeerError(self._why_not_open(timeout))

    def send(self, message: Message) -> None:
        """Send one message; silently dropped once the channel has closed (the call is ending)."""
        if self._channel.readyState == "open":
            self._channel.send(message)

    async def flush(self, timeout: float) -> None:
        """Wait (at most `timeout` s) until the channel has handed every message to SCTP."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._channel.bufferedAmount and not self.closed.is_set():
            if loop.time() >= deadline:
                return
            await asyncio.sleep(0.005)

    async def close(self) -> None:
        """Close the connection; the remote end sees its channel close.

        The close runs once, to the end, even when the caller is cancelled: aiortc's own close
        task (started when the remote hangs up) waits on the same shutdown, and an interrupted one
        would leave the connection half closed."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._connection.close())
            self._closing.add_done_callback(lambda _: self.closed.set())
        await asyncio.shield(self._closing)

    def _local_sdp(self) -> str:
        sdp: str = self._connection.localDescription.sdp
        return sdp if self._rewrite_sdp is None else self._rewrite_sdp(sdp)

    async def _set_remote(self, sdp: str, kind: str) -> None:
        try:
            await self._connection.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
        except ValueError as error:
            raise PeerError(f"the remote {kind} is not usable SDP: {error}") from None

    def _why_not_open(self, timeout: float) -> str:
        """Why the data channel is not open, for a PeerError."""
        dtls = self._channel.transport.transport
        ice = dtls.transport
        if dtls.state == "failed":
            return (
                "the DTLS handshake with the peer failed: its certificate does not match the "
                "fingerprint in its SDP (altered signalling?), or the handshake broke off"
            )
        if ice.state == "failed":
            return "ICE found no working path to the peer"
        if self.closed.is_set():
            return "the peer connection closed before the data channel opened"
        states = f"ICE {ice.state}, DTLS {dtls.state}"
        return f"the data channel did not open within {timeout:g} s ({states})"

    def _deliver(self, message: Message) -> None:
        """Queue an arriving message with its arrival time, unless the queue is full or the peer
        is over its rate limit: then drop it and count it."""
        if self.incoming.full():
            self.dropped.queue_full += 1
        elif not self._rate_limit.allow():
            self.dropped.rate_limited += 1
        else:
            self.incoming.put_nowait((message, self._clock()))

    def _on_connection_state(self) -> None:
        if self._connection.connectionState in _FAILED_STATES:
            self.closed.set()


def _gather_loopback_when_alone() -> None:
    """Let aioice gather a 127.0.0.1 host candidate on hosts that have no other address.

    aioice's `get_host_addresses` leaves out 127.0.0.1 and ::1 (sensible between machines), so on
    a host whose only interface is loopback (a container, a sandbox, an offline laptop) it gathers
    no candidate at all and ICE fails. This wraps that function, once per process, so that it
    returns ["127.0.0.1"] exactly when it would otherwise return nothing; hosts with any real
    address keep aioice's behaviour unchanged. Two peers on that host then connect over loopback.
    """
    original = aioice.ice.get_host_addresses
    if getattr(original, "falls_back_to_loopback", False):
        return

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        addresses = original(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
        return addresses or ([_LOOPBACK_IPV4] if use_ipv4 else [])

    host_addresses.falls_back_to_loopback = True  # type: ignore[attr-defined]
    aioice.ice.get_host_addresses = host_addresses
