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
