"""The in-process packet path: determinism, lengths, statistics, and recovery by redundancy and
Opus FEC, with Opus and with an untrained tiny rtcodec; plus `rtcodec simulate`."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile

from rtcodec.audio import default_speech, frames, write_wav
from rtcodec.bitstream import HEADER_BYTES, Packet, packed_size
from rtcodec.cli import main
from rtcodec.codec import Codec, untrained
from rtcodec.config import FRAME_SAMPLES, CodecConfig
from rtcodec.model import NeuralCodec
from rtcodec.netsim import (
    AdaptivePlayout,
    Bernoulli,
    Delay,
    FixedPlayout,
    GilbertElliott,
    Network,
    Trace,
    opus_has_fec,
    simulate,
)
from rtcodec.netsim.simulate import Playout, SimulationStats
from rtcodec.opus import OpusStreamDecoder, OpusStreamEncoder

SECONDS = 3.0
FRAMES = int(SECONDS * 50)
LOSSY = Network(loss=GilbertElliott(0.15, 2), delay=Delay(40, jitter_ms=10))
TINY = CodecConfig(channels=4, latent_dim=32, bottleneck_hidden=32, model_id="tiny-test")


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return default_speech(SECONDS).audio


@pytest.fixture(scope="module")
def tiny() -> Codec:
    return untrained(TINY)


def opus_run(
    speech: np.ndarray, network: Network, seed: int = 0, playout: Playout | None = None
) -> tuple[np.ndarray, SimulationStats]:
    """16 kbps Opus through `network`."""
    encoder, decoder = OpusStreamEncoder(16), OpusStreamDecoder()
    return simulate(speech, encoder, decoder, network, seed=seed, playout=playout)


def test_the_same_seed_gives_the_same_result_bit_for_bit(speech: np.ndarray) -> None:
    first, first_stats = opus_run(speech, LOSSY, seed=5)
    again, again_stats = opus_run(speech, LOSSY, seed=5)
    other, other_stats = opus_run(speech, LOSSY, seed=6)
    assert np.array_equal(first, again) and first_stats == again_stats
    assert first_stats.lost > 0
    assert len(first) != len(other) or not np.array_equal(first, other)
    assert (first_stats.lost, first_stats.concealed) != (other_stats.lost, other_stats.concealed)


@pytest.mark.parametrize("playout", [AdaptivePlayout(), FixedPlayout(60)])
def test_without_loss_every_frame_is_played_once_as_offline_decoding(
    speech: np.ndarray, playout: AdaptivePlayout | FixedPlayout
) -> None:
    received, stats = opus_run(speech, Network(delay=Delay(30)), playout=playout)
    encoder, decoder = OpusStreamEncoder(16), OpusStreamDecoder()
    offline = np.concatenate([decoder.push(Packet.parse(encoder.push(f))) for f in frames(speech)])
    assert np.array_equal(received, offline)
    assert (stats.frames_sent, stats.frames_played) == (FRAMES, FRAMES)
    assert (stats.lost, stats.late, stats.concealed, stats.stretched) == (0, 0, 0, 0)


def test_fixed_playout_keeps_the_length_and_counts_what_it_conceals(speech: np.ndarray) -> None:
    received, stats = opus_run(speech, Network(loss=Bernoulli(0.2)), playout=FixedPlayout(60))
    assert received.shape == (FRAMES * FRAME_SAMPLES,) and received.dtype == np.float32
    assert np.isfinite(received).all()
    assert stats.lost == stats.network.lost == stats.concealed > 0
    assert stats.loss_rate == pytest.approx(0.2, abs=0.07)


def test_packets_later_than_a_fixed_playout_are_late_not_lost(speech: np.ndarray) -> None:
    network = Network(delay=Delay(50, jitter_ms=15))
    _, stats = opus_run(speech, network, playout=FixedPlayout(60))
    assert stats.lost == 0 and stats.late > 0 and stats.concealed == stats.late


def test_adaptive_playout_accounts_for_every_frame_sent(speech: np.ndarray) -> None:
    received, stats = opus_run(speech, LOSSY, seed=2)
    assert received.shape == (stats.frames_played * FRAME_SAMPLES,)
    assert np.isfinite(received).all()
    # Every index from the first packet that arrived to the last sent is played once or skipped;
    # held ticks add concealed frames on top.
    first_arrived = 0 if stats.lost == 0 else None
    if first_arrived is None:  # leading frames that never arrived are never played
        link = LOSSY.link(2)
        fates = [link.send(index * 0.02, 50) for index in range(FRAMES)]
        first_arrived = next(index for index, copies in enumerate(fates) if copies)
    assert stats.frames_played - stats.stretched + stats.skipped == FRAMES - first_arrived
    # Concealed: the frames missing at playout (lost, or late), unless skipped, and held ticks.
    assert stats.lost - first_arrived <= stats.concealed <= stats.lost - first_arrived + stats.late + stats.stretched


def test_duplicates_are_dropped_and_counted(speech: np.ndarray) -> None:
    received, stats = opus_run(speech, Network(duplicate=0.2, delay=Delay(20)), playout=FixedPlayout(60))
    assert stats.duplicate == stats.network.duplicated > 0
    assert received.shape == (FRAMES * FRAME_SAMPLES,) and stats.concealed == 0


def test_a_trace_drives_exactly_which_frames_are_concealed(speech: np.ndarray) -> None:
    lost = [index % 10 == 3 for index in range(FRAMES)]
    trace = Trace.per_packet(lost, [None if gone else 25.0 for gone in lost])
    _, stats = opus_run(speech, Network.replay(trace), playout=FixedPlayout(60))
    assert stats.lost == stats.concealed == sum(lost)


def test_opus_fec_rebuilds_lost_frames_only_when_it_is_on(speech: np.ndarray) -> None:
    network = Network(loss=Bernoulli(0.1))
    plc = simulate(speech, OpusStreamEncoder(24), OpusStreamDecoder(), network, playout=FixedPlayout(60))[1]
    fec = simulate(
        speech, OpusStreamEncoder(24, fec=True, packet_loss_perc=10), OpusStreamDecoder(), network,
        playout=FixedPlayout(60),
    )[1]
    assert plc.lost == fec.lost > 0  # the same seed: the same losses
    assert plc.recovered == 0
    assert 0 < fec.recovered <= fec.concealed


def test_the_opus_fec_flag_matches_what_the_decoder_does(speech: np.ndarray) -> None:
    encoder = OpusStreamEncoder(16, fec=True, packet_loss_perc=20)
    packets = [Packet.parse(encoder.push(frame)) for frame in frames(speech)]
    for lost in range(10, FRAMES - 1, 9):
        concealing, rebuilding = OpusStreamDecoder(), OpusStreamDecoder()
        for packet in packets[:lost]:
            concealing.push(packet)
            rebuilding.push(packet)
        rebuilt = not np.array_equal(concealing.push(None), rebuilding.push(None, (packets[lost + 1],)))
        assert rebuilt == opus_has_fec(packets[lost + 1].opus)
    assert not any(opus_has_fec(p.opus) for p in map(Packet.parse, _opus_packets(speech, fec=False)))


def _opus_packets(speech: np.ndarray, fec: bool) -> list[bytes]:
    encoder = OpusStreamEncoder(24, fec=fec, packet_loss_perc=10)
    return [encoder.push(frame) for frame in frames(speech)]


@pytest.mark.parametrize("redundancy", [0, 2])
def test_tiny_rtcodec_through_a_lossy_network(speech: np.ndarray, tiny: Codec, redundancy: int) -> None:
    network = Network(loss=Bernoulli(0.15))
    encoder = tiny.stream_encoder(6, redundancy=redundancy)
    received, stats = simulate(speech, encoder, tiny.stream_decoder(), network, playout=FixedPlayout(60))
    assert received.shape == (FRAMES * FRAME_SAMPLES,) and np.isfinite(received).all()
    assert np.abs(received).max() <= 1
    assert stats.lost == stats.concealed > 0
    # A lost frame is rebuilt exactly when one of the `redundancy` packets after it arrived (each
    # carries its codes; with no delay, even the furthest is in by the playout deadline).
    link = network.link(0)
    arrived = [bool(link.send(index * 0.02, 1)) for index in range(FRAMES)]
    rebuildable = sum(
        not arrived[index] and any(arrived[index + 1 : index + 1 + redundancy]) for index in range(FRAMES)
    )
    assert stats.recovered == rebuildable and (rebuildable > 0) == (redundancy > 0)
    # The bitrate is measured from the bytes: header, 12 codes, and R x (count byte + 3 codes);
    # the first R packets carry fewer redundant frames.
    redundant = (1 + packed_size(3)) * sum(min(index, redundancy) for index in range(FRAMES))
    expected = (FRAMES * (HEADER_BYTES + packed_size(12)) + redundant) * 8 / SECONDS / 1000
    assert stats.total_kbps == pytest.approx(expected)
    assert encoder.total_kbps == 6 + 1.5 * redundancy


def test_redundancy_recovers_what_the_next_packet_carries(speech: np.ndarray, tiny: Codec) -> None:
    """With the next packet always in, every isolated loss is rebuilt; a lost next packet
    leaves its predecessor to concealment."""
    lost = [index % 7 == 3 or index % 23 in (10, 11) for index in range(FRAMES)]
    trace = Network.replay(Trace.per_packet(lost, [None if gone else 0.0 for gone in lost]))
    _, stats = simulate(speech, tiny.stream_encoder(6, redundancy=1), tiny.stream_decoder(), trace,
                        playout=FixedPlayout(40))
    rebuildable = sum(gone and index + 1 < FRAMES and not lost[index + 1] for index, gone in enumerate(lost))
    assert stats.lost == sum(lost) and stats.recovered == rebuildable


def _burst_of_two(delay_ms: float) -> Network:
    """A network that loses frames 40 and 41 and delays every other packet by `delay_ms`."""
    lost = [index in (40, 41) for index in range(FRAMES)]
    return Network.replay(Trace.per_packet(lost, [None if gone else delay_ms for gone in lost]))


@pytest.mark.parametrize(
    ("delay_ms", "redundancy", "rebuilt"),
    [(0.0, 1, {41}), (0.0, 2, {40, 41}), (30.0, 2, {41})],
)
def test_fixed_playout_rebuilds_a_burst_from_the_packets_in_by_the_deadline(
    speech: np.ndarray, tiny: Codec, delay_ms: float, redundancy: int, rebuilt: set[int]
) -> None:
    """Frames 40 and 41 lost, playout 60 ms after sending: packet 42 rebuilds frame 41, and frame
    40 too with redundancy 2 if it is in by frame 40's deadline (sent 40 ms after frame 40)."""
    encoder = tiny.stream_encoder(6, redundancy=redundancy)
    received, stats = simulate(speech, encoder, tiny.stream_decoder(), _burst_of_two(delay_ms),
                               playout=FixedPlayout(60))
    assert (stats.concealed, stats.recovered) == (2, len(rebuilt))
    plain = tiny.stream_encoder(6)
    decoder = tiny.stream_decoder()
    expected = []
    for index, frame in enumerate(frames(speech)):
        packet = Packet.parse(plain.push(frame))
        if index in (40, 41):
            packet = Packet(packet.seq, packet.codes[:3]) if index in rebuilt else None
        expected.append(decoder.push(packet))
    assert np.array_equal(received, np.concatenate(expected))


@pytest.mark.parametrize(("redundancy", "recovered"), [(1, 1), (2, 2)])
def test_adaptive_playout_holds_through_a_burst_and_rebuilds_what_redundancy_reaches(
    speech: np.ndarray, tiny: Codec, redundancy: int, recovered: int
) -> None:
    """The jitter buffer holds frame 40 until packet 42 arrives, then declares 40 and 41 lost
    with packet 42 among the packets after them."""
    encoder = tiny.stream_encoder(6, redundancy=redundancy)
    _, stats = simulate(speech, encoder, tiny.stream_decoder(), _burst_of_two(0.0))
    assert (stats.lost, stats.stretched, stats.concealed) == (2, 2, 4)
    assert stats.recovered == recovered


def test_simulate_never_imports_torch_for_opus() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from rtcodec.netsim import simulate, Network, Bernoulli;"
        "from rtcodec.opus import OpusStreamEncoder, OpusStreamDecoder; import numpy as np;"
        "simulate(np.zeros(3200, np.float32), OpusStreamEncoder(16), OpusStreamDecoder(),"
        " Network(loss=Bernoulli(0.5)));"
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- rtcodec simulate ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("weights")
    NeuralCodec(TINY).save(directory)
    return directory


@pytest.fixture
def speech_file(tmp_path: Path, speech: np.ndarray) -> Path:
    path = tmp_path / "speech.wav"
    write_wav(path, speech)
    return path


def test_cli_simulate_opus_with_fec(
    speech_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.wav"
    arguments = ["simulate", str(speech_file), str(out), "--codec", "opus", "--kbps", "24",
                 "--loss", "10", "--burst", "2", "--jitter", "10", "--fec", "--seed", "3"]
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    audio, rate = soundfile.read(out, dtype="float32")
    assert rate == 16000 and len(audio) % FRAME_SAMPLES == 0 and np.abs(audio).max() > 0.01
    assert f"sent {FRAMES} packets" in printed
    recovered = re.search(r"recovered by FEC (\d+)", printed)
    assert recovered and int(recovered.group(1)) > 0, printed  # 24 kbps leaves libopus room for FEC
    assert "GilbertElliott(rate=0.1, mean_burst=2.0)" in printed
    assert main(arguments) == 0
    assert capsys.readouterr().out == printed  # the same seed: the same statistics


def test_cli_simulate_rtcodec_with_redundancy_and_fixed_playout(
    speech_file: Path, tmp_path: Path, tiny_weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.wav"
    arguments = ["simulate", str(speech_file), str(out), "--codec", "rtcodec", "--kbps", "6",
                 "--loss", "20", "--redundancy", "2", "--weights", str(tiny_weights),
                 "--playout-delay", "80", "--seed", "1"]
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    audio, _ = soundfile.read(out, dtype="float32")
    assert len(audio) == FRAMES * FRAME_SAMPLES
    assert "rtcodec at 6 kbps" in printed and "recovered by redundancy" in printed
    total = float(printed.split("kbps in all")[0].rsplit(" ", 2)[-2])
    assert total == pytest.approx((5 + 15 + 2 * 5) * 8 * 50 / 1000, rel=0.01)


def test_cli_simulate_replays_a_trace(
    speech_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("seq,lost,delay_ms\n0,0,20\n1,1,\n2,0,20\n3,0,20\n")
    assert main(["simulate", str(speech_file), str(tmp_path / "o.wav"), "--codec", "opus",
                 "--kbps", "16", "--trace", str(trace)]) == 0
    assert f"lost {FRAMES // 4 + 1} " in capsys.readouterr().out  # packet 1 of every 4 rows, cycled


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--codec", "opus", "--redundancy", "1"], "--redundancy is for rtcodec"),
        (["--codec", "rtcodec", "--fec"], "--fec is for Opus"),
        (["--codec", "opus", "--loss", "100"], "--loss must be"),
        (["--codec", "opus", "--loss", "50", "--burst", "0.5"], "mean burst length"),
        (["--codec", "opus", "--trace", "x.csv", "--loss", "5"], "leave out --loss"),
    ],
)
def test_cli_simulate_refuses_contradictory_options(
    speech_file: Path, tmp_path: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.wav"
    assert main(["simulate", str(speech_file), str(out), *extra]) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()
