"""Streaming state for layers that process audio chunk by chunk.

Each `StreamingModule` owns a typed state object while streaming. The `streaming()` context switches
every such layer in a model at once, with fresh (zero) state, and drops the state on exit, so that
calling the model on consecutive chunks gives the same result as one call on the whole signal.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

import torch
from torch import nn

State = TypeVar("State")


class StreamingModule(nn.Module, abc.ABC, Generic[State]):
    """A layer that keeps its own state between calls while streaming."""

    def __init__(self) -> None:
        super().__init__()
        self._streaming_state: State | None = None

    @abc.abstractmethod
    def initial_state(self, batch_size: int, device: torch.device) -> State:
        """The state at the start of a stream: what the layer sees left of the first sample."""

    @property
    def is_streaming(self) -> bool:
        return self._streaming_state is not None

    @property
    def streaming_state(self) -> State:
        if self._streaming_state is None:
            raise RuntimeError(f"{type(self).__name__} is not streaming")
        return self._streaming_state

    @streaming_state.setter
    def streaming_state(self, state: State) -> None:
        self._streaming_state = state


def _device_of(module: nn.Module) -> torch.device:
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@contextmanager
def streaming(model: nn.Module, batch_size: int = 1) -> Iterator[nn.Module]:
    """Put every streaming layer of `model` in streaming mode, with fresh state, for the block."""
    device = _device_of(model)
    layers = [m for m in model.modules() if isinstance(m, StreamingModule)]
    if any(layer.is_streaming for layer in layers):
        raise RuntimeError("model is already streaming")
    for layer in layers:
        layer.streaming_state = layer.initial_state(batch_size, device)
    try:
        yield model
    finally:
        for layer in layers:
            layer._streaming_state = None
