"""What the call tests share: two real aiortc peers on this host, Opus, speech to send."""

from __future__ import annotations

import asyncio

import numpy as np

from rtcodec.audio import FileSource, default_speech
from rtcodec.opus import OpusStreamEncoder
from rtcodec.transport import CodecChoice, Peer, Session, connect, listen

KBPS = 16.0
OPUS = CodecChoice("opus", KBPS)


class FrameList:
    """A FrameSink that keeps the float frames (a WAV file would round them to 16 bits)."""

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []
        self.closed = False
        self.glitches = 0

    def write_frame(self, frame: np.ndarray) -> None:
        self.frames.append(np.array(frame, dtype=np.float32))

    def close(self) -> None:
        self.closed = True


async def meet(caller: Peer | None = None, callee: Peer | None = None) -> tuple[Peer, Peer]:
    """Two peers (caller, callee), fresh ones unless given, that have exchanged offer and answer
    through TCP signalling on 127.0.0.1; the connection itself opens in the background."""
    caller, callee = caller or Peer(), callee or Peer()
    async with await listen("127.0.0.1", 0) as listener:
        await asyncio.gather(
            listener.accept(callee, OPUS, token="secret"),
            connect(caller, OPUS, port=listener.port, token="secret"),
        )
    return caller, callee


def speech(seconds: float) -> np.ndarray:
    return default_speech(seconds).audio


def talker(peer: Peer, seconds: float) -> Session:
    """A session that sends `seconds` of speech with Opus and receives nothing."""
    return Session(peer, source=FileSource(speech(seconds)), encoder=OpusStreamEncoder(KBPS))
