"""Training checkpoints that survive a kill at any moment, never load silently wrong, and load on
any number of ranks.

A checkpoint is a folder `run_dir/checkpoints/step-000123/` holding
- the model's weights and the optimizer's state in torch.distributed.checkpoint (DCP) format:
  `.metadata` and one `__R_0.distcp` file per rank R that wrote it. DCP records each tensor's
  whole shape and which piece each file holds, so a checkpoint written by 2 FSDP ranks loads into
  one process, into 2 DDP ranks or into 4 FSDP ranks alike, and one process writes the same format;
- `rng-R.pt`: rank R's random generators (a rank the writer did not have takes rank 0's);
- `state.json`: the loop's own state (step, skipped data, configuration, ...);
- `manifest.json`: the sha256 and size of every other file.
All ranks write into one hidden temporary folder with a fixed name, which rank 0 renames into
place once every rank is done, so a folder named `step-*` is always whole; loading verifies
every checksum first and names the file that does not match.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed.checkpoint as dcp
from safetensors.torch import load_model, save_model
from torch import nn
from torch.distributed.checkpoint import CheckpointException
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from phasebook.errors import PhasebookError, Problem
from phasebook.model import GPT, ModelConfig
from phasebook.provenance import now, sha256_file
from phasebook.train.distributed import World, barrier, broadcast_object, local_world, lost_peer

FORMAT = "torch.distributed.checkpoint"  # recorded in every manifest; older folders lack it
STATE_FILE = "state.json"
MANIFEST_FILE = "manifest.json"
CHECKSUM_SUFFIX = ".sha256"
_NAME = re.compile(r"^step-(\d+)$")
_TMP_PREFIX = ".tmp-"


class CheckpointError(PhasebookError):
    """A checkpoint or weights file that is missing, truncated, corrupt or does not fit."""

    def __init__(self, path: Path, message: str):
        self.path = Path(path)
        super().__init__([Problem(str(self.path), "", message)])


def checkpoint_dir(run_dir: Path | str) -> Path:
    return Path(run_dir) / "checkpoints"


def rng_file(rank: int) -> str:
    return f"rng-{rank}.pt"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _entry(path: Path) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def _rng_state() -> dict[str, Any]:
    """Every generator a training step may draw from, as tensors and plain values only, so the
    file loads with `weights_only=True`."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _step_of(path: Path) -> int | None:
    match = _NAME.match(path.name)
    return int(match.group(1)) if match and path.is_dir() else None


def list_checkpoints(run_dir: Path | str) -> list[Path]:
    """The complete checkpoints of a run, oldest first (temporary folders are not listed)."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    found = [(step, p) for p in root.iterdir() if (step := _step_of(p)) is not None]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: Path | str) -> Path | None:
    """The checkpoint with the highest step, or None. Not verified here: loading does that."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def _is_kept_forever(path: Path) -> bool:
    try:
        return bool(json.loads((path / MANIFEST_FILE).read_text()).get("keep_forever", False))
    except (OSError, ValueError):
        return False


def _prune(run_dir: Path, keep: int) -> None:
    ordinary = [p for p in list_checkpoints(run_dir) if not _is_kept_forever(p)]
    for old in ordinary[:-keep]:
        shutil.rmtree(old)


def _clean_temporaries(root: Path) -> None:
    """Remove folders left by writes that were killed halfway; no finished checkpoint is touched."""
    for p in root.glob(f"{_TMP_PREFIX}*"):
        shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def _dcp_alone(world: World) -> Iterator[bool]:
    """Whether DCP runs without collectives (a world of one: this process alone, even inside a
    job whose other ranks are elsewhere), with DCP's warning that it assumes so silenced."""
    alone = world.world_size == 1
    with warnings.catch_warnings():
        if alone:
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield alone


def _state_dicts(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> dict[str, Any]:
    """What DCP saves or loads in place: the model's (and optimizer's) state keyed by parameter
    name, so that another world size, strategy or wrapper finds the same keys."""
    contents: dict[str, Any] = {"model": get_model_state_dict(model)}
    if optimizer is not None:
        contents["optimizer"] = get_optimizer_state_dict(model, optimizer)
    return contents


def save_checkpoint(run_dir: Path | str, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict[str, Any], *, keep: int = 2, keep_forever: bool = False,
                    world: World | None = None) -> Path:
    """Write the checkpoint after `step` optimizer steps; keep the newest `keep` ordinary ones.

    `state` is the loop's JSON-ready state (skipped data, config, ...); `keep_forever` exempts
    this checkpoint from pruning (a WSD branch point, say). With a `world` of several ranks every
    rank calls this with its own (DDP: plain; FSDP: sharded) model; rank 0 writes state.json and
    the manifest, renames the folder into place and prunes.
    """
    if keep < 1:
        raise ValueError(f"keep is {keep}; at least the newest checkpoint must be kept.")
    world = world or local_world()
    root = checkpoint_dir(run_dir)
    final = root / f"step-{step:06d}"
    tmp = root / f"{_TMP_PREFIX}{final.name}"  # one name every rank knows without asking
    if world.is_main:
        root.mkdir(parents=True, exist_ok=True)
        _clean_temporaries(root)
        tmp.mkdir()
    barrier(world)
    try:
        # Before the first step the optimizer has no state; asking DCP for it would invent some
        # (it runs a step with zero gradients), so a step-0 checkpoint holds the model alone.
        contents = _state_dicts(model, optimizer if optimizer.state else None)
        with _dcp_alone(world) as alone:
            dcp.save(contents, checkpoint_id=tmp, no_dist=alone)  # its files are fsynced by DCP
        rng = tmp / rng_file(world.rank)
        torch.save(_rng_state(), rng)
        _fsync(rng)
        barrier(world)
        if world.is_main:
            manifest = {"format": FORMAT, "step": step, "world_size": world.world_size,
                        "contents": sorted(contents), "keep_forever": keep_forever}
            _seal(tmp, final, {**state, "step": step}, manifest)
            _prune(Path(run_dir), keep)
    finally:
        if world.is_main:
            shutil.rmtree(tmp, ignore_errors=True)  # gone already unless something failed
    barrier(world)
    return final


def _seal(tmp: Path, final: Path, state: dict[str, Any], manifest: dict[str, Any]) -> None:
    """Rank 0's part once every rank has written: state.json, the manifest, the rename."""
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=1))
    files = {p.relative_to(tmp).as_posix(): _entry(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
    manifest = {**manifest, "created": now(), "files": files}
    (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
    for name in (STATE_FILE, MANIFEST_FILE):
        _fsync(tmp / name)
    _fsync(tmp)
    root = final.parent
    if final.exists():  # the same step written again (a run restarted from scratch)
        stale = root / f"{_TMP_PREFIX}stale-{final.name}"
        os.replace(final, stale)
        os.replace(tmp, final)
        shutil.rmtree(stale, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync(root)


def _read_manifest(path: Path) -> dict[str, Any]:
    manifest_path = path / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
        if not isinstance(files, dict):
            raise TypeError("'files' is not a mapping")
    except FileNotFoundError:
        raise CheckpointError(manifest_path, "is missing; the checkpoint cannot be verified. "
                              "Delete this checkpoint folder to resume from an earlier one.") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(manifest_path, f"is unreadable ({exc}). Delete this checkpoint folder "
                              "to resume from an earlier one.") from None
    if manifest.get("format") != FORMAT:
        raise CheckpointError(path, "was written in an older checkpoint format, which this version "
                              "cannot load. Delete it (or the whole run folder) to train afresh.")
    return manifest


def _verify(path: Path) -> dict[str, Any]:
    if not path.is_dir():
        raise CheckpointError(path, "checkpoint folder does not exist.")
    manifest = _read_manifest(path)
    for name, expected in manifest["files"].items():
        f = path / name
        if not f.is_file():
            raise CheckpointError(f, "is missing. Delete this checkpoint folder to resume from an "
                                  "earlier one.")
        size = f.stat().st_size
        if size != expected["bytes"]:
            raise CheckpointError(f, f"is truncated or overwritten: {size} bytes, expected "
                                  f"{expected['bytes']}. Delete this checkpoint folder to resume from "
                                  "an earlier one.")
        if sha256_file(f) != expected["sha256"]:
            raise CheckpointError(f, "is corrupt: its sha256 does not match the manifest. Delete this "
                                  "checkpoint folder to resume from an earlier one.")
    return manifest


def verify_checkpoint(path: Path | str, *, world: World | None = None) -> dict[str, Any]:
    """The manifest of checkpoint `path` once every file in it matches; else CheckpointError.

    With a `world` of several ranks (every rank calls it), rank 0 reads and checks the files and
    every rank returns its verdict: the same manifest, or the same error.
    """
    path = Path(path)
    world = world or local_world()
    if world.world_size == 1:
        return _verify(path)
    verdict: tuple[dict[str, Any] | None, tuple[str, str] | None] = (None, None)
    if world.is_main:
        try:
            verdict = (_verify(path), None)
        except CheckpointError as exc:
            verdict = (None, (str(exc.path), exc.problems[0].message))
    manifest, problem = broadcast_object(world, verdict)
    if problem is not None:
        raise CheckpointError(Path(problem[0]), problem[1])
    assert manifest is not None
    return manifest


def read_state(path: Path | str) -> dict[str, Any]:
    """The loop state (`state.json`) of a checkpoint, without verifying or loading anything."""
    return json.loads((Path(path) / STATE_FILE).read_text())


def _failure(exc: BaseException) -> str:
    """The first underlying error of a DCP failure (which carries one per rank), in one line."""
    if isinstance(exc, CheckpointException) and exc.failures:
        first = next(iter(exc.failures.values()))
        exc = first[0] if isinstance(first, tuple) else first
    return f"{type(exc).__name__}: {exc}"


def load_checkpoint(path: Path | str, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    *, restore_rng: bool = False, verify: bool = True,
                    world: World | None = None) -> dict[str, Any]:
    """Load a verified checkpoint into `model` (and `optimizer`); return its `state.json`.

    `restore_rng` also restores the random generators, which exact resumption needs; `verify=False`
    skips the checksums for a caller that has just run `verify_checkpoint`. With a `world` of
    several ranks every rank calls this (DCP reads each rank's piece of every tensor); without
    one, this process loads alone, even inside a job of several ranks. Nothing on disk is
    changed, whatever goes wrong.
    """
    path = Path(path)
    world = world or local_world()
    manifest = verify_checkpoint(path, world=world) if verify else _read_manifest(path)
    has_optimizer = "optimizer" in manifest.get("contents", [])
    contents = _state_dicts(model, optimizer if has_optimizer else None)
    try:
        with _dcp_alone(world) as alone:
            dcp.load(contents, checkpoint_id=path, no_dist=alone)
    except (CheckpointException, RuntimeError, ValueError, KeyError) as exc:
        if lost_peer(exc):
            raise
        what = "model and optimizer" if "optimizer" in contents else "model"
        raise CheckpointError(path, f"does not fit this {what}: {_failure(exc)}") from None
    set_model_state_dict(model, contents["model"])
    if optimizer is not None:
        if has_optimizer:
            set_optimizer_state_dict(model, optimizer, contents["optimizer"])
        else:  # written before the first step: the optimizer starts afresh
            optimizer.state.clear()
    if restore_rng:
        own = path / rng_file(world.rank)
        _set_rng_state(torch.load(own if own.is_file() else path / rng_file(0), weights_only=True))
    return read_state(path)


def _device_of(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def _load_model_file(model: nn.Module, file: Path) -> None:
    try:
        load_model(model, str(file), strict=True, device=str(_device_of(model)))
    except (RuntimeError, ValueError, OSError) as exc:
        raise CheckpointError(file, f"does not fit this model: {exc}") from None


def _checksum_path(path: Path) -> Path:
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def plain_copy(trained: nn.Module, cfg: ModelConfig) -> GPT:
    """The trained weights in a plain GPT of `cfg` on CPU, in eval mode, whatever swapped its
    layers while it trained (fp8 linears, merged adapters): their state dict keys are unchanged."""
    plain = GPT(cfg)
    plain.load_state_dict({k: v.detach().cpu() for k, v in trained.state_dict().items()})
    return plain.eval()


def save_weights(model: nn.Module, path: Path | str) -> Path:
    """Final weights: `path` (safetensors, tied weights stored once) and `path.sha256` next to it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f"{_TMP_PREFIX}{path.name}-", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        save_model(model, str(tmp))
        _fsync(tmp)
        digest = sha256_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _checksum_path(path).write_text(f"{digest}  {path.name}\n")
    return path


def load_weights(model: nn.Module, path: Path | str) -> None:
    """Load weights written by `save_weights` into `model`, after checking their sha256."""
    path = Path(path)
    checksum = _checksum_path(path)
    if not path.is_file():
        raise CheckpointError(path, "weights file is missing.")
    try:
        expected = checksum.read_text().split()[0]
    except (OSError, IndexError):
        raise CheckpointError(checksum, "checksum file is missing or empty; the weights cannot be "
                              "verified.") from None
    if sha256_file(path) != expected:
        raise CheckpointError(path, "is corrupt or truncated: its sha256 does not match "
                              f"{checksum.name}.")
    _load_model_file(model, path)
