"""benchmarks/loss.py, run as a user runs it, on one short file and a tiny untrained model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rtcodec.config import CodecConfig
from rtcodec.model import NeuralCodec

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "loss.py"


@pytest.fixture
def tiny_weights(tmp_path: Path) -> Path:
    directory = tmp_path / "weights"
    NeuralCodec(CodecConfig(channels=4, latent_dim=32, bottleneck_hidden=32)).save(directory)
    return directory


def test_loss_benchmark_writes_results(shared_data: Path, tiny_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [
        sys.executable, str(SCRIPT), "--data", str(shared_data / "dev"), "--max-files", "1",
        "--max-seconds", "2", "--weights", str(tiny_weights), "--losses", "0", "10",
        "--patterns", "random", "ge2", "--redundancy", "2", "--opus-kbps", "16", "--out", str(out),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[1/1]" in result.stdout and "ge2 10%" in result.stdout  # progress
    data = json.loads((out / "loss.json").read_text())
    labels = [condition["label"] for condition in data["conditions"]]
    assert labels == ["rtcodec 6 kbps concealment", "rtcodec 6 kbps + redundancy 2",
                      "opus 16 kbps PLC", "opus 16 kbps + FEC"]
    assert data["settings"]["points"] == ["no loss", "random 10%", "ge2 10%"]
    redundant = data["conditions"][1]
    assert redundant["codes_kbps"] == 9.0
    assert redundant["kbps_total"] > redundant["kbps_payload"] > 9.0  # counts, padding, header
    for condition in data["conditions"]:
        for point in condition["points"]:
            assert set(point["metrics"]) == {"pesq_wb", "stoi", "plcmos"}
            assert (point["measured_loss"] == 0) == (point["loss"] == 0)
    # Every condition saw the same losses at each point.
    for index in range(3):
        assert len({condition["points"][index]["measured_loss"] for condition in data["conditions"]}) == 1
    target = data["target"]
    assert target["point"] == "ge2 10%" and target["verdicts"][0]["rtcodec"] == labels[1]
    assert (out / "loss.png").read_bytes().startswith(b"\x89PNG")
    markdown = (out / "loss.md").read_text()
    assert "| rtcodec 6 kbps + redundancy 2 | 9.00 |" in markdown and "## Target" in markdown
    assert sum(point["recovered"] for point in redundant["points"]) > 0
    rebuilt = [f"{point['recovered']} of {point['concealed']}" for point in redundant["points"][1:]]
    assert f"| rtcodec 6 kbps + redundancy 2 | {' | '.join(rebuilt)} |" in markdown
