"""`rtcodec` command line. Thin: it parses arguments and calls the library.

Every expected failure (bad input, bad bitrate, missing weights) ends as one line on stderr and a
non-zero exit, with no traceback and no partial output file.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import numpy as np

from rtcodec.audio import AudioError, frames, read_audio, write_wav
from rtcodec.bitstream import RTC_FORMAT_VERSION, Packet, PacketError, RtcHeader, read_rtc, write_rtc
from rtcodec.codecs import CODEC_NAMES, RTCODEC_NAME, CodecSpec
from rtcodec.config import DECODERS, FRAME_SAMPLES, SAMPLE_RATE, CodecConfig, ConfigError
from rtcodec.devices import list_devices, parse_device
from rtcodec.fileio import check_output_path
from rtcodec.model import FREEZABLE, WeightsError
from rtcodec.opus import OPUS_NAME
from rtcodec.transport import PeerError, SignallingError

if TYPE_CHECKING:
    from rtcodec.netsim import Network
    from rtcodec.netsim.models import LossModel

FEC_EXPECTED_LOSS = 10
"""Percent of packets that Opus FEC expects to be lost in a call, unless --expected-loss says: at 0
libopus codes no FEC at all."""
KBPS_RANGES = "rtcodec: 0.5 to 12 in steps of 0.5; Opus: 6 to 510"
LOSS_NAMES = (
    "mel", "stft", "complex", "phase", "commitment", "codebook", "residual", "adversarial", "feature_matching",
)
"""The losses whose weights `train --loss-weight` may set (TrainConfig.weight_NAME)."""
EXPECTED_ERRORS = (AudioError, PacketError, ConfigError, WeightsError, SignallingError, PeerError, ValueError, OSError)


def cmd_encode(args: argparse.Namespace) -> None:
    check_output_path(args.output)
    audio = read_audio(args.input)
    spec = CodecSpec(args.codec, args.kbps, args.weights)
    encoder = spec.encoder()
    packets = [encoder.push(frame) for frame in frames(audio)]
    header = RtcHeader(RTC_FORMAT_VERSION, SAMPLE_RATE, FRAME_SAMPLES, spec.model_id, encoder.kbps)
    write_rtc(args.output, packets, header)
    print(f"{args.output}: {len(packets)} packets, {len(audio) / SAMPLE_RATE:.2f} s, "
          f"{args.codec} at {encoder.kbps:g} kbps")


def cmd_decode(args: argparse.Namespace) -> None:
    check_output_path(args.output)
    header, records = read_rtc(args.input)
    _check_header(header)
    spec = CodecSpec(OPUS_NAME if header.model_id == OPUS_NAME else RTCODEC_NAME, header.kbps, args.weights)
    if header.model_id != spec.model_id:
        raise WeightsError(f"'{args.input}' was encoded with model '{header.model_id}', "
                           f"but the loaded model is '{spec.model_id}'")
    decoder = spec.decoder()
    audio = np.empty(len(records) * FRAME_SAMPLES, dtype=np.float32)
    for frame, packet in zip(audio.reshape(-1, FRAME_SAMPLES), _packets(header, records), strict=True):
        frame[:] = decoder.push(packet)
    write_wav(args.output, audio)
    print(f"{args.output}: {len(records) * FRAME_SAMPLES / SAMPLE_RATE:.2f} s decoded from {len(records)} packets")


def _check_header(header: RtcHeader) -> None:
    if (header.sample_rate, header.frame_samples) != (SAMPLE_RATE, FRAME_SAMPLES):
        raise PacketError(f".rtc file is {header.sample_rate} Hz / {header.frame_samples}-sample frames; "
                          f"this build decodes {SAMPLE_RATE} Hz / {FRAME_SAMPLES}")


def _packets(header: RtcHeader, records: list[bytes]) -> Iterator[Packet]:
    """The records of an .rtc file parsed one by one; a PacketError names the first record that
    is malformed or of the other codec than the file's."""
    opus_file = header.model_id == OPUS_NAME
    for index, data in enumerate(records):
        try:
            packet = Packet.parse(data)
        except PacketError as error:
            raise PacketError(f"packet {index}: {error}") from None
        if packet.is_opus != opus_file:
            kind = "an Opus" if packet.is_opus else "an rtcodec"
            raise PacketError(f"packet {index} is {kind} packet in a file of model '{header.model_id}'")
        yield packet


def cmd_info(args: argparse.Namespace) -> None:
    header, packets = read_rtc(args.input)
    for _ in _packets(header, packets):  # each must parse, as a packet of the file's codec
        pass
    seconds = len(packets) * header.frame_samples / header.sample_rate
    total = sum(len(p) for p in packets)
    rate = f"{8 * total / seconds / 1000:.2f} kbps measured" if seconds else "no packets"
    print(f"{args.input}: rtc format {header.format_version}, model {header.model_id}, "
          f"{header.sample_rate} Hz, {header.frame_samples}-sample frames, nominal {header.kbps:g} kbps, "
          f"{len(packets)} packets, {seconds:.2f} s, {total} bytes of packets ({rate})")


def cmd_train(args: argparse.Namespace) -> None:
    from rtcodec.train.trainer import TrainConfig, train

    model = CodecConfig.load(args.model_config) if args.model_config else CodecConfig()
    if args.decoder:
        model = dataclasses.replace(model, decoder=args.decoder)
    config = TrainConfig(data=tuple(args.data), noise=tuple(args.noise), dev=tuple(args.dev), model=model,
                         run_dir=args.run_dir, batch_size=args.batch_size, crop_seconds=args.crop_seconds,
                         max_minutes=args.max_minutes, max_steps=args.max_steps, seed=args.seed,
                         init_from=str(args.init_from) if args.init_from else None, frozen=tuple(args.freeze),
                         **_schedule(args))
    run_dir = train(config)
    print(f"training stopped; checkpoint in {run_dir}, best weights in {run_dir / 'best'}")


def _schedule(args: argparse.Namespace) -> dict[str, float]:
    """The TrainConfig fields that were given on the command line."""
    given = {"adversarial_from_step": args.adversarial_from, "eval_minutes": args.eval_minutes,
             "learning_rate": args.learning_rate}
    weights = {f"weight_{name}": weight for name, weight in args.loss_weight}
    return {name: value for name, value in given.items() if value is not None} | weights


def _loss_weight(text: str) -> tuple[str, float]:
    """"NAME=WEIGHT" -> (NAME, WEIGHT): a loss of LOSS_NAMES and a finite weight >= 0."""
    name, _, weight = text.partition("=")
    if name not in LOSS_NAMES:
        raise argparse.ArgumentTypeError(f"unknown loss '{name}' (one of: {', '.join(LOSS_NAMES)})")
    try:
        value = float(weight)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}': the weight must be a number") from None
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"'{text}': the weight must be finite and >= 0")
    return name, value


def _spec(args: argparse.Namespace) -> CodecSpec:
    """The codec that `_add_codec_options` describe; options for the other codec are refused."""
    if args.codec == OPUS_NAME and args.redundancy:
        raise ValueError("--redundancy is for rtcodec; Opus rebuilds lost frames with --fec")
    if args.codec == RTCODEC_NAME and args.fec:
        raise ValueError("--fec is for Opus; rtcodec rebuilds lost frames with --redundancy N")
    expected_loss = args.expected_loss
    if expected_loss is None:
        expected_loss = FEC_EXPECTED_LOSS if args.fec else 0
    return CodecSpec(args.codec, args.kbps, args.weights, redundancy=args.redundancy, fec=args.fec,
                     packet_loss_perc=expected_loss)


def cmd_call(args: argparse.Namespace) -> None:
    from rtcodec.transport import run_call

    role, address = ("listen", args.listen) if args.listen else ("connect", args.connect)
    if args.paste:
        role, address = args.paste, None
    host, port = _host_port(address) if address else ("127.0.0.1", 0)
    spec = _spec(args)
    stats = run_call(role, spec.encoder, spec.decoder, host=host, port=port, token=args.token,
                     input_path=args.input, output_path=args.output, input_device=args.input_device,
                     output_device=args.output_device, stun=args.stun, turn=args.turn,
                     turn_username=args.turn_username, turn_password=args.turn_password, stats_path=args.stats)
    print(stats.status_line())


def cmd_devices(args: argparse.Namespace) -> None:
    print(list_devices())


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got '{address}'")
    return host, int(port)


def cmd_demo(args: argparse.Namespace) -> None:
    from rtcodec.demo import run_demo

    spec = _spec(args)
    if spec.name == RTCODEC_NAME:
        print(_describe_model(spec))
    print(run_demo(args.out, spec.encoder, spec.decoder, input_path=args.input))


def cmd_simulate(args: argparse.Namespace) -> None:
    from rtcodec.netsim import AdaptivePlayout, FixedPlayout, simulate

    network = _simulated_network(args)
    if args.expected_loss is None and args.fec:  # Opus FEC is tuned for the loss being simulated
        args.expected_loss = min(round(args.loss), 100)
    spec = _spec(args)
    playout = AdaptivePlayout() if args.playout_delay is None else FixedPlayout(args.playout_delay)
    encoder = spec.encoder()
    audio = read_audio(args.input)
    received, stats = simulate(audio, encoder, spec.decoder(), network, playout=playout, seed=args.seed)
    write_wav(args.output, received)
    print(f"{args.output}: {len(received) / SAMPLE_RATE:.2f} s received; {args.codec} at {encoder.kbps:g} kbps "
          f"over {network.describe()}, seed {args.seed}")  # the summary has the measured bitrate in all
    print(stats.summary("FEC" if args.codec == OPUS_NAME else "redundancy"))


def _simulated_network(args: argparse.Namespace) -> Network:
    """The `Network` that `rtcodec simulate`'s options describe."""
    from rtcodec.netsim import Delay, Network, Trace

    if args.trace is not None:
        if args.loss or args.burst is not None or args.jitter:
            raise ValueError("--trace gives the losses and delays: leave out --loss, --burst and --jitter")
        return Network.replay(Trace.load(args.trace))
    if not 0 <= args.loss < 100:
        raise ValueError(f"--loss must be a percentage in [0, 100), got {args.loss:g}")
    return Network(loss=_loss_model(args.loss / 100, args.burst), delay=Delay(args.delay, args.jitter))


def _loss_model(rate: float, mean_burst: float | None) -> LossModel:
    """Bursty loss when `--burst` gives a `mean_burst`, else independent loss, or none at rate 0."""
    from rtcodec.netsim import Bernoulli, GilbertElliott, NoLoss

    if mean_burst is not None:
        return GilbertElliott(rate, mean_burst)
    return Bernoulli(rate) if rate else NoLoss()


def _describe_model(spec: CodecSpec) -> str:
    """One honest line about the neural model: its id, training and measured dev quality."""
    from rtcodec.codec import load

    extra = load(spec.weights).config.extra
    metrics = extra.get("dev_metrics", {})
    if not isinstance(metrics, dict) or "pesq@6" not in metrics:
        return f"rtcodec model: {spec.model_id} (untrained: no training record, expect noise)"
    return (f"rtcodec model: {spec.model_id} ({extra.get('steps')} training steps; dev PESQ-WB "
            f"{metrics['pesq@6']:.2f}, STOI {metrics.get('stoi@6', float('nan')):.2f} at 6 kbps)")


def _add_codec_options(parser: argparse.ArgumentParser, fec_loss: str) -> None:
    parser.add_argument("--codec", choices=CODEC_NAMES, default=RTCODEC_NAME, help="default: rtcodec")
    parser.add_argument("--kbps", type=float, default=6.0,
                        help=f"bitrate of either codec (default: 6); {KBPS_RANGES}")
    parser.add_argument("--weights", type=Path, help="rtcodec model folder (default: the shipped weights)")
    parser.add_argument("--redundancy", type=int, default=0, help="rtcodec: earlier frames carried per packet (0-3)")
    parser.add_argument("--fec", action="store_true",
                        help="Opus: in-band forward error correction (libopus codes it only where the "
                             "bitrate leaves room, e.g. 24 kbps)")
    parser.add_argument("--expected-loss", type=int, metavar="PCT",
                        help=f"Opus: the packet loss that FEC is tuned for (default: {fec_loss} with --fec, else 0)")


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line too (exit status 2), pointing to -h; subcommands inherit it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rtcodec", description="rtcodec: a neural speech codec and the calls that "
                     "use it. Encode and decode files, call a peer over WebRTC, simulate lossy "
                     "networks, train the model.")
    commands = parser.add_subparsers(dest="command", required=True)

    encode = commands.add_parser("encode", help="encode an audio file into an .rtc file")
    encode.add_argument("input", type=Path, help="WAV/FLAC/OGG, any rate, mono or stereo")
    encode.add_argument("output", type=Path, help=".rtc file to write")
    encode.add_argument("--kbps", type=float, required=True, help=KBPS_RANGES)
    encode.add_argument("--codec", choices=CODEC_NAMES, default="rtcodec")
    encode.set_defaults(run=cmd_encode)

    decode = commands.add_parser("decode", help="decode an .rtc file into a WAV file")
    decode.add_argument("input", type=Path, help=".rtc file")
    decode.add_argument("output", type=Path, help="WAV file to write (16 kHz mono)")
    decode.set_defaults(run=cmd_decode)

    info = commands.add_parser("info", help="describe an .rtc file")
    info.add_argument("input", type=Path, help=".rtc file")
    info.set_defaults(run=cmd_info)

    train = commands.add_parser("train", help="train the codec (resumes from RUN_DIR/checkpoint.pt)")
    train.add_argument("data", nargs="+", help="folders of speech, searched recursively")
    train.add_argument("--noise", nargs="*", default=[], help="folders of noise for augmentation")
    train.add_argument("--dev", nargs="*", default=[],
                       help="folders for periodic PESQ/STOI evaluation (default: the speakers held out of the data)")
    train.add_argument("--run-dir", default="runs/codec",
                       help="checkpoint, log and best weights (default: runs/codec)")
    train.add_argument("--model-config", type=Path,
                       help="CodecConfig JSON (default: CodecConfig(), the shipped architecture with a seanet decoder)")
    train.add_argument("--decoder", choices=DECODERS,
                       help="decoder architecture (default: the model config's, seanet); the shipped model's is "
                            "spectral: give it to continue the shipped weights with --init-from")
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--crop-seconds", type=float, default=1.0)
    train.add_argument("--max-minutes", type=float)
    train.add_argument("--max-steps", type=int)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--adversarial-from", type=int, metavar="STEP",
                       help="step from which the discriminator trains (default: the TrainConfig's)")
    train.add_argument("--eval-minutes", type=float,
                       help="minutes between dev evaluations (default: the TrainConfig's)")
    train.add_argument("--learning-rate", type=float,
                       help="peak learning rate before its per-step decay (default: the TrainConfig's); "
                            "lower it to anneal a model that has stopped improving")
    train.add_argument("--loss-weight", nargs="+", default=[], type=_loss_weight, metavar="NAME=WEIGHT",
                       help=f"override loss weights, e.g. complex=2 (names: {', '.join(LOSS_NAMES)}; "
                            "defaults: the TrainConfig's)")
    train.add_argument("--init-from", type=Path,
                       help="start from a release folder (e.g. rtcodec/weights) when RUN_DIR has no checkpoint; "
                            "a wider bottleneck is shrunk to the configured one, another decoder starts afresh")
    train.add_argument("--freeze", nargs="*", default=[], choices=FREEZABLE,
                       help="parts of the codec to keep as they are (e.g. to train a new decoder)")
    train.set_defaults(run=cmd_train)

    for sub in (encode, decode):
        sub.add_argument("--weights", type=Path, help="model folder (default: the shipped weights)")

    call = commands.add_parser("call", help="a live call: microphone and speaker, or files")
    where = call.add_mutually_exclusive_group(required=True)
    where.add_argument("--listen", metavar="HOST:PORT", help="wait for a caller (e.g. 127.0.0.1:47100)")
    where.add_argument("--connect", metavar="HOST:PORT", help="call a listening peer")
    where.add_argument("--paste", choices=("offer", "answer"), help="copy-paste signalling on stdin/stdout")
    call.add_argument("--token", help="shared secret; a peer without it is refused")
    source = call.add_mutually_exclusive_group()
    source.add_argument("--input", type=Path, help="audio file to send instead of the microphone")
    source.add_argument("--input-device", type=parse_device, metavar="DEVICE",
                        help="microphone: index or name (`rtcodec devices`; default: the system's)")
    sink = call.add_mutually_exclusive_group()
    sink.add_argument("--output", type=Path, help="WAV file to record instead of the speaker")
    sink.add_argument("--output-device", type=parse_device, metavar="DEVICE",
                      help="speaker: index or name (`rtcodec devices`; default: the system's)")
    call.add_argument("--stats", type=Path, help="write the call statistics as JSON here")
    call.add_argument("--stun", help="STUN server, e.g. stun:stun.example.org:3478 (none by default)")
    call.add_argument("--turn", help="TURN server URL")
    call.add_argument("--turn-username", help="TURN user name")
    call.add_argument("--turn-password", help="TURN password")
    _add_codec_options(call, fec_loss=str(FEC_EXPECTED_LOSS))
    call.set_defaults(run=cmd_call)

    devices = commands.add_parser("devices", help="list the sound devices a call can use")
    devices.set_defaults(run=cmd_devices)

    simulate = commands.add_parser(
        "simulate", help="send an audio file through a codec and a simulated lossy network"
    )
    simulate.add_argument("input", type=Path, help="WAV/FLAC/OGG, any rate, mono or stereo")
    simulate.add_argument("output", type=Path, help="WAV file of the received audio")
    simulate.add_argument("--loss", type=float, default=0.0, metavar="PCT", help="packet loss in percent")
    simulate.add_argument("--burst", type=float, metavar="MEAN",
                          help="bursty (Gilbert-Elliott) loss with this mean burst length in packets "
                               "(default: independent losses)")
    simulate.add_argument("--jitter", type=float, default=0.0, metavar="MS", help="delay jitter (standard deviation)")
    simulate.add_argument("--delay", type=float, default=40.0, metavar="MS", help="base one-way delay (default 40)")
    simulate.add_argument("--trace", type=Path, metavar="CSV",
                          help="replay losses and delays from a trace (format: rtcodec.netsim.trace)")
    simulate.add_argument("--playout-delay", type=float, metavar="MS",
                          help="play each frame this long after it was sent, never stretching or "
                               "skipping (default: the call engine's adaptive jitter buffer)")
    simulate.add_argument("--seed", type=int, default=0, help="seed of the network's randomness")
    _add_codec_options(simulate, fec_loss="--loss")
    simulate.set_defaults(run=cmd_simulate)

    demo = commands.add_parser("demo", help="a complete call between two peers on this machine")
    demo.add_argument("--out", type=Path, default=Path("out/demo"),
                      help="folder for sent.wav, received.wav, stats.json and call.png (default: out/demo)")
    demo.add_argument("--input", type=Path, help="audio file to send (default: built-in speech)")
    _add_codec_options(demo, fec_loss=str(FEC_EXPECTED_LOSS))
    demo.set_defaults(run=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except EXPECTED_ERRORS as error:
        print(f"rtcodec {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"rtcodec {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
