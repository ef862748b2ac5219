"""`rtcodec encode / decode / info`: round trips over formats and rates, sizes, and clean failures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from rtcodec.bitstream import HEADER_BYTES, packed_size, read_rtc
from rtcodec.cli import main
from rtcodec.config import FRAME_RATE, FRAME_SAMPLES, SAMPLE_RATE, CodecConfig, codebooks_for_kbps
from rtcodec.model import NeuralCodec

SMALL = CodecConfig(channels=4, latent_dim=32, bottleneck_hidden=32, model_id="tiny-test")


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("weights")
    NeuralCodec(SMALL).save(directory)
    return directory


def _write_input(path: Path, rate: int, channels: int, seconds: float = 1.0) -> None:
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t)
    soundfile.write(path, np.stack([tone] * channels, axis=1), rate)


@pytest.mark.parametrize("rate", [16000, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_round_trip(tmp_path: Path, weights: Path, rate: int, channels: int, suffix: str) -> None:
    source, packed, decoded = tmp_path / f"in{suffix}", tmp_path / "x.rtc", tmp_path / "out.wav"
    _write_input(source, rate, channels)
    assert main(["encode", str(source), str(packed), "--kbps", "6", "--weights", str(weights)]) == 0
    assert main(["decode", str(packed), str(decoded), "--weights", str(weights)]) == 0
    audio, out_rate = soundfile.read(decoded)
    assert out_rate == SAMPLE_RATE and audio.ndim == 1
    assert len(audio) == int(np.ceil(SAMPLE_RATE / FRAME_SAMPLES)) * FRAME_SAMPLES


@pytest.mark.parametrize(("codec", "kbps"), [("rtcodec", 6.0), ("rtcodec", 1.5), ("opus", 12.0)])
def test_rtc_size_matches_bitrate(tmp_path: Path, weights: Path, codec: str, kbps: float) -> None:
    source, packed = tmp_path / "in.wav", tmp_path / "x.rtc"
    _write_input(source, SAMPLE_RATE, 1, seconds=2.0)
    assert main(["encode", str(source), str(packed), "--kbps", str(kbps), "--codec", codec, "--weights", str(weights)]) == 0
    header, packets = read_rtc(packed)
    payload = sum(len(p) - HEADER_BYTES for p in packets)
    seconds = len(packets) / FRAME_RATE
    if codec == "rtcodec":
        codes_per_frame = codebooks_for_kbps(kbps)
        assert payload == packed_size(codes_per_frame) * len(packets)  # codes padded to whole bytes
        assert kbps != 6.0 or payload == 750 * seconds
    else:
        assert 0.5 * kbps * 1000 / 8 * seconds < payload < 1.2 * kbps * 1000 / 8 * seconds
    assert header.model_id == ("opus" if codec == "opus" else "tiny-test")


def test_info(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, packed = tmp_path / "in.wav", tmp_path / "x.rtc"
    _write_input(source, SAMPLE_RATE, 1)
    main(["encode", str(source), str(packed), "--kbps", "3", "--weights", str(weights)])
    assert main(["info", str(packed)]) == 0
    assert "model tiny-test" in capsys.readouterr().out


def _bad_inputs(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not audio at all")
    soundfile.write(tmp_path / "silent0.wav", np.zeros(0), SAMPLE_RATE)
    return {"missing": tmp_path / "nope.wav", "empty": tmp_path / "empty.wav",
            "text": tmp_path / "notes.txt", "zero_samples": tmp_path / "silent0.wav", "directory": tmp_path}


@pytest.mark.parametrize("case", ["missing", "empty", "text", "zero_samples", "directory"])
def test_bad_input_is_one_line_error(tmp_path: Path, weights: Path, case: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "out.rtc"
    code = main(["encode", str(_bad_inputs(tmp_path)[case]), str(output), "--kbps", "6", "--weights", str(weights)])
    error = capsys.readouterr().err
    assert code != 0
    assert error.startswith("rtcodec encode: error:") and error.count("\n") == 1
    assert not output.exists()


@pytest.mark.parametrize("kbps", ["5.2", "0", "100", "nan", "-3"])
def test_unknown_bitrate_is_refused(tmp_path: Path, weights: Path, kbps: str, capsys: pytest.CaptureFixture[str]) -> None:
    source, output = tmp_path / "in.wav", tmp_path / "out.rtc"
    _write_input(source, SAMPLE_RATE, 1)
    assert main(["encode", str(source), str(output), "--kbps", kbps, "--weights", str(weights)]) != 0
    assert "kbps" in capsys.readouterr().err
    assert not output.exists()


def test_no_traceback_in_a_real_process(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "rtcodec.cli", "decode", str(tmp_path / "nope.rtc"), str(tmp_path / "o.wav")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
