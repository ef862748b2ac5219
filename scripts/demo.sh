#!/usr/bin/env bash
# Set up this machine, then run the main job: a two-peer call over real WebRTC (aiortc, loopback)
# on built-in speech, writing out/demo/ and printing what happened. Extra arguments go to `rtcodec demo`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
exec .venv/bin/rtcodec demo --out out/demo "$@"
