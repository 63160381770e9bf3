"""Sphinx extension for the rendered book: language switch and the `pb-figure` directive.

Loaded by the generated Jupyter Book project of each language (see site.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from phasebook.book.citation import figure_html
from phasebook.i18n import gettext as _

LANGUAGE_NAMES = {"en": "English", "zh": "中文"}
logger = logging.getLogger(__name__)


def _switch_links(app: Sphinx, pagename: str) -> list[dict[str, str]]:
    """Relative links from `pagename` to the same page in each other language."""
    here = app.config.pb_lang
    up = "../" * (pagename.count("/") + 1)
    return [{"lang": lang, "name": LANGUAGE_NAMES.get(lang, lang),
             "url": f"{up}{lang}/{pagename}.html",
             "title": _("Read this page in English", here) if lang == "en"
             else _("Read this page in Chinese", here)}
            for lang in app.config.pb_languages if lang != here]


def _page_context(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any],
                  doctree: Any) -> None:
    context["pb_switch"] = _switch_links(app, pagename)
    context["pb_lang"] = app.config.pb_lang
    # Jupyter Book always loads sphinx-thebe, whose inline setup names a CDN and is added once per
    # build (twice on an incremental one, a console error). The book has no live kernels: drop it.
    context["script_files"] = [js for js in context.get("script_files", []) if not _is_thebe(js)]


def _is_thebe(js: Any) -> bool:
    return "thebe" in str(js).lower() or "THEBE_JS_URL" in str(getattr(js, "attributes", {}).get("body", ""))


class FigureDirective(SphinxDirective):
    """`{pb-figure} ID` embeds a notebook's figure with its cite box on a content page."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        fid, lang = self.arguments[0], self.config.pb_lang
        path = Path(self.config.pb_figures_dir) / fid / lang / "provenance.json"
        if not path.is_file():
            logger.warning(f"figure '{fid}' was not produced by any notebook of this build "
                           f"(looked for {path})", location=(self.env.docname, self.lineno))
            msg = _("Figure {id} is missing: the notebook that makes it has no result yet.", lang)
            return [nodes.error("", nodes.paragraph(text=msg.format(id=fid)))]
        self.env.note_dependency(str(path))  # re-render the page when the figure changes
        record = json.loads(path.read_text(encoding="utf-8"))
        prefix = "../" * self.env.docname.count("/")
        return [nodes.raw("", figure_html(record, prefix), format="html")]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("pb_lang", "en", "env")
    app.add_config_value("pb_languages", ["en", "zh"], "env")
    app.add_config_value("pb_figures_dir", "", "env")
    app.add_directive("pb-figure", FigureDirective)
    app.connect("html-page-context", _page_context)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
