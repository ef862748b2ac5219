"""A decoder that works at the frame rate: it predicts each 20 ms frame's spectrum, and an inverse
FFT and a short overlap-add make it audible (Vocos' idea, made causal and streaming).

All of its compute runs at 50 Hz on wide matrices, where a CPU is efficient, instead of in narrow
convolutions at 16 kHz. Frame t's synthesis window covers the samples
[t * FRAME_SAMPLES - overlap, (t + 1) * FRAME_SAMPLES): it rises over the `overlap` samples it
shares with frame t - 1, falls over those it shares with frame t + 1, and the two ramps sum to one.
The last `overlap` samples of a frame are final only once the next frame is added, so the output
lags the input by `overlap` samples (`CodecConfig.delay_samples`).

A phase predicted afresh for every frame cannot keep a voice's harmonics going from one frame to
the next: that would take the absolute time. With `CodecConfig.phase_advance` the decoder also
predicts, per bin, the frequency of what sounds there, and each bin's phase is carried over from
the previous frame, advanced by what that frequency turns in one hop (as in a phase vocoder); the
predicted phase is then only an offset that holds the bins of one frame in shape. The frequency is
given as a detune from the nearest frequency that turns by whole cycles in a hop (a multiple of
FRAME_RATE Hz): a detune of zero everywhere carries no phase at all, which is the other decoder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from rtcodec.config import FRAME_SAMPLES, CodecConfig
from rtcodec.modules.conv import StreamingConv1d
from rtcodec.streaming import StreamingModule

DEPTHWISE_KERNEL = 7
"""Frames of context in each block's depthwise convolution (140 ms)."""
EXPANSION = 3
"""Hidden width of a block's pointwise layers, in multiples of the decoder's width."""
MAX_LOG_MAGNITUDE = 6.0
"""Predicted log magnitudes are clipped here, so that no bin can blow up the output."""


class ChannelNorm(nn.Module):
    """LayerNorm over the channels of every frame of [batch, channels, time]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class ConvNeXtBlock(nn.Module):
    """x + scale * pointwise(gelu(pointwise(norm(depthwise(x))))): [batch, dim, frames] -> same shape.

    `layers` (the blocks in the stack) sets the initial scale, so that the stack starts near identity.
    """

    def __init__(self, dim: int, layers: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            StreamingConv1d(dim, dim, DEPTHWISE_KERNEL, groups=dim),
            ChannelNorm(dim),
            StreamingConv1d(dim, EXPANSION * dim, 1),
            nn.GELU(approximate="tanh"),
            StreamingConv1d(EXPANSION * dim, dim, 1),
        )
        self.scale = nn.Parameter(torch.full((dim, 1), 1.0 / max(1, layers)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.scale * self.block(x)


def synthesis_window(overlap: int) -> torch.Tensor:
    """[FRAME_SAMPLES + overlap]: sin^2 rise over `overlap` samples, flat, cos^2 fall; rises and
    falls of neighbouring frames sum to one."""
    rise = torch.sin(0.5 * math.pi * (torch.arange(overlap) + 0.5) / overlap) ** 2
    return torch.cat([rise, torch.ones(FRAME_SAMPLES - overlap), rise.flip(0)])


@dataclass
class SynthesisState:
    tail: torch.Tensor
    """[batch, overlap] the falling end of the last frame, still to be added to the next."""
    carried_phase: torch.Tensor
    """[batch, bins] float64, each bin's phase carried to the last frame (`phase_advance`), in [0, 2 pi)."""


class FrameSynthesis(StreamingModule[SynthesisState]):
    """Spectra [batch, parts * bins, frames] -> audio [batch, 1, frames * FRAME_SAMPLES], lagging the
    frames by `overlap` samples. The parts: log magnitudes, phases, and with `phase_advance` each
    bin's detune, in bins (see the module's docstring)."""

    def __init__(self, overlap: int, phase_advance: bool = False) -> None:
        super().__init__()
        self.overlap = overlap
        self.phase_advance = phase_advance
        self.length = FRAME_SAMPLES + overlap
        self.register_buffer("window", synthesis_window(overlap), persistent=False)

    @property
    def bins(self) -> int:
        return self.length // 2 + 1

    @property
    def parts(self) -> int:
        """Values predicted per bin."""
        return 3 if self.phase_advance else 2

    @property
    def radians_per_detune(self) -> float:
        """What a detune of one bin turns in one hop."""
        return 2 * math.pi * FRAME_SAMPLES / self.length

    def initial_state(self, batch_size: int, device: torch.device) -> SynthesisState:
        return SynthesisState(torch.zeros(batch_size, self.overlap, device=device),
                              torch.zeros(batch_size, self.bins, device=device, dtype=torch.float64))

    def polar(self, spectra: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Spectra [batch, parts * bins, frames] -> (log magnitudes, phases), each [batch, frames, bins]:
        what each frame's inverse FFT is taken of. While streaming, this carries the phase on."""
        log_magnitude, phase, *detunes = spectra.transpose(1, 2).chunk(self.parts, dim=-1)
        if detunes:
            phase = phase + self._carried_phase(detunes[0])
        return log_magnitude.clamp(max=MAX_LOG_MAGNITUDE), phase

    def forward(self, spectra: torch.Tensor) -> torch.Tensor:
        return self.synthesize(*self.polar(spectra))

    def synthesize(self, log_magnitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        """Log magnitudes and phases [batch, frames, bins] -> audio [batch, 1, frames * FRAME_SAMPLES]."""
        spectrum = torch.polar(log_magnitude.exp(), phase)
        pieces = torch.fft.irfft(spectrum, n=self.length) * self.window  # [batch, frames, length]
        batch, frames, _ = pieces.shape
        span = frames * FRAME_SAMPLES
        audio = F.fold(pieces.transpose(1, 2), (1, span + self.overlap), (1, self.length),
                       stride=(1, FRAME_SAMPLES)).view(batch, -1)
        if self.is_streaming:
            state = self.streaming_state
            audio[:, : self.overlap] += state.tail
            state.tail = audio[:, span:]
        return audio[:, None, :span]

    def _carried_phase(self, detunes: torch.Tensor) -> torch.Tensor:
        """Detunes [batch, frames, bins] -> each bin's carried phase [batch, frames, bins] in [0, 2 pi):
        the last frame's, advanced by what the detune turns in one hop. Summed in float64, so that
        a long stream and one call on the whole signal agree. A frame's detune turns the phase of
        every later frame, and gradients reach it from all of them."""
        steps = self.radians_per_detune * detunes.to(torch.float64)
        start = self.streaming_state.carried_phase if self.is_streaming else steps.new_zeros(steps[:, 0].shape)
        carried = torch.remainder(start[:, None] + steps.cumsum(dim=1), 2 * math.pi)
        if self.is_streaming:
            self.streaming_state.carried_phase = carried[:, -1].detach()
        return carried.to(detunes.dtype)


def frame_spectra(audio: torch.Tensor, overlap: int) -> torch.Tensor:
    """Audio [batch, 1, frames * FRAME_SAMPLES] -> complex [batch, frames, bins]: the spectra that
    `FrameSynthesis(overlap).synthesize` turns back into `audio`, lagging by `overlap` samples (each
    frame's samples, unwindowed: the synthesis window's ramps sum to one)."""
    padded = F.pad(audio.squeeze(1), (overlap, 0))
    return torch.fft.rfft(padded.unfold(-1, FRAME_SAMPLES + overlap, FRAME_SAMPLES))


class SpectralDecoder(nn.Module):
    """Latent [batch, latent_dim, frames] -> audio [batch, 1, frames * FRAME_SAMPLES], lagging by
    `config.synthesis_overlap` samples."""

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        dim, layers = config.decoder_dim, config.decoder_layers
        synthesis = FrameSynthesis(config.synthesis_overlap, config.phase_advance)
        self.layers = nn.Sequential(
            StreamingConv1d(config.latent_dim, dim, 3),
            ChannelNorm(dim),
            *(ConvNeXtBlock(dim, layers) for _ in range(layers)),
            ChannelNorm(dim),
            StreamingConv1d(dim, synthesis.parts * synthesis.bins, 1),
            synthesis,
        )

    @property
    def synthesis(self) -> FrameSynthesis:
        return cast(FrameSynthesis, self.layers[-1])

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.layers(latent)

    def forward_with_phases(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(audio, the phases [batch, frames, bins] of the frames it was made of), for a loss on them."""
        log_magnitude, phase = self.synthesis.polar(self.layers[:-1](latent))
        return self.synthesis.synthesize(log_magnitude, phase), phase
