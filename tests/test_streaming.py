"""Streamed output equals offline output, and nothing depends on the future: every layer and the codec."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from torch import nn

from rtcodec.bitstream import Packet
from rtcodec.codec import untrained
from rtcodec.config import FRAME_SAMPLES, CodecConfig
from rtcodec.modules import Decoder, Encoder, SpectralDecoder, StreamingConv1d, StreamingConvTranspose1d
from rtcodec.streaming import streaming

TOLERANCE = 1e-5
SMALL = CodecConfig(channels=4, latent_dim=32, bottleneck_hidden=32, num_codebooks=12)
SPECTRAL = CodecConfig(channels=4, latent_dim=32, bottleneck_hidden=32, num_codebooks=12, decoder="spectral",
                       decoder_dim=24, decoder_layers=2, synthesis_overlap=48)
CARRIED_PHASE = dataclasses.replace(SPECTRAL, phase_advance=True)


def _layers() -> dict[str, tuple[nn.Module, int, int]]:
    """name -> (module, input channels, chunk granularity in input samples)."""
    torch.manual_seed(0)
    return {
        "conv": (StreamingConv1d(3, 5, 7), 3, 1),
        "conv_dilated": (StreamingConv1d(3, 5, 3, dilation=4), 3, 1),
        "conv_strided": (StreamingConv1d(3, 5, 8, stride=4), 3, 4),
        "conv_pointwise": (StreamingConv1d(3, 5, 1), 3, 1),
        "conv_depthwise": (StreamingConv1d(3, 3, 7, groups=3), 3, 1),
        "conv_transposed": (StreamingConvTranspose1d(3, 5, 10, stride=5), 3, 1),
        "encoder": (Encoder(SMALL), 1, FRAME_SAMPLES),
        "decoder": (Decoder(SMALL), SMALL.latent_dim, 1),
        "spectral_decoder": (SpectralDecoder(SPECTRAL), SPECTRAL.latent_dim, 1),
        "spectral_decoder_carried_phase": (SpectralDecoder(CARRIED_PHASE), SPECTRAL.latent_dim, 1),
    }


def _random_chunks(total: int, granularity: int, rng: np.random.Generator) -> list[int]:
    sizes, left = [], total
    while left > 0:
        size = min(left, granularity * int(rng.integers(1, 5)))
        sizes.append(size)
        left -= size
    return sizes


def _ragged_chunks(total: int, unit: int, rng: np.random.Generator) -> list[int]:
    """Sizes of 1 to 2 * unit - 1 samples: most chunks end inside a stride (or a frame)."""
    sizes, left = [], total
    while left > 0:
        sizes.append(min(left, int(rng.integers(1, 2 * unit))))
        left -= sizes[-1]
    return sizes


@pytest.mark.parametrize("name", list(_layers()))
@pytest.mark.parametrize("chunking", ["one_unit", "random", "ragged"])
def test_streamed_equals_offline(name: str, chunking: str) -> None:
    layer, channels, unit = _layers()[name]
    x = torch.randn(2, channels, unit * 12)
    rng = np.random.default_rng(1)
    chunkings = {"one_unit": lambda: [unit] * 12, "random": lambda: _random_chunks(x.shape[-1], unit, rng),
                 "ragged": lambda: _ragged_chunks(x.shape[-1], unit, rng)}
    sizes = chunkings[chunking]()
    with torch.no_grad():
        offline = layer(x)
        with streaming(layer, batch_size=2):
            pieces = torch.split(x, sizes, dim=-1)
            streamed = torch.cat([layer(piece) for piece in pieces], dim=-1)
    assert streamed.shape == offline.shape
    assert (streamed - offline).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("name", list(_layers()))
def test_causal(name: str) -> None:
    layer, channels, unit = _layers()[name]
    x = torch.randn(1, channels, unit * 12)
    changed = x.clone()
    cut = unit * 7
    changed[..., cut:] = torch.randn_like(changed[..., cut:]) * 10
    with torch.no_grad():
        before, after = layer(x), layer(changed)
    ratio = before.shape[-1] / x.shape[-1]
    past = int(cut * ratio)
    assert torch.equal(before[..., :past], after[..., :past])
    assert not torch.equal(before[..., past:], after[..., past:])


def test_streaming_context_resets_state() -> None:
    layer = StreamingConv1d(1, 1, 5)
    x = torch.randn(1, 1, 40)
    with torch.no_grad():
        with streaming(layer):
            first = layer(x)
        with streaming(layer):
            second = layer(x)
    assert torch.equal(first, second)
    assert not layer.is_streaming


def test_nested_streaming_is_refused() -> None:
    layer = StreamingConv1d(1, 1, 5)
    with streaming(layer), pytest.raises(RuntimeError, match="already streaming"), streaming(layer):
        pass


def _speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    voiced = np.sin(2 * np.pi * 140 * t + 3 * np.sin(2 * np.pi * 3 * t))
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    return (0.3 * voiced * envelope + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.mark.parametrize("kbps", [1.5, 6.0])
def test_codec_streamed_packets_equal_offline(kbps: float) -> None:
    codec = untrained(SMALL)
    audio = _speechlike(0.6)
    offline_codes = codec.encode(audio, kbps)
    offline_audio = codec.decode(offline_codes)
    encoder, decoder = codec.stream_encoder(kbps), codec.stream_decoder()
    packets = [Packet.parse(encoder.push(audio[i : i + FRAME_SAMPLES])) for i in range(0, len(audio), FRAME_SAMPLES)]
    streamed_codes = np.stack([p.codes for p in packets], axis=1)
    streamed_audio = np.concatenate([decoder.push(p) for p in packets])
    assert np.array_equal(streamed_codes, offline_codes)
    assert np.abs(streamed_audio - offline_audio).max() <= TOLERANCE
    assert [p.seq for p in packets] == list(range(len(packets)))


def test_bitrate_changes_per_packet() -> None:
    codec = untrained(SMALL)
    audio = _speechlike(0.2)
    encoder, decoder = codec.stream_encoder(6.0), codec.stream_decoder()
    first = Packet.parse(encoder.push(audio[:FRAME_SAMPLES]))
    encoder.set_kbps(1.5)
    second = Packet.parse(encoder.push(audio[FRAME_SAMPLES : 2 * FRAME_SAMPLES]))
    assert (first.num_codebooks, second.num_codebooks) == (12, 3)
    for packet in (first, second):
        assert decoder.push(packet).shape == (FRAME_SAMPLES,)


@pytest.mark.parametrize(
    ("codes", "message"),
    [
        (np.zeros((3, 0), dtype=np.int64), "frames >= 1"),
        (np.full((3, 2), 2.7), "integers"),
        (np.zeros((13, 2), dtype=np.int64), "1..12 codebooks"),
        (np.full((3, 2), 1024), "out of range"),
    ],
)
def test_decoding_bad_codes_is_a_clear_error(codes: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        untrained(SMALL).decode(codes)


@pytest.mark.parametrize(("redundancy", "redundant_codebooks"), [(1.5, 3), (4, 3), (1, 0), (1, -1)])
def test_a_bad_redundancy_is_a_clear_error(redundancy: int, redundant_codebooks: int) -> None:
    with pytest.raises(ValueError, match="redundan"):
        untrained(SMALL).stream_encoder(6.0, redundancy=redundancy, redundant_codebooks=redundant_codebooks)


def test_redundancy_follows_a_bitrate_change() -> None:
    codec = untrained(SMALL)
    audio = _speechlike(0.2)
    encoder = codec.stream_encoder(1.5, redundancy=1, redundant_codebooks=6)
    assert encoder.total_kbps == 1.5 + 1.5
    encoder.set_kbps(6.0)
    assert encoder.total_kbps == 6.0 + 3.0
    packets = [Packet.parse(encoder.push(audio[i : i + FRAME_SAMPLES])) for i in (0, FRAME_SAMPLES)]
    assert [len(p.redundancy[0]) for p in packets[1:]] == [6]


@pytest.mark.parametrize("config", [SMALL, SPECTRAL, CARRIED_PHASE], ids=["seanet", "spectral", "carried_phase"])
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "reference"])
def test_lost_frames_stream_as_the_offline_decode_with_the_lost_marker(config: CodecConfig, fast: bool) -> None:
    codec = untrained(config)
    with torch.no_grad():
        codec.model.lost_embedding.normal_()  # trained, it is not zero
    audio = _speechlike(0.2)
    encoder, decoder = codec.stream_encoder(6.0), codec.stream_decoder(fast=fast)
    packets = [Packet.parse(encoder.push(frame)) for frame in audio.reshape(-1, FRAME_SAMPLES)]
    lost = [index in (2, 3, 6) for index in range(len(packets))]
    pushed = [None if gone else packet for packet, gone in zip(packets, lost, strict=True)]
    streamed = np.concatenate([decoder.push(packet) for packet in pushed])
    codes = torch.from_numpy(np.stack([packet.codes for packet in packets], axis=-1))[None]
    with torch.no_grad():
        offline = codec.model.decode(codes, lost=torch.tensor([lost])).flatten().numpy()
        received = codec.model.decode(codes).flatten().numpy()
    assert np.abs(streamed - np.clip(offline, -1, 1)).max() <= TOLERANCE
    from_codes = received[2 * FRAME_SAMPLES : 4 * FRAME_SAMPLES]  # what the lost packets would have given
    assert np.abs(streamed[2 * FRAME_SAMPLES : 4 * FRAME_SAMPLES] - from_codes).max() > 100 * TOLERANCE


def _redundant_stream(redundancy: int) -> list[Packet]:
    """Five packets of SMALL at 6 kbps, each with the first 3 codes of up to `redundancy` frames
    before it."""
    encoder = untrained(SMALL).stream_encoder(6.0, redundancy=redundancy, redundant_codebooks=3)
    audio = _speechlike(0.1)
    return [Packet.parse(encoder.push(frame)) for frame in audio.reshape(-1, FRAME_SAMPLES)]


def _decode_second_frame(
    first: Packet, second: Packet | None, following: Sequence[Packet | None] = ()
) -> np.ndarray:
    """Frame 1 as a fresh SMALL decoder gives it after `first`: from `second`, or lost (None) with
    `following` (the packets of frames 2, 3, ...)."""
    decoder = untrained(SMALL).stream_decoder()
    decoder.push(first)
    return decoder.push(second, following)


def test_redundancy_rebuilds_a_lost_frame_from_the_next_packet() -> None:
    packets = _redundant_stream(redundancy=2)
    assert [len(p.redundancy) for p in packets] == [0, 1, 2, 2, 2]
    assert np.array_equal(packets[2].redundancy[0], packets[1].codes[:3])
    assert np.array_equal(packets[2].redundancy[1], packets[0].codes[:3])
    coarse = _decode_second_frame(packets[0], Packet(seq=1, codes=packets[1].codes[:3]))
    rebuilt = _decode_second_frame(packets[0], None, packets[2:])
    assert np.array_equal(rebuilt, coarse)
    assert not np.array_equal(rebuilt, _decode_second_frame(packets[0], None))


def test_redundancy_2_rebuilds_a_lost_frame_when_the_next_packet_is_lost_too() -> None:
    packets = _redundant_stream(redundancy=2)
    assert np.array_equal(packets[3].redundancy[1], packets[1].codes[:3])
    coarse = _decode_second_frame(packets[0], Packet(seq=1, codes=packets[1].codes[:3]))
    rebuilt = _decode_second_frame(packets[0], None, (None, packets[3]))
    assert np.array_equal(rebuilt, coarse)
    assert not np.array_equal(rebuilt, _decode_second_frame(packets[0], None))


def test_redundancy_comes_from_the_nearest_packet_that_carries_it() -> None:
    packets = _redundant_stream(redundancy=2)
    other_codes = (packets[1].codes[:3] + 1) % SMALL.codebook_size
    further = Packet(seq=3, codes=packets[3].codes, redundancy=(packets[3].redundancy[0], other_codes))
    nearest = _decode_second_frame(packets[0], None, (packets[2],))
    assert np.array_equal(_decode_second_frame(packets[0], None, (packets[2], further)), nearest)
    assert not np.array_equal(_decode_second_frame(packets[0], None, (None, further)), nearest)


def test_a_later_packet_whose_redundancy_does_not_reach_back_is_ignored() -> None:
    packets = _redundant_stream(redundancy=1)
    concealed = _decode_second_frame(packets[0], None)
    assert len(packets[3].redundancy) == 1
    beyond_reach = (None, packets[3], packets[4])
    assert np.array_equal(_decode_second_frame(packets[0], None, beyond_reach), concealed)
    assert not np.array_equal(_decode_second_frame(packets[0], None, (packets[2], None)), concealed)
