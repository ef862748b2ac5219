"""`rtcodec` command line. Thin: it parses arguments and calls the library.

Every expected failure (bad input, bad bitrate, missing weights) ends as one line on stderr and a
non-zero exit, with no traceback and no partial output file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from rtcodec.audio import AudioError, frames, read_audio, write_wav
from rtcodec.bitstream import RTC_FORMAT_VERSION, Packet, PacketError, RtcHeader, read_rtc, write_rtc
from rtcodec.config import FRAME_SAMPLES, SAMPLE_RATE, CodecConfig, ConfigError
from rtcodec.model import WeightsError
from rtcodec.opus import OPUS_NAME, OpusStreamDecoder, OpusStreamEncoder
from rtcodec.protocols import StreamDecoder, StreamEncoder

CODECS = ("rtcodec", OPUS_NAME)
EXPECTED_ERRORS = (AudioError, PacketError, ConfigError, WeightsError, ValueError, OSError)

Command = Callable[[argparse.Namespace], None]


def make_encoder(codec: str, kbps: float, weights: Path | None = None) -> StreamEncoder:
    """A streaming encoder for `codec` ("rtcodec" or "opus") at `kbps`."""
    if codec == OPUS_NAME:
        return OpusStreamEncoder(kbps)
    from rtcodec.codec import load

    return load(weights).stream_encoder(kbps)


def make_decoder(codec: str, weights: Path | None = None) -> StreamDecoder:
    """A streaming decoder for `codec` ("rtcodec" or "opus")."""
    if codec == OPUS_NAME:
        return OpusStreamDecoder()
    from rtcodec.codec import load

    return load(weights).stream_decoder()


def _model_id(codec: str, weights: Path | None) -> str:
    if codec == OPUS_NAME:
        return OPUS_NAME
    from rtcodec.codec import load

    return load(weights).model_id


def cmd_encode(args: argparse.Namespace) -> None:
    audio = read_audio(args.input)
    encoder = make_encoder(args.codec, args.kbps, args.weights)
    packets = [encoder.push(frame) for frame in frames(audio)]
    header = RtcHeader(RTC_FORMAT_VERSION, SAMPLE_RATE, FRAME_SAMPLES, _model_id(args.codec, args.weights),
                       encoder.kbps)
    write_rtc(args.output, packets, header)
    print(f"{args.output}: {len(packets)} packets, {len(audio) / SAMPLE_RATE:.2f} s, {args.codec} at {encoder.kbps:g} kbps")


def cmd_decode(args: argparse.Namespace) -> None:
    header, packets = read_rtc(args.input)
    _check_header(header)
    codec = OPUS_NAME if header.model_id == OPUS_NAME else "rtcodec"
    if codec == "rtcodec" and header.model_id != _model_id(codec, args.weights):
        raise WeightsError(f"'{args.input}' was encoded with model '{header.model_id}', "
                           f"but the loaded model is '{_model_id(codec, args.weights)}'")
    decoder = make_decoder(codec, args.weights)
    audio = [decoder.push(Packet.parse(data)) for data in packets]
    write_wav(args.output, np.concatenate(audio) if audio else np.zeros(0, dtype=np.float32))
    print(f"{args.output}: {len(packets) * FRAME_SAMPLES / SAMPLE_RATE:.2f} s decoded from {len(packets)} packets")


def _check_header(header: RtcHeader) -> None:
    if (header.sample_rate, header.frame_samples) != (SAMPLE_RATE, FRAME_SAMPLES):
        raise PacketError(f".rtc file is {header.sample_rate} Hz / {header.frame_samples}-sample frames; "
                          f"this build decodes {SAMPLE_RATE} Hz / {FRAME_SAMPLES}")


def cmd_info(args: argparse.Namespace) -> None:
    header, packets = read_rtc(args.input)
    seconds = len(packets) * header.frame_samples / header.sample_rate
    total = sum(len(p) for p in packets)
    rate = f"{8 * total / seconds / 1000:.2f} kbps measured" if seconds else "no packets"
    print(f"{args.input}: rtc format {header.format_version}, model {header.model_id}, "
          f"{header.sample_rate} Hz, {header.frame_samples}-sample frames, nominal {header.kbps:g} kbps, "
          f"{len(packets)} packets, {seconds:.2f} s, {total} bytes of packets ({rate})")


def cmd_train(args: argparse.Namespace) -> None:
    from rtcodec.train.trainer import TrainConfig, train

    model = CodecConfig.load(args.model_config) if args.model_config else CodecConfig()
    config = TrainConfig(data=tuple(args.data), noise=tuple(args.noise), dev=tuple(args.dev), model=model,
                         run_dir=args.run_dir, batch_size=args.batch_size, crop_seconds=args.crop_seconds,
                         max_minutes=args.max_minutes, max_steps=args.max_steps, seed=args.seed)
    run_dir = train(config)
    print(f"training stopped; checkpoint in {run_dir}, best weights in {run_dir / 'best'}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtcodec", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    encode = commands.add_parser("encode", help="encode an audio file into an .rtc file")
    encode.add_argument("input", type=Path, help="WAV/FLAC/OGG, any rate, mono or stereo")
    encode.add_argument("output", type=Path)
    encode.add_argument("--kbps", type=float, required=True)
    encode.add_argument("--codec", choices=CODECS, default="rtcodec")
    encode.set_defaults(run=cmd_encode)

    decode = commands.add_parser("decode", help="decode an .rtc file into a WAV file")
    decode.add_argument("input", type=Path)
    decode.add_argument("output", type=Path)
    decode.set_defaults(run=cmd_decode)

    info = commands.add_parser("info", help="describe an .rtc file")
    info.add_argument("input", type=Path)
    info.set_defaults(run=cmd_info)

    train = commands.add_parser("train", help="train the codec (resumes from RUN_DIR/checkpoint.pt)")
    train.add_argument("data", nargs="+", help="folders of speech, searched recursively")
    train.add_argument("--noise", nargs="*", default=[], help="folders of noise for augmentation")
    train.add_argument("--dev", nargs="*", default=[], help="folders for periodic PESQ/STOI evaluation")
    train.add_argument("--run-dir", default="runs/codec")
    train.add_argument("--model-config", type=Path, help="CodecConfig JSON (default: the standard model)")
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--crop-seconds", type=float, default=1.0)
    train.add_argument("--max-minutes", type=float)
    train.add_argument("--max-steps", type=int)
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(run=cmd_train)

    for sub in (encode, decode):
        sub.add_argument("--weights", type=Path, help="model folder (default: the shipped weights)")
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
