"""The training loop: reconstruction + adversarial losses, quantizer dropout, frame erasure.

One process by default; under `torchrun --nproc_per_node N` the same entry point runs as
DistributedDataParallel (gloo on CPU, nccl on GPU). Rank 0 alone writes checkpoints, logs and
evaluates; it also decides when to checkpoint, evaluate and stop, and tells the other ranks.
What is evaluated and released is a running average of the weights (`WeightAverage`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from rtcodec.config import DECODER_FIELDS, FRAME_SAMPLES, SAMPLE_RATE, CodecConfig
from rtcodec.model import FREEZABLE, NeuralCodec
from rtcodec.train.averaging import WeightAverage
from rtcodec.train.checkpoint import load_checkpoint, save_checkpoint
from rtcodec.train.data import Augmentation, Corpus, CropSampler, find_audio, split_by_speaker
from rtcodec.train.discriminator import MultiScaleStftDiscriminator, discriminator_loss, generator_losses
from rtcodec.train.evaluate import evaluate, pick_dev_clips
from rtcodec.train.grow import with_carried_phase
from rtcodec.train.losses import (
    ComplexStftLoss,
    MultiResolutionStftLoss,
    MultiScaleMelLoss,
    PhaseDerivativeLoss,
    level_normalised,
)
from rtcodec.train.shrink import shrink_bottleneck

RELEASE_DIR = "best"
"""Subfolder of the run where the weights with the best `selection_score` are exported."""
SELECTION_KBPS = 6
"""Releases are chosen on dev quality at this bitrate (`selection_score`)."""
SHRINK_CROPS = 64
SHRINK_CROP_SECONDS = 3.0
"""Training audio on which a release with a wider bottleneck is shrunk (`init_from`)."""
DISCRIMINATOR_FILE = "discriminator.safetensors"
"""Saved beside a release, the shipped one included, so that training can resume from it
(`init_from`) with its discriminator."""


@dataclass(frozen=True)
class TrainConfig:
    data: tuple[str, ...]
    """Folders of speech, searched recursively."""
    run_dir: str = "runs/codec"
    noise: tuple[str, ...] = ()
    dev: tuple[str, ...] = ()
    """Folders for periodic PESQ/STOI evaluation (model selection)."""
    model: CodecConfig = field(default_factory=CodecConfig)
    batch_size: int = 16
    crop_seconds: float = 1.0
    learning_rate: float = 5e-4
    warmup_steps: int = 500
    lr_decay_per_step: float = 0.99998
    weight_mel: float = 15.0
    weight_stft: float = 1.0
    weight_complex: float = 10.0
    weight_phase: float = 0.0
    """`PhaseDerivativeLoss`, for a spectral decoder."""
    weight_commitment: float = 0.25
    weight_codebook: float = 1.0
    weight_residual: float = 1.0
    weight_adversarial: float = 1.0
    weight_feature_matching: float = 2.0
    adversarial_from_step: int = 1500
    discriminator_every: int = 2
    discriminator_crop_seconds: float = 0.5
    full_bitrate_probability: float = 0.5
    """Share of items trained with every codebook; the rest get a random count (quantizer dropout)."""
    erasure_probability: float = 0.5
    """Share of items with erased frames (learned concealment)."""
    max_burst_frames: int = 5
    average_decay: float = 0.998
    """Per-step decay of the weight average that is evaluated and released (see `WeightAverage`)."""
    validation_fraction: float = 0.03
    max_minutes: float | None = None
    max_steps: int | None = None
    checkpoint_minutes: float = 5.0
    eval_minutes: float = 20.0
    eval_clips: int = 12
    seed: int = 0
    init_from: str | None = None
    """A released model folder to start from when `run_dir` has no checkpoint (see `export`). Its
    decoder may differ from the configured one: then only its encoder and quantizer are taken."""
    frozen: tuple[str, ...] = ()
    """Parts of the codec that training leaves as they are: any of FREEZABLE."""

    def to_json(self) -> str:
        raw = asdict(self)
        raw["model"] = json.loads(self.model.to_json())
        return json.dumps(raw, indent=2)


def selection_score(dev_metrics: dict[str, float]) -> float:
    """STOI plus PESQ-WB mapped from [1, 4.5] onto [0, 1], at SELECTION_KBPS (or the highest bitrate
    evaluated, for a model that has less): both count, so that a model whose PESQ sits at its floor
    is still chosen on intelligibility."""
    evaluated = [float(key.removeprefix("pesq@")) for key in dev_metrics if key.startswith("pesq@")]
    rate = min(SELECTION_KBPS, max(evaluated))
    pesq, stoi = (dev_metrics[f"{name}@{rate:g}"] for name in ("pesq", "stoi"))
    return stoi + (pesq - 1.0) / 3.5


def rank_stream(rng: np.random.Generator, rank: int) -> np.random.Generator:
    """A stream for DDP rank `rank`, independent of `rng`'s (which rank 0 keeps) and of the other
    ranks': resumed ranks would otherwise all draw rank 0's crops."""
    return np.random.Generator(rng.bit_generator.jumped(rank)) if rank else rng


@dataclass
class StepLosses:
    values: dict[str, float]
    perplexity: list[float]


def _setup_distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


class Trainer:
    """Trains a `NeuralCodec`; `run()` resumes from `run_dir/checkpoint.pt` when it exists."""

    def __init__(self, config: TrainConfig, log_to: Any = sys.stderr) -> None:
        self.config = config
        self.rank, self.world = _setup_distributed()
        self.device = torch.device(f"cuda:{self.rank % torch.cuda.device_count()}"
                                   if torch.cuda.is_available() else "cpu")
        self.run_dir = Path(config.run_dir)
        self.log_to = log_to
        torch.manual_seed(config.seed + self.rank)
        self.model = NeuralCodec(config.model).to(self.device)
        self._freeze(config.frozen)
        self.discriminator = MultiScaleStftDiscriminator().to(self.device)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, config.learning_rate, betas=(0.8, 0.99))
        self.d_optimizer = torch.optim.AdamW(self.discriminator.parameters(), config.learning_rate, betas=(0.8, 0.99))
        self.mel_loss = MultiScaleMelLoss()
        self.stft_loss = MultiResolutionStftLoss()
        self.complex_loss = ComplexStftLoss()
        if config.weight_phase and config.model.decoder != "spectral":
            raise ValueError("the phase loss needs the spectral decoder: its weight must be 0 for another")
        self.phase_loss = PhaseDerivativeLoss(config.model.synthesis_overlap)
        self.average = WeightAverage(self.model, config.average_decay)
        self.step = 0
        self.best: float | None = None
        self.sampler = self._make_sampler()
        self.dev_clips = self._dev_clips() if self.rank == 0 else []
        self._resume()
        self.codec: nn.Module = self.model
        self.critic: nn.Module = self.discriminator
        if self.world > 1:
            self.codec = DistributedDataParallel(self.model)
            self.critic = DistributedDataParallel(self.discriminator)

    def _freeze(self, parts: tuple[str, ...]) -> None:
        unknown = sorted(set(parts) - set(FREEZABLE))
        if unknown:
            raise ValueError(f"cannot freeze {', '.join(unknown)}: only {', '.join(FREEZABLE)}")
        for part in parts:
            getattr(self.model, part).requires_grad_(False)

    # -- data -------------------------------------------------------------------------------------

    def _make_sampler(self) -> CropSampler:
        paths = find_audio(Path(d) for d in self.config.data)
        if not paths:
            raise ValueError(f"no audio found in {', '.join(self.config.data)}")
        train_paths, self.validation_paths = split_by_speaker(paths, self.config.validation_fraction)
        speech = Corpus(train_paths)
        noise_paths = find_audio(Path(d) for d in self.config.noise)
        noise = Corpus(noise_paths) if noise_paths else None
        self._log(f"training on {speech.seconds / 3600:.2f} h from {len(train_paths)} files "
                  f"({len(self.validation_paths)} held out by speaker), noise: {len(noise_paths)} files")
        return CropSampler(speech, noise, Augmentation(), seed=self.config.seed + self.rank)

    def _dev_clips(self) -> list[np.ndarray]:
        """Clips from the --dev folders, or without them from the speakers held out of training."""
        paths = find_audio(Path(d) for d in self.config.dev) if self.config.dev else self.validation_paths
        return pick_dev_clips(paths, self.config.eval_clips)

    def _sample_codebooks(self, batch: int) -> torch.Tensor:
        """[batch] codebook counts: all of them, or uniform in 1..N (quantizer dropout)."""
        total = self.config.model.num_codebooks
        rng = self.sampler.rng
        counts = [total if rng.random() < self.config.full_bitrate_probability else int(rng.integers(1, total + 1))
                  for _ in range(batch)]
        return torch.tensor(counts, device=self.device)

    def _sample_erasures(self, batch: int, frames: int) -> torch.Tensor:
        """[batch, frames] bool: single lost frames and bursts of up to `max_burst_frames`."""
        lost = np.zeros((batch, frames), dtype=bool)
        rng = self.sampler.rng
        for item in range(batch):
            if rng.random() >= self.config.erasure_probability:
                continue
            for _ in range(int(rng.integers(1, 4))):
                length = int(rng.integers(1, self.config.max_burst_frames + 1))
                start = int(rng.integers(1, max(2, frames - length)))
                lost[item, start : start + length] = True
        return torch.from_numpy(lost).to(self.device)

    # -- one step ---------------------------------------------------------------------------------

    def _learning_rate(self) -> float:
        warmup = min(1.0, (self.step + 1) / self.config.warmup_steps)
        return self.config.learning_rate * warmup * self.config.lr_decay_per_step**self.step

    def _crop_pair(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        length = int(self.config.discriminator_crop_seconds * SAMPLE_RATE)
        start = int(self.sampler.rng.integers(0, real.shape[-1] - length + 1))
        return real[..., start : start + length], fake[..., start : start + length]

    def _aligned(self, decoded: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(decoded, audio) [batch, 1, samples'], the decoder's delay taken out: sample for sample."""
        delay = self.config.model.delay_samples
        return decoded[..., delay:], audio[..., : audio.shape[-1] - delay]

    def train_step(self) -> StepLosses:
        config = self.config
        crop = int(config.crop_seconds * SAMPLE_RATE) // FRAME_SAMPLES * FRAME_SAMPLES
        audio = self.sampler.batch(config.batch_size, crop).to(self.device)
        active = self._sample_codebooks(config.batch_size)
        lost = self._sample_erasures(config.batch_size, crop // FRAME_SAMPLES)
        for group in (*self.optimizer.param_groups, *self.d_optimizer.param_groups):
            group["lr"] = self._learning_rate()
        output = self.codec(audio, active, lost)
        decoded, aligned = self._aligned(output.audio, audio)
        estimate, target = level_normalised(decoded, aligned)
        losses = {
            "mel": self.mel_loss(estimate, target),
            "stft": self.stft_loss(estimate, target),
            "complex": self.complex_loss(estimate, target),
            "commitment": output.quantizer.commitment_loss,
            "codebook": output.quantizer.codebook_loss,
            "residual": output.quantizer.residual_loss,
        }
        if output.phases is not None and config.weight_phase:
            losses["phase"] = self.phase_loss(output.phases, audio)
        adversarial = self.step >= config.adversarial_from_step
        if adversarial:
            real, fake = self._crop_pair(aligned, decoded)
            losses["adversarial"], losses["feature_matching"] = generator_losses(self.discriminator, real, fake)
        total = sum(getattr(config, f"weight_{name}") * value for name, value in losses.items())
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), 100.0)
        self.optimizer.step()
        self.average.update(self.model)
        if adversarial and self.step % config.discriminator_every == 0:
            losses["discriminator"] = self._discriminator_step(real, fake)
        self.step += 1
        values = {name: float(value.detach()) for name, value in losses.items()} | {"total": float(total.detach())}
        return StepLosses(values, output.quantizer.perplexity.tolist())

    def _discriminator_step(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        loss = discriminator_loss(self.critic, real, fake)
        self.d_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.d_optimizer.step()
        return loss.detach()

    # -- checkpoints ------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "average": self.average.model.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "d_optimizer": self.d_optimizer.state_dict(),
            "step": self.step,
            "best": self.best,
            "torch_rng": torch.get_rng_state(),
            "sampler_rng": json.dumps(self.sampler.rng.bit_generator.state),
            "model_config": self.config.model.to_json(),
        }

    def _resume(self) -> None:
        state = load_checkpoint(self.run_dir)
        if state is None:
            if self.config.init_from:
                self._start_from_release(Path(self.config.init_from))
            return
        if CodecConfig.from_json(state["model_config"]) != self.config.model:
            raise ValueError(f"checkpoint in {self.run_dir} was trained with another model config")
        self.model.load_state_dict(state["model"])
        self.average.model.load_state_dict(state.get("average", state["model"]))
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.d_optimizer.load_state_dict(state["d_optimizer"])
        self.step, self.best = state["step"], state["best"]
        torch.set_rng_state(state["torch_rng"])
        self.sampler.rng.bit_generator.state = json.loads(state["sampler_rng"])
        if self.rank > 0:  # the checkpoint holds rank 0's streams: every other rank branches off them
            self.sampler.rng = rank_stream(self.sampler.rng, self.rank)
            torch.manual_seed(int(self.sampler.rng.integers(2**63)))
        self._log(f"resumed from step {self.step}")

    def _start_from_release(self, folder: Path) -> None:
        """Weights (and the discriminator, if saved) of a release; fresh optimisers. The release's
        dev score is the one to beat, unless its bottleneck was shrunk or its decoder is not the
        configured one (then that starts afresh): then the first evaluation exports. A spectral
        decoder that predicts its phase afresh is grown into the configured one that carries it
        (`with_carried_phase`), and its score stays the one to beat."""
        release = NeuralCodec.load(folder)
        shrunk = release.config.bottleneck_hidden > self.config.model.bottleneck_hidden
        if shrunk:
            release = self._shrunk(release)
        if self._carries_phase_unlike(release.config):
            release = with_carried_phase(release)
            self._log("its spectral decoder now carries its phase, from zero detunes (it decodes as before)")
        decoder = {name: getattr(self.config.model, name) for name in DECODER_FIELDS}
        same_decoder = all(getattr(release.config, name) == value for name, value in decoder.items())
        if replace(release.config, model_id=self.config.model.model_id, extra={}, **decoder) != self.config.model:
            raise ValueError(f"{folder} holds another model architecture than the one configured")
        weights = {name: tensor for name, tensor in release.state_dict().items()
                   if same_decoder or not name.startswith("decoder.")}
        self.model.load_state_dict(weights, strict=same_decoder)
        self.average.model.load_state_dict(self.model.state_dict())
        if (folder / DISCRIMINATOR_FILE).is_file():
            self.discriminator.load_state_dict(load_file(str(folder / DISCRIMINATOR_FILE)))
        self.step = int(release.config.extra.get("steps", 0))
        metrics = release.config.extra.get("dev_metrics", {})
        self.best = selection_score(metrics) if metrics and not shrunk and same_decoder else None
        self._log(f"started from the release in {folder} (step {self.step})")
        if not same_decoder:
            self._log(f"its decoder ({release.config.decoder}) is not the configured one "
                      f"({self.config.model.decoder}): it gives only its encoder and quantizer")

    def _carries_phase_unlike(self, release: CodecConfig) -> bool:
        """Whether the configured spectral decoder carries its phase and the release's does not."""
        model = self.config.model
        return model.phase_advance and not release.phase_advance and release.decoder == model.decoder

    def _shrunk(self, release: NeuralCodec) -> NeuralCodec:
        """The release with the configured (narrower) bottleneck, refitted on training crops."""
        hidden = self.config.model.bottleneck_hidden
        self._log(f"shrinking the release's bottleneck from {release.config.bottleneck_hidden} to {hidden} channels")
        audio = self.sampler.batch(SHRINK_CROPS, int(SHRINK_CROP_SECONDS * SAMPLE_RATE))
        return shrink_bottleneck(release, hidden, audio)

    def save(self) -> None:
        if self.rank == 0:
            save_checkpoint(self.state(), self.run_dir)

    # -- evaluation and release -------------------------------------------------------------------

    def evaluate_and_release(self) -> dict[str, float]:
        """Dev PESQ/STOI; exports `run_dir/best` when the selection metric improves."""
        if not self.dev_clips:
            return {}
        results = evaluate(self.average.model, self.dev_clips)
        self._write_log({"step": self.step, "eval": results})
        self._log(f"eval @ {self.step}: " + "  ".join(f"{k} {v:.3f}" for k, v in results.items()))
        score = selection_score(results)
        if self.best is None or score > self.best:
            self.best = score
            self._export(results)
        return results

    def _export(self, results: dict[str, float]) -> None:
        provenance = {"training_data": list(self.config.data), "steps": self.step, "dev_metrics": results,
                      "dev_clips": len(self.dev_clips)}
        release = NeuralCodec(replace(self.config.model, model_id=f"rtcodec-{self.step}", extra=provenance))
        release.load_state_dict(self.average.model.state_dict())
        release.save(self.run_dir / RELEASE_DIR, dtype=torch.float16)
        half = {name: t.detach().cpu().half() for name, t in self.discriminator.state_dict().items()}
        save_file(half, str(self.run_dir / RELEASE_DIR / DISCRIMINATOR_FILE))
        self._log(f"new best score {self.best:.3f}: exported {self.run_dir / RELEASE_DIR}")

    # -- the loop ---------------------------------------------------------------------------------

    def run(self) -> None:
        config = self.config
        started = last_checkpoint = last_eval = time.monotonic()
        progress = Progress(self.log_to, enabled=self.rank == 0)
        while True:
            now = time.monotonic()
            flags = self._agree([
                self._finished(now - started),
                now - last_checkpoint >= config.checkpoint_minutes * 60,
                now - last_eval >= config.eval_minutes * 60,
            ])
            stop, checkpoint, evaluate_now = flags
            if evaluate_now or stop:
                if self.rank == 0:
                    self.evaluate_and_release()
                last_eval = time.monotonic()
            if checkpoint or evaluate_now or stop:
                self.save()
                last_checkpoint = now
            if stop:
                break
            losses = self.train_step()
            progress.update(self.step, losses, config.batch_size * config.crop_seconds * self.world)
            if self.rank == 0 and self.step % 50 == 0:
                self._write_log({"step": self.step, "losses": losses.values, "perplexity": losses.perplexity})
        progress.close()

    def _finished(self, elapsed_seconds: float) -> bool:
        """Whether `max_minutes` or `max_steps` is reached."""
        config = self.config
        out_of_time = config.max_minutes is not None and elapsed_seconds >= config.max_minutes * 60
        return out_of_time or (config.max_steps is not None and self.step >= config.max_steps)

    def _agree(self, flags: list[bool]) -> list[bool]:
        """Rank 0's decisions, shared with every rank."""
        if self.world == 1:
            return flags
        tensor = torch.tensor(flags, dtype=torch.int32, device=self.device)
        dist.broadcast(tensor, src=0)
        return [bool(v) for v in tensor.tolist()]

    def _log(self, message: str) -> None:
        if self.rank == 0:
            print(message, file=self.log_to, flush=True)

    def _write_log(self, record: dict[str, Any]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "log.jsonl", "a") as file:
            file.write(json.dumps(record) + "\n")


class Progress:
    """A one-line progress display: step, smoothed losses, codebook use and throughput."""

    def __init__(self, stream: Any, enabled: bool, every_seconds: float = 10.0) -> None:
        self.stream = stream
        self.enabled = enabled
        self.every = every_seconds
        self.smoothed: dict[str, float] = {}
        self.last_print = self.window_start = time.monotonic()
        self.audio_seconds = 0.0
        self.interactive = bool(getattr(stream, "isatty", lambda: False)())

    def update(self, step: int, losses: StepLosses, audio_seconds: float) -> None:
        for name, value in losses.values.items():
            self.smoothed[name] = 0.9 * self.smoothed.get(name, value) + 0.1 * value
        self.audio_seconds += audio_seconds
        now = time.monotonic()
        if not self.enabled or now - self.last_print < self.every:
            return
        speed = self.audio_seconds / (now - self.window_start)
        perplexity = losses.perplexity
        later = min(12, len(perplexity))
        shown = "  ".join(f"{k} {v:.3f}" for k, v in self.smoothed.items())
        line = (f"step {step}  {shown}  ppl[1] {perplexity[0]:.0f} ppl[{later}] {perplexity[later - 1]:.0f}  "
                f"{speed:.1f} audio-s/s")
        print(("\r" if self.interactive else "") + line, end="" if self.interactive else "\n",
              file=self.stream, flush=True)
        self.last_print = self.window_start = now
        self.audio_seconds = 0.0

    def close(self) -> None:
        if self.enabled and self.interactive:
            print(file=self.stream)


def train(config: TrainConfig) -> Path:
    """Train (resuming if a checkpoint exists) and return the run directory."""
    trainer = Trainer(config)
    trainer.run()
    if dist.is_initialized():
        dist.barrier()  # rank 0 may still be writing the checkpoint: tear down together
        dist.destroy_process_group()
    return trainer.run_dir
