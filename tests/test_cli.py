"""`rtcodec encode / decode / info`: round trips over formats and rates, sizes, and clean failures."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest
import soundfile

import rtcodec
from rtcodec import cli
from rtcodec.audio import frames, read_audio
from rtcodec.bitstream import (
    HEADER_BYTES,
    RTC_FORMAT_VERSION,
    RTC_MAGIC,
    Packet,
    RtcHeader,
    read_rtc,
    write_rtc,
)
from rtcodec.cli import main
from rtcodec.config import FRAME_RATE, FRAME_SAMPLES, SAMPLE_RATE, CodecConfig
from rtcodec.model import CONFIG_FILE, NeuralCodec

SMALL = CodecConfig(channels=4, latent_dim=32, bottleneck_hidden=32, model_id="tiny-test")


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("weights")
    NeuralCodec(SMALL).save(directory)
    return directory


@pytest.fixture(scope="module")
def good_rtc(tmp_path_factory: pytest.TempPathFactory, weights: Path) -> Path:
    """One second of tone at 6 kbps, from the tiny model."""
    directory = tmp_path_factory.mktemp("good")
    source, packed = directory / "in.wav", directory / "good.rtc"
    _write_input(source, SAMPLE_RATE, 1)
    assert main(["encode", str(source), str(packed), "--kbps", "6", "--weights", str(weights)]) == 0
    return packed


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
    audio, out_rate = soundfile.read(decoded, dtype="float32")
    assert out_rate == SAMPLE_RATE and audio.ndim == 1
    assert len(audio) == int(np.ceil(SAMPLE_RATE / FRAME_SAMPLES)) * FRAME_SAMPLES
    codec = rtcodec.load(weights)  # the same stream, in process: the file holds what it decodes to
    encoder, decoder = codec.stream_encoder(6.0), codec.stream_decoder()
    expected = np.concatenate([decoder.push(Packet.parse(encoder.push(frame))) for frame in frames(read_audio(source))])
    assert np.abs(audio - expected).max() <= 1 / 32768 and np.abs(expected).max() > 0.01


@pytest.mark.parametrize(("codec", "kbps"), [("rtcodec", 6.0), ("rtcodec", 1.5), ("opus", 12.0)])
def test_rtc_size_matches_bitrate(tmp_path: Path, weights: Path, codec: str, kbps: float) -> None:
    source, packed = tmp_path / "in.wav", tmp_path / "x.rtc"
    _write_input(source, SAMPLE_RATE, 1, seconds=2.0)
    assert main(["encode", str(source), str(packed), "--kbps", str(kbps), "--codec", codec,
                 "--weights", str(weights)]) == 0
    header, packets = read_rtc(packed)
    payload = sum(len(p) - HEADER_BYTES for p in packets)
    seconds = len(packets) / FRAME_RATE
    if codec == "rtcodec":  # 10-bit codes, padded to whole bytes: 12 codes in 15 bytes, 3 in 4
        assert payload == {6.0: 750, 1.5: 200}[kbps] * seconds
    else:
        assert 0.5 * kbps * 1000 / 8 * seconds < payload < 1.2 * kbps * 1000 / 8 * seconds
    assert header.model_id == ("opus" if codec == "opus" else "tiny-test")


def test_info(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, packed = tmp_path / "in.wav", tmp_path / "x.rtc"
    _write_input(source, SAMPLE_RATE, 1)
    main(["encode", str(source), str(packed), "--kbps", "3", "--weights", str(weights)])
    assert main(["info", str(packed)]) == 0
    assert "model tiny-test" in capsys.readouterr().out


# --- bad inputs: one line on stderr, exit status 1, no output and no temporary file ----------


def assert_fails_cleanly(argv: list[str], capsys: pytest.CaptureFixture[str], out_dir: Path,
                         match: str = "") -> None:
    """`rtcodec argv` exits with 1 and one line "rtcodec COMMAND: error: ...", containing `match`,
    and leaves `out_dir` (where its output would go) empty."""
    code = main(argv)
    error = capsys.readouterr().err
    assert code == 1, error
    assert error.startswith(f"rtcodec {argv[0]}: error:") and error.count("\n") == 1, error
    assert match in error
    assert list(out_dir.iterdir()) == []


def _bad_audio(directory: Path) -> dict[str, Path]:
    good = directory / "good.wav"
    _write_input(good, SAMPLE_RATE, 1)
    soundfile.write(directory / "silent0.wav", np.zeros(0), SAMPLE_RATE)
    soundfile.write(directory / "nan.wav", np.array([0.1, np.nan, 0.2], dtype=np.float32), SAMPLE_RATE,
                    subtype="FLOAT")
    files = {"empty.wav": b"", "notes.txt": b"not audio at all", "random.bin": bytes(range(256)) * 20,
             "corrupt.wav": good.read_bytes()[:12] + bytes(range(256)) * 4}
    for name, content in files.items():
        (directory / name).write_bytes(content)
    return {"missing": directory / "nope.wav", "empty": directory / "empty.wav",
            "text": directory / "notes.txt", "binary": directory / "random.bin",
            "corrupt_wav": directory / "corrupt.wav", "zero_samples": directory / "silent0.wav",
            "nan": directory / "nan.wav", "directory": directory}


@pytest.mark.parametrize("case", ["missing", "empty", "text", "binary", "corrupt_wav", "zero_samples",
                                  "nan", "directory"])
def test_bad_audio_input_is_one_line_error(tmp_path: Path, weights: Path, case: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    source = _bad_audio(tmp_path)[case]
    argv = ["encode", str(source), str(out_dir / "x.rtc"), "--kbps", "6", "--weights", str(weights)]
    assert_fails_cleanly(argv, capsys, out_dir, match=f"cannot read '{source}'")


def test_broken_weights_are_a_one_line_error(tmp_path: Path, weights: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    broken, out_dir, source = tmp_path / "broken", tmp_path / "out", tmp_path / "in.wav"
    shutil.copytree(weights, broken)
    (broken / CONFIG_FILE).write_text((weights / CONFIG_FILE).read_text().replace('"channels": 4', '"channels": "4"'))
    _write_input(source, SAMPLE_RATE, 1)
    out_dir.mkdir()
    argv = ["encode", str(source), str(out_dir / "x.rtc"), "--kbps", "6", "--weights", str(broken)]
    assert_fails_cleanly(argv, capsys, out_dir, match="channels must be an integer")


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_an_output_that_cannot_be_written_is_refused_before_the_work(
    tmp_path: Path, weights: Path, good_rtc: Path, command: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = tmp_path / "in.wav"
    _write_input(source, SAMPLE_RATE, 1)

    def work(*args: object) -> NoReturn:
        raise AssertionError("the input was read before the output was checked")

    monkeypatch.setattr(cli, "read_audio", work)
    monkeypatch.setattr(cli, "read_rtc", work)
    inputs = {"encode": [str(source)], "decode": [str(good_rtc)]}[command]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for output, match in ((out_dir / "no" / "x", "no such directory"), (out_dir, "it is a directory")):
        argv = [command, *inputs, str(output), "--weights", str(weights)]
        assert_fails_cleanly(argv + (["--kbps", "6"] if command == "encode" else []), capsys, out_dir, match)


@pytest.mark.parametrize(("codec", "kbps"), [("rtcodec", "5.2"), ("rtcodec", "0"), ("rtcodec", "100"),
                                             ("rtcodec", "nan"), ("rtcodec", "-3"), ("rtcodec", "inf"),
                                             ("opus", "3"), ("opus", "600"), ("opus", "nan")])
def test_unknown_bitrate_is_refused(tmp_path: Path, weights: Path, codec: str, kbps: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    source, out_dir = tmp_path / "in.wav", tmp_path / "out"
    _write_input(source, SAMPLE_RATE, 1)
    out_dir.mkdir()
    argv = ["encode", str(source), str(out_dir / "x.rtc"), "--kbps", kbps, "--codec", codec,
            "--weights", str(weights)]
    assert_fails_cleanly(argv, capsys, out_dir, match="kbps")


def test_a_bitrate_that_is_not_a_number_is_a_one_line_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["encode", str(tmp_path / "in.wav"), str(tmp_path / "x.rtc"), "--kbps", "fast"])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and list(tmp_path.iterdir()) == []
    assert error == "rtcodec encode: error: argument --kbps: invalid float value: 'fast' (see rtcodec encode -h)\n"


@pytest.mark.parametrize(("options", "error"), [
    (["--codec", "opus", "--kbps", "3"], "Opus bitrate"), (["--kbps", "5.2"], "unsupported bitrate"),
    (["--codec", "opus", "--redundancy", "1"], "--redundancy is for rtcodec"), (["--fec"], "--fec is for Opus"),
    (["--codec", "opus", "--fec", "--expected-loss", "101"], "packet_loss_perc"),
    (["--input", "missing.wav"], "cannot read 'missing.wav'"),
])
def test_a_demo_with_bad_settings_writes_nothing(
    tmp_path: Path, weights: Path, options: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv = ["demo", "--out", str(out_dir / "demo"), "--weights", str(weights), *options]
    assert_fails_cleanly(argv, capsys, out_dir, match=error)


@pytest.mark.parametrize(("options", "error"), [
    (["--codec", "opus", "--redundancy", "2"], "--redundancy is for rtcodec"),
    (["--fec"], "--fec is for Opus"),
])
def test_a_call_refuses_the_other_codecs_loss_options(
    tmp_path: Path, options: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["call", "--listen", "127.0.0.1:1", "--output", str(tmp_path / "x.wav"), *options]
    assert_fails_cleanly(argv, capsys, tmp_path, match=error)


@pytest.mark.parametrize(("outputs", "error"), [
    (["--output", "{tmp}"], "it is a directory"),
    (["--output", "{tmp}/x.wav", "--stats", "{tmp}/missing/stats.json"], "no such directory"),
    ([], "no usable audio output device"),
    (["--output-device", "no such speaker"], "no usable audio output device ('no such speaker')"),
])
def test_a_call_checks_its_outputs_before_it_waits_for_a_caller(
    tmp_path: Path, outputs: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if not outputs and _has_output_device():
        pytest.skip("this machine has a speaker")
    source = tmp_path / "in.wav"
    _write_input(source, SAMPLE_RATE, 1)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv = ["call", "--listen", "127.0.0.1:0", "--input", str(source), *(o.format(tmp=out_dir) for o in outputs)]
    assert_fails_cleanly(argv, capsys, out_dir, match=error)  # at once: it never listened


def _has_output_device() -> bool:
    try:
        rtcodec.devices.SpeakerSink().close()
    except rtcodec.audio.AudioError:
        return False
    return True


@pytest.mark.parametrize(("options", "expected"), [
    (["--codec", "opus", "--kbps", "24", "--fec"], cli.FEC_EXPECTED_LOSS),
    (["--codec", "opus", "--kbps", "24", "--fec", "--expected-loss", "25"], 25),
    (["--codec", "opus", "--kbps", "24"], 0),
])
def test_opus_fec_in_a_call_is_tuned_for_some_loss_unless_told(options: list[str], expected: int) -> None:
    args = cli._parser().parse_args(["demo", *options])
    assert cli._spec(args).packet_loss_perc == expected


def _bad_rtc(path: Path, case: str) -> bytes:
    """A damaged copy of the .rtc file at `path`."""
    good = path.read_bytes()
    packets_start = len(good) - sum(2 + len(record) for record in read_rtc(path)[1])
    header, packets = good[:packets_start], good[packets_start:]
    bad_packet = _record(b"\x07\x00\x00\x00\x00")  # version 7
    opus_packet = _record(Packet(0, np.zeros(0, dtype=np.int64), opus=b"\x08").to_bytes())
    return {
        "empty": b"",
        "wav": b"RIFF" + good[4:],
        "truncated_header": good[:10],
        "truncated": good[:-7],
        "wrong_version": good[:4] + bytes([RTC_FORMAT_VERSION + 1]) + good[5:],
        "garbage_after_header": header + bytes(range(256)) * 8,
        "bad_packet": header + bad_packet + packets,
        "empty_packet": header + _record(b"") + packets,
        "other_codec_packet": header + opus_packet + packets,
    }[case]


def _record(packet: bytes) -> bytes:
    return len(packet).to_bytes(2, "big") + packet


BAD_RTC = {"missing": "No such file", "empty": "truncated", "wav": "not an .rtc file",
           "truncated_header": "truncated", "truncated": "truncated", "wrong_version": "format version 2",
           "garbage_after_header": "truncated", "bad_packet": "packet 0: unsupported packet version 7",
           "empty_packet": "packet 0: packet truncated", "other_codec_packet": "packet 0 is an Opus packet",
           "directory": "Is a directory"}
"""Damaged .rtc inputs, and what their error says."""


@pytest.mark.parametrize("command", ["decode", "info"])
@pytest.mark.parametrize("case", BAD_RTC)
def test_bad_rtc_file_is_one_line_error(tmp_path: Path, weights: Path, good_rtc: Path, command: str,
                                        case: str, capsys: pytest.CaptureFixture[str]) -> None:
    source, out_dir = tmp_path / "in.rtc", tmp_path / "out"
    out_dir.mkdir()
    if case == "directory":
        source = tmp_path
    elif case != "missing":
        source.write_bytes(_bad_rtc(good_rtc, case))
    argv = [command, str(source)]
    if command == "decode":
        argv += [str(out_dir / "x.wav"), "--weights", str(weights)]
    assert_fails_cleanly(argv, capsys, out_dir, match=BAD_RTC[case])


@pytest.mark.parametrize(("header", "match"), [
    (RtcHeader(RTC_FORMAT_VERSION, 8000, FRAME_SAMPLES, "tiny-test", 6.0), "8000 Hz"),
    (RtcHeader(RTC_FORMAT_VERSION, SAMPLE_RATE, FRAME_SAMPLES, "other-model", 6.0), "model 'other-model'"),
])
def test_an_rtc_file_this_build_cannot_decode_is_refused(
    tmp_path: Path, weights: Path, header: RtcHeader, match: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source, out_dir = tmp_path / "in.rtc", tmp_path / "out"
    out_dir.mkdir()
    write_rtc(source, [], header)
    argv = ["decode", str(source), str(out_dir / "x.wav"), "--weights", str(weights)]
    assert_fails_cleanly(argv, capsys, out_dir, match=match)


@pytest.mark.parametrize("command", ["encode", "decode", "info"])
def test_no_traceback_in_a_real_process(tmp_path: Path, command: str) -> None:
    truncated = tmp_path / "truncated.rtc"
    truncated.write_bytes(RTC_MAGIC + bytes([RTC_FORMAT_VERSION]))
    argv = {"encode": ["encode", str(truncated), str(tmp_path / "x.rtc"), "--kbps", "6", "--codec", "opus"],
            "decode": ["decode", str(tmp_path / "nope.rtc"), str(tmp_path / "o.wav")],
            "info": ["info", str(truncated)]}[command]
    result = subprocess.run([sys.executable, "-m", "rtcodec.cli", *argv], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith(f"rtcodec {command}: error:") and result.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == [truncated]


# --- very long inputs --------------------------------------------------------------------------

LONG_SECONDS = 30 * 60
MAX_MEMORY_PER_AUDIO_BYTE = {"encode": 2.5, "decode": 1.5}
"""Peak traced memory over the bytes of the audio as float32 (115 MB for LONG_SECONDS): encode
holds the samples as read and as resampled; decode the decoded audio."""


@pytest.fixture(scope="session")
def long_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LONG_SECONDS of low-amplitude noise, 16 kHz mono 16-bit (58 MB), written once."""
    path = tmp_path_factory.mktemp("long") / "long.wav"
    rng = np.random.default_rng(0)
    with soundfile.SoundFile(path, "w", SAMPLE_RATE, 1, "PCM_16") as file:
        for _ in range(LONG_SECONDS // 60):
            file.write(0.01 * rng.standard_normal(60 * SAMPLE_RATE))
    return path


class NullEncoder:
    """A codec that costs nothing per frame: what is measured is the command's own memory."""

    name = "null"
    kbps = 0.5
    packet = Packet(0, np.zeros(1, dtype=np.int64)).to_bytes()

    def push(self, frame: np.ndarray) -> bytes:
        return self.packet


class NullDecoder:
    def push(self, packet: Packet | None, following: Sequence[Packet | None] = ()) -> np.ndarray:
        """A new frame each time, as the real decoders return."""
        return np.zeros(FRAME_SAMPLES, dtype=np.float32)


class NullSpec:
    """Stands in for CodecSpec in `rtcodec.cli`."""

    model_id = "null"

    def __init__(self, name: str, kbps: float, weights: Path | None = None) -> None:
        self.name = name

    def encoder(self) -> NullEncoder:
        return NullEncoder()

    def decoder(self) -> NullDecoder:
        return NullDecoder()


def peak_traced_bytes(argv: list[str]) -> int:
    """Run `rtcodec argv`, which must succeed; the peak of its traced memory (numpy included)."""
    tracemalloc.start()
    try:
        assert main(argv) == 0
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_30_minute_input_encodes_and_decodes_in_bounded_memory(
    tmp_path: Path, long_wav: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "CodecSpec", NullSpec)
    packed, decoded = tmp_path / "long.rtc", tmp_path / "long.wav"
    audio_bytes = LONG_SECONDS * SAMPLE_RATE * 4
    peaks = {"encode": peak_traced_bytes(["encode", str(long_wav), str(packed), "--kbps", "0.5"]),
             "decode": peak_traced_bytes(["decode", str(packed), str(decoded)])}
    for command, peak in peaks.items():
        assert peak < MAX_MEMORY_PER_AUDIO_BYTE[command] * audio_bytes, (command, peak / audio_bytes)
    assert soundfile.info(decoded).frames == LONG_SECONDS * SAMPLE_RATE


def test_train_loss_weights_cover_the_configs_weights_and_refuse_bad_ones() -> None:
    from rtcodec.train.trainer import TrainConfig

    names = [field.name for field in dataclasses.fields(TrainConfig)]
    assert [f"weight_{name}" for name in cli.LOSS_NAMES] == [name for name in names if name.startswith("weight_")]
    args = cli._parser().parse_args(["train", "data", "--loss-weight", "complex=2", "adversarial=0.5"])
    assert cli._schedule(args) == {"weight_complex": 2.0, "weight_adversarial": 0.5}
    for bad in ("complx=2", "complex=x", "complex=-1", "complex=inf", "complex"):
        with pytest.raises(SystemExit):
            cli._parser().parse_args(["train", "data", "--loss-weight", bad])
