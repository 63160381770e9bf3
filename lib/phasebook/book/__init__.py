"""The notebook-facing API of the book: run context, glued values and citable figures.

A notebook starts with `ctx = pb.setup()` and then calls `pb.glue(...)` for every number its
prose (or a content page) quotes and `pb.figure(...)` for every figure.
"""

from __future__ import annotations

from typing import Any

from phasebook import i18n
from phasebook.book.context import RunContext, current
from phasebook.book.figures import plain_log_axis, save_figure, use_book_style

__all__ = ["RunContext", "figure", "glue", "plain_log_axis", "setup"]


def setup() -> RunContext:
    """Apply the run's language and the figure style; return the run context."""
    ctx = current()
    use_book_style()
    return ctx


def figure(fig: Any, figure_id: str, title: str, data: dict[str, Any], caption: str = "",
           interactive_html: str = "") -> None:
    """Save and show a citable figure (see `phasebook.book.figures.save_figure`)."""
    save_figure(fig, figure_id, title, data, caption, interactive_html)


def glue(name: str, value: Any, digits: int = 3, percent: bool = False, count: bool = False) -> None:
    """Record `value` under `name` for pages to quote, formatted for the notebook's language.

    `percent` writes a share as a percentage; `count` writes a large count in words
    ("1.12 million" / "112万"). Returns nothing, so a cell that ends with a glue shows no output.
    """
    from myst_nb import glue as nb_glue

    if isinstance(value, bool) or not isinstance(value, int | float):
        shown = str(value)
    elif count:
        shown = i18n.format_count(value)
    elif percent:
        shown = i18n.format_percent(value, digits)
    elif isinstance(value, int):
        shown = i18n.format_number(value, 0)
    else:
        shown = i18n.format_number(value, digits)
    # Glued as a str: `{glue:text}` literal-evals the repr back to exactly this text.
    nb_glue(name, shown, display=False)
