"""Residual vector quantizer with low-dimensional, l2-normalised codebook lookups (as in DAC).

Each stage projects the residual [batch, latent_dim, frames] down to `codebook_dim`, picks the
nearest codebook entry by cosine similarity, and projects the entry back up. The first k stages
alone are a valid lower bitrate. Training keeps every code in use: codebooks start from k-means of
real latents, and codes that fall out of use are restarted on recent latents.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from rtcodec.config import CodecConfig

ABSENT = -1
"""Code value meaning "this codebook is not in this frame" (a lower bitrate for that frame)."""
USAGE_DECAY = 0.95
DEAD_USAGE = 0.02
"""A code whose decayed use per batch (over all DDP ranks) falls below this is restarted."""


@dataclass
class QuantizerOutput:
    quantized: torch.Tensor
    """[batch, latent_dim, frames], with straight-through gradients to the encoder."""
    codes: torch.Tensor
    """[batch, num_codebooks, frames] int64; ABSENT where a codebook was dropped."""
    commitment_loss: torch.Tensor
    codebook_loss: torch.Tensor
    residual_loss: torch.Tensor
    """How far each stage's output is from the residual it should explain, summed over stages.
    It trains the codebooks and their output projections only: through the straight-through path
    it would push the encoder along a gradient that no change of codes follows."""
    perplexity: torch.Tensor
    """[num_codebooks] exp(entropy) of each codebook's code histogram in this batch."""


def _kmeans(points: torch.Tensor, clusters: int, iterations: int = 10) -> torch.Tensor:
    """Spherical k-means of `points` [n, dim] (l2-normalised) -> centres [clusters, dim]."""
    generator = torch.Generator().manual_seed(0)
    picks = torch.randint(len(points), (clusters,), generator=generator)
    jitter = 0.01 * torch.randn(clusters, points.shape[1], generator=generator)
    centres = F.normalize(points[picks] + jitter.to(points.device), dim=1)
    for _ in range(iterations):
        assignment = (points @ centres.T).argmax(dim=1)
        sums = torch.zeros_like(centres).index_add_(0, assignment, points)
        counts = torch.bincount(assignment, minlength=clusters)[:, None]
        centres = torch.where(counts > 0, F.normalize(sums, dim=1), centres)
    return centres


def _sum_over_ranks(tensor: torch.Tensor) -> None:
    """Sum a tensor over DDP ranks in place (a no-op in one process)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor)


def _broadcast(tensor: torch.Tensor) -> None:
    """Make every DDP rank hold rank 0's copy of a tensor that was changed outside autograd."""
    if dist.is_available() and dist.is_initialized():
        dist.broadcast(tensor, src=0)


class Codebook(nn.Module):
    """One RVQ stage: residual [batch, latent_dim, frames] <-> codes [batch, frames]."""

    def __init__(self, latent_dim: int, size: int, dim: int) -> None:
        super().__init__()
        self.project_in = nn.Conv1d(latent_dim, dim, 1)
        self.project_out = nn.Conv1d(dim, latent_dim, 1)
        self.embedding = nn.Parameter(torch.randn(size, dim))
        self.register_buffer("usage", torch.ones(size))
        self.register_buffer("initialised", torch.tensor(False))

    def lookup_space(self, residual: torch.Tensor) -> torch.Tensor:
        """[batch, latent_dim, frames] -> [batch, frames, dim], before normalisation."""
        return self.project_in(residual).transpose(1, 2)

    @torch.no_grad()
    def nearest(self, points: torch.Tensor) -> torch.Tensor:
        """[..., dim] -> codes [...] of the closest entry by cosine similarity."""
        return (F.normalize(points, dim=-1) @ F.normalize(self.embedding, dim=-1).T).argmax(dim=-1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [batch, frames] (ABSENT allowed) -> [batch, latent_dim, frames] (zero where ABSENT)."""
        present = (codes != ABSENT)[:, None, :]
        entries = F.normalize(self.embedding[codes.clamp(min=0)], dim=-1).transpose(1, 2)
        return self.project_out(entries) * present

    @torch.no_grad()
    def prepare(self, points: torch.Tensor, codes: torch.Tensor) -> None:
        """Training bookkeeping: k-means init on the first batch, then restart dead codes.

        `points` [n, dim] are this batch's projected latents, `codes` [n] their assignments.
        """
        points = F.normalize(points.detach(), dim=-1)
        if not bool(self.initialised):
            self.embedding.data.copy_(_kmeans(points, len(self.embedding)))
            self.initialised.fill_(True)
            _broadcast(self.embedding.data)
            return
        counts = torch.bincount(codes, minlength=len(self.usage)).float()
        _sum_over_ranks(counts)
        self.usage.mul_(USAGE_DECAY).add_(counts, alpha=1 - USAGE_DECAY)
        dead = (self.usage < DEAD_USAGE).nonzero().squeeze(1)
        if len(dead) > 0:
            picks = torch.randint(len(points), (len(dead),), device=points.device)
            self.embedding.data[dead] = points[picks] + 1e-3 * torch.randn_like(points[picks])
            self.usage[dead] = 1.0
            _broadcast(self.embedding.data)


class ResidualVectorQuantizer(nn.Module):
    """Latent [batch, latent_dim, frames] <-> codes [batch, num_codebooks, frames]."""

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        self.codebooks = nn.ModuleList(
            Codebook(config.latent_dim, config.codebook_size, config.codebook_dim)
            for _ in range(config.num_codebooks)
        )

    def encode(self, latent: torch.Tensor, num_codebooks: int) -> torch.Tensor:
        """latent [batch, latent_dim, frames] -> codes [batch, num_codebooks, frames] int64."""
        if not 1 <= num_codebooks <= len(self.codebooks):
            raise ValueError(f"cannot encode with {num_codebooks} codebooks, the model has {len(self.codebooks)}")
        residual = latent
        codes = []
        for codebook in self.codebooks[:num_codebooks]:
            stage_codes = codebook.nearest(codebook.lookup_space(residual))
            residual = residual - codebook.decode(stage_codes)
            codes.append(stage_codes)
        return torch.stack(codes, dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [batch, k, frames] (k <= num_codebooks, ABSENT allowed) -> [batch, latent_dim, frames]."""
        if codes.shape[1] > len(self.codebooks):
            raise ValueError(f"{codes.shape[1]} codebooks given, the model has {len(self.codebooks)}")
        stages = [codebook.decode(c) for codebook, c in zip(self.codebooks, codes.unbind(dim=1), strict=False)]
        return torch.stack(stages).sum(dim=0)

    def forward(self, latent: torch.Tensor, active: torch.Tensor) -> QuantizerOutput:
        """Quantize for training with `active` [batch] codebooks per item (quantizer dropout).

        Every stage runs for every item, so that each stage learns to explain the residual that
        the stages before it leave (the auxiliary losses); the decoder only gets the active ones.
        A frozen codebook (entries that do not require gradients) is neither initialised nor restarted.
        """
        residual = latent
        quantized = torch.zeros_like(latent)
        codes, commitment, codebook_loss, residual_loss, perplexity = [], [], [], [], []
        for i, codebook in enumerate(self.codebooks):
            points = codebook.lookup_space(residual)
            stage_codes = codebook.nearest(points)
            if self.training and codebook.embedding.requires_grad:
                codebook.prepare(points.flatten(0, 1), stage_codes.flatten())
                stage_codes = codebook.nearest(points)
            target = F.normalize(points, dim=-1)
            entries = F.normalize(codebook.embedding[stage_codes], dim=-1)
            commitment.append(F.mse_loss(target, entries.detach()))
            codebook_loss.append(F.mse_loss(entries, target.detach()))
            stage = codebook.project_out((target + (entries - target).detach()).transpose(1, 2))
            residual_loss.append(F.mse_loss(codebook.project_out(entries.transpose(1, 2)), residual.detach()))
            quantized = quantized + stage * (active > i).float()[:, None, None]
            residual = residual - stage
            codes.append(torch.where(active[:, None] > i, stage_codes, ABSENT))
            perplexity.append(_perplexity(stage_codes[active > i], len(codebook.embedding)))
        encoder_commitment = F.mse_loss(latent, (latent - residual).detach())
        return QuantizerOutput(
            quantized=quantized,
            codes=torch.stack(codes, dim=1),
            commitment_loss=torch.stack(commitment).sum() + encoder_commitment,
            codebook_loss=torch.stack(codebook_loss).sum(),
            residual_loss=torch.stack(residual_loss).sum(),
            perplexity=torch.stack(perplexity),
        )


def _perplexity(codes: torch.Tensor, size: int) -> torch.Tensor:
    if codes.numel() == 0:
        return torch.tensor(0.0, device=codes.device)
    probabilities = torch.bincount(codes.flatten(), minlength=size).float() / codes.numel()
    entropy = -(probabilities * torch.log(probabilities.clamp(min=1e-10))).sum()
    return entropy.exp()
