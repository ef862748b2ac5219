"""The spectral decoder's frame synthesis: with a carried phase, a steady sinusoid stays one."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rtcodec.config import FRAME_RATE, FRAME_SAMPLES, SAMPLE_RATE
from rtcodec.modules.spectral import FrameSynthesis

OVERLAP = 80
FRAMES = 20
DETUNE_HZ = 10.0
FREQUENCY = 40 * FRAME_RATE + DETUNE_HZ
"""2010 Hz: between two bins of the synthesis FFT (40 Hz apart), and detuned from the nearest
frequency that turns by whole cycles in a hop (a multiple of FRAME_RATE Hz)."""


def _sinusoid(samples: int) -> np.ndarray:
    """cos(2 pi FREQUENCY t) from OVERLAP samples before t = 0, where frame 0's window starts: what
    the synthesis, lagging by OVERLAP, should give."""
    return np.cos(2 * np.pi * FREQUENCY * (np.arange(samples) - OVERLAP) / SAMPLE_RATE)


def _repeating_first_frame(synthesis: FrameSynthesis) -> torch.Tensor:
    """Spectra [1, parts * bins, FRAMES] that give every frame the sinusoid's first-frame spectrum,
    with detunes (if the synthesis takes them) saying where the sinusoid lies: its phase then
    comes only from what is carried over."""
    first = np.fft.rfft(_sinusoid(synthesis.length))
    parts = [np.log(np.abs(first) + 1e-9), np.angle(first)]
    if synthesis.phase_advance:
        detune = np.full(synthesis.bins, DETUNE_HZ * synthesis.length / SAMPLE_RATE)  # in bins
        parts[1] = parts[1] - 2 * math.pi * DETUNE_HZ * FRAME_SAMPLES / SAMPLE_RATE  # frame 0 carries one hop
        parts.append(detune)
    frame = torch.from_numpy(np.concatenate(parts)).float()
    return frame[None, :, None].expand(1, -1, FRAMES).contiguous()


@pytest.mark.parametrize("phase_advance", [True, False], ids=["carried", "afresh"])
def test_a_carried_phase_keeps_a_steady_sinusoid_going(phase_advance: bool) -> None:
    synthesis = FrameSynthesis(OVERLAP, phase_advance)
    with torch.no_grad():
        audio = synthesis(_repeating_first_frame(synthesis)).flatten().numpy()
    expected = _sinusoid(FRAMES * FRAME_SAMPLES)
    settled = slice(OVERLAP, None)  # the first frame's rising edge has no frame before it
    error = np.sqrt(np.mean((audio[settled] - expected[settled]) ** 2) / np.mean(expected[settled] ** 2))
    if phase_advance:
        assert error < 0.05
    else:  # the same phases every frame restart the sinusoid at every hop
        assert error > 0.5


def test_zero_detunes_carry_no_phase() -> None:
    afresh, carried = FrameSynthesis(OVERLAP), FrameSynthesis(OVERLAP, phase_advance=True)
    spectra = torch.randn(2, 2 * afresh.bins, 7)
    with torch.no_grad():
        assert torch.equal(carried(torch.cat([spectra, torch.zeros(2, afresh.bins, 7)], dim=1)), afresh(spectra))
