"""Wire format of one packet (rtcodec codes or Opus), and the .rtc file that stores many of them.

Packet, version 1, big-endian:

    byte 0     version (= 1)
    byte 1     flags: bit 0 = Opus payload; bits 1-2 = number R of redundant frames; others 0
    bytes 2-3  sequence number, uint16
    byte 4     number N of codebooks of this frame (0 for Opus)
    then       N codes bit-packed at BITS_PER_CODE bits each, MSB first, zero-padded to a byte
    then R x   [1 byte k][k codes packed the same way]: coarse codes of frames seq-1, seq-2, ...
    then       the Opus payload (the rest of the packet) if the Opus flag is set; nothing otherwise

The format is canonical: `Packet.parse(data).to_bytes() == data` for every `data` that parses.

.rtc file, big-endian:

    magic RTC_MAGIC, format version u8, sample rate u32, frame samples u16, kbps f32,
    model id as u8 length + UTF-8, then every packet as u16 length + bytes.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from rtcodec.config import BITS_PER_CODE, CODEBOOK_SIZE, FRAME_RATE, MAX_CODEBOOKS
from rtcodec.fileio import atomic_write_bytes

_HEADER = struct.Struct(">BBHB")

WIRE_VERSION = 1
"""Version byte of the packet format."""
HEADER_BYTES = _HEADER.size
"""Fixed overhead of every packet: version, flags, sequence number, number of codebooks."""
SEQ_MODULO = 1 << 16
"""Sequence numbers are uint16: they count up from any value and wrap to 0."""
MAX_REDUNDANT_FRAMES = 3
"""Past frames whose coarse codes one packet can repeat."""
RTC_MAGIC = b"RTC\x00"
"""First four bytes of every .rtc file."""
RTC_FORMAT_VERSION = 1
"""Version of the .rtc container that this module reads and writes."""

_OPUS_FLAG = 0b001
_REDUNDANCY_SHIFT = 1
_REDUNDANCY_MASK = 0b110
_KNOWN_FLAGS = _OPUS_FLAG | _REDUNDANCY_MASK
_BYTE = struct.Struct(">B")
_RTC_HEADER = struct.Struct(">4sBIHfB")
_RECORD_LENGTH = struct.Struct(">H")
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_BIT_WEIGHTS = 1 << np.arange(BITS_PER_CODE - 1, -1, -1, dtype=np.int64)
"""Value of each bit of a code, most significant first."""


class PacketError(ValueError):
    """A malformed packet or .rtc file, or values that cannot be put into one."""


def wrapped_difference(later: int, earlier: int, modulo: int) -> int:
    """`later - earlier` for counters that wrap at `modulo` (sequence numbers, clocks): the
    difference of least magnitude, in [-modulo // 2, modulo // 2)."""
    difference = (later - earlier) % modulo
    return difference - modulo if difference >= modulo // 2 else difference


def kbps_of(byte_count: int, frame_count: int) -> float:
    """The bitrate of `byte_count` bytes that carry `frame_count` 20 ms frames, in kbps (0 for none)."""
    return byte_count * 8 * FRAME_RATE / frame_count / 1000 if frame_count else 0.0


def packed_size(count: int) -> int:
    """Bytes that `count` bit-packed codes take on the wire (12 codes -> 15 bytes)."""
    return (count * BITS_PER_CODE + 7) // 8


def pack_codes(codes: np.ndarray) -> bytes:
    """Bit-pack integer codes [n] at BITS_PER_CODE bits each, MSB first, zero-padded to a byte."""
    bits = (_as_codes(codes, "codes")[:, None] & _BIT_WEIGHTS) != 0
    return np.packbits(bits.ravel()).tobytes()


def unpack_codes(data: bytes, count: int) -> np.ndarray:
    """Inverse of `pack_codes`: int64 [count] from exactly `packed_size(count)` bytes.

    Raises PacketError if `data` has another length or a padding bit is set.
    """
    if len(data) != packed_size(count):
        raise PacketError(f"{count} codes take {packed_size(count)} bytes, got {len(data)}")
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    code_bits = count * BITS_PER_CODE
    if bits[code_bits:].any():
        raise PacketError("padding bits after the last code are not zero")
    return bits[:code_bits].reshape(count, BITS_PER_CODE).astype(np.int64) @ _BIT_WEIGHTS


@dataclass(frozen=True, eq=False)
class Packet:
    """One 20 ms frame on the wire: rtcodec codes (with optional redundancy) or an Opus payload.

    Construction copies the arrays into read-only int64 arrays and raises PacketError on values
    that the wire format cannot carry.
    """

    seq: int
    """Sequence number in [0, SEQ_MODULO)."""
    codes: np.ndarray
    """int64 [num_codebooks], each in [0, CODEBOOK_SIZE); empty for Opus."""
    redundancy: tuple[np.ndarray, ...] = ()
    """Coarse codes of frames seq-1, seq-2, ... in that order, each int64 [k]; rtcodec only."""
    opus: bytes = b""
    """Opus payload: non-empty exactly when this is an Opus packet."""

    def __post_init__(self) -> None:
        if not isinstance(self.seq, int | np.integer) or not 0 <= self.seq < SEQ_MODULO:
            raise PacketError(f"seq must be an integer in [0, {SEQ_MODULO}), got {self.seq!r}")
        if len(self.redundancy) > MAX_REDUNDANT_FRAMES:
            raise PacketError(
                f"at most {MAX_REDUNDANT_FRAMES} redundant frames fit, got {len(self.redundancy)}"
            )
        if not isinstance(self.opus, bytes | bytearray | memoryview):
            raise PacketError(f"opus payload must be bytes, got {type(self.opus).__name__}")
        object.__setattr__(self, "seq", int(self.seq))
        object.__setattr__(self, "codes", _as_codes(self.codes, "codes"))
        object.__setattr__(self, "redundancy", _as_redundancy(self.redundancy))
        object.__setattr__(self, "opus", bytes(self.opus))
        if self.opus and (self.codes.size or self.redundancy):
            raise PacketError("an Opus packet cannot also carry rtcodec codes or redundancy")

    @property
    def num_codebooks(self) -> int:
        return int(self.codes.size)

    @property
    def is_opus(self) -> bool:
        return bool(self.opus)

    def to_bytes(self) -> bytes:
        """Serialise to the wire format: HEADER_BYTES + packed codes + redundancy + Opus payload."""
        flags = (_OPUS_FLAG if self.is_opus else 0) | len(self.redundancy) << _REDUNDANCY_SHIFT
        header = _HEADER.pack(WIRE_VERSION, flags, self.seq, self.num_codebooks)
        redundancy = [_BYTE.pack(coarse.size) + pack_codes(coarse) for coarse in self.redundancy]
        return b"".join([header, pack_codes(self.codes), *redundancy, self.opus])

    @classmethod
    def parse(cls, data: bytes) -> Packet:
        """Parse one serialised packet; anything malformed raises PacketError, and nothing else."""
        reader = _Reader(data, "packet")
        header = reader.unpack(_HEADER, f"the header takes {HEADER_BYTES} bytes")
        version, flags, seq, num_codebooks = header
        if version != WIRE_VERSION:
            raise PacketError(f"unsupported packet version {version} (expected {WIRE_VERSION})")
        if flags & ~_KNOWN_FLAGS:
            raise PacketError(f"unknown flag bits set: {flags & ~_KNOWN_FLAGS:#04x}")
        is_opus = bool(flags & _OPUS_FLAG)
        num_redundant = (flags & _REDUNDANCY_MASK) >> _REDUNDANCY_SHIFT
        if is_opus and (num_codebooks or num_redundant):
            raise PacketError(
                f"an Opus packet cannot carry codes, but the header says {num_codebooks} "
                f"codebooks and {num_redundant} redundant frames"
            )
        codes = _read_codes(reader, num_codebooks, "header")
        lags = range(1, num_redundant + 1)
        redundancy = tuple(_read_redundant_frame(reader, lag) for lag in lags)
        opus = reader.rest() if is_opus else b""
        if is_opus and not opus:
            raise PacketError("Opus packet has an empty payload")
        if reader.remaining:
            raise PacketError(f"{reader.remaining} trailing bytes after the end of the packet")
        return cls(seq, codes, redundancy, opus)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Packet):
            return NotImplemented
        return (
            self.seq == other.seq
            and self.opus == other.opus
            and np.array_equal(self.codes, other.codes)
            and len(self.redundancy) == len(other.redundancy)
            and all(map(np.array_equal, self.redundancy, other.redundancy))
        )


@dataclass(frozen=True)
class RtcHeader:
    """Header of an .rtc file: how to decode the packets that follow it."""

    format_version: int
    """RTC_FORMAT_VERSION."""
    sample_rate: int
    """Hz, uint32."""
    frame_samples: int
    """Samples per packet, uint16."""
    model_id: str
    """Neural model id, or "opus"; at most 255 bytes of UTF-8."""
    kbps: float
    """Nominal bitrate; stored as float32, so it reads back rounded to float32."""

    def __post_init__(self) -> None:
        _check_rtc_version(self.format_version)
        _check_range("sample_rate", self.sample_rate, 1, (1 << 32) - 1)
        _check_range("frame_samples", self.frame_samples, 1, (1 << 16) - 1)
        if not 0 <= self.kbps <= _FLOAT32_MAX:
            raise PacketError(f"kbps must be a finite float32 >= 0, got {self.kbps}")
        if len(self.model_id.encode("utf-8")) > 255:
            raise PacketError(f"model_id is longer than 255 bytes of UTF-8: {self.model_id!r}")


def write_rtc(path: str | os.PathLike[str], packets: Iterable[bytes], header: RtcHeader) -> None:
    """Write `header` then `packets` (serialised, each at most 65535 bytes) to `path` atomically."""
    model_id = header.model_id.encode("utf-8")
    fixed = _RTC_HEADER.pack(
        RTC_MAGIC,
        header.format_version,
        header.sample_rate,
        header.frame_samples,
        header.kbps,
        len(model_id),
    )
    records = [_record(index, packet) for index, packet in enumerate(packets)]
    atomic_write_bytes(path, b"".join([fixed, model_id, *records]))


def read_rtc(path: str | os.PathLike[str]) -> tuple[RtcHeader, list[bytes]]:
    """Read an .rtc file: its header and its serialised packets, in order.

    Raises PacketError if the file is not a well-formed .rtc file of RTC_FORMAT_VERSION; the
    packets themselves are returned as bytes, for `Packet.parse`. The header is checked before
    the rest of the file is read, so a large file of another kind is refused at once.
    """
    with open(path, "rb") as file:
        header = _read_rtc_header(file)
        reader = _Reader(file.read(), ".rtc file")
    packets = []
    while reader.remaining:
        (length,) = reader.unpack(_RECORD_LENGTH, f"packet {len(packets)} needs a 2-byte length")
        packets.append(reader.take(length, f"packet {len(packets)} says {length} bytes"))
    return header, packets


def _read_rtc_header(file: BinaryIO) -> RtcHeader:
    """The header at the start of `file`, read and checked up to the packets."""
    fixed = _Reader(file.read(_RTC_HEADER.size), ".rtc file")
    magic, version, sample_rate, frame_samples, kbps, id_length = fixed.unpack(
        _RTC_HEADER, f"the file header takes {_RTC_HEADER.size} bytes"
    )
    if magic != RTC_MAGIC:
        raise PacketError(f"not an .rtc file: starts with {magic!r} instead of {RTC_MAGIC!r}")
    _check_rtc_version(version)
    model_id = _Reader(file.read(id_length), ".rtc file").take(
        id_length, f"the model id takes {id_length} bytes"
    )
    return RtcHeader(version, sample_rate, frame_samples, _decode_model_id(model_id), kbps)


class _Reader:
    """Reads bytes front to back; running short raises a PacketError that says what was expected."""

    def __init__(self, data: bytes, source: str) -> None:
        self._data = bytes(data)
        self._offset = 0
        self._source = source

    @property
    def remaining(self) -> int:
        return len(self._data) - self._offset

    def take(self, size: int, claim: str) -> bytes:
        """The next `size` bytes; `claim` says what needs them ("the header takes 5 bytes")."""
        if size > self.remaining:
            raise PacketError(
                f"{self._source} truncated: {claim} but only {self.remaining} bytes follow"
            )
        chunk = self._data[self._offset : self._offset + size]
        self._offset += size
        return chunk

    def unpack(self, layout: struct.Struct, claim: str) -> tuple[int, ...]:
        return layout.unpack(self.take(layout.size, claim))

    def rest(self) -> bytes:
        return self.take(self.remaining, "the rest of the data")


def _as_codes(values: np.ndarray, what: str) -> np.ndarray:
    """`values` as a read-only int64 [n] copy; n <= MAX_CODEBOOKS, each in [0, CODEBOOK_SIZE)."""
    codes = np.asarray(values)
    if codes.ndim != 1 or (codes.size and codes.dtype.kind not in "iu"):
        raise PacketError(f"{what} must be a 1-D integer array, got {codes.dtype} {codes.shape}")
    if codes.size > MAX_CODEBOOKS:
        raise PacketError(f"{what} has {codes.size} codebooks, more than {MAX_CODEBOOKS}")
    if codes.size and (codes.min() < 0 or codes.max() >= CODEBOOK_SIZE):
        raise PacketError(
            f"{what} must lie in [0, {CODEBOOK_SIZE}), got {codes.min()}..{codes.max()}"
        )
    frozen = codes.astype(np.int64)
    frozen.setflags(write=False)
    return frozen


def _as_redundancy(frames: Iterable[np.ndarray]) -> tuple[np.ndarray, ...]:
    """Each frame of `frames` through `_as_codes`; frame 1 is seq - 1."""
    return tuple(_as_codes(codes, f"redundant frame {lag}") for lag, codes in enumerate(frames, 1))


def _read_codes(reader: _Reader, count: int, owner: str) -> np.ndarray:
    """Read `count` packed codes; `owner` ("header", "redundant frame 2") declared the count."""
    if count > MAX_CODEBOOKS:
        raise PacketError(f"{owner} says {count} codebooks, more than {MAX_CODEBOOKS}")
    size = packed_size(count)
    data = reader.take(size, f"{owner} says {count} codebooks ({size} bytes of codes)")
    return unpack_codes(data, count)


def _read_redundant_frame(reader: _Reader, lag: int) -> np.ndarray:
    """Read the [k][k codes] block of frame seq - `lag`."""
    owner = f"redundant frame {lag}"
    (count,) = reader.unpack(_BYTE, f"{owner} needs a codebook count byte")
    return _read_codes(reader, count, owner)


def _check_rtc_version(version: int) -> None:
    if version != RTC_FORMAT_VERSION:
        raise PacketError(
            f"unsupported .rtc format version {version} (expected {RTC_FORMAT_VERSION})"
        )


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not isinstance(value, int) or not low <= value <= high:
        raise PacketError(f"{name} must be an integer in [{low}, {high}], got {value!r}")


def _decode_model_id(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PacketError(f"model id is not valid UTF-8: {raw!r}") from None


def _record(index: int, packet: bytes) -> bytes:
    """`packet` framed as u16 length + bytes."""
    if len(packet) > 0xFFFF:
        raise PacketError(f"packet {index} has {len(packet)} bytes; an .rtc record holds 65535")
    return _RECORD_LENGTH.pack(len(packet)) + bytes(packet)
