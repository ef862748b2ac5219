"""Objective speech quality metrics on float32 numpy audio [samples] at SAMPLE_RATE.

PESQ-WB (ITU-T P.862.2) and STOI / ESTOI need the `pesq` and `pystoi` packages (the `dev` extra).
The degraded signal is first aligned to the reference, so that codecs with different delays are
compared fairly.
"""

from __future__ import annotations

import numpy as np

from rtcodec.config import FRAME_SAMPLES, SAMPLE_RATE

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


PITCH_WINDOW = 400
"""Samples (25 ms) of each frame whose pitch `pitch_deviations` measures; frames start 20 ms apart."""
PITCH_RANGE_HZ = (70.0, 400.0)
"""The voice pitches the tracker looks for."""
VOICED_CORRELATION = 0.85
"""A reference frame counts as voiced when its normalised autocorrelation peaks at least this high
(and it is within LOUD_DB of the loudest frame)."""


def pitch_deviations(reference: np.ndarray, degraded: np.ndarray) -> np.ndarray:
    """|ln(f0 of degraded / f0 of reference)| in each of the reference's clearly voiced frames
    (25 ms, 20 ms apart), after alignment: 0.01 is a pitch 1 % off, and inf a frame where the
    degraded audio has no pitch in range at all (silent, or its autocorrelation peaks at the
    range's edge).

    A codec that keeps the voice's pitch reads a few thousandths in most frames. One whose decoder
    renders the harmonics only roughly reads more, at every bitrate: a hoarse, unsteady voice.
    Octave errors of the tracker read about 0.69; take the median.
    """
    for name, audio in (("reference", reference), ("degraded", degraded)):
        if not np.all(np.isfinite(audio)):
            raise ValueError(f"the {name} audio is not finite")
    if min(len(reference), len(degraded)) < PITCH_WINDOW:
        return np.zeros(0)
    ref, deg = align(reference, degraded)
    ref_f0, ref_voicing, ref_energy = _pitch_track(ref)
    deg_f0, deg_voicing, _ = _pitch_track(deg)
    frame_db = 10 * np.log10(ref_energy + 1e-12)
    voiced = (ref_voicing >= VOICED_CORRELATION) & (frame_db > frame_db.max() - LOUD_DB)
    with np.errstate(divide="ignore"):
        deviation = np.abs(np.log(deg_f0 / ref_f0))
    return np.where(deg_voicing > 0, deviation, np.inf)[voiced]


def _frames(audio: np.ndarray) -> np.ndarray:
    """[frames, PITCH_WINDOW] of `audio` (at least PITCH_WINDOW samples), FRAME_SAMPLES apart, mean removed."""
    frames = np.lib.stride_tricks.sliding_window_view(audio.astype(np.float64), PITCH_WINDOW)[::FRAME_SAMPLES]
    return frames - frames.mean(axis=1, keepdims=True)


def _pitch_track(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(f0 in Hz, normalised autocorrelation there (0 where there is no pitch in range), energy),
    each [frames]. The period is the lag in PITCH_RANGE_HZ where the plain autocorrelation peaks (it
    favours the shortest period over its multiples), refined by a parabola through the normalised
    one, which divides out each lag's shrinking overlap."""
    power = np.abs(np.fft.rfft(_frames(audio), 2 * PITCH_WINDOW, axis=1)) ** 2
    autocorrelation = np.fft.irfft(power, axis=1)[:, :PITCH_WINDOW]
    energy = autocorrelation[:, :1]
    overlap = 1 - np.arange(PITCH_WINDOW) / PITCH_WINDOW
    normalised = autocorrelation / (energy * overlap + 1e-12)
    low, high = round(SAMPLE_RATE / PITCH_RANGE_HZ[1]), round(SAMPLE_RATE / PITCH_RANGE_HZ[0])
    lag = low + np.argmax(autocorrelation[:, low : high + 1], axis=1)
    rows = np.arange(len(lag))
    before, peak, after = (normalised[rows, lag + step] for step in (-1, 0, 1))
    curvature = before - 2 * peak + after
    vertex = 0.5 * (before - after) / np.where(curvature < 0, curvature, -1.0)
    shift = np.where(curvature < 0, np.clip(vertex, -1.0, 1.0), 0.0)
    in_range = (energy[:, 0] > 1e-10) & (lag > low) & (lag < high)
    return SAMPLE_RATE / (lag + shift), np.where(in_range, peak, 0.0), energy[:, 0]
