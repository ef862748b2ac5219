"""What the audio tests share: the frequency of a test tone."""

from __future__ import annotations

import numpy as np

from rtcodec.config import SAMPLE_RATE


def peak_hz(audio: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    """Frequency of the strongest FFT bin of float [samples] at `rate` (Hann-windowed)."""
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.argmax(spectrum) * rate / len(audio))
