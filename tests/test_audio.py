"""Tests for rtcodec.audio: file reading and writing, resampling, framing, the default input, file sources and sinks."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile

from rtcodec.audio import (
    AudioError,
    FileSource,
    StreamingResampler,
    WavFileSink,
    default_speech,
    frames,
    read_audio,
    resample,
    write_wav,
)
from rtcodec.audio import _lowpass, _rate_ratio
from rtcodec.config import FRAME_SAMPLES, SAMPLE_RATE
from tones import peak_hz

TONE_HZ = 440.0
PCM_16_STEP = 1 / 32768
LOSSY_SUBTYPES = {"VORBIS", "OPUS"}


def sine(rate: int, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    """A TONE_HZ sine, float32 [round(seconds * rate)]."""
    time = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * TONE_HZ * time)).astype(np.float32)


@pytest.mark.parametrize(
    ("suffix", "subtype", "rate", "channels"),
    [
        ("wav", "PCM_16", 16_000, 1),
        ("wav", "FLOAT", 48_000, 2),
        ("flac", "PCM_24", 44_100, 2),
        ("ogg", "VORBIS", 44_100, 2),
        ("ogg", "OPUS", 48_000, 1),
    ],
)
def test_read_audio_converts_to_mono_at_sample_rate_and_keeps_content(
    tmp_path: Path, suffix: str, subtype: str, rate: int, channels: int
) -> None:
    tone = sine(rate)
    path = tmp_path / f"tone.{suffix}"
    soundfile.write(path, np.tile(tone[:, None], channels), rate, subtype=subtype)
    lossy = subtype in LOSSY_SUBTYPES

    audio = read_audio(path)

    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == math.ceil(len(tone) * SAMPLE_RATE / rate)
    assert abs(peak_hz(audio) - TONE_HZ) <= 2.0
    middle = audio[len(audio) // 4 : -len(audio) // 4]
    assert np.max(np.abs(middle)) == pytest.approx(0.5, abs=0.05 if lossy else 0.01)


def test_read_audio_downmixes_by_channel_mean(tmp_path: Path) -> None:
    tone = sine(SAMPLE_RATE)
    path = tmp_path / "left_only.wav"
    left_only = np.stack([tone, np.zeros_like(tone)], axis=1)
    soundfile.write(path, left_only, SAMPLE_RATE, subtype="FLOAT")

    np.testing.assert_allclose(read_audio(path), tone / 2, atol=1e-6)


def test_read_audio_clips_to_unit_range(tmp_path: Path) -> None:
    path = tmp_path / "loud.wav"
    soundfile.write(path, sine(SAMPLE_RATE, amplitude=1.5), SAMPLE_RATE, subtype="FLOAT")

    audio = read_audio(path)

    assert audio.min() == -1.0 and audio.max() == 1.0


def _write_text(path: Path) -> None:
    path.write_text("this is not audio\n")


def _write_empty_file(path: Path) -> None:
    path.touch()


def _write_zero_length_wav(path: Path) -> None:
    soundfile.write(path, np.zeros(0, dtype=np.float32), SAMPLE_RATE)


def _write_nan_wav(path: Path) -> None:
    soundfile.write(path, np.full(100, np.nan, dtype=np.float32), SAMPLE_RATE, subtype="FLOAT")


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("missing.wav", None, "no such file"),
        ("folder.wav", Path.mkdir, "is a directory"),
        ("empty.wav", _write_empty_file, "empty"),
        ("zero_length.wav", _write_zero_length_wav, "no audio samples"),
        ("notes.txt", _write_text, "not a recognised audio file"),
        ("nan.wav", _write_nan_wav, "nan"),
    ],
)
def test_read_audio_rejects_bad_input_with_one_clear_line(
    tmp_path: Path, name: str, make: Callable[[Path], object] | None, reason: str
) -> None:
    path = tmp_path / name
    if make is not None:
        make(path)

    with pytest.raises(AudioError) as raised:
        read_audio(path)

    message = str(raised.value)
    assert name in message and reason in message.lower() and "\n" not in message


def test_resample_gives_float32_of_the_new_length() -> None:
    resampled = resample(sine(44_100), 44_100)

    assert resampled.dtype == np.float32
    assert len(resampled) == math.ceil(44_100 * SAMPLE_RATE / 44_100)
    assert abs(peak_hz(resampled) - TONE_HZ) <= 2.0


def test_resample_rejects_non_positive_rates() -> None:
    with pytest.raises(ValueError, match="positive"):
        resample(sine(SAMPLE_RATE), 0)


RATE_PAIRS = [
    (48_000, SAMPLE_RATE), (SAMPLE_RATE, 48_000), (44_100, SAMPLE_RATE), (SAMPLE_RATE, 44_100), (22_050, SAMPLE_RATE)
]
"""Device rates a call resamples from (microphone) and to (speaker)."""


def resample_in_chunks(audio: np.ndarray, from_rate: int, to_rate: int, cuts: list[int]) -> np.ndarray:
    """`audio` through one StreamingResampler, split at the sample indices `cuts`, joined."""
    resampler = StreamingResampler(from_rate, to_rate)
    return np.concatenate([resampler.process(chunk) for chunk in np.split(audio, cuts)])


@pytest.mark.parametrize(("from_rate", "to_rate"), RATE_PAIRS)
def test_streaming_resampler_output_does_not_depend_on_how_the_input_is_chunked(from_rate: int, to_rate: int) -> None:
    audio = np.random.default_rng(0).uniform(-1, 1, from_rate // 5).astype(np.float32)
    whole = resample_in_chunks(audio, from_rate, to_rate, [])
    ragged_cuts = sorted(np.random.default_rng(1).integers(0, len(audio), 40).tolist())  # empty and 1-sample chunks too

    up, down = _rate_ratio(from_rate, to_rate)
    exact = scipy.signal.upfirdn(_lowpass(up, down), audio.astype(np.float64), up, down)
    assert whole.dtype == np.float32 and len(whole) == math.ceil(len(audio) * to_rate / from_rate)
    np.testing.assert_allclose(resample_in_chunks(audio, from_rate, to_rate, ragged_cuts), whole, atol=1e-6)
    np.testing.assert_allclose(whole, exact[: len(whole)], atol=1e-5)


@pytest.mark.parametrize(("from_rate", "to_rate"), [(48_000, SAMPLE_RATE), (SAMPLE_RATE, 48_000)])
def test_streaming_resampler_is_the_offline_resampler_delayed_by_half_its_filter(from_rate: int, to_rate: int) -> None:
    audio = sine(from_rate, seconds=0.5)
    lag = 10 * to_rate // min(from_rate, to_rate)  # 10 zero crossings of the lower rate
    streamed = resample_in_chunks(audio, from_rate, to_rate, list(range(0, len(audio), 960)))
    offline = resample(audio, from_rate, to_rate)
    middle = slice(100, len(offline) - 100)  # away from the ends, where the offline one pads

    np.testing.assert_allclose(streamed[lag:][middle], offline[: len(streamed) - lag][middle], atol=1e-5)


def test_streaming_resampler_keeps_speech_band_tones_and_removes_what_would_alias() -> None:
    rate = 48_000
    time = np.arange(rate) / rate
    kept = StreamingResampler(rate, SAMPLE_RATE).process(0.5 * np.sin(2 * np.pi * TONE_HZ * time))
    aliased = StreamingResampler(rate, SAMPLE_RATE).process(0.5 * np.sin(2 * np.pi * 10_000 * time))

    settled = slice(SAMPLE_RATE // 10, None)
    assert abs(peak_hz(kept[settled]) - TONE_HZ) <= 2.0
    assert np.std(kept[settled]) == pytest.approx(0.5 / math.sqrt(2), rel=0.01)
    assert np.std(aliased[settled]) < 0.5 / math.sqrt(2) * 10 ** (-40 / 20)  # 10 kHz would fold to 6 kHz


def test_streaming_resampler_at_equal_rates_passes_audio_unchanged_and_refuses_bad_input() -> None:
    audio = sine(SAMPLE_RATE, seconds=0.1)
    resampler = StreamingResampler(SAMPLE_RATE, SAMPLE_RATE)

    np.testing.assert_array_equal(resampler.process(audio), audio)
    with pytest.raises(ValueError, match="positive"):
        StreamingResampler(0, SAMPLE_RATE)
    with pytest.raises(AudioError, match="NaN"):
        resampler.process(np.full(10, np.nan, dtype=np.float32))


def test_write_wav_round_trips_as_16_bit_pcm(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    tone = sine(SAMPLE_RATE)

    write_wav(path, tone)

    info = soundfile.info(path)
    assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
    np.testing.assert_allclose(read_audio(path), tone, atol=PCM_16_STEP)


def test_write_wav_leaves_the_old_file_and_no_temporary_when_it_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "out.wav"
    write_wav(path, sine(SAMPLE_RATE))
    original = path.read_bytes()

    def failing_replace(source: object, target: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_wav(path, np.zeros(FRAME_SAMPLES, dtype=np.float32))

    assert path.read_bytes() == original
    assert list(tmp_path.iterdir()) == [path]


def test_write_wav_rejects_non_finite_audio_without_creating_a_file(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"

    with pytest.raises(AudioError, match="NaN"):
        write_wav(path, np.array([0.0, np.nan], dtype=np.float32))

    assert not path.exists()


def test_frames_zero_pads_the_last_frame() -> None:
    audio = np.linspace(-1, 1, 2 * FRAME_SAMPLES + 7, dtype=np.float32)

    split = list(frames(audio))

    assert len(split) == 3
    assert all(frame.shape == (FRAME_SAMPLES,) and frame.dtype == np.float32 for frame in split)
    joined = np.concatenate(split)
    np.testing.assert_array_equal(joined[: len(audio)], audio)
    assert not joined[len(audio) :].any()


def test_frames_of_empty_audio_is_empty() -> None:
    assert list(frames(np.zeros(0, dtype=np.float32))) == []


def _assert_plausible_speech(audio: np.ndarray) -> None:
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 5 * SAMPLE_RATE <= len(audio) <= 15 * SAMPLE_RATE
    assert np.abs(audio).max() <= 1.0
    assert np.sqrt(np.mean(audio**2)) > 0.02


def test_default_speech_is_non_silent_speech_of_plausible_length() -> None:
    speech = default_speech()

    _assert_plausible_speech(speech.audio)
    assert speech.description


def test_default_speech_falls_back_to_a_deterministic_signal_without_espeak(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    first, second = default_speech(), default_speech()

    _assert_plausible_speech(first.audio)
    assert "synthetic" in first.description
    np.testing.assert_array_equal(first.audio, second.audio)


def test_default_speech_falls_back_when_espeak_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "espeak-ng"
    broken.write_text("#!/bin/sh\necho 'no voices' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))

    speech = default_speech()

    _assert_plausible_speech(speech.audio)
    assert "synthetic" in speech.description and "espeak-ng failed" in speech.description


@pytest.mark.parametrize("seconds", [2.5, 30.0])
def test_default_speech_cuts_or_repeats_to_the_requested_length(seconds: float) -> None:
    assert len(default_speech(seconds).audio) == round(seconds * SAMPLE_RATE)


def test_file_source_yields_frames_then_none() -> None:
    source = FileSource(np.ones(FRAME_SAMPLES + 1, dtype=np.float32))

    first, second, end = source.read_frame(), source.read_frame(), source.read_frame()

    assert first is not None and second is not None and end is None
    assert first.all() and second[0] == 1 and not second[1:].any()


def test_wav_file_sink_closed_mid_call_writes_a_complete_file(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    tone = sine(SAMPLE_RATE)

    with pytest.raises(ConnectionError), WavFileSink(path) as sink:
        for frame in list(frames(tone))[:3]:
            sink.write_frame(frame)
        raise ConnectionError("the call dropped")

    np.testing.assert_allclose(read_audio(path), tone[: 3 * FRAME_SAMPLES], atol=PCM_16_STEP)
    with pytest.raises(ValueError, match="closed"):
        sink.write_frame(tone[:FRAME_SAMPLES])


def test_wav_file_sink_without_frames_leaves_an_existing_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "earlier_call.wav"
    write_wav(path, sine(SAMPLE_RATE))
    before = path.read_bytes()

    WavFileSink(path).close()

    assert path.read_bytes() == before


def test_wav_file_sink_rejects_a_missing_directory_or_a_directory_up_front(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="no such directory"):
        WavFileSink(tmp_path / "missing" / "call.wav")
    with pytest.raises(AudioError, match="it is a directory"):
        WavFileSink(tmp_path)


def test_wav_file_sink_writes_as_the_frames_come_and_in_place_on_close(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    sink = WavFileSink(path)
    for frame in list(frames(sine(SAMPLE_RATE)))[:3]:
        sink.write_frame(frame)
    (temporary,) = tmp_path.iterdir()  # a hidden file, not yet `path`
    assert temporary.name.startswith(".call.") and not path.exists()
    sink.close()
    assert list(tmp_path.iterdir()) == [path] and len(read_audio(path)) == 3 * FRAME_SAMPLES


@pytest.mark.parametrize("samples", [np.full(FRAME_SAMPLES, 1000, dtype=np.int16), np.zeros(FRAME_SAMPLES, dtype=bool)])
def test_integer_samples_are_refused_rather_than_passed_unscaled(tmp_path: Path, samples: np.ndarray) -> None:
    with pytest.raises(AudioError, match="float samples"):
        write_wav(tmp_path / "x.wav", samples)
    with pytest.raises(AudioError, match="float samples"):
        list(frames(samples))
    with pytest.raises(ValueError, match="float samples"):
        WavFileSink(tmp_path / "y.wav").write_frame(samples)
    assert list(tmp_path.iterdir()) == []
