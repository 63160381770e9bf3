"""`phasebook build`: check, execute every notebook in every language, render the site."""

from __future__ import annotations

import time
from collections.abc import Callable

from phasebook.book.check import check
from phasebook.book.execute import RunOutcome, RunSpec, execute
from phasebook.book.params import resolve
from phasebook.book.site import render
from phasebook.config import Book
from phasebook.errors import PhasebookError, suggest


def plan(book: Book, profile: str, languages: list[str]) -> list[RunSpec]:
    """Every (notebook, language) run of a profile; English first so the others reuse its store."""
    if profile not in book.profiles:
        raise PhasebookError(f"no profile '{profile}' in book.yml. Profiles: "
                             f"{', '.join(book.profiles)}." + suggest(profile, book.profiles))
    sources = check(book)
    specs = []
    for name, source in sources.items():
        params = resolve(source.parameters, book.profiles[profile].get(name, {}), name,
                         book.where(f"profiles.{profile}.{name}"))
        specs += [RunSpec(book, source, lang, params) for lang in languages]
    return specs


def parse_languages(book: Book, text: str | None) -> list[str]:
    if not text:
        return list(book.languages)
    langs = [x.strip() for x in text.split(",") if x.strip()]
    for lang in langs:
        if lang not in book.languages:
            raise PhasebookError(f"--lang: '{lang}' is not a language of this book "
                                 f"({', '.join(book.languages)})." + suggest(lang, book.languages))
    return langs


def build(book: Book, profile: str = "default", languages: list[str] | None = None,
          echo: Callable[[str], None] = print) -> list[RunOutcome]:
    """Execute what changed and render the site; returns the run outcomes (failures included)."""
    languages = languages or list(book.languages)
    t0 = time.perf_counter()
    specs = plan(book, profile, languages)
    echo(f"phasebook: {len(specs)} notebook runs, profile '{profile}', "
         f"languages {', '.join(languages)}")
    outcomes = []
    for i, spec in enumerate(specs, 1):
        echo(f"[{i}/{len(specs)}] {spec.label:<34} ...")
        outcome = execute(spec)
        outcomes.append(outcome)
        detail = f"  {outcome.error}  (log: {outcome.log})" if not outcome.ok else ""
        echo(f"[{i}/{len(specs)}] {spec.label:<34} {outcome.status:<9} {outcome.seconds:6.1f}s"
             + detail)
    executed = sum(o.status == "executed" for o in outcomes)
    if executed == 0 and all(o.ok for o in outcomes):
        echo("phasebook: nothing changed: no notebook executed (all results cached)")
    t1 = time.perf_counter()
    echo("phasebook: rendering the site ...")
    stats = render(book, outcomes, languages)
    t2 = time.perf_counter()
    echo(summary(outcomes, stats, t1 - t0, t2 - t1, book))
    return outcomes


def summary(outcomes: list[RunOutcome], stats: dict[str, dict], run_s: float, render_s: float,
            book: Book) -> str:
    rows = [f"{'notebook':<26}{'lang':<6}{'status':<10}{'seconds':>8}", "-" * 50]
    rows += [f"{o.spec.source.name:<26}{o.spec.lang:<6}{o.status:<10}{o.seconds:>8.1f}"
             for o in outcomes]
    rows.append("-" * 50)
    for lang, s in stats.items():
        rows.append(f"site {lang:<21}{'':<6}{'rendered':<10}{s['seconds']:>8.1f}"
                    + (f"   {len(s['warnings'])} warnings, see {s['log']}" if s["warnings"] else ""))
    failed = [o for o in outcomes if not o.ok]
    rows.append(f"notebooks {run_s:.1f}s + site {render_s:.1f}s = {run_s + render_s:.1f}s; "
                f"{sum(o.status == 'executed' for o in outcomes)} executed, "
                f"{sum(o.status == 'cached' for o in outcomes)} cached, {len(failed)} failed")
    rows.append(f"site: {book.build_dir / 'site' / 'index.html'}")
    for o in failed:
        rows.append(f"FAILED {o.spec.label}: {o.error} (cell {o.cell}); log: {o.log}")
    return "\n".join(rows)
