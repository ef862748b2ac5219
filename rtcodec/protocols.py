"""The two small protocols that both codecs implement.

The call engine, the network simulator and the benchmarks only know these. Audio crosses them as
float32 numpy arrays in [-1, 1] of shape [FRAME_SAMPLES]; packets cross them as `bytes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from rtcodec.bitstream import Packet


class StreamEncoder(Protocol):
    """Turns one 20 ms frame into one packet, keeping its state between calls."""

    @property
    def name(self) -> str:
        """Codec name as agreed in signalling, for example "rtcodec" or "opus"."""
        ...

    @property
    def kbps(self) -> float:
        """Nominal bitrate of the codec payload in kbps."""
        ...

    def push(self, frame: np.ndarray) -> bytes:
        """Encode `frame` (float32 [FRAME_SAMPLES]) into one serialised packet."""
        ...


class StreamDecoder(Protocol):
    """Turns one packet, or a lost one, into 20 ms of audio, keeping its state between calls."""

    def push(self, packet: Packet | None, following: Sequence[Packet | None] = ()) -> np.ndarray:
        """Decode the next frame: float32 [FRAME_SAMPLES] in [-1, 1].

        `packet` is None when the frame was lost. `following` holds the packets after this frame
        that have already arrived: `following[d - 1]` is the packet d frames later, or None if it
        has not arrived; at most MAX_REDUNDANT_FRAMES of them (as far as redundancy reaches back),
        possibly fewer or none. From them the decoder rebuilds a lost frame if it can (rtcodec:
        the nearest packet whose redundancy reaches back to it; Opus: the next packet's in-band
        FEC), and conceals it otherwise.
        """
        ...
