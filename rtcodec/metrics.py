"""Objective speech quality metrics on float32 numpy audio [samples] at SAMPLE_RATE.

PESQ-WB (ITU-T P.862.2) and STOI / ESTOI need the `pesq` and `pystoi` packages (the `dev` extra).
The degraded signal is first aligned to the reference, so that codecs with different delays are
compared fairly.
"""

from __future__ import annotations

import numpy as np

from rtcodec.config import SAMPLE_RATE

MAX_LAG = SAMPLE_RATE // 20
"""Largest delay searched when aligning: 50 ms."""


def align(reference: np.ndarray, degraded: np.ndarray, max_lag: int = MAX_LAG) -> tuple[np.ndarray, np.ndarray]:
    """Shift `degraded` by its delay (0..max_lag samples, by cross-correlation); equal lengths out."""
    length = min(len(reference), len(degraded))
    ref = reference[:length].astype(np.float64)
    deg = degraded[:length].astype(np.float64)
    spectrum = np.fft.rfft(deg, 2 * length) * np.conj(np.fft.rfft(ref, 2 * length))
    correlation = np.fft.irfft(spectrum)[: max_lag + 1]
    lag = int(np.argmax(correlation))
    return reference[: length - lag], degraded[lag:length]


def pesq_wb(reference: np.ndarray, degraded: np.ndarray) -> float:
    """Wide-band PESQ MOS-LQO (1.04 .. 4.64)."""
    from pesq import pesq

    ref, deg = align(reference, degraded)
    return float(pesq(SAMPLE_RATE, ref, deg, "wb"))


def stoi(reference: np.ndarray, degraded: np.ndarray, extended: bool = False) -> float:
    """STOI, or ESTOI with `extended`, in 0 .. 1."""
    from pystoi import stoi as compute_stoi

    ref, deg = align(reference, degraded)
    return float(compute_stoi(ref, deg, SAMPLE_RATE, extended=extended))


LEVEL_BANDS_HZ = ((0, 500), (500, 1000), (1000, 2000), (2000, 4000), (4000, 6000), (6000, 8000))
LEVEL_WINDOW = 512
LOUD_DB = 40.0
"""`band_levels` counts the STFT frames within this many dB of the reference's loudest."""


def band_levels(reference: np.ndarray, degraded: np.ndarray) -> dict[str, float]:
    """The level of `degraded` against `reference` in each of LEVEL_BANDS_HZ, in dB: the ratio of
    their powers over the reference's loud frames (speech, not pauses), after alignment.

    0 dB everywhere is a faithful spectral balance. A codec that cuts a band reads strongly
    negative there; one whose decoder plays safe where it is unsure of the waveform (a loss that
    pulls its output towards zero) reads a few dB low across the spectrum.
    """
    ref, deg = (_power_spectrogram(x) for x in align(reference, degraded))
    frame_db = 10 * np.log10(ref.sum(axis=0) + 1e-12)
    loud = frame_db > frame_db.max() - LOUD_DB
    hz = np.fft.rfftfreq(LEVEL_WINDOW, 1 / SAMPLE_RATE)
    levels = {}
    for low, high in LEVEL_BANDS_HZ:
        band = (hz >= low) & (hz < high)
        ratio = (deg[band][:, loud].sum() + 1e-12) / (ref[band][:, loud].sum() + 1e-12)
        levels[f"{low}-{high} Hz"] = float(10 * np.log10(ratio))
    return levels


def _power_spectrogram(audio: np.ndarray) -> np.ndarray:
    """[LEVEL_WINDOW // 2 + 1, frames] power of Hann-windowed frames, hop LEVEL_WINDOW // 2."""
    hop = LEVEL_WINDOW // 2
    count = max(1, 1 + (len(audio) - LEVEL_WINDOW) // hop)
    padded = np.pad(audio.astype(np.float64), (0, max(0, LEVEL_WINDOW - len(audio))))
    frames = np.lib.stride_tricks.sliding_window_view(padded, LEVEL_WINDOW)[::hop][:count]
    return (np.abs(np.fft.rfft(frames * np.hanning(LEVEL_WINDOW), axis=1)) ** 2).T
