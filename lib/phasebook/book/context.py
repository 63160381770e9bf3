"""What a notebook knows about the run executing it: language, parameters, output folder.

`phasebook build` and `phasebook run` pass this to the kernel in $PHASEBOOK_CONTEXT; a notebook
opened by hand gets English defaults and writes its figures under build/scratch.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from phasebook import i18n

ENV = "PHASEBOOK_CONTEXT"


@dataclass(frozen=True)
class RunContext:
    notebook: str = "scratch"
    lang: str = "en"
    languages: tuple[str, ...] = ("en", "zh")
    params: dict[str, Any] = field(default_factory=dict)
    params_hash: str = ""
    out_dir: str = "build/scratch"
    docname: str = ""  # the notebook's page in the site, e.g. experiments/interpolation
    url: str = ""  # base URL of the published site
    book_title: dict[str, str] = field(default_factory=dict)
    author: dict[str, str] = field(default_factory=dict)

    @property
    def figures_dir(self) -> Path:
        return Path(self.out_dir) / "figures"

    def page_url(self, lang: str | None = None) -> str:
        if not (self.url and self.docname):
            return ""
        return f"{self.url.rstrip('/')}/{lang or self.lang}/{self.docname}.html"

    @property
    def site_prefix(self) -> str:
        """Relative path from the notebook's page to its language's site root."""
        return "../" * self.docname.count("/")

    def to_env(self) -> str:
        return json.dumps(self.__dict__, ensure_ascii=False)


@cache
def current() -> RunContext:
    raw = os.environ.get(ENV)
    if raw:
        data = json.loads(raw)
        data["languages"] = tuple(data.get("languages", ("en", "zh")))
        ctx = RunContext(**data)
    else:
        ctx = RunContext(lang=os.environ.get("PHASEBOOK_LANG", "en"))
    i18n.set_language(ctx.lang)
    return ctx
