"""rtcodec: real-time voice calls over WebRTC with a causal, streaming neural speech codec.

    import rtcodec
    codec = rtcodec.load()                      # the shipped weights
    codes = codec.encode(audio, kbps=6)         # float32 [samples] at 16 kHz -> int64 [12, frames]
    audio = codec.decode(codes)                 # -> float32 [frames * 320]
    encoder, decoder = codec.stream_encoder(6), codec.stream_decoder()
    packet = encoder.push(frame)                # 320 samples -> bytes
    frame = decoder.push(rtcodec.Packet.parse(packet))   # or decoder.push(None) for a lost one

The neural parts (and torch) load on first use, so `rtcodec.transport` and the Opus baseline stay light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rtcodec.bitstream import Packet, PacketError
from rtcodec.config import FRAME_SAMPLES, SAMPLE_RATE, CodecConfig
from rtcodec.opus import OpusStreamDecoder, OpusStreamEncoder
from rtcodec.protocols import StreamDecoder, StreamEncoder

if TYPE_CHECKING:
    from rtcodec.codec import Codec, RtcStreamDecoder, RtcStreamEncoder, load, untrained
    from rtcodec.model import WeightsError

_NEURAL = {
    "Codec": "rtcodec.codec",
    "RtcStreamDecoder": "rtcodec.codec",
    "RtcStreamEncoder": "rtcodec.codec",
    "load": "rtcodec.codec",
    "untrained": "rtcodec.codec",
    "WeightsError": "rtcodec.model",
}


def __getattr__(name: str) -> Any:
    if name in _NEURAL:
        return getattr(importlib.import_module(_NEURAL[name]), name)
    raise AttributeError(f"module 'rtcodec' has no attribute '{name}'")


__all__ = [
    "FRAME_SAMPLES",
    "SAMPLE_RATE",
    "Codec",
    "CodecConfig",
    "OpusStreamDecoder",
    "OpusStreamEncoder",
    "Packet",
    "PacketError",
    "RtcStreamDecoder",
    "RtcStreamEncoder",
    "StreamDecoder",
    "StreamEncoder",
    "WeightsError",
    "load",
    "untrained",
]
