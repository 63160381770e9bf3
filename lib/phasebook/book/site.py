"""Rendering: one Jupyter Book project per language, built into build/site/LANG/.

For each language a Jupyter Book source folder is generated under build/src/LANG/ (content
pages of that language, executed notebooks, bibliography, theme assets) and built with the
real `jupyter-book build`, execution off (papermill already ran). Files are only rewritten
when their content changes, so Sphinx's incremental build keeps a warm rebuild fast.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import yaml

from phasebook.book.execute import RunOutcome
from phasebook.book.network import (
    NETWORK_PAGE,
    build_graph,
    cited_by_section,
    connected_section,
    network_page,
    vis_assets,
)
from phasebook.book.pages import load_pages, rendered_body
from phasebook.book.sphinx_ext import LANGUAGE_NAMES
from phasebook.config import Book
from phasebook.errors import PhasebookError
from phasebook.i18n import N_
from phasebook.i18n import gettext as _

ASSETS = Path(__file__).resolve().parent / "assets"
SPHINX_LANGUAGE = {"en": "en", "zh": "zh_CN"}
READ_IN = {"en": N_("Read in English"), "zh": N_("Read in Chinese")}
WARNING = re.compile(r"(WARNING|ERROR|CRITICAL):")


def write_if_changed(path: Path, content: str | bytes) -> bool:
    data = content.encode() if isinstance(content, str) else content
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return True


def sync_tree(files: dict[str, Path], dest: Path) -> None:
    """Make `dest` hold exactly `files` (relative path -> source), copying only what changed."""
    dest.mkdir(parents=True, exist_ok=True)
    for rel, src in files.items():
        target = dest / rel
        st = src.stat()
        if target.is_file():
            tt = target.stat()
            if tt.st_size == st.st_size and int(tt.st_mtime) == int(st.st_mtime):
                continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    for path in sorted(dest.rglob("*"), reverse=True):
        rel = path.relative_to(dest).as_posix()
        if path.is_file() and rel not in files:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def tree_files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------- figures


def publish_figures(book: Book, outcomes: list[RunOutcome]) -> Path:
    """build/figures/ID/LANG/: the figures of the last good result of each notebook run."""
    files: dict[str, Path] = {}
    owner: dict[str, str] = {}
    for outcome in outcomes:
        if outcome.good_dir is None:
            continue
        root = outcome.good_dir / "figures"
        for rel, src in tree_files(root).items() if root.is_dir() else ():
            fid = rel.split("/")[0]
            if owner.setdefault(fid, outcome.spec.source.name) != outcome.spec.source.name:
                raise PhasebookError(f"figure id '{fid}' is made by two notebooks: "
                                     f"{owner[fid]} and {outcome.spec.source.name}. Ids must be "
                                     "unique across the book.")
            files[rel] = src
    dest = book.build_dir / "figures"
    sync_tree(files, dest)
    return dest


# --------------------------------------------------------------------------- sources


CJK = "\u3000-\u303f\u3400-\u9fff\uff00-\uffef"
STARTS_CJK = re.compile(f"\\s*[{CJK}]")
ENDS_CJK = re.compile(f"[{CJK}]$")
BLOCK_LINE = ("#", ":", "|", "```", "~~~")  # headings, directive options, tables, fences


def join_cjk_lines(text: str) -> str:
    """Join a paragraph's lines where both sides of the break are Chinese (outside code).

    Browsers render a source line break as a space, which Chinese text must not have.
    """
    out: list[str] = []
    fenced = False
    for line in text.split("\n"):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif (not fenced and out and ENDS_CJK.search(out[-1]) and STARTS_CJK.match(line)
              and not out[-1].lstrip().startswith(BLOCK_LINE)):
            out[-1] += line.lstrip()
            continue
        out.append(line)
    return "\n".join(out)


def _failure_cell(outcome: RunOutcome, lang: str) -> nbformat.NotebookNode:
    spec = outcome.spec
    error = f"`{outcome.error}`"
    what = (_("Error in code cell {cell}: {error}", lang).format(cell=outcome.cell, error=error)
            if outcome.cell is not None else _("Error: {error}", lang).format(error=error))
    log = outcome.log.relative_to(spec.book.root) if outcome.log else ""
    shown = (_("Below is the last good result for these parameters.", lang)
             if outcome.good_dir else _("There is no earlier good result to show.", lang))
    text = "\n".join([
        f":::{{admonition}} {_('This notebook failed to run', lang)}",
        ":class: error pb-failure",
        what,
        "",
        _("Full log: {path}", lang).format(path=f"`{log}`"),
        "",
        shown,
        ":::",
    ])
    return nbformat.v4.new_markdown_cell(text, metadata={"tags": ["pb-failure"]})


def notebook_page(outcome: RunOutcome, lang: str) -> nbformat.NotebookNode:
    """The executed notebook a page shows; after a failure, a failure box on top of the last
    good result (or of the partial, failed one when there is none)."""
    folder = outcome.good_dir or outcome.failed_dir
    path = folder / "notebook.ipynb"
    # A run that failed before papermill wrote anything shows the unexecuted source.
    nb = nbformat.read(path, as_version=4) if path.is_file() else outcome.spec.source.for_language(lang)
    if not outcome.ok:
        nb.cells.insert(0, _failure_cell(outcome, lang))
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"c{i}"
        if lang == "zh" and cell.cell_type == "markdown":
            cell.source = join_cjk_lines(cell.source)
    return nb


def _toc(book: Book, lang: str) -> dict:
    root = book.parts[0].chapters[0].docname
    parts = []
    for i, part in enumerate(book.parts):
        chapters = [{"file": c.docname} for c in part.chapters[1 if i == 0 else 0:]]
        if i == 0:  # the Paper Network comes right after the home page
            chapters.insert(0, {"file": NETWORK_PAGE})
        if chapters:
            parts.append({"caption": part.title[lang], "chapters": chapters})
    return {"format": "jb-book", "root": root, "parts": parts}


def _config(book: Book, lang: str) -> dict:
    return {
        "title": book.title[lang],
        "author": book.author[lang],
        "copyright": "2026",
        "only_build_toc_files": True,
        "exclude_patterns": ["_build", "_extra", "**.ipynb_checkpoints"],
        "execute": {"execute_notebooks": "off"},
        "bibtex_bibfiles": [Path(book.bibliography).name],
        "parse": {"myst_enable_extensions": ["amsmath", "colon_fence", "deflist", "dollarmath",
                                             "substitution"]},
        "html": {"use_multitoc_numbering": False, "home_page_in_navbar": True,
                 "baseurl": f"{book.url.rstrip('/')}/{lang}/"},
        "launch_buttons": {"thebe": False},
        "sphinx": {
            "extra_extensions": ["sphinx-mathjax-offline", "phasebook.book.sphinx_ext"],
            "recursive_update": True,
            "config": {
                "language": SPHINX_LANGUAGE[lang],
                "html_search_language": lang,
                # jieba segments Chinese for search; teach it the book's technical terms.
                "html_search_options": {"dict": str(ASSETS / "jieba-terms.txt")}
                if lang == "zh" else {},
                "mathjax_path": "mathjax/tex-chtml.js",
                "templates_path": ["_templates"],
                "html_static_path": ["_static"],
                "html_extra_path": ["_extra"],
                "html_css_files": ["phasebook.css"],
                "html_js_files": ["phasebook.js"],
                "html_favicon": "_static/pb-favicon.svg",
                "html_theme_options": {
                    "article_header_end": ["article-header-buttons.html", "pb-lang-switch.html"],
                    "use_repository_button": False,
                    "home_page_in_toc": True,
                    "search_bar_text": _("Search this book...", lang),
                },
                # The theme reads its colour mode from here; left empty, it logs a console error.
                "html_context": {"default_mode": "auto"},
                "pb_lang": lang,
                "pb_languages": list(book.languages),
                "pb_figures_dir": str(book.build_dir / "figures"),
                "suppress_warnings": ["mystnb.unknown_mime_type"],
            },
        },
    }


def prepare_sources(book: Book, lang: str, outcomes: list[RunOutcome], figures: Path) -> Path:
    """Write build/src/LANG/: the Jupyter Book project of one language."""
    src = book.build_dir / "src" / lang
    files: dict[str, Path] = {}
    generated: dict[str, str | bytes] = {}
    others = tuple(f".{other}.md" for other in book.languages if other != lang)
    pages = load_pages(book)
    graph = build_graph(book, pages)
    for rel, path in tree_files(book.root / "content").items():
        if rel.endswith(f".{lang}.md"):
            page_id = rel[: -len(f".{lang}.md")]
            text = rendered_body(pages, page_id, lang) + connected_section(graph, page_id, lang)
            if page_id == "bibliography":
                text += cited_by_section(graph, lang)
            generated[page_id + ".md"] = join_cjk_lines(text) if lang == "zh" else text
        elif not rel.endswith(others):
            files[rel] = path
    for outcome in outcomes:
        if outcome.spec.lang == lang:
            nb = notebook_page(outcome, lang)
            connected = connected_section(graph, f"experiments/{outcome.spec.source.name}", lang)
            if connected:
                nb.cells.append(nbformat.v4.new_markdown_cell(connected.strip(), id=f"c{len(nb.cells)}"))
            generated[f"experiments/{outcome.spec.source.name}.ipynb"] = nbformat.writes(nb)
    generated[f"{NETWORK_PAGE}.md"] = network_page(graph, lang)
    for name, path in vis_assets().items():
        files[f"_static/{name}"] = path
    files["_static/pb-network.js"] = ASSETS / "pb-network.js"
    generated["_toc.yml"] = yaml.safe_dump(_toc(book, lang), allow_unicode=True, sort_keys=False)
    generated["_config.yml"] = yaml.safe_dump(_config(book, lang), allow_unicode=True,
                                              sort_keys=False)
    for name in ("phasebook.css", "phasebook.js", "pb-favicon.svg"):
        files[f"_static/{name}"] = ASSETS / name
    files["_templates/pb-lang-switch.html"] = ASSETS / "pb-lang-switch.html"
    for rel, path in tree_files(figures).items():
        if f"/{lang}/" in rel:
            files[f"_extra/figures/{rel}"] = path
    # Copy plain files, then overwrite-if-changed the generated ones, then drop strays.
    sync_tree(files | {rel: src / rel for rel in generated if (src / rel).is_file()}, src)
    for rel, content in generated.items():
        write_if_changed(src / rel, content)
    return src


# --------------------------------------------------------------------------- build


def _jupyter_book(src: Path, out: Path, log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()",
           "build", str(src), "--path-output", str(out), "--builder", "html"]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


def render(book: Book, outcomes: list[RunOutcome], languages: list[str]) -> dict[str, dict]:
    """Build every language's site (in parallel) and the root page; return per-language stats."""
    figures = publish_figures(book, outcomes)
    jobs = {}
    for lang in languages:
        src = prepare_sources(book, lang, outcomes, figures)
        log = book.build_dir / "logs" / f"site-{lang}.log"
        jobs[lang] = (time.perf_counter(), _jupyter_book(src, book.build_dir / "jb" / lang, log),
                      log)
    stats = {}
    for lang, (start, proc, log) in jobs.items():
        code = proc.wait()
        text = log.read_text(errors="replace")
        warnings = [line for line in text.splitlines() if WARNING.search(line)]
        if code != 0:
            raise PhasebookError(f"jupyter-book failed for '{lang}' (exit {code}); "
                                 f"see {log}:\n" + "\n".join(text.splitlines()[-15:]))
        html_dir = book.build_dir / "jb" / lang / "_build" / "html"
        sync_tree(tree_files(html_dir), book.build_dir / "site" / lang)
        stats[lang] = {"seconds": time.perf_counter() - start, "warnings": warnings, "log": log}
    write_if_changed(book.build_dir / "site" / "index.html", root_page(book))
    return stats


def root_page(book: Book) -> str:
    """build/site/index.html: pick a language (remembered once chosen)."""
    root = book.parts[0].chapters[0].docname
    choices = "\n".join(
        f'<a class="pb-lang-choice" data-pb-lang="{lang}" lang="{lang}" href="{lang}/{root}.html">'
        f"<strong>{html.escape(book.title[lang])}</strong><span>{html.escape(book.description[lang])}"
        f"</span><em>{html.escape(_(READ_IN[lang], lang))} · {LANGUAGE_NAMES.get(lang, lang)}</em></a>"
        for lang in book.languages)
    languages = json.dumps(list(book.languages))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(" · ".join(book.title[lang] for lang in book.languages))}</title>
<style>
body {{ font-family: system-ui, "Noto Sans CJK SC", sans-serif; max-width: 44rem; margin: 4rem auto;
  padding: 0 1rem; color: #222; }}
a.pb-lang-choice {{ display: block; padding: 1.2rem 1.4rem; margin: 1rem 0; border: 1px solid #ccc;
  border-radius: 10px; text-decoration: none; color: inherit; }}
a.pb-lang-choice:hover {{ border-color: #2a6edb; background: #f4f8ff; }}
a.pb-lang-choice strong {{ display: block; font-size: 1.4rem; }}
a.pb-lang-choice span {{ display: block; margin: .4rem 0; }}
a.pb-lang-choice em {{ color: #2a6edb; font-style: normal; }}
</style></head>
<body>
{choices}
<script>
// Go straight to the language chosen before, unless the reader asked to choose (?choose).
try {{
  const saved = localStorage.getItem("phasebook-lang");
  if (saved && {languages}.includes(saved) && !location.search.includes("choose")) {{
    location.replace(saved + "/{root}.html");
  }}
}} catch (e) {{ /* storage disabled: show the choice */ }}
document.addEventListener("click", (e) => {{
  const a = e.target.closest("a.pb-lang-choice");
  if (a) try {{ localStorage.setItem("phasebook-lang", a.dataset.pbLang); }} catch (err) {{}}
}});
</script>
</body></html>
"""
