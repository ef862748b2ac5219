"""Coverage-guided fuzzing with atheris (libFuzzer) of `Packet.parse` and of a call's receive path,
for rtcodec (a tiny untrained model) and Opus. benchmarks/fuzz.py runs it; by hand:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fuzz_atheris.py -runs=100000 [CORPUS_DIR] [libFuzzer flags]

Every input is one message, delivered one frame after the previous one to two receivers
(tests/fuzzing.py's `Receiver`) that live from input to input, so that their jitter buffers and
decoders go through long histories. A crash is any exception: a message that `Packet.parse` neither
refuses with PacketError nor parses canonically, an exception that escapes a receiver, or a
receiver whose audio is not finite or leaves [-1, 1], or whose jitter buffer exceeds its capacity.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the shared harness

with atheris.instrument_imports(include=["rtcodec", "fuzzing"]):
    from fuzzing import FUZZED_MODEL, Receiver
    from rtcodec.bitstream import Packet, PacketError
    from rtcodec.codec import untrained
    from rtcodec.opus import OpusStreamDecoder
    from rtcodec.transport.jitter import FRAME_SECONDS, JitterBuffer

CAPACITY = 20


def check_parse(message: bytes) -> None:
    try:
        packet = Packet.parse(message)
    except PacketError:
        return
    if packet.to_bytes() != message:
        raise AssertionError(f"{message!r} parses but serialises back as {packet.to_bytes()!r}")


def check_receiver(receiver: Receiver) -> None:
    stats = receiver.stats
    if stats.malformed_frames or stats.non_finite_samples or stats.max_abs > 1.0:
        raise AssertionError(f"bad audio: {stats}")
    if stats.max_buffered_frames > CAPACITY:
        raise AssertionError(f"jitter buffer beyond its capacity {CAPACITY}: {stats}")


class Target:
    """The fuzz target: one message to both receivers, which, with the clock, live on."""

    def __init__(self) -> None:
        self.receivers = [
            Receiver(untrained(FUZZED_MODEL).stream_decoder(), _jitter_buffer()),
            Receiver(OpusStreamDecoder(), _jitter_buffer()),
        ]
        self.clock = 0.0
        """Arrival time of the last message, in seconds."""

    def __call__(self, message: bytes) -> None:
        check_parse(message)
        self.clock += FRAME_SECONDS
        for receiver in self.receivers:
            receiver.arrive(message, self.clock)
            check_receiver(receiver)


def _jitter_buffer() -> JitterBuffer:
    return JitterBuffer(max_frames=CAPACITY // 2, capacity=CAPACITY)


def main() -> None:
    atheris.Setup(sys.argv, Target())
    atheris.Fuzz()


if __name__ == "__main__":
    main()
