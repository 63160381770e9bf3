"""book.yml validation: the good files load; each kind of bad input is one located error."""

from __future__ import annotations

from pathlib import Path

import pytest

from phasebook.cli import main
from phasebook.config import load_book
from phasebook.errors import PhasebookError

from .conftest import ROOT


def errors_for(book: Path, old: str, new: str) -> list[str]:
    path = book / "book.yml"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(PhasebookError) as info:
        load_book(book)
    return [str(p) for p in info.value.problems]


def test_project_and_fixture_books_load(fixture_book):
    book = load_book(ROOT)
    assert book.languages == ["en", "zh"]
    assert "interpolation" in book.notebooks and "default" in book.profiles and "gpu" in book.profiles
    fixture = load_book(fixture_book)
    assert fixture.notebooks == ["tiny", "broken"]
    assert fixture.chapters[0].docname == "index"
    assert fixture.chapters[1].docname == "experiments/tiny"


def test_misspelt_key_names_line_and_suggests(fixture_book):
    (err,) = errors_for(fixture_book, "      - notebook: tiny", "      - notebok: tiny")
    assert err.startswith("book.yml:14:")
    assert "parts[1].chapters[0].notebok" in err
    assert "Allowed here: page, notebook" in err and "Did you mean 'notebook'?" in err


def test_misspelt_top_level_key(fixture_book):
    (err,) = errors_for(fixture_book, "profiles:", "profile:")
    assert "book.yml:19: profile:" in err and "Did you mean 'profiles'?" in err


def test_wrong_type(fixture_book):
    (err,) = errors_for(fixture_book, "languages: [en, zh]", "languages: en")
    assert err.startswith("book.yml:6: languages:") and "expected a list of strings" in err


def test_missing_file_for_one_language(fixture_book):
    (fixture_book / "content" / "index.zh.md").unlink()
    with pytest.raises(PhasebookError) as info:
        load_book(fixture_book)
    (err,) = [str(p) for p in info.value.problems]
    assert "book.yml:11: parts[0].chapters[0].page:" in err
    assert "file not found: content/index.zh.md" in err


def test_missing_notebook_suggests_near_name(fixture_book):
    (err,) = errors_for(fixture_book, "- notebook: tiny", "- notebook: tinny")
    assert "notebooks/tinny.py" in err and "Did you mean 'tiny'?" in err


def test_missing_translation_and_unknown_language(fixture_book):
    (err,) = errors_for(fixture_book, "title: {en: Fixture Book, zh: 测试用书}",
                        "title: {en: Fixture Book, zn: 测试用书}")
    assert "title.zn:" in err and "Did you mean 'zh'?" in err


def test_missing_required_key(fixture_book):
    (err,) = errors_for(fixture_book, "url: https://fixture.example.org\n", "")
    assert err == "book.yml:2: url: missing; expected a string."


def test_unsupported_language(fixture_book):
    (err,) = errors_for(fixture_book, "languages: [en, zh]", "languages: [en, zh, fr]")
    assert err.startswith("book.yml:6: languages[2]: unsupported language 'fr'")


def test_profile_for_unknown_notebook(fixture_book):
    (err,) = errors_for(fixture_book, "    broken: {divisor: 2}", "    brokn: {divisor: 2}")
    assert "profiles.healthy.brokn" in err and "Did you mean 'broken'?" in err


def test_invalid_yaml_is_located(fixture_book):
    (err,) = errors_for(fixture_book, "languages: [en, zh]", "languages: [en, zh")
    assert err.startswith("book.yml:") and "not valid YAML" in err


def test_check_cli_fails_cleanly_and_executes_nothing(fixture_book, capsys):
    path = fixture_book / "book.yml"
    path.write_text(path.read_text().replace("bibliography:", "bibliograpy:"))
    assert main(["--book", str(fixture_book), "check"]) == 2
    err = capsys.readouterr().err
    assert "bibliograpy: unknown key" in err and "Did you mean 'bibliography'?" in err
    assert "Traceback" not in err
    assert main(["--book", str(fixture_book), "build"]) == 2
    assert not (fixture_book / "build").exists()


def test_check_cli_passes_on_project(capsys):
    assert main(["--book", str(ROOT), "check"]) == 0
    assert "book.yml OK" in capsys.readouterr().out
