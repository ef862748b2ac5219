"""Quick runs of the benchmark scripts, as a user runs them, on tiny inputs and a tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rtcodec.config import CodecConfig
from rtcodec.model import NeuralCodec

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def tiny_weights(tmp_path: Path) -> Path:
    """An untrained, very small rtcodec model saved as a weights folder."""
    directory = tmp_path / "weights"
    NeuralCodec(CodecConfig(channels=4, latent_dim=32, bottleneck_hidden=32)).save(directory)
    return directory


def run_benchmark(script: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run benchmarks/`script` in a fresh one-thread interpreter, as a user would."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(BENCHMARKS / script), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=120)


def assert_succeeded(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr


def test_quality_writes_results(shared_data: Path, tiny_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_benchmark(
        "quality.py", "--data", shared_data / "dev", "--max-files", "1", "--max-seconds", "2",
        "--weights", tiny_weights, "--codecs", "rtcodec", "opus",
        "--rtcodec-kbps", "6", "--opus-kbps", "6", "--out", out,
    )
    assert_succeeded(result)
    data = json.loads((out / "quality.json").read_text())
    assert {"settings", "reference", "conditions", "ratios"} <= data.keys()
    assert [c["label"] for c in data["conditions"]] == ["rtcodec 6 kbps", "opus 6 kbps"]
    for condition in data["conditions"]:
        assert {"kbps_payload", "kbps_total", "metrics", "files"} <= condition.keys()
        assert set(condition["metrics"]) == {
            "pesq_wb", "stoi", "estoi", "dnsmos_ovrl", "dnsmos_p808"
        }
        assert condition["kbps_total"] > condition["kbps_payload"] > 0
    assert data["ratios"][0]["opus"] == "opus 6 kbps"
    assert (out / "quality.png").stat().st_size > 0
    assert "| rtcodec 6 kbps |" in (out / "quality.md").read_text()
    assert any((out / "clips").glob("*__rtcodec_6kbps.wav"))


def test_speed_writes_results(tiny_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_benchmark(
        "speed.py", "--weights", tiny_weights, "--frames", "10", "--codecs", "rtcodec", "opus",
        "--rtcodec-kbps", "3", "--opus-kbps", "6", "--out", out,
    )
    assert_succeeded(result)
    data = json.loads((out / "speed.json").read_text())
    assert data["settings"]["frames"] == 10
    assert [c["label"] for c in data["conditions"]] == ["rtcodec 3 kbps", "opus 6 kbps"]
    for condition in data["conditions"]:
        for direction in ("encode", "decode"):
            assert {"p50_ms", "p99_ms", "max_ms", "mean_ms", "rtf"} <= condition[direction].keys()
        assert condition["rtf"] > 0
    assert (out / "speed.png").stat().st_size > 0
    assert (out / "speed.md").is_file()


def test_quality_without_data_says_so(tmp_path: Path) -> None:
    result = run_benchmark("quality.py", "--data", tmp_path / "none")
    assert result.returncode != 0
    assert "no speech data" in result.stderr
