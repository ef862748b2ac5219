"""A complete call on this machine: speech -> encoder -> aiortc data channel -> jitter buffer ->
decoder -> WAV, with TCP signalling and a token, over real sockets on 127.0.0.1.

    python demos/call_demo.py                              # rtcodec at 6 kbps, built-in speech
    python demos/call_demo.py --codec opus --kbps 16 --input my.wav --out out/call

It is `rtcodec demo` (every option of it: `--help`), with out/call_demo as its output folder:
sent.wav, received.wav, stats.json and call.png.
"""

from __future__ import annotations

import sys

from rtcodec.cli import main

if __name__ == "__main__":
    arguments = sys.argv[1:]
    if not any(argument == "--out" or argument.startswith("--out=") for argument in arguments):
        arguments = ["--out", "out/call_demo", *arguments]
    sys.exit(main(["demo", *arguments]))
