"""rtcodec.metrics.band_levels: the spectral balance of decoded speech against the original."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

from rtcodec.config import SAMPLE_RATE
from rtcodec.metrics import LEVEL_BANDS_HZ, band_levels


@pytest.fixture
def noise() -> np.ndarray:
    return (0.1 * np.random.default_rng(0).standard_normal(2 * SAMPLE_RATE)).astype(np.float32)


def test_a_faithful_copy_reads_0_db_in_every_band_even_when_delayed(noise: np.ndarray) -> None:
    delayed = np.concatenate([np.zeros(160, dtype=np.float32), noise])
    assert band_levels(noise, noise) == pytest.approx(dict.fromkeys(band_levels(noise, noise), 0.0), abs=1e-9)
    assert list(band_levels(noise, delayed).values()) == pytest.approx([0.0] * len(LEVEL_BANDS_HZ), abs=1e-9)


def test_a_quieter_copy_reads_its_gain_and_a_lowpass_reads_its_cut(noise: np.ndarray) -> None:
    lowpass = scipy.signal.lfilter(*scipy.signal.butter(8, 4000, fs=SAMPLE_RATE), noise).astype(np.float32)

    assert list(band_levels(noise, 0.5 * noise).values()) == pytest.approx([-6.02] * len(LEVEL_BANDS_HZ), abs=0.01)
    levels = band_levels(noise, lowpass)
    assert abs(levels["1000-2000 Hz"]) < 0.1 and levels["6000-8000 Hz"] < -40


def test_only_the_loud_frames_count(noise: np.ndarray) -> None:
    pause = np.zeros(SAMPLE_RATE, dtype=np.float32)
    reference = np.concatenate([noise, pause])
    hiss = 0.05 * np.random.default_rng(1).standard_normal(SAMPLE_RATE).astype(np.float32)
    hiss_in_the_pause = np.concatenate([noise, hiss])  # counted, it would read +0.5 dB
    assert list(band_levels(reference, hiss_in_the_pause).values()) == pytest.approx(
        [0.0] * len(LEVEL_BANDS_HZ), abs=0.01
    )
