"""Atomic file output: a reader sees either the old file or the complete new one, never a part."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write instead of `path`; it replaces `path` if the block succeeds.

    The temporary file lies in the same directory (so os.replace is atomic) and keeps the suffix
    of `path` (so writers such as soundfile infer the same format from it). If the block raises,
    the temporary file is deleted and `path` is left as it was.

        with atomic_path("out.wav") as temporary:
            soundfile.write(temporary, audio, SAMPLE_RATE)
    """
    target = Path(path)
    temporary = reserve_temporary(target)
    try:
        yield temporary
        replace_with(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def check_output_path(path: str | os.PathLike[str]) -> None:
    """ValueError if a file cannot be written at `path`: it is a directory, or its own directory
    does not exist. For refusing an output before the work, not after it."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"cannot write '{path}': it is a directory")
    if not path.parent.is_dir():
        raise ValueError(f"cannot write '{path}': no such directory '{path.parent}'")


def reserve_temporary(target: Path) -> Path:
    """Create an empty, hidden, uniquely named file next to `target` and return its path."""
    temporary = target.with_name(f".{target.stem}.{secrets.token_hex(8)}.tmp{target.suffix}")
    temporary.open("xb").close()
    return temporary


def replace_with(temporary: Path, target: Path) -> None:
    """Put the finished file `temporary` (from `reserve_temporary`) in place of `target`."""
    _flush_to_disk(temporary)
    os.replace(temporary, target)


def _flush_to_disk(path: Path) -> None:
    """fsync `path`, so that a crash right after the rename cannot leave an empty file behind."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
