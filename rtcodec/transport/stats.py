"""What a call did: packet counts, bitrate, delays; a live status line and a JSON record."""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Final, TextIO

import numpy as np

from rtcodec.bitstream import kbps_of
from rtcodec.config import FRAME_RATE

DELAY_SAMPLES: Final = 10 * 60 * FRAME_RATE
"""Delay samples kept for the percentiles: the last ten minutes of frames."""


class DelayMeter:
    """Delays of the most recent DELAY_SAMPLES frames, for percentiles."""

    def __init__(self) -> None:
        self._seconds: deque[float] = deque(maxlen=DELAY_SAMPLES)

    def add(self, seconds: float) -> None:
        self._seconds.append(seconds)

    def percentile_ms(self, percent: float) -> float | None:
        """The `percent` percentile in milliseconds, rounded to 0.1 ms; None before any sample."""
        if not self._seconds:
            return None
        return round(float(np.percentile(np.fromiter(self._seconds, float), percent)) * 1000, 1)


@dataclass(frozen=True)
class CallStats:
    """One side's view of a call so far. Sent counts are this side's; the rest describe what it
    received from the peer. Byte counts are codec packets only (no envelope, SCTP, DTLS, UDP)."""

    duration_s: float
    """Seconds since the data channel opened."""
    packets_sent: int
    bytes_sent: int
    packets_received: int
    """Binary messages that parsed as packets, duplicates and late ones included."""
    bytes_received: int
    lost: int
    """Frames that never arrived (RTP-style: expected from the sequence numbers minus arrived)."""
    late: int
    """Packets that arrived after their playout tick; dropped."""
    duplicate: int
    rejected: int
    """Messages that were not valid packets or control messages; dropped."""
    flooded: int
    """Messages dropped on arrival, unread: over the peer's rate limit or with the incoming queue
    full (rtcodec.transport.peer)."""
    overflow: int
    """Packets dropped because the jitter buffer was full."""
    outlier: int
    """Packets whose sequence number lay far outside the stream's window; dropped."""
    frames_played: int
    concealed: int
    """Played frames that had no packet of their own (decoder concealment or FEC)."""
    stretched: int
    """Of the concealed frames, those the jitter buffer inserted to grow its delay."""
    skipped: int
    """Frames the jitter buffer skipped to shrink its delay."""
    capture_glitches: int
    """Times this side's microphone lost audio (a device overflow, or a frame dropped because
    sending fell behind); 0 for a file."""
    playback_glitches: int
    """Times this side's speaker ran out of audio to play (an underrun); 0 for a file."""
    jitter_target_ms: float
    """The jitter buffer's current target delay."""
    jitter_delay_p50_ms: float | None
    """Median time a played packet spent in the jitter buffer (arrival to decoding)."""
    one_way_delay_p50_ms: float | None
    """Median mouth-to-ear delay: the peer reading a frame from its source to this side handing
    the decoded frame to its sink. Valid when both clocks agree (one host, or NTP)."""
    one_way_delay_p95_ms: float | None
    end_reason: str
    """Why the call ended; empty while it runs."""

    @property
    def sent_kbps(self) -> float:
        """Codec bitrate actually sent: packet bytes per second of audio sent."""
        return round(kbps_of(self.bytes_sent, self.packets_sent), 3)

    @property
    def received_kbps(self) -> float:
        """Codec bitrate actually received: packet bytes per second of audio received."""
        return round(kbps_of(self.bytes_received, self.packets_received), 3)

    def to_dict(self) -> dict[str, object]:
        """All fields and both bitrates, JSON-ready."""
        return asdict(self) | {"sent_kbps": self.sent_kbps, "received_kbps": self.received_kbps}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def status_line(self) -> str:
        """A one-line summary for a live display."""
        return (
            f"{self.duration_s:6.1f} s | sent {self.packets_sent} ({self.sent_kbps:.1f} kbps) | "
            f"received {self.packets_received} ({self.received_kbps:.1f} kbps), "
            f"lost {self.lost}, late {self.late}, concealed {self.concealed}{self._hostile()} | "
            f"{self._glitches()}"
            f"jitter buffer {self.jitter_target_ms:.0f} ms | "
            f"one-way p50 {format_ms(self.one_way_delay_p50_ms)} "
            f"p95 {format_ms(self.one_way_delay_p95_ms)}"
        )

    def _glitches(self) -> str:
        """"device glitches: capture C, playback P | " when a sound device lost audio; else nothing."""
        if not (self.capture_glitches or self.playback_glitches):
            return ""
        return f"device glitches: capture {self.capture_glitches}, playback {self.playback_glitches} | "

    def _hostile(self) -> str:
        """", rejected R, flooded F" when the peer sent what was dropped unplayed; else nothing."""
        if not (self.rejected or self.flooded):
            return ""
        return f", rejected {self.rejected}, flooded {self.flooded}"


class StatusLine:
    """Shows `CallStats.status_line()` while a call runs, after `label` if given: rewritten in
    place (`\\r`) on a terminal; elsewhere (a log, a pipe) one line every `line_interval` seconds."""

    def __init__(
        self,
        stream: TextIO = sys.stderr,
        line_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        label: str = "",
    ) -> None:
        self._prefix = f"{label}: " if label else ""
        self._stream = stream
        self._line_interval = line_interval
        self._clock = clock
        self._tty = stream.isatty()
        self._last_line: float | None = None

    def update(self, stats: CallStats) -> None:
        """Show `stats`, at once on a terminal, at most every `line_interval` s elsewhere."""
        if self._tty:
            self._stream.write(f"\r{self._prefix}{stats.status_line()}\x1b[K")
            self._stream.flush()
            return
        now = self._clock()
        if self._last_line is None or now - self._last_line >= self._line_interval:
            self._last_line = now
            self._write_line(stats)

    def finish(self, stats: CallStats) -> None:
        """Show the final `stats` and end the line."""
        if self._tty:
            self._stream.write("\r\x1b[K")
        self._write_line(stats)

    def _write_line(self, stats: CallStats) -> None:
        self._stream.write(f"{self._prefix}{stats.status_line()}\n")
        self._stream.flush()


def format_ms(value: float | None) -> str:
    """A delay for people: "42 ms", or "-" when there is none."""
    return "-" if value is None else f"{value:.0f} ms"
