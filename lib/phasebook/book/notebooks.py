"""Experiment notebook sources: one percent-format file per experiment, split per language.

The code of an experiment exists once. Markdown cells carry a language tag (`en`, `zh`);
`for_language` keeps the code and the prose of one language, so the English and the Chinese
notebooks can never disagree on a number. Shared cells that need no translation (a formula)
are tagged `all`.
"""

from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import jupytext
import nbformat

from phasebook.book.params import Schema, parse_parameters_cell
from phasebook.errors import PhasebookError, Problem

SHARED = "all"
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


@dataclass(frozen=True)
class NotebookSource:
    name: str
    path: Path
    languages: tuple[str, ...]

    @cached_property
    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @cached_property
    def notebook(self) -> nbformat.NotebookNode:
        try:
            nb = jupytext.reads(self.text, fmt="py:percent")
        except Exception as exc:  # jupytext raises many types; all mean "cannot read"
            raise PhasebookError([Problem(str(self.path), "", f"cannot read notebook: {exc}")]) from exc
        nb.metadata["kernelspec"] = dict(KERNELSPEC)
        nb.metadata.pop("jupytext", None)
        return nb

    @cached_property
    def parameters(self) -> Schema:
        cells = [c for c in self.notebook.cells if "parameters" in c.metadata.get("tags", [])]
        if len(cells) != 1:
            raise PhasebookError([Problem(str(self.path), "", f"expected exactly one cell tagged "
                                          f"'parameters', found {len(cells)}. Mark it with "
                                          "`# %% tags=[\"parameters\"]`.")])
        match = re.search(r"^# %%.*\bparameters\b.*$", self.text, flags=re.M)
        first = self.text.count("\n", 0, match.start()) + 2 if match else 1
        return parse_parameters_cell(cells[0].source, str(self.path), first)

    def problems(self) -> list[Problem]:
        """Bilingual parity: every stretch of prose between code cells exists in each language,
        with the same headings (by level), so both pages have the same table of contents."""
        problems = []
        section: set[str] = set()
        headings: dict[str, list[int]] = {}
        index = 0

        def close(at: int) -> None:
            if section and section != {SHARED} and not set(self.languages) <= section:
                missing = ", ".join(sorted(set(self.languages) - section))
                problems.append(Problem(str(self.path), f"cell {at}",
                                        f"prose before this point has no {missing} version."))
            levels = {lang: headings.get(lang, []) for lang in self.languages}
            if section and section != {SHARED} and len({tuple(v) for v in levels.values()}) > 1:
                shown = "; ".join(f"{lang}: {' '.join('#' * n for n in v) or 'none'}"
                                  for lang, v in levels.items())
                problems.append(Problem(str(self.path), f"cell {at}", "prose before this point has different "
                                        f"headings in each language ({shown})."))
            headings.clear()

        for index, cell in enumerate(self.notebook.cells):
            if cell.cell_type == "markdown":
                tags = [t for t in cell.metadata.get("tags", []) if t in (*self.languages, SHARED)]
                if len(tags) != 1:
                    problems.append(Problem(str(self.path), f"cell {index}", "a markdown cell needs "
                                            f"one language tag: {', '.join(self.languages)} or "
                                            f"{SHARED} (e.g. `# %% [markdown] tags=[\"en\"]`)."))
                    continue
                section.add(tags[0])
                headings.setdefault(tags[0], []).extend(
                    len(m.group(1)) for m in re.finditer(r"^(#{1,6}) ", cell.source, flags=re.M))
            else:
                close(index)
                section = set()
        close(index + 1)
        if not self.title("en" if "en" in self.languages else self.languages[0]):
            problems.append(Problem(str(self.path), "", "the first prose cell must start with a "
                                    "'# Title' heading in each language."))
        return problems

    def for_language(self, lang: str) -> nbformat.NotebookNode:
        """The notebook as readers of `lang` see it: shared code, prose in `lang` only."""
        nb = copy.deepcopy(self.notebook)
        nb.cells = [c for c in nb.cells if c.cell_type != "markdown"
                    or set(c.metadata.get("tags", [])) & {lang, SHARED}]
        for i, cell in enumerate(nb.cells):
            cell["id"] = f"{self.name}-{i}"  # stable ids keep re-splits byte-identical
        nb.metadata["language"] = lang
        return nb

    def title(self, lang: str) -> str:
        for cell in self.for_language(lang).cells:
            if cell.cell_type == "markdown":
                first = cell.source.lstrip().splitlines()[0] if cell.source.strip() else ""
                return first[2:].strip() if first.startswith("# ") else ""
        return ""

    def digest(self, lang: str) -> str:
        """Hash of what is executed for `lang`: part of the run-cache key."""
        blob = nbformat.writes(self.for_language(lang))
        return hashlib.sha256(blob.encode()).hexdigest()


def load_notebook(path: Path, languages: tuple[str, ...] | list[str]) -> NotebookSource:
    return NotebookSource(path.stem, path, tuple(languages))
