"""Replaying a recorded (or hand-written) loss and delay trace.

A trace is a small CSV file. Lines starting with "#" and blank lines are ignored; the first other
line is the header, which names the key column, then `lost` and `delay_ms`:

    # seq-keyed: one row per packet, in the order they are sent
    seq,lost,delay_ms
    0,0,32.5
    1,1,
    2,0,41

    # time-keyed: each row holds from its time until the next row's
    time_ms,lost,delay_ms
    0,0,30
    1000,1,
    1200,0,80

- `seq`: the n-th packet sent on the link, from 0 (in `simulate` that is the packet's sequence
  number). Rows must run 0, 1, 2, ... without gaps; a longer stream starts the trace over.
- `time_ms`: milliseconds since the first packet sent on the link; rows must start at 0 and
  increase. A packet takes the last row at or before its send time; the last row holds forever.
- `lost`: 1 drops the packet, 0 delivers it.
- `delay_ms`: its one-way delay (jitter included), >= 0; required when `lost` is 0, may be left
  empty when it is 1.

`Network.replay(trace)` uses a trace for both losses and delays; the replay is exact: no
randomness is involved.
"""

from __future__ import annotations

import bisect
import csv
import io
import itertools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import numpy as np

from rtcodec.fileio import atomic_write_bytes
from rtcodec.netsim.models import DelayDraw, LossDecision

TraceKey = Literal["seq", "time_ms"]
KEYS: Final = ("seq", "time_ms")


class TraceError(ValueError):
    """A trace file that does not follow the format; the message names the line."""


@dataclass(frozen=True)
class Trace:
    """A loss and delay trace: row i is (keys[i], lost[i], delay_ms[i])."""

    key: TraceKey
    keys: tuple[float, ...]
    lost: tuple[bool, ...]
    delay_ms: tuple[float | None, ...]
    """None only where the packet is lost."""

    def __post_init__(self) -> None:
        if self.key not in KEYS:
            raise TraceError(f"a trace is keyed by {' or '.join(KEYS)}, not '{self.key}'")
        if not self.keys or not len(self.keys) == len(self.lost) == len(self.delay_ms):
            raise TraceError("a trace needs at least one row, with a key, lost and delay_ms each")
        if self.key == "seq" and list(self.keys) != list(range(len(self.keys))):
            raise TraceError("seq rows must run 0, 1, 2, ... in order, without gaps")
        if self.key == "time_ms":
            if self.keys[0] != 0:
                raise TraceError("the first time_ms row must be at 0")
            if any(later <= earlier for earlier, later in itertools.pairwise(self.keys)):
                raise TraceError("time_ms rows must be in increasing order")
        for row, (lost, delay) in enumerate(zip(self.lost, self.delay_ms, strict=True)):
            if delay is None and not lost:
                raise TraceError(f"row {row}: a delivered packet needs a delay_ms")
            if delay is not None and not (math.isfinite(delay) and delay >= 0):
                raise TraceError(f"row {row}: delay_ms must be a number >= 0, got {delay}")

    @classmethod
    def per_packet(cls, lost: list[bool], delay_ms: list[float | None]) -> Trace:
        """A seq-keyed trace: packet n is `lost[n]`, else delayed by `delay_ms[n]`."""
        return cls("seq", tuple(range(len(lost))), tuple(map(bool, lost)), tuple(delay_ms))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Trace:
        try:
            text = Path(path).read_text()
        except UnicodeDecodeError:
            raise TraceError(f"'{path}' is not a text (CSV) file") from None
        return cls.parse(text, source=str(path))

    @classmethod
    def parse(cls, text: str, source: str = "trace") -> Trace:
        """Parse the CSV format of the module docstring; TraceError naming the line otherwise."""
        rows = [
            (number, line)
            for number, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.lstrip().startswith("#")
        ]
        if not rows:
            raise TraceError(f"{source}: empty trace (no header line)")
        header_line, header_text = rows[0]
        header = [cell.strip() for cell in next(csv.reader([header_text]))]
        if len(header) != 3 or header[0] not in KEYS or header[1:] != ["lost", "delay_ms"]:
            raise TraceError(
                f"{source}:{header_line}: the header must be 'seq,lost,delay_ms' or "
                f"'time_ms,lost,delay_ms', got '{header_text.strip()}'"
            )
        keys: list[float] = []
        lost: list[bool] = []
        delays: list[float | None] = []
        for number, line in rows[1:]:
            cells = [cell.strip() for cell in next(csv.reader([line]))]
            where = f"{source}:{number}"
            if len(cells) != 3:
                raise TraceError(f"{where}: expected 3 columns, got {len(cells)}")
            keys.append(_number(cells[0], header[0], where))
            if cells[1] not in ("0", "1"):
                raise TraceError(f"{where}: lost must be 0 or 1, got '{cells[1]}'")
            lost.append(cells[1] == "1")
            delays.append(_number(cells[2], "delay_ms", where) if cells[2] else None)
        if not keys:
            raise TraceError(f"{source}: the trace has a header but no rows")
        if header[0] == "seq":
            keys = [int(key) if key == int(key) else key for key in keys]
        try:
            return cls(header[0], tuple(keys), tuple(lost), tuple(delays))  # type: ignore[arg-type]
        except TraceError as error:
            raise TraceError(f"{source}: {error}") from None

    def to_csv(self) -> str:
        """The trace in the CSV format that `parse` reads."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([self.key, "lost", "delay_ms"])
        for key, lost, delay in zip(self.keys, self.lost, self.delay_ms, strict=True):
            writer.writerow([_exact(key), int(lost), "" if delay is None else _exact(delay)])
        return out.getvalue()

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_bytes(path, self.to_csv().encode())

    def row(self, index: int, elapsed_ms: float) -> int:
        """The row that applies to the `index`-th packet, sent `elapsed_ms` after the first."""
        if self.key == "seq":
            return index % len(self.keys)
        return max(bisect.bisect_right(self.keys, elapsed_ms) - 1, 0)

    def losses(self) -> TraceLosses:
        return TraceLosses(self)

    def delays(self) -> TraceDelays:
        return TraceDelays(self)


@dataclass(frozen=True)
class TraceLosses:
    """The loss model of a trace (its `lost` column)."""

    trace: Trace

    def start(self, rng: np.random.Generator) -> LossDecision:
        return lambda index, elapsed: self.trace.lost[self.trace.row(index, elapsed * 1000)]


@dataclass(frozen=True)
class TraceDelays:
    """The delay model of a trace (its `delay_ms` column; a lost row's copies, which only
    duplication could produce, take 0)."""

    trace: Trace

    def start(self, rng: np.random.Generator) -> DelayDraw:
        def delay(index: int, elapsed: float) -> float:
            value = self.trace.delay_ms[self.trace.row(index, elapsed * 1000)]
            return (value or 0.0) / 1000

        return delay


def _exact(value: float) -> str:
    """`value` as text that parses back to the same float: an integer without a point."""
    return str(int(value)) if value == int(value) else repr(float(value))


def _number(text: str, column: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise TraceError(f"{where}: {column} must be a number, got '{text}'") from None
    if not math.isfinite(value):
        raise TraceError(f"{where}: {column} must be finite, got '{text}'")
    return value
