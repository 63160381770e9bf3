"""`phasebook check`: everything that can be validated without executing a notebook."""

from __future__ import annotations

import functools
import re
from pathlib import Path

from babel.messages.extract import extract_from_file

from phasebook.book.notebooks import NotebookSource, load_notebook
from phasebook.book.pages import check_content_model
from phasebook.book.params import resolve
from phasebook.config import Book
from phasebook.errors import PhasebookError, Problem
from phasebook.i18n import catalog

GLUE_REF = re.compile(r"\{glue(?::\w+)?\}`([^`:]+)::([^`:]+)(?::[^`]*)?`")
PACKAGE = Path(__file__).resolve().parents[1]


def notebook_sources(book: Book) -> dict[str, NotebookSource]:
    return {name: load_notebook(book.notebook_path(name), book.languages)
            for name in book.notebooks}


def _errors_of(fn) -> list[Problem]:
    try:
        fn()
    except PhasebookError as exc:
        return exc.problems
    return []


def check_notebooks(book: Book, sources: dict[str, NotebookSource]) -> list[Problem]:
    problems: list[Problem] = []
    for name, source in sources.items():
        found = _errors_of(lambda s=source: s.parameters)
        problems += found
        problems += _errors_of(lambda s=source: s.notebook) or source.problems()
        if found:
            continue
        for profile, notebooks in book.profiles.items():
            if name in notebooks:
                where = book.where(f"profiles.{profile}.{name}")
                problems += _errors_of(functools.partial(
                    resolve, source.parameters, notebooks[name], name, where))
    return problems


def check_pages(book: Book) -> list[Problem]:
    """Cross-references from content pages to notebooks must point at notebooks of the book."""
    problems = []
    for page in book.pages:
        for lang in book.languages:
            path = book.page_path(page, lang)
            text = path.read_text(encoding="utf-8")
            for m in GLUE_REF.finditer(text):
                target = m.group(1).strip()
                name = Path(target).stem
                if not target.endswith(".ipynb") or name not in book.notebooks:
                    line = text.count("\n", 0, m.start()) + 1
                    problems.append(Problem(f"{path.relative_to(book.root)}:{line}", "",
                                            f"glue reference to '{target}', which is not a "
                                            f"notebook of this book ({', '.join(book.notebooks)})."
                                            " Write it as /experiments/NAME.ipynb::key."))
    return problems


def untranslated(book: Book) -> list[Problem]:
    """Messages used in the library or the notebooks that a language's catalog lacks."""
    used: dict[str, str] = {}
    files = sorted(PACKAGE.rglob("*.py")) + [book.notebook_path(n) for n in book.notebooks]
    for path in files:
        for lineno, msg, _comments, _context in extract_from_file(
                "python", str(path), keywords={"_": None, "gettext": None, "N_": None}):
            if isinstance(msg, str):
                used.setdefault(msg, f"{path}:{lineno}")
    problems = []
    for lang in book.languages:
        if lang == "en":
            continue
        have = catalog(lang)
        problems += [Problem(where, "", f"message {msg!r} has no {lang} translation in "
                             f"the .po files of lib/phasebook/locale/{lang}/LC_MESSAGES/.")
                     for msg, where in used.items() if msg not in have]
    return problems


def check(book: Book) -> dict[str, NotebookSource]:
    """Validate notebooks, parameters of every profile, pages and catalogs; raise on problems."""
    sources = notebook_sources(book)
    problems = (check_notebooks(book, sources) + check_pages(book) + check_content_model(book)
                + untranslated(book))
    if problems:
        raise PhasebookError(problems)
    return sources
