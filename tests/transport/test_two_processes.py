"""`rtcodec call` as separate processes: TCP signalling with a token, media both ways, Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile

from rtcodec.audio import write_wav
from rtcodec.config import FRAME_SAMPLES, SAMPLE_RATE
from rtcodec.transport.signalling import BLOB_PREFIX

SECONDS = 2.0


def _tone(frequency: float) -> np.ndarray:
    t = np.arange(int(SECONDS * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def _call(role: str, address: str, side: str, tmp_path: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "rtcodec.cli", "call", f"--{role}", address, "--token", "open-sesame",
               "--codec", "opus", "--kbps", "16", "--input", str(tmp_path / f"{side}-in.wav"),
               "--output", str(tmp_path / f"{side}-out.wav"), "--stats", str(tmp_path / f"{side}.json")]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _listening_address(listener: subprocess.Popen[str]) -> str:
    """The HOST:PORT that a `call --listen HOST:0` process says it bound, once it has."""
    assert listener.stderr is not None
    for line in listener.stderr:
        if line.startswith("listening on "):
            return line.split()[2].rstrip(";")
    raise AssertionError(f"the listener exited without listening (status {listener.wait()})")


def test_two_processes_call_each_other_and_both_hear_the_other(tmp_path: Path) -> None:
    write_wav(tmp_path / "a-in.wav", _tone(300))
    write_wav(tmp_path / "b-in.wav", _tone(500))
    listener = _call("listen", "127.0.0.1:0", "a", tmp_path)
    address = _listening_address(listener)
    caller = _call("connect", address, "b", tmp_path)
    for process in (caller, listener):
        _, errors = process.communicate(timeout=60)
        assert process.returncode == 0, errors[-2000:]
    for side, heard in (("a", 500), ("b", 300)):
        stats = json.loads((tmp_path / f"{side}.json").read_text())
        assert stats["packets_received"] >= 0.9 * SECONDS * SAMPLE_RATE / FRAME_SAMPLES
        audio, rate = soundfile.read(tmp_path / f"{side}-out.wav")
        spectrum = np.abs(np.fft.rfft(audio))
        assert rate == SAMPLE_RATE
        assert abs(np.argmax(spectrum) * rate / len(audio) - heard) < 20


def test_a_caller_with_the_wrong_token_is_refused_and_the_listener_waits_for_the_right_one(tmp_path: Path) -> None:
    write_wav(tmp_path / "a-in.wav", _tone(300))
    write_wav(tmp_path / "b-in.wav", _tone(500))
    listener = _call("listen", "127.0.0.1:0", "a", tmp_path)
    address = _listening_address(listener)
    command = [sys.executable, "-m", "rtcodec.cli", "call", "--connect", address, "--token", "guess",
               "--codec", "opus", "--kbps", "16", "--input", str(tmp_path / "b-in.wav"),
               "--output", str(tmp_path / "x.wav")]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert "token" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "x.wav").exists()
    caller = _call("connect", address, "b", tmp_path)
    _, caller_errors = caller.communicate(timeout=60)
    _, listener_errors = listener.communicate(timeout=60)
    assert caller.returncode == listener.returncode == 0, (caller_errors + listener_errors)[-2000:]
    assert "wrong token; still waiting for the caller" in listener_errors


def test_ctrl_c_while_waiting_for_a_pasted_answer_ends_the_call(tmp_path: Path) -> None:
    write_wav(tmp_path / "a-in.wav", _tone(300))
    command = [sys.executable, "-m", "rtcodec.cli", "call", "--paste", "offer", "--codec", "opus", "--kbps", "16",
               "--input", str(tmp_path / "a-in.wav"), "--output", str(tmp_path / "a-out.wav")]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as offering:
        assert offering.stdout is not None and offering.stderr is not None
        try:
            assert any(line.startswith(BLOB_PREFIX) for line in offering.stdout)  # the offer is out; stdin stays open
            offering.send_signal(signal.SIGINT)
            offering.wait(timeout=30)  # a hang, not a timing: 0.6 s idle, 2.5 s under load, once over 10 s
        finally:
            offering.kill()
        errors = offering.stderr.read()
    assert offering.returncode != 0 and "interrupted" in errors and "Traceback" not in errors
