"""The neural codec: causal encoder, residual vector quantizer, causal decoder.

Audio is a tensor [batch, 1, samples] at SAMPLE_RATE; the latent and the codes run at one vector
per FRAME_SAMPLES. Weights live in safetensors next to a JSON `CodecConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from rtcodec.config import FRAME_SAMPLES, CodecConfig, ConfigError
from rtcodec.modules import Decoder, Encoder
from rtcodec.quantization import QuantizerOutput, ResidualVectorQuantizer

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class WeightsError(ValueError):
    """Weights that are missing, unreadable or do not match their config."""


@dataclass
class CodecOutput:
    audio: torch.Tensor
    """[batch, 1, samples] reconstruction."""
    quantizer: QuantizerOutput


class NeuralCodec(nn.Module):
    """Encoder + RVQ + decoder. Every layer is causal; see `rtcodec.streaming.streaming()`."""

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.quantizer = ResidualVectorQuantizer(config)
        self.decoder = Decoder(config)
        self.lost_embedding = nn.Parameter(torch.zeros(config.latent_dim))
        """Stands in for the latent of a lost frame; training teaches the decoder to conceal."""

    def encode(self, audio: torch.Tensor, num_codebooks: int) -> torch.Tensor:
        """audio [batch, 1, samples] -> codes [batch, num_codebooks, samples // FRAME_SAMPLES]."""
        return self.quantizer.encode(self.encoder(audio), num_codebooks)

    def decode(self, codes: torch.Tensor, lost: torch.Tensor | None = None) -> torch.Tensor:
        """codes [batch, k, frames] (+ `lost` [batch, frames] bool) -> audio [batch, 1, frames * FRAME_SAMPLES]."""
        return self.decoder(self.mark_lost(self.quantizer.decode(codes), lost))

    def mark_lost(self, latent: torch.Tensor, lost: torch.Tensor | None) -> torch.Tensor:
        """Replace the latent [batch, latent_dim, frames] of frames where `lost` [batch, frames] is set."""
        if lost is None:
            return latent
        return torch.where(lost[:, None, :], self.lost_embedding[None, :, None], latent)

    def forward(self, audio: torch.Tensor, active: torch.Tensor, lost: torch.Tensor) -> CodecOutput:
        """Training pass: `active` [batch] codebooks per item, `lost` [batch, frames] erased frames."""
        if audio.shape[-1] % FRAME_SAMPLES:
            raise ValueError(f"training audio length must be a multiple of {FRAME_SAMPLES}")
        quantized = self.quantizer(self.encoder(audio), active)
        return CodecOutput(self.decoder(self.mark_lost(quantized.quantized, lost)), quantized)

    def save(self, directory: Path, dtype: torch.dtype = torch.float32) -> None:
        """Write `model.safetensors` (floating tensors as `dtype`) and `config.json` into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {name: _stored(t, dtype) for name, t in self.state_dict().items()}
        save_file(tensors, str(directory / WEIGHTS_FILE))
        (directory / CONFIG_FILE).write_text(self.config.to_json() + "\n")

    @classmethod
    def load(cls, directory: Path) -> NeuralCodec:
        """Build the model from `config.json` and load `model.safetensors` (no pickle; fp16 is upcast)."""
        directory = Path(directory)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (directory / name).is_file():
                raise WeightsError(f"no {name} in '{directory}'")
        try:
            model = cls(CodecConfig.load(directory / CONFIG_FILE))
            tensors = load_file(str(directory / WEIGHTS_FILE))
        except (ConfigError, SafetensorError, OSError) as error:
            raise WeightsError(f"cannot load weights from '{directory}': {error}") from None
        model._load_checked(tensors)
        return model.eval()

    def _load_checked(self, tensors: dict[str, torch.Tensor]) -> None:
        expected = self.state_dict()
        missing = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        wrong = sorted(k for k in set(expected) & set(tensors) if expected[k].shape != tensors[k].shape)
        if missing or unexpected or wrong:
            details = [f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                       for label, keys in (("missing", missing), ("unexpected", unexpected),
                                           ("wrong shape", wrong)) if keys]
            raise WeightsError(f"weights do not match their config ({'; '.join(details)})")
        self.load_state_dict(tensors)


def _stored(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    tensor = tensor.detach().cpu()
    return (tensor.to(dtype) if tensor.is_floating_point() else tensor).contiguous()
