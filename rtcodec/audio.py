"""Audio in and out of rtcodec: files, the built-in default speech, and resampling.

Audio crosses module boundaries as float32 numpy arrays in [-1, 1] of shape [samples]: mono, at
SAMPLE_RATE. Calls move it as 20 ms frames of shape [FRAME_SAMPLES] through the `FrameSource` and
`FrameSink` protocols, which files (here, for tests and benchmarks) and sound devices
(`rtcodec.devices`) both implement.
"""

from __future__ import annotations

import math
import os
import subprocess
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self

import numpy as np
import scipy.signal
import soundfile

from rtcodec.config import FRAME_SAMPLES, SAMPLE_RATE
from rtcodec.fileio import atomic_path, check_output_path, replace_with, reserve_temporary

_UNRECOGNISED_FORMAT = 1
"""libsndfile's SF_ERR_UNRECOGNISED_FORMAT."""
_READ_BLOCK_FRAMES = 1 << 16
_WRITE_BLOCK_SAMPLES = 1 << 16
"""read_audio mixes down, and write_wav clips and writes, this many samples at a time."""
_RESAMPLING_ZERO_CROSSINGS = 10
_RESAMPLING_WINDOW = ("kaiser", 5.0)
"""The anti-aliasing filter of `resample` and `StreamingResampler` (scipy's resample_poly default):
a Kaiser-windowed sinc spanning this many zero crossings on each side."""

_PASSAGE = (
    "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
    "It's easy to tell the depth of a well. These days a chicken leg is a rare dish."
)
"""Harvard sentences (IEEE 1969, list 1): phonetically balanced English, about 10 s spoken."""
_ESPEAK_WORDS_PER_MINUTE = 150
_SYNTHETIC_SECONDS = 9.0
_SYLLABLE_SECONDS = 0.2
"""Syllable length of the synthetic fallback: 5 syllables/s, a typical speaking rate."""
_SYLLABLES_PER_PHRASE = 6
"""Voiced syllables between the one-syllable pauses of the synthetic fallback."""
_PHRASE_SECONDS = (_SYLLABLES_PER_PHRASE + 1) * _SYLLABLE_SECONDS
_VOWEL_FORMANTS_HZ = (
    (730, 1090, 2440),
    (270, 2290, 3010),
    (300, 870, 2240),
    (530, 1840, 2480),
    (570, 840, 2410),
)
"""F1-F3 of /a/, /i/, /u/, /e/, /o/ (Peterson & Barney, male speakers)."""
_GLOTTAL_POLE = 0.9
"""One-pole lowpass on the sawtooth voice: the -12 dB/octave tilt of real glottal pulses."""
_FORMANT_GAINS = (1.0, 0.5, 0.25)
_FORMANT_BANDWIDTH_HZ = 100.0


class AudioError(ValueError):
    """Audio that cannot be read, written or captured; the message names the file or device."""


@dataclass(frozen=True, eq=False)
class DefaultInput:
    """The built-in input: float32 [samples] speech in [-1, 1] and what it honestly is."""

    audio: np.ndarray
    description: str


class FrameSource(Protocol):
    """Where a call's outgoing audio comes from: frames of float32 [FRAME_SAMPLES] in [-1, 1]."""

    def read_frame(self) -> np.ndarray | None:
        """The next frame, blocking until it exists; None once the source has ended."""
        ...

    @property
    def glitches(self) -> int:
        """Times audio was lost before the call read it: a device overflow, or a frame dropped
        because the reader fell behind. Always 0 for a file."""
        ...

    def close(self) -> None:
        """Stop the source and release its device; later reads return None."""
        ...


class FrameSink(Protocol):
    """Where a call's incoming audio goes: frames of float32 [FRAME_SAMPLES] in [-1, 1]."""

    def write_frame(self, frame: np.ndarray) -> None:
        """Play or store one frame."""
        ...

    @property
    def glitches(self) -> int:
        """Times a device ran out of audio to play (an underrun). Always 0 for a file."""
        ...

    def close(self) -> None:
        """Finish: flush what was written and release the device or file."""
        ...


def read_audio(path: str | Path) -> np.ndarray:
    """Read any file libsndfile reads (WAV, FLAC, Ogg Vorbis, Ogg Opus, ...) at any rate and channel
    count, as float32 [samples] in [-1, 1]: mono (channel mean) at SAMPLE_RATE.

    Raises AudioError for a missing, empty, non-audio or non-finite file. Memory: the file's
    mono samples as float32, plus the result.
    """
    path = Path(path)
    mono, rate = _read_mono(path)
    return resample(checked_mono(mono, f"cannot read '{path}'"), rate)


def resample(audio: np.ndarray, from_rate: int, to_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Resample float [samples] from `from_rate` to `to_rate` Hz with a polyphase filter.

    Returns float32 [ceil(samples * to_rate / from_rate)], clipped to [-1, 1].
    """
    audio = checked_mono(audio, "cannot resample")
    up, down = _rate_ratio(from_rate, to_rate)
    resampled = audio if up == down else scipy.signal.resample_poly(audio, up, down, window=_RESAMPLING_WINDOW)
    result = resampled.astype(np.float32)  # a copy: `audio` is never changed
    return np.clip(result, -1.0, 1.0, out=result)


class StreamingResampler:
    """Resample a stream of float chunks from `from_rate` to `to_rate` Hz, chunk by chunk: the
    filter of `resample`, applied causally, so that the output lags by half the filter,
    _RESAMPLING_ZERO_CROSSINGS samples of the lower of the two rates (0.6 ms when it is 16 kHz).

    The outputs of any split of the input into chunks, joined, are one and the same signal:
    `scipy.signal.upfirdn` of the whole input with that filter, cut where the input ends.
    """

    def __init__(self, from_rate: int, to_rate: int) -> None:
        self._up, self._down = _rate_ratio(from_rate, to_rate)
        fir = _lowpass(self._up, self._down) if self._up != self._down else np.ones(1)
        self._taps = -(-len(fir) // self._up)
        phases = np.zeros(self._taps * self._up)
        phases[: len(fir)] = fir
        self._phases = phases.reshape(self._taps, self._up).T.astype(np.float32)
        """[up, taps]: row p holds fir[p], fir[p + up], ..., the taps that meet input samples at phase p."""
        self._history = np.zeros(self._taps - 1, dtype=np.float32)
        self._inputs = 0
        self._outputs = 0

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Float [samples] at `from_rate` -> float32 [about samples * to_rate / from_rate]."""
        chunk = checked_mono(chunk, "cannot resample")
        signal = np.concatenate([self._history, chunk])
        total = self._inputs + len(chunk)
        stop = -(-total * self._up // self._down)
        positions = np.arange(self._outputs, stop, dtype=np.int64) * self._down
        newest = positions // self._up - (self._inputs - len(self._history))
        windows = signal[newest[:, None] - np.arange(self._taps)[None, :]]
        resampled = np.einsum("nk,nk->n", windows, self._phases[positions % self._up])
        self._history = signal[len(signal) - len(self._history) :]
        self._inputs, self._outputs = total, stop
        return resampled.astype(np.float32)


def _rate_ratio(from_rate: int, to_rate: int) -> tuple[int, int]:
    """(up, down): `to_rate` / `from_rate` in lowest terms; ValueError for a rate that is not positive."""
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate} Hz")
    common = math.gcd(from_rate, to_rate)
    return to_rate // common, from_rate // common


def _lowpass(up: int, down: int) -> np.ndarray:
    """The anti-aliasing FIR for resampling by up / down, at `up` times the input rate, with the
    gain of `up` that upsampling by zero insertion needs (as in scipy's resample_poly)."""
    rate = max(up, down)
    half_length = _RESAMPLING_ZERO_CROSSINGS * rate
    return up * scipy.signal.firwin(2 * half_length + 1, 1.0 / rate, window=_RESAMPLING_WINDOW)


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write float [samples] (clipped to [-1, 1]) as a 16-bit PCM mono WAV file, atomically:
    `path` either keeps its old content or gets the whole new file, never a partial one.
    Written in blocks, so that no copy of a long float32 `audio` is made."""
    path = Path(path)
    audio = checked_mono(audio, f"cannot write '{path}'")
    with (
        atomic_path(path) as temporary,
        soundfile.SoundFile(temporary, "w", sample_rate, 1, "PCM_16", format="WAV") as file,
    ):
        for start in range(0, len(audio), _WRITE_BLOCK_SAMPLES):
            file.write(np.clip(audio[start : start + _WRITE_BLOCK_SAMPLES], -1.0, 1.0))


def frames(audio: np.ndarray) -> Iterator[np.ndarray]:
    """Split float [samples] into float32 [FRAME_SAMPLES] frames, zero-padding the last one.

    The frames are views of `audio` (when it is float32) but for the padded last one.
    """
    return _frames(checked_mono(audio, "cannot split into frames"))


def _frames(audio: np.ndarray) -> Iterator[np.ndarray]:
    """`frames` of checked float32 [samples]."""
    whole = len(audio) - len(audio) % FRAME_SAMPLES
    yield from audio[:whole].reshape(-1, FRAME_SAMPLES)
    if whole < len(audio):
        last = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        last[: len(audio) - whole] = audio[whole:]
        yield last


def default_speech(seconds: float | None = None) -> DefaultInput:
    """The built-in input: English sentences spoken by espeak-ng (about 10 s), or, where espeak-ng
    is not installed, a deterministic synthetic speech-like signal (9 s).

    With `seconds`, the audio is cut or repeated to exactly round(seconds * SAMPLE_RATE) samples.
    """
    if seconds is not None and not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    try:
        speech = DefaultInput(_espeak_speech(), f'espeak-ng reading "{_PASSAGE}"')
    except (OSError, subprocess.SubprocessError, AudioError) as error:
        reason = "is not installed" if isinstance(error, FileNotFoundError) else f"failed: {error}"
        speech = DefaultInput(
            _synthetic_speech(_SYNTHETIC_SECONDS), f"synthetic speech-like signal (espeak-ng {reason})"
        )
    if seconds is None:
        return speech
    return DefaultInput(np.resize(speech.audio, round(seconds * SAMPLE_RATE)), speech.description)


class ClosingContext(ABC):
    """`with` support for sources and sinks: leaving the block closes them."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class FileSource(ClosingContext):
    """A FrameSource that plays float [samples] audio as frames; the stand-in for a microphone.

    It does not pace itself: every read returns at once.
    """

    glitches = 0

    def __init__(self, audio: np.ndarray) -> None:
        self._frames = frames(audio)

    def read_frame(self) -> np.ndarray | None:
        return next(self._frames, None)

    def close(self) -> None:
        self._frames = iter(())


class WavFileSink(ClosingContext):
    """A FrameSink that writes frames to a 16-bit WAV file as they come, under a hidden temporary
    name that replaces `path` on `close()`: closing it at any point gives a complete, valid file
    of the frames so far, and a call of any length holds no audio in memory. A sink that never
    got a frame (a call that never connected) writes nothing, so that it leaves an existing file
    as it was. AudioError at once if `path` cannot be written."""

    glitches = 0

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            check_output_path(self.path)
        except ValueError as error:
            raise AudioError(str(error)) from None
        self._temporary: Path | None = None
        self._file: soundfile.SoundFile | None = None
        self._closed = False

    def write_frame(self, frame: np.ndarray) -> None:
        if self._closed:
            raise ValueError(f"cannot write to '{self.path}': the sink is closed")
        samples = np.clip(checked_frame(frame), -1.0, 1.0)
        if self._file is None:
            self._temporary = reserve_temporary(self.path)
            self._file = soundfile.SoundFile(self._temporary, "w", SAMPLE_RATE, 1, "PCM_16", format="WAV")
        self._file.write(samples)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._file is not None and self._temporary is not None:
            self._file.close()
            replace_with(self._temporary, self.path)


def _read_mono(path: Path) -> tuple[np.ndarray, int]:
    """The channel mean as float32 [samples], and the rate in Hz; AudioError if unreadable."""
    try:
        with path.open("rb") as file:
            if os.fstat(file.fileno()).st_size == 0:
                raise _unreadable(path, "the file is empty")
            with soundfile.SoundFile(file) as sound:
                mono, rate = _mixed_down(sound), sound.samplerate
    except OSError as error:
        raise _unreadable(path, (error.strerror or str(error)).lower()) from None
    except soundfile.LibsndfileError as error:
        raise _unreadable(path, _libsndfile_reason(error)) from None
    if len(mono) == 0:
        raise _unreadable(path, "contains no audio samples")
    return mono, rate


def _mixed_down(sound: soundfile.SoundFile) -> np.ndarray:
    """Float32 [samples]: the mean of the channels of `sound`, read block by block so that the
    whole file is never held with all its channels."""
    mono = np.empty(sound.frames, dtype=np.float32)
    count = 0
    for block in sound.blocks(_READ_BLOCK_FRAMES, dtype="float32", always_2d=True):
        block.mean(axis=1, out=mono[count : count + len(block)])
        count += len(block)
    return mono[:count]


def _libsndfile_reason(error: soundfile.LibsndfileError) -> str:
    if error.code == _UNRECOGNISED_FORMAT:
        return "not a recognised audio file"
    return error.error_string.rstrip(".").lower()


def _unreadable(path: Path, reason: str) -> AudioError:
    return AudioError(f"cannot read '{path}': {reason}")


def checked_mono(audio: np.ndarray, context: str) -> np.ndarray:
    """`audio` as float32 [samples]; AudioError starting with `context` if not finite mono float
    audio (integer samples would pass unscaled: 16-bit ones must be divided by 32768 first)."""
    if not _is_float(audio):
        raise AudioError(f"{context}: audio must be float samples in [-1, 1], got {np.asarray(audio).dtype}")
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise AudioError(f"{context}: audio must have shape [samples], got {audio.shape}")
    if not np.isfinite(audio).all():
        raise AudioError(f"{context}: audio contains NaN or infinite samples")
    return audio


def checked_frame(frame: np.ndarray) -> np.ndarray:
    """`frame` as contiguous float32 [FRAME_SAMPLES]; ValueError saying what is wrong otherwise."""
    if not _is_float(frame):
        raise ValueError(f"a frame must be float samples in [-1, 1], got {np.asarray(frame).dtype}")
    try:
        samples = np.ascontiguousarray(frame, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise ValueError(f"frame must be convertible to float32: {error}") from None
    if samples.shape != (FRAME_SAMPLES,):
        raise ValueError(f"a frame must have shape ({FRAME_SAMPLES},), got {samples.shape}")
    if not np.isfinite(samples).all():
        raise ValueError("frame contains NaN or infinite samples")
    return samples


def _is_float(samples: object) -> bool:
    """Whether `samples` holds floating-point numbers (not integers, booleans or objects)."""
    try:
        return np.issubdtype(np.asarray(samples).dtype, np.floating)
    except (TypeError, ValueError):  # ragged sequences and the like: the callers say what is wrong
        return True


def _espeak_speech() -> np.ndarray:
    """The passage spoken by espeak-ng, float32 [samples]; FileNotFoundError if not installed,
    CalledProcessError or TimeoutExpired if it fails."""
    with tempfile.TemporaryDirectory() as directory:
        wav_path = Path(directory) / "passage.wav"
        command = ["espeak-ng", "-w", str(wav_path), "-s", str(_ESPEAK_WORDS_PER_MINUTE), _PASSAGE]
        subprocess.run(command, check=True, capture_output=True, timeout=60)
        return read_audio(wav_path)


def _synthetic_speech(seconds: float) -> np.ndarray:
    """Deterministic speech-like float32 [samples]: a tilted sawtooth voice with a wandering pitch,
    one vowel per syllable shaped by formant resonators and a syllable envelope, phrase pauses."""
    rng = np.random.default_rng(0)
    sample_count = round(seconds * SAMPLE_RATE)
    time = np.arange(sample_count) / SAMPLE_RATE
    pitch_hz = 120.0 + 20.0 * np.sin(2 * np.pi * 0.3 * time) - 10.0 * (time % _PHRASE_SECONDS)
    voice = scipy.signal.sawtooth(2 * np.pi * np.cumsum(pitch_hz) / SAMPLE_RATE)
    voice += 0.05 * rng.standard_normal(sample_count)
    voice = scipy.signal.lfilter([1.0], [1.0, -_GLOTTAL_POLE], voice)
    syllable_samples = round(_SYLLABLE_SECONDS * SAMPLE_RATE)
    speech = np.zeros(sample_count)
    for index, start in enumerate(range(0, sample_count, syllable_samples)):
        if index % (_SYLLABLES_PER_PHRASE + 1) == _SYLLABLES_PER_PHRASE:
            continue
        segment = voice[start : start + syllable_samples]
        vowel = _VOWEL_FORMANTS_HZ[rng.integers(len(_VOWEL_FORMANTS_HZ))]
        envelope = np.hanning(len(segment))
        speech[start : start + len(segment)] = _formant_filter(segment, vowel) * envelope
    return (0.5 * speech / np.max(np.abs(speech))).astype(np.float32)


def _formant_filter(source: np.ndarray, formants_hz: tuple[int, int, int]) -> np.ndarray:
    """`source` through parallel resonators at `formants_hz`, weighted by _FORMANT_GAINS."""
    shaped = np.zeros_like(source)
    for formant_hz, gain in zip(formants_hz, _FORMANT_GAINS, strict=True):
        numerator, denominator = scipy.signal.iirpeak(
            formant_hz, formant_hz / _FORMANT_BANDWIDTH_HZ, fs=SAMPLE_RATE
        )
        shaped += gain * scipy.signal.lfilter(numerator, denominator, source)
    return shaped
