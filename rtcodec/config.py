"""Every number that defines the codec lives here: sample rate, frame size, codebooks and bitrates."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

SAMPLE_RATE = 16_000
"""Audio sample rate in Hz, for both codecs."""
FRAME_SAMPLES = 320
"""Samples per 20 ms frame; one packet per frame."""
FRAME_RATE = SAMPLE_RATE // FRAME_SAMPLES
"""Frames (packets) per second: 50."""
CODEBOOK_SIZE = 1024
"""Entries per RVQ codebook."""
BITS_PER_CODE = int(math.log2(CODEBOOK_SIZE))
"""Bits per code on the wire: 10."""
BITRATE_PER_CODEBOOK = FRAME_RATE * BITS_PER_CODE
"""Bit/s that one codebook adds: 500."""
MAX_CODEBOOKS = 24
"""Codebooks in the shipped model: 24 x 500 bit/s = 12 kbps."""
STANDARD_KBPS = (1.5, 3.0, 6.0, 9.0, 12.0)
"""The bitrates rtcodec advertises."""


DECODERS = ("seanet", "spectral")
"""The decoder architectures a `CodecConfig` can name."""
DECODER_FIELDS = ("decoder", "decoder_dim", "decoder_layers", "synthesis_overlap", "phase_advance")
"""The `CodecConfig` fields that shape only the decoder."""


class ConfigError(ValueError):
    """A bitrate or configuration that the codec cannot honour."""


def codebooks_for_kbps(kbps: float, max_codebooks: int = MAX_CODEBOOKS) -> int:
    """Number of codebooks that gives exactly `kbps` (1.5 -> 3, 6 -> 12, 12 -> 24)."""
    count = kbps * 1000 / BITRATE_PER_CODEBOOK
    if not math.isfinite(count) or count != round(count) or not 1 <= count <= max_codebooks:
        step = BITRATE_PER_CODEBOOK / 1000
        raise ConfigError(
            f"unsupported bitrate {kbps} kbps: rtcodec takes multiples of {step} kbps "
            f"from {step} to {max_codebooks * step} kbps"
        )
    return int(count)


def kbps_for_codebooks(num_codebooks: int) -> float:
    """Bitrate in kbps of `num_codebooks` codebooks per frame (codes only, no headers)."""
    return num_codebooks * BITRATE_PER_CODEBOOK / 1000


@dataclass(frozen=True)
class CodecConfig:
    """Architecture of the neural codec; saved as JSON next to the weights.

    The encoder downsamples by `prod(ratios)` == FRAME_SAMPLES, so one latent vector is one frame.
    """

    channels: int = 16
    """Width of the first (16 kHz) encoder stage; it doubles at every downsampling."""
    ratios: tuple[int, ...] = (2, 4, 5, 8)
    """Encoder downsampling factors, first to last; the decoder mirrors them."""
    latent_dim: int = 256
    """Width of the 50 Hz latent that the RVQ quantizes."""
    bottleneck_blocks: int = 3
    """Residual causal conv blocks at 50 Hz, in the encoder and in the decoder each."""
    bottleneck_hidden: int = 256
    """Hidden width of those 50 Hz blocks. With the SEANet decoder their weights dominate what a
    streamed frame reads, so this width sets its per-frame compute: 256 instead of 512 halved the
    fast path's time, and the trained 512-wide model shrunk to 256 (`rtcodec.train.shrink`) kept
    its dev quality. (With the spectral decoder, its ConvNeXt blocks hold most of the weights.)"""
    num_codebooks: int = MAX_CODEBOOKS
    codebook_size: int = CODEBOOK_SIZE
    codebook_dim: int = 8
    """Dimension of the l2-normalised codebook lookup space (low, as in DAC)."""
    decoder: str = "seanet"
    """"seanet": the encoder mirrored, transposed convolutions up to 16 kHz. "spectral": ConvNeXt
    blocks at 50 Hz that predict each frame's spectrum, then an inverse FFT and overlap-add
    (`rtcodec.modules.spectral`)."""
    decoder_dim: int = 384
    """Width of the spectral decoder's blocks."""
    decoder_layers: int = 8
    """ConvNeXt blocks in the spectral decoder."""
    synthesis_overlap: int = 80
    """Samples that consecutive frames of the spectral decoder share; its output lags by as many."""
    phase_advance: bool = False
    """Spectral decoder: carry each bin's phase from frame to frame, advanced by a predicted
    frequency, instead of predicting it afresh every frame (`rtcodec.modules.spectral`)."""
    model_id: str = "untrained"
    extra: dict[str, object] = field(default_factory=dict, compare=False)
    """Provenance (training data, steps, dev metrics); does not change the architecture."""

    def __post_init__(self) -> None:
        for name in ("channels", "latent_dim", "bottleneck_hidden", "codebook_dim"):
            _check_integer(name, getattr(self, name), 1)
        _check_integer("bottleneck_blocks", self.bottleneck_blocks, 0)
        if self.decoder not in DECODERS:
            raise ConfigError(f"decoder must be one of {', '.join(DECODERS)}, got {self.decoder!r}")
        _check_integer("decoder_dim", self.decoder_dim, 1)
        _check_integer("decoder_layers", self.decoder_layers, 0)
        _check_integer("synthesis_overlap", self.synthesis_overlap, 0, FRAME_SAMPLES)
        if not isinstance(self.phase_advance, bool):
            raise ConfigError(f"phase_advance must be true or false, got {self.phase_advance!r}")
        if self.phase_advance and self.decoder != "spectral":
            raise ConfigError("phase_advance needs the spectral decoder")
        _check_integer("num_codebooks", self.num_codebooks, 1, MAX_CODEBOOKS)
        _check_integer("codebook_size", self.codebook_size, 1)
        if self.codebook_size != CODEBOOK_SIZE:
            raise ConfigError(f"codebook_size must be {CODEBOOK_SIZE} (10-bit codes)")
        if not isinstance(self.ratios, tuple) or not self.ratios:
            raise ConfigError(f"ratios must be a non-empty list of integers, got {self.ratios!r}")
        for ratio in self.ratios:
            _check_integer("every ratio", ratio, 1)
        if math.prod(self.ratios) != FRAME_SAMPLES:
            raise ConfigError(f"ratios {self.ratios} must multiply to {FRAME_SAMPLES}")
        if not isinstance(self.model_id, str):
            raise ConfigError(f"model_id must be a string, got {self.model_id!r}")
        if not isinstance(self.extra, dict):
            raise ConfigError(f"extra must be a JSON object, got {self.extra!r}")

    @property
    def delay_samples(self) -> int:
        """Samples by which decoded audio lags the input: the spectral decoder's overlap, else 0."""
        return self.synthesis_overlap if self.decoder == "spectral" else 0

    @property
    def max_kbps(self) -> float:
        return kbps_for_codebooks(self.num_codebooks)

    def codebooks_for_kbps(self, kbps: float) -> int:
        return codebooks_for_kbps(kbps, self.num_codebooks)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CodecConfig:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"model config is not valid JSON: {error}") from None
        if not isinstance(raw, dict):
            raise ConfigError("model config must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"model config has unknown keys: {', '.join(unknown)}")
        if isinstance(raw.get("ratios"), list):
            raw["ratios"] = tuple(raw["ratios"])
        try:
            return cls(**raw)
        except TypeError as error:
            raise ConfigError(f"model config is malformed: {error}") from None

    @classmethod
    def load(cls, path: Path) -> CodecConfig:
        return cls.from_json(Path(path).read_text())


def _check_integer(name: str, value: object, minimum: int, maximum: int | None = None) -> None:
    """ConfigError unless `value` is an int (not a bool) in [minimum, maximum]."""
    in_range = isinstance(value, int) and value >= minimum and (maximum is None or value <= maximum)
    if isinstance(value, bool) or not in_range:
        bounds = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise ConfigError(f"{name} must be an integer {bounds}, got {value!r}")
