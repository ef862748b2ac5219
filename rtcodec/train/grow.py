"""Growing a trained spectral decoder into one that carries its phase (`CodecConfig.phase_advance`).

The grown decoder is the trained one with a third part in its output, each bin's detune, whose
weights start at zero: no phase is carried yet, and the grown decoder sounds exactly like the
trained one. Training then moves the detunes to where the voice is.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from rtcodec.model import NeuralCodec


def with_carried_phase(model: NeuralCodec) -> NeuralCodec:
    """A copy of `model`, whose spectral decoder predicts its phase afresh every frame, with a
    decoder that carries it instead and decodes alike."""
    config = model.config
    if config.decoder != "spectral" or config.phase_advance:
        raise ValueError("only a spectral decoder that predicts its phase afresh can be grown to carry it")
    grown = NeuralCodec(replace(config, phase_advance=True))
    weights = model.state_dict()
    for name, tensor in grown.state_dict().items():
        old = weights[name]
        if old.shape != tensor.shape:  # the output convolution: the detunes' rows come after the others
            weights[name] = torch.cat([old, old.new_zeros(tensor.shape[0] - old.shape[0], *old.shape[1:])])
    grown.load_state_dict(weights)
    return grown
