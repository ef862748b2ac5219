"""Tests for rtcodec.audio: file reading and writing, framing, the default input, sources, sinks."""

from __future__ import annotations

import math
import os
import sys
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile

from rtcodec.audio import (
    AudioError,
    FileSource,
    MicrophoneSource,
    SpeakerSink,
    WavFileSink,
    default_speech,
    frames,
    read_audio,
    resample,
    write_wav,
)
from rtcodec.config import FRAME_SAMPLES, SAMPLE_RATE

TONE_HZ = 440.0
PCM_16_STEP = 1 / 32768
LOSSY_SUBTYPES = {"VORBIS", "OPUS"}


def sine(rate: int, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    """A TONE_HZ sine, float32 [round(seconds * rate)]."""
    time = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * TONE_HZ * time)).astype(np.float32)


def peak_hz(audio: np.ndarray) -> float:
    """Frequency of the strongest FFT bin of float [samples] at SAMPLE_RATE."""
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.argmax(spectrum) * SAMPLE_RATE / len(audio))


def device_available(kind: str) -> bool:
    """Whether PortAudio loads and has a default device of `kind` ("input" or "output")."""
    try:
        import sounddevice
    except (ImportError, OSError):
        return False
    try:
        sounddevice.query_devices(kind=kind)
    except sounddevice.PortAudioError:
        return False
    return True


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


def test_microphone_without_such_a_device_raises_audio_error() -> None:
    with pytest.raises(AudioError):
        MicrophoneSource(device=10_000)


def test_devices_without_portaudio_raise_audio_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)

    with pytest.raises(AudioError, match="unavailable"):
        MicrophoneSource()
    with pytest.raises(AudioError, match="unavailable"):
        SpeakerSink()


@pytest.mark.skipif(device_available("input"), reason="this machine has an audio input device")
def test_microphone_on_a_machine_without_input_devices_raises_audio_error() -> None:
    with pytest.raises(AudioError):
        MicrophoneSource()


@pytest.mark.skipif(device_available("output"), reason="this machine has an audio output device")
def test_speaker_on_a_machine_without_output_devices_raises_audio_error() -> None:
    with pytest.raises(AudioError):
        SpeakerSink()


DEVICE_SETTINGS = {"samplerate": SAMPLE_RATE, "channels": 1, "dtype": "float32", "blocksize": FRAME_SAMPLES}
"""What the sound device must be opened with: one 20 ms mono float32 frame per block."""


class FakeInputStream:
    """Stands in for sounddevice.InputStream: `start()` delivers CAPTURED_FRAMES frames at once,
    frame i filled with i / 100."""

    CAPTURED_FRAMES = 12

    def __init__(self, callback: Callable[..., None], device: object, **settings: object) -> None:
        assert settings == DEVICE_SETTINGS
        self.callback = callback
        self.closed = self.active = False

    def start(self) -> None:
        self.active = True
        for index in range(self.CAPTURED_FRAMES):
            block = np.full((FRAME_SAMPLES, 1), index / 100, dtype=np.float32)
            self.callback(block, FRAME_SAMPLES, None, None)

    def close(self) -> None:
        self.closed = True


class FakeOutputStream:
    """Stands in for sounddevice.OutputStream: keeps what is written; fails when `unplugged`."""

    def __init__(self, device: object, **settings: object) -> None:
        assert settings == DEVICE_SETTINGS
        self.blocks: list[np.ndarray] = []
        self.closed = self.unplugged = False

    def start(self) -> None:
        pass

    def write(self, block: np.ndarray) -> bool:
        if self.unplugged:
            raise RuntimeError("Stream is stopped [PaErrorCode -9983]")
        self.blocks.append(block.copy())
        return False

    def stop(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def test_microphone_drops_the_oldest_frames_when_the_reader_lags_and_ends_on_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = types.SimpleNamespace(InputStream=FakeInputStream, PortAudioError=RuntimeError)
    monkeypatch.setitem(sys.modules, "sounddevice", fake)

    microphone = MicrophoneSource(max_queued_frames=10)
    assert not microphone._stream.active  # nothing is captured before the call reads
    oldest_kept = microphone.read_frame()
    microphone.close()

    assert microphone.dropped_frames == 2
    assert oldest_kept is not None and oldest_kept.shape == (FRAME_SAMPLES,)
    np.testing.assert_array_equal(oldest_kept, np.float32(0.02))
    assert microphone.read_frame() is None


def test_the_speaker_plays_clipped_mono_frames_and_an_unplugged_device_is_an_audio_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = types.SimpleNamespace(OutputStream=FakeOutputStream, PortAudioError=RuntimeError)
    monkeypatch.setitem(sys.modules, "sounddevice", fake)

    speaker = SpeakerSink()
    speaker.write_frame(np.full(FRAME_SAMPLES, 1.5, dtype=np.float32))
    (block,) = speaker._stream.blocks
    assert block.shape == (FRAME_SAMPLES, 1) and block.dtype == np.float32 and block.max() == 1.0
    speaker._stream.unplugged = True
    with pytest.raises(AudioError, match="output device"):
        speaker.write_frame(np.zeros(FRAME_SAMPLES, dtype=np.float32))


@pytest.mark.skipif(not device_available("input"), reason="no audio input device on this machine")
def test_microphone_captures_frames() -> None:
    with MicrophoneSource() as microphone:
        frame = microphone.read_frame()

    assert frame is not None and frame.shape == (FRAME_SAMPLES,) and frame.dtype == np.float32
    assert microphone.read_frame() is None


@pytest.mark.skipif(not device_available("output"), reason="no audio output device on this machine")
def test_speaker_plays_frames() -> None:
    with SpeakerSink() as speaker:
        for frame in frames(sine(SAMPLE_RATE, seconds=0.1)):
            speaker.write_frame(frame)
