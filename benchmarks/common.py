"""What the benchmarks share: codec conditions, the streaming loop, metrics, and result files.

Every codec runs the way a call runs it: one 20 ms frame at a time through its `StreamEncoder`,
the packet bytes through `Packet.parse`, then its `StreamDecoder`. Bitrates are measured from those
bytes. Lyra v2 joins through `LyraStreamEncoder` / `LyraStreamDecoder`, a benchmark-only adapter
over its TFLite models.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import opuslib.api.info
import torch
from matplotlib.figure import Figure

import rtcodec.codec
from rtcodec import metrics
from rtcodec.audio import AudioError, checked_frame, frames, read_audio
from rtcodec.bitstream import HEADER_BYTES, SEQ_MODULO, Packet
from rtcodec.config import FRAME_SAMPLES, SAMPLE_RATE, CodecConfig
from rtcodec.model import CONFIG_FILE, WeightsError
from rtcodec.opus import OpusStreamDecoder, OpusStreamEncoder
from rtcodec.protocols import StreamDecoder, StreamEncoder

if TYPE_CHECKING:
    from ai_edge_litert.interpreter import SignatureRunner

BENCHMARKS_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCHMARKS_DIR / "results"
"""Where results go unless `--out` says otherwise; `clips/` below it is gitignored."""
DEFAULT_DATA = BENCHMARKS_DIR.parent.parent / "shared" / "data" / "dev"
"""The dev speech folder next to the repository (../shared/data/dev)."""
AUDIO_SUFFIXES = (".flac", ".wav", ".ogg", ".opus")
CODECS = ("rtcodec", "opus", "lyra")
CODEC_COLORS = {"rtcodec": "tab:blue", "opus": "tab:orange", "lyra": "tab:green"}
"""One colour per codec, the same in every plot."""
FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE

LYRA_NAME = "lyra"
LYRA_MODELS = ("soundstream_encoder.tflite", "quantizer.tflite", "lyragan.tflite")
LYRA_MAX_QUANTIZERS = 46
LYRA_QUANTIZERS = {3.2: 16, 6.0: 30, 9.2: 46}
"""The bitrates (kbps) Lyra v2 ships, and their quantizers of 4 bits at 50 frames/s."""
LYRA_KBPS = tuple(LYRA_QUANTIZERS)

MIN_CLIP_SECONDS = 1.0
"""Clips shorter than this are refused: PESQ needs a quarter of a second of speech, and a few
frames say little about a codec."""
METRICS = ("pesq_wb", "stoi", "estoi", "dnsmos_ovrl", "dnsmos_p808")
"""Per-clip quality metrics, in report order; the DNSMOS ones need `speechmos`."""
DNSMOS_METRICS = ("dnsmos_ovrl", "dnsmos_p808")

_NO_CODES = np.zeros(0, dtype=np.int64)


def use_one_thread() -> None:
    """Run torch on one thread: benchmarks measure one core, and share the machine."""
    torch.set_num_threads(1)


# --- conditions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """One codec at one bitrate, with factories for a fresh encoder and decoder per stream."""

    codec: str
    """"rtcodec", "opus" or "lyra"."""
    kbps: float
    """Nominal bitrate of the payload."""
    model: str
    """Which model or library version runs: rtcodec's model id, "libopus 1.3.1", ..."""
    new_encoder: Callable[[], StreamEncoder]
    new_decoder: Callable[[], StreamDecoder]
    variant: str = ""
    """How it runs, when not the default way: "PyTorch reference" for rtcodec's reference path."""

    @property
    def label(self) -> str:
        """"opus 12 kbps", or with a variant "rtcodec 6 kbps (PyTorch reference)"."""
        label = f"{self.codec} {self.kbps:g} kbps"
        return f"{label} ({self.variant})" if self.variant else label

    @property
    def slug(self) -> str:
        """`label` as a file-name part: "opus_12kbps", "rtcodec_6kbps_pytorch_reference"."""
        slug = f"{self.codec}_{self.kbps:g}kbps"
        return f"{slug}_{self.variant.lower().replace(' ', '_')}" if self.variant else slug


RTCODEC_REFERENCE = "PyTorch reference"
"""The variant name of rtcodec conditions on the PyTorch reference path (`fast=False`)."""


def rtcodec_conditions(
    codec: rtcodec.codec.Codec, rates: Sequence[float], *, fast: bool = True
) -> list[Condition]:
    """rtcodec at each of `rates`: on the numpy fast path (the default, as calls run it), or with
    `fast=False` on the PyTorch reference path."""
    return [
        Condition(
            "rtcodec",
            kbps,
            codec.model_id,
            functools.partial(codec.stream_encoder, kbps, fast=fast),
            functools.partial(codec.stream_decoder, fast=fast),
            variant="" if fast else RTCODEC_REFERENCE,
        )
        for kbps in rates
    ]


def opus_conditions(rates: Sequence[float]) -> list[Condition]:
    version = opuslib.api.info.get_version_string().decode()
    return [
        Condition(
            "opus", kbps, version, functools.partial(OpusStreamEncoder, kbps), OpusStreamDecoder
        )
        for kbps in rates
    ]


def lyra_conditions(models: Path, rates: Sequence[float]) -> list[Condition]:
    check_lyra_models(models)
    return [
        Condition(
            LYRA_NAME,
            kbps,
            f"lyra v2 tflite ({models})",
            functools.partial(LyraStreamEncoder, models, kbps),
            functools.partial(LyraStreamDecoder, models),
        )
        for kbps in rates
    ]


# --- command line -----------------------------------------------------------------------------


def add_codec_arguments(
    parser: argparse.ArgumentParser, rates: Mapping[str, Sequence[float]], allow_untrained: bool
) -> None:
    """The options every benchmark takes: which codecs, at which rates, from which models."""
    parser.add_argument(
        "--codecs", nargs="+", choices=CODECS, default=list(CODECS),
        help="codecs to run (default: all; lyra only with --lyra-models)",
    )
    for codec in CODECS:
        parser.add_argument(
            f"--{codec}-kbps", nargs="+", type=float, default=list(rates[codec]), metavar="KBPS",
            help=f"{codec} bitrates (default: {' '.join(f'{kbps:g}' for kbps in rates[codec])})",
        )
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument(
        "--weights", type=Path, metavar="DIR",
        help="rtcodec weights folder (model.safetensors + config.json); default: the shipped ones",
    )
    if allow_untrained:
        weights.add_argument(
            "--untrained", action="store_true", help="random rtcodec weights of the shipped architecture"
        )
    else:
        parser.set_defaults(untrained=False)
    parser.add_argument(
        "--lyra-models", type=Path, metavar="DIR",
        help="folder with Lyra v2's three .tflite models (e.g. ../shared/anchors/lyra)",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
        help=f"results folder (default: {DEFAULT_OUT})",
    )


def select_conditions(
    args: argparse.Namespace,
    missing_weights_hint: str,
    codec: rtcodec.codec.Codec | None = None,
) -> list[Condition]:
    """The conditions that `add_codec_arguments`' options ask for, rtcodec then Opus then Lyra.
    `codec`: the rtcodec model when the caller has loaded it already (default: load it here)."""
    conditions: list[Condition] = []
    if "rtcodec" in args.codecs:
        if codec is None:
            codec = load_rtcodec(args.weights, args.untrained, missing_weights_hint)
        conditions += rtcodec_conditions(codec, args.rtcodec_kbps)
    if "opus" in args.codecs:
        conditions += opus_conditions(args.opus_kbps)
    if "lyra" in args.codecs:
        conditions += _available_lyra_conditions(args.lyra_models, args.lyra_kbps)
    if not conditions:
        raise SystemExit("error: no codec left to run")
    return check_bitrates(conditions)


def check_bitrates(conditions: list[Condition]) -> list[Condition]:
    """`conditions`, once each codec has taken its bitrate; else exit with the codec's message."""
    for condition in conditions:
        try:
            condition.new_encoder()
        except ValueError as error:
            raise SystemExit(f"error: {condition.label}: {error}") from None
    return conditions


def load_rtcodec(weights: Path | None, untrained: bool, hint: str) -> rtcodec.codec.Codec:
    """The codec from `weights` (default: shipped), or an untrained one; exits if unavailable."""
    if untrained:
        shipped = CodecConfig.from_json((rtcodec.codec.shipped_weights() / CONFIG_FILE).read_text())
        return rtcodec.codec.untrained(dataclasses.replace(shipped, model_id=CodecConfig.model_id, extra={}))
    try:
        return rtcodec.codec.load(weights)
    except WeightsError as error:
        raise SystemExit(f"error: {error}\n{hint}") from None


def _available_lyra_conditions(models: Path | None, rates: Sequence[float]) -> list[Condition]:
    """Lyra conditions, or none (saying why) without --lyra-models or without ai-edge-litert."""
    if models is None:
        print("Lyra skipped: pass --lyra-models DIR to include it")
        return []
    if importlib.util.find_spec("ai_edge_litert") is None:
        print("Lyra skipped: its TFLite runtime is missing (pip install ai-edge-litert)")
        return []
    return lyra_conditions(models, rates)


# --- streaming --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class StreamRun:
    """What one clip gave through one condition, frame by frame."""

    audio: np.ndarray
    """Decoded float32 [frames * FRAME_SAMPLES]; lags the input by the codec's delay."""
    packets: list[bytes]
    """The serialised packets, one per frame."""
    encode_seconds: np.ndarray
    """float64 [frames]: time of each `encoder.push` (packet serialisation included)."""
    decode_seconds: np.ndarray
    """float64 [frames]: time of each `Packet.parse` + `decoder.push`."""

    @property
    def seconds(self) -> float:
        """Duration of the stream: frames x 20 ms."""
        return len(self.packets) * FRAME_SECONDS

    @property
    def total_bytes(self) -> int:
        return sum(map(len, self.packets))

    @property
    def payload_bytes(self) -> int:
        """Bytes after the fixed packet header: codes, or the Opus / Lyra payload."""
        return self.total_bytes - HEADER_BYTES * len(self.packets)


class StreamedFrame(NamedTuple):
    """One frame through an encoder, the packet bytes and a decoder."""

    packet: bytes
    audio: np.ndarray
    """Decoded float32 [FRAME_SAMPLES]."""
    encode_seconds: float
    """Time of `encoder.push` (packet serialisation included)."""
    decode_seconds: float
    """Time of `Packet.parse` + `decoder.push`."""


class Streamer:
    """A fresh encoder and decoder of `condition`, fed one frame at a time: for benchmarks that
    interleave several conditions, frame by frame or block by block (`stream` runs one whole)."""

    def __init__(self, condition: Condition) -> None:
        self.condition = condition
        self._encoder = condition.new_encoder()
        self._decoder = condition.new_decoder()

    def push(self, frame: np.ndarray) -> StreamedFrame:
        """Encode float32 `frame` [FRAME_SAMPLES], parse the packet and decode it, timing both."""
        started = time.perf_counter()
        packet = self._encoder.push(frame)
        encoded = time.perf_counter()
        audio = self._decoder.push(Packet.parse(packet))
        decoded = time.perf_counter()
        return StreamedFrame(packet, audio, encoded - started, decoded - encoded)


def stream(condition: Condition, audio: np.ndarray) -> StreamRun:
    """Run float32 `audio` [samples] through a fresh encoder and decoder of `condition`."""
    streamer = Streamer(condition)
    results = [streamer.push(frame) for frame in frames(audio)]
    return StreamRun(
        np.concatenate([result.audio for result in results]),
        [result.packet for result in results],
        np.array([result.encode_seconds for result in results]),
        np.array([result.decode_seconds for result in results]),
    )


def bitrate_kbps(byte_count: int, seconds: float) -> float:
    """The bitrate, in kbps, of `byte_count` bytes sent over `seconds`."""
    return byte_count * 8 / seconds / 1000


# --- data and metrics -------------------------------------------------------------------------


def dev_files(data: Path, max_files: int | None) -> list[Path]:
    """Audio files under `data`, interleaved across its sub-folders so that a few files cover
    every corpus; at most `max_files`. Exits with a clear message when `data` is missing."""
    if not data.is_dir():
        raise SystemExit(
            f"error: no speech data at '{data}': pass --data DIR (the dev folder of ../shared/data)"
        )
    by_folder: dict[Path, list[Path]] = {}
    for path in sorted(data.rglob("*")):
        if path.is_file() and path.suffix.lower() in AUDIO_SUFFIXES:
            by_folder.setdefault(path.parent, []).append(path)
    interleaved = sorted(
        (rank, folder, path)
        for folder, paths in by_folder.items()
        for rank, path in enumerate(paths)
    )
    files = [path for _, _, path in interleaved][:max_files]
    if not files:
        raise SystemExit(f"error: no audio files ({', '.join(AUDIO_SUFFIXES)}) under '{data}'")
    return files


def read_clip(path: Path, max_seconds: float | None) -> np.ndarray:
    """float32 [samples] at SAMPLE_RATE, cut to its first `max_seconds`. Exits naming the file if
    it cannot be read or gives less than MIN_CLIP_SECONDS: every codec is scored on every file."""
    try:
        audio = read_audio(path)
    except AudioError as error:
        raise SystemExit(f"error: {error}") from None
    clip = audio if max_seconds is None else audio[: round(max_seconds * SAMPLE_RATE)]
    if len(clip) < MIN_CLIP_SECONDS * SAMPLE_RATE:
        raise SystemExit(f"error: '{path}' gives {len(clip) / SAMPLE_RATE:.2f} s of audio; each file "
                         f"must give at least {MIN_CLIP_SECONDS:g} s (see --max-seconds)")
    return clip


def _checked(convert: Callable[[str], Any], accept: Callable[[Any], bool], what: str) -> Callable[[str], Any]:
    """An argparse `type` that converts, then refuses values outside `accept` with `what`."""
    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got '{text}'")
        return value

    return parse


positive_int = _checked(int, lambda value: value > 0, "a whole number > 0")
non_negative_int = _checked(int, lambda value: value >= 0, "a whole number >= 0")
positive_number = _checked(float, lambda value: math.isfinite(value) and value > 0, "a finite number > 0")
non_negative_number = _checked(float, lambda value: math.isfinite(value) and value >= 0, "a finite number >= 0")


class Dnsmos:
    """DNSMOS P.835 OVRL and DNSMOS P.808 from the ONNX models that `speechmos` ships, run on one
    thread (speechmos' own loader would take every core)."""

    def __init__(self) -> None:
        import onnxruntime
        from speechmos import dnsmos

        class _OneThread(dnsmos.DNSMOS):  # type: ignore[misc]  # speechmos is untyped
            def __init__(self, primary_model_path: str, p808_model_path: str) -> None:
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = options.inter_op_num_threads = 1
                self.primary_model_path = primary_model_path
                self.onnx_sess = onnxruntime.InferenceSession(primary_model_path, options)
                self.p808_onnx_sess = onnxruntime.InferenceSession(p808_model_path, options)

        models = Path(dnsmos.__file__).parent / "dnsmos_models"
        self._model = _OneThread(str(models / "sig_bak_ovr.onnx"), str(models / "model_v8.onnx"))

    def __call__(self, audio: np.ndarray) -> dict[str, float]:
        """Scores (1..5) of float32 `audio` [samples] at SAMPLE_RATE; no reference needed."""
        scores = self._model(np.clip(audio, -1.0, 1.0), SAMPLE_RATE, False)
        return {"dnsmos_ovrl": float(scores["ovrl_mos"]), "dnsmos_p808": float(scores["p808_mos"])}


def load_dnsmos() -> Dnsmos | None:
    """The DNSMOS scorer, or None (saying why) when `speechmos` or its dependencies are missing."""
    try:
        return Dnsmos()
    except ImportError as error:
        print(f"DNSMOS skipped: {error} (pip install speechmos librosa onnxruntime)")
        return None


PLCMOS_SEED = 0
"""PLCMOS averages over randomly drawn "raters"; a fixed seed gives every clip one score."""


class Plcmos:
    """PLCMOS v2 (Microsoft's packet-loss-concealment MOS, from `speechmos`), run on one thread
    and made deterministic: its rater embeddings are drawn from PLCMOS_SEED, not numpy's global
    state (which is left as it was)."""

    def __init__(self) -> None:
        import onnxruntime
        from speechmos import plcmos

        class _OneThread(plcmos.PLCMOS):  # type: ignore[misc]  # speechmos is untyped
            def __init__(self) -> None:
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = options.inter_op_num_threads = 1
                self.model_name = "plcmos_v2"
                self.onnx_name = self.model_name + ".onnx"
                self.max_lens = 999999999999
                self.embed_rounds = 15
                self.model_path = str(Path(plcmos.__file__).parent / "plcmos_models" / self.onnx_name)
                self.session = onnxruntime.InferenceSession(self.model_path, options)

        self._model = _OneThread()

    def __call__(self, audio: np.ndarray) -> float:
        """Score (1..5) of float32 `audio` [samples] at SAMPLE_RATE; no reference needed."""
        state = np.random.get_state()
        np.random.seed(PLCMOS_SEED)
        try:
            return float(self._model(np.clip(audio, -1.0, 1.0).astype(np.float32))["plcmos"])
        finally:
            np.random.set_state(state)


def load_plcmos() -> Plcmos | None:
    """The PLCMOS scorer, or None (saying why) when `speechmos` or onnxruntime is missing."""
    try:
        return Plcmos()
    except ImportError as error:
        print(f"PLCMOS skipped: {error} (pip install speechmos onnxruntime)")
        return None


def quality_metrics(
    reference: np.ndarray, decoded: np.ndarray, dnsmos: Dnsmos | None
) -> dict[str, float | None]:
    """Every name in METRICS for `decoded` against `reference`; DNSMOS ones None without it."""
    scores: dict[str, float | None] = {
        "pesq_wb": metrics.pesq_wb(reference, decoded),
        "stoi": metrics.stoi(reference, decoded),
        "estoi": metrics.stoi(reference, decoded, extended=True),
    }
    scores.update(non_intrusive_metrics(decoded[: len(reference)], dnsmos))
    return scores


def non_intrusive_metrics(audio: np.ndarray, dnsmos: Dnsmos | None) -> dict[str, float | None]:
    """DNSMOS_METRICS of `audio`, or None for each without DNSMOS."""
    if dnsmos is None:
        return dict.fromkeys(DNSMOS_METRICS)
    return dict(dnsmos(audio))


def mean(values: Sequence[float | None]) -> float | None:
    """Mean of `values`, or None if any is None (a metric that could not be computed)."""
    if not values or any(value is None for value in values):
        return None
    return float(np.mean([value for value in values if value is not None]))


# --- results ----------------------------------------------------------------------------------


def number(value: float | None, digits: int = 2) -> str:
    """`value` for a table cell: fixed `digits`, or "n/a"."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def models_line(summaries: Sequence[Mapping[str, Any]]) -> str:
    """"codec `model`" for each codec in `summaries` (dicts with "codec" and "model"), in order."""
    models = {summary["codec"]: summary["model"] for summary in summaries}
    return ", ".join(f"{codec} `{model}`" for codec, model in models.items())


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join(f"| {' | '.join(line)} |" for line in lines) + "\n"


def write_results(
    out: Path,
    stem: str,
    data: Mapping[str, Any],
    markdown: str,
    figure: Figure,
    extra_figures: Mapping[str, Figure] | None = None,
) -> list[Path]:
    """Write `stem`.json, `stem`.md and `stem`.png into `out`, and `stem`_NAME.png for each NAME
    of `extra_figures`; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.{suffix}" for suffix in ("json", "md", "png")]
    paths[0].write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
    paths[1].write_text(markdown)
    figure.savefig(paths[2], dpi=120, bbox_inches="tight")
    for name, extra in (extra_figures or {}).items():
        paths.append(out / f"{stem}_{name}.png")
        extra.savefig(paths[-1], dpi=120, bbox_inches="tight")
    return paths


def new_figure(
    panels: int, width: float = 5.0, height: float = 4.0, rows: int = 1
) -> tuple[Figure, list[Any]]:
    """A figure (Agg, no display) with `rows` rows of `panels` axes side by side; the axes in
    reading order (row by row)."""
    figure = Figure(figsize=(width * panels, height * rows), layout="constrained")
    return figure, list(np.ravel(figure.subplots(rows, panels)))


# --- Lyra v2 adapter (benchmark only) ---------------------------------------------------------


def check_lyra_models(models: Path) -> None:
    """Exit with a clear message unless `models` holds Lyra v2's three TFLite files."""
    missing = [name for name in LYRA_MODELS if not (models / name).is_file()]
    if missing:
        raise SystemExit(f"error: '{models}' lacks the Lyra v2 model(s) {', '.join(missing)}")


def lyra_quantizers(kbps: float) -> int:
    """Quantizers of Lyra at `kbps`; ValueError for a bitrate that Lyra v2 does not ship."""
    if kbps not in LYRA_QUANTIZERS:
        raise ValueError(f"Lyra v2 runs at {' / '.join(map(str, LYRA_KBPS))} kbps, not {kbps}")
    return LYRA_QUANTIZERS[kbps]


def _lyra_signature(models: Path, model: str, signature: str) -> SignatureRunner:
    """A fresh one-thread interpreter of `model`.tflite, as its `signature` runner. The models
    keep their state in the interpreter, so every stream needs its own."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(models / f"{model}.tflite"), num_threads=1)
    return interpreter.get_signature_runner(signature)


class LyraStreamEncoder:
    """Lyra v2 behind the StreamEncoder protocol: soundstream encoder + quantizer, frame by frame.

    The packet payload is Lyra's: the 4-bit indices packed two per byte, high nibble first (8 / 15 /
    23 bytes). It rides in the packet's opaque payload slot, the one Opus uses (so the header says
    Opus): the same 5-byte header as Opus, fine for a benchmark, not for a real wire.
    """

    name = LYRA_NAME

    def __init__(self, models: Path, kbps: float) -> None:
        self._kbps = kbps
        self._quantizers = lyra_quantizers(kbps)
        self._encode = _lyra_signature(models, "soundstream_encoder", "serving_default")
        self._quantize = _lyra_signature(models, "quantizer", "encode")
        self._seq = 0

    @property
    def kbps(self) -> float:
        return self._kbps

    def push(self, frame: np.ndarray) -> bytes:
        features = self._encode(input_audio=checked_frame(frame)[None, :])["output_0"]
        quantized = self._quantize(input_frames=features, num_quantizers=np.int32(self._quantizers))
        indices = quantized["output_0"].reshape(-1)[: self._quantizers]
        packet = Packet(self._seq, _NO_CODES, opus=_pack_nibbles(indices))
        self._seq = (self._seq + 1) % SEQ_MODULO
        return packet.to_bytes()


class LyraStreamDecoder:
    """Lyra v2 behind the StreamDecoder protocol: dequantizer + LyraGAN, frame by frame.

    The models have no loss concealment (Lyra does it in C++), so a lost frame is silence.
    """

    def __init__(self, models: Path) -> None:
        self._dequantize = _lyra_signature(models, "quantizer", "decode")
        self._synthesize = _lyra_signature(models, "lyragan", "serving_default")

    def push(self, packet: Packet | None, following: Sequence[Packet | None] = ()) -> np.ndarray:
        if packet is None:
            return np.zeros(FRAME_SAMPLES, dtype=np.float32)
        indices = np.full(LYRA_MAX_QUANTIZERS, -1, dtype=np.int32)
        used = _unpack_nibbles(packet.opus)
        indices[: len(used)] = used
        features = self._dequantize(encoding_indices=indices.reshape(-1, 1, 1))["output_0"]
        audio = np.asarray(self._synthesize(input_audio=features)["output_0"], dtype=np.float32)
        return np.clip(audio.reshape(-1), -1.0, 1.0)


def _pack_nibbles(indices: np.ndarray) -> bytes:
    """Even-length 4-bit indices [n] -> n / 2 bytes, high nibble first."""
    pairs = indices.astype(np.uint8).reshape(-1, 2)
    return (pairs[:, 0] << 4 | pairs[:, 1]).astype(np.uint8).tobytes()


def _unpack_nibbles(payload: bytes) -> np.ndarray:
    """Inverse of `_pack_nibbles`: int32 [2 * len(payload)]."""
    packed = np.frombuffer(payload, dtype=np.uint8)
    return np.stack([packed >> 4, packed & 0x0F], axis=1).reshape(-1).astype(np.int32)
