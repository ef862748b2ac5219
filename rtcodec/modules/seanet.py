"""SEANet-style causal encoder and decoder, with extra capacity at the 50 Hz bottleneck.

The encoder maps audio [batch, 1, samples] to a latent [batch, latent_dim, samples // FRAME_SAMPLES];
the decoder maps it back. All convolutions are causal and streaming, so both stacks can run one
20 ms frame at a time.
"""

from __future__ import annotations

import torch
from torch import nn

from rtcodec.config import CodecConfig
from rtcodec.modules.conv import StreamingConv1d, StreamingConvTranspose1d

BOTTLENECK_DILATIONS = (1, 2, 4, 8)


class ResidualUnit(nn.Module):
    """x + conv1x1(elu(conv_k(elu(x)))): [batch, channels, time] -> same shape."""

    def __init__(self, channels: int, hidden: int, kernel_size: int = 3, dilation: int = 1) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ELU(),
            StreamingConv1d(channels, hidden, kernel_size, dilation=dilation),
            nn.ELU(),
            StreamingConv1d(hidden, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def _bottleneck(config: CodecConfig) -> list[nn.Module]:
    """Residual units at 50 Hz with growing dilation: cheap context for coding and concealment."""
    dilations = BOTTLENECK_DILATIONS[: config.bottleneck_blocks]
    return [ResidualUnit(config.latent_dim, config.bottleneck_hidden, 3, d) for d in dilations]


def _stage_channels(config: CodecConfig) -> list[int]:
    """Channels before each downsampling, and after the last: [C, 2C, 4C, ...]."""
    return [config.channels * 2**i for i in range(len(config.ratios) + 1)]


class RmsNorm(nn.Module):
    """Scales every frame of [batch, channels, time] to unit RMS over channels (no parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-5)


class Encoder(nn.Module):
    """Audio [batch, 1, samples] -> normalised latent [batch, latent_dim, samples // FRAME_SAMPLES]."""

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        channels = _stage_channels(config)
        layers: list[nn.Module] = [StreamingConv1d(1, channels[0], 7)]
        for i, ratio in enumerate(config.ratios):
            layers += [
                ResidualUnit(channels[i], channels[i] // 2),
                nn.ELU(),
                StreamingConv1d(channels[i], channels[i + 1], 2 * ratio, stride=ratio),
            ]
        layers += [nn.ELU(), StreamingConv1d(channels[-1], config.latent_dim, 3)]
        bottleneck = _bottleneck(config)
        self.bottleneck = range(len(layers), len(layers) + len(bottleneck))
        """Indices in `layers` of the bottleneck's residual units."""
        layers += [*bottleneck, RmsNorm()]
        self.layers = nn.Sequential(*layers)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.layers(audio)


class Decoder(nn.Module):
    """Latent [batch, latent_dim, frames] -> audio [batch, 1, frames * FRAME_SAMPLES]."""

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        channels = _stage_channels(config)
        layers: list[nn.Module] = [StreamingConv1d(config.latent_dim, config.latent_dim, 3)]
        bottleneck = _bottleneck(config)
        self.bottleneck = range(len(layers), len(layers) + len(bottleneck))
        """Indices in `layers` of the bottleneck's residual units."""
        layers += bottleneck
        layers += [nn.ELU(), StreamingConv1d(config.latent_dim, channels[-1], 3)]
        for i, ratio in reversed(list(enumerate(config.ratios))):
            layers += [
                nn.ELU(),
                StreamingConvTranspose1d(channels[i + 1], channels[i], 2 * ratio, stride=ratio),
                ResidualUnit(channels[i], channels[i] // 2),
            ]
        layers += [nn.ELU(), StreamingConv1d(channels[0], 1, 7)]
        self.layers = nn.Sequential(*layers)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.layers(latent)
