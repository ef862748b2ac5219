"""The two small protocols that both codecs implement.

The call engine, the network simulator and the benchmarks only know these. Audio crosses them as
float32 numpy arrays in [-1, 1] of shape [FRAME_SAMPLES]; packets cross them as `bytes`.
"""

from __future__ import annotations

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

    def push(self, packet: Packet | None, following: Packet | None = None) -> np.ndarray:
        """Decode the next frame: float32 [FRAME_SAMPLES] in [-1, 1].

        `packet` is None when the frame was lost; `following` is then the next frame's packet if it
        has already arrived, so that redundancy (rtcodec) or in-band FEC (Opus) can rebuild the
        lost frame. Otherwise the decoder conceals.
        """
        ...
