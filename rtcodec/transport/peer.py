"""One end of a call: an aiortc peer connection carrying one unreliable, unordered data channel.

Every 20 ms packet travels as one binary message; control messages (end of call, keepalive) as
text messages. The channel is negotiated out of band (same id on both ends), so both peers hold
it from the start and no message can arrive before someone listens: incoming messages wait in
`Peer.incoming` with their arrival time on the loop clock.

What a peer advertises can be rewritten on its way out (`rewrite_sdp`): the network simulator's
UDP relay (rtcodec.netsim.relay) uses that to put itself between two peers.

Loopback: aioice never gathers 127.0.0.1 or ::1, so two peers on a host whose only interface is
loopback would have no candidates at all. `_gather_loopback_when_alone` fixes exactly that case.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Final

import aioice.ice
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)

Message = bytes | str
"""A data-channel message: binary (a packet) or text (control)."""

CHANNEL_LABEL: Final = "rtcodec"
CHANNEL_ID: Final = 0
"""SCTP stream id of the negotiated channel: the same on both ends."""
_LOOPBACK_IPV4: Final = "127.0.0.1"
_FAILED_STATES: Final = frozenset({"failed", "closed"})


class PeerError(ConnectionError):
    """The peer connection could not be established or was lost."""


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
        self.incoming: asyncio.Queue[tuple[Message, float]] = asyncio.Queue()
        """Messages as they arrived, each with its arrival time on the loop clock."""
        self.closed = asyncio.Event()
        """Set once the channel or the connection has closed or failed, from either side."""
        self._opened = asyncio.Event()
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
        """Wait until the data channel is open; PeerError if it fails or takes over `timeout` s."""
        opened = asyncio.ensure_future(self._opened.wait())
        closed = asyncio.ensure_future(self.closed.wait())
        try:
            await asyncio.wait(
                {opened, closed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            opened.cancel()
            closed.cancel()
        if not self._opened.is_set() or self.closed.is_set():
            state = self._connection.connectionState
            raise PeerError(f"the peer connection did not open within {timeout:g} s ({state})")

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
        """Close the connection; the remote end sees its channel close."""
        await self._connection.close()
        self.closed.set()

    def _local_sdp(self) -> str:
        sdp: str = self._connection.localDescription.sdp
        return sdp if self._rewrite_sdp is None else self._rewrite_sdp(sdp)

    async def _set_remote(self, sdp: str, kind: str) -> None:
        try:
            await self._connection.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
        except ValueError as error:
            raise PeerError(f"the remote {kind} is not usable SDP: {error}") from None

    def _deliver(self, message: Message) -> None:
        self.incoming.put_nowait((message, asyncio.get_running_loop().time()))

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
