"""Training curves: dev PESQ-WB and STOI at every evaluated bitrate, and the main training losses,
against the step, over one or more runs of `rtcodec train`.

    .venv/bin/python benchmarks/training.py runs/codec runs/codec256

Reads RUN/log.jsonl of each run (the trainer writes the losses every 50 steps and every dev
evaluation there). Runs are drawn in the order given, each in its own line style, so that a run
started from another's release (`--init-from`) continues its curve. The losses are smoothed over
LOSS_WINDOW logged points. Writes training.json, training.md (every evaluation) and training.png
into --out.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from common import DEFAULT_OUT, markdown_table, new_figure, number, write_results
from matplotlib.figure import Figure

LOG_FILE: Final = "log.jsonl"
LOSSES: Final = ("mel", "complex")
"""The losses plotted: the perceptual one and the phase-aware one."""
LOSS_WINDOW: Final = 20
LINE_STYLES: Final = ("-", "--", ":", "-.")
METRICS: Final = {"stoi": "STOI", "pesq": "PESQ-WB"}


@dataclass(frozen=True)
class Run:
    """What one run logged: its dev evaluations and its training losses."""

    name: str
    evaluations: list[dict[str, Any]]
    """{"step": int, "eval": {"pesq@6": ..., "stoi@6": ...}} in step order."""
    losses: list[dict[str, Any]]
    """{"step": int, "losses": {"mel": ..., ...}} in step order."""


def read_run(folder: Path) -> Run:
    """The records of folder/log.jsonl; raises SystemExit with a clear message if it is missing."""
    log = folder / LOG_FILE
    if not log.is_file():
        raise SystemExit(f"error: {log} does not exist: pass the --run-dir of an `rtcodec train` run")
    records = _records(log)
    evaluations = sorted((r for r in records if "eval" in r), key=lambda r: r["step"])
    losses = sorted((r for r in records if "losses" in r), key=lambda r: r["step"])
    return Run(folder.name, evaluations, losses)


def _records(log: Path) -> list[dict[str, Any]]:
    """The JSON records of `log`, NaN and infinities read as None. A half-written last line (a run
    that is still training) is left out; any other bad line stops with its line number."""
    lines = [(index, line) for index, line in enumerate(log.read_text().splitlines(), 1) if line.strip()]
    records = []
    for position, (line_number, line) in enumerate(lines, 1):
        try:
            records.append(json.loads(line, parse_constant=lambda _: None))
        except json.JSONDecodeError:
            if position < len(lines):
                raise SystemExit(f"error: {log}:{line_number} is not a JSON record") from None
    return records


def bitrates(runs: Sequence[Run]) -> list[str]:
    """The evaluated bitrates ("1.5", "3", ...), in increasing order."""
    rates = {key.split("@")[1] for run in runs for e in run.evaluations for key in e["eval"]}
    return sorted(rates, key=float)


def smoothed(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average; the first points average what there is."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    starts = np.maximum(np.arange(1, len(values) + 1) - window, 0)
    return (sums[1:] - sums[starts]) / (np.arange(1, len(values) + 1) - starts)


def plot(runs: Sequence[Run], rates: Sequence[str]) -> Figure:
    figure, axes = new_figure(3, width=5.0, height=3.8)
    colors = {rate: f"C{i}" for i, rate in enumerate(rates)}
    for run, style in zip(runs, LINE_STYLES * len(runs), strict=False):
        steps = [e["step"] for e in run.evaluations]
        for axis, metric in zip(axes, METRICS, strict=False):
            for rate in rates:
                values = [e["eval"].get(f"{metric}@{rate}", np.nan) for e in run.evaluations]
                axis.plot(steps, values, style, marker="o", markersize=3, color=colors[rate],
                          label=f"{rate} kbps" if run is runs[0] else None)
        loss_steps = [r["step"] for r in run.losses]
        for index, name in enumerate(LOSSES):
            values = np.array([r["losses"].get(name, np.nan) for r in run.losses], dtype=float)
            axes[2].plot(loss_steps, smoothed(values, LOSS_WINDOW), style, color=f"C{len(rates) + index}",
                         label=name if run is runs[0] else None)
    for axis, (metric, title) in zip(axes, METRICS.items(), strict=False):
        axis.set(title=f"dev {title}", xlabel="step", ylabel=metric)
        axis.legend(fontsize="small")
    axes[2].set(title=f"training losses (mean of {LOSS_WINDOW} logged points)", xlabel="step")
    axes[2].legend(fontsize="small")
    return figure


def markdown(runs: Sequence[Run], rates: Sequence[str]) -> str:
    header = ["run", "step", *(f"{title} @ {rate}" for title in METRICS.values() for rate in rates)]
    rows = [
        [run.name, str(e["step"]), *(number(e["eval"].get(f"{m}@{rate}"), 3) for m in METRICS for rate in rates)]
        for run in runs for e in run.evaluations
    ]
    names = ", ".join(f"`{run.name}` ({LINE_STYLES[i % len(LINE_STYLES)]!r})" for i, run in enumerate(runs))
    return (f"# Training curves\n\nRuns, in order (line style): {names}. Dev evaluation: offline encode "
            f"and decode of the trainer's dev clips at each bitrate.\n\n" + markdown_table(header, rows))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders of `rtcodec train`, in training order")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    runs = [read_run(folder) for folder in args.runs]
    rates = bitrates(runs)
    data = {"runs": [{"name": run.name, "evaluations": run.evaluations} for run in runs]}
    for path in write_results(args.out, "training", data, markdown(runs, rates), plot(runs, rates)):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
