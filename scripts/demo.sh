#!/usr/bin/env bash
# Set up this machine, then run the main job: a two-peer call over real WebRTC (aiortc, loopback)
# on built-in speech, writing out/demo/ and printing what happened. Extra arguments go to
# `rtcodec demo`; paths in them are relative to where this is run from.
set -euo pipefail
caller_dir=$PWD
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"  # leaves us in the repository root
root=$PWD
cd "$caller_dir"
exec "$root/.venv/bin/rtcodec" demo --out "$root/out/demo" "$@"
