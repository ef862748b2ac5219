"""Shrinking a trained model's 50 Hz bottleneck: fewer hidden channels, refitted by least squares.

In a SEANet-decoder model the bottleneck's residual units hold most of the weights, and a streamed
frame reads every weight once, so their hidden width decides the per-frame compute
(`rtcodec.fastpath` is memory-bound).
Shrinking a trained model keeps everything it learned elsewhere: each unit keeps the hidden
channels that contribute most to its output on real speech, and its output convolution is refitted
so that the unit's output on that speech changes as little as a linear map allows. Training then
goes on from the shrunk model.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from rtcodec.model import NeuralCodec
from rtcodec.modules.conv import StreamingConv1d
from rtcodec.modules.seanet import Decoder, ResidualUnit

RIDGE = 1e-4
"""Weight decay of the refit, relative to the features' mean power (`_ridge`)."""


def shrink_bottleneck(model: NeuralCodec, hidden: int, audio: torch.Tensor) -> NeuralCodec:
    """A copy of `model` whose bottleneck residual units have `hidden` hidden channels.

    audio: float32 [batch, 1, samples], speech on which the units are refitted (a few minutes).
    The encoder's units are refitted on their inputs from `audio`, the decoder's on the latent
    that the full quantizer gives; every unit sees what the already shrunk units before it give.
    """
    config = model.config
    if not 1 <= hidden <= config.bottleneck_hidden:
        raise ValueError(f"cannot shrink a bottleneck of {config.bottleneck_hidden} channels to {hidden}")
    small = copy.deepcopy(model).eval()
    small.config = replace(config, bottleneck_hidden=hidden)
    with torch.no_grad():
        latent = _shrink_units(small.encoder.layers, audio, small.encoder.bottleneck, hidden)
        if isinstance(small.decoder, Decoder):  # the spectral decoder has no bottleneck units
            quantized = small.quantizer.decode(small.quantizer.encode(latent, config.num_codebooks))
            _shrink_units(small.decoder.layers, quantized, small.decoder.bottleneck, hidden)
    return small


def _shrink_units(layers: nn.Sequential, x: torch.Tensor, units: range, hidden: int) -> torch.Tensor:
    """Shrink, in place and in order, the residual units at indices `units` of `layers`;
    returns the output of `layers` on x [batch, channels, time]."""
    for index, layer in enumerate(layers):
        if index in units:
            layers[index] = _refitted(layer, x, hidden)
        x = layers[index](x)
    return x


def _convs(unit: ResidualUnit) -> tuple[StreamingConv1d, StreamingConv1d]:
    """The unit's hidden (kernel k) and output (kernel 1) convolutions."""
    convs = [layer for layer in unit.block if isinstance(layer, StreamingConv1d)]
    return convs[0], convs[1]


def _refitted(unit: ResidualUnit, x: torch.Tensor, hidden: int) -> ResidualUnit:
    """`unit` with the `hidden` hidden channels that contribute most to its output on x
    [batch, channels, time], its output conv refitted to that output by least squares."""
    inner, outer = _convs(unit)
    activations = F.elu(inner(F.elu(x)))  # [batch, old hidden, time]
    features = activations.transpose(1, 2).flatten(0, 1)  # [batch * time, old hidden]
    target = outer(activations).transpose(1, 2).flatten(0, 1)  # [batch * time, channels]
    weight = outer.conv.weight[:, :, 0]  # [channels, old hidden]
    contribution = weight.norm(dim=0) * features.std(dim=0)  # a constant channel only adds a bias
    keep = contribution.topk(hidden).indices.sort().values
    solution = _ridge(features[:, keep], target)
    conv = inner.conv
    shrunk = ResidualUnit(conv.in_channels, hidden, conv.kernel_size[0], conv.dilation[0])
    new_inner, new_outer = _convs(shrunk)
    new_inner.conv.weight.copy_(conv.weight[keep])
    new_inner.conv.bias.copy_(conv.bias[keep])
    new_outer.conv.weight.copy_(solution[:-1].T[:, :, None])
    new_outer.conv.bias.copy_(solution[-1])
    return shrunk


def _ridge(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[hidden + 1, channels]: weights and bias (last row) of the affine map from features [n, hidden]
    to target [n, channels] with least squared error plus RIDGE times the features' mean power times
    the squared weights. The ridge keeps the weights small where features are nearly collinear (ELUs
    that sit at -1 are constant), so that they survive fp16 (the release format)."""
    mean = features.mean(dim=0)
    centred = (features - mean).double()
    gram = centred.T @ centred
    gram += RIDGE * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype)
    weights = torch.linalg.solve(gram, centred.T @ (target - target.mean(dim=0)).double()).float()
    bias = target.mean(dim=0) - mean @ weights
    return torch.cat([weights, bias[None]])
