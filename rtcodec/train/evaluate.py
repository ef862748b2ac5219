"""Periodic dev evaluation during training: PESQ-WB and STOI at a few bitrates."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from rtcodec import metrics
from rtcodec.audio import read_audio
from rtcodec.config import FRAME_SAMPLES, SAMPLE_RATE
from rtcodec.model import NeuralCodec

EVAL_KBPS = (1.5, 3.0, 6.0, 12.0)
MAX_CLIP_SECONDS = 8.0


def pick_dev_clips(paths: Sequence[Path], count: int) -> list[np.ndarray]:
    """`count` clips spread evenly over the dev files `paths` (in their order), each at most
    MAX_CLIP_SECONDS; files shorter than a second are passed over."""
    if not paths:
        return []
    chosen = [paths[i] for i in np.linspace(0, len(paths) - 1, min(count, len(paths))).astype(int)]
    limit = int(MAX_CLIP_SECONDS * SAMPLE_RATE) // FRAME_SAMPLES * FRAME_SAMPLES
    clips = [read_audio(p)[:limit] for p in chosen]
    return [c[: len(c) // FRAME_SAMPLES * FRAME_SAMPLES] for c in clips if len(c) >= SAMPLE_RATE]


@torch.no_grad()
def evaluate(model: NeuralCodec, clips: Sequence[np.ndarray], kbps: Sequence[float] = EVAL_KBPS) -> dict[str, float]:
    """Mean PESQ-WB and STOI of offline encode/decode at each bitrate of `kbps` that the model has
    (at its own highest if it has none of them), and the share of the latent's variance that its
    codebooks reproduce: {"pesq@6": ..., "stoi@6": ..., "explained@6": ...}.

    Each clip is encoded once, at the highest bitrate: a lower one is a prefix of its codebooks.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    latents = [model.encoder(torch.from_numpy(clip)[None, None, :].to(device)) for clip in clips]
    rates = [rate for rate in kbps if rate <= model.config.max_kbps] or [model.config.max_kbps]
    counts = {rate: model.config.codebooks_for_kbps(rate) for rate in rates}
    codes = [model.quantizer.encode(latent, max(counts.values())) for latent in latents]
    results: dict[str, float] = {}
    for rate, count in counts.items():
        decoded = [model.decode(c[:, :count]).squeeze().clamp(-1, 1).cpu().numpy() for c in codes]
        pairs = list(zip(clips, decoded, strict=True))
        results[f"pesq@{rate:g}"] = float(np.mean([metrics.pesq_wb(clip, out) for clip, out in pairs]))
        results[f"stoi@{rate:g}"] = float(np.mean([metrics.stoi(clip, out) for clip, out in pairs]))
        results[f"explained@{rate:g}"] = explained_variance(model, latents, [c[:, :count] for c in codes])
    model.train(was_training)
    return results


def explained_variance(model: NeuralCodec, latents: Sequence[torch.Tensor], codes: Sequence[torch.Tensor]) -> float:
    """1 - |latent - quantized|^2 / |latent - mean latent|^2 over all frames of `latents`
    ([1, latent_dim, frames] each), quantized from `codes` ([1, k, frames] each).

    It shows whether more codebooks carry more of the latent: where it stops rising, higher
    bitrates have little more to give the decoder.
    """
    latent = torch.cat(list(latents), dim=2)
    quantized = torch.cat([model.quantizer.decode(c) for c in codes], dim=2)
    spread = (latent - latent.mean(dim=2, keepdim=True)).pow(2).sum()
    return float(1 - (latent - quantized).pow(2).sum() / spread)
