"""Model weights: safetensors + JSON round trips, fp16 release files, and clear errors on mismatch."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import rtcodec
from rtcodec.config import CodecConfig
from rtcodec.model import CONFIG_FILE, WEIGHTS_FILE, NeuralCodec, WeightsError

Tensors = dict[str, torch.Tensor]

SMALL = CodecConfig(channels=4, latent_dim=32, bottleneck_hidden=32, num_codebooks=12)


def test_round_trip_is_exact(tmp_path: Path) -> None:
    model = NeuralCodec(SMALL)
    model.save(tmp_path)
    loaded = NeuralCodec.load(tmp_path)
    assert loaded.config == SMALL
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name])


def _stored_float_dtypes(folder: Path) -> set[torch.dtype]:
    """The dtypes of the floating-point tensors in folder's weights file, as stored."""
    return {tensor.dtype for tensor in load_file(str(folder / WEIGHTS_FILE)).values() if tensor.is_floating_point()}


def test_fp16_release_loads_as_fp32(tmp_path: Path) -> None:
    model = NeuralCodec(SMALL)
    model.save(tmp_path, dtype=torch.float16)
    assert _stored_float_dtypes(tmp_path) == {torch.float16}
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


@pytest.mark.parametrize(("key", "value"), [
    ("channels", "4"), ("channels", 4.0), ("channels", True), ("channels", None), ("channels", -4),
    ("ratios", "2458"), ("ratios", 320), ("ratios", [2, 4, 5, 8.0]), ("ratios", [-1, -320]),
    ("latent_dim", 0), ("bottleneck_blocks", -1), ("num_codebooks", 12.0), ("num_codebooks", 25),
    ("codebook_size", 1024.0), ("codebook_dim", [8]), ("model_id", 5), ("extra", [1]),
    ("decoder", "wavenet"), ("decoder_dim", 0), ("decoder_layers", -1), ("synthesis_overlap", 321),
    ("phase_advance", 1), ("phase_advance", True),  # the latter with the SEANet decoder
])
def test_a_config_value_of_the_wrong_type_or_range_is_a_clear_error(
    tmp_path: Path, key: str, value: object
) -> None:
    NeuralCodec(SMALL).save(tmp_path)
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**config, key: value}))
    with pytest.raises(WeightsError, match=key.rstrip("s")):  # "every ratio must be ..."
        NeuralCodec.load(tmp_path)


def test_a_config_of_a_huge_model_fails_before_building_it(tmp_path: Path) -> None:
    NeuralCodec(SMALL).save(tmp_path)
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**config, "channels": 10**6}))  # ~10^13 weights
    with pytest.raises(WeightsError, match="wrong shape"):
        NeuralCodec.load(tmp_path)


def _floats_as(dtype: torch.dtype) -> Callable[[Tensors], Tensors]:
    return lambda tensors: {k: t.to(dtype) if t.is_floating_point() else t for k, t in tensors.items()}


def _filled(value: float) -> Callable[[Tensors], Tensors]:
    return lambda tensors: {k: t.fill_(value) if t.is_floating_point() else t for k, t in tensors.items()}


@pytest.mark.parametrize(("damage", "message"), [
    pytest.param(_floats_as(torch.int32), re.escape("wrong dtype: decoder.layers.0.conv.bias (torch.int32)"),
                 id="int32-weights"),
    pytest.param(lambda tensors: {k: t.float() for k, t in tensors.items()},
                 "wrong dtype: quantizer.codebooks.0.initialised", id="float-flags"),
    pytest.param(_filled(float("nan")), "NaN or infinite", id="nan"),
    pytest.param(_filled(float("inf")), "NaN or infinite", id="inf"),
    pytest.param(lambda tensors: {**tensors, "lost_embedding": torch.full((32,), 1e300, dtype=torch.float64)},
                 "NaN or infinite values: lost_embedding", id="float64-overflow"),
])
def test_tensors_of_the_wrong_dtype_or_not_finite_give_a_clear_error(
    tmp_path: Path, damage: Callable[[Tensors], Tensors], message: str
) -> None:
    NeuralCodec(SMALL).save(tmp_path)
    save_file(damage(load_file(tmp_path / WEIGHTS_FILE)), tmp_path / WEIGHTS_FILE)
    with pytest.raises(WeightsError, match=message):
        NeuralCodec.load(tmp_path)


def test_weights_that_overflow_the_release_precision_are_not_saved(tmp_path: Path) -> None:
    model = NeuralCodec(SMALL)
    with torch.no_grad():
        model.lost_embedding.fill_(1e5)  # beyond fp16's 65504
    with pytest.raises(WeightsError, match=r"not saved as torch\.float16: .*lost_embedding"):
        model.save(tmp_path, dtype=torch.float16)
    assert not (tmp_path / WEIGHTS_FILE).exists()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_any_floating_point_precision_loads(tmp_path: Path, dtype: torch.dtype) -> None:
    NeuralCodec(SMALL).save(tmp_path, dtype=dtype)
    assert _stored_float_dtypes(tmp_path) == {dtype}
    loaded = NeuralCodec.load(tmp_path).state_dict().values()
    assert {t.dtype for t in loaded if t.is_floating_point()} == {torch.float32}


def test_no_pickle_for_anything_from_outside() -> None:
    """Weights are safetensors; the only torch.load is of local training checkpoints, with
    weights_only=True; nothing imports pickle or calls numpy's pickling loader."""
    loads = []
    for path in Path(rtcodec.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [alias.name for alias in node.names] + [getattr(node, "module", None) or ""]
                assert not {"pickle", "dill", "joblib", "cloudpickle"} & set(names), path
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                source = ast.unparse(node.func)
                assert source not in ("np.load", "numpy.load", "torch.jit.load"), path
                if source == "torch.load":
                    keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
                    assert keywords.get("weights_only") == "True", path
                    loads.append(path.relative_to(Path(rtcodec.__file__).parent).as_posix())
    assert loads == ["train/checkpoint.py"]
