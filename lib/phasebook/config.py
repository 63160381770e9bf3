"""book.yml: its schema (dataclasses) and strict validation with file:line errors.

The YAML is composed into nodes first so that every error can name the line it comes from;
unknown keys are errors (with a near-miss suggestion), never silently ignored.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from phasebook.errors import PhasebookError, Problem, suggest

SUPPORTED_LANGUAGES = ("en", "zh")
BOOK_FILE = "book.yml"

Localized = dict[str, str]  # language code -> text; must cover every language of the book


@dataclass(frozen=True)
class Chapter:
    """One entry of a part: a content page or an experiment notebook (exactly one of them)."""

    page: str | None = None  # content/<page>.<lang>.md
    notebook: str | None = None  # notebooks/<notebook>.py

    @property
    def docname(self) -> str:
        """Where the chapter lives in each language's site, without suffix."""
        return self.page if self.page is not None else f"experiments/{self.notebook}"


@dataclass(frozen=True)
class Part:
    title: Localized
    chapters: list[Chapter]


@dataclass(frozen=True)
class Book:
    """A validated book.yml. `root` is the directory holding it."""

    title: Localized
    description: Localized
    author: Localized
    url: str
    languages: list[str]
    bibliography: str
    parts: list[Part]
    # profile name -> notebook name -> parameter name -> value
    profiles: dict[str, dict[str, dict[str, Any]]]
    root: Path = field(default=Path("."), compare=False)
    # dotted key path -> line number, so later checks (parameters) can point into book.yml
    lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def chapters(self) -> list[Chapter]:
        return [c for part in self.parts for c in part.chapters]

    @property
    def notebooks(self) -> list[str]:
        return [c.notebook for c in self.chapters if c.notebook is not None]

    @property
    def pages(self) -> list[str]:
        return [c.page for c in self.chapters if c.page is not None]

    @property
    def build_dir(self) -> Path:
        return self.root / "build"

    def page_path(self, page: str, lang: str) -> Path:
        return self.root / "content" / f"{page}.{lang}.md"

    def notebook_path(self, name: str) -> Path:
        return self.root / "notebooks" / f"{name}.py"

    def where(self, key: str) -> str:
        """'book.yml:LINE' for a dotted key path (or its nearest located parent)."""
        while key and key not in self.lines:
            key = key.rpartition(".")[0]
        line = self.lines.get(key)
        return f"{BOOK_FILE}:{line}" if line else BOOK_FILE


# --------------------------------------------------------------------------- YAML -> types


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is list:
        item = typing.get_args(tp)[0]
        plural = {str: "strings", int: "integers", float: "numbers"}.get(item)
        return f"a list of {plural}" if plural else f"a list, each {_type_name(item)}"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return f"a mapping with keys {', '.join(f.name for f in _fields(tp))}"
    return {str: "a string", int: "an integer", float: "a number", bool: "true/false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.name not in ("root", "lines")]


class _Converter:
    """Walks composed YAML nodes against type hints, collecting located problems."""

    def __init__(self, filename: str):
        self.filename = filename
        self.problems: list[Problem] = []
        self.lines: dict[str, int] = {}

    def fail(self, node: yaml.Node, key: str, message: str) -> None:
        self.problems.append(Problem(f"{self.filename}:{node.start_mark.line + 1}", key, message))

    def convert(self, node: yaml.Node, tp: Any, key: str) -> Any:
        self.lines[key] = node.start_mark.line + 1
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
            return self.convert(node, inner, key)
        if dataclasses.is_dataclass(tp):
            return self._dataclass(node, tp, key)
        if origin is list:
            if not isinstance(node, yaml.SequenceNode):
                self.fail(node, key, f"expected {_type_name(tp)}.")
                return []
            (item,) = typing.get_args(tp)
            return [self.convert(n, item, f"{key}[{i}]") for i, n in enumerate(node.value)]
        if origin is dict:
            if not isinstance(node, yaml.MappingNode):
                self.fail(node, key, f"expected {_type_name(tp)}.")
                return {}
            _, value_type = typing.get_args(tp)
            out = {}
            for k, v in node.value:
                name = str(self._scalar(k))
                out[name] = self.convert(v, value_type, f"{key}.{name}" if key else name)
            return out
        if tp is Any:
            return yaml.safe_load(yaml.serialize(node))
        return self._typed_scalar(node, tp, key)

    def _scalar(self, node: yaml.Node) -> Any:
        return yaml.safe_load(yaml.serialize(node)) if isinstance(node, yaml.ScalarNode) else None

    def _typed_scalar(self, node: yaml.Node, tp: type, key: str) -> Any:
        value = self._scalar(node)
        ok = isinstance(value, tp) and not (tp is int and isinstance(value, bool))
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            shown = "a mapping" if isinstance(node, yaml.MappingNode) else (
                "a list" if isinstance(node, yaml.SequenceNode) else repr(value))
            self.fail(node, key, f"expected {_type_name(tp)}, got {shown}.")
            return None
        return value

    def _dataclass(self, node: yaml.Node, cls: type, key: str) -> Any:
        fields = {f.name: f for f in _fields(cls)}
        hints = typing.get_type_hints(cls)
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, key, f"expected {_type_name(cls)}.")
            return None
        values: dict[str, Any] = {}
        for k, v in node.value:
            name = str(self._scalar(k))
            sub = f"{key}.{name}" if key else name
            if name not in fields:
                self.fail(k, sub, f"unknown key. Allowed here: {', '.join(fields)}."
                          + suggest(name, fields))
                continue
            values[name] = self.convert(v, hints[name], sub)
        misspelt = {suggest_name for k, _v in node.value
                     if (suggest_name := _closest(str(self._scalar(k)), fields))}
        for name, f in fields.items():
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required and name not in values and name not in misspelt:
                self.fail(node, f"{key}.{name}" if key else name,
                          f"missing; expected {_type_name(hints[name])}.")
        if any(values.get(n) is None for n in fields if n in values):
            return None  # an error inside was already reported
        try:
            return cls(**values)
        except TypeError:
            return None


# --------------------------------------------------------------------------- semantic checks


def _closest(word: str, choices: typing.Iterable[str]) -> str | None:
    hint = suggest(word, choices)
    return hint.split("'")[1] if hint else None


def _check_book(book: Book, conv: _Converter) -> None:
    """Checks that need the whole book: languages, translations, files, profiles."""
    problems = conv.problems

    def at(key: str, message: str) -> None:
        problems.append(Problem(book.where(key), key, message))

    for i, lang in enumerate(book.languages):
        if lang not in SUPPORTED_LANGUAGES:
            at(f"languages[{i}]", f"unsupported language '{lang}'. Allowed: "
               f"{', '.join(SUPPORTED_LANGUAGES)}." + suggest(lang, SUPPORTED_LANGUAGES))
    if not book.languages:
        at("languages", f"list at least one of {', '.join(SUPPORTED_LANGUAGES)}.")

    languages = [lang for lang in book.languages if lang in SUPPORTED_LANGUAGES]

    def localized(key: str, value: Localized) -> None:
        missing = [lang for lang in languages if not value.get(lang)]
        for k in value:
            if k not in languages:
                at(f"{key}.{k}", f"'{k}' is not one of the book's languages "
                   f"({', '.join(languages)})." + suggest(k, languages))
                if (near := _closest(k, languages)) in missing:
                    missing.remove(near)  # one typo, one error
        if missing:
            at(key, f"missing text for {', '.join(missing)}; every language of the book needs one.")

    localized("title", book.title)
    localized("description", book.description)
    localized("author", book.author)
    if not book.url.startswith(("http://", "https://")):
        at("url", "expected an http(s) URL: it is the base of every figure's citation.")
    if not (book.root / book.bibliography).is_file():
        at("bibliography", f"file not found: {book.bibliography}")

    seen: dict[str, str] = {}
    for p, part in enumerate(book.parts):
        localized(f"parts[{p}].title", part.title)
        if not part.chapters:
            at(f"parts[{p}].chapters", "a part needs at least one chapter.")
        for c, chapter in enumerate(part.chapters):
            key = f"parts[{p}].chapters[{c}]"
            if (chapter.page is None) == (chapter.notebook is None):
                at(key, "give exactly one of 'page' (a content page) or 'notebook'.")
                continue
            if chapter.docname in seen:
                at(key, f"'{chapter.docname}' is listed twice (first at {seen[chapter.docname]}).")
            seen[chapter.docname] = book.where(key)
            if chapter.page is not None:
                for lang in languages:
                    path = book.page_path(chapter.page, lang)
                    if not path.is_file():
                        at(f"{key}.page", f"file not found: {path.relative_to(book.root)} "
                           f"(each page needs one file per language).")
            else:
                path = book.notebook_path(chapter.notebook)
                if not path.is_file():
                    known = [q.stem for q in (book.root / "notebooks").glob("*.py")]
                    at(f"{key}.notebook", f"file not found: notebooks/{chapter.notebook}.py."
                       + suggest(chapter.notebook, known))
    if book.parts and book.parts[0].chapters and book.parts[0].chapters[0].page is None:
        at("parts[0].chapters[0]", "the first chapter is the home page: it must be a 'page'.")

    if "default" not in book.profiles:
        at("profiles", "a 'default' profile is required (the CPU settings `make book` uses).")
    for profile, notebooks in book.profiles.items():
        for name in notebooks:
            if name not in book.notebooks:
                at(f"profiles.{profile}.{name}", "not a notebook of this book. Notebooks: "
                   f"{', '.join(book.notebooks) or '(none)'}." + suggest(name, book.notebooks))


def load_book(root: Path | str = ".") -> Book:
    """Read and validate `root/book.yml`; raise PhasebookError listing every problem found."""
    root = Path(root).resolve()
    path = root / BOOK_FILE
    if not path.is_file():
        raise PhasebookError([Problem(str(path), "", "no book.yml here. Run phasebook from the "
                                      "book's folder or pass --book PATH.")])
    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise PhasebookError([Problem(f"{BOOK_FILE}{line}", "",
                                      f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    if node is None:
        raise PhasebookError([Problem(BOOK_FILE, "", "the file is empty.")])
    conv = _Converter(BOOK_FILE)
    book = conv.convert(node, Book, "")
    if book is not None and not conv.problems:  # whole-book checks only on a well-formed file
        book = dataclasses.replace(book, root=root, lines=conv.lines)
        _check_book(book, conv)
    if conv.problems or book is None:
        raise PhasebookError(conv.problems)
    return book
