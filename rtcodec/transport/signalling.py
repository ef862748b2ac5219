"""How two peers find each other: SDP offer and answer over TCP, or pasted by hand.

TCP, one JSON object per line; the caller connects, the callee listens:

    caller -> {"type": "hello", "version": 1, "token": str | null, "codec": str, "kbps": float}
    callee -> {"type": "welcome"}  or  {"type": "refused", "reason": str}  (then it hangs up)
    caller -> {"type": "offer", "sdp": str}
    callee -> {"type": "answer", "sdp": str}

The callee checks the token (if it has one) before anything else, then the codec and bitrate,
before any SDP is exchanged. A stranger (a wrong or missing token, another protocol, garbage, or
silence) is refused and the callee goes on waiting for its caller; a codec or bitrate mismatch is a
set-up error on one side and raises SignallingError on both, naming the problem.
The token is a shared secret sent in clear text: it keeps strangers out of a call, it does not
hide it from someone who can read the traffic (the media itself is DTLS-encrypted).

Copy-paste mode, for peers without a TCP path to each other: the offerer prints its offer (with
the codec and bitrate) as one line of base64 and reads the answer line from its input; the
answerer does the opposite. A codec mismatch makes the answerer print a refusal line instead.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import sys
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self, TextIO

from rtcodec.transport.peer import Peer

PROTOCOL_VERSION: Final = 1
DEFAULT_PORT: Final = 47100
"""TCP port that `listen` and `connect` use unless told otherwise."""
REPLY_TIMEOUT: Final = 30.0
"""Seconds to wait for each signalling message once a handshake has begun."""
HELLO_TIMEOUT: Final = 5.0
"""Seconds a new connection has to say hello before the callee hangs up on it and waits on."""
BLOB_PREFIX: Final = "rtcodec1:"
"""Start of every copy-paste line, so that a wrong paste is recognised as such."""
_MAX_LINE: Final = 1 << 20
"""Longest signalling line accepted: SDP with many candidates stays far below this."""

Message = dict[str, Any]
_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class SignallingError(RuntimeError):
    """The peers could not agree on a call: unreachable, refused, mismatched, or malformed."""


class _Stranger(Exception):
    """A connection to the listener that is not the expected caller; its message says why."""


@dataclass(frozen=True)
class CodecChoice:
    """The codec and bitrate that both sides of a call must use."""

    name: str
    kbps: float

    def __str__(self) -> str:
        return f"{self.name} at {self.kbps:g} kbps"


class Listener:
    """A TCP signalling endpoint waiting for callers; use `listen()` to open one."""

    def __init__(self, server: asyncio.Server, callers: asyncio.Queue[_Connection]) -> None:
        self._server = server
        self._callers = callers

    @property
    def port(self) -> int:
        """The port it listens on (useful after asking for port 0)."""
        return int(self._server.sockets[0].getsockname()[1])

    async def accept(
        self,
        peer: Peer,
        choice: CodecChoice,
        *,
        token: str | None = None,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        """Wait for the caller and answer its offer with `peer`.

        Strangers (a wrong or missing token while `token` is set, another protocol, garbage, or
        no hello within HELLO_TIMEOUT s) are refused, told why where they listen, and reported to
        `on_refused`; the listener then waits for the next caller. Raises SignallingError (after
        telling the caller why) if the caller wants another codec or bitrate than `choice`.
        """
        while True:
            reader, writer = await self._callers.get()
            try:
                await _answer_caller(reader, writer, peer, choice, token)
                return
            except _Stranger as stranger:
                if on_refused is not None:
                    on_refused(str(stranger))
            finally:
                await _close(writer)

    async def close(self) -> None:
        """Stop listening and hang up on callers that were never accepted."""
        self._server.close()
        while not self._callers.empty():
            _, writer = self._callers.get_nowait()
            await _close(writer)
        await self._server.wait_closed()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


async def listen(host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> Listener:
    """Start listening for callers on `host`:`port` (port 0: any free port, see `.port`)."""
    callers: asyncio.Queue[_Connection] = asyncio.Queue()

    async def enqueue(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await callers.put((reader, writer))

    try:
        server = await asyncio.start_server(enqueue, host, port, limit=_MAX_LINE)
    except OSError as error:
        raise SignallingError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    return Listener(server, callers)


async def connect(
    peer: Peer,
    choice: CodecChoice,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    token: str | None = None,
) -> None:
    """Call the listener at `host`:`port`: say hello, send `peer`'s offer, apply the answer.

    Raises SignallingError if the listener cannot be reached or refuses the call.
    """
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, limit=_MAX_LINE), REPLY_TIMEOUT
        )
    except (OSError, TimeoutError) as error:
        reason = getattr(error, "strerror", None) or "timed out"
        raise SignallingError(f"cannot reach {host}:{port}: {reason}") from None
    try:
        await _send(writer, _hello(choice) | {"token": token})
        _expect(await _receive(reader), "welcome", refused_by=f"{host}:{port}")
        await _send(writer, {"type": "offer", "sdp": await peer.offer()})
        await peer.accept_answer(_sdp(_expect(await _receive(reader), "answer")))
    finally:
        await _close(writer)


async def paste_offer(
    peer: Peer, choice: CodecChoice, *, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout
) -> None:
    """Copy-paste mode, offering side: print the offer line, read the answer line from `stdin`."""
    offer = _hello(choice) | {"type": "offer", "sdp": await peer.offer()}
    _print_blob(offer, stdout, "Paste this line into the other side, then paste its answer here:")
    answer = _expect(await _read_blob(stdin), "answer", refused_by="the other side")
    await peer.accept_answer(_sdp(answer))


async def paste_answer(
    peer: Peer, choice: CodecChoice, *, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout
) -> None:
    """Copy-paste mode, answering side: read the offer line, print the answer (or refusal) line.

    Raises SignallingError, after printing a refusal line for the other side, on a mismatch.
    """
    offer = await _read_blob(stdin)
    refusal = _stranger(_expect(offer, "offer"), token=None) or _mismatch(offer, choice)
    if refusal is not None:
        _print_blob({"type": "refused", "reason": refusal}, stdout, "Paste this refusal back:")
        raise SignallingError(f"refused the pasted offer: {refusal}")
    answer = {"type": "answer", "sdp": await peer.answer(_sdp(offer))}
    _print_blob(answer, stdout, "Paste this line into the other side:")


def encode_blob(message: Message) -> str:
    """`message` as one copy-pasteable line: BLOB_PREFIX + base64 of compressed JSON."""
    packed = zlib.compress(json.dumps(message, separators=(",", ":")).encode(), 9)
    return BLOB_PREFIX + base64.urlsafe_b64encode(packed).decode("ascii")


def decode_blob(line: str) -> Message:
    """Inverse of `encode_blob`; SignallingError for anything else."""
    text = line.strip()
    if not text.startswith(BLOB_PREFIX):
        raise SignallingError(f"not an rtcodec signalling line (it must start with {BLOB_PREFIX})")
    try:
        raw = zlib.decompress(base64.urlsafe_b64decode(text[len(BLOB_PREFIX) :]))
    except (binascii.Error, zlib.error, ValueError):
        raise SignallingError("the pasted line is damaged (incomplete or altered?)") from None
    return _as_message(raw)


def _hello(choice: CodecChoice) -> Message:
    return {"type": "hello", "version": PROTOCOL_VERSION, "codec": choice.name, "kbps": choice.kbps}


async def _answer_caller(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Peer, choice: CodecChoice, token: str | None
) -> None:
    """The callee's side of one handshake. _Stranger if the connection is not a caller entitled
    to call; SignallingError if it is but wants another codec or bitrate."""
    caller = _describe(writer)
    try:
        hello = _expect(await _receive(reader, HELLO_TIMEOUT), "hello")
    except SignallingError as error:
        raise _Stranger(f"hung up on {caller}: {error}") from None
    stranger = _stranger(hello, token)
    if stranger is not None:
        await _refuse(writer, stranger)
        raise _Stranger(f"refused the call from {caller}: {stranger}")
    mismatch = _mismatch(hello, choice)
    if mismatch is not None:
        await _refuse(writer, mismatch)
        raise SignallingError(f"refused the call from {caller}: {mismatch}")
    await _send(writer, {"type": "welcome"})
    offer = _expect(await _receive(reader), "offer")
    await _send(writer, {"type": "answer", "sdp": await peer.answer(_sdp(offer))})


async def _refuse(writer: asyncio.StreamWriter, reason: str) -> None:
    """Tell the caller why it is refused, if it still listens."""
    with contextlib.suppress(SignallingError):
        await _send(writer, {"type": "refused", "reason": reason})


def _stranger(hello: Message, token: str | None) -> str | None:
    """Why `hello` does not come from a caller entitled to call a callee with `token`, or None."""
    if hello.get("version") != PROTOCOL_VERSION:
        return f"unsupported signalling (this side speaks rtcodec version {PROTOCOL_VERSION})"
    offered = hello.get("token")
    if token is not None:
        if not isinstance(offered, str) or not offered:
            return "missing token (this side requires one)"
        if not hmac.compare_digest(offered.encode(), token.encode()):
            return "wrong token"
    return None


def _mismatch(hello: Message, choice: CodecChoice) -> str | None:
    """Why the caller of `hello` cannot talk to a callee with `choice`, or None if it can."""
    codec, kbps = hello.get("codec"), hello.get("kbps")
    if not isinstance(codec, str) or not isinstance(kbps, int | float):
        return "malformed hello: codec and kbps are required"
    if codec != choice.name or kbps != choice.kbps:
        return f"codec mismatch: the caller uses {codec} at {kbps:g} kbps, the callee {choice}"
    return None


def _expect(message: Message, kind: str, refused_by: str = "the peer") -> Message:
    """`message` if it is of type `kind`; SignallingError otherwise (refusals quoted)."""
    if message.get("type") == "refused":
        raise SignallingError(f"the call was refused by {refused_by}: {message.get('reason')}")
    if message.get("type") != kind:
        raise SignallingError(f"expected a {kind} message, got {message.get('type')!r}")
    return message


def _sdp(message: Message) -> str:
    sdp = message.get("sdp")
    if not isinstance(sdp, str):
        raise SignallingError(f"the {message.get('type')} message carries no SDP")
    return sdp


async def _send(writer: asyncio.StreamWriter, message: Message) -> None:
    writer.write(json.dumps(message).encode() + b"\n")
    try:
        await writer.drain()
    except ConnectionError as error:
        raise SignallingError(f"the signalling connection broke: {error}") from None


async def _receive(reader: asyncio.StreamReader, timeout: float = REPLY_TIMEOUT) -> Message:
    """The next JSON line; SignallingError on timeout, end of stream or malformed data."""
    try:
        line = await asyncio.wait_for(reader.readline(), timeout)
    except TimeoutError:
        raise SignallingError(f"no signalling message within {timeout:g} s") from None
    except (ValueError, ConnectionError):
        raise SignallingError("the signalling connection broke or sent an overlong line") from None
    if not line.endswith(b"\n"):
        raise SignallingError("the peer closed the signalling connection")
    return _as_message(line)


def _as_message(raw: bytes) -> Message:
    try:
        message = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SignallingError("malformed signalling message (not JSON)") from None
    if not isinstance(message, dict):
        raise SignallingError("malformed signalling message (not a JSON object)")
    return message


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


def _describe(writer: asyncio.StreamWriter) -> str:
    host, port = writer.get_extra_info("peername")[:2]
    return f"{host}:{port}"


def _print_blob(message: Message, stdout: TextIO, instruction: str) -> None:
    print(instruction, file=sys.stderr, flush=True)
    print(encode_blob(message), file=stdout, flush=True)


async def _read_blob(stdin: TextIO) -> Message:
    """Read one pasted line from `stdin` off the loop; SignallingError if there is none.

    The read runs in a daemon thread, not the loop's executor: at exit the loop would wait for an
    executor thread, so Ctrl-C while nobody pastes would hang until Enter."""
    loop = asyncio.get_running_loop()
    pasted: asyncio.Future[str] = loop.create_future()

    def read() -> None:
        try:
            line = stdin.readline()
        except (OSError, ValueError):  # stdin closed or unreadable: as the end of input
            line = ""
        with contextlib.suppress(RuntimeError):  # the loop has already closed
            loop.call_soon_threadsafe(lambda: pasted.done() or pasted.set_result(line))

    threading.Thread(target=read, name="paste-reader", daemon=True).start()
    line = await pasted
    if not line.strip():
        raise SignallingError("no signalling line was pasted (end of input)")
    return decode_blob(line)
