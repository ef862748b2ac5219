"""Quick runs of the benchmark scripts, as a user runs them, on tiny inputs and a tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rtcodec.audio import write_wav
from rtcodec.config import FRAME_SAMPLES, SAMPLE_RATE, CodecConfig
from rtcodec.model import NeuralCodec
from rtcodec.opus import OpusStreamEncoder

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
    opus_levels = data["conditions"][1]["band_levels"]
    assert abs(opus_levels["500-1000 Hz"]) < 3 and opus_levels["6000-8000 Hz"] < -15  # Opus 6 kbps is narrowband
    assert "## Spectral balance" in (out / "quality.md").read_text()
    opus_pitch = data["conditions"][1]["pitch"]
    assert opus_pitch["median_percent"] < 1 and opus_pitch["within_tolerance"] > 0.5  # Opus keeps the pitch
    assert "## Pitch" in (out / "quality.md").read_text()


def test_latency_writes_results(tiny_weights: Path, tmp_path: Path) -> None:
    """--quick, made smaller still: every section runs (compute, loopback and relayed calls) and
    the results hold the expected keys. No timing is asserted: the machine is shared."""
    out = tmp_path / "out"
    result = run_benchmark(
        "latency.py", "--quick", "--frames", "10", "--call-seconds", "1", "--jitter", "10",
        "--weights", tiny_weights, "--codecs", "rtcodec", "opus",
        "--rtcodec-kbps", "3", "--opus-kbps", "6", "--out", out,
    )
    assert_succeeded(result)
    data = json.loads((out / "latency.json").read_text())
    assert {"settings", "targets", "algorithmic", "compute", "calls", "checks"} <= data.keys()
    assert data["settings"]["frames"] == 10 and data["settings"]["call_seconds"] == 1

    algorithmic = {entry["codec"]: entry for entry in data["algorithmic"]}
    assert set(algorithmic) == {"rtcodec", "opus"}
    assert algorithmic["rtcodec"]["frame_ms"] == FRAME_SAMPLES / SAMPLE_RATE * 1000
    assert algorithmic["rtcodec"]["lookahead_samples"] == 0
    assert algorithmic["opus"]["lookahead_samples"] == OpusStreamEncoder(16).delay_samples
    assert algorithmic["opus"]["total_ms"] == pytest.approx(26.5)

    assert [c["label"] for c in data["compute"]] == [
        "rtcodec 3 kbps", "rtcodec 6 kbps (PyTorch reference)", "opus 6 kbps"
    ]
    for condition in data["compute"]:
        assert condition["frames"] == 10
        for direction in ("encode", "decode", "total"):
            assert {"p50_ms", "p99_ms", "max_ms", "mean_ms", "rtf"} <= condition[direction].keys()
        assert condition["rtf"] > 0

    assert [(c["codec"], c["kbps"], c["network"]["label"]) for c in data["calls"]] == [
        ("rtcodec", 6, "loopback"),
        ("opus", 16, "loopback"),
        ("rtcodec", 6, "relay 5 ms, jitter 10 ms"),
        ("opus", 16, "relay 5 ms, jitter 10 ms"),
    ]
    for call in data["calls"]:
        assert call["callee"]["frames_played"] > 0
        assert {"p50_ms", "p95_ms"} == call["measured"].keys() == call["mouth_to_ear"].keys()
        assert call["mouth_to_ear"]["p50_ms"] == pytest.approx(
            call["measured"]["p50_ms"] + call["algorithmic_ms"]
        )
        assert set(call["breakdown_ms"]) == {"algorithmic", "compute", "jitter_buffer", "network"}
        assert (call["relay"] is None) == (call["network"]["label"] == "loopback")
    assert {check["what"] for check in data["checks"]} >= {
        "rtcodec 3 kbps encode+decode p50", "rtcodec 6 kbps, loopback mouth-to-ear p50"
    }

    for name in ("latency.png", "latency_frames.png"):
        assert (out / name).stat().st_size > 0
    markdown = (out / "latency.md").read_text()
    assert "| rtcodec 6 kbps (PyTorch reference) |" in markdown
    assert "= mouth-to-ear p50 / p95" in markdown


def test_quality_without_data_says_so(tmp_path: Path) -> None:
    result = run_benchmark("quality.py", "--data", tmp_path / "none")
    assert result.returncode != 0
    assert "no speech data" in result.stderr


@pytest.mark.parametrize(("script", "option", "value"), [
    ("quality.py", "--max-files", "0"), ("quality.py", "--max-seconds", "0"),
    ("loss.py", "--max-seconds", "inf"), ("latency.py", "--jitter", "inf"),
    ("longcall.py", "--seed", "-1"), ("fuzz.py", "--packets", "-5"),
])
def test_an_out_of_range_option_is_a_usage_error(script: str, option: str, value: str, tmp_path: Path) -> None:
    result = run_benchmark(script, option, value, "--out", tmp_path)
    assert result.returncode == 2 and f"argument {option}: expected" in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("content", "message"), [(b"RIFF junk", "cannot read"), (None, "gives 0.50 s of audio")])
def test_a_file_that_cannot_be_scored_stops_the_run_naming_it(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    data, bad = tmp_path / "data", tmp_path / "data" / "bad.wav"
    data.mkdir()
    if content is None:
        write_wav(bad, np.zeros(SAMPLE_RATE // 2, dtype=np.float32))
    else:
        bad.write_bytes(content)
    result = run_benchmark("quality.py", "--data", data, "--codecs", "opus", "--out", tmp_path / "out")
    assert result.returncode == 1 and message in result.stderr and str(bad) in result.stderr
    assert "Traceback" not in result.stderr


def test_latency_refuses_a_model_without_its_reference_bitrate(tmp_path: Path) -> None:
    weights = tmp_path / "weights"
    NeuralCodec(CodecConfig(channels=4, latent_dim=32, bottleneck_hidden=32, num_codebooks=4)).save(weights)
    result = run_benchmark("latency.py", "--quick", "--codecs", "rtcodec", "--rtcodec-kbps", "1",
                           "--weights", weights, "--out", tmp_path / "out")
    assert result.returncode == 1 and "error: rtcodec 6 kbps" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_longcall_writes_results(tiny_weights: Path, tmp_path: Path) -> None:
    """--quick, made shorter still: both drifts run, RSS is read at every checkpoint, and the
    buffer corrects in the direction of the drift."""
    out = tmp_path / "out"
    result = run_benchmark(
        "longcall.py", "--quick", "--minutes", "0.5", "--weights", tiny_weights, "--out", out,
    )
    assert_succeeded(result)
    data = json.loads((out / "longcall.json").read_text())
    assert {"settings", "rss_at_start_mib", "rss_ready_mib", "runs", "checks"} <= data.keys()
    assert data["settings"]["label"] == "rtcodec 6 kbps" and data["settings"]["minutes"] == 0.5
    assert [run["drift"] for run in data["runs"]] == [0.01, -0.01]
    for run in data["runs"]:
        readings = run["rss"]["readings"]
        assert [reading["at"] for reading in readings] == [
            "warm-up", "checkpoint", "end of call", "after the call"
        ]  # at 10, 20, 29.98 s (the last frame sent), and once the call is over
        assert all(reading["rss_mib"] > 0 for reading in readings)
        assert run["stats"]["frames_sent"] == 1500
        assert len(run["series"]["delay_mean_ms"]) >= 30 and run["series"]["bin_s"] == 1
        assert 0 < run["delay_ms"]["min"] <= run["delay_ms"]["max"]
    fast, slow = (run["corrections"] for run in data["runs"])
    assert fast["stretched"] > 0 == fast["skipped"] and slow["skipped"] > 0 == slow["stretched"]
    assert len(data["checks"]) == 10
    assert (out / "longcall.png").stat().st_size > 0
    assert "| +1.0% | 1500 |" in (out / "longcall.md").read_text()


def test_training_curves_read_the_trainer_logs(tmp_path: Path) -> None:
    runs = [tmp_path / "first", tmp_path / "second"]
    for index, run in enumerate(runs):
        run.mkdir()
        records = [{"step": 100 * index + step, "losses": {"mel": 3.0 - step / 100, "complex": 1.3}}
                   for step in range(0, 100, 50)]
        records.append({"step": 100 * index + 99, "eval": {"pesq@3": 1.1 + index, "stoi@3": 0.6 + index / 10}})
        (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "out"
    assert_succeeded(run_benchmark("training.py", *runs, "--out", out))
    data = json.loads((out / "training.json").read_text())
    assert [[e["step"] for e in run["evaluations"]] for run in data["runs"]] == [[99], [199]]
    assert "| second | 199 | 0.700 | 2.100 |" in (out / "training.md").read_text()
    assert (out / "training.png").stat().st_size > 0


def test_training_curves_read_a_log_that_is_still_being_written(tmp_path: Path) -> None:
    records = ['{"step": 50, "losses": {"mel": 3.0}}', '{"step": 99, "eval": {"pesq@3": NaN, "stoi@3": 0.6}}',
               '{"step": 100, "losses": {"mel": 2.']  # NaN as json.dumps writes it; a half-written line
    (tmp_path / "log.jsonl").write_text("\n".join(records))
    assert_succeeded(run_benchmark("training.py", tmp_path, "--out", tmp_path / "out"))
    data = json.loads((tmp_path / "out" / "training.json").read_text())
    assert data["runs"][0]["evaluations"] == [{"step": 99, "eval": {"pesq@3": None, "stoi@3": 0.6}}]
    (tmp_path / "log.jsonl").write_text("\n".join([records[2], *records[:2]]))
    result = run_benchmark("training.py", tmp_path, "--out", tmp_path / "out")
    assert result.returncode == 1 and "log.jsonl:1 is not a JSON record" in result.stderr


def test_training_curves_name_a_folder_without_a_log(tmp_path: Path) -> None:
    result = run_benchmark("training.py", tmp_path, "--out", tmp_path / "out")
    assert result.returncode != 0 and "log.jsonl does not exist" in result.stderr
