"""Shared test set-up: one torch thread (2-core machines, often shared with a training job)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data when present; the test is skipped with a clear message otherwise."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"speech data not found at {SHARED_DATA} (tests that need real speech are skipped)")
    return SHARED_DATA
