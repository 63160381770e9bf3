"""Bilingual notebooks without drift: one source, split per language, parity checked."""

from __future__ import annotations

from phasebook.book.check import check, notebook_sources, untranslated
from phasebook.book.notebooks import load_notebook
from phasebook.config import load_book

from .conftest import ROOT


def code_cells(nb):
    return [c.source for c in nb.cells if c.cell_type == "code"]


def test_languages_share_code_and_differ_in_prose():
    book = load_book(ROOT)
    for name, source in notebook_sources(book).items():
        en, zh = source.for_language("en"), source.for_language("zh")
        assert code_cells(en) == code_cells(zh), name
        prose_en = "".join(c.source for c in en.cells if c.cell_type == "markdown")
        prose_zh = "".join(c.source for c in zh.cells if c.cell_type == "markdown")
        assert "的" in prose_zh and "的" not in prose_en
        assert source.title("en") and source.title("zh") and source.title("en") != source.title("zh")


def test_split_is_deterministic():
    source = load_notebook(ROOT / "notebooks" / "interpolation.py", ["en", "zh"])
    again = load_notebook(ROOT / "notebooks" / "interpolation.py", ["en", "zh"])
    assert source.digest("zh") == again.digest("zh") != source.digest("en")


def test_missing_translation_of_a_section_is_reported(tmp_path):
    path = tmp_path / "nb.py"
    path.write_text('# %% [markdown] tags=["en"]\n# # T\n\n# %% [markdown] tags=["zh"]\n# # 标题\n\n'
                    '# %% tags=["parameters"]\nx: int = 1  # x\n\n'
                    '# %% [markdown] tags=["en"]\n# Only English here.\n\n# %%\nprint(x)\n\n'
                    '# %% [markdown]\n# untagged\n')
    problems = [str(p) for p in load_notebook(path, ["en", "zh"]).problems()]
    assert any("cell 4" in p and "no zh version" in p for p in problems)
    assert any("cell 5" in p and "needs one language tag" in p for p in problems)


def test_project_book_checks_clean_and_catalog_is_complete():
    book = load_book(ROOT)
    assert check(book)
    assert untranslated(book) == []


def test_untranslated_message_is_reported(fixture_book):
    path = fixture_book / "notebooks" / "tiny.py"
    path.write_text(path.read_text().replace('_("Degree")', '_("A label nobody translated")'))
    problems = [str(p) for p in untranslated(load_book(fixture_book))]
    assert len(problems) == 1 and "'A label nobody translated' has no zh translation" in problems[0]


def test_chinese_line_breaks_are_joined_outside_code():
    from phasebook.book.site import join_cjk_lines

    text = ("# 标题\n同一个多项式的\n误差是 {glue:text}`x`\n下一行\n\n```python\n# 中文\n# 注释\n```\n"
            "- 列表项的\n  续行\nEnglish\nstays")
    assert join_cjk_lines(text) == ("# 标题\n同一个多项式的误差是 {glue:text}`x`\n下一行\n\n"
                                    "```python\n# 中文\n# 注释\n```\n- 列表项的续行\nEnglish\nstays")


def test_a_heading_missing_in_one_language_is_reported(tmp_path):
    path = tmp_path / "nb.py"
    path.write_text('# %% [markdown] tags=["en"]\n# # T\n\n# %% [markdown] tags=["zh"]\n# # 标题\n\n'
                    '# %% tags=["parameters"]\nx: int = 1  # x\n\n'
                    '# %% [markdown] tags=["en"]\n# ## Results\n\nText.\n\n'
                    '# %% [markdown] tags=["zh"]\n# 正文。\n\n# %%\nprint(x)\n')
    problems = [str(p) for p in load_notebook(path, ["en", "zh"]).problems()]
    assert len(problems) == 1 and "different headings" in problems[0] and "zh: none" in problems[0]
