"""Reconstruction losses on spectrograms: multi-scale mel and multi-resolution STFT, and the phase
derivatives of a spectral decoder's frames.

Audio is [batch, 1, samples] at SAMPLE_RATE.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from rtcodec.config import SAMPLE_RATE
from rtcodec.modules.spectral import frame_spectra

MEL_SCALES = ((32, 5), (64, 10), (128, 20), (256, 40), (512, 80), (1024, 160), (2048, 320))
"""(window, mel bands) pairs, as in DAC."""
STFT_WINDOWS = (128, 512, 2048)
COMPLEX_WINDOWS = (64, 256, 1024)
"""Windows of the phase-aware loss: short ones, where the waveform's phase is learnable."""


def _spectrum(audio: torch.Tensor, window: int) -> torch.Tensor:
    """[batch, 1, samples] -> complex [batch, window // 2 + 1, frames], hop window // 4."""
    return torch.stft(
        audio.squeeze(1), n_fft=window, hop_length=window // 4,
        window=torch.hann_window(window, device=audio.device), return_complex=True,
    )


def _magnitude(audio: torch.Tensor, window: int) -> torch.Tensor:
    """[batch, 1, samples] -> [batch, window // 2 + 1, frames] magnitude, hop window // 4."""
    return _spectrum(audio, window).abs()


@functools.cache
def mel_filterbank(n_fft: int, bands: int, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Triangular HTK mel filters [bands, n_fft // 2 + 1], unnormalised."""

    def to_mel(hz: torch.Tensor) -> torch.Tensor:
        return 2595.0 * torch.log10(1.0 + hz / 700.0)

    def to_hz(mel: torch.Tensor) -> torch.Tensor:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)

    bins = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = to_hz(torch.linspace(0, float(to_mel(torch.tensor(sample_rate / 2))), bands + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / (centre - lower)
    falling = (upper - bins) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


def level_normalised(estimate: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both [batch, 1, samples] scaled by each target item's inverse RMS.

    Log-spectral losses are not level-invariant: on a quiet item many bins sit near the log
    floor, where gradients are large and meaningless. Normalising by the target's level makes
    every item count alike, whatever its loudness.
    """
    gain = target.pow(2).mean(dim=(1, 2), keepdim=True).add(1e-8).rsqrt()
    return estimate * gain, target * gain


class MultiScaleMelLoss(nn.Module):
    """L1 between log mel spectrograms at several window sizes (sum over scales)."""

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = estimate.new_zeros(())
        for window, bands in MEL_SCALES:
            filters = mel_filterbank(window, bands).to(estimate.device)
            est, ref = (filters @ _magnitude(x, window) for x in (estimate, target))
            total = total + F.l1_loss(est.clamp(min=1e-5).log10(), ref.clamp(min=1e-5).log10())
        return total


class MultiResolutionStftLoss(nn.Module):
    """Spectral convergence + log-magnitude L1 at several resolutions (mean over resolutions)."""

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = estimate.new_zeros(())
        for window in STFT_WINDOWS:
            est, ref = _magnitude(estimate, window), _magnitude(target, window)
            convergence = torch.linalg.norm(ref - est) / torch.linalg.norm(ref).clamp(min=1e-5)
            log_l1 = F.l1_loss(est.clamp(min=1e-5).log(), ref.clamp(min=1e-5).log())
            total = total + convergence + log_l1
        return total / len(STFT_WINDOWS)


class ComplexStftLoss(nn.Module):
    """Relative L1 between complex short-time spectra (mean over COMPLEX_WINDOWS).

    Magnitude losses leave the phase free, and a decoder trained on them alone settles on a
    phase unrelated to the input: buzzy audio that PESQ and STOI punish. The codec is causal and
    sample-aligned, so its output can follow the input's waveform; this loss asks it to.
    """

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = estimate.new_zeros(())
        for window in COMPLEX_WINDOWS:
            est, ref = _spectrum(estimate, window), _spectrum(target, window)
            total = total + (est - ref).abs().mean() / ref.abs().mean().clamp(min=1e-5)
        return total / len(COMPLEX_WINDOWS)


class PhaseDerivativeLoss(nn.Module):
    """Anti-wrapped L1 between the phase derivatives of a spectral decoder's frames and those of the
    frames that would rebuild the target exactly (as APNet trains its phase): over time, each bin's
    advance from one frame to the next (its instantaneous frequency), and over frequency, the step
    from one bin to the next within a frame (the group delay). Neither depends on the absolute
    phase, which no decoder can know. Each bin counts by the target's magnitude there, so that
    harmonics, whose phase follows from the pitch, count and noise, whose phase is random, hardly.
    """

    def __init__(self, overlap: int) -> None:
        super().__init__()
        self.overlap = overlap

    def forward(self, phase: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """phase [batch, frames, bins] of the decoder's frames (`SpectralDecoder.forward_with_phases`);
        audio [batch, 1, frames * FRAME_SAMPLES], the input it encodes (not delayed)."""
        target = frame_spectra(audio, self.overlap)
        reference, weight = target.angle(), target.abs()
        advance = _weighted_mean(_wrapped(phase.diff(dim=1) - reference.diff(dim=1)),
                                 torch.minimum(weight[:, 1:], weight[:, :-1]))
        delay = _weighted_mean(_wrapped(phase.diff(dim=2) - reference.diff(dim=2)),
                               torch.minimum(weight[..., 1:], weight[..., :-1]))
        return advance + delay


def _wrapped(angle: torch.Tensor) -> torch.Tensor:
    """|angle| folded onto [0, pi]: the distance between two phases."""
    return torch.remainder(angle + math.pi, 2 * math.pi).sub(math.pi).abs()


def _weighted_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return (values * weight).sum() / weight.sum().clamp(min=1e-8)
