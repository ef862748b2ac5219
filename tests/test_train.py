"""The training pipeline end to end on a tiny model: steps, checkpoints, exact resume, DDP."""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from rtcodec.config import FRAME_SAMPLES, SAMPLE_RATE, CodecConfig
from rtcodec.model import NeuralCodec
from rtcodec.modules.spectral import FrameSynthesis, frame_spectra
from rtcodec.train.averaging import WeightAverage
from rtcodec.train.checkpoint import load_checkpoint
from rtcodec.train.data import split_by_speaker
from rtcodec.train.losses import ComplexStftLoss, MultiScaleMelLoss, PhaseDerivativeLoss, level_normalised
from rtcodec.train.shrink import shrink_bottleneck
from rtcodec.train.trainer import RELEASE_DIR, TrainConfig, Trainer, rank_stream, selection_score

TINY = CodecConfig(channels=4, latent_dim=32, bottleneck_hidden=32, num_codebooks=12)


@pytest.fixture(scope="module")
def speech_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few seconds of synthetic voiced audio per 'speaker', LibriSpeech-style names."""
    folder = tmp_path_factory.mktemp("speech")
    rng = np.random.default_rng(0)
    for speaker in range(6):
        t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
        pitch = 100 + 20 * speaker
        audio = 0.3 * np.sin(2 * np.pi * pitch * t + 2 * np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(len(t))
        soundfile.write(folder / f"{100 + speaker}-1-0.wav", audio, SAMPLE_RATE)
    return folder


def _config(folder: Path, run_dir: Path, **overrides: object) -> TrainConfig:
    config = TrainConfig(data=(str(folder),), dev=(str(folder),), run_dir=str(run_dir), model=TINY,
                         batch_size=2, crop_seconds=0.64, discriminator_crop_seconds=0.32,
                         adversarial_from_step=1, eval_clips=1, warmup_steps=2)
    return dataclasses.replace(config, **overrides)


def test_steps_checkpoint_and_exact_resume(speech_folder: Path, tmp_path: Path) -> None:
    config = _config(speech_folder, tmp_path / "run")
    trainer = Trainer(config)
    for _ in range(3):
        losses = trainer.train_step()
    assert {"mel", "stft", "adversarial", "feature_matching"} <= set(losses.values)
    assert all(np.isfinite(v) for v in losses.values.values())
    trainer.save()
    saved_average = copy.deepcopy(trainer.average.model.state_dict())
    last_layer = "decoder.layers.19.conv.weight"
    assert not torch.equal(saved_average[last_layer], trainer.model.state_dict()[last_layer])
    expected = [trainer.train_step().values for _ in range(2)]  # the second follows the optimisers' state
    resumed = Trainer(config)
    assert resumed.step == 3
    for name, tensor in saved_average.items():
        assert torch.equal(resumed.average.model.state_dict()[name], tensor), name
    assert [resumed.train_step().values for _ in range(2)] == expected


def test_the_codec_step_leaves_the_discriminator_without_gradients(speech_folder: Path, tmp_path: Path) -> None:
    trainer = Trainer(_config(speech_folder, tmp_path / "run", discriminator_every=2))
    trainer.train_step()
    losses = trainer.train_step()  # step 1: adversarial losses, but no discriminator update
    assert "adversarial" in losses.values and "discriminator" not in losses.values
    assert all(p.grad is None for p in trainer.discriminator.parameters())
    assert all(p.requires_grad for p in trainer.discriminator.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.model.decoder.parameters())


def test_the_weight_average_trails_the_trained_weights() -> None:
    trained = torch.nn.Linear(3, 2)
    average = WeightAverage(trained, decay=0.75)
    start = trained.weight.detach().clone()
    with torch.no_grad():
        trained.weight.add_(4.0)
    average.update(trained)
    assert torch.allclose(average.model.weight, start + 1.0)
    average.update(trained)
    assert torch.allclose(average.model.weight, start + 1.75)
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(trained, decay=1.0)


def test_run_stops_evaluates_and_exports(speech_folder: Path, tmp_path: Path) -> None:
    config = _config(speech_folder, tmp_path / "run", max_steps=2)
    trainer = Trainer(config)
    trainer.run()
    assert trainer.step == 2
    exported = NeuralCodec.load(tmp_path / "run" / RELEASE_DIR)
    assert exported.config.extra["steps"] == 2
    metrics = exported.config.extra["dev_metrics"]
    assert "pesq@6" in metrics
    assert all(metrics[f"explained@{rate}"] <= 1 for rate in ("1.5", "3", "6"))
    assert "pesq@12" not in metrics  # the tiny model has 12 codebooks: 6 kbps at most


def test_a_model_with_fewer_codebooks_than_6_kbps_is_evaluated_and_selected_at_its_own_bitrates(
    speech_folder: Path, tmp_path: Path
) -> None:
    for codebooks, highest in ((4, "1.5"), (2, "1")):
        model = dataclasses.replace(TINY, num_codebooks=codebooks)
        run_dir = tmp_path / f"run{codebooks}"
        Trainer(_config(speech_folder, run_dir, model=model, max_steps=1)).run()
        metrics = NeuralCodec.load(run_dir / RELEASE_DIR).config.extra["dev_metrics"]
        assert max(float(key.removeprefix("pesq@")) for key in metrics if key.startswith("pesq@")) == float(highest)


def test_validation_split_holds_out_whole_speakers() -> None:
    librispeech = [Path(f"{s}-{c}-{u}.flac") for s in range(200) for c in range(2) for u in range(3)]
    paths = [*librispeech, Path("LJ001-0001.wav")]
    train, validation = split_by_speaker(paths, 0.1)
    assert 0 < len(validation) < len(paths) / 4
    assert not {p.stem.split("-")[0] for p in train} & {p.stem.split("-")[0] for p in validation}
    assert Path("LJ001-0001.wav") in train


def test_without_dev_folders_the_held_out_speakers_are_evaluated(speech_folder: Path, tmp_path: Path) -> None:
    trainer = Trainer(_config(speech_folder, tmp_path / "run", dev=(), validation_fraction=0.3, eval_clips=6))
    assert sorted(p.name for p in trainer.validation_paths) == ["100-1-0.wav", "103-1-0.wav"]
    assert len(trainer.dev_clips) == 2


@pytest.mark.parametrize(
    "options", [[], ["--decoder", "spectral", "--freeze", "encoder", "quantizer"]],
    ids=["whole_codec", "spectral_decoder_alone"],
)
def test_two_process_ddp(speech_folder: Path, tmp_path: Path, options: list[str]) -> None:
    """Both ranks start from the same weights (rank 0's, though each seeds its own), take the same
    steps (their gradients averaged), and leave frozen parts as they were."""
    config_path = tmp_path / "tiny.json"
    config_path.write_text(TINY.to_json())
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(Path(__file__).with_name("ddp_ranks.py")), str(speech_folder), "--model-config", str(config_path),
               "--run-dir", str(tmp_path / "ddp"), "--batch-size", "2", "--crop-seconds", "0.64", "--max-steps", "3",
               "--adversarial-from", "0", *options]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RANKS_DIR": str(tmp_path)}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    state = load_checkpoint(tmp_path / "ddp")
    assert state is not None and state["step"] == 3
    assert all(torch.isfinite(tensor).all() for tensor in state["model"].values() if tensor.is_floating_point())
    start, end = ([torch.load(tmp_path / f"rank{rank}_{when}.pt") for rank in (0, 1)] for when in ("start", "end"))
    for name, tensor in end[0].items():
        assert torch.equal(start[0][name], start[1][name]) and torch.equal(tensor, end[1][name]), name
    trained = [name for name in end[0] if not torch.equal(end[0][name], start[0][name])]
    assert any(name.startswith("decoder.") for name in trained)
    frozen = ("encoder.", "quantizer.codebooks") if "--freeze" in options else ()
    assert not [name for name in trained if name.startswith(frozen) and "usage" not in name]


def test_resumed_ranks_draw_different_but_reproducible_crops() -> None:
    def draws(rank: int) -> np.ndarray:
        saved = np.random.default_rng(7)  # the stream a checkpoint restores on every rank
        return rank_stream(saved, rank).integers(0, 2**31, 8)

    assert np.array_equal(draws(0), np.random.default_rng(7).integers(0, 2**31, 8)), "rank 0 keeps its stream"
    assert np.array_equal(draws(1), draws(1))
    assert not np.array_equal(draws(0), draws(1)) and not np.array_equal(draws(1), draws(2))


def test_a_release_restarts_training(speech_folder: Path, tmp_path: Path) -> None:
    first = Trainer(_config(speech_folder, tmp_path / "first", max_steps=2))
    first.run()
    release = tmp_path / "first" / RELEASE_DIR
    assert (release / "discriminator.safetensors").is_file()
    second = Trainer(_config(speech_folder, tmp_path / "second", init_from=str(release)))
    assert second.step == 2
    _assert_close(second.model.state_dict(), first.average.model.state_dict())
    _assert_close(second.discriminator.state_dict(), first.discriminator.state_dict())
    assert np.isfinite(second.train_step().values["total"])


def _assert_close(loaded: dict[str, torch.Tensor], saved: dict[str, torch.Tensor], skip: tuple[str, ...] = ()) -> None:
    """Every tensor of `saved` whose name starts with none of `skip` is in `loaded`, equal up to fp16."""
    names = [name for name in saved if not name.startswith(skip)]
    assert names
    for name in names:
        assert torch.allclose(loaded[name].float(), saved[name].float(), rtol=1e-2, atol=1e-3), name


def test_a_wider_release_is_shrunk_to_the_configured_bottleneck(speech_folder: Path, tmp_path: Path) -> None:
    wide = dataclasses.replace(TINY, bottleneck_hidden=48)
    first = Trainer(_config(speech_folder, tmp_path / "first", model=wide, max_steps=2))
    first.run()
    second = Trainer(_config(speech_folder, tmp_path / "second", init_from=str(tmp_path / "first" / RELEASE_DIR)))
    assert second.model.config.bottleneck_hidden == TINY.bottleneck_hidden and second.step == 2
    # Only the bottleneck's units were refitted: the rest is the release's.
    refitted = tuple(f"{part}.layers.{index}." for part in ("encoder", "decoder")
                     for index in getattr(second.model, part).bottleneck)
    _assert_close(second.model.state_dict(), first.average.model.state_dict(), skip=refitted)
    assert second.best is None  # the wide model's dev score is not the one to beat
    assert np.isfinite(second.train_step().values["total"])


def test_a_new_decoder_trains_on_a_frozen_encoder_and_quantizer(speech_folder: Path, tmp_path: Path) -> None:
    first = Trainer(_config(speech_folder, tmp_path / "first", max_steps=2))
    first.run()
    spectral = dataclasses.replace(TINY, decoder="spectral", decoder_dim=24, decoder_layers=2, synthesis_overlap=40)
    second = Trainer(_config(speech_folder, tmp_path / "second", model=spectral, frozen=("encoder", "quantizer"),
                             init_from=str(tmp_path / "first" / RELEASE_DIR)))
    assert second.best is None  # the old decoder's dev score is not the one to beat
    _assert_close(second.model.state_dict(), first.average.model.state_dict(), skip=("decoder.", "lost_embedding"))
    kept = {n: t.clone() for n, t in second.model.state_dict().items() if not n.startswith("decoder.")}
    decoder = {n: t.clone() for n, t in second.model.decoder.state_dict().items()}
    for _ in range(2):
        assert np.isfinite(second.train_step().values["total"])
    for name, tensor in second.model.state_dict().items():
        if name in kept and name != "lost_embedding":
            assert torch.equal(tensor, kept[name]), name
    assert not torch.equal(second.model.lost_embedding, kept["lost_embedding"])
    assert all(not torch.equal(t, decoder[n]) for n, t in second.model.decoder.state_dict().items())


def test_a_spectral_release_grows_a_decoder_that_carries_its_phase(speech_folder: Path, tmp_path: Path) -> None:
    spectral = dataclasses.replace(TINY, decoder="spectral", decoder_dim=24, decoder_layers=2, synthesis_overlap=40)
    first = Trainer(_config(speech_folder, tmp_path / "first", model=spectral, max_steps=2))
    first.run()
    carried = dataclasses.replace(spectral, phase_advance=True)
    second = Trainer(_config(speech_folder, tmp_path / "second", model=carried,
                             init_from=str(tmp_path / "first" / RELEASE_DIR)))
    assert second.step == 2 and second.best is not None and second.best == first.best  # still the one to beat
    head = f"decoder.layers.{len(second.model.decoder.layers) - 2}.conv."
    _assert_close(second.model.state_dict(), first.average.model.state_dict(), skip=(head,))
    release = NeuralCodec.load(tmp_path / "first" / RELEASE_DIR)
    codes = torch.randint(0, 1024, (1, TINY.num_codebooks, 25), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # every bin starts at a frequency that turns by whole cycles in a hop
        assert torch.allclose(second.model.decode(codes), release.decode(codes), atol=1e-4)
    assert np.isfinite(second.train_step().values["total"])


def test_freezing_an_unknown_part_is_refused(speech_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot freeze decoder"):
        Trainer(_config(speech_folder, tmp_path / "run", frozen=("decoder",)))


def test_losses_compare_the_decoded_audio_with_the_input_it_lags(speech_folder: Path, tmp_path: Path) -> None:
    spectral = dataclasses.replace(TINY, decoder="spectral", decoder_dim=24, decoder_layers=2, synthesis_overlap=40)
    trainer = Trainer(_config(speech_folder, tmp_path / "run", model=spectral))
    audio = torch.randn(1, 1, 640)
    lagging = torch.nn.functional.pad(audio, (40, 0))[..., :640]
    decoded, target = trainer._aligned(lagging, audio)
    assert decoded.shape[-1] == 600 and torch.equal(decoded, target)


def _speech_like(batch: int, seconds: float) -> torch.Tensor:
    """[batch, 1, samples] of gliding harmonics in noise: enough structure for a least-squares fit."""
    rng = np.random.default_rng(1)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    items = [sum(np.sin(2 * np.pi * k * (120 + 30 * i) * t + k * np.sin(5 * t)) / k for k in range(1, 6))
             + 0.05 * rng.standard_normal(len(t)) for i in range(batch)]
    return torch.from_numpy(0.1 * np.stack(items).astype(np.float32))[:, None]


def _bottleneck_widths(model: NeuralCodec) -> list[int]:
    """Hidden width of every bottleneck unit: the encoder's last ones (before its RmsNorm) and the
    decoder's first ones (after its input conv)."""
    blocks = model.config.bottleneck_blocks
    units = [*model.encoder.layers[-1 - blocks : -1], *model.decoder.layers[1 : 1 + blocks]]
    return [unit.block[1].conv.out_channels for unit in units]


@torch.no_grad()
def test_shrinking_to_the_same_width_keeps_the_output() -> None:
    """Every channel kept, refitted: the same map up to the refit's small ridge."""
    torch.manual_seed(0)
    model = NeuralCodec(TINY).eval()
    audio = _speech_like(4, 1.28)
    same = shrink_bottleneck(model, TINY.bottleneck_hidden, audio)
    expected = model.decode(model.encode(audio, 12))
    assert torch.allclose(same.decode(same.encode(audio, 12)), expected, atol=1e-2)


@torch.no_grad()
def test_shrinking_leaves_stage_units_of_the_bottleneck_shape_alone(tmp_path: Path) -> None:
    """A stage unit can have the bottleneck's (channels, hidden) shape: here 16 channels, hidden 8."""
    config = CodecConfig(channels=4, latent_dim=16, bottleneck_hidden=8, num_codebooks=4)
    small = shrink_bottleneck(NeuralCodec(config).eval(), 4, _speech_like(2, 0.64))
    assert _bottleneck_widths(small) == [4] * 2 * config.bottleneck_blocks
    small.save(tmp_path)
    NeuralCodec.load(tmp_path)


@torch.no_grad()
def test_shrinking_refits_each_unit_better_than_dropping_channels() -> None:
    torch.manual_seed(0)
    model = NeuralCodec(TINY).eval()
    audio = _speech_like(4, 1.28)
    small = shrink_bottleneck(model, 12, audio)
    assert small.config.bottleneck_hidden == 12 and model.config.bottleneck_hidden == 32
    assert _bottleneck_widths(small) == [12] * 2 * TINY.bottleneck_blocks
    unit, refitted = model.encoder.layers[-2], small.encoder.layers[-2]  # the last bottleneck unit
    dropped = copy.deepcopy(refitted)  # the same channels, their original output weights
    original = unit.block[1].conv.weight
    kept = [int((original - row).abs().flatten(1).sum(1).argmin()) for row in refitted.block[1].conv.weight]
    dropped.block[3].conv.weight.copy_(unit.block[3].conv.weight[:, kept])
    dropped.block[3].conv.bias.copy_(unit.block[3].conv.bias)
    x = model.encoder.layers[:-2](audio)
    error, naive = ((shrunk(x) - unit(x)).pow(2).mean() for shrunk in (refitted, dropped))
    assert error < naive


@torch.no_grad()
def test_shrinking_keeps_weights_small_where_hidden_channels_are_dead(tmp_path: Path) -> None:
    """ELUs stuck at -1 are constant features, collinear with the bias: a plain least-squares
    refit answers with huge cancelling weights that overflow fp16."""
    torch.manual_seed(0)
    model = NeuralCodec(TINY).eval()
    for unit in model.encoder.layers[-1 - TINY.bottleneck_blocks : -1]:
        unit.block[1].conv.weight[:20] *= 1e-3
        unit.block[1].conv.bias[:20] = -6.0  # elu(x) ~ -1 everywhere, give or take 1e-5
    small = shrink_bottleneck(model, 24, _speech_like(4, 1.28))
    assert max(float(p.abs().max()) for p in small.parameters()) < 100.0
    small.save(tmp_path, dtype=torch.float16)  # raises on overflow


def test_shrinking_cannot_widen() -> None:
    with pytest.raises(ValueError, match="cannot shrink"):
        shrink_bottleneck(NeuralCodec(TINY), 64, _speech_like(1, 0.64))


def test_losses_on_level_normalised_audio_ignore_the_level() -> None:
    target = torch.randn(2, 1, SAMPLE_RATE // 4)
    estimate = target + 0.3 * torch.randn_like(target)
    losses = [MultiScaleMelLoss()(*level_normalised(estimate * gain, target * gain)) for gain in (1.0, 0.01)]
    assert losses[0] > 0.01
    assert torch.isclose(losses[0], losses[1], rtol=1e-3)


def test_the_complex_loss_sees_phase_that_magnitude_losses_miss() -> None:
    """A sign flip keeps every magnitude: the mel loss is blind to it, the complex loss is not."""
    target = torch.randn(2, 1, SAMPLE_RATE // 4)
    complex_loss, mel_loss = ComplexStftLoss(), MultiScaleMelLoss()
    assert complex_loss(target, target) == 0
    assert mel_loss(-target, target) < 1e-4
    assert complex_loss(-target, target) > 1.5


def test_the_phase_loss_sees_phase_derivatives_but_not_the_absolute_phase() -> None:
    """The phases of the frames that rebuild the target score zero, and still do with every phase
    turned by one angle (the absolute phase, which no decoder can know); random phases score about pi."""
    overlap = 40
    audio = torch.randn(2, 1, 10 * FRAME_SAMPLES)
    spectra = frame_spectra(audio, overlap)
    rebuilt = FrameSynthesis(overlap).synthesize(spectra.abs().log(), spectra.angle())
    assert torch.allclose(rebuilt[..., overlap:], audio[..., :-overlap], atol=1e-5)  # they do rebuild it
    loss = PhaseDerivativeLoss(overlap)
    assert float(loss(spectra.angle(), audio)) < 1e-4
    assert float(loss(spectra.angle() + 0.7, audio)) < 1e-4
    assert float(loss(2 * math.pi * torch.rand_like(spectra.real), audio)) > 2.5


def test_the_phase_loss_trains_the_detunes_of_a_decoder_that_carries_its_phase(
    speech_folder: Path, tmp_path: Path
) -> None:
    model = dataclasses.replace(TINY, decoder="spectral", decoder_dim=24, decoder_layers=2, synthesis_overlap=40,
                                phase_advance=True)
    others = {f"weight_{name}": 0.0 for name in ("mel", "stft", "complex", "adversarial", "feature_matching")}
    trainer = Trainer(_config(speech_folder, tmp_path / "run", model=model, weight_phase=1.0, **others))
    assert np.isfinite(trainer.train_step().values["phase"])
    head = trainer.model.decoder.layers[-2].conv
    bins = trainer.model.decoder.synthesis.bins
    assert head.weight.grad is not None and head.weight.grad[2 * bins :].abs().sum() > 0


def test_the_phase_loss_needs_the_spectral_decoder(speech_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="phase loss needs the spectral decoder"):
        Trainer(_config(speech_folder, tmp_path / "run", weight_phase=1.0))


def test_releases_are_selected_on_pesq_and_stoi_together() -> None:
    base = {"pesq@6": 1.1, "stoi@6": 0.60}
    assert selection_score({**base, "stoi@6": 0.65}) > selection_score(base)
    assert selection_score({**base, "pesq@6": 1.5}) > selection_score(base)
