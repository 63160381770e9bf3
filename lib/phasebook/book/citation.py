"""Citations of figures: BibTeX, plain text, and the 'cite this figure' box shown on pages.

Everything is derived from a figure's provenance record, so `phasebook cite ID` and the
page show the same citation.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from phasebook.i18n import gettext as _

Record = dict[str, Any]  # a figure's provenance.json
FORMATS = ("png", "svg", "pdf")


def cite_key(rec: Record) -> str:
    return f"phasebook-{rec['id']}-{rec['params_hash'][:8]}"


def _year(rec: Record) -> str:
    return rec["created"][:4]


def _other_titles(rec: Record) -> str:
    return "; ".join(f"{lang}: {t}" for lang, t in rec["title"].items() if lang != rec["lang"])


def bibtex(rec: Record) -> str:
    lang = rec["lang"]
    commit = rec["commit"]
    fields = [
        ("author", "{" + rec["author"].get(lang, "Phasebook") + "}"),
        ("title", rec["title"][lang]),
        ("howpublished", f"\\url{{{rec['url']}}}" if rec["url"] else "Phasebook"),
        ("url", rec["url"]),
        ("year", _year(rec)),
        ("version", rec["code_version"]),
        ("note", f"Figure {rec['id']} of {rec['book_title'].get(lang, 'Phasebook')}; "
                 f"parameters {rec['params_hash']}; commit {commit}; "
                 f"titles: {_other_titles(rec)}"),
        ("urldate", rec["created"][:10]),
    ]
    body = ",\n".join(f"  {k} = {{{v}}}" for k, v in fields if v)
    return f"@misc{{{cite_key(rec)},\n{body}\n}}"


def text(rec: Record) -> str:
    lang = rec["lang"]
    where = f" {rec['url']}" if rec["url"] else ""
    return (f"{rec['author'].get(lang, 'Phasebook')} ({_year(rec)}). {rec['title'][lang]} "
            f"[Figure {rec['id']}; parameters {rec['params_hash']}; code {rec['code_version']}; "
            f"commit {rec['commit'][:12]}]. {rec['book_title'].get(lang, 'Phasebook')}.{where}")


def cite(rec: Record, fmt: str) -> str:
    return bibtex(rec) if fmt == "bibtex" else text(rec)


def _params_table(rec: Record) -> str:
    rows = "".join(f"<tr><td><code>{html.escape(k)}</code></td><td><code>"
                   f"{html.escape(repr(v))}</code></td></tr>" for k, v in rec["params"].items())
    return f"<table class='pb-params'>{rows}</table>"


def figure_html(rec: Record, prefix: str, folder: Path | None = None) -> str:
    """The figure (inline PNG), its caption, downloads and citation, for a page of `rec['lang']`.

    `prefix` leads from the page to its site root, where figures/ID/LANG/ holds the files.
    `folder` is where the PNG can be read now to inline it (else it is linked).
    """
    lang, fid = rec["lang"], rec["id"]
    base = f"{prefix}figures/{fid}/{lang}/{fid}"
    src = f"{base}.png"
    if folder is not None and (folder / f"{fid}.png").is_file():
        data = base64.b64encode((folder / f"{fid}.png").read_bytes()).decode()
        src = f"data:image/png;base64,{data}"
    title = html.escape(rec["title"][lang])
    caption = html.escape(rec.get("caption", {}).get(lang, ""))
    interactive = rec.get("interactive_html") or ""
    links = " · ".join(f"<a href='{base}.{ext}' download>{ext.upper()}</a>" for ext in FORMATS)
    links += f" · <a href='{prefix}figures/{fid}/{lang}/provenance.json'>{_('provenance', lang)}</a>"
    if interactive:
        links += f" · <a href='{base}.html'>{_('interactive version', lang)}</a>"
    sep = "" if lang == "zh" else " "  # Chinese sentences are not separated by spaces
    body = interactive or f"<img src='{src}' alt='{title}' class='pb-figure-img'/>"
    return f"""<figure class="pb-figure" id="fig-{fid}" data-figure-id="{fid}">
{body}
<figcaption><strong>{_("{title}.", lang).format(title=title)}</strong>{sep}{caption}</figcaption>
<details class="pb-cite"><summary>{_('Cite this figure', lang)} · <code>{fid}</code></summary>
<p class="pb-downloads">{_('Download:', lang)}{sep}{links}</p>
<pre class="pb-bibtex">{html.escape(bibtex(rec))}</pre>
<p class="pb-cite-text">{html.escape(text(rec))}</p>
<p>{_('Parameters', lang)} (<code>{rec['params_hash']}</code>):</p>{_params_table(rec)}
<p class="pb-provenance">{_('Code version', lang)} <code>{rec['code_version']}</code>,
{_('commit', lang)} <code>{rec['commit'][:12]}</code>, {html.escape(_hardware(rec))},
{rec['created']}.</p>
</details>
</figure>"""


def _hardware(rec: Record) -> str:
    hw = rec["hardware"]
    return hw.get("gpu") or f"{hw.get('processor', '?')} ×{hw.get('cpu_count', '?')}"
