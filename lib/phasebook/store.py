"""Content-addressed artifact store: hash(kind, config, code version) -> stored result.

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

from phasebook.provenance import code_version, now, sha256_file

Result = dict[str, Any]  # values: numpy arrays or JSON-serialisable objects


def config_hash(kind: str, config: Any) -> str:
    blob = json.dumps({"kind": kind, "config": config, "code": code_version()},
                      sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


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

    def _save(self, target: Path, kind: str, config: Any, result: Result) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name[:12]}-", dir=target.parent))
        try:
            arrays = {k: v for k, v in result.items() if isinstance(v, np.ndarray)}
            plain = {k: v for k, v in result.items() if k not in arrays}
            np.savez(tmp / "arrays.npz", **arrays)
            (tmp / "values.json").write_text(json.dumps(plain, indent=1, default=float))
            files = {f.name: sha256_file(f) for f in sorted(tmp.iterdir())}
            manifest = {"kind": kind, "config": config, "code_version": code_version(),
                        "created": now(), "files": files}
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
            if target.exists():  # a corrupt copy moved aside by _load, or a concurrent writer
                shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _load(self, target: Path) -> Result | None:
        try:
            manifest = json.loads((target / "manifest.json").read_text())
            for name, digest in manifest["files"].items():
                if sha256_file(target / name) != digest:
                    raise ValueError(f"checksum mismatch in {name}")
            with np.load(target / "arrays.npz") as npz:
                result: Result = {k: npz[k] for k in npz.files}
            result.update(json.loads((target / "values.json").read_text()))
            return result
        except (OSError, ValueError, KeyError) as exc:
            aside = target.with_name(f"{target.name}.corrupt")
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(target, aside)
            warnings.warn(f"stored result {target} is unreadable ({exc}); moved it to {aside} "
                          "and recomputing.", stacklevel=3)
            return None
