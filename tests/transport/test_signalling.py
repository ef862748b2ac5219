"""Signalling: TCP hello with token and codec checks, offer/answer, copy-paste blobs."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Awaitable, Callable
from typing import TextIO

import pytest

from rtcodec.transport import CodecChoice, Peer, SignallingError, connect, listen, signalling
from rtcodec.transport.signalling import decode_blob, encode_blob, paste_answer, paste_offer

OPUS = CodecChoice("opus", 16.0)


class CountingPeer(Peer):
    """A Peer that counts the SDP it produces, to show when a refusal happens."""

    def __init__(self) -> None:
        super().__init__()
        self.sdp_made = 0

    async def offer(self) -> str:
        self.sdp_made += 1
        return await super().offer()

    async def answer(self, offer_sdp: str) -> str:
        self.sdp_made += 1
        return await super().answer(offer_sdp)


async def both(first: Awaitable[None], second: Awaitable[None]) -> list[BaseException | None]:
    """Run both sides to the end; what each raised (None if it succeeded)."""
    results = await asyncio.gather(first, second, return_exceptions=True)
    return [result if isinstance(result, BaseException) else None for result in results]


async def tcp_call(
    callee_choice: CodecChoice,
    caller_choice: CodecChoice,
    callee_token: str | None,
    caller_token: str | None,
) -> tuple[list[BaseException | None], CountingPeer, CountingPeer]:
    """One TCP signalling attempt; (what callee and caller raised, callee peer, caller peer)."""
    callee, caller = CountingPeer(), CountingPeer()
    async with await listen("127.0.0.1", 0) as listener:
        errors = await both(
            listener.accept(callee, callee_choice, token=callee_token),
            connect(caller, caller_choice, port=listener.port, token=caller_token),
        )
    return errors, callee, caller


def refusal(
    callee_choice: CodecChoice,
    caller_choice: CodecChoice,
    callee_token: str | None,
    caller_token: str | None,
) -> tuple[str, str]:
    """The callee's and the caller's error messages; fails if either side did not raise or if any
    SDP was made."""

    async def attempt() -> tuple[str, str]:
        errors, callee, caller = await tcp_call(
            callee_choice, caller_choice, callee_token, caller_token
        )
        assert all(isinstance(error, SignallingError) for error in errors), errors
        assert callee.sdp_made == caller.sdp_made == 0  # refused before any SDP
        await asyncio.gather(callee.close(), caller.close())
        return str(errors[0]), str(errors[1])

    return asyncio.run(attempt())


def test_matching_token_and_codec_connect_the_peers() -> None:
    async def attempt() -> None:
        errors, callee, caller = await tcp_call(OPUS, OPUS, "s3cret", "s3cret")
        assert errors == [None, None]
        assert callee.sdp_made == caller.sdp_made == 1
        await asyncio.gather(callee.wait_open(10.0), caller.wait_open(10.0))
        await asyncio.gather(callee.close(), caller.close())

    asyncio.run(attempt())


async def stranger_then_caller(stranger: Callable[[int], Awaitable[None]]) -> tuple[list[str], BaseException | None]:
    """A listener (token "s3cret") that `stranger(port)` reaches before the rightful caller:
    (what the listener reported refusing, what `stranger` raised). Fails unless the call is set up."""
    reports: list[str] = []
    callee, caller = Peer(), Peer()
    async with await listen("127.0.0.1", 0) as listener:
        accepting = asyncio.create_task(listener.accept(callee, OPUS, token="s3cret", on_refused=reports.append))
        [stranger_error] = await asyncio.gather(stranger(listener.port), return_exceptions=True)
        await connect(caller, OPUS, port=listener.port, token="s3cret")
        await asyncio.wait_for(accepting, 10.0)
    await asyncio.gather(callee.wait_open(10.0), caller.wait_open(10.0))
    await asyncio.gather(callee.close(), caller.close())
    return reports, stranger_error


def dialling_with(token: str | None) -> Callable[[int], Awaitable[None]]:
    async def dial(port: int) -> None:
        peer = Peer()
        try:
            await connect(peer, OPUS, port=port, token=token)
        finally:
            await peer.close()

    return dial


def sending(raw: bytes) -> Callable[[int], Awaitable[None]]:
    """A connection that sends `raw` (nothing: it stays silent) and reads until it is hung up on."""

    async def talk(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        await reader.read()
        writer.close()

    return talk


def test_a_wrong_token_is_refused_on_both_sides_and_the_listener_waits_on() -> None:
    reports, error = asyncio.run(stranger_then_caller(dialling_with("guess")))
    assert len(reports) == 1
    assert "refused the call from 127.0.0.1" in reports[0] and "wrong token" in reports[0]
    assert isinstance(error, SignallingError)
    assert "refused by 127.0.0.1" in str(error) and "wrong token" in str(error)


def test_a_missing_token_is_refused_on_both_sides_and_the_listener_waits_on() -> None:
    reports, error = asyncio.run(stranger_then_caller(dialling_with(None)))
    assert len(reports) == 1 and "missing token" in reports[0]
    assert isinstance(error, SignallingError) and "missing token" in str(error)


def test_a_connection_that_sends_garbage_is_hung_up_on_and_the_listener_waits_on() -> None:
    reports, error = asyncio.run(stranger_then_caller(sending(b"GET / HTTP/1.1\r\n\r\n")))
    assert error is None
    assert len(reports) == 1 and "hung up on 127.0.0.1" in reports[0] and "not JSON" in reports[0]


def test_a_silent_connection_is_hung_up_on_and_the_listener_waits_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signalling, "HELLO_TIMEOUT", 0.3)
    reports, error = asyncio.run(stranger_then_caller(sending(b"")))
    assert error is None
    assert len(reports) == 1 and "no signalling message within 0.3 s" in reports[0]


def test_a_codec_mismatch_is_an_error_on_both_sides() -> None:
    errors = refusal(CodecChoice("rtcodec", 6.0), OPUS, None, None)
    for error in errors:
        assert "codec mismatch" in error
        assert "opus at 16 kbps" in error and "rtcodec at 6 kbps" in error


def test_a_bitrate_mismatch_is_an_error_on_both_sides() -> None:
    errors = refusal(OPUS, CodecChoice("opus", 24.0), "s3cret", "s3cret")
    assert all("codec mismatch" in error and "24 kbps" in error for error in errors)


def test_an_unreachable_listener_is_a_clear_error() -> None:
    async def attempt() -> None:
        async with await listen("127.0.0.1", 0) as listener:
            port = listener.port  # now closed again: nobody listens there
        peer = Peer()
        with pytest.raises(SignallingError, match=f"cannot reach 127.0.0.1:{port}"):
            await connect(peer, OPUS, port=port)
        await peer.close()

    asyncio.run(attempt())


def pipe() -> tuple[TextIO, TextIO]:
    """A (reader, writer) pair of text files, like a terminal between two people."""
    read_end, write_end = os.pipe()
    return open(read_end, encoding="ascii"), open(write_end, "w", encoding="ascii")


async def paste_call(
    offer_choice: CodecChoice, answer_choice: CodecChoice
) -> tuple[list[BaseException | None], Peer, Peer]:
    """Copy-paste signalling, each side's stdout piped into the other's stdin."""
    offerer, answerer = Peer(), Peer()
    offers_in, offers_out = pipe()
    answers_in, answers_out = pipe()
    with offers_in, offers_out, answers_in, answers_out:
        errors = await both(
            paste_offer(offerer, offer_choice, stdin=answers_in, stdout=offers_out),
            paste_answer(answerer, answer_choice, stdin=offers_in, stdout=answers_out),
        )
    return errors, offerer, answerer


def test_copy_paste_signalling_connects_the_peers() -> None:
    async def attempt() -> None:
        errors, offerer, answerer = await paste_call(OPUS, OPUS)
        assert errors == [None, None]
        await asyncio.gather(offerer.wait_open(10.0), answerer.wait_open(10.0))
        await asyncio.gather(offerer.close(), answerer.close())

    asyncio.run(attempt())


def test_copy_paste_codec_mismatch_is_an_error_on_both_sides() -> None:
    async def attempt() -> list[BaseException | None]:
        errors, offerer, answerer = await paste_call(OPUS, CodecChoice("rtcodec", 6.0))
        await asyncio.gather(offerer.close(), answerer.close())
        return errors

    errors = asyncio.run(attempt())
    assert all(isinstance(error, SignallingError) for error in errors)
    assert all("codec mismatch" in str(error) for error in errors)


def test_blobs_are_one_line_round_trips_and_damage_is_reported() -> None:
    message = {"type": "offer", "sdp": "v=0\r\n" * 200}
    blob = encode_blob(message)
    assert "\n" not in blob and decode_blob(blob + "\n") == message
    with pytest.raises(SignallingError, match="damaged"):
        decode_blob(blob[:-10])
    with pytest.raises(SignallingError, match="must start with"):
        decode_blob("hello")

    async def nothing_pasted() -> None:
        peer = Peer()
        try:
            await paste_answer(peer, OPUS, stdin=io.StringIO(""), stdout=io.StringIO())
        finally:
            await peer.close()

    with pytest.raises(SignallingError, match="end of input"):
        asyncio.run(nothing_pasted())
