"""Causal convolutions that carry their own state between calls.

Offline, a causal convolution pads its input on the left; while streaming, it keeps the last input
samples it has not fully used instead. A causal transposed convolution drops the overlapping tail
offline; while streaming, it keeps that tail and adds it to the next call's output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rtcodec.streaming import StreamingModule


@dataclass
class ConvState:
    context: torch.Tensor
    """[batch, in_channels, samples] input seen but not yet fully consumed (zeros at start)."""


@dataclass
class ConvTransposeState:
    tail: torch.Tensor
    """[batch, out_channels, kernel - stride] partial output still to be overlapped-and-added."""


class StreamingConv1d(StreamingModule[ConvState]):
    """Causal Conv1d: [batch, in_channels, time] -> [batch, out_channels, time // stride]."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, dilation: int = 1,
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation,
                              groups=groups)
        self.stride = stride
        self.span = (kernel_size - 1) * dilation + 1
        if self.span < stride:
            raise ValueError("kernel must span at least one stride")
        self.left_context = self.span - stride

    def initial_state(self, batch_size: int, device: torch.device) -> ConvState:
        return ConvState(torch.zeros(batch_size, self.conv.in_channels, self.left_context, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.is_streaming:
            return self.conv(F.pad(x, (self.left_context, 0)))
        state = self.streaming_state
        x = torch.cat([state.context, x], dim=-1)
        outputs = max(0, (x.shape[-1] - self.span) // self.stride + 1)
        consumed = outputs * self.stride
        state.context = x[..., consumed:]
        if outputs == 0:
            return x.new_zeros(x.shape[0], self.conv.out_channels, 0)
        return self.conv(x[..., : consumed + self.left_context])


class StreamingConvTranspose1d(StreamingModule[ConvTransposeState]):
    """Causal ConvTranspose1d: [batch, in_channels, time] -> [batch, out_channels, time * stride]."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        if kernel_size < stride:
            raise ValueError("kernel must span at least one stride")
        self.convtr = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride=stride)
        self.stride = stride
        self.overlap = kernel_size - stride

    def initial_state(self, batch_size: int, device: torch.device) -> ConvTransposeState:
        return ConvTransposeState(torch.zeros(batch_size, self.convtr.out_channels, self.overlap, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[-1] * self.stride
        if not self.is_streaming:
            return self.convtr(x)[..., :length]
        state = self.streaming_state
        y = F.conv_transpose1d(x, self.convtr.weight, stride=self.stride)
        y[..., : self.overlap] += state.tail
        state.tail = y[..., length:]
        bias = self.convtr.bias
        assert bias is not None
        return y[..., :length] + bias[:, None]
