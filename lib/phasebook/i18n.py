"""Message catalogs (gettext .po files read with babel) and locale-aware number formatting.

English text is the message id; `locale/<lang>/LC_MESSAGES/phasebook.po` holds the other
languages. Figure labels and every UI string of the site go through `_`.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from babel import Locale, numbers
from babel.messages.pofile import read_po

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "phasebook"
BABEL_LOCALES = {"en": "en_US", "zh": "zh_Hans_CN"}
_language = os.environ.get("PHASEBOOK_LANG", "en")


def set_language(lang: str) -> None:
    global _language
    _language = lang


def current_language() -> str:
    return _language


def catalog_path(lang: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def catalog(lang: str) -> dict[str, str]:
    """msgid -> translation for `lang` ({} for English, whose ids are the text)."""
    path = catalog_path(lang)
    if not path.is_file():
        return {}
    with path.open("rb") as f:
        cat = read_po(f, locale=BABEL_LOCALES.get(lang, lang))
    return {m.id: m.string for m in cat if m.id and m.string and not m.fuzzy}


def gettext(message: str, lang: str | None = None) -> str:
    """`message` in `lang` (default: the current language); the English text if untranslated."""
    lang = lang or _language
    return catalog(lang).get(message, message) if lang != "en" else message


_ = gettext


def N_(message: str) -> str:
    """Mark a message for translation without translating it (figure titles, translated later)."""
    return message


def in_all(message: str, languages: tuple[str, ...] = ("en", "zh")) -> dict[str, str]:
    """The message in every language: titles in citations carry both."""
    return {lang: gettext(message, lang) for lang in languages}


def locale(lang: str | None = None) -> Locale:
    return Locale.parse(BABEL_LOCALES.get(lang or _language, "en_US"))


def format_number(value: float, digits: int = 3, lang: str | None = None) -> str:
    """A number for prose: fixed decimals, or scientific when it is very small or large."""
    loc = locale(lang)
    if value != 0 and not 1e-3 <= abs(value) < 1e6:
        return numbers.format_scientific(value, f"0.{'#' * max(digits - 1, 0)}E0", locale=loc)
    return numbers.format_decimal(value, f"#,##0.{'0' * digits}" if digits else "#,##0",
                                  locale=loc)


def format_percent(value: float, digits: int = 1, lang: str | None = None) -> str:
    return numbers.format_percent(value, f"#,##0.{'0' * digits}%" if digits else "#,##0%",
                                  locale=locale(lang))
