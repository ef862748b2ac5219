"""Training data: folders of audio held in memory, random crops and on-the-fly augmentation.

Crops come out as float32 tensors [batch, 1, samples] at SAMPLE_RATE.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rtcodec.audio import AudioError, read_audio
from rtcodec.config import SAMPLE_RATE

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus")
SPEAKER_CHAPTER_UTTERANCE = re.compile(r"^(\d+)-\d+-\d+$")
"""LibriSpeech-style names: the only ones whose speaker we can tell."""


def find_audio(folders: Iterable[Path]) -> list[Path]:
    """Every audio file under `folders`, searched recursively, in a stable order."""
    found = [p for folder in folders for p in Path(folder).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES]
    return sorted(found)


def speaker_of(path: Path) -> str | None:
    """The speaker id encoded in a file name, or None where the name does not tell."""
    match = SPEAKER_CHAPTER_UTTERANCE.match(path.stem)
    return match.group(1) if match else None


def split_by_speaker(paths: Sequence[Path], fraction: float) -> tuple[list[Path], list[Path]]:
    """(train, validation): about `fraction` of the identifiable speakers are held out, whole."""
    def held_out(path: Path) -> bool:
        speaker = speaker_of(path)
        return speaker is not None and zlib.crc32(speaker.encode()) % 1000 < fraction * 1000

    validation = [p for p in paths if held_out(p)]
    return [p for p in paths if not held_out(p)], validation


class Corpus:
    """All clips of a file list, concatenated in memory as int16, with random access to crops."""

    def __init__(self, paths: Sequence[Path], log: bool = True) -> None:
        clips = []
        for path in paths:
            try:
                clips.append(np.round(read_audio(path) * 32767).astype(np.int16))
            except AudioError as error:
                if log:
                    print(f"skipping {error}")
        if not clips:
            raise ValueError("no readable audio found")
        self.samples = np.concatenate(clips)
        self.starts = np.cumsum([0] + [len(c) for c in clips[:-1]])
        self.lengths = np.array([len(c) for c in clips])

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    def crop(self, rng: np.random.Generator, length: int) -> np.ndarray:
        """A random crop float32 [length] from one clip (clips picked by length); zero-padded if short."""
        clip = rng.choice(len(self.lengths), p=self.lengths / self.lengths.sum())
        start = self.starts[clip] + rng.integers(0, max(1, self.lengths[clip] - length + 1))
        piece = self.samples[start : start + min(length, self.lengths[clip])].astype(np.float32) / 32767
        return np.pad(piece, (0, length - len(piece)))


@dataclass(frozen=True)
class Augmentation:
    """Random gain, a light spectral tilt, and noise at a random SNR."""

    level_db: tuple[float, float] = (-36.0, -16.0)
    """Target RMS level range in dBFS."""
    tilt: float = 0.3
    """Largest first-order tilt coefficient (a gentle treble boost or cut)."""
    noise_probability: float = 0.3
    snr_db: tuple[float, float] = (5.0, 35.0)

    def apply(self, audio: np.ndarray, rng: np.random.Generator, noise: Corpus | None) -> np.ndarray:
        """float32 [samples] -> augmented float32 [samples] in [-1, 1]."""
        tilt = rng.uniform(-self.tilt, self.tilt)
        audio = audio + tilt * np.concatenate([[0.0], np.diff(audio)]).astype(np.float32)
        if noise is not None and rng.random() < self.noise_probability:
            extra = noise.crop(rng, len(audio))
            snr = rng.uniform(*self.snr_db)
            audio = audio + extra * _rms(audio) / _rms(extra) * 10 ** (-snr / 20)
        target = 10 ** (rng.uniform(*self.level_db) / 20)
        audio = audio * (target / _rms(audio))
        return np.clip(audio, -1.0, 1.0).astype(np.float32)


def _rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(audio**2)) + 1e-6)


class CropSampler:
    """Batches of augmented random crops: float32 tensors [batch, 1, crop_samples]."""

    def __init__(self, speech: Corpus, noise: Corpus | None, augmentation: Augmentation | None,
                 seed: int) -> None:
        self.speech = speech
        self.noise = noise
        self.augmentation = augmentation
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int, crop_samples: int) -> torch.Tensor:
        crops = [self._one(crop_samples) for _ in range(size)]
        return torch.from_numpy(np.stack(crops))[:, None, :]

    def _one(self, crop_samples: int) -> np.ndarray:
        crop = self.speech.crop(self.rng, crop_samples)
        if self.augmentation is None:
            return crop
        return self.augmentation.apply(crop, self.rng, self.noise)
