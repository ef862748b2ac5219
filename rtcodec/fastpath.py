"""Fast streaming path: a trained `NeuralCodec` compiled into per-frame kernels on numpy buffers.

The reference path (`TorchEncoderCore` / `TorchDecoderCore` in rtcodec.codec) runs the PyTorch
modules on [batch, channels, time] tensors: for one 20 ms frame that is ~700 aten ops to encode
(~15 per RVQ stage) and ~400 to decode, plus `torch.cat` of every conv state and oneDNN set-up of
tiny (and, dilated, very slow) convolutions. At these sizes per-op overhead, not arithmetic,
decides, so the fast path does fewer and bigger ops, all of them numpy calls (~0.3-1 us each
against ~1-5 us for a torch op), with every buffer preallocated for one frame.

The module tree is compiled once, with the weights copied (frozen), into kernels that mirror the
module types and work time-major, [time, channels], so that a conv's taps are contiguous rows:

- `_Conv` (StreamingConv1d): the input rows are written, through the preceding ELU if any, into a
  `_Window` that keeps the left context; the window viewed as im2col rows [time_out, kernel *
  channels] (copied into a buffer only where taps overlap or are dilated) times the pre-arranged
  weight [kernel * in, out] is one GEMM. `_Pointwise` is the kernel-1 case, without state.
- `_ConvTranspose` (StreamingConvTranspose1d): one GEMM [time_in, in] x [in, kernel * out] gives
  every input step's output block; output step t adds the blocks of steps t, t - 1, ...; the
  products of the last steps are the state (the reference's overlap `tail`).
- `_Residual` (ResidualUnit), `_RmsNorm` (RmsNorm), `_Elu` (an ELU that no conv follows).

The RVQ stays in its lookup space, as the model does: per stage a [latent + 1, dim] mat-vec
(project_in with its bias), a [dim, 1024] one against the l2-normalised entries (the cosine up to
the point's norm, which does not change the argmax), an argmax, and the subtraction of a
precomputed row project_out(normalize(entry)) (a [1024, latent] table per stage: 24 MB for the
default model, of which a frame reads 24 rows). Folding project_in into the codebook instead,
[1024, latent] per stage, is ~5x slower and reads those 24 MB every frame. Decoding gathers the
normalised entries of the k stages and applies all their project_outs as one mat-vec.

Results equal the reference up to float rounding (summation order): audio within 1e-5, and the
same codes except where two entries tie to ~1e-5 in cosine (the tests' tolerances). A decoder that
carries its phase (`CodecConfig.phase_advance`) adds its rounding up from frame to frame: the two
paths' phases drift apart by at most about 1e-6 rad a frame (0.2 rad in an hour if every frame
rounded the same way), which is inaudible. `FastEncoderCore` /
`FastDecoderCore` are the cores that `rtcodec.codec.Codec` streams run on by default. Numpy's
BLAS follows OMP_NUM_THREADS / OPENBLAS_NUM_THREADS, not `torch.set_num_threads`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rtcodec.config import FRAME_SAMPLES
from rtcodec.model import NeuralCodec
from rtcodec.modules.conv import StreamingConv1d, StreamingConvTranspose1d
from rtcodec.modules.seanet import ResidualUnit, RmsNorm
from rtcodec.modules.spectral import MAX_LOG_MAGNITUDE, ChannelNorm, ConvNeXtBlock, FrameSynthesis
from rtcodec.quantization import ABSENT, ResidualVectorQuantizer

_MIN_WINDOWS = 4
"""A sliding window advances through at least this many frames before it shifts its history."""


def _frozen(tensor: torch.Tensor) -> np.ndarray:
    """A float32 C-contiguous numpy copy: kernels never see later changes to the model."""
    return np.ascontiguousarray(tensor.detach().cpu().to(torch.float32).numpy()).copy()


@functools.cache
def _zeros(shape: tuple[int, ...]) -> np.ndarray:
    """Read-only float32 zeros, shared by every kernel (fewer distinct cache lines per frame)."""
    zeros = np.zeros(shape, dtype=np.float32)
    zeros.flags.writeable = False
    return zeros


class _EluInto:
    """Writes elu(x) (or, without `alpha`, x itself) into a target buffer of x's shape.

    For 0 < alpha <= 1, elu(x) = max(x, alpha * expm1(min(x, 0))): three passes. Numpy has no fast
    loop for a scalar operand, so the zeros are an array of the frame's shape.
    """

    def __init__(self, alpha: float | None, shape: tuple[int, ...]) -> None:
        self.alpha = alpha
        self.zeros = _zeros(shape)
        self.scratch = np.empty(shape, dtype=np.float32)

    def __call__(self, source: np.ndarray, target: np.ndarray) -> None:
        if self.alpha is None:
            np.copyto(target, source)
            return
        scratch = self.scratch
        np.minimum(source, self.zeros, out=scratch)
        np.expm1(scratch, out=scratch)
        if self.alpha != 1.0:
            scratch *= self.alpha
        if 0.0 < self.alpha <= 1.0:  # then alpha * expm1(x) >= x where x <= 0, and 0 elsewhere
            np.maximum(source, scratch, out=target)
        else:
            np.copyto(target, np.where(source > 0, source, scratch))


def _bias_of(conv: nn.Conv1d | nn.ConvTranspose1d) -> torch.Tensor:
    return conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)


def _rows_of(bias: torch.Tensor, rows: int) -> np.ndarray:
    """The bias repeated for every row [rows, channels]: numpy adds same-shape arrays fastest."""
    return _frozen(bias[None, :].expand(rows, -1))


class _Window:
    """Time-major sliding window over a stream of rows: `history` past rows + `rows` new ones.

    The rows live in one buffer that holds several frames; the window moves forward by `rows`
    each frame and copies its history back to the start only when it reaches the end.
    """

    def __init__(self, history: int, rows: int, width: int) -> None:
        self.history, self.rows = history, rows
        self.count = max(_MIN_WINDOWS, math.ceil(history / rows))
        self.buffer = np.zeros((history + self.count * rows, width), dtype=np.float32)
        self.position = 0

    def views(self, shape: Sequence[int], strides: Sequence[int], offset: int = 0) -> list[np.ndarray]:
        """A view with `shape` and `strides` (in elements) from row `offset` of every window position."""
        last = offset * self.buffer.shape[1] + sum((n - 1) * stride for n, stride in zip(shape, strides, strict=True))
        if (self.count - 1) * self.rows * self.buffer.shape[1] + last >= self.buffer.size:
            raise ValueError("a view would reach past the window buffer")
        item = self.buffer.itemsize
        return [
            np.lib.stride_tricks.as_strided(
                self.buffer[p * self.rows + offset :], shape, [stride * item for stride in strides]
            )
            for p in range(self.count)
        ]

    def advance(self) -> None:
        self.position += 1
        if self.position == self.count:
            self.position = 0
            if self.history:
                self.buffer[: self.history] = self.buffer[self.count * self.rows :]


class _Kernel:
    """One compiled layer: float32 [rows_in, channels_in] -> [rows_out, channels_out], one frame.

    A kernel never writes to its input; its output is a buffer of its own, overwritten next frame.
    """

    rows_out: int
    channels_out: int

    def __call__(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class _Conv(_Kernel):
    """StreamingConv1d, with an optional ELU before it."""

    def __init__(self, layer: StreamingConv1d, rows: int, alpha: float | None) -> None:
        conv = layer.conv
        channels, kernel = conv.in_channels, conv.kernel_size[0]
        stride, dilation = layer.stride, conv.dilation[0]
        if rows % stride:
            raise ValueError(f"{rows} rows per frame do not divide into stride {stride}")
        self.rows_out, self.channels_out = rows // stride, conv.out_channels
        # im2col column (tap, channel) -> weight [kernel * in_channels, out_channels]
        self.weight = _frozen(conv.weight.permute(2, 1, 0).reshape(kernel * channels, -1))
        self.bias = _rows_of(_bias_of(conv), self.rows_out)
        self.elu = _EluInto(alpha, (rows, channels))
        self.window = _Window(layer.left_context, rows, channels)
        self.inputs = self.window.views((rows, channels), (channels, 1), layer.left_context)
        width = kernel * channels
        if dilation == 1 and (self.rows_out == 1 or stride == kernel):
            # the taps of one output are contiguous and outputs do not overlap: a GEMM operand as is
            self.im2col = self.window.views((self.rows_out, width), (stride * channels, 1))
            self.columns = self.taps = None
        else:
            taps = (self.rows_out, kernel, channels)
            self.im2col = self.window.views(taps, (stride * channels, dilation * channels, 1))
            self.columns = np.empty((self.rows_out, width), dtype=np.float32)
            self.taps = self.columns.reshape(taps)
        self.out = np.empty((self.rows_out, self.channels_out), dtype=np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        position = self.window.position
        self.elu(x, self.inputs[position])
        columns = self.im2col[position]
        if self.taps is not None:
            np.copyto(self.taps, columns)
            columns = self.columns
        np.matmul(columns, self.weight, out=self.out)
        self.out += self.bias
        self.window.advance()
        return self.out


class _Pointwise(_Kernel):
    """Kernel-1 StreamingConv1d, with an optional ELU before it: no state."""

    def __init__(self, layer: StreamingConv1d, rows: int, alpha: float | None) -> None:
        conv = layer.conv
        self.rows_out, self.channels_out = rows, conv.out_channels
        self.weight = _frozen(conv.weight[:, :, 0].T)
        self.bias = _rows_of(_bias_of(conv), rows)
        self.elu = _EluInto(alpha, (rows, conv.in_channels))
        self.inputs = np.empty((rows, conv.in_channels), dtype=np.float32)
        self.out = np.empty((rows, self.channels_out), dtype=np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.elu(x, self.inputs)
        np.matmul(self.inputs, self.weight, out=self.out)
        self.out += self.bias
        return self.out


class _ConvTranspose(_Kernel):
    """StreamingConvTranspose1d, with an optional ELU before it.

    One GEMM gives every input step's `kernel` output rows (padded to `blocks` x `stride`); output
    step t sums block j of input step t - j, so the last `blocks - 1` steps' products are the state.
    """

    def __init__(self, layer: StreamingConvTranspose1d, rows: int, alpha: float | None) -> None:
        convtr = layer.convtr
        stride, kernel, channels = layer.stride, convtr.kernel_size[0], convtr.out_channels
        self.blocks = math.ceil(kernel / stride)
        self.rows_out, self.channels_out = rows * stride, channels
        weight = F.pad(convtr.weight, (0, self.blocks * stride - kernel))  # [in, out, blocks * stride]
        self.weight = _frozen(weight.permute(0, 2, 1).reshape(convtr.in_channels, -1))
        self.bias = _rows_of(_bias_of(convtr).repeat(stride), rows)  # added to block 0
        self.elu = _EluInto(alpha, (rows, convtr.in_channels))
        self.inputs = None if alpha is None else np.empty((rows, convtr.in_channels), dtype=np.float32)
        self.width = stride * channels
        self.history = self.blocks - 1
        self.window = _Window(self.history, rows, self.blocks * self.width)
        row = self.blocks * self.width
        self.products = self.window.views((self.history + rows, row), (row, 1))
        self.out = np.empty((rows, self.width), dtype=np.float32)
        self.result = self.out.reshape(self.rows_out, self.channels_out)  # the same memory

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.inputs is not None:
            self.elu(x, self.inputs)
            x = self.inputs
        products, history, width = self.products[self.window.position], self.history, self.width
        np.matmul(x, self.weight, out=products[history:])
        np.add(products[history:, :width], self.bias, out=self.out)
        for j in range(1, self.blocks):
            self.out += products[history - j : len(products) - j, j * width : (j + 1) * width]
        self.window.advance()
        return self.result


class _RmsNorm(_Kernel):
    """RmsNorm: every row divided by sqrt(mean of its squares + eps)."""

    def __init__(self, rows: int, channels: int, eps: float = 1e-5) -> None:
        self.rows_out, self.channels_out = rows, channels
        self.squares = np.empty((rows, channels), dtype=np.float32)
        self.averaging = np.full((channels, 1), 1.0 / channels, dtype=np.float32)
        self.eps = np.full((rows, 1), eps, dtype=np.float32)
        self.scale = np.empty((rows, 1), dtype=np.float32)
        self.out = np.empty((rows, channels), dtype=np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        np.multiply(x, x, out=self.squares)
        np.matmul(self.squares, self.averaging, out=self.scale)
        self.scale += self.eps
        np.sqrt(self.scale, out=self.scale)
        return np.divide(x, self.scale, out=self.out)


class _Elu(_Kernel):
    """An ELU that no conv follows (none in SEANet: there every ELU fuses into the next conv)."""

    def __init__(self, rows: int, channels: int, alpha: float) -> None:
        self.rows_out, self.channels_out = rows, channels
        self.elu = _EluInto(alpha, (rows, channels))
        self.out = np.empty((rows, channels), dtype=np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.elu(x, self.out)
        return self.out


class _Residual(_Kernel):
    """ResidualUnit: x + block(x)."""

    def __init__(self, layer: ResidualUnit, rows: int, channels: int) -> None:
        self.kernels = _compile(layer.block, rows, channels)
        if not self.kernels or (self.kernels[-1].rows_out, self.kernels[-1].channels_out) != (rows, channels):
            raise ValueError("a residual block must keep its input's shape")
        self.rows_out, self.channels_out = rows, channels
        self.out = np.empty((rows, channels), dtype=np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.add(x, _run(self.kernels, x), out=self.out)


class _Depthwise(_Kernel):
    """StreamingConv1d with one group per channel: each output channel sums its own taps."""

    def __init__(self, layer: StreamingConv1d, rows: int) -> None:
        conv = layer.conv
        channels, kernel, dilation = conv.in_channels, conv.kernel_size[0], conv.dilation[0]
        if layer.stride != 1:
            raise TypeError("the fast path has no kernel for a strided depthwise convolution")
        self.rows_out, self.channels_out = rows, channels
        self.weight = _frozen(conv.weight[:, 0, :].T)  # [kernel, channels]
        self.bias = _rows_of(_bias_of(conv), rows)
        self.window = _Window(layer.left_context, rows, channels)
        self.inputs = self.window.views((rows, channels), (channels, 1), layer.left_context)
        self.taps = self.window.views((rows, kernel, channels), (channels, dilation * channels, 1))
        self.products = np.empty((rows, kernel, channels), dtype=np.float32)
        self.out = np.empty((rows, channels), dtype=np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        position = self.window.position
        np.copyto(self.inputs[position], x)
        np.multiply(self.taps[position], self.weight, out=self.products)
        np.sum(self.products, axis=1, out=self.out)
        self.out += self.bias
        self.window.advance()
        return self.out


class _ChannelNorm(_Kernel):
    """ChannelNorm (a LayerNorm over channels): the RmsNorm of every row minus its mean, then
    scaled and shifted."""

    def __init__(self, layer: ChannelNorm, rows: int, channels: int) -> None:
        norm = layer.norm
        self.rows_out, self.channels_out = rows, channels
        self.centered = np.empty((rows, channels), dtype=np.float32)
        self.rms = _RmsNorm(rows, channels, float(norm.eps))
        self.weight = _rows_of(norm.weight, rows)
        self.bias = _rows_of(norm.bias, rows)
        self.out = np.empty((rows, channels), dtype=np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        np.subtract(x, x.mean(axis=1, keepdims=True), out=self.centered)
        np.multiply(self.rms(self.centered), self.weight, out=self.out)
        self.out += self.bias
        return self.out


class _Gelu(_Kernel):
    """GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))."""

    def __init__(self, rows: int, channels: int) -> None:
        self.rows_out, self.channels_out = rows, channels
        self.inner = np.empty((rows, channels), dtype=np.float32)
        self.out = np.empty((rows, channels), dtype=np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        inner = self.inner
        np.multiply(x, x, out=inner)
        inner *= 0.044715
        inner += 1.0
        inner *= x
        inner *= math.sqrt(2.0 / math.pi)
        np.tanh(inner, out=inner)
        inner += 1.0
        np.multiply(x, inner, out=self.out)
        self.out *= 0.5
        return self.out


class _ConvNeXt(_Kernel):
    """ConvNeXtBlock: x + scale * block(x)."""

    def __init__(self, layer: ConvNeXtBlock, rows: int, channels: int) -> None:
        self.kernels = _compile(layer.block, rows, channels)
        self.scale = _rows_of(layer.scale[:, 0], rows)
        self.rows_out, self.channels_out = rows, channels
        self.out = np.empty((rows, channels), dtype=np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        np.multiply(_run(self.kernels, x), self.scale, out=self.out)
        self.out += x
        return self.out


class _Synthesis(_Kernel):
    """FrameSynthesis for one frame: [1, parts * bins] log magnitudes, phases (and detunes) ->
    [FRAME_SAMPLES, 1], an inverse real FFT, the window, and the previous frame's falling end added on."""

    def __init__(self, layer: FrameSynthesis, rows: int) -> None:
        if rows != 1:
            raise ValueError("frame synthesis takes one spectrum per frame")
        self.rows_out, self.channels_out = FRAME_SAMPLES, 1
        self.bins, self.length, self.overlap = layer.bins, layer.length, layer.overlap
        self.phase_advance, self.radians_per_detune = layer.phase_advance, layer.radians_per_detune
        self.window = _frozen(layer.window)
        self.tail = np.zeros(layer.overlap, dtype=np.float32)
        self.carried_phase = np.zeros(self.bins, dtype=np.float64)
        self.piece = np.empty(self.length, dtype=np.float32)
        self.out = np.empty((FRAME_SAMPLES, 1), dtype=np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        log_magnitude, phase = x[0, : self.bins], x[0, self.bins : 2 * self.bins]
        if self.phase_advance:
            steps = self.radians_per_detune * x[0, 2 * self.bins :].astype(np.float64)
            self.carried_phase = np.remainder(self.carried_phase + steps, 2 * math.pi)
            phase = phase + self.carried_phase.astype(np.float32)
        magnitude = np.exp(np.minimum(log_magnitude, MAX_LOG_MAGNITUDE))
        waveform = np.fft.irfft(magnitude * np.exp(1j * phase), n=self.length)
        piece = np.multiply(waveform, self.window, out=self.piece, casting="same_kind")
        piece[: self.overlap] += self.tail
        self.tail[:] = piece[FRAME_SAMPLES:]
        self.out[:, 0] = piece[:FRAME_SAMPLES]
        return self.out


def _flat(layers: Iterable[nn.Module]) -> Iterator[nn.Module]:
    for layer in layers:
        if isinstance(layer, nn.Sequential):
            yield from _flat(layer)
        else:
            yield layer


def _compile(layers: Iterable[nn.Module], rows: int, channels: int) -> list[_Kernel]:
    """Kernels that apply `layers` in order to frames of [rows, channels]; an ELU right before a
    conv fuses into it. Raises TypeError for a layer that has no kernel."""
    kernels: list[_Kernel] = []
    alpha: float | None = None  # an ELU that waits for the next layer
    for layer in _flat(layers):
        if isinstance(layer, nn.ELU):
            if alpha is not None:
                kernels.append(_Elu(rows, channels, alpha))
            alpha = float(layer.alpha)
            continue
        kernel: _Kernel
        if isinstance(layer, StreamingConv1d) and layer.conv.groups > 1:
            if layer.conv.groups != layer.conv.in_channels or alpha is not None:
                raise TypeError("the fast path has no kernel for a grouped convolution")
            kernel = _Depthwise(layer, rows)
        elif isinstance(layer, StreamingConv1d):
            pointwise = layer.left_context == 0 and layer.stride == 1
            kernel = (_Pointwise if pointwise else _Conv)(layer, rows, alpha)
        elif isinstance(layer, StreamingConvTranspose1d):
            kernel = _ConvTranspose(layer, rows, alpha)
        else:
            if alpha is not None:
                kernels.append(_Elu(rows, channels, alpha))
            if isinstance(layer, ResidualUnit):
                kernel = _Residual(layer, rows, channels)
            elif isinstance(layer, RmsNorm):
                kernel = _RmsNorm(rows, channels)
            elif isinstance(layer, ChannelNorm):
                kernel = _ChannelNorm(layer, rows, channels)
            elif isinstance(layer, nn.GELU) and layer.approximate == "tanh":
                kernel = _Gelu(rows, channels)
            elif isinstance(layer, ConvNeXtBlock):
                kernel = _ConvNeXt(layer, rows, channels)
            elif isinstance(layer, FrameSynthesis):
                kernel = _Synthesis(layer, rows)
            else:
                raise TypeError(f"the fast path has no kernel for {type(layer).__name__}")
        alpha = None
        kernels.append(kernel)
        rows, channels = kernel.rows_out, kernel.channels_out
    if alpha is not None:
        kernels.append(_Elu(rows, channels, alpha))
    return kernels


def _run(kernels: list[_Kernel], x: np.ndarray) -> np.ndarray:
    for kernel in kernels:
        x = kernel(x)
    return x


def _normalised_entries(quantizer: ResidualVectorQuantizer) -> torch.Tensor:
    """[n, size, dim] l2-normalised codebook entries, as the model normalises them."""
    return torch.stack([F.normalize(book.embedding, dim=-1) for book in quantizer.codebooks])


class _RvqEncoder:
    """ResidualVectorQuantizer.encode for one latent vector.

    Stage i: point = project_in(residual) ([latent + 1] x [latent + 1, dim], the bias riding on a
    constant one); scores = point @ entries[i].T (the cosine up to the point's norm, which does not
    change the argmax); residual -= decoded[i][code], a precomputed project_out(normalize(entry)).
    """

    def __init__(self, quantizer: ResidualVectorQuantizer) -> None:
        books = quantizer.codebooks
        with torch.no_grad():
            entries = _normalised_entries(quantizer)
            self.project_in = [
                _frozen(torch.cat([book.project_in.weight[:, :, 0].T, book.project_in.bias[None]]))
                for book in books
            ]  # [latent + 1, dim] each
            self.entries_t = [_frozen(stage.T) for stage in entries]  # [dim, size] each
            self.decoded = [  # [size, latent] each
                _frozen(book.project_out(stage.T[None])[0].T) for book, stage in zip(books, entries, strict=True)
            ]
        latent_dim = self.decoded[0].shape[1]
        self.extended = np.ones(latent_dim + 1, dtype=np.float32)  # the residual, then a constant 1
        self.point = np.empty(entries.shape[2], dtype=np.float32)
        self.scores = np.empty(entries.shape[1], dtype=np.float32)

    def __call__(self, latent: np.ndarray, count: int) -> np.ndarray:
        """latent [latent_dim] -> int64 codes [count]."""
        if not 1 <= count <= len(self.project_in):
            raise ValueError(f"cannot encode with {count} codebooks, the model has {len(self.project_in)}")
        extended, point, scores = self.extended, self.point, self.scores
        residual = extended[:-1]
        np.copyto(residual, latent)
        codes = np.empty(count, dtype=np.int64)
        for i, (project_in, entries_t, decoded) in enumerate(
            zip(self.project_in[:count], self.entries_t, self.decoded, strict=False)
        ):
            np.dot(extended, project_in, out=point)
            np.dot(point, entries_t, out=scores)
            code = scores.argmax()
            codes[i] = code
            residual -= decoded[code]
        return codes


class _RvqDecoder:
    """ResidualVectorQuantizer.decode for one frame: the normalised entries of all k stages,
    concatenated [k * dim], times every stage's project_out stacked [k * dim, latent], in one mat-vec."""

    def __init__(self, quantizer: ResidualVectorQuantizer) -> None:
        books = quantizer.codebooks
        with torch.no_grad():
            entries = _normalised_entries(quantizer)
            self.entries = _frozen(entries.reshape(-1, entries.shape[2]))  # [n * size, dim]
            self.project_out = _frozen(torch.cat([book.project_out.weight[:, :, 0].T for book in books]))
            bias = torch.stack([book.project_out.bias for book in books])  # [n, latent]
            self.bias = _frozen(bias)
            self.bias_sums = _frozen(torch.cumsum(bias, dim=0))  # row k - 1: the first k stages'
        self.count, self.size, self.dim = entries.shape
        self.offsets = np.arange(self.count) * self.size

    def __call__(self, codes: np.ndarray, out: np.ndarray) -> None:
        """int64 codes [k] (ABSENT allowed) -> out [latent_dim]; an ABSENT stage adds nothing."""
        k = len(codes)
        if k > self.count:
            raise ValueError(f"{k} codebooks given, the model has {self.count}")
        if codes.min() < ABSENT or codes.max() >= self.size:
            raise ValueError("codes out of range")
        present = codes != ABSENT
        rows = self.entries[np.where(present, codes, 0) + self.offsets[:k]]  # [k, dim], a copy
        if present.all():
            np.dot(rows.reshape(-1), self.project_out[: k * self.dim], out=out)
            out += self.bias_sums[k - 1]
        else:
            rows *= present[:, None]
            np.dot(rows.reshape(-1), self.project_out[: k * self.dim], out=out)
            out += present.astype(np.float32) @ self.bias[:k]


class FastEncoderCore:
    """Audio frame [FRAME_SAMPLES] -> codes [k], one frame at a time: a frozen copy of the encoder
    and quantizer of a `NeuralCodec`, with its own streaming state."""

    def __init__(self, model: NeuralCodec) -> None:
        with torch.no_grad():
            self.kernels = _compile(model.encoder.layers, FRAME_SAMPLES, 1)
        self.quantize = _RvqEncoder(model.quantizer)
        last = self.kernels[-1]
        if (last.rows_out, last.channels_out) != (1, model.config.latent_dim):
            raise ValueError("the encoder does not map one frame to one latent vector")

    def __call__(self, frame: np.ndarray, num_codebooks: int) -> np.ndarray:
        """float32 [FRAME_SAMPLES] in [-1, 1] -> int64 codes [num_codebooks]."""
        latent = _run(self.kernels, frame.reshape(FRAME_SAMPLES, 1))
        return self.quantize(latent.reshape(-1), num_codebooks)


class FastDecoderCore:
    """Codes [k] (or None for a lost frame) -> audio [FRAME_SAMPLES], one frame at a time: a frozen
    copy of the quantizer and decoder of a `NeuralCodec`, with its own streaming state."""

    def __init__(self, model: NeuralCodec) -> None:
        latent_dim = model.config.latent_dim
        with torch.no_grad():
            self.kernels = _compile(model.decoder.layers, 1, latent_dim)
            self.lost = _frozen(model.lost_embedding)
        self.dequantize = _RvqDecoder(model.quantizer)
        self.latent = np.empty(latent_dim, dtype=np.float32)
        last = self.kernels[-1]
        if (last.rows_out, last.channels_out) != (FRAME_SAMPLES, 1):
            raise ValueError("the decoder does not map one latent vector to one frame")

    def __call__(self, codes: np.ndarray | None) -> np.ndarray:
        """int codes [k], or None / [] for a lost frame -> float32 [FRAME_SAMPLES] in [-1, 1]."""
        if codes is None or len(codes) == 0:
            np.copyto(self.latent, self.lost)  # NeuralCodec.mark_lost
        else:
            self.dequantize(np.asarray(codes, dtype=np.int64), self.latent)
        audio = _run(self.kernels, self.latent.reshape(1, -1))
        return np.clip(audio.reshape(-1), -1.0, 1.0)
