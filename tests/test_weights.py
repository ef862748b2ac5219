"""The shipped weights: they load, stream, and keep their measured quality on real speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import rtcodec
from rtcodec import metrics
from rtcodec.config import CodecConfig
from rtcodec.train.data import find_audio
from rtcodec.train.evaluate import pick_dev_clips

PESQ_AT_6_KBPS_FLOOR = 1.492 - 0.2
"""Mean PESQ-WB at 6 kbps on the clips below, as measured for the shipped model (rtcodec-51300: 1.492), minus 0.2."""
STOI_AT_6_KBPS_FLOOR = 0.851 - 0.05
"""Mean STOI at 6 kbps on the same clips (measured 0.851; an untrained model scores 0.35), minus 0.05:
the floor with teeth while PESQ sits near its minimum of about 1.04."""
FLOOR_CLIPS = 4


def test_shipped_weights_load_and_describe_themselves() -> None:
    codec = rtcodec.load()
    assert codec.config == CodecConfig(model_id=codec.model_id, extra=codec.config.extra, decoder="spectral")
    assert codec.model_id.startswith("rtcodec-")
    assert {"training_data", "steps", "dev_metrics"} <= set(codec.config.extra)


def test_shipped_weights_keep_their_quality_floor(shared_data: Path) -> None:
    codec = rtcodec.load()
    clips = pick_dev_clips(find_audio([shared_data / "dev"]), FLOOR_CLIPS)
    decoded = [codec.decode(codec.encode(clip, kbps=6)) for clip in clips]
    assert float(np.mean([metrics.pesq_wb(c, d) for c, d in zip(clips, decoded, strict=True)])) >= PESQ_AT_6_KBPS_FLOOR
    assert float(np.mean([metrics.stoi(c, d) for c, d in zip(clips, decoded, strict=True)])) >= STOI_AT_6_KBPS_FLOOR
