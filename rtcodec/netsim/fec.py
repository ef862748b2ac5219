"""Whether a packet can rebuild a frame before it: rtcodec redundancy, or Opus in-band FEC.

An rtcodec packet says so in its header (the redundancy field: how many frames back it reaches).
An Opus packet reaches back one frame, and carries FEC (SILK "LBRR" data) only when libopus
decided to spend bits on it, which depends on the bitrate and the expected loss; the flag is the
second bit of the SILK layer, read here with the first steps of the Opus range decoder (RFC 6716,
sections 4.1 and 4.2.3), without decoding anything else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from rtcodec.bitstream import Packet

_SILK_ONLY_CONFIGS: Final = range(0, 12)
_HYBRID_CONFIGS: Final = range(12, 16)
_SYM_BITS: Final = 8
_CODE_EXTRA: Final = 7
"""(EC_CODE_BITS - 2) % EC_SYM_BITS + 1 with 32-bit codes and 8-bit symbols."""
_CODE_BOTTOM: Final = 1 << 23
_CODE_MASK: Final = (1 << 31) - 1


def rebuilds(packet: Packet, distance: int) -> bool:
    """Whether `packet` carries what a decoder needs to rebuild the frame `distance` (>= 1)
    frames before it."""
    if packet.is_opus:
        return distance == 1 and opus_has_fec(packet.opus)
    return len(packet.redundancy) >= distance


def rebuildable(following: Sequence[Packet | None]) -> bool:
    """Whether some packet of `following` (`following[d - 1]`: d frames later, None if it has not
    arrived) can rebuild the lost frame before them, as `StreamDecoder.push` is given them."""
    return any(
        later is not None and rebuilds(later, distance)
        for distance, later in enumerate(following, 1)
    )


def opus_has_fec(payload: bytes) -> bool:
    """Whether an Opus packet of one mono frame carries in-band FEC (LBRR) for the previous
    frame. CELT-only packets, packets of several frames and stereo packets never count."""
    if len(payload) < 2:
        return False
    toc = payload[0]
    config, stereo, frame_code = toc >> 3, (toc >> 2) & 1, toc & 0b11
    if config not in _SILK_ONLY_CONFIGS and config not in _HYBRID_CONFIGS:
        return False
    if stereo or frame_code != 0:
        return False
    if config in _SILK_ONLY_CONFIGS and config % 4 > 1:
        return False  # 40 or 60 ms SILK frames carry one VAD flag per 20 ms: not ours
    decoder = _RangeDecoder(payload[1:])
    decoder.bit()  # the VAD flag of the (only) SILK frame
    return decoder.bit()


class _RangeDecoder:
    """The start of libopus' ec_dec: enough to read equiprobable bits."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._offset = 0
        self._range = 1 << _CODE_EXTRA
        self._remainder = self._read_byte()
        self._value = self._range - 1 - (self._remainder >> (_SYM_BITS - _CODE_EXTRA))
        self._normalize()

    def bit(self) -> bool:
        """ec_dec_bit_logp(dec, 1)."""
        half = self._range >> 1
        one = self._value < half
        if not one:
            self._value -= half
        self._range = half if one else self._range - half
        self._normalize()
        return one

    def _read_byte(self) -> int:
        if self._offset >= len(self._data):
            return 0
        self._offset += 1
        return self._data[self._offset - 1]

    def _normalize(self) -> None:
        while self._range <= _CODE_BOTTOM:
            self._range <<= _SYM_BITS
            symbol = self._remainder
            self._remainder = self._read_byte()
            symbol = ((symbol << _SYM_BITS) | self._remainder) >> (_SYM_BITS - _CODE_EXTRA)
            self._value = ((self._value << _SYM_BITS) + (0xFF & ~symbol)) & _CODE_MASK
