"""Training checkpoints that survive a kill at any moment and never load silently wrong.

A checkpoint is a folder `run_dir/checkpoints/step-000123/` holding the model (safetensors),
the optimizer state, every random generator's state, the loop's own state (`state.json`) and a
manifest with the sha256 of each of those files. It is written into a hidden temporary folder
next to its final place and renamed into place once complete, so a folder named `step-*` is
always whole; loading verifies every checksum first and names the file that does not match.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model
from torch import nn

from phasebook.errors import PhasebookError, Problem
from phasebook.provenance import now, sha256_file

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
RNG_FILE = "rng.pt"
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


def save_checkpoint(run_dir: Path | str, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict[str, Any], *, keep: int = 2, keep_forever: bool = False) -> Path:
    """Write the checkpoint after `step` optimizer steps; keep the newest `keep` ordinary ones.

    `state` is the loop's JSON-ready state (skipped data, config, ...); `keep_forever` exempts
    this checkpoint from pruning (a WSD branch point, say).
    """
    if keep < 1:
        raise ValueError(f"keep is {keep}; at least the newest checkpoint must be kept.")
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    _clean_temporaries(root)
    final = root / f"step-{step:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{final.name}-", dir=root))
    try:
        save_model(model, str(tmp / MODEL_FILE))
        torch.save(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
        torch.save(_rng_state(), tmp / RNG_FILE)
        (tmp / STATE_FILE).write_text(json.dumps({**state, "step": step}, indent=1))
        files = {name: _entry(tmp / name) for name in (MODEL_FILE, OPTIMIZER_FILE, RNG_FILE, STATE_FILE)}
        manifest = {"step": step, "created": now(), "keep_forever": keep_forever, "files": files}
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
        for f in tmp.iterdir():
            _fsync(f)
        _fsync(tmp)
        if final.exists():  # the same step written again (a run restarted from scratch)
            stale = root / f"{_TMP_PREFIX}stale-{final.name}"
            os.replace(final, stale)
            os.replace(tmp, final)
            shutil.rmtree(stale, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _prune(Path(run_dir), keep)
    return final


def verify_checkpoint(path: Path | str) -> dict[str, Any]:
    """The manifest of checkpoint `path` once every file in it matches; else CheckpointError."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(path, "checkpoint folder does not exist.")
    manifest_path = path / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except FileNotFoundError:
        raise CheckpointError(manifest_path, "is missing; the checkpoint cannot be verified. "
                              "Delete this checkpoint folder to resume from an earlier one.") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(manifest_path, f"is unreadable ({exc}). Delete this checkpoint folder "
                              "to resume from an earlier one.") from None
    for name, expected in files.items():
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


def _device_of(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def _load_model_file(model: nn.Module, file: Path) -> None:
    try:
        load_model(model, str(file), strict=True, device=str(_device_of(model)))
    except (RuntimeError, ValueError, OSError) as exc:
        raise CheckpointError(file, f"does not fit this model: {exc}") from None


def read_state(path: Path | str) -> dict[str, Any]:
    """The loop state (`state.json`) of a checkpoint, without verifying or loading anything."""
    return json.loads((Path(path) / STATE_FILE).read_text())


def load_checkpoint(path: Path | str, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    *, restore_rng: bool = False, verify: bool = True) -> dict[str, Any]:
    """Load a verified checkpoint into `model` (and `optimizer`); return its `state.json`.

    `restore_rng` also restores the random generators, which exact resumption needs; `verify=False`
    skips the checksums for a caller that has just run `verify_checkpoint`. Nothing on disk is
    changed, whatever goes wrong.
    """
    path = Path(path)
    if verify:
        verify_checkpoint(path)
    _load_model_file(model, path / MODEL_FILE)
    if optimizer is not None:
        try:
            optimizer.load_state_dict(torch.load(path / OPTIMIZER_FILE, map_location="cpu",
                                                 weights_only=True))
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(path / OPTIMIZER_FILE, f"does not fit this optimizer: {exc}") from None
    if restore_rng:
        _set_rng_state(torch.load(path / RNG_FILE, weights_only=True))
    return read_state(path)


def _checksum_path(path: Path) -> Path:
    return path.with_name(path.name + CHECKSUM_SUFFIX)


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
