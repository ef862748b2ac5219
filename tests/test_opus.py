"""Opus baseline: quality, delay, concealment, in-band FEC, bitrate and DTX, on synthetic speech."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtcodec.bitstream import MAX_REDUNDANT_FRAMES, SEQ_MODULO, Packet
from rtcodec.config import FRAME_RATE, FRAME_SAMPLES, SAMPLE_RATE
from rtcodec.opus import OpusStreamDecoder, OpusStreamEncoder

SECONDS = 2.0


def speech_like(seconds: float = SECONDS, breath: float = 0.0, seed: int = 0) -> np.ndarray:
    """float32 [n]: a 140 Hz harmonic voice, 5 Hz vibrato, 3 syllables/s, plus `breath` noise."""
    time = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pitch = 140 + 20 * np.sin(2 * np.pi * 5 * time)
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    voice = sum(np.sin(harmonic * phase) / harmonic for harmonic in range(1, 30))
    syllables = np.sin(np.pi * 3 * time) ** 2
    noise = np.random.default_rng(seed).standard_normal(time.size)
    signal = syllables * (voice / np.abs(voice).max() + breath * noise)
    return (0.5 * signal / np.abs(signal).max()).astype(np.float32)


def frames_of(signal: np.ndarray) -> np.ndarray:
    """float32 [n] -> [n // FRAME_SAMPLES, FRAME_SAMPLES]."""
    return signal[: signal.size // FRAME_SAMPLES * FRAME_SAMPLES].reshape(-1, FRAME_SAMPLES)


def encode(signal: np.ndarray, encoder: OpusStreamEncoder) -> list[Packet]:
    return [Packet.parse(encoder.push(frame)) for frame in frames_of(signal)]


def decode(packets: list[Packet | None], *, fec: bool = False) -> np.ndarray:
    """Decode a stream in which None is a lost packet: rebuilt from the packets after it if `fec`."""
    decoder = OpusStreamDecoder()
    depth = MAX_REDUNDANT_FRAMES if fec else 0
    return np.concatenate([decoder.push(p, tuple(packets[i + 1 : i + 1 + depth])) for i, p in enumerate(packets)])


def delay_by_cross_correlation(original: np.ndarray, decoded: np.ndarray) -> int:
    """Lag in [0, FRAME_SAMPLES) at which `decoded` best matches `original`."""
    lags = np.correlate(decoded, original, mode="full")[original.size - 1 :]
    return int(np.argmax(lags[:FRAME_SAMPLES]))


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference**2) / np.sum((reference - estimate) ** 2)))


def rms(signal: np.ndarray) -> float:
    return float(np.sqrt(np.mean(signal.astype(np.float64) ** 2)))


@pytest.fixture(scope="module")
def decoder_delay() -> int:
    """Measured on white noise, whose cross-correlation has a single sharp peak."""
    noise = (0.1 * np.random.default_rng(1).standard_normal(SAMPLE_RATE)).astype(np.float32)
    return delay_by_cross_correlation(noise, decode(encode(noise, OpusStreamEncoder(64))))


def test_decoder_delay_is_the_encoder_lookahead(decoder_delay: int) -> None:
    assert decoder_delay == OpusStreamEncoder(24).delay_samples
    assert 0 < decoder_delay < FRAME_SAMPLES


def test_round_trip_of_speech_like_signal(decoder_delay: int) -> None:
    original = speech_like()
    decoded = decode(encode(original, OpusStreamEncoder(24)))
    assert decoded.dtype == np.float32 and decoded.shape == original.shape
    assert np.abs(decoded).max() <= 1.0
    aligned, reference = decoded[decoder_delay:], original[: original.size - decoder_delay]
    assert np.corrcoef(aligned, reference)[0, 1] > 0.75
    assert snr_db(reference, aligned) > 3.0
    assert rms(aligned) == pytest.approx(rms(reference), rel=0.2)


def test_concealment_after_speech_is_bounded_and_not_silent() -> None:
    original = speech_like()
    packets: list[Packet | None] = list(encode(original, OpusStreamEncoder(24)))
    loudest = int(np.argmax([rms(frame) for frame in frames_of(original)]))
    decoder = OpusStreamDecoder()
    before = [decoder.push(packet) for packet in packets[:loudest]]
    concealed = [decoder.push(None) for _ in range(3)]
    for frame in concealed:
        assert frame.dtype == np.float32 and frame.shape == (FRAME_SAMPLES,)
        assert np.isfinite(frame).all() and np.abs(frame).max() <= 1.0
    assert rms(concealed[0]) > 0.3 * rms(before[-1])
    assert decoder.corrupt_packets == 0


def test_concealment_before_any_packet_is_silence() -> None:
    frame = OpusStreamDecoder().push(None)
    assert frame.shape == (FRAME_SAMPLES,) and not frame.any()


def test_in_band_fec_beats_concealment(decoder_delay: int) -> None:
    original = speech_like()
    packets = encode(original, OpusStreamEncoder(24, fec=True, packet_loss_perc=20))
    lost = range(10, len(packets) - 1, 10)
    received = [None if index in lost else packet for index, packet in enumerate(packets)]
    with_fec, concealed = decode(received, fec=True), decode(received, fec=False)
    windows = [slice(i * FRAME_SAMPLES, (i + 1) * FRAME_SAMPLES) for i in lost]
    shifted = [slice(w.start + decoder_delay, w.stop + decoder_delay) for w in windows]
    reference = np.concatenate([original[w] for w in windows])
    fec_snr = snr_db(reference, np.concatenate([with_fec[w] for w in shifted]))
    plc_snr = snr_db(reference, np.concatenate([concealed[w] for w in shifted]))
    assert fec_snr > plc_snr + 2.0


def test_in_band_fec_comes_from_the_next_packet_only() -> None:
    """Opus FEC reaches back one frame: packets further after a lost frame change nothing."""
    packets = encode(speech_like(0.4), OpusStreamEncoder(24, fec=True, packet_loss_perc=20))
    lost = 12

    def decode_lost(following: tuple[Packet | None, ...]) -> np.ndarray:
        decoder = OpusStreamDecoder()
        for packet in packets[:lost]:
            decoder.push(packet)
        return decoder.push(None, following)

    concealed, rebuilt = decode_lost(()), decode_lost((packets[lost + 1],))
    assert not np.array_equal(rebuilt, concealed)
    assert np.array_equal(decode_lost((packets[lost + 1], packets[lost + 2])), rebuilt)
    assert np.array_equal(decode_lost((None, packets[lost + 2], packets[lost + 3])), concealed)


@pytest.mark.parametrize("kbps", [8.0, 12.0, 24.0])
def test_bitrate_from_packet_sizes_is_near_the_request(kbps: float) -> None:
    packets = encode(speech_like(breath=0.3), OpusStreamEncoder(kbps))
    measured = np.mean([len(packet.opus) for packet in packets]) * 8 * FRAME_RATE / 1000
    assert measured == pytest.approx(kbps, rel=0.2)


def test_dtx_sends_tiny_packets_in_silence() -> None:
    signal = np.concatenate([speech_like(1.0), np.zeros(2 * SAMPLE_RATE, dtype=np.float32)])
    silent = slice(FRAME_RATE + 10, None)
    with_dtx = encode(signal, OpusStreamEncoder(12, dtx=True))[silent]
    without_dtx = encode(signal, OpusStreamEncoder(12))[silent]
    assert np.median([len(packet.opus) for packet in with_dtx]) <= 2
    assert np.median([len(packet.opus) for packet in without_dtx]) > 2
    decoder = OpusStreamDecoder()
    decoded = np.concatenate([decoder.push(packet) for packet in with_dtx])
    assert decoder.corrupt_packets == 0
    assert np.abs(decoded).max() < 0.01


def test_sequence_numbers_count_up_and_wrap() -> None:
    encoder = OpusStreamEncoder(12, first_seq=SEQ_MODULO - 2)
    packets = encode(speech_like(0.1), encoder)
    assert [packet.seq for packet in packets] == [SEQ_MODULO - 2, SEQ_MODULO - 1, 0, 1, 2]
    assert all(packet.is_opus and packet.num_codebooks == 0 for packet in packets)
    assert encoder.name == "opus" and encoder.kbps == 12.0


@pytest.mark.parametrize("kbps", [5.9, 510.1, float("nan")])
def test_encoder_rejects_bitrates_outside_libopus_range(kbps: float) -> None:
    with pytest.raises(ValueError, match="Opus bitrate"):
        OpusStreamEncoder(kbps)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (np.zeros(FRAME_SAMPLES + 1, dtype=np.float32), "shape"),
        (np.zeros((1, FRAME_SAMPLES), dtype=np.float32), "shape"),
        (np.full(FRAME_SAMPLES, np.nan, dtype=np.float32), "NaN"),
        (np.array(["a"] * FRAME_SAMPLES), "float samples"),
        (np.zeros(FRAME_SAMPLES, dtype=np.int16), "float samples"),
    ],
)
def test_encoder_rejects_bad_frames(frame: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OpusStreamEncoder(12).push(frame)


def test_encoder_accepts_float64_frames() -> None:
    packet = Packet.parse(OpusStreamEncoder(12).push(np.zeros(FRAME_SAMPLES)))
    assert packet.is_opus


def test_rtcodec_packets_are_concealed_and_counted_not_raised() -> None:
    decoder, concealing = OpusStreamDecoder(), OpusStreamDecoder()
    for speech in encode(speech_like(0.2), OpusStreamEncoder(24)):
        decoder.push(speech)
        concealing.push(speech)
    rtcodec_packet = Packet(0, np.zeros(3, dtype=np.int64))
    assert np.array_equal(decoder.push(rtcodec_packet), concealing.push(None))
    assert np.array_equal(decoder.push(None, following=(rtcodec_packet,)), concealing.push(None))
    assert decoder.corrupt_packets == 1


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=80), min_size=1, max_size=4))
def test_corrupt_payloads_are_concealed_not_raised(payloads: list[bytes]) -> None:
    decoder = OpusStreamDecoder()
    for speech in encode(speech_like(0.2), OpusStreamEncoder(24)):
        decoder.push(speech)
    for index, payload in enumerate(payloads):
        corrupt = Packet(index, np.zeros(0, dtype=np.int64), opus=payload)
        frame = decoder.push(corrupt) if index % 2 else decoder.push(None, (corrupt,))
        assert frame.dtype == np.float32 and frame.shape == (FRAME_SAMPLES,)
        assert np.isfinite(frame).all() and np.abs(frame).max() <= 1.0


def test_a_corrupt_packet_also_tried_for_fec_counts_once() -> None:
    decoder = OpusStreamDecoder()
    corrupt = Packet(1, np.zeros(0, dtype=np.int64), opus=b"\xff")
    decoder.push(None, following=(corrupt,))
    decoder.push(corrupt)
    assert decoder.corrupt_packets == 1


def test_invalid_payload_is_counted() -> None:
    decoder = OpusStreamDecoder()
    frame = decoder.push(Packet(0, np.zeros(0, dtype=np.int64), opus=b"\xff"))
    assert decoder.corrupt_packets == 1
    assert frame.shape == (FRAME_SAMPLES,)
