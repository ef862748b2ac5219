"""rtcodec.metrics: the spectral balance and the pitch of decoded speech against the original."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

from rtcodec.config import SAMPLE_RATE
from rtcodec.metrics import LEVEL_BANDS_HZ, band_levels, pitch_deviations


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


def _voice(f0: float, seconds: float = 2.0) -> np.ndarray:
    """Seven harmonics of `f0`, falling in level."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.2 * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8))).astype(np.float32)


def test_a_copy_keeps_its_pitch_and_a_shifted_voice_reads_its_shift() -> None:
    voice = _voice(150.0)
    delayed = np.concatenate([np.zeros(160, dtype=np.float32), voice])
    assert np.median(pitch_deviations(voice, delayed)) < 1e-3
    for f0 in (120.0, 210.0):  # 2 % higher
        deviations = pitch_deviations(_voice(f0), _voice(1.02 * f0))
        assert len(deviations) > 90
        assert np.median(deviations) == pytest.approx(np.log(1.02), abs=0.002)


def test_only_voiced_frames_of_the_reference_count(noise: np.ndarray) -> None:
    assert len(pitch_deviations(noise, noise)) == 0
    silence = np.zeros(SAMPLE_RATE, dtype=np.float32)
    half_voiced = np.concatenate([silence, _voice(150.0, 1.0)])
    assert 40 <= len(pitch_deviations(half_voiced, half_voiced)) <= 50


def test_a_decoded_voice_gone_silent_or_not_finite_is_not_a_kept_pitch() -> None:
    voice = _voice(150.0)
    assert np.all(pitch_deviations(voice, np.zeros_like(voice)) == np.inf)
    with pytest.raises(ValueError, match="degraded audio is not finite"):
        pitch_deviations(voice, np.full_like(voice, np.nan))
    assert len(pitch_deviations(voice[:100], voice[:100])) == 0


def test_a_faint_hum_in_the_pauses_does_not_count() -> None:
    hum = 1e-4 * _voice(150.0, 1.0)
    speech = np.concatenate([_voice(150.0, 1.0), hum])
    assert 40 <= len(pitch_deviations(speech, speech)) <= 50
