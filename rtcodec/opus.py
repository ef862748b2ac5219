"""The Opus baseline, behind the same StreamEncoder / StreamDecoder protocols as rtcodec.

Mono, SAMPLE_RATE, one FRAME_SAMPLES frame per packet, APPLICATION_VOIP, through opuslib over the
system libopus. opuslib's property setters for in-band FEC and DTX are broken (they never pass the
value), so every encoder setting goes through `encoder_ctl` directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import opuslib
import opuslib.api.ctl
import opuslib.api.decoder
import opuslib.api.encoder

from rtcodec.audio import checked_frame
from rtcodec.bitstream import SEQ_MODULO, Packet
from rtcodec.config import FRAME_SAMPLES, SAMPLE_RATE

OPUS_NAME = "opus"
"""Codec name in signalling and in .rtc headers."""
MIN_OPUS_KBPS = 6.0
MAX_OPUS_KBPS = 510.0
"""Bitrates that libopus honours."""

_NO_CODES = np.zeros(0, dtype=np.int64)


class OpusStreamEncoder:
    """Encodes 20 ms frames into Opus packets, each wrapped in a `Packet` with its own seq."""

    def __init__(
        self,
        kbps: float,
        *,
        complexity: int = 10,
        fec: bool = False,
        packet_loss_perc: int = 0,
        dtx: bool = False,
        first_seq: int = 0,
    ) -> None:
        """`packet_loss_perc` is the expected loss that in-band FEC (`fec`) is tuned for."""
        if not MIN_OPUS_KBPS <= kbps <= MAX_OPUS_KBPS:
            raise ValueError(
                f"Opus bitrate must be in [{MIN_OPUS_KBPS}, {MAX_OPUS_KBPS}] kbps, got {kbps}"
            )
        _check_setting("complexity", complexity, 10)
        _check_setting("packet_loss_perc", packet_loss_perc, 100)
        _check_setting("first_seq", first_seq, SEQ_MODULO - 1)
        self._kbps = float(kbps)
        self._seq = first_seq
        self._encoder = opuslib.Encoder(SAMPLE_RATE, 1, opuslib.APPLICATION_VOIP)
        self._set(opuslib.api.ctl.set_bitrate, round(kbps * 1000))
        self._set(opuslib.api.ctl.set_complexity, complexity)
        self._set(opuslib.api.ctl.set_inband_fec, int(fec))
        self._set(opuslib.api.ctl.set_packet_loss_perc, packet_loss_perc)
        self._set(opuslib.api.ctl.set_dtx, int(dtx))

    @property
    def name(self) -> str:
        return OPUS_NAME

    @property
    def kbps(self) -> float:
        return self._kbps

    @property
    def delay_samples(self) -> int:
        """Samples by which decoded audio lags the input: the libopus lookahead (104 at 16 kHz)."""
        return int(self._encoder.lookahead)

    def push(self, frame: np.ndarray) -> bytes:
        """Encode `frame` (float32 [FRAME_SAMPLES]) into one serialised Opus `Packet`."""
        samples = checked_frame(frame)
        payload = self._encoder.encode_float(samples.tobytes(), FRAME_SAMPLES)
        packet = Packet(self._seq, _NO_CODES, opus=payload)
        self._seq = (self._seq + 1) % SEQ_MODULO
        return packet.to_bytes()

    def _set(self, request: object, value: int) -> None:
        opuslib.api.encoder.encoder_ctl(self._encoder.encoder_state, request, value)


class OpusStreamDecoder:
    """Decodes Opus packets into 20 ms frames; conceals lost and corrupt ones, or rebuilds a lost
    one from the in-band FEC of the packet that follows it."""

    def __init__(self) -> None:
        self._decoder = opuslib.Decoder(SAMPLE_RATE, 1)
        self._corrupt_packets = 0

    @property
    def corrupt_packets(self) -> int:
        """Packets that are not Opus or whose payload libopus rejected, concealed instead."""
        return self._corrupt_packets

    def push(self, packet: Packet | None, following: Sequence[Packet | None] = ()) -> np.ndarray:
        """Decode the next frame: float32 [FRAME_SAMPLES] in [-1, 1].

        `packet` None means lost: the frame is rebuilt from the in-band FEC of the next packet,
        `following[0]`, if it has arrived (libopus falls back to concealment when it carries
        none), else concealed; Opus FEC reaches back one frame only, so later packets go unused.
        A packet that is not Opus counts as corrupt (as the next packet, it gives no FEC);
        nothing that arrives from the network raises.
        """
        if packet is not None:
            return self._decode(packet.opus, fec=False)
        next_packet = following[0] if following else None
        if next_packet is not None and next_packet.is_opus:
            return self._decode(next_packet.opus, fec=True)
        return self._conceal()

    def _decode(self, payload: bytes, *, fec: bool) -> np.ndarray:
        """Decode `payload` (or its FEC copy of the previous frame); conceal if it is corrupt or
        empty (a packet that is not Opus). A corrupt packet counts once, when it is decoded as
        itself, not when it was also looked into for FEC."""
        if payload and self._is_one_frame(payload):
            try:
                return self._run_decoder(payload, fec=fec)
            except opuslib.OpusError:
                pass
        if not fec:
            self._corrupt_packets += 1
        return self._conceal()

    def _conceal(self) -> np.ndarray:
        """libopus packet loss concealment: decoding with no data."""
        return self._run_decoder(None, fec=False)

    def _is_one_frame(self, payload: bytes) -> bool:
        """Whether `payload` parses as an Opus packet of exactly FRAME_SAMPLES samples."""
        state = self._decoder.decoder_state
        try:
            return opuslib.api.decoder.get_nb_samples(state, payload, len(payload)) == FRAME_SAMPLES
        except opuslib.OpusError:
            return False

    def _run_decoder(self, payload: bytes | None, *, fec: bool) -> np.ndarray:
        """One opus_decode_float call for FRAME_SAMPLES samples; `payload` None conceals."""
        pcm = opuslib.api.decoder.decode_float(
            self._decoder.decoder_state,
            payload,
            0 if payload is None else len(payload),
            FRAME_SAMPLES,
            fec,
            channels=1,
        )
        return np.clip(np.frombuffer(pcm, dtype=np.float32), -1.0, 1.0)


def _check_setting(name: str, value: int, maximum: int) -> None:
    if not 0 <= value <= maximum:
        raise ValueError(f"{name} must be in [0, {maximum}], got {value}")
