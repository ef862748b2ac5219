"""Streaming layers and the encoder / decoder stacks built from them."""

from rtcodec.modules.conv import StreamingConv1d, StreamingConvTranspose1d
from rtcodec.modules.seanet import Decoder, Encoder

__all__ = ["Decoder", "Encoder", "StreamingConv1d", "StreamingConvTranspose1d"]
