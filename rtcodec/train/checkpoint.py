"""Atomic, resumable training checkpoints.

A checkpoint holds the models, optimisers, step and every RNG, so that a run killed at any moment
resumes exactly where it was. It is written through `atomic_path`, so a kill mid-write leaves the
previous checkpoint intact. Loading uses `weights_only=True` (no arbitrary pickle).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rtcodec.fileio import atomic_path

CHECKPOINT_FILE = "checkpoint.pt"


def save_checkpoint(state: dict[str, Any], directory: Path) -> Path:
    """Write `state` to `directory/checkpoint.pt` atomically; returns the path."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / CHECKPOINT_FILE
    with atomic_path(target) as temporary:
        torch.save(state, temporary)
    return target


def load_checkpoint(directory: Path) -> dict[str, Any] | None:
    """The last checkpoint in `directory`, or None when there is none."""
    path = directory / CHECKPOINT_FILE
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)
