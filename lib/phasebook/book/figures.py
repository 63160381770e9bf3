"""Citable figures: PNG + SVG + PDF, the data behind them, and a provenance record.

Inside a notebook, `save_figure` writes `<run>/figures/ID/LANG/` and shows the figure with
its cite box; the site build copies the figures of successful runs to build/figures/ID/.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from phasebook import i18n
from phasebook.book.citation import figure_html
from phasebook.book.context import ENV, current
from phasebook.errors import PhasebookError
from phasebook.provenance import (
    code_version,
    dependency_hash,
    dependency_versions,
    git_commit,
    hardware,
    now,
    sha256_file,
)

ID_PATTERN = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
# A per-glyph fallback: Latin text in DejaVu, Chinese in Noto CJK (fonts-noto-cjk).
FONTS = ["DejaVu Sans", "Noto Sans CJK SC"]
KEY_PACKAGES = ("torch", "triton", "numpy", "matplotlib", "papermill", "jupyter-book")


def use_book_style() -> None:
    """Matplotlib settings shared by every figure: CJK-capable fonts, sizes, text in SVG/PDF."""
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    missing = [name for name in FONTS if name not in installed]
    if missing:
        raise PhasebookError(f"font(s) {', '.join(missing)} not installed: Chinese figure labels "
                             "would render as boxes. Install the Debian package fonts-noto-cjk "
                             "(`make book` does when run as root).")
    matplotlib.rcParams.update({
        "font.family": FONTS,  # a list of families, not a generic name: enables glyph fallback
        "axes.unicode_minus": False,
        "figure.dpi": 100,
        "savefig.bbox": "tight",
        "svg.hashsalt": "phasebook",  # deterministic SVG ids
        "pdf.fonttype": 42,
        "axes.spines.top": False,
        "axes.spines.right": False,
    })


def plain_log_axis(axis: Any) -> None:
    """Label a logarithmic axis 0.7, 1, 2, 3 rather than 7×10⁻¹, 10⁰, ... (for a decade or two)."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
    axis.set_major_formatter(FormatStrFormatter("%g"))
    axis.set_minor_formatter(NullFormatter())


def favicon_data_url() -> str:
    """The site's favicon as a data: URL, for a figure's standalone interactive page.

    That page is opened from site/LANG/figures/ID/LANG/, build/figures/ and build/runs/ alike, so
    a relative link to _static/ would be right in one place only; without any icon the browser
    asks the server for /favicon.ico, which the site does not have (a 404 on every such page).
    """
    svg = (Path(__file__).resolve().parent / "assets" / "pb-favicon.svg").read_bytes()
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode()


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return {k: np.asarray(v).tolist() if isinstance(v, np.ndarray | list | tuple) else v
            for k, v in data.items()}


def save_figure(fig: Any, figure_id: str, title: str, data: dict[str, Any], caption: str = "",
                interactive_html: str = "", display: bool = True) -> dict[str, Any]:
    """Write the figure's files and provenance; show it with its cite box; return the record.

    `title` and `caption` are message ids (English) translated through the catalogs, so the
    record carries both languages. `data` is what the figure plots: stored and hashed.
    """
    import matplotlib.pyplot as plt

    if not ID_PATTERN.match(figure_id):
        raise PhasebookError(f"figure id '{figure_id}': use lowercase letters, digits and "
                             "single hyphens, e.g. 'interpolation-error-vs-degree'.")
    ctx = current()
    lang = ctx.lang
    folder = ctx.figures_dir / figure_id / lang
    # Under `phasebook build/run` every run starts empty, so an existing record is a reused id;
    # a notebook opened by hand (no context) may rerun its cells and overwrite its scratch copy.
    if os.environ.get(ENV) and (folder / "provenance.json").exists():
        raise PhasebookError(f"figure id '{figure_id}' is used twice in this run.")
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for ext in ("png", "svg", "pdf"):
        path = folder / f"{figure_id}.{ext}"
        fig.savefig(path, dpi=200 if ext == "png" else None,
                    metadata={"Creator": "Phasebook"} if ext != "png" else None)
        files[ext] = sha256_file(path)
    data_blob = json.dumps(_jsonable(data), sort_keys=True, ensure_ascii=False)
    (folder / "data.json").write_text(data_blob, encoding="utf-8")
    if interactive_html:
        page = (f"<!doctype html><meta charset='utf-8'><title>{figure_id}</title>"
                f"<link rel='icon' href='{favicon_data_url()}'>{interactive_html}")
        (folder / f"{figure_id}.html").write_text(page, encoding="utf-8")
    versions = dependency_versions()
    record = {
        "id": figure_id,
        "lang": lang,
        "title": i18n.in_all(title, ctx.languages),
        "caption": i18n.in_all(caption, ctx.languages) if caption else {},
        "notebook": ctx.notebook,
        "docname": ctx.docname,
        "url": f"{ctx.page_url()}#fig-{figure_id}" if ctx.page_url() else "",
        "params": ctx.params,
        "params_hash": ctx.params_hash,
        "seed": ctx.params.get("seed"),
        "code_version": code_version(),
        "commit": git_commit(),
        "dependencies": {k: versions[k] for k in KEY_PACKAGES if k in versions},
        "dependency_hash": dependency_hash(),
        "hardware": hardware(),
        "created": now(),
        "data_sha256": hashlib.sha256(data_blob.encode()).hexdigest(),
        "files": files,
        "book_title": ctx.book_title,
        "author": ctx.author,
        "interactive_html": interactive_html,
    }
    (folder / "provenance.json").write_text(json.dumps(record, indent=1, ensure_ascii=False),
                                            encoding="utf-8")
    if display:
        from IPython.display import HTML
        from IPython.display import display as show

        show(HTML(figure_html(record, ctx.site_prefix, folder)))
    plt.close(fig)
    return record


def load_records(figures_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(figure id, language) -> provenance record, for every figure under `figures_dir`."""
    out = {}
    for path in sorted(figures_dir.glob("*/*/provenance.json")):
        rec = json.loads(path.read_text(encoding="utf-8"))
        out[(rec["id"], rec["lang"])] = rec
    return out
