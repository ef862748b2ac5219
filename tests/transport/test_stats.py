"""Call stats: bitrates from bytes, JSON, and the live status line on a terminal or a log."""

from __future__ import annotations

import io
import json

from rtcodec.transport.stats import CallStats, DelayMeter, StatusLine

FIELDS = CallStats.__dataclass_fields__


def stats(**values: object) -> CallStats:
    """CallStats with zeros (or None) everywhere but `values`."""
    defaults = {name: None if "p50" in name or "p95" in name else 0 for name in FIELDS}
    return CallStats(**(defaults | {"end_reason": ""} | values))  # type: ignore[arg-type]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bitrates_come_from_the_bytes_actually_carried() -> None:
    call = stats(packets_sent=50, bytes_sent=100 * 50, packets_received=0)
    assert call.sent_kbps == 40.0  # 100 bytes every 20 ms
    assert call.received_kbps == 0.0
    record = json.loads(call.to_json())
    assert set(record) == set(FIELDS) | {"sent_kbps", "received_kbps"}
    assert record["sent_kbps"] == 40.0


def test_delay_percentiles_are_in_milliseconds() -> None:
    meter = DelayMeter()
    assert meter.percentile_ms(50) is None
    for seconds in (0.010, 0.020, 0.030, 0.040, 0.100):
        meter.add(seconds)
    assert meter.percentile_ms(50) == 30.0


def test_the_status_line_shows_dropped_messages_only_when_there_are_some() -> None:
    assert "rejected" not in stats().status_line()
    assert "rejected 2, flooded 7 |" in stats(rejected=2, flooded=7).status_line()


def test_the_status_line_shows_device_glitches_only_when_there_are_some() -> None:
    assert "glitches" not in stats().status_line()
    assert "device glitches: capture 0, playback 4 |" in stats(playback_glitches=4).status_line()


def test_the_status_line_rewrites_itself_on_a_terminal() -> None:
    terminal = Terminal()
    status = StatusLine(terminal)
    status.update(stats(packets_sent=1))
    status.update(stats(packets_sent=2))
    status.finish(stats(packets_sent=3, end_reason="source ended"))
    shown = terminal.getvalue()
    assert shown.count("\r") == 3 and shown.count("\n") == 1
    assert "sent 3" in shown.splitlines()[-1]


def test_the_status_line_prints_periodic_lines_elsewhere() -> None:
    log, now = io.StringIO(), [0.0]
    status = StatusLine(log, line_interval=5.0, clock=lambda: now[0])
    for second in range(12):
        now[0] = float(second)
        status.update(stats(packets_sent=second))
    status.finish(stats(packets_sent=99))
    lines = log.getvalue().splitlines()
    assert [line.split("| sent ")[1].split()[0] for line in lines] == ["0", "5", "10", "99"]


def test_a_labelled_status_line_says_whose_it_is() -> None:
    terminal, log = Terminal(), io.StringIO()
    for stream in (terminal, log):
        status = StatusLine(stream, label="callee")
        status.update(stats(packets_sent=1))
        status.finish(stats(packets_sent=2))
    assert terminal.getvalue().count("callee: ") == 2
    assert all(line.startswith("callee: ") for line in log.getvalue().splitlines())
