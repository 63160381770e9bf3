"""Executing notebooks with papermill, behind a run cache that never loses a good result.

A run is one notebook in one language with one full parameter set. Its results live in
build/runs/NOTEBOOK/PARAMS_HASH/LANG/ and are reused while the run key (notebook source,
parameters, library code version, installed dependency versions, the stored measurements under
results/) is unchanged. A new attempt is written beside it and swapped in only when it
succeeds; a failed attempt is kept in LANG.failed/ with its log, and the last good result
stays where it was.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from phasebook.book.context import ENV, RunContext
from phasebook.book.notebooks import NotebookSource
from phasebook.book.params import params_hash
from phasebook.config import Book
from phasebook.provenance import code_version, dependency_hash, directory_digest, now

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
RESULTS_DIR = "results"  # stored measurements (e.g. from a GPU) that notebooks may read


@dataclass(frozen=True)
class RunSpec:
    book: Book
    source: NotebookSource
    lang: str
    params: dict[str, Any]

    @property
    def params_hash(self) -> str:
        return params_hash(self.params)

    @functools.cached_property
    def key(self) -> str:
        # results/ holds measurements made elsewhere (GPU benchmarks) that notebooks draw on.
        parts = [self.source.digest(self.lang), json.dumps(self.params, sort_keys=True),
                 code_version(), dependency_hash(), directory_digest(self.book.root / RESULTS_DIR)]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]

    @property
    def run_dir(self) -> Path:
        """The last good result for these parameters in this language."""
        return self.book.build_dir / "runs" / self.source.name / self.params_hash / self.lang

    @property
    def failed_dir(self) -> Path:
        """The last failed attempt (partial notebook and log), kept beside the good result."""
        return self.run_dir.with_name(f"{self.lang}.failed")

    @property
    def label(self) -> str:
        return f"{self.source.name} ({self.lang})"

    def context(self, out_dir: Path) -> RunContext:
        book = self.book
        return RunContext(notebook=self.source.name, lang=self.lang, languages=tuple(book.languages),
                          params=self.params, params_hash=self.params_hash, out_dir=str(out_dir),
                          docname=f"experiments/{self.source.name}", url=book.url,
                          book_title=book.title, author=book.author)


@dataclass(frozen=True)
class RunOutcome:
    spec: RunSpec
    status: str  # "cached", "executed" or "failed"
    seconds: float
    error: str = ""
    cell: int | None = None  # 1-based number of the failing code cell in the source
    log: Path | None = None

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    @property
    def good_dir(self) -> Path | None:
        """Folder of the newest successful result for these parameters, if there is one."""
        return self.spec.run_dir if (self.spec.run_dir / "run.json").is_file() else None

    @property
    def failed_dir(self) -> Path:
        return self.spec.failed_dir


def read_run(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _kernel_environment(ctx: RunContext, store: Path):
    """Environment the kernel inherits: run context, store, and this interpreter first on PATH."""
    saved = dict(os.environ)
    os.environ[ENV] = ctx.to_env()
    os.environ["PHASEBOOK_STORE"] = str(store)
    os.environ["MPLBACKEND"] = "Agg"
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _local_kernel():
    """A kernel manager on local (IPC) sockets in a private folder: no TCP port is opened."""
    from jupyter_client.manager import KernelManager

    with tempfile.TemporaryDirectory(prefix="phasebook-kernel-") as folder:
        km = KernelManager(kernel_name="python3", transport="ipc", ip=f"{folder}/kernel")
        try:
            yield km
        finally:
            if km.has_kernel:
                km.shutdown_kernel(now=True)


def is_cached(spec: RunSpec) -> bool:
    info = read_run(spec.run_dir)
    return bool(info and info.get("key") == spec.key)


def execute(spec: RunSpec, force: bool = False) -> RunOutcome:
    """Run `spec` unless its result is cached; keep the last good result whatever happens."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    start = time.perf_counter()
    if not force and is_cached(spec):
        return RunOutcome(spec, "cached", 0.0, log=spec.run_dir / "log.txt")
    attempt = spec.run_dir.with_name(f"{spec.lang}.attempt")
    shutil.rmtree(attempt, ignore_errors=True)
    attempt.mkdir(parents=True)
    nbformat.write(spec.source.for_language(spec.lang), attempt / "source.ipynb")
    log_path = attempt / "log.txt"
    started = now()
    error, cell = "", None
    with log_path.open("w", encoding="utf-8") as log, \
            _kernel_environment(spec.context(attempt), spec.book.build_dir / "store"), \
            _local_kernel() as km:
        try:
            papermill.execute_notebook(
                str(attempt / "source.ipynb"), str(attempt / "notebook.ipynb"),
                parameters=spec.params, kernel_name="python3", progress_bar=False,
                stdout_file=log, stderr_file=log, cwd=str(spec.book.root), km=km)
        except PapermillExecutionError as exc:
            cell = _drop_error_markers(attempt / "notebook.ipynb", exc.cell_index)
            error = f"{exc.ename}: {exc.evalue}"
            log.write("\n" + ANSI.sub("", "\n".join(exc.traceback)) + "\n")
        except Exception as exc:  # kernel died, bad notebook, ...: still this run's failure
            error = f"{type(exc).__name__}: {exc}"
            log.write(f"\n{error}\n")
    seconds = time.perf_counter() - start
    info = {"key": spec.key, "notebook": spec.source.name, "lang": spec.lang,
            "params": spec.params, "params_hash": spec.params_hash,
            "code_version": code_version(), "dependency_hash": dependency_hash(),
            "started": started, "finished": now(), "seconds": round(seconds, 2)}
    if error:
        shutil.rmtree(spec.failed_dir, ignore_errors=True)
        info |= {"status": "failed", "error": error, "cell": cell}
        (attempt / "run.json").write_text(json.dumps(info, indent=1))
        attempt.rename(spec.failed_dir)
        return RunOutcome(spec, "failed", seconds, error, cell, spec.failed_dir / "log.txt")
    (attempt / "run.json").write_text(json.dumps(info | {"status": "ok"}, indent=1))
    old = spec.run_dir.with_name(f"{spec.lang}.old")
    shutil.rmtree(old, ignore_errors=True)
    if spec.run_dir.exists():
        spec.run_dir.rename(old)
    attempt.rename(spec.run_dir)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(spec.failed_dir, ignore_errors=True)
    return RunOutcome(spec, "executed", seconds, log=spec.run_dir / "log.txt")


def _drop_error_markers(executed: Path, index: int | None) -> int | None:
    """Remove papermill's red error-marker cells (the page shows a failure box instead) and
    return the failing cell as a reader counts it: the N-th code cell of the source notebook.

    Papermill's index counts prose and its injected-parameters cell, not the markers it adds
    after the run.
    """
    if not executed.is_file():
        return None
    nb = nbformat.read(executed, as_version=4)
    nb.cells = [c for c in nb.cells if "papermill-error-cell-tag" not in c.metadata.get("tags", [])]
    nbformat.write(nb, executed)
    if index is None:
        return None
    return sum(1 for c in nb.cells[: index + 1] if c.cell_type == "code"
               and "injected-parameters" not in c.metadata.get("tags", []))
