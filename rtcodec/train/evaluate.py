"""Periodic dev evaluation during training: PESQ-WB and STOI at a few bitrates."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from rtcodec import metrics
from rtcodec.audio import read_audio
from rtcodec.config import FRAME_SAMPLES, SAMPLE_RATE, codebooks_for_kbps
from rtcodec.model import NeuralCodec
from rtcodec.train.data import find_audio

EVAL_KBPS = (1.5, 3.0, 6.0, 12.0)
MAX_CLIP_SECONDS = 8.0


def pick_dev_clips(folders: Sequence[Path], count: int) -> list[np.ndarray]:
    """`count` clips spread evenly over the dev files (stable order), each at most MAX_CLIP_SECONDS."""
    paths = find_audio(folders)
    if not paths:
        return []
    chosen = [paths[i] for i in np.linspace(0, len(paths) - 1, min(count, len(paths))).astype(int)]
    limit = int(MAX_CLIP_SECONDS * SAMPLE_RATE) // FRAME_SAMPLES * FRAME_SAMPLES
    clips = [read_audio(p)[:limit] for p in chosen]
    return [c[: len(c) // FRAME_SAMPLES * FRAME_SAMPLES] for c in clips if len(c) >= SAMPLE_RATE]


@torch.no_grad()
def evaluate(model: NeuralCodec, clips: Sequence[np.ndarray], kbps: Sequence[float] = EVAL_KBPS) -> dict[str, float]:
    """Mean PESQ-WB and STOI of offline encode/decode at each bitrate, and the share of the latent's
    variance that its codebooks reproduce: {"pesq@6": ..., "stoi@6": ..., "explained@6": ...}."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    results: dict[str, float] = {}
    for rate in kbps:
        pesq, stoi = [], []
        for clip in clips:
            audio = torch.from_numpy(clip)[None, None, :].to(device)
            decoded = model.decode(model.encode(audio, codebooks_for_kbps(rate)))
            output = decoded.squeeze().clamp(-1, 1).cpu().numpy()
            pesq.append(metrics.pesq_wb(clip, output))
            stoi.append(metrics.stoi(clip, output))
        results[f"pesq@{rate:g}"] = float(np.mean(pesq))
        results[f"stoi@{rate:g}"] = float(np.mean(stoi))
    results |= explained_variance(model, clips, kbps)
    model.train(was_training)
    return results


@torch.no_grad()
def explained_variance(model: NeuralCodec, clips: Sequence[np.ndarray], kbps: Sequence[float]) -> dict[str, float]:
    """1 - |latent - quantized|^2 / |latent - mean latent|^2 over all frames of `clips`, per bitrate.

    It shows whether more codebooks carry more of the latent: where it stops rising, higher
    bitrates have little more to give the decoder.
    """
    device = next(model.parameters()).device
    latent = torch.cat([model.encoder(torch.from_numpy(c)[None, None, :].to(device)) for c in clips], dim=2)
    spread = (latent - latent.mean(dim=2, keepdim=True)).pow(2).sum()
    results: dict[str, float] = {}
    for rate in kbps:
        quantized = model.quantizer.decode(model.quantizer.encode(latent, codebooks_for_kbps(rate)))
        results[f"explained@{rate:g}"] = float(1 - (latent - quantized).pow(2).sum() / spread)
    return results
