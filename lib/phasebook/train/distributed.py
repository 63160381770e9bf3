"""Data-parallel training over several processes: which process this is, and how a model is spread.

torchrun starts one process per rank and tells each its place through the environment (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT). `init_world` reads it and joins the process group
(NCCL between GPUs, gloo between CPU processes). A process started without torchrun, or by
torchrun alone, is a world of one: no process group, no wrapping, exactly the single-process run.

Two strategies, chosen by `TrainConfig.parallel`:
- "ddp" (DistributedDataParallel): every rank holds the whole model and optimizer; gradients are
  averaged over ranks by an all-reduce in the backward pass.
- "fsdp" (FSDP2, `fully_shard`): parameters, gradients and optimizer state are split over the
  ranks; each transformer block's weights are gathered just before it runs and its gradients
  reduce-scattered (averaged) right after its backward.
Either way every rank computes its share of the same global batch and ends the step with the
same weights, so the run follows the single-process run with that global batch.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.checkpoint import CheckpointException
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel

from phasebook.errors import PhasebookError

STRATEGIES = ("none", "ddp", "fsdp")
TIMEOUT_ENV = "PHASEBOOK_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 300.0  # how long a collective waits for a silent peer before failing
# How the backends word a peer that has gone away (gloo) or stopped answering (either backend);
# NCCL's own failures arrive as torch.distributed.DistError and need no wording.
_LOST_PEER_WORDS = ("connection closed by peer", "connection reset by peer", "broken pipe", "timed out",
                    "timeout")

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes.

    `strategy` is the one in effect: always "none" in a world of one process, whatever the
    configuration asks for, since there is nothing to spread the model over.
    """

    rank: int
    world_size: int
    local_rank: int  # the rank among the processes of this node: picks the GPU
    device: torch.device
    strategy: str

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes the files that exist once (metrics, manifests, final weights)."""
        return self.rank == 0


def resolve_device(name: str) -> torch.device:
    """The device `name` stands for: "auto" is cuda where available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PhasebookError(f"device {name!r}: CUDA is not available here; use device 'auto' or 'cpu'.")
    return device


def local_world(device: str | torch.device = "cpu") -> World:
    """The world of a single process that shares nothing with any other."""
    device = resolve_device(device) if isinstance(device, str) else device
    return World(rank=0, world_size=1, local_rank=0, device=device, strategy="none")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise PhasebookError(f"environment variable {name}={value!r} is not an integer; torchrun sets it "
                             "to one.") from None


def _timeout() -> timedelta:
    value = os.environ.get(TIMEOUT_ENV)
    if value is None:
        return timedelta(seconds=DEFAULT_TIMEOUT_S)
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise PhasebookError(f"environment variable {TIMEOUT_ENV}={value!r}: must be a number of seconds "
                             "above 0.")
    return timedelta(seconds=seconds)


def _rank_device(name: str, local_rank: int) -> torch.device:
    """Each rank's own device: cuda:LOCAL_RANK on GPUs, the CPU otherwise."""
    device = resolve_device(name)
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise PhasebookError(f"device {name!r}: training on several ranks runs on 'cuda' or 'cpu' only.")
    if device.index is not None:
        raise PhasebookError(f"device {name!r}: with several ranks each process uses the GPU of its "
                             "LOCAL_RANK; set device to 'cuda' or 'auto'.")
    if local_rank >= torch.cuda.device_count():
        raise PhasebookError(f"LOCAL_RANK is {local_rank} but this node has {torch.cuda.device_count()} "
                             "GPU(s); start at most one process per GPU (--nproc-per-node).")
    return torch.device("cuda", local_rank)


def init_world(strategy: str, device: str) -> World:
    """Join the training processes torchrun started (if it started more than one).

    With WORLD_SIZE > 1 this initialises the default process group unless the caller already
    did: NCCL for CUDA, gloo for CPU, collectives failing after PHASEBOOK_DIST_TIMEOUT seconds
    (default 300) rather than hanging forever on a dead peer.
    """
    if strategy not in STRATEGIES:
        raise PhasebookError(f"parallel strategy {strategy!r} is unknown; allowed: {', '.join(STRATEGIES)}.")
    world_size = _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0)  # RANK and MASTER_ADDR/PORT: read by init_process_group
    if world_size <= 1:
        return local_world(device)
    if strategy == "none":
        raise PhasebookError(f"{world_size} processes were started (WORLD_SIZE={world_size}) but "
                             "train.parallel is 'none'; set train.parallel to 'ddp' or 'fsdp' to train on "
                             "several ranks, or start a single process.")
    rank_device = _rank_device(device, local_rank)
    if not dist.is_initialized():
        if rank_device.type == "cuda":
            torch.cuda.set_device(rank_device)
            dist.init_process_group("nccl", timeout=_timeout(), device_id=rank_device)
        else:
            dist.init_process_group("gloo", timeout=_timeout())
    return World(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                 device=rank_device, strategy=strategy)


def barrier(world: World) -> None:
    """Wait until every rank gets here; nothing to wait for in a world of one."""
    if world.world_size > 1:
        dist.barrier()


def broadcast_object(world: World, obj: T) -> T:
    """Rank 0's `obj` (any picklable value) on every rank."""
    if world.world_size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean_over_ranks(world: World, values: Tensor) -> Tensor:
    """The element-wise mean of `values` over all ranks (every rank gets it)."""
    if world.world_size == 1:
        return values
    total = values.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)  # gloo has no AVG
    return total / world.world_size


def wrap_model(model: nn.Module, world: World, precision: str) -> nn.Module:
    """Spread `model` over the ranks; returns the module to run forward and backward through.

    ddp: a DistributedDataParallel wrapper around `model` (which stays the plain module holding
    the parameters). fsdp: `model` itself, sharded in place: each module of `model.blocks`
    (the transformer blocks) is its own FSDP unit, the rest (embedding, final norm, head) the
    root's. Under bf16 or fp8 FSDP gathers the weights in bf16 and reduces gradients in fp32.
    """
    if world.strategy == "ddp":
        device_ids = [world.device.index] if world.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)
    if world.strategy == "fsdp":
        # DDP starts every rank from rank 0's weights; FSDP keeps each rank's own, so do the same.
        with torch.no_grad():
            for tensor in [*model.parameters(), *model.buffers()]:
                dist.broadcast(tensor, src=0)
        policy = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
                  if precision in ("bf16", "fp8") else MixedPrecisionPolicy())
        for block in getattr(model, "blocks", []):
            fully_shard(block, mp_policy=policy)
        fully_shard(model, mp_policy=policy)
    return model


@contextlib.contextmanager
def gradient_sync(module: nn.Module, enabled: bool) -> Iterator[None]:
    """With `enabled` False, the backward passes inside skip the cross-rank gradient reduction and
    only accumulate locally: every micro-batch but the last one of a step needs no all-reduce."""
    if enabled:
        yield
    elif isinstance(module, DistributedDataParallel):
        with module.no_sync():
            yield
    elif isinstance(module, FSDPModule):
        module.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            module.set_requires_gradient_sync(True)
    else:
        yield


def is_sharded(model: nn.Module) -> bool:
    """Whether `model`'s parameters are split over ranks (FSDP)."""
    return any(isinstance(p, DTensor) for p in model.parameters())


def full_tensor(value: Tensor) -> Tensor:
    """A value whole on every rank: a DTensor's full value (a collective), a plain tensor as is."""
    return value.full_tensor() if isinstance(value, DTensor) else value


def full_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The whole model's weights on CPU on rank 0 (gathered from every rank for FSDP: call it on
    every rank then), {} on the other ranks; for saving the final weights."""
    if is_sharded(model):
        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if dist.is_initialized() and dist.get_rank() != 0:
        return {}
    return {name: value.detach().cpu() for name, value in model.state_dict().items()}


def lost_peer(exc: BaseException) -> bool:
    """Whether `exc` is a collective failing because another rank died or stopped answering."""
    if isinstance(exc, dist.DistError):
        return True
    if isinstance(exc, CheckpointException):  # DCP gathers every rank's failure, with its traceback
        return any(lost_peer(f[0] if isinstance(f, tuple) else f) for f in exc.failures.values())
    return isinstance(exc, RuntimeError) and any(w in str(exc).lower() for w in _LOST_PEER_WORDS)

