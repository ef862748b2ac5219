"""Packet wire format, .rtc container and atomic writes."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtcodec.bitstream import (
    HEADER_BYTES,
    MAX_REDUNDANT_FRAMES,
    RTC_FORMAT_VERSION,
    RTC_MAGIC,
    SEQ_MODULO,
    Packet,
    PacketError,
    RtcHeader,
    pack_codes,
    packed_size,
    read_rtc,
    unpack_codes,
    wrapped_difference,
    write_rtc,
)
from rtcodec.config import CODEBOOK_SIZE, FRAME_SAMPLES, MAX_CODEBOOKS, SAMPLE_RATE
from rtcodec.fileio import atomic_path, atomic_write_bytes

FUZZ = settings(max_examples=300, deadline=None)

code_lists = st.lists(st.integers(0, CODEBOOK_SIZE - 1), max_size=MAX_CODEBOOKS)
seqs = st.integers(0, SEQ_MODULO - 1)


def codes(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


@st.composite
def rtcodec_packets(draw: st.DrawFn) -> Packet:
    redundancy = draw(st.lists(code_lists, max_size=MAX_REDUNDANT_FRAMES))
    return Packet(draw(seqs), codes(*draw(code_lists)), tuple(codes(*c) for c in redundancy))


@st.composite
def opus_packets(draw: st.DrawFn) -> Packet:
    return Packet(draw(seqs), codes(), opus=draw(st.binary(min_size=1, max_size=200)))


packets = st.one_of(rtcodec_packets(), opus_packets())


def assert_parses_canonically_or_rejects(data: bytes) -> None:
    """The contract of Packet.parse: a Packet that serialises back to `data`, or PacketError."""
    try:
        packet = Packet.parse(data)
    except PacketError:
        return
    assert packet.to_bytes() == data


def rtc_header(model_id: str = "rtcodec-test", kbps: float = 6.0) -> RtcHeader:
    return RtcHeader(RTC_FORMAT_VERSION, SAMPLE_RATE, FRAME_SAMPLES, model_id, kbps)


# --- bit packing -------------------------------------------------------------------------------


def test_pack_codes_is_msb_first_and_zero_padded() -> None:
    assert pack_codes(codes(CODEBOOK_SIZE - 1, 0)) == b"\xff\xc0\x00"
    assert pack_codes(codes(1)) == b"\x00\x40"
    assert pack_codes(codes()) == b""


@given(code_lists)
def test_unpack_inverts_pack(values: list[int]) -> None:
    packed = pack_codes(codes(*values))
    assert len(packed) == packed_size(len(values))
    np.testing.assert_array_equal(unpack_codes(packed, len(values)), values)


def test_unpack_rejects_set_padding_bits_and_wrong_length() -> None:
    with pytest.raises(PacketError, match="padding"):
        unpack_codes(b"\x00\x41", 1)
    with pytest.raises(PacketError, match="take 2 bytes"):
        unpack_codes(b"\x00", 1)


def test_pack_rejects_out_of_range_codes() -> None:
    with pytest.raises(PacketError, match="must lie in"):
        pack_codes(codes(CODEBOOK_SIZE))


# --- packets -----------------------------------------------------------------------------------


@pytest.mark.parametrize("num_codebooks", [0, 1, 3, 12, MAX_CODEBOOKS])
def test_rtcodec_packet_round_trip_and_size(num_codebooks: int) -> None:
    values = np.arange(num_codebooks, dtype=np.int64) * 37 % CODEBOOK_SIZE
    packet = Packet(seq=SEQ_MODULO - 1, codes=values)
    data = packet.to_bytes()
    assert len(data) == HEADER_BYTES + packed_size(num_codebooks)
    parsed = Packet.parse(data)
    assert parsed == packet
    assert parsed.seq == SEQ_MODULO - 1
    assert parsed.num_codebooks == num_codebooks
    assert not parsed.is_opus


def test_twelve_codebooks_take_twenty_bytes() -> None:
    assert len(Packet(0, np.zeros(12, dtype=np.int64)).to_bytes()) == 5 + 15


def test_redundancy_round_trip_in_order() -> None:
    redundancy = (codes(1, 2, 3), codes(), codes(CODEBOOK_SIZE - 1))
    packet = Packet(7, codes(5, 6), redundancy)
    data = packet.to_bytes()
    assert len(data) == HEADER_BYTES + 3 + (1 + 4) + 1 + (1 + 2)
    parsed = Packet.parse(data)
    assert parsed == packet
    assert [r.tolist() for r in parsed.redundancy] == [[1, 2, 3], [], [CODEBOOK_SIZE - 1]]


def test_opus_packet_round_trip() -> None:
    packet = Packet(SEQ_MODULO - 1, codes(), opus=b"\x08opus payload")
    parsed = Packet.parse(packet.to_bytes())
    assert parsed == packet
    assert parsed.is_opus and parsed.num_codebooks == 0
    assert len(packet.to_bytes()) == HEADER_BYTES + len(packet.opus)


def test_equality_compares_values() -> None:
    assert Packet(1, [1, 2]) == Packet(1, codes(1, 2))
    assert Packet(1, codes(1, 2)) != Packet(1, codes(1, 3))
    assert Packet(1, codes(1), (codes(4),)) != Packet(1, codes(1), (codes(5),))
    assert Packet(1, codes(1)) != Packet(2, codes(1))
    assert Packet(1, codes(), opus=b"a") != Packet(1, codes(), opus=b"b")


def test_packet_arrays_are_read_only_copies() -> None:
    source = codes(1, 2)
    packet = Packet(0, source)
    source[0] = 9
    assert packet.codes.tolist() == [1, 2]
    assert packet.codes.dtype == np.int64
    with pytest.raises(ValueError):
        packet.codes[0] = 3


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Packet(SEQ_MODULO, codes()), "seq"),
        (lambda: Packet(-1, codes()), "seq"),
        (lambda: Packet(0, codes(CODEBOOK_SIZE)), "must lie in"),
        (lambda: Packet(0, codes(-1)), "must lie in"),
        (lambda: Packet(0, np.zeros(MAX_CODEBOOKS + 1, dtype=np.int64)), "more than"),
        (lambda: Packet(0, np.zeros((2, 2), dtype=np.int64)), "1-D integer"),
        (lambda: Packet(0, np.array([0.5])), "1-D integer"),
        (lambda: Packet(0, codes(), (codes(),) * (MAX_REDUNDANT_FRAMES + 1)), "redundant"),
        (lambda: Packet(0, codes(1), opus=b"x"), "Opus packet cannot"),
        (lambda: Packet(0, codes(), (codes(1),), opus=b"x"), "Opus packet cannot"),
    ],
)
def test_constructor_rejects_values_the_wire_cannot_carry(
    make: Callable[[], Packet], message: str
) -> None:
    with pytest.raises(PacketError, match=message):
        make()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "packet truncated: the header takes 5 bytes but only 0 bytes follow"),
        (b"\x02\x00\x00\x00\x00", "unsupported packet version 2"),
        (b"\x01\x08\x00\x00\x00", "unknown flag bits"),
        (b"\x01\x00\x00\x00\x19" + bytes(40), "header says 25 codebooks, more than 24"),
        (b"\x01\x01\x00\x00\x01\x00\x00x", "Opus packet cannot carry codes"),
        (b"\x01\x03\x00\x00\x00x", "Opus packet cannot carry codes"),
        (b"\x01\x01\x00\x00\x00", "empty payload"),
        (b"\x01\x00\x00\x00\x00\x00", "1 trailing bytes"),
        (b"\x01\x02\x00\x00\x00", "redundant frame 1 needs a codebook count byte"),
        (b"\x01\x02\x00\x00\x00\x19" + bytes(40), "redundant frame 1 says 25 codebooks"),
    ],
)
def test_parse_rejects_malformed_packets(data: bytes, message: str) -> None:
    with pytest.raises(PacketError, match=message):
        Packet.parse(data)


def test_truncation_message_says_what_is_missing() -> None:
    data = Packet(3, np.zeros(12, dtype=np.int64)).to_bytes()[: HEADER_BYTES + 9]
    expected = "header says 12 codebooks (15 bytes of codes) but only 9 bytes follow"
    with pytest.raises(PacketError, match=re.escape(f"packet truncated: {expected}")):
        Packet.parse(data)


@FUZZ
@given(packets)
def test_every_valid_packet_round_trips(packet: Packet) -> None:
    data = packet.to_bytes()
    assert Packet.parse(data) == packet
    assert Packet.parse(data).to_bytes() == data


@FUZZ
@given(st.binary(max_size=64))
def test_random_bytes_parse_canonically_or_raise_packet_error(data: bytes) -> None:
    assert_parses_canonically_or_rejects(data)


@FUZZ
@given(st.binary(max_size=40).map(lambda tail: b"\x01" + tail))
def test_random_bytes_with_valid_version_parse_canonically_or_raise(data: bytes) -> None:
    assert_parses_canonically_or_rejects(data)


@FUZZ
@given(packets, st.data())
def test_truncated_packets_parse_canonically_or_raise(packet: Packet, data: st.DataObject) -> None:
    full = packet.to_bytes()
    prefix = full[: data.draw(st.integers(0, len(full) - 1))]
    if packet.is_opus:
        assert_parses_canonically_or_rejects(prefix)
    else:
        with pytest.raises(PacketError):
            Packet.parse(prefix)


@FUZZ
@given(packets, st.data())
def test_single_byte_mutations_parse_canonically_or_raise(
    packet: Packet, data: st.DataObject
) -> None:
    mutated = bytearray(packet.to_bytes())
    position = data.draw(st.integers(0, len(mutated) - 1))
    mutated[position] = data.draw(st.integers(0, 255))
    assert_parses_canonically_or_rejects(bytes(mutated))


# --- .rtc files --------------------------------------------------------------------------------


def sample_packets() -> list[bytes]:
    return [
        Packet(SEQ_MODULO - 1, codes(1, 2, 3)).to_bytes(),
        Packet(0, codes(4), (codes(1, 2),)).to_bytes(),
        Packet(1, codes(), opus=bytes(range(256)) + b"more").to_bytes(),
    ]


def test_rtc_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "call.rtc"
    header = rtc_header("rtcodec-v1-ünïcode", 1.5)
    write_rtc(path, iter(sample_packets()), header)
    assert read_rtc(path) == (header, sample_packets())
    assert path.read_bytes().startswith(RTC_MAGIC)


def test_rtc_round_trip_without_packets(tmp_path: Path) -> None:
    path = tmp_path / "empty.rtc"
    write_rtc(path, [], rtc_header("opus", 12.0))
    assert read_rtc(path) == (rtc_header("opus", 12.0), [])


def test_every_truncated_rtc_file_raises_packet_error(tmp_path: Path) -> None:
    path = tmp_path / "call.rtc"
    packets = sample_packets()
    clean_ends = set()
    for count in range(len(packets) + 1):
        write_rtc(path, packets[:count], rtc_header())
        clean_ends.add(path.stat().st_size)
    data = path.read_bytes()
    for length in sorted(set(range(len(data))) - clean_ends):
        path.write_bytes(data[:length])
        with pytest.raises(PacketError, match="truncated"):
            read_rtc(path)


def test_rtc_wrong_magic_and_version_raise_packet_error(tmp_path: Path) -> None:
    path = tmp_path / "call.rtc"
    write_rtc(path, sample_packets(), rtc_header())
    good = path.read_bytes()
    path.write_bytes(b"RIFF" + good[4:])
    with pytest.raises(PacketError, match=re.escape("not an .rtc file")):
        read_rtc(path)
    path.write_bytes(good[:4] + bytes([RTC_FORMAT_VERSION + 1]) + good[5:])
    with pytest.raises(PacketError, match=re.escape("unsupported .rtc format version 2")):
        read_rtc(path)


def test_rtc_bad_model_id_and_header_values_raise_packet_error(tmp_path: Path) -> None:
    path = tmp_path / "call.rtc"
    write_rtc(path, [], rtc_header("ab"))
    good = path.read_bytes()
    path.write_bytes(good[:-2] + b"\xff\xfe")
    with pytest.raises(PacketError, match="UTF-8"):
        read_rtc(path)
    path.write_bytes(good[:5] + bytes(4) + good[9:])
    with pytest.raises(PacketError, match="sample_rate"):
        read_rtc(path)


@pytest.mark.parametrize(
    "make",
    [
        lambda: rtc_header("x" * 256),
        lambda: rtc_header(kbps=float("nan")),
        lambda: rtc_header(kbps=-1.0),
        lambda: RtcHeader(RTC_FORMAT_VERSION, SAMPLE_RATE, 1 << 16, "m", 6.0),
        lambda: RtcHeader(RTC_FORMAT_VERSION + 1, SAMPLE_RATE, FRAME_SAMPLES, "m", 6.0),
    ],
)
def test_rtc_header_rejects_values_the_file_cannot_hold(make: Callable[[], RtcHeader]) -> None:
    with pytest.raises(PacketError):
        make()


def test_rtc_refuses_packets_longer_than_a_record(tmp_path: Path) -> None:
    with pytest.raises(PacketError, match="65535"):
        write_rtc(tmp_path / "call.rtc", [bytes(1 << 16)], rtc_header())


# --- atomic writes -----------------------------------------------------------------------------


def test_atomic_write_bytes_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "out.bin"
    atomic_write_bytes(path, b"old")
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    assert list(tmp_path.iterdir()) == [path]


def test_failing_writer_leaves_neither_partial_file_nor_temporary(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    with pytest.raises(RuntimeError), atomic_path(path) as temporary:
        assert temporary.parent == tmp_path and temporary.suffix == ".wav"
        temporary.write_bytes(b"half of the")
        raise RuntimeError("writer died")
    assert list(tmp_path.iterdir()) == []


def test_failing_packet_source_keeps_the_old_rtc_file(tmp_path: Path) -> None:
    path = tmp_path / "call.rtc"
    write_rtc(path, sample_packets(), rtc_header())
    before = path.read_bytes()

    def dying_source() -> Iterator[bytes]:
        yield sample_packets()[0]
        raise RuntimeError("encoder crashed")

    with pytest.raises(RuntimeError):
        write_rtc(path, dying_source(), rtc_header("other"))
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


def test_wrapped_difference_takes_the_short_way_round() -> None:
    assert wrapped_difference(5, 3, SEQ_MODULO) == 2
    assert wrapped_difference(2, SEQ_MODULO - 2, SEQ_MODULO) == 4
    assert wrapped_difference(SEQ_MODULO - 2, 2, SEQ_MODULO) == -4
