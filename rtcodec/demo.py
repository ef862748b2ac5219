"""The call demo: a complete call between two peers in this process, over real sockets.

The caller sends speech (the built-in passage or a file) through its encoder, real TCP signalling
on 127.0.0.1 with a token, and a real aiortc data channel over UDP; the callee plays what arrives
through its jitter buffer and decoder into a WAV file. The codec is injected as two factories, so
the same demo runs rtcodec or Opus (see `rtcodec.codecs.CodecSpec`), and this module never
imports torch.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.signal
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rtcodec.audio import FileSource, WavFileSink, default_speech, read_audio, write_wav
from rtcodec.config import FRAME_SAMPLES, SAMPLE_RATE
from rtcodec.fileio import atomic_path, atomic_write_bytes
from rtcodec.protocols import StreamDecoder, StreamEncoder
from rtcodec.transport import CallStats, CodecChoice, Peer, Session, connect, listen
from rtcodec.transport.stats import StatusLine, format_ms

LOOPBACK = "127.0.0.1"
_SPECTROGRAM_FFT = 512
_POWER_FLOOR = 1e-12
"""Added to spectrogram power before taking decibels, so that digital silence is finite."""
_DYNAMIC_RANGE_DB = 90.0
"""Range of the spectrogram colour scale below its loudest point."""


@dataclass(frozen=True)
class DemoSummary:
    """What the demo did; `str()` gives the lines the CLI prints."""

    out_dir: Path
    codec: CodecChoice
    input_description: str
    caller: CallStats
    """The sending side's stats."""
    callee: CallStats
    """The receiving side's stats: losses, delays, concealment."""

    def __str__(self) -> str:
        received = self.callee
        return "\n".join(
            [
                f"call demo: {self.codec}, input: {self.input_description}",
                f"  packets sent {self.caller.packets_sent}, received {received.packets_received}"
                f", lost {received.lost}, late {received.late}, concealed {received.concealed}",
                f"  bitrate sent {self.caller.sent_kbps:.2f} kbps (codec packets with headers)",
                f"  one-way delay p50 {format_ms(received.one_way_delay_p50_ms)}, "
                f"p95 {format_ms(received.one_way_delay_p95_ms)}; jitter buffer p50 "
                f"{format_ms(received.jitter_delay_p50_ms)} "
                f"(target {format_ms(received.jitter_target_ms)})",
                f"  wrote {', '.join(str(self.out_dir / name) for name in _OUTPUTS)}",
            ]
        )


_OUTPUTS = ("sent.wav", "received.wav", "stats.json", "call.png")


def run_demo(
    out_dir: Path,
    encoder_factory: Callable[[], StreamEncoder],
    decoder_factory: Callable[[], StreamDecoder],
    input_path: Path | None = None,
) -> DemoSummary:
    """Run one call from a caller that sends `input_path` (default: the built-in speech) to a
    callee, and write DIR/sent.wav, DIR/received.wav, DIR/stats.json and DIR/call.png.

    Takes as long as the audio (real time), plus about a second of set-up, with the callee's
    status line on stderr meanwhile. Bad input or codec settings raise before anything is
    written; the outputs of an earlier run in DIR are removed before the call.
    """
    if input_path is None:
        speech = default_speech()
        audio, description = speech.audio, speech.description
    else:
        audio, description = read_audio(input_path), str(input_path)
    encoder, decoder = encoder_factory(), decoder_factory()
    codec = CodecChoice(encoder.name, encoder.kbps)
    sent = np.pad(audio, (0, -len(audio) % FRAME_SAMPLES))
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in _OUTPUTS:
        (out_dir / name).unlink(missing_ok=True)
    write_wav(out_dir / "sent.wav", sent)
    caller, callee = asyncio.run(_call(sent, encoder, decoder, codec, out_dir / "received.wav"))
    summary = DemoSummary(out_dir, codec, description, caller, callee)
    stats = {"codec": str(codec), "caller": caller.to_dict(), "callee": callee.to_dict()}
    atomic_write_bytes(out_dir / "stats.json", json.dumps(stats, indent=2).encode() + b"\n")
    _plot(sent, read_audio(out_dir / "received.wav"), out_dir / "call.png", str(codec))
    return summary


async def _call(
    audio: np.ndarray,
    encoder: StreamEncoder,
    decoder: StreamDecoder,
    codec: CodecChoice,
    received_path: Path,
) -> tuple[CallStats, CallStats]:
    """Signal over TCP with a fresh token, then run both sessions; (caller, callee) stats."""
    token = secrets.token_urlsafe(16)
    caller_peer, callee_peer = Peer(), Peer()
    async with await listen(LOOPBACK, 0) as listener:
        await asyncio.gather(
            listener.accept(callee_peer, codec, token=token),
            connect(caller_peer, codec, host=LOOPBACK, port=listener.port, token=token),
        )
    status = StatusLine(label="callee")
    caller = Session(caller_peer, source=FileSource(audio), encoder=encoder)
    callee = Session(callee_peer, sink=WavFileSink(received_path), decoder=decoder, on_status=status.update)
    caller_stats, callee_stats = await asyncio.gather(caller.run(), callee.run())
    status.finish(callee_stats)
    return caller_stats, callee_stats


def _plot(sent: np.ndarray, received: np.ndarray, path: Path, title: str) -> None:
    """Waveforms and spectrograms of what was sent and what was received, as a PNG."""
    figure = Figure(figsize=(12, 7), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, 2, sharex=True)
    for column, (name, audio) in enumerate((("sent", sent), ("received", received))):
        seconds = np.arange(len(audio)) / SAMPLE_RATE
        axes[0, column].plot(seconds, audio, linewidth=0.4)
        axes[0, column].set(title=f"{name} ({title})", ylim=(-1, 1), ylabel="amplitude")
        frequencies, times, power = scipy.signal.spectrogram(
            audio, SAMPLE_RATE, nperseg=_SPECTROGRAM_FFT, noverlap=_SPECTROGRAM_FFT // 2
        )
        decibels = 10 * np.log10(power + _POWER_FLOOR)
        axes[1, column].pcolormesh(
            times, frequencies, decibels, shading="auto", vmin=decibels.max() - _DYNAMIC_RANGE_DB
        )
        axes[1, column].set(xlabel="time (s)", ylabel="frequency (Hz)")
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=100)
