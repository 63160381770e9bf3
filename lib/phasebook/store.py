"""Content-addressed artifact store: hash(kind, config, compute version) -> stored result.

Experiments are pure functions of their configuration, so a result computed once (by the
English notebook, say) is loaded, not recomputed, by every later caller (the Chinese one).
Writes are atomic (a temporary folder renamed into place), so a run killed halfway leaves
nothing that looks complete; a stored result that fails its checksums is moved aside and
recomputed, never silently used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from phasebook.provenance import kind_version, now, sha256_file

Result = dict[str, Any]  # values: numpy arrays or JSON-serialisable objects


def config_hash(kind: str, config: Any) -> str:
    blob = json.dumps({"kind": kind, "config": config, "code": kind_version(kind)},
                      sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_root() -> Path:
    """$PHASEBOOK_STORE, else build/store of the book around the working directory."""
    if env := os.environ.get("PHASEBOOK_STORE"):
        return Path(env)
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / "book.yml").is_file():
            return folder / "build" / "store"
    return Path.home() / ".cache" / "phasebook" / "store"


class Store:
    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else default_root()

    def path(self, kind: str, config: Any) -> Path:
        return self.root / kind / config_hash(kind, config)

    def memo(self, kind: str, config: Any, compute: Callable[[], Result]) -> Result:
        """The stored result for (kind, config), computing and storing it on a miss."""
        target = self.path(kind, config)
        if target.is_dir():
            result = self._load(target)
            if result is not None:
                return result
        result = compute()
        self._save(target, kind, config, result)
        return result

    def scratch_path(self, kind: str, config: Any) -> Path:
        """The folder `artifact` hands `produce` as scratch for (kind, config): it outlives a killed
        run, so the next call can resume from what it holds."""
        target = self.path(kind, config)
        return target.with_name(f"{target.name}.scratch")

    def artifact(self, kind: str, config: Any, produce: Callable[[Path, Path], None]) -> Path:
        """The stored folder for (kind, config), produced on a miss by `produce(out, scratch)`.

        `produce` writes its result files into `out`; `scratch` (for checkpoints, say) survives
        a killed run so that the next call can resume from it, and is deleted on success. The
        finished `out` is checksummed and renamed into place in one step.
        """
        target = self.path(kind, config)
        if target.is_dir() and self._verify(target):
            return target
        scratch = self.scratch_path(kind, config)
        out = Path(tempfile.mkdtemp(prefix=f".{target.name[:12]}-", dir=_mkdir(target.parent)))
        try:
            scratch.mkdir(exist_ok=True)
            produce(out, scratch)
            self._write_manifest(out, kind, config)
            if target.exists():
                shutil.rmtree(target, ignore_errors=True)
            os.replace(out, target)
            shutil.rmtree(scratch, ignore_errors=True)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        return target

    def _verify(self, target: Path) -> bool:
        """True when every file matches the manifest; otherwise moves the folder aside."""
        try:
            manifest = json.loads((target / "manifest.json").read_text())
            for name, digest in manifest["files"].items():
                if sha256_file(target / name) != digest:
                    raise ValueError(f"checksum mismatch in {name}")
            return True
        except (OSError, ValueError, KeyError) as exc:
            self._move_aside(target, exc)
            return False

    def _move_aside(self, target: Path, exc: Exception) -> None:
        aside = target.with_name(f"{target.name}.corrupt")
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(target, aside)
        warnings.warn(f"stored result {target} is unreadable ({exc}); moved it to {aside} "
                      "and recomputing.", stacklevel=4)

    def _write_manifest(self, folder: Path, kind: str, config: Any) -> None:
        files = {str(f.relative_to(folder)): sha256_file(f)
                 for f in sorted(folder.rglob("*")) if f.is_file()}
        manifest = {"kind": kind, "config": config, "code_version": kind_version(kind),
                    "created": now(), "files": files}
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))

    def _save(self, target: Path, kind: str, config: Any, result: Result) -> None:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name[:12]}-", dir=_mkdir(target.parent)))
        try:
            arrays = {k: v for k, v in result.items() if isinstance(v, np.ndarray)}
            plain = {k: v for k, v in result.items() if k not in arrays}
            np.savez(tmp / "arrays.npz", **arrays)
            (tmp / "values.json").write_text(json.dumps(plain, indent=1, default=float))
            self._write_manifest(tmp, kind, config)
            if target.exists():  # a corrupt copy moved aside by _load, or a concurrent writer
                shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _load(self, target: Path) -> Result | None:
        if not self._verify(target):
            return None
        try:
            with np.load(target / "arrays.npz") as npz:
                result: Result = {k: npz[k] for k in npz.files}
            result.update(json.loads((target / "values.json").read_text()))
            return result
        except (OSError, ValueError, KeyError) as exc:
            self._move_aside(target, exc)
            return None
