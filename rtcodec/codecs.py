"""Codec names -> streaming encoders and decoders: the one place that maps "rtcodec" / "opus".

The call engine and the demo receive these as factories; torch is imported only when an rtcodec
encoder or decoder is actually built.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rtcodec.opus import OPUS_NAME, OpusStreamDecoder, OpusStreamEncoder
from rtcodec.protocols import StreamDecoder, StreamEncoder

if TYPE_CHECKING:
    from rtcodec.codec import Codec

RTCODEC_NAME = "rtcodec"
CODEC_NAMES = (RTCODEC_NAME, OPUS_NAME)


@functools.lru_cache(maxsize=4)
def _neural_codec(weights: Path | None) -> Codec:
    from rtcodec.codec import load

    return load(weights)


@dataclass(frozen=True)
class CodecSpec:
    """Which codec, at which bitrate, with which options; builds fresh encoders and decoders."""

    name: str
    kbps: float
    weights: Path | None = None
    """rtcodec model folder (default: the shipped weights)."""
    redundancy: int = 0
    """rtcodec: earlier frames' coarse codes carried in each packet."""
    fec: bool = False
    """Opus: in-band FEC, with `packet_loss_perc` as the expected loss."""
    packet_loss_perc: int = 0

    def __post_init__(self) -> None:
        if self.name not in CODEC_NAMES:
            raise ValueError(f"unknown codec '{self.name}' (choose from {', '.join(CODEC_NAMES)})")

    def encoder(self) -> StreamEncoder:
        if self.name == OPUS_NAME:
            return OpusStreamEncoder(self.kbps, fec=self.fec, packet_loss_perc=self.packet_loss_perc)
        return _neural_codec(self.weights).stream_encoder(self.kbps, redundancy=self.redundancy)

    def decoder(self) -> StreamDecoder:
        if self.name == OPUS_NAME:
            return OpusStreamDecoder()
        return _neural_codec(self.weights).stream_decoder()

    @property
    def model_id(self) -> str:
        return OPUS_NAME if self.name == OPUS_NAME else _neural_codec(self.weights).model_id
