"""Streaming layers and the encoder / decoder stacks built from them."""

from torch import nn

from rtcodec.config import CodecConfig
from rtcodec.modules.conv import StreamingConv1d, StreamingConvTranspose1d
from rtcodec.modules.seanet import Decoder, Encoder
from rtcodec.modules.spectral import SpectralDecoder


def build_decoder(config: CodecConfig) -> nn.Module:
    """The decoder that `config.decoder` names: latent [batch, latent_dim, frames] -> audio
    [batch, 1, frames * FRAME_SAMPLES], lagging the input by `config.delay_samples`."""
    return SpectralDecoder(config) if config.decoder == "spectral" else Decoder(config)


__all__ = ["Decoder", "Encoder", "SpectralDecoder", "StreamingConv1d", "StreamingConvTranspose1d", "build_decoder"]
