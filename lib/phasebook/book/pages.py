"""The content model: every page's front matter, validated, and how stale each translation is.

A content page (`content/<id>.<lang>.md`) opens with YAML front matter:

    ---
    id: notes/rl-elicits           # the page's path without the language suffix
    kind: note                     # home | essay | note | topic | reference
    title: {en: …, zh: …}          # the title in every language
    cites: [shao2024deepseekmath]  # BibTeX keys of content/papers.bib
    links: [essays/three-phases]   # ids of other pages, or experiments/<notebook>
    claims: [rl-elicits-not-creates]   # ids of content/claims.yml the page states
    synced: 3f2a9c01be47           # the counterpart's body digest when this page was last synced
    ---

Everything but `synced` is the same in every language. `synced` is what makes translation drift
visible: it records the digest of the other language's body at the moment the two were last
brought into line (`phasebook sync`). When that body changes afterwards, this page is *stale*,
and the site shows its readers a notice saying so, with a link to the newer version.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from phasebook.config import Book
from phasebook.errors import Problem
from phasebook.i18n import N_, gettext

KINDS = ("home", "essay", "note", "topic", "reference")
FIELDS = ("id", "kind", "title", "cites", "links", "claims", "synced")
SHARED_FIELDS = ("id", "kind", "cites", "links", "claims")
CLAIMS_FILE = "claims.yml"
# A language's name as the other pages name it (translated through the catalog).
LANGUAGE_NAMES_IN = {"en": N_("English"), "zh": N_("Chinese")}
_FRONT = re.compile(r"\A---\n(.*?)\n---\n", re.S)
_BIB_KEY = re.compile(r"^@\w+\s*\{\s*([^,\s]+)\s*,", re.M)
_CITE = re.compile(r"\{cite(?::\w+)?\}`([^`]+)`")


@dataclass(frozen=True)
class Page:
    """One language's file of a content page: its front matter and its body."""

    path: Path
    lang: str
    meta: dict[str, Any]
    body: str

    @property
    def id(self) -> str:
        return str(self.meta.get("id", ""))

    @property
    def digest(self) -> str:
        return body_digest(self.body)


@dataclass
class PageSet:
    """Every language file of every content page of a book, with the ids links may point at."""

    pages: dict[str, dict[str, Page]] = field(default_factory=dict)  # id -> lang -> page

    def meta(self, page_id: str) -> dict[str, Any]:
        """The page's front matter as every language shares it (empty for an unknown page)."""
        versions = self.pages.get(page_id, {})
        return next(iter(versions.values())).meta if versions else {}

    def stale(self, page_id: str, lang: str) -> list[str]:
        """The languages whose version of `page_id` changed since `lang`'s was last synced."""
        versions = self.pages[page_id]
        synced = versions[lang].meta.get("synced") or {}
        if not isinstance(synced, dict):
            return []
        return [other for other, page in versions.items()
                if other != lang and str(synced.get(other)) != page.digest]


def body_digest(body: str) -> str:
    """A short hash of a page body (whitespace at the ends ignored): what `synced` records."""
    return hashlib.sha256(body.strip().encode("utf-8")).hexdigest()[:12]


def split_front_matter(text: str) -> tuple[dict[str, Any] | None, str]:
    """(front matter, body); None when the text has no front matter block."""
    match = _FRONT.match(text)
    if match is None:
        return None, text
    meta = yaml.safe_load(match.group(1)) or {}
    return (meta if isinstance(meta, dict) else {"": meta}), text[match.end():]


def load_page(path: Path, lang: str) -> Page:
    meta, body = split_front_matter(path.read_text(encoding="utf-8"))
    return Page(path, lang, meta or {}, body)


def load_pages(book: Book) -> PageSet:
    """Every `content/**/*.<lang>.md` of the book (whether or not the table of contents lists it)."""
    content = book.root / "content"
    out = PageSet()
    for lang in book.languages:
        for path in sorted(content.rglob(f"*.{lang}.md")):
            page_id = path.relative_to(content).as_posix()[: -len(f".{lang}.md")]
            out.pages.setdefault(page_id, {})[lang] = load_page(path, lang)
    return out


def bib_keys(book: Book) -> set[str]:
    path = book.root / book.bibliography if book.bibliography else None
    return set(_BIB_KEY.findall(path.read_text(encoding="utf-8"))) if path and path.is_file() else set()


def claim_ids(book: Book) -> dict[str, Any]:
    path = book.root / "content" / CLAIMS_FILE
    if not path.is_file():
        return {}
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def cited_keys(body: str) -> set[str]:
    """BibTeX keys a page body cites with {cite}`a,b` roles."""
    return {key.strip() for m in _CITE.finditer(body) for key in m.group(1).split(",")}


def check_content_model(book: Book, pages: PageSet | None = None) -> list[Problem]:
    """Front matter of every page: known fields, its own id, a known kind, a title per language,
    cites in the bibliography (and every {cite} in the body declared), links to pages or
    experiments that exist, known claims, the shared fields equal in every language, and
    every page present in every language."""
    pages = pages or load_pages(book)
    keys, claims = bib_keys(book), claim_ids(book)
    targets = set(pages.pages) | {f"experiments/{n}" for n in book.notebooks}
    problems: list[Problem] = []
    for page_id, versions in sorted(pages.pages.items()):
        for lang in book.languages:
            if lang not in versions:
                problems.append(Problem(f"content/{page_id}", "", f"has no {lang} version (content/"
                                        f"{page_id}.{lang}.md): every page exists in every language."))
        for _lang, page in sorted(versions.items()):
            where = str(page.path.relative_to(book.root))
            problems += _check_one(page, page_id, where, book.languages, keys, claims, targets)
        shared = {lang: {f: page.meta.get(f) for f in SHARED_FIELDS} for lang, page in versions.items()}
        if len({repr(v) for v in shared.values()}) > 1:
            first, *rest = sorted(shared)
            for lang in rest:
                differ = [f for f in SHARED_FIELDS if shared[lang][f] != shared[first][f]]
                if differ:
                    problems.append(Problem(f"content/{page_id}.{lang}.md", ", ".join(differ),
                                            f"differs from the {first} version; these fields are the same "
                                            "in every language."))
    return problems


def _check_one(page: Page, page_id: str, where: str, languages: tuple[str, ...], keys: set[str],
               claims: dict[str, Any], targets: set[str]) -> list[Problem]:
    meta = page.meta
    if not meta:
        return [Problem(where, "", "has no front matter: start the page with a '---' block holding id, "
                        f"kind and title (see {__name__}).")]
    out = [Problem(where, name, f"unknown front-matter field; allowed: {', '.join(FIELDS)}.")
           for name in meta if name not in FIELDS]
    if meta.get("id") != page_id:
        out.append(Problem(where, "id", f"is {meta.get('id')!r}; it must be the page's path, {page_id!r}."))
    if meta.get("kind") not in KINDS:
        out.append(Problem(where, "kind", f"is {meta.get('kind')!r}; allowed: {', '.join(KINDS)}."))
    title = meta.get("title")
    if not isinstance(title, dict) or any(not isinstance(title.get(lang), str) or not title[lang].strip()
                                          for lang in languages):
        out.append(Problem(where, "title", f"must give a title in every language ({', '.join(languages)})."))
    for name, known, what in (("cites", keys, "a key of the bibliography"),
                              ("links", targets, "a page id or experiments/<notebook>"),
                              ("claims", set(claims), f"a claim of content/{CLAIMS_FILE}")):
        values = meta.get(name, [])
        if not isinstance(values, list):
            out.append(Problem(where, name, "must be a list."))
            continue
        out += [Problem(where, name, f"{value!r} is not {what}.") for value in values if value not in known]
    undeclared = sorted(cited_keys(page.body) - set(meta.get("cites") or []))
    if undeclared:
        out.append(Problem(where, "cites", f"the body cites {', '.join(undeclared)}; list them in cites."))
    synced = meta.get("synced")
    if synced is not None and not isinstance(synced, dict):
        out.append(Problem(where, "synced", "must map each other language to a body digest "
                           "(written by `phasebook sync`)."))
    return out


def sync(book: Book, page_id: str, pages: PageSet | None = None) -> list[Path]:
    """Record every language of `page_id` as synced with the others' current bodies; returns the
    files rewritten. Run it after bringing the translations of a page into line."""
    pages = pages or load_pages(book)
    if page_id not in pages.pages:
        raise KeyError(f"no content page {page_id!r}; pages: {', '.join(sorted(pages.pages))}.")
    versions = pages.pages[page_id]
    written = []
    for lang, page in versions.items():
        record = {other: p.digest for other, p in sorted(versions.items()) if other != lang}
        if {k: str(v) for k, v in (page.meta.get("synced") or {}).items()} == record:
            continue
        text = page.path.read_text(encoding="utf-8")
        match = _FRONT.match(text)
        if match is None:
            raise ValueError(f"{page.path} has no front matter to record the sync in.")
        lines = [line for line in match.group(1).splitlines() if not line.startswith("synced:")]
        lines.append("synced: {" + ", ".join(f"{k}: '{v}'" for k, v in record.items()) + "}")
        page.path.write_text("---\n" + "\n".join(lines) + "\n---\n" + text[match.end():], encoding="utf-8")
        written.append(page.path)
    return written


STALE_NOTICE = N_("The {language} version of this page has changed since this one was last brought into line "
                  "with it, so the two may no longer say the same. [Read the {language} version]({href}).")
STALE_TITLE = N_("This translation may be out of date")


def rendered_body(pages: PageSet, page_id: str, lang: str) -> str:
    """The page as the site shows it: the body without front matter, headed by a notice for each
    language whose version changed since this one was last synced."""
    page = pages.pages[page_id][lang]
    notices = []
    depth = page_id.count("/") + 1  # from <lang>/<id>.html up to the site root
    for other in pages.stale(page_id, lang):
        href = "../" * depth + f"{other}/{page_id}.html"
        language = gettext(LANGUAGE_NAMES_IN.get(other, other), lang)
        notices.append(f":::{{admonition}} {gettext(STALE_TITLE, lang)}\n:class: warning pb-stale\n"
                       f"{gettext(STALE_NOTICE, lang).format(language=language, href=href)}\n:::\n")
    body = page.body.lstrip("\n")
    if not notices:
        return body
    # The notice goes under the title, so the page still opens with its heading.
    first, _, rest = body.partition("\n")
    if first.startswith("# "):
        return first + "\n\n" + "\n".join(notices) + "\n" + rest
    return "\n".join(notices) + "\n" + body
