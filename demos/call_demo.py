"""A complete call on this machine: speech -> encoder -> aiortc data channel -> jitter buffer ->
decoder -> WAV, with TCP signalling and a token, over real sockets on 127.0.0.1.

    python demos/call_demo.py                              # rtcodec at 6 kbps, built-in speech
    python demos/call_demo.py --codec opus --kbps 16 --input my.wav --out out/call

Writes sent.wav, received.wav, stats.json and call.png into the output folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rtcodec.codecs import CODEC_NAMES, CodecSpec
from rtcodec.demo import run_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec", choices=CODEC_NAMES, default="rtcodec")
    parser.add_argument("--kbps", type=float, default=6.0)
    parser.add_argument("--input", type=Path, help="audio file to send (default: built-in speech)")
    parser.add_argument("--out", type=Path, default=Path("out/call_demo"), help="output folder")
    args = parser.parse_args()
    spec = CodecSpec(args.codec, args.kbps)
    print(run_demo(args.out, spec.encoder, spec.decoder, input_path=args.input))


if __name__ == "__main__":
    main()
