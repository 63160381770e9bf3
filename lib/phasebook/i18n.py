"""Message catalogs (gettext .po files read with babel) and locale-aware number formatting.

English text is the message id; the `.po` files in `locale/<lang>/LC_MESSAGES/` hold the
other languages: `phasebook.po` for the site and the library, one file per experiment for its
figure labels (so that experiments can be written side by side). Figure labels and every UI
string of the site go through `_`.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from babel import Locale, lists, numbers
from babel.messages.pofile import read_po

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
BABEL_LOCALES = {"en": "en_US", "zh": "zh_Hans_CN"}
_language = os.environ.get("PHASEBOOK_LANG", "en")


def set_language(lang: str) -> None:
    global _language
    _language = lang


def current_language() -> str:
    return _language


def catalog_dir(lang: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES"


@cache
def catalog(lang: str) -> dict[str, str]:
    """msgid -> translation for `lang` ({} for English, whose ids are the text).

    Merges every .po file of the language; a message translated differently in two files is
    an error rather than a silent choice.
    """
    merged: dict[str, str] = {}
    origin: dict[str, str] = {}
    for path in sorted(catalog_dir(lang).glob("*.po")):
        with path.open("rb") as f:
            cat = read_po(f, locale=BABEL_LOCALES.get(lang, lang))
        for m in cat:
            if not (m.id and m.string and not m.fuzzy):
                continue
            if m.id in merged and merged[m.id] != m.string:
                raise ValueError(f"{path}: message {m.id!r} is translated differently in "
                                 f"{origin[m.id]}; keep one translation.")
            merged[m.id], origin[m.id] = m.string, path.name
    return merged


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


def format_count(value: float, lang: str | None = None) -> str:
    """A large count as prose writes it: "1.12 million" in English, "112万" in Chinese.

    Chinese groups digits by ten thousands (万) and hundred millions (亿), not by thousands.
    """
    lang = lang or _language
    if lang == "zh":
        for unit, size in (("亿", 1e8), ("万", 1e4)):
            if abs(value) >= size:
                return f"{format_number(value / size, 0 if abs(value) >= 100 * size else 1, lang)}{unit}"
        return format_number(value, 0, lang)
    for unit, size in (("billion", 1e9), ("million", 1e6)):
        if abs(value) >= size:
            scaled = value / size
            digits = 2 if abs(scaled) < 10 else 1 if abs(scaled) < 100 else 0
            return f"{format_number(scaled, digits, lang)} {unit}"
    return format_number(value, 0, lang)


def format_list(items: list[str], lang: str | None = None) -> str:
    """Items joined as prose joins them: "a, b and c" in English, "a、b和c" in Chinese."""
    return lists.format_list(list(items), locale=locale(lang))
