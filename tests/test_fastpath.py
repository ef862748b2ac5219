"""The fast streaming path (rtcodec.fastpath) against the reference PyTorch path (rtcodec.codec):
the same packets and the same audio within 1e-5, through bitrate switches, lost frames and
redundancy, on small, unusual and default configs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rtcodec.audio import default_speech, frames
from rtcodec.bitstream import Packet
from rtcodec.codec import Codec, RtcStreamDecoder, RtcStreamEncoder, TorchDecoderCore, untrained
from rtcodec.config import FRAME_SAMPLES, CodecConfig, ConfigError
from rtcodec.fastpath import FastDecoderCore
from rtcodec.model import NeuralCodec
from rtcodec.quantization import ABSENT
from rtcodec.streaming import streaming

AUDIO_TOLERANCE = 1e-5
"""Measured worst: 6e-7 (the default config); float rounding only."""
CARRIED_PHASE_TOLERANCE = 5e-5
"""For a decoder that carries its phase: the two paths' rounding of the predicted frequencies adds
up from frame to frame, a drift of about 1e-6 rad a frame. Measured worst: 1.5e-5 after SECONDS."""
TIE_TOLERANCE = 1e-5
"""A code may differ from the reference only where the reference's own cosine scores of the two
entries are this close: float rounding (summation order) decides such ties either way."""
SECONDS = 4.0
REDUNDANCY = 2
CONFIGS = {
    "small": CodecConfig(channels=4, latent_dim=32, bottleneck_hidden=32, num_codebooks=12),
    "odd": CodecConfig(
        channels=6, ratios=(4, 8, 10), latent_dim=24, bottleneck_blocks=1, bottleneck_hidden=40,
        num_codebooks=5, codebook_dim=4,
    ),
    "default": CodecConfig(),
    "spectral": CodecConfig(
        channels=4, latent_dim=32, bottleneck_hidden=32, num_codebooks=12, decoder="spectral", decoder_dim=24,
        decoder_layers=2, synthesis_overlap=48,
    ),
    "carried_phase": CodecConfig(
        channels=4, latent_dim=32, bottleneck_hidden=32, num_codebooks=12, decoder="spectral", decoder_dim=24,
        decoder_layers=2, synthesis_overlap=48, phase_advance=True,
    ),
}
RATES = {"small": (1.5, 3.0, 6.0), "odd": (0.5, 1.5, 2.5), "default": (1.5, 6.0, 12.0), "spectral": (1.5, 6.0),
         "carried_phase": (1.5, 6.0)}
"""Bitrates to switch between, in kbps; the last is where each stream starts."""


def _speech(seconds: float = SECONDS) -> list[np.ndarray]:
    return list(frames(default_speech(seconds).audio))


def _record_latents(model: NeuralCodec, monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    """The latents that the reference encoder quantizes, in order (the quantizer is shared)."""
    latents: list[torch.Tensor] = []
    encode = model.quantizer.encode

    def recording(latent: torch.Tensor, num_codebooks: int) -> torch.Tensor:
        latents.append(latent.clone())
        return encode(latent, num_codebooks)

    monkeypatch.setattr(model.quantizer, "encode", recording)
    return latents


def _encoder(model: NeuralCodec, kbps: float, fast: bool, **options: int) -> RtcStreamEncoder:
    return Codec(model).stream_encoder(kbps, fast=fast, **options)


def _decoder(model: NeuralCodec, fast: bool) -> RtcStreamDecoder:
    return Codec(model).stream_decoder(fast=fast)


@torch.inference_mode()
def _differs_at_tie(model: NeuralCodec, latent: torch.Tensor, expected: np.ndarray, got: np.ndarray) -> bool:
    """False if the codes are equal; True if they first differ at a stage where the reference's
    cosine scores of both picks tie (later stages then quantize another residual); fails otherwise."""
    assert got.shape == expected.shape
    if np.array_equal(got, expected):
        return False
    stage = int(np.flatnonzero(got != expected)[0])
    books = model.quantizer.codebooks
    residual = latent
    for book, code in zip(books, expected[:stage], strict=False):
        residual = residual - book.decode(torch.tensor([[code]]))
    book = books[stage]
    points = F.normalize(book.lookup_space(residual), dim=-1)
    scores = (points @ F.normalize(book.embedding, dim=-1).T).flatten()
    gap = float(scores[expected[stage]] - scores[got[stage]])
    assert gap <= TIE_TOLERANCE, f"stage {stage}: code {got[stage]} scores {gap:.2e} below the reference's pick"
    return True


def _vary_constant_parameters(model: NeuralCodec) -> None:
    """Give every parameter that starts as one value repeated (the lost-frame embedding, norms'
    weights and biases, layer scales) random values around it, as training does: a fast path
    that ignored one of them would still match an untrained model."""
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.unique().numel() == 1:
                parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_fast_stream_matches_reference(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Encode with random per-packet bitrate switches and redundancy, then decode the reference's
    packets with random losses: some rebuilt from the redundancy of the next packet or of the
    one after it, some concealed."""
    rates = RATES[name]
    model = untrained(CONFIGS[name], seed=1).model
    _vary_constant_parameters(model)
    latents = _record_latents(model, monkeypatch)
    rng = np.random.default_rng(0)
    reference = _encoder(model, rates[-1], fast=False, redundancy=REDUNDANCY)
    fast = _encoder(model, rates[-1], fast=True, redundancy=REDUNDANCY)
    assert (fast.kbps, fast.total_kbps) == (reference.kbps, reference.total_kbps)

    packets: list[Packet] = []
    ties = 0
    for frame in _speech():
        if rng.random() < 0.2:
            kbps = float(rng.choice(rates))
            reference.set_kbps(kbps)
            fast.set_kbps(kbps)
        expected_bytes, got_bytes = reference.push(frame), fast.push(frame)
        expected, got = Packet.parse(expected_bytes), Packet.parse(got_bytes)
        ties += _differs_at_tie(model, latents[-1], expected.codes, got.codes)
        if ties == 0:
            assert got_bytes == expected_bytes
        else:  # since a tie, the redundancy repeats the fast encoder's own earlier codes
            assert got.seq == expected.seq and len(got.redundancy) == len(expected.redundancy)
        packets.append(expected)
    assert ties <= len(packets) // 50, f"{ties} ties in {len(packets)} frames"
    assert len({len(p.codes) for p in packets}) == len(rates)

    reference_decoder, fast_decoder = _decoder(model, fast=False), _decoder(model, fast=True)
    worst, lost = 0.0, 0
    for i, packet in enumerate(packets):
        following = tuple(packets[i + 1 : i + 1 + REDUNDANCY])
        chance = rng.random()
        if chance < 0.1:
            args = (None, following)
        elif chance < 0.15:  # the next packet is lost too: rebuilt from the one after it
            args = (None, (None, *following[1:]))
        else:
            args = (None, ()) if chance < 0.2 else (packet, ())
        lost += args[0] is None
        expected_audio, got_audio = reference_decoder.push(*args), fast_decoder.push(*args)
        assert got_audio.dtype == np.float32 and got_audio.shape == (FRAME_SAMPLES,)
        worst = max(worst, float(np.abs(got_audio - expected_audio).max()))
    assert lost > 0
    assert worst <= (CARRIED_PHASE_TOLERANCE if CONFIGS[name].phase_advance else AUDIO_TOLERANCE), worst


@torch.inference_mode()
def test_decoder_core_skips_absent_codebooks() -> None:
    """ABSENT codes (a stage left out of a frame) add nothing, as in ResidualVectorQuantizer.decode."""
    model = untrained(CONFIGS["small"]).model
    rng = np.random.default_rng(2)
    codes = rng.integers(0, model.config.codebook_size, (8, model.config.num_codebooks))
    codes[rng.random(codes.shape) < 0.3] = ABSENT
    codes[3, :] = ABSENT
    core = FastDecoderCore(model)
    with streaming(copy.deepcopy(model.decoder)) as decoder:
        for k, frame_codes in zip([12, 12, 5, 12, 1, 7, 12, 3], codes, strict=True):
            latent = model.quantizer.decode(torch.from_numpy(frame_codes[:k])[None, :, None])
            expected = decoder(latent)[0, 0].clamp(-1, 1).numpy()
            assert np.abs(core(frame_codes[:k]) - expected).max() <= AUDIO_TOLERANCE


def test_same_errors_as_reference() -> None:
    model = untrained(CONFIGS["small"]).model
    for fast in (False, True):
        with pytest.raises(ValueError, match="redundancy"):
            _encoder(model, 6.0, fast, redundancy=4)
        with pytest.raises(ConfigError):
            _encoder(model, 6.2, fast)
        encoder = _encoder(model, 6.0, fast, redundancy=1, redundant_codebooks=3)
        assert (encoder.name, encoder.kbps, encoder.total_kbps) == ("rtcodec", 6.0, 7.5)
        with pytest.raises(ConfigError):
            encoder.set_kbps(0.25)
        with pytest.raises(ValueError, match="shape"):
            encoder.push(np.zeros(FRAME_SAMPLES - 1, dtype=np.float32))
    too_many = np.zeros(model.config.num_codebooks + 1, dtype=np.int64)
    for core in (TorchDecoderCore(model), FastDecoderCore(model)):
        with pytest.raises(ValueError, match="codebooks given"):
            core(too_many)


def test_packets_the_model_cannot_decode_are_concealed_and_counted() -> None:
    model = untrained(CONFIGS["small"]).model
    too_many = Packet(seq=0, codes=np.zeros(model.config.num_codebooks + 1, dtype=np.int64))
    opus = Packet(seq=1, codes=np.zeros(0, dtype=np.int64), opus=b"\x08")
    redundant_too_many = Packet(seq=2, codes=np.zeros(1, dtype=np.int64), redundancy=(too_many.codes,))
    for fast in (False, True):
        decoder, concealing = _decoder(model, fast), _decoder(model, fast)
        for packet in (too_many, opus):
            assert np.array_equal(decoder.push(packet), concealing.push(None))
        assert np.array_equal(decoder.push(None, (redundant_too_many,)), concealing.push(None))
        assert decoder.corrupt_packets == 2 and concealing.corrupt_packets == 0


@pytest.mark.parametrize("name", ["small", "spectral"])
def test_weights_are_frozen_at_construction(name: str) -> None:
    model = untrained(CONFIGS[name]).model
    original = copy.deepcopy(model)
    fast_encoder, fast_decoder = _encoder(model, 6.0, fast=True), _decoder(model, fast=True)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    reference_encoder, reference_decoder = _encoder(original, 6.0, fast=False), _decoder(original, fast=False)
    for frame in _speech(0.2):
        packet = reference_encoder.push(frame)
        assert fast_encoder.push(frame) == packet
        parsed = Packet.parse(packet)
        assert np.abs(fast_decoder.push(parsed) - reference_decoder.push(parsed)).max() <= AUDIO_TOLERANCE


def test_unknown_layer_is_refused() -> None:
    model = untrained(CONFIGS["small"]).model
    model.decoder.layers[-2] = nn.GELU()
    with pytest.raises(TypeError, match="GELU"):
        FastDecoderCore(model)
