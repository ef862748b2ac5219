"""Live sound devices through sounddevice (PortAudio): a microphone FrameSource and a speaker FrameSink.

A device is opened at SAMPLE_RATE, mono, float32, in blocks of one 20 ms frame, when it takes
that; a device that refuses SAMPLE_RATE (raw ALSA hardware, some WASAPI setups) is opened at
its own default rate instead, and a `StreamingResampler` converts on the way in or out. What a
device loses (an overflow, a dropped frame, an underrun) is counted in `glitches`, which a call
reports in its CallStats.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import ModuleType
from typing import TYPE_CHECKING, Literal

import numpy as np

from rtcodec.audio import AudioError, ClosingContext, StreamingResampler, checked_frame
from rtcodec.config import FRAME_SAMPLES, SAMPLE_RATE

if TYPE_CHECKING:
    import sounddevice

Device = int | str | None
"""A sounddevice device: index, name substring, or None for the system default."""
Direction = Literal["input", "output"]
_BlockQueue = queue.Queue[np.ndarray | None]
"""Captured blocks waiting for the reader; None marks the end of the stream."""

_DEVICE_TIMEOUT_SECONDS = 2.0
"""How long a microphone may deliver nothing before it counts as failed."""
_SAMPLE_FORMAT: dict[str, object] = {"channels": 1, "dtype": "float32"}
LEAD_FRAMES = 1
"""Frames of silence the speaker keeps queued ahead of the call's audio: the slack a late playout
tick may use before the device runs dry. The speaker's delay grows by as much."""


def parse_device(text: str) -> int | str:
    """A device as given on a command line: a number is an index, anything else a name substring."""
    return int(text) if text.strip().isdecimal() else text


def list_devices() -> str:
    """PortAudio's devices, one line each: index, name, host API, input and output channels, with
    the defaults marked; AudioError where PortAudio is missing."""
    devices = _sounddevice().query_devices()
    return str(devices) if len(devices) else "no sound devices: PortAudio finds none on this machine"


class MicrophoneSource(ClosingContext):
    """A FrameSource that captures a sound device, mono, as frames at SAMPLE_RATE.

    The device is opened at once (AudioError when there is no usable input device), but captures
    only from the first `read_frame` on: nothing said while a call is being set up is sent late.
    Captured blocks wait in a bounded queue; when the reader falls `max_queued_frames` behind, the
    oldest is dropped so that latency stays bounded. Drops and device overflows count as `glitches`.
    """

    def __init__(self, device: Device = None, max_queued_frames: int = 10) -> None:
        self.glitches = 0
        self._device = device
        self._blocks: _BlockQueue = queue.Queue(maxsize=max_queued_frames)
        self._pending = np.zeros(0, dtype=np.float32)
        with _device_errors("input", device) as sounddevice_module:
            self.device_rate = _device_rate(sounddevice_module, "input", device)
            self.description = _description(sounddevice_module, "input", device, self.device_rate)
            self._resampler = StreamingResampler(self.device_rate, SAMPLE_RATE)
            self._stream: sounddevice.InputStream = sounddevice_module.InputStream(
                device=device, callback=self._on_audio, **_stream_settings(self.device_rate)
            )

    def read_frame(self) -> np.ndarray | None:
        if self._stream.closed:
            return None
        if not self._stream.active:
            with _device_errors("input", self._device):
                self._stream.start()
        while len(self._pending) < FRAME_SAMPLES:
            block = self._next_block()
            if block is None:
                return None
            self._pending = np.concatenate([self._pending, self._resampler.process(block)])
        frame, self._pending = self._pending[:FRAME_SAMPLES], self._pending[FRAME_SAMPLES:]
        return np.clip(frame, -1.0, 1.0)  # resampling may overshoot full scale

    def close(self) -> None:
        if not self._stream.closed:
            self._stream.close()
            _put_dropping_oldest(self._blocks, None)

    def _next_block(self) -> np.ndarray | None:
        try:
            return self._blocks.get(timeout=_DEVICE_TIMEOUT_SECONDS)
        except queue.Empty:
            raise AudioError("the microphone stopped delivering audio") from None

    def _on_audio(self, captured: np.ndarray, count: int, time: object, status: sounddevice.CallbackFlags) -> None:
        """sounddevice callback, on its audio thread: `captured` is float32 [block, 1]."""
        dropped = _put_dropping_oldest(self._blocks, captured[:, 0].copy())
        if dropped or status.input_overflow:
            self.glitches += 1


class SpeakerSink(ClosingContext):
    """A FrameSink that plays frames at SAMPLE_RATE on a sound device, mono.

    The device is opened at once (AudioError when there is no usable output device), and starts
    playing with the first frame, behind LEAD_FRAMES of silence: a playout tick that comes a little
    late then finds audio still queued instead of a dry device. `write_frame` blocks while the
    device buffer is full, which paces the caller in real time. An underrun counts as a glitch, and
    the lead of silence is queued again after it.
    """

    def __init__(self, device: Device = None) -> None:
        self.glitches = 0
        with _device_errors("output", device) as sounddevice_module:
            self._device_error: type[Exception] = sounddevice_module.PortAudioError
            self.device_rate = _device_rate(sounddevice_module, "output", device)
            self.description = _description(sounddevice_module, "output", device, self.device_rate)
            self._resampler = StreamingResampler(SAMPLE_RATE, self.device_rate)
            self._stream: sounddevice.OutputStream = sounddevice_module.OutputStream(
                device=device, **_stream_settings(self.device_rate)
            )

    def write_frame(self, frame: np.ndarray) -> None:
        if self._stream.closed:
            raise ValueError("cannot play a frame: the speaker is closed")
        samples = np.clip(self._resampler.process(checked_frame(frame)), -1.0, 1.0)[:, np.newaxis]
        with self._failures():
            if not self._stream.active:
                self._stream.start()
                self._queue_lead()
            if self._stream.write(samples):
                self.glitches += 1
                self._queue_lead()

    def close(self) -> None:
        if not self._stream.closed:
            with self._failures():
                self._stream.stop()
                self._stream.close()

    def _queue_lead(self) -> None:
        """Queue LEAD_FRAMES of silence; an underrun it reports happened before it (on starting)."""
        self._stream.write(np.zeros((LEAD_FRAMES * _block_size(self.device_rate), 1), dtype=np.float32))

    @contextmanager
    def _failures(self) -> Iterator[None]:
        """A PortAudio error once the device runs (unplugged during a call, say) as an AudioError."""
        try:
            yield
        except self._device_error as error:
            raise AudioError(f"the audio output device failed: {error}") from None


def _device_rate(sounddevice_module: ModuleType, direction: Direction, device: Device) -> int:
    """SAMPLE_RATE if `device` takes it, else the device's own default rate."""
    if direction == "input":
        check = sounddevice_module.check_input_settings
    else:
        check = sounddevice_module.check_output_settings
    try:
        check(device=device, samplerate=SAMPLE_RATE, **_SAMPLE_FORMAT)
    except sounddevice_module.PortAudioError:
        return round(sounddevice_module.query_devices(device, direction)["default_samplerate"])
    return SAMPLE_RATE


def _description(sounddevice_module: ModuleType, direction: Direction, device: Device, rate: int) -> str:
    """"'NAME' at RATE Hz", saying when it is resampled to or from SAMPLE_RATE."""
    name = sounddevice_module.query_devices(device, direction)["name"]
    if rate == SAMPLE_RATE:
        return f"'{name}' at {rate} Hz"
    return f"'{name}' at {rate} Hz, resampled {'to' if direction == 'input' else 'from'} {SAMPLE_RATE} Hz"


def _stream_settings(rate: int) -> dict[str, object]:
    """sounddevice stream settings at `rate`: mono float32, in blocks of one frame's duration."""
    return {"samplerate": rate, "blocksize": _block_size(rate), **_SAMPLE_FORMAT}


def _block_size(rate: int) -> int:
    """Samples at `rate` in one frame's duration (rounded)."""
    return round(rate * FRAME_SAMPLES / SAMPLE_RATE)


def _sounddevice() -> ModuleType:
    """The sounddevice module; AudioError where PortAudio is missing."""
    try:
        import sounddevice as sounddevice_module
    except Exception as error:  # ImportError, OSError (no libportaudio), PortAudioError (Pa_Initialize)
        raise AudioError(f"live audio is unavailable (no PortAudio): {error}") from None
    return sounddevice_module


@contextmanager
def _device_errors(direction: Direction, device: Device) -> Iterator[ModuleType]:
    """Yield the sounddevice module; turn a missing PortAudio or device into AudioError."""
    sounddevice_module = _sounddevice()
    try:
        yield sounddevice_module
    except (sounddevice_module.PortAudioError, ValueError) as error:
        name = "the default" if device is None else repr(device)
        raise AudioError(
            f"no usable audio {direction} device ({name}): {error}; `rtcodec devices` lists them, and "
            "without a sound card a call takes audio files (`rtcodec call --input FILE --output FILE`)"
        ) from None


def _put_dropping_oldest(blocks: _BlockQueue, item: np.ndarray | None) -> bool:
    """Put `item` on `blocks` (whose only producer is the caller), first dropping the oldest
    entry if it is full; True if one was dropped."""
    full = blocks.full()
    if full:
        with suppress(queue.Empty):
            blocks.get_nowait()
    blocks.put_nowait(item)
    return full
