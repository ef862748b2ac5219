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
from rtcodec.modules import Encoder, SpectralDecoder, build_decoder
from rtcodec.quantization import QuantizerOutput, ResidualVectorQuantizer

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FREEZABLE = ("encoder", "quantizer")
"""The parts of a `NeuralCodec` that training can leave as they are (to train a new decoder)."""


class WeightsError(ValueError):
    """Weights that are missing, unreadable or do not match their config."""


@dataclass
class CodecOutput:
    audio: torch.Tensor
    """[batch, 1, samples] reconstruction."""
    quantizer: QuantizerOutput
    phases: torch.Tensor | None
    """[batch, frames, bins] the phases of the frames a spectral decoder made the audio of; else None."""


class NeuralCodec(nn.Module):
    """Encoder + RVQ + decoder. Every layer is causal; see `rtcodec.streaming.streaming()`."""

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.quantizer = ResidualVectorQuantizer(config)
        self.decoder = build_decoder(config)
        self.lost_embedding = nn.Parameter(torch.zeros(config.latent_dim))
        """Stands in for the latent of a lost frame; training teaches the decoder to conceal."""

    def encode(self, audio: torch.Tensor, num_codebooks: int) -> torch.Tensor:
        """audio [batch, 1, samples] -> codes [batch, num_codebooks, samples // FRAME_SAMPLES]."""
        return self.quantizer.encode(self.encoder(audio), num_codebooks)

    def decode(self, codes: torch.Tensor, lost: torch.Tensor | None = None) -> torch.Tensor:
        """codes [batch, k, frames] (+ `lost` [batch, frames] bool) -> audio [batch, 1, frames * FRAME_SAMPLES],
        lagging the encoded audio by `config.delay_samples`."""
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
        latent = self.mark_lost(quantized.quantized, lost)
        if isinstance(self.decoder, SpectralDecoder):
            decoded, phases = self.decoder.forward_with_phases(latent)
            return CodecOutput(decoded, quantized, phases)
        return CodecOutput(self.decoder(latent), quantized, None)

    def save(self, directory: Path, dtype: torch.dtype = torch.float32) -> None:
        """Write `model.safetensors` (floating tensors as `dtype`) and `config.json` into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {name: _stored(t, dtype) for name, t in self.state_dict().items()}
        try:
            _check_finite(tensors)
        except WeightsError as error:
            raise WeightsError(f"not saved as {dtype}: {error}") from None
        save_file(tensors, str(directory / WEIGHTS_FILE))
        (directory / CONFIG_FILE).write_text(self.config.to_json() + "\n")

    @classmethod
    def load(cls, directory: Path) -> NeuralCodec:
        """Build the model from `config.json` and load `model.safetensors` (no pickle; fp16 is upcast).

        Raises WeightsError for files that are missing or unreadable, a config that is invalid, or
        tensors that do not match it (names, shapes, kinds of dtype) or are not finite. The tensors
        are checked against a model without memory (on the meta device) before the real one is
        built, so that a config that describes a huge model fails at once.
        """
        directory = Path(directory)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (directory / name).is_file():
                raise WeightsError(f"no {name} in '{directory}'")
        try:
            config = CodecConfig.load(directory / CONFIG_FILE)
            tensors = load_file(str(directory / WEIGHTS_FILE))
        except (ConfigError, SafetensorError, OSError) as error:
            raise WeightsError(f"cannot load weights from '{directory}': {error}") from None
        with torch.device("meta"):
            expected = cls(config).state_dict()
        _check_tensors(expected, tensors)
        model = cls(config)
        model.load_state_dict(tensors)
        _check_finite(model.state_dict())
        return model.eval()


def _check_tensors(expected: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor]) -> None:
    """WeightsError unless `tensors` has exactly the names and shapes of `expected`, floating point
    where it is (any precision) and its dtype elsewhere."""
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    common = sorted(set(expected) & set(tensors))
    wrong_shape = [k for k in common if expected[k].shape != tensors[k].shape]
    wrong_dtype = [f"{k} ({tensors[k].dtype})" for k in common if not _same_kind(expected[k], tensors[k])]
    problems = (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape),
                ("wrong dtype", wrong_dtype))
    if any(names for _, names in problems):
        details = "; ".join(f"{label}: {_first(names)}" for label, names in problems if names)
        raise WeightsError(f"weights do not match their config ({details})")


def _check_finite(tensors: dict[str, torch.Tensor]) -> None:
    """WeightsError if a loaded floating-point tensor holds NaN or infinity (as stored, or once
    cast: a float64 1e300 becomes an infinite float32)."""
    non_finite = [k for k, t in tensors.items() if t.is_floating_point() and not t.isfinite().all()]
    if non_finite:
        raise WeightsError(f"weights hold NaN or infinite values: {_first(sorted(non_finite))}")


def _same_kind(expected: torch.Tensor, stored: torch.Tensor) -> bool:
    if expected.is_floating_point():
        return stored.is_floating_point()
    return stored.dtype == expected.dtype


def _first(names: list[str]) -> str:
    return ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")


def _stored(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    tensor = tensor.detach().cpu()
    return (tensor.to(dtype) if tensor.is_floating_point() else tensor).contiguous()
