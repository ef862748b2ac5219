"""`rtcodec train ARGS` for `torch.distributed.run`, keeping every rank's weights for the test:
each rank saves its model's state to $RANKS_DIR/rank{N}_start.pt when training begins (after the
DistributedDataParallel set-up) and to rank{N}_end.pt when it ends."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from rtcodec.cli import main
from rtcodec.train.trainer import Trainer

_run = Trainer.run


def _run_keeping_the_weights(trainer: Trainer) -> None:
    folder = Path(os.environ["RANKS_DIR"])
    torch.save(trainer.model.state_dict(), folder / f"rank{trainer.rank}_start.pt")
    _run(trainer)
    torch.save(trainer.model.state_dict(), folder / f"rank{trainer.rank}_end.pt")


if __name__ == "__main__":
    Trainer.run = _run_keeping_the_weights  # type: ignore[method-assign]
    sys.exit(main(["train", *sys.argv[1:]]))
