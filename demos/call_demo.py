"""A complete call on this machine: speech -> encoder -> aiortc data channel -> jitter buffer ->
decoder -> WAV, with TCP signalling and a token, over real sockets on 127.0.0.1.

    python demos/call_demo.py                      # Opus at 16 kbps, the built-in speech
    python demos/call_demo.py --kbps 9 --input my.wav --out out/call

Writes sent.wav, received.wav, stats.json and call.png into the output folder. The demo itself
takes injected codec factories; this script uses the Opus baseline, and `rtcodec demo` passes the
neural codec the same way.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rtcodec.demo import opus_factories, run_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kbps", type=float, default=16.0, help="Opus bitrate (default 16)")
    parser.add_argument("--input", type=Path, help="audio file to send (default: built-in speech)")
    parser.add_argument("--out", type=Path, default=Path("out/call_demo"), help="output folder")
    args = parser.parse_args()
    print(run_demo(args.out, *opus_factories(args.kbps), input_path=args.input))


if __name__ == "__main__":
    main()
