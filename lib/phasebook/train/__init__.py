"""Training: optimizers, learning-rate schedules, checkpoints, metrics, the training loop and its
data-parallel ranks; mid-training (annealing branches, domain adaptation with replay)."""

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
from phasebook.train.distributed import World, barrier, broadcast_object, full_state_dict, init_world
from phasebook.train.loop import TrainConfig, TrainResult, data_indices, evaluate, train
from phasebook.train.metrics import MetricsLog, mfu, peak_flops
from phasebook.train.midtraining import (
    AdaptConfig,
    AnnealConfig,
    MidtrainingRun,
    adapt,
    anneal,
    replay_mixture,
)
from phasebook.train.optim import Muon, OptimizerConfig, build_optimizer, orthogonalize
from phasebook.train.precision import autocast, prepare_model
from phasebook.train.schedules import ScheduleConfig, lr_multiplier, stable_end

__all__ = [
    "AdaptConfig",
    "AnnealConfig",
    "CheckpointError",
    "MetricsLog",
    "MidtrainingRun",
    "Muon",
    "OptimizerConfig",
    "ScheduleConfig",
    "TrainConfig",
    "TrainResult",
    "World",
    "adapt",
    "anneal",
    "autocast",
    "barrier",
    "broadcast_object",
    "build_optimizer",
    "data_indices",
    "evaluate",
    "full_state_dict",
    "init_world",
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
    "replay_mixture",
    "save_checkpoint",
    "save_weights",
    "stable_end",
    "train",
    "verify_checkpoint",
]
