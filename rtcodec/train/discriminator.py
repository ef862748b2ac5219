"""Multi-scale STFT discriminator (EnCodec-style), kept small so that it is affordable on a CPU.

Each scale looks at the complex STFT of audio [batch, 1, samples] as a 2-channel image and returns
logits plus its feature maps for feature matching.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

Features = list[torch.Tensor]


class StftDiscriminator(nn.Module):
    """One STFT resolution: audio [batch, 1, samples] -> (logits [batch, 1, frames, bins], features)."""

    def __init__(self, window: int, channels: int) -> None:
        super().__init__()
        self.window = window
        dilations = (1, 2, 4)
        self.layers = nn.ModuleList(
            [nn.Conv2d(2, channels, (3, 9), padding=(1, 4))]
            + [nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), dilation=(d, 1), padding=(d, 4))
               for d in dilations]
            + [nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))]
        )
        self.output = nn.Conv2d(channels, 1, (3, 3), padding=(1, 1))

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, Features]:
        spectrum = torch.stft(
            audio.squeeze(1), n_fft=self.window, hop_length=self.window // 4,
            window=torch.hann_window(self.window, device=audio.device), return_complex=True,
        )
        x = torch.view_as_real(spectrum).permute(0, 3, 2, 1)  # [batch, 2, frames, bins]
        features = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.2)
            features.append(x)
        return self.output(x), features


class MultiScaleStftDiscriminator(nn.Module):
    """Several `StftDiscriminator`s at different window sizes."""

    def __init__(self, windows: tuple[int, ...] = (512, 256, 128), channels: int = 16) -> None:
        super().__init__()
        self.scales = nn.ModuleList(StftDiscriminator(w, channels) for w in windows)

    def forward(self, audio: torch.Tensor) -> list[tuple[torch.Tensor, Features]]:
        return [scale(audio) for scale in self.scales]


Critic = Callable[[torch.Tensor], list[tuple[torch.Tensor, Features]]]
"""A `MultiScaleStftDiscriminator`, bare or wrapped in DistributedDataParallel."""


def discriminator_loss(critic: Critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss for the discriminator, in one forward pass over both halves; `fake` is detached."""
    batch = real.shape[0]
    outputs = critic(torch.cat([real, fake.detach()]))
    return torch.stack([F.relu(1 - logits[:batch]).mean() + F.relu(1 + logits[batch:]).mean()
                        for logits, _ in outputs]).mean()


def generator_losses(
    discriminator: MultiScaleStftDiscriminator, real: torch.Tensor, fake: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(hinge adversarial loss, relative feature-matching L1) for the codec, each a mean over the
    scales (and the feature maps).

    Gradients flow through the bare (never DDP-wrapped) `discriminator` to `fake` only: its own
    parameters get none, so the codec's step neither computes nor all-reduces them.
    """
    with torch.no_grad():
        real_outputs = discriminator(real)
    discriminator.requires_grad_(False)
    try:
        fake_outputs = discriminator(fake)
    finally:
        discriminator.requires_grad_(True)
    adversarial = torch.stack([F.relu(1 - logits).mean() for logits, _ in fake_outputs]).mean()
    matching = torch.stack([F.l1_loss(f, r) / r.abs().mean().clamp(min=1e-5)
                            for (_, real_features), (_, fake_features) in zip(real_outputs, fake_outputs, strict=True)
                            for r, f in zip(real_features, fake_features, strict=True)])
    return adversarial, matching.mean()
