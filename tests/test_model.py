"""Model weights: safetensors + JSON round trips, fp16 release files, and clear errors on mismatch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rtcodec.config import CodecConfig
from rtcodec.model import CONFIG_FILE, WEIGHTS_FILE, NeuralCodec, WeightsError

SMALL = CodecConfig(channels=4, latent_dim=32, bottleneck_hidden=32, num_codebooks=12)


def test_round_trip_is_exact(tmp_path: Path) -> None:
    model = NeuralCodec(SMALL)
    model.save(tmp_path)
    loaded = NeuralCodec.load(tmp_path)
    assert loaded.config == SMALL
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name])


def test_fp16_release_loads_as_fp32(tmp_path: Path) -> None:
    model = NeuralCodec(SMALL)
    model.save(tmp_path, dtype=torch.float16)
    loaded = NeuralCodec.load(tmp_path)
    for name, tensor in model.state_dict().items():
        restored = loaded.state_dict()[name]
        assert restored.dtype == tensor.dtype
        assert torch.allclose(restored.float(), tensor.float(), rtol=1e-3, atol=1e-4)


def test_weights_that_do_not_match_their_config(tmp_path: Path) -> None:
    NeuralCodec(SMALL).save(tmp_path)
    (tmp_path / CONFIG_FILE).write_text(CodecConfig(channels=8, latent_dim=32, bottleneck_hidden=32).to_json())
    with pytest.raises(WeightsError, match="do not match their config"):
        NeuralCodec.load(tmp_path)


@pytest.mark.parametrize("damage", ["missing_weights", "garbage_weights", "garbage_config", "unknown_key"])
def test_damaged_files_give_a_clear_error(tmp_path: Path, damage: str) -> None:
    NeuralCodec(SMALL).save(tmp_path)
    if damage == "missing_weights":
        (tmp_path / WEIGHTS_FILE).unlink()
    elif damage == "garbage_weights":
        (tmp_path / WEIGHTS_FILE).write_bytes(b"\x80\x04pickle? no thanks")
    elif damage == "garbage_config":
        (tmp_path / CONFIG_FILE).write_text("{not json")
    else:
        (tmp_path / CONFIG_FILE).write_text('{"channels": 4, "surprise": 1}')
    with pytest.raises(WeightsError):
        NeuralCodec.load(tmp_path)
