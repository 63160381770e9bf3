"""End to end on the fixture book: execution, run cache, failure isolation, figures, citations."""

from __future__ import annotations

import hashlib
import json
import os

import nbformat

from phasebook.book.build import build
from phasebook.book.execute import read_run
from phasebook.cli import main
from phasebook.config import load_book

FIGURE = "tiny-errors"


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def outcome(outcomes, name, lang):
    (o,) = [o for o in outcomes if o.spec.source.name == name and o.spec.lang == lang]
    return o


def test_both_languages_render(built_book):
    root, _outcomes, _log = built_book
    site = root / "build" / "site"
    for lang in ("en", "zh"):
        for page in ("index", "experiments/tiny", "experiments/broken"):
            assert (site / lang / f"{page}.html").is_file()
    assert "测试首页" in (site / "zh" / "index.html").read_text()
    assert "Fixture home" in (site / "en" / "index.html").read_text()
    root_page = (site / "index.html").read_text()
    assert 'href="en/index.html"' in root_page and 'href="zh/index.html"' in root_page


def test_glued_number_reaches_content_page(built_book):
    root, outcomes, _log = built_book
    nb = nbformat.read(outcome(outcomes, "tiny", "en").good_dir / "notebook.ipynb", 4)
    glued = [o for c in nb.cells for o in c.get("outputs", [])
             if o.get("metadata", {}).get("scrapbook", {}).get("name") == "best_degree"]
    value = glued[0]["data"]["application/papermill.record/text/plain"].strip("'")
    html = (root / "build" / "site" / "en" / "index.html").read_text()
    assert f"best degree of <span class=\"pasted-text\">{value}</span>" in html
    # The fixture's cell ends with a glue: a glue shows nothing in the page, not the glued text.
    results = [o for c in nb.cells for o in c.get("outputs", []) if o["output_type"] == "execute_result"]
    assert results == []


def test_chinese_run_reuses_english_results(built_book):
    root, outcomes, _log = built_book
    entries = [p for p in (root / "build" / "store" / "interpolation").iterdir() if p.is_dir()]
    assert len(entries) == 1, "zh must load the stored result, not compute its own"
    created = json.loads((entries[0] / "manifest.json").read_text())["created"]
    zh = read_run(outcome(outcomes, "tiny", "zh").good_dir)
    assert created <= zh["started"]


def test_failure_is_isolated_and_reported(built_book):
    root, outcomes, log = built_book
    broken = outcome(outcomes, "broken", "en")
    assert outcome(outcomes, "tiny", "en").ok and not broken.ok
    assert broken.error.startswith("ZeroDivisionError") and broken.cell == 2
    assert "ZeroDivisionError" in broken.log.read_text()
    assert "about to divide" in broken.log.read_text()
    assert "FAILED broken (en): ZeroDivisionError: division by zero (cell 2)" in log
    assert "2 failed" in log
    for lang, title in (("en", "This notebook failed to run"), ("zh", "本笔记本运行失败")):
        html = (root / "build" / "site" / lang / "experiments" / "broken.html").read_text()
        assert "pb-failure" in html and title in html and "ZeroDivisionError" in html
        assert str(broken.log.relative_to(root)).replace(os.sep, "/").replace("/en.", f"/{lang}.") \
            in html


def test_figure_files_and_provenance(built_book):
    root, outcomes, _log = built_book
    for lang in ("en", "zh"):
        folder = root / "build" / "figures" / FIGURE / lang
        rec = json.loads((folder / "provenance.json").read_text())
        for ext in ("png", "svg", "pdf"):
            assert rec["files"][ext] == sha(folder / f"{FIGURE}.{ext}")
        assert (folder / f"{FIGURE}.pdf").read_bytes().startswith(b"%PDF")
        assert rec["data_sha256"] == hashlib.sha256((folder / "data.json").read_bytes()).hexdigest()
        assert rec["params"] == {"max_degree": 4, "seed": 0} and rec["seed"] == 0
        assert rec["params_hash"] == outcome(outcomes, "tiny", lang).spec.params_hash
        assert rec["title"]["zh"] == "多项式在训练范围内外的拟合曲线"
        assert rec["url"] == f"https://fixture.example.org/{lang}/experiments/tiny.html#fig-{FIGURE}"
        assert rec["hardware"]["cpu_count"] and rec["code_version"] and rec["commit"]
        assert rec["created"].startswith("20")
    zh_svg = (root / "build" / "figures" / FIGURE / "zh" / f"{FIGURE}.svg").read_text()
    en_svg = (root / "build" / "figures" / FIGURE / "en" / f"{FIGURE}.svg").read_text()
    assert zh_svg != en_svg  # labels differ by language; the data does not
    assert json.loads((root / "build" / "figures" / FIGURE / "zh" / "data.json").read_text()) == \
        json.loads((root / "build" / "figures" / FIGURE / "en" / "data.json").read_text())


def test_cite_command(built_book, capsys):
    root, outcomes, _log = built_book
    params_hash = outcome(outcomes, "tiny", "en").spec.params_hash
    assert main(["--book", str(root), "cite", FIGURE]) == 0
    bib = capsys.readouterr().out
    assert bib.startswith(f"@misc{{phasebook-{FIGURE}-{params_hash[:8]},")
    assert f"url = {{https://fixture.example.org/en/experiments/tiny.html#fig-{FIGURE}}}" in bib
    assert "Polynomial fits inside and beyond the training range" in bib
    assert "多项式在训练范围内外的拟合曲线" in bib and params_hash in bib
    assert main(["--book", str(root), "cite", FIGURE, "--format", "text", "--lang", "zh"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("测试 (20") and f"parameters {params_hash}" in text
    assert main(["--book", str(root), "cite", "tiny-eror"]) == 2
    assert "Did you mean 'tiny-errors'?" in capsys.readouterr().err


def test_site_page_shows_same_citation(built_book, capsys):
    root, _outcomes, _log = built_book
    main(["--book", str(root), "cite", FIGURE])
    key = capsys.readouterr().out.splitlines()[0]
    for page in ("index.html", "experiments/tiny.html"):
        html = (root / "build" / "site" / "en" / page).read_text()
        assert f'id="fig-{FIGURE}"' in html and key in html


def test_rebuild_is_cached_then_reruns_only_what_changed(fixture_book):
    book = load_book(fixture_book)
    build(book, profile="healthy", echo=lambda _line: None)
    lines: list[str] = []
    outcomes = build(load_book(fixture_book), profile="healthy", echo=lines.append)
    assert {o.status for o in outcomes} == {"cached"}
    assert any("no notebook executed" in line for line in lines)
    # Change the English prose of one notebook: only that run executes again.
    path = fixture_book / "notebooks" / "tiny.py"
    path.write_text(path.read_text().replace("A fast fit", "A quick fit"))
    outcomes = build(load_book(fixture_book), profile="healthy", echo=lambda _line: None)
    executed = {(o.spec.source.name, o.spec.lang) for o in outcomes if o.status == "executed"}
    assert executed == {("tiny", "en")}
    html = (fixture_book / "build" / "site" / "en" / "experiments" / "tiny.html").read_text()
    assert "A quick fit" in html
    # A new stored measurement under results/ (e.g. from a GPU) may change any notebook's figures.
    (fixture_book / "results" / "gpu").mkdir(parents=True)
    (fixture_book / "results" / "gpu" / "bench.json").write_text("{}")
    outcomes = build(load_book(fixture_book), profile="healthy", echo=lambda _line: None)
    assert {o.status for o in outcomes} == {"executed"}


def test_failed_rerun_keeps_last_good_result(fixture_book):
    outcomes = build(load_book(fixture_book), profile="healthy", echo=lambda _line: None)
    good = outcome(outcomes, "broken", "en")
    assert good.ok
    good_nb = (good.good_dir / "notebook.ipynb").read_text()
    path = fixture_book / "notebooks" / "broken.py"
    path.write_text(path.read_text().replace("quotient = 1 / divisor",
                                             "quotient = 1 / (divisor - divisor)"))
    outcomes = build(load_book(fixture_book), profile="healthy", echo=lambda _line: None)
    failed = outcome(outcomes, "broken", "en")
    assert not failed.ok and failed.good_dir == good.good_dir
    assert (good.good_dir / "notebook.ipynb").read_text() == good_nb
    assert (failed.failed_dir / "log.txt").is_file()
    html = (fixture_book / "build" / "site" / "en" / "experiments" / "broken.html").read_text()
    assert "pb-failure" in html and "Below is the last good result" in html
    assert "0.5" in html  # the good run's output, 1 / 2


def test_run_with_parameters_writes_its_own_folder(built_book, capsys):
    root, outcomes, _log = built_book
    default = outcome(outcomes, "tiny", "en").good_dir
    before = sha(default / "notebook.ipynb")
    assert main(["--book", str(root), "run", "tiny", "-p", "max_degree", "3"]) == 0
    out = capsys.readouterr().out
    folder = next(line.split(": ", 1)[1] for line in out.splitlines()
                  if line.startswith("results: "))
    assert folder != str(default) and folder.startswith(str(root / "build" / "runs" / "tiny"))
    rec = json.loads((root / "build" / "runs" / "tiny" / folder.split("/")[-2] / "en" / "figures" /
                      FIGURE / "en" / "provenance.json").read_text())
    assert rec["params"]["max_degree"] == 3
    assert sha(default / "notebook.ipynb") == before
    assert json.loads((root / "build" / "figures" / FIGURE / "en" / "provenance.json").read_text()
                      )["params"]["max_degree"] == 4
    assert main(["--book", str(root), "run", "tiny", "-p", "max_degree", "3"]) == 0
    assert "cached" in capsys.readouterr().out
