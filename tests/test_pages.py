"""The content model: front matter validated, translations kept in step, stale ones flagged to readers."""

from __future__ import annotations

from pathlib import Path

from phasebook.book.check import check
from phasebook.book.pages import body_digest, check_content_model, load_pages, rendered_body, sync
from phasebook.book.site import prepare_sources
from phasebook.config import load_book
from phasebook.errors import PhasebookError

from .conftest import ROOT


def _front(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text(encoding="utf-8").replace(old, new, 1), encoding="utf-8")


def test_project_pages_follow_the_content_model():
    book = load_book(ROOT)
    pages = load_pages(book)
    assert check_content_model(book, pages) == []
    assert {"index", "bibliography", "essays/interpolation"} <= set(pages.pages)
    assert all(set(v) == set(book.languages) for v in pages.pages.values())


def test_front_matter_errors_name_the_page_and_the_field(fixture_book):
    en = fixture_book / "content" / "index.en.md"
    _front(en, "kind: home", "kind: hoem\ncolour: blue")
    _front(en, "links: [experiments/tiny]", "links: [notes/nowhere, experiments/tiny]")
    _front(en, "cites: [fixture2026]", "cites: [nobody2020]")
    en.write_text(en.read_text(encoding="utf-8") + "\nSee {cite}`fixture2026`.\n", encoding="utf-8")
    problems = [str(p) for p in check_content_model(load_book(fixture_book))]
    text = "\n".join(problems)
    assert "index.en.md: kind: is 'hoem'; allowed: home, essay" in text
    assert "colour: unknown front-matter field" in text
    assert "'notes/nowhere' is not a page id" in text and "experiments/tiny" not in text
    assert "'nobody2020' is not a key of the bibliography" in text
    assert "the body cites fixture2026; list them in cites" in text
    # The shared fields now differ between the languages, and that is reported too.
    assert any("index.zh.md: kind, cites, links: differs from the en version" in p for p in problems)
    with_check = fixture_book / "book.yml"
    assert with_check.exists()
    try:
        check(load_book(fixture_book))
    except PhasebookError as exc:
        assert "hoem" in str(exc)
    else:
        raise AssertionError("phasebook check accepted a misspelt kind")


def test_a_page_missing_in_one_language_is_reported(fixture_book):
    extra = fixture_book / "content" / "notes" / "lonely.en.md"
    extra.parent.mkdir()
    extra.write_text("---\nid: notes/lonely\nkind: note\ntitle: {en: Lonely, zh: 孤单}\n---\n# Lonely\n",
                     encoding="utf-8")
    problems = [str(p) for p in check_content_model(load_book(fixture_book))]
    assert problems == ["content/notes/lonely: has no zh version (content/notes/lonely.zh.md): every page "
                        "exists in every language."]


def test_changing_one_language_marks_the_other_stale_until_synced(fixture_book):
    book = load_book(fixture_book)
    en = fixture_book / "content" / "index.en.md"
    assert load_pages(book).stale("index", "zh") == []
    en.write_text(en.read_text(encoding="utf-8") + "\nA paragraph not yet translated.\n", encoding="utf-8")
    pages = load_pages(book)
    assert pages.stale("index", "zh") == ["en"] and pages.stale("index", "en") == []
    shown = rendered_body(pages, "index", "zh")
    assert shown.startswith("# 测试首页\n\n:::{admonition} 本页译文可能已经过时")
    assert "[阅读英文版](../en/index.html)" in shown and "---" not in shown.splitlines()[0]
    assert "This translation" not in rendered_body(pages, "index", "en")
    # The generated Jupyter Book source carries the notice; the English one does not.
    src = prepare_sources(book, "zh", [], fixture_book / "build" / "figures")
    assert "本页译文可能已经过时" in (src / "index.md").read_text(encoding="utf-8")
    # Syncing records the current bodies (only the Chinese record changes): the notice goes, and a
    # second sync changes nothing.
    assert [p.name for p in sync(book, "index")] == ["index.zh.md"]
    pages = load_pages(book)
    assert pages.stale("index", "zh") == [] and sync(book, "index", pages) == []
    assert pages.pages["index"]["zh"].meta["synced"] == {"en": body_digest(pages.pages["index"]["en"].body)}


def test_digest_ignores_surrounding_whitespace_but_not_edits():
    assert body_digest("# T\n\nText.\n") == body_digest("\n# T\n\nText.")
    assert body_digest("# T\n\nText.") != body_digest("# T\n\nText!")
