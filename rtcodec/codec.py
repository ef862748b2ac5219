"""`Codec`: the neural codec as a user sees it, on numpy audio and packets.

Offline, `encode` turns float32 audio [samples] into codes [num_codebooks, frames] and `decode`
turns them back. Streaming, `stream_encoder()` takes one 20 ms frame and returns one packet (bytes),
and `stream_decoder()` takes a packet, or None for a lost one, and returns 20 ms of audio.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from rtcodec.audio import AudioError, checked_frame, checked_mono
from rtcodec.bitstream import MAX_REDUNDANT_FRAMES, SEQ_MODULO, Packet
from rtcodec.config import FRAME_SAMPLES, CodecConfig, kbps_for_codebooks
from rtcodec.fastpath import FastDecoderCore, FastEncoderCore
from rtcodec.model import WEIGHTS_FILE, NeuralCodec, WeightsError
from rtcodec.quantization import ABSENT
from rtcodec.streaming import streaming

NAME = "rtcodec"


def shipped_weights() -> Path:
    """Folder of the weights that ship inside the package."""
    return Path(str(resources.files("rtcodec") / "weights"))


def _as_audio(audio: np.ndarray) -> torch.Tensor:
    """Validated float32 [samples], zero-padded to whole frames -> tensor [1, 1, samples']."""
    array = checked_mono(audio, "cannot encode")
    if len(array) == 0:
        raise AudioError("cannot encode: the audio is empty")
    padded = np.pad(np.clip(array, -1.0, 1.0), (0, -len(array) % FRAME_SAMPLES))
    return torch.from_numpy(padded)[None, None, :]


class EncoderCore(Protocol):
    """Frame-level encoding with its own streaming state: audio [FRAME_SAMPLES] -> codes [k]."""

    def __call__(self, frame: np.ndarray, num_codebooks: int) -> np.ndarray: ...


class DecoderCore(Protocol):
    """Frame-level decoding with its own streaming state: codes [k], or None if lost -> audio [FRAME_SAMPLES]."""

    def __call__(self, codes: np.ndarray | None) -> np.ndarray: ...


class Codec:
    """A trained (or, for tests, untrained) neural codec."""

    def __init__(self, model: NeuralCodec) -> None:
        self.model = model.eval()

    @property
    def config(self) -> CodecConfig:
        return self.model.config

    @property
    def model_id(self) -> str:
        return self.config.model_id

    @torch.inference_mode()
    def encode(self, audio: np.ndarray, kbps: float) -> np.ndarray:
        """float32 audio [samples] -> int64 codes [num_codebooks, ceil(samples / FRAME_SAMPLES)]."""
        num_codebooks = self.config.codebooks_for_kbps(kbps)
        return self.model.encode(_as_audio(audio), num_codebooks)[0].numpy()

    @torch.inference_mode()
    def decode(self, codes: np.ndarray) -> np.ndarray:
        """int codes [num_codebooks, frames] (ABSENT = -1 allowed) -> float32 audio [frames * FRAME_SAMPLES],
        lagging the encoded audio by `config.delay_samples` (0 for the SEANet decoder)."""
        array = np.asarray(codes)
        if array.ndim != 2 or not 1 <= array.shape[0] <= self.config.num_codebooks or array.shape[1] == 0:
            most = self.config.num_codebooks
            raise ValueError(f"codes must be [1..{most} codebooks, frames >= 1], got {array.shape}")
        if not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"codes must be integers, got {array.dtype}")
        if ((array < ABSENT) | (array >= self.config.codebook_size)).any():
            raise ValueError("codes out of range")
        audio = self.model.decode(torch.from_numpy(array.astype(np.int64))[None])
        return audio[0, 0].clamp(-1, 1).numpy()

    def stream_encoder(self, kbps: float, redundancy: int = 0, redundant_codebooks: int = 3,
                       fast: bool = True) -> RtcStreamEncoder:
        """A streaming encoder at `kbps`: the numpy fast path, or with `fast=False` the PyTorch modules."""
        core = FastEncoderCore(self.model) if fast else TorchEncoderCore(self.model)
        return RtcStreamEncoder(core, self.config, kbps, redundancy, redundant_codebooks)

    def stream_decoder(self, fast: bool = True) -> RtcStreamDecoder:
        """A streaming decoder: the numpy fast path, or with `fast=False` the PyTorch modules."""
        core = FastDecoderCore(self.model) if fast else TorchDecoderCore(self.model)
        return RtcStreamDecoder(core, self.config.num_codebooks)


class TorchEncoderCore:
    """The reference encoder core: a streaming copy of the model's encoder (it holds the stream's
    state), and the model's own quantizer, which has none."""

    def __init__(self, model: NeuralCodec) -> None:
        self._encoder = copy.deepcopy(model.encoder)
        self._quantizer = model.quantizer
        self._stream = streaming(self._encoder)
        self._stream.__enter__()

    @torch.inference_mode()
    def __call__(self, frame: np.ndarray, num_codebooks: int) -> np.ndarray:
        latent = self._encoder(torch.from_numpy(frame)[None, None, :])
        return self._quantizer.encode(latent, num_codebooks)[0, :, 0].numpy()


class TorchDecoderCore:
    """The reference decoder core: a streaming copy of the model's decoder (it holds the stream's
    state); the quantizer and the lost-frame latent are the model's own, which have none."""

    def __init__(self, model: NeuralCodec) -> None:
        self._model = model
        self._decoder = copy.deepcopy(model.decoder)
        self._stream = streaming(self._decoder)
        self._stream.__enter__()

    @torch.inference_mode()
    def __call__(self, codes: np.ndarray | None) -> np.ndarray:
        return self._decoder(self._latent(codes))[0, 0].clamp(-1, 1).numpy()

    def _latent(self, codes: np.ndarray | None) -> torch.Tensor:
        """codes [k] or None -> latent [1, latent_dim, 1]."""
        if codes is None or len(codes) == 0:
            blank = torch.zeros(1, self._model.config.latent_dim, 1)
            return self._model.mark_lost(blank, torch.ones(1, 1, dtype=torch.bool))
        return self._model.quantizer.decode(torch.from_numpy(codes.astype(np.int64))[None, :, None])


class RtcStreamEncoder:
    """One 20 ms frame in, one packet out.

    With `redundancy` R > 0, each packet also carries the first `redundant_codebooks` codes of the
    R frames before it, so that a receiver can rebuild a lost frame at a coarse bitrate.
    """

    name = NAME

    def __init__(self, core: EncoderCore, config: CodecConfig, kbps: float, redundancy: int = 0,
                 redundant_codebooks: int = 3) -> None:
        if not isinstance(redundancy, int) or not 0 <= redundancy <= MAX_REDUNDANT_FRAMES:
            raise ValueError(f"redundancy must be 0..{MAX_REDUNDANT_FRAMES} frames, got {redundancy}")
        if not isinstance(redundant_codebooks, int) or redundant_codebooks < 1:
            raise ValueError(f"redundant_codebooks must be a whole number >= 1, got {redundant_codebooks}")
        self._core = core
        self._config = config
        self._num_codebooks = config.codebooks_for_kbps(kbps)
        self._most_redundant_codebooks = redundant_codebooks
        self._history: deque[np.ndarray] = deque(maxlen=redundancy)
        self._seq = 0

    @property
    def kbps(self) -> float:
        """Bitrate of this frame's codes alone."""
        return kbps_for_codebooks(self._num_codebooks)

    @property
    def delay_samples(self) -> int:
        """Samples by which decoded audio lags the input: the spectral decoder's overlap, else 0."""
        return self._config.delay_samples

    @property
    def _redundant_codebooks(self) -> int:
        """Codebooks of each earlier frame that a packet repeats: never more than the frame has."""
        return min(self._most_redundant_codebooks, self._num_codebooks)

    @property
    def total_kbps(self) -> float:
        """Bitrate of the codes including redundancy (headers excluded)."""
        return kbps_for_codebooks(self._num_codebooks + self._history.maxlen * self._redundant_codebooks)

    def set_kbps(self, kbps: float) -> None:
        """Change the bitrate from the next packet on."""
        self._num_codebooks = self._config.codebooks_for_kbps(kbps)

    def push(self, frame: np.ndarray) -> bytes:
        """float32 [FRAME_SAMPLES] -> one serialised packet."""
        codes = self._core(np.clip(checked_frame(frame), -1.0, 1.0), self._num_codebooks)
        packet = Packet(seq=self._seq, codes=codes, redundancy=tuple(self._history))
        if self._history.maxlen:
            self._history.appendleft(codes[: self._redundant_codebooks])
        self._seq = (self._seq + 1) % SEQ_MODULO
        return packet.to_bytes()


class RtcStreamDecoder:
    """One packet (or None for a lost frame) in, 20 ms of audio out.

    Packets come from the network, so none of them raises: one that this model cannot decode (an
    Opus packet, or more codebooks than the model has) is concealed like a lost frame and counted
    in `corrupt_packets`.
    """

    def __init__(self, core: DecoderCore, num_codebooks: int) -> None:
        """`num_codebooks`: the most codebooks that `core` decodes."""
        self._core = core
        self._num_codebooks = num_codebooks
        self._corrupt_packets = 0

    @property
    def corrupt_packets(self) -> int:
        """Packets that this model cannot decode, concealed instead."""
        return self._corrupt_packets

    def push(self, packet: Packet | None, following: Sequence[Packet | None] = ()) -> np.ndarray:
        """Decode one frame -> float32 [FRAME_SAMPLES] in [-1, 1].

        A lost frame is rebuilt from the coarse codes that the nearest packet of `following`
        (`following[d - 1]`: d frames later) carries for it in its redundancy, when one does;
        otherwise the decoder conceals it from the "lost" marker.
        """
        if packet is not None:
            if self._decodable(packet):
                return self._core(packet.codes)
            self._corrupt_packets += 1
            return self._core(None)
        return self._core(self._redundant_codes(following))

    def _redundant_codes(self, following: Sequence[Packet | None]) -> np.ndarray | None:
        """The lost frame's coarse codes from the nearest later packet that carries codes of it
        that this model decodes; None when no packet in `following` does."""
        for distance, later in enumerate(following, 1):
            if later is not None and len(later.redundancy) >= distance:
                codes = later.redundancy[distance - 1]
                if self._fits(codes):
                    return codes
        return None

    def _decodable(self, packet: Packet) -> bool:
        return not packet.is_opus and self._fits(packet.codes)

    def _fits(self, codes: np.ndarray) -> bool:
        return len(codes) <= self._num_codebooks


def load(path: str | Path | None = None) -> Codec:
    """Load a codec from a folder with `model.safetensors` + `config.json` (the shipped one by default)."""
    directory = Path(path) if path is not None else shipped_weights()
    try:
        return Codec(NeuralCodec.load(directory))
    except WeightsError as error:
        if path is None and not (directory / WEIGHTS_FILE).is_file():
            raise WeightsError(
                f"the shipped weights are missing from {directory} (an incomplete installation?); "
                "reinstall rtcodec, train a model with `rtcodec train`, or use rtcodec.untrained()"
            ) from error
        raise


def untrained(config: CodecConfig | None = None, seed: int = 0) -> Codec:
    """A codec with random weights: for tests and benchmarks of speed, never for listening."""
    torch.manual_seed(seed)
    return Codec(NeuralCodec(config or CodecConfig()))
