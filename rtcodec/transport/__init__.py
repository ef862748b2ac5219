"""Calls over WebRTC data channels: peers, signalling, the jitter buffer, the call and its stats.

This package knows codecs only through the StreamEncoder / StreamDecoder protocols; callers inject
the encoder and decoder (rtcodec's or Opus's). It never imports torch.
"""

from __future__ import annotations

from rtcodec.transport.jitter import JitterBuffer
from rtcodec.transport.peer import Peer, PeerError, ice_servers
from rtcodec.transport.session import Session, run_call
from rtcodec.transport.signalling import (
    DEFAULT_PORT,
    CodecChoice,
    Listener,
    SignallingError,
    connect,
    listen,
    paste_answer,
    paste_offer,
)
from rtcodec.transport.stats import CallStats, StatusLine

__all__ = [
    "DEFAULT_PORT",
    "CallStats",
    "CodecChoice",
    "JitterBuffer",
    "Listener",
    "Peer",
    "PeerError",
    "Session",
    "SignallingError",
    "StatusLine",
    "connect",
    "ice_servers",
    "listen",
    "paste_answer",
    "paste_offer",
    "run_call",
]
