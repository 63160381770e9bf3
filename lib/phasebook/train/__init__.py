"""Training: optimizers, learning-rate schedules, checkpoints, metrics and the training loop."""

from __future__ import annotations

from phasebook.train.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_weights,
    read_state,
    save_checkpoint,
    save_weights,
    verify_checkpoint,
)
from phasebook.train.loop import TrainConfig, TrainResult, data_indices, evaluate, train
from phasebook.train.metrics import MetricsLog, mfu, peak_flops
from phasebook.train.optim import Muon, OptimizerConfig, build_optimizer, orthogonalize
from phasebook.train.precision import autocast, prepare_model
from phasebook.train.schedules import ScheduleConfig, lr_multiplier, stable_end

__all__ = [
    "CheckpointError",
    "MetricsLog",
    "Muon",
    "OptimizerConfig",
    "ScheduleConfig",
    "TrainConfig",
    "TrainResult",
    "autocast",
    "build_optimizer",
    "data_indices",
    "evaluate",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_weights",
    "lr_multiplier",
    "mfu",
    "orthogonalize",
    "peak_flops",
    "prepare_model",
    "read_state",
    "save_checkpoint",
    "save_weights",
    "stable_end",
    "train",
    "verify_checkpoint",
]
