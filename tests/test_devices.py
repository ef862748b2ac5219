"""Tests for rtcodec.devices: microphone and speaker through sounddevice.

This machine has no sound card. The device logic runs against stand-in sounddevice streams, and
the real PortAudio path runs against ALSA's null device, declared in a private ~/.asoundrc.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from rtcodec.audio import AudioError, StreamingResampler
from rtcodec.config import FRAME_SAMPLES, SAMPLE_RATE
from rtcodec.devices import MicrophoneSource, SpeakerSink, list_devices, parse_device
from tones import peak_hz

TONE_HZ = 1000.0
NULL_DEVICE = "rtcodec_null"
ASOUNDRC = f"""pcm.{NULL_DEVICE} {{
    type null
    hint {{ show on description "rtcodec test device: plays nothing, captures silence" }}
}}
"""


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


def tone(rate: int, samples: int, start: int = 0) -> np.ndarray:
    """float32 [samples] of a 0.5-amplitude TONE_HZ sine at `rate`, from sample `start` on."""
    return (0.5 * np.sin(2 * np.pi * TONE_HZ * (start + np.arange(samples)) / rate)).astype(np.float32)


class FakeDevice:
    """Stands in for the sounddevice module with one device whose only rate is `rate`."""

    PortAudioError = RuntimeError

    def __init__(self, rate: int = SAMPLE_RATE) -> None:
        self.rate = rate
        self.checked: list[str] = []
        self.opened: list[dict[str, object]] = []

    def check_input_settings(self, device: object, samplerate: int, **settings: object) -> None:
        self._check("input", samplerate)

    def check_output_settings(self, device: object, samplerate: int, **settings: object) -> None:
        self._check("output", samplerate)

    def _check(self, kind: str, samplerate: int) -> None:
        self.checked.append(kind)
        if samplerate != self.rate:
            raise self.PortAudioError("Invalid sample rate [PaErrorCode -9997]")

    def query_devices(self, device: object, kind: str) -> dict[str, object]:
        return {"name": "fake", "default_samplerate": float(self.rate)}

    def InputStream(self, callback: Callable[..., None], device: object, **settings: object) -> FakeInputStream:
        self.opened.append(settings)
        return FakeInputStream(callback, self.rate, int(settings["blocksize"]))  # type: ignore[call-overload]

    def OutputStream(self, device: object, **settings: object) -> FakeOutputStream:
        self.opened.append(settings)
        return FakeOutputStream()


class FakeInputStream:
    """`start()` delivers `blocks` blocks of a continuous `signal` (a tone unless changed) at
    once; the last `overflowed` of them are flagged as device overflows."""

    def __init__(self, callback: Callable[..., None], rate: int, blocksize: int) -> None:
        self.callback, self.rate, self.blocksize = callback, rate, blocksize
        self.blocks, self.overflowed = 12, 0
        self.signal = tone
        self.closed = self.active = False

    def start(self) -> None:
        self.active = True
        for index in range(self.blocks):
            block = self.signal(self.rate, self.blocksize, start=index * self.blocksize)[:, None]
            status = types.SimpleNamespace(input_overflow=index >= self.blocks - self.overflowed)
            self.callback(block, self.blocksize, None, status)

    def close(self) -> None:
        self.closed = True


class FakeOutputStream:
    """Keeps what is written; reports an underrun for the writes listed in `underruns`; fails
    when `unplugged`."""

    def __init__(self) -> None:
        self.blocks: list[np.ndarray] = []
        self.underruns: set[int] = set()
        self.closed = self.unplugged = self.active = False

    def start(self) -> None:
        self.active = True

    def write(self, block: np.ndarray) -> bool:
        if self.unplugged:
            raise RuntimeError("Stream is stopped [PaErrorCode -9983]")
        self.blocks.append(block.copy())
        return len(self.blocks) - 1 in self.underruns

    def stop(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_device(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], FakeDevice]:
    """Install a FakeDevice of the given rate as the sounddevice module."""

    def install(rate: int) -> FakeDevice:
        device = FakeDevice(rate)
        monkeypatch.setitem(sys.modules, "sounddevice", device)  # type: ignore[arg-type]
        return device

    return install


def test_a_device_that_takes_16_khz_is_opened_at_16_khz_in_blocks_of_one_frame(
    fake_device: Callable[..., FakeDevice],
) -> None:
    device = fake_device(SAMPLE_RATE)
    MicrophoneSource().close()
    SpeakerSink().close()
    expected = {"samplerate": SAMPLE_RATE, "blocksize": FRAME_SAMPLES, "channels": 1, "dtype": "float32"}
    assert device.checked == ["input", "output"]
    assert device.opened == [expected, expected]


def test_the_microphone_drops_the_oldest_frames_when_the_reader_lags_and_ends_on_close(
    fake_device: Callable[..., FakeDevice],
) -> None:
    fake_device(SAMPLE_RATE)

    microphone = MicrophoneSource(max_queued_frames=10)
    assert not microphone._stream.active  # nothing is captured before the call reads
    oldest_kept = microphone.read_frame()
    microphone.close()

    assert microphone.glitches == 2  # 12 blocks into a queue of 10
    assert oldest_kept is not None and oldest_kept.shape == (FRAME_SAMPLES,)
    np.testing.assert_array_equal(oldest_kept, tone(SAMPLE_RATE, FRAME_SAMPLES, start=2 * FRAME_SAMPLES))
    assert microphone.read_frame() is None


def test_the_microphone_counts_device_overflows(fake_device: Callable[..., FakeDevice]) -> None:
    fake_device(SAMPLE_RATE)
    microphone = MicrophoneSource(max_queued_frames=20)
    microphone._stream.overflowed = 3
    microphone.read_frame()
    microphone.close()
    assert microphone.glitches == 3


def square(rate: int, samples: int, start: int = 0) -> np.ndarray:
    """A full-scale TONE_HZ square wave: resampling it overshoots [-1, 1] (Gibbs)."""
    return np.sign(tone(rate, samples, start))


def test_resampled_microphone_frames_stay_within_full_scale(fake_device: Callable[..., FakeDevice]) -> None:
    fake_device(48_000)
    microphone = MicrophoneSource(max_queued_frames=20)
    microphone._stream.signal = square
    captured = np.concatenate([microphone.read_frame() for _ in range(10)])  # type: ignore[misc]
    microphone.close()

    overshooting = StreamingResampler(48_000, SAMPLE_RATE).process(square(48_000, 12 * 960))
    assert np.abs(overshooting).max() > 1.05  # what the microphone would give unclipped
    assert np.abs(captured).max() <= 1.0


@pytest.mark.parametrize(("device_rate", "blocksize"), [(48_000, 960), (44_100, 882), (11_025, 220)])
def test_a_microphone_that_refuses_16_khz_is_captured_at_its_own_rate_and_resampled(
    fake_device: Callable[..., FakeDevice], device_rate: int, blocksize: int
) -> None:
    device = fake_device(device_rate)
    microphone = MicrophoneSource(max_queued_frames=20)
    captured = [microphone.read_frame() for _ in range(10)]
    microphone.close()

    assert device.opened[0]["samplerate"] == device_rate
    assert device.opened[0]["blocksize"] == blocksize  # 20 ms, or as near as whole samples get
    assert microphone.description == f"'fake' at {device_rate} Hz, resampled to {SAMPLE_RATE} Hz"
    assert all(frame is not None and frame.shape == (FRAME_SAMPLES,) for frame in captured)
    audio = np.concatenate(captured)  # type: ignore[arg-type]
    whole = StreamingResampler(device_rate, SAMPLE_RATE).process(tone(device_rate, 12 * blocksize))
    np.testing.assert_allclose(audio, whole[: len(audio)], atol=1e-6)  # frames join seamlessly across blocks
    audio = audio[FRAME_SAMPLES:]  # past the filter's start
    assert abs(peak_hz(audio, SAMPLE_RATE) - TONE_HZ) <= 5.0
    assert np.std(audio) == pytest.approx(0.5 / math.sqrt(2), rel=0.02)
    assert microphone.glitches == 0


@pytest.mark.parametrize("device_rate", [48_000, 44_100])
def test_a_speaker_that_refuses_16_khz_is_played_at_its_own_rate_from_resampled_frames(
    fake_device: Callable[..., FakeDevice], device_rate: int
) -> None:
    device = fake_device(device_rate)
    speaker = SpeakerSink()
    for index in range(10):
        speaker.write_frame(tone(SAMPLE_RATE, FRAME_SAMPLES, start=index * FRAME_SAMPLES))
    speaker.close()

    assert device.opened[0]["samplerate"] == device_rate
    assert speaker.description == f"'fake' at {device_rate} Hz, resampled from {SAMPLE_RATE} Hz"
    lead, *blocks = speaker._stream.blocks  # type: ignore[attr-defined]
    assert lead.shape == (device_rate // 50, 1) and not lead.any()
    played = np.concatenate(blocks)
    assert played.shape == (10 * device_rate // 50, 1) and played.dtype == np.float32
    audio = played[device_rate // 50 :, 0]
    assert abs(peak_hz(audio, device_rate) - TONE_HZ) <= 5.0
    assert np.std(audio) == pytest.approx(0.5 / math.sqrt(2), rel=0.02)


def test_the_speaker_plays_clipped_mono_frames_counts_underruns_and_an_unplugged_device_is_an_audio_error(
    fake_device: Callable[..., FakeDevice],
) -> None:
    fake_device(SAMPLE_RATE)
    speaker = SpeakerSink()
    assert not speaker._stream.active  # nothing plays (or underruns) before the first frame
    speaker._stream.underruns = {0, 3}  # type: ignore[attr-defined]  # writes: 0 is the lead, 3 a frame
    for _ in range(4):
        speaker.write_frame(np.full(FRAME_SAMPLES, 1.5, dtype=np.float32))

    written = speaker._stream.blocks  # type: ignore[attr-defined]
    silence, loud = np.zeros((FRAME_SAMPLES, 1), dtype=np.float32), np.ones((FRAME_SAMPLES, 1), dtype=np.float32)
    expected = [silence, loud, loud, loud, silence, loud]  # lead, frames, the lead again after the underrun
    assert len(written) == len(expected) and all(block.dtype == np.float32 for block in written)
    assert all(np.array_equal(block, want) for block, want in zip(written, expected, strict=True))
    assert speaker.glitches == 1
    speaker._stream.unplugged = True  # type: ignore[attr-defined]
    with pytest.raises(AudioError, match="output device"):
        speaker.write_frame(np.zeros(FRAME_SAMPLES, dtype=np.float32))
    speaker.close()
    with pytest.raises(ValueError, match="closed"):
        speaker.write_frame(np.zeros(FRAME_SAMPLES, dtype=np.float32))


def test_a_device_is_given_by_index_or_by_name() -> None:
    assert parse_device("3") == 3
    assert parse_device("USB Audio") == "USB Audio"
    assert parse_device("²") == "²"  # a digit, but not a decimal one


def test_the_device_list_says_so_when_there_are_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", types.SimpleNamespace(query_devices=lambda: []))
    assert list_devices() == "no sound devices: PortAudio finds none on this machine"


def test_microphone_without_such_a_device_raises_audio_error() -> None:
    with pytest.raises(AudioError, match="rtcodec devices"):
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


NULL_DEVICE_SCRIPT = f"""
import json
import numpy as np
from rtcodec.devices import MicrophoneSource, SpeakerSink
SpeakerSink({NULL_DEVICE!r}).close()  # never started
with MicrophoneSource({NULL_DEVICE!r}) as microphone:
    captured = [microphone.read_frame() for _ in range(5)]
with SpeakerSink({NULL_DEVICE!r}) as speaker:
    for frame in captured:
        speaker.write_frame(frame)
print(json.dumps({{"rates": [microphone.device_rate, speaker.device_rate],
                  "shapes": [list(frame.shape) for frame in captured],
                  "after_close": microphone.read_frame()}}))
"""


def alsa_available() -> bool:
    """Whether PortAudio loads here with its ALSA host API."""
    try:
        import sounddevice
    except (ImportError, OSError):
        return False
    return any(api["name"] == "ALSA" for api in sounddevice.query_hostapis())


@pytest.fixture
def null_device_home(tmp_path: Path) -> dict[str, str]:
    """An environment whose ALSA configuration (~/.asoundrc) adds NULL_DEVICE."""
    if not alsa_available():
        pytest.skip("PortAudio with ALSA is not available here")
    (tmp_path / ".asoundrc").write_text(ASOUNDRC)
    return os.environ | {"HOME": str(tmp_path)}


def test_rtcodec_devices_lists_what_portaudio_finds(null_device_home: dict[str, str]) -> None:
    listing = subprocess.run([sys.executable, "-m", "rtcodec.cli", "devices"], env=null_device_home,
                             capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0, listing.stderr
    assert f"{NULL_DEVICE}, ALSA" in listing.stdout


def test_the_real_portaudio_path_captures_and_plays_frames_on_alsas_null_device(
    null_device_home: dict[str, str],
) -> None:
    """Our calls into sounddevice and PortAudio, for real. The null device takes any rate and
    keeps no clock, so this says nothing of resampling, pacing or glitches (the fakes above do)."""
    result = subprocess.run([sys.executable, "-c", NULL_DEVICE_SCRIPT], env=null_device_home,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "rates": [SAMPLE_RATE, SAMPLE_RATE],
        "shapes": [[FRAME_SAMPLES]] * 5,
        "after_close": None,
    }


def test_a_call_on_named_devices_opens_them_and_says_which_before_it_listens(
    null_device_home: dict[str, str],
) -> None:
    command = [sys.executable, "-m", "rtcodec.cli", "call", "--listen", "127.0.0.1:0", "--codec", "opus",
               "--kbps", "16", "--input-device", NULL_DEVICE, "--output-device", NULL_DEVICE]
    call = subprocess.Popen(command, env=null_device_home, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(120, call.kill)
    watchdog.start()
    said = []
    try:
        for line in call.stderr:  # type: ignore[union-attr]
            if line.startswith("listening on"):
                break
            said.append(line.strip())
    finally:
        watchdog.cancel()
        call.kill()
        call.wait()
    assert said == [f"microphone: '{NULL_DEVICE}' at {SAMPLE_RATE} Hz", f"speaker: '{NULL_DEVICE}' at {SAMPLE_RATE} Hz"]


@pytest.mark.skipif(not device_available("input"), reason="no audio input device on this machine")
def test_microphone_captures_frames() -> None:
    with MicrophoneSource() as microphone:
        frame = microphone.read_frame()

    assert frame is not None and frame.shape == (FRAME_SAMPLES,) and frame.dtype == np.float32
    assert microphone.read_frame() is None


@pytest.mark.skipif(not device_available("output"), reason="no audio output device on this machine")
def test_speaker_plays_frames() -> None:
    with SpeakerSink() as speaker:
        for index in range(5):
            speaker.write_frame(tone(SAMPLE_RATE, FRAME_SAMPLES, start=index * FRAME_SAMPLES))
