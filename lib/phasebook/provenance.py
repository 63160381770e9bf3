"""Where a result came from: code version, dependency versions, git commit, hardware, time."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import importlib.metadata
import os
import platform
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent


def _hash_files(files: list[Path], base: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(str(f.relative_to(base)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


# Parts of the library that render and report but compute nothing an experiment stores.
PRESENTATION = ("book", "bench", "locale", "cli.py", "launch.py")


def _library_files(skip: tuple[str, ...] = ()) -> list[Path]:
    return [p for p in PACKAGE_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts
            and p.relative_to(PACKAGE_DIR).parts[0] not in skip]


@cache
def code_version() -> str:
    """Hash of the library's source (code, message catalogs, assets): changes when it does."""
    return _hash_files(_library_files(), PACKAGE_DIR)[:16]


# Later training stages: their code is part of the version of their own results (store kinds
# named "post-…") and of nothing earlier, so work on post-training never retrains the base model.
LATER_STAGES = ("post",)
LATER_KIND_PREFIX = "post-"


@cache
def compute_version(later_stages: bool = False) -> str:
    """Hash of the code that computes results (data, model, training, evaluation, store).

    Stored results (trained models, metrics) depend on this, not on the site renderer, the
    CLI or the message catalogs, so editing those does not retrain anything. Results of the
    later stages (`later_stages=True`) depend on their own code too; earlier ones do not.
    """
    skip = PRESENTATION if later_stages else PRESENTATION + LATER_STAGES
    return _hash_files(_library_files(skip), PACKAGE_DIR)[:16]


def kind_version(kind: str) -> str:
    """The compute version a stored result of `kind` depends on (see LATER_KIND_PREFIX)."""
    return compute_version(later_stages=kind.startswith(LATER_KIND_PREFIX))


def directory_digest(folder: Path) -> str:
    """Hash of every file under `folder` (names and contents); a fixed value when it is absent."""
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
    return _hash_files(files, folder)[:16]


@cache
def dependency_versions() -> dict[str, str]:
    """Name -> version of every installed distribution (what actually runs, not what was asked)."""
    out = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and name.lower() != "phasebook":
            out[name.lower()] = dist.version
    return dict(sorted(out.items()))


def package_version(name: str) -> str | None:
    """The version of the importable package `name` as it reports itself (`name.__version__`,
    else its distribution's metadata), or None when it is not installed."""
    try:
        module = importlib.import_module(name)
    except ImportError:
        return None
    version = getattr(module, "__version__", None)
    if version is not None:
        return str(version)
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@cache
def dependency_hash() -> str:
    blob = "\n".join(f"{k}=={v}" for k, v in dependency_versions().items())
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@cache
def git_commit() -> str:
    """HEAD of the repository holding the library, with '-dirty' for uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PACKAGE_DIR, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--", str(PACKAGE_DIR))
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


@cache
def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "system": platform.platform(terse=True),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
