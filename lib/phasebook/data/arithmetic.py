"""Bilingual arithmetic word problems with worked steps, in the style of GSM-Symbolic.

A `WordProblem` is abstract (indices and numbers); it renders the *same* problem in English
and Chinese. Names, items and numbers can be swapped while the template and operations stay
(`vary`), and an irrelevant clause with a number can be inserted (a "no-op" distractor), so
experiments can test whether a model computes or pattern-matches.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from phasebook.validation import Checks, ConfigError

Lang = Literal["en", "zh"]
LANGS: tuple[Lang, ...] = ("en", "zh")
OPERATIONS = ("+", "-", "*")
_MAX_TRIES = 10_000

# (English, Chinese, gender): the gender picks the pronoun, 她 or 他 in Chinese.
NAMES: tuple[tuple[str, str, str], ...] = (
    ("Mia", "米娅", "f"), ("Tom", "汤姆", "m"), ("Lily", "莉莉", "f"), ("Jack", "杰克", "m"),
    ("Anna", "安娜", "f"), ("Leo", "利奥", "m"), ("Emma", "艾玛", "f"), ("Max", "马克斯", "m"),
)
# (singular, plural, Chinese noun, Chinese measure word)
ITEMS: tuple[tuple[str, str, str, str], ...] = (
    ("apple", "apples", "苹果", "个"), ("pear", "pears", "梨", "个"), ("book", "books", "书", "本"),
    ("pen", "pens", "笔", "支"), ("stamp", "stamps", "邮票", "张"), ("candy", "candies", "糖", "颗"),
    ("marble", "marbles", "弹珠", "颗"), ("flower", "flowers", "花", "朵"),
)
_PRONOUNS = {"f": ("She", "her", "她"), "m": ("He", "him", "他")}
_POSSESSIVE = {"f": "her", "m": "his"}

# One list of phrasings per operation; {P}/{s} subject pronoun, {O} object pronoun, {p} Chinese
# pronoun, {n} operand, {mw} measure word, {pos} English possessive, {items}/{item} the noun.
STEP_TEMPLATES: dict[str, tuple[tuple[str, str], ...]] = {
    "+": (
        ("{P} buys {n} more.", "{p}又买了{n}{mw}。"),
        ("{P} finds {n} more.", "{p}又找到了{n}{mw}。"),
        ("A friend gives {O} {n} more.", "朋友又给了{p}{n}{mw}。"),
    ),
    "-": (
        ("{P} gives {n} to a friend.", "{p}送给朋友{n}{mw}。"),
        ("{P} loses {n}.", "{p}弄丢了{n}{mw}。"),
        ("{P} sells {n}.", "{p}卖掉了{n}{mw}。"),
    ),
    "*": (
        ("Then the number of {pos} {items} is multiplied by {n}.", "然后{p}手里的{item}变成了原来的{n}倍。"),
        ("Then {s} has {n} times as many {items} as before.", "然后{p}的{item}变成了之前的{n}倍。"),
    ),
}
# No-op clauses: {other} is another person; none of them changes the answer.
DISTRACTOR_TEMPLATES: tuple[tuple[str, str], ...] = (
    ("{other} has {count}.", "{other}有{count}。"),
    ("{other} is {years} old.", "{other}今年{n}岁。"),
    ("{name}'s house is {minutes} from the shop.", "{name}家离商店有{n}分钟的路程。"),
)
_SYMBOL = {"+": "+", "-": "-", "*": "×"}
# Answer extraction (see `extract_answer`).
_MARKER = {"en": re.compile(r"the answer is", re.IGNORECASE), "zh": re.compile(r"答案是")}
# A model that keeps generating starts the next document; its answer is not this one's.
_NEXT_QUESTION = {"en": re.compile(r"\n\s*Q:"), "zh": re.compile(r"\n\s*问[:：]")}
_NORMALISE = str.maketrans("０１２３４５６７８９－−＋：　", "0123456789--+: ")
_NUMBER = re.compile(r"\s*:?\s*([-负]?)(\d{1,3}(?:,\d{3})+|\d+)")
# What may not follow the number: more digits, a decimal or badly grouped part, an operator.
_BAD_TAIL = re.compile(r"\d|[.,]\d|\s*[-+*/×÷=^]")


@dataclass(frozen=True)
class ArithmeticConfig:
    """The distribution of word problems: operation count, operand range and distractors.

    Operands come from [low, high], except that a subtraction never goes below 0 and a
    multiplier is at least 2 whenever high >= 2 ("multiplied by 1" is no step at all).
    """

    min_ops: int = 1
    max_ops: int = 2
    low: int = 1
    high: int = 9
    operations: tuple[str, ...] = ("+", "-")
    distractor_rate: float = 0.0

    def __post_init__(self) -> None:
        c = Checks(self)
        c.range("min_ops", 1, 8, integer=True)
        c.range("max_ops", 1, 8, integer=True)
        c.range("low", 0, 10**6, integer=True)
        c.range("high", 0, 10**6, integer=True)
        c.range("distractor_rate", 0.0, 1.0)
        if isinstance(self.min_ops, int) and isinstance(self.max_ops, int):
            c.rule(self.min_ops <= self.max_ops, "max_ops", f"must be >= min_ops ({self.min_ops}).")
        if isinstance(self.low, int) and isinstance(self.high, int):
            c.rule(self.low <= self.high, "high", f"must be >= low ({self.low}).")
        c.rule(isinstance(self.operations, tuple) and len(self.operations) > 0
               and all(op in OPERATIONS for op in self.operations),
               "operations", f"must be a non-empty tuple drawn from {OPERATIONS}.")
        c.done()


@dataclass(frozen=True)
class Distractor:
    """An irrelevant clause: which template, its number, the other person, and where it goes.

    `position` counts sentences of the story: 0 puts it right after the opening sentence.
    """

    template: int
    number: int
    person: int
    position: int


@dataclass(frozen=True)
class WordProblem:
    """An abstract word problem; `prompt`/`completion` render it in either language."""

    person: int
    item: int
    start: int
    steps: tuple[tuple[str, int], ...]
    phrasing: tuple[int, ...]  # template index per step, kept by `vary`
    distractor: Distractor | None = None

    def __post_init__(self) -> None:
        if len(self.phrasing) != len(self.steps):
            raise ValueError(f"WordProblem needs one phrasing per step, got {self.phrasing} for {self.steps}")

    @property
    def values(self) -> tuple[int, ...]:
        """The start value and the result after each step."""
        values = [self.start]
        for op, n in self.steps:
            values.append(_apply(op, values[-1], n))
        return tuple(values)

    @property
    def answer(self) -> int:
        return self.values[-1]

    @property
    def key(self) -> tuple:
        """Canonical identity of the abstract problem (all that its text depends on)."""
        d = self.distractor
        dkey = None if d is None else (d.template, d.number, d.person, d.position)
        return ("math", self.person, self.item, self.start, self.steps, self.phrasing, dkey)

    def _slots(self, lang: Lang) -> dict[str, str]:
        en, zh, gender = NAMES[self.person]
        _, plural, noun, measure = ITEMS[self.item]
        subject, obj, zh_pronoun = _PRONOUNS[gender]
        if lang == "en":
            return {"name": en, "P": subject, "s": subject.lower(), "O": obj, "pos": _POSSESSIVE[gender],
                    "items": plural}
        return {"name": zh, "p": zh_pronoun, "mw": measure, "item": noun}

    def _count(self, n: int, lang: Lang) -> str:
        singular, plural, noun, measure = ITEMS[self.item]
        return f"{n} {singular if n == 1 else plural}" if lang == "en" else f"{n}{measure}{noun}"

    def _sentences(self, lang: Lang) -> list[str]:
        slots = self._slots(lang)
        i = 0 if lang == "en" else 1
        opening = (f"{slots['name']} has {self._count(self.start, lang)}." if lang == "en"
                   else f"{slots['name']}有{self._count(self.start, lang)}。")
        sentences = [opening]
        for (op, n), t in zip(self.steps, self.phrasing, strict=True):
            sentences.append(STEP_TEMPLATES[op][t][i].format(n=n, **slots))
        if (d := self.distractor) is not None:
            other = NAMES[d.person][i]
            text = DISTRACTOR_TEMPLATES[d.template][i].format(
                other=other, n=d.number, count=self._count(d.number, lang), name=slots["name"],
                years=_plural(d.number, "year"), minutes=_plural(d.number, "minute"))
            sentences.insert(1 + d.position, text)
        return sentences

    def question(self, lang: Lang) -> str:
        """The story and its question, without the pre-training cues (a chat turn's prompt)."""
        slots = self._slots(lang)
        if lang == "en":
            question = f"How many {slots['items']} does {slots['name']} have now?"
            return f"{' '.join(self._sentences(lang))} {question}"
        question = f"{slots['name']}现在有多少{slots['mw']}{slots['item']}？"
        return f"{''.join(self._sentences(lang))}{question}"

    def prompt(self, lang: Lang) -> str:
        """The question, ending with the answer cue ("\\nA:" / "\\n答：")."""
        return f"Q: {self.question(lang)}\nA:" if lang == "en" else f"问：{self.question(lang)}\n答："

    def completion(self, lang: Lang, cot: bool = True) -> str:
        """The answer; with `cot`, one equation per step before it."""
        v = self.values
        equations = [f"{v[k]}{_SYMBOL[op]}{n}={v[k + 1]}" for k, (op, n) in enumerate(self.steps)]
        if lang == "en":
            work = "".join(f" {e}." for e in equations) if cot else ""
            return f"{work} The answer is {self.answer}."
        work = "".join(f"{e}。" for e in equations) if cot else ""
        return f"{work}答案是{self.answer}。"

    def render(self, lang: Lang, cot: bool = True) -> str:
        return self.prompt(lang) + self.completion(lang, cot) + "\n"


def _stable_int(obj: object) -> int:
    """A 64-bit integer from `repr(obj)` that, unlike `hash`, is the same in every process."""
    return int.from_bytes(hashlib.sha256(repr(obj).encode()).digest()[:8], "big")


def _plural(n: int, unit: str) -> str:
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


def _apply(op: str, value: int, n: int) -> int:
    return value + n if op == "+" else value - n if op == "-" else value * n


def _operand_range(cfg: ArithmeticConfig, op: str, value: int) -> tuple[int, int]:
    """Subtraction keeps the value >= 0; multiplying by 0 or 1 ("1倍") reads oddly, so avoid it."""
    if op == "-":
        return cfg.low, min(cfg.high, value)
    if op == "*" and cfg.high >= 2:
        return max(cfg.low, 2), cfg.high
    return cfg.low, cfg.high


def _fill_numbers(cfg: ArithmeticConfig, rng: np.random.Generator,
                  ops: tuple[str, ...]) -> tuple[int, tuple[int, ...]] | None:
    """A start value and operands for `ops`, or None when a subtraction would go below 0."""
    start = int(rng.integers(cfg.low, cfg.high + 1))
    value, operands = start, []
    for op in ops:
        if op == "-" and value < cfg.low:
            return None
        lo, hi = _operand_range(cfg, op, value)
        n = int(rng.integers(lo, hi + 1))
        operands.append(n)
        value = _apply(op, value, n)
    return start, tuple(operands)


def _other(rng: np.random.Generator, current: int, n: int = len(NAMES)) -> int:
    """An index in [0, n) other than `current`, uniformly."""
    return (current + 1 + int(rng.integers(n - 1))) % n


def problem_at(cfg: ArithmeticConfig, seed: int, index: int) -> WordProblem:
    """Problem `index` of the stream `seed`; computed without producing the others."""
    rng = np.random.default_rng([seed, index])
    person, item = int(rng.integers(len(NAMES))), int(rng.integers(len(ITEMS)))
    for _ in range(_MAX_TRIES):
        k = int(rng.integers(cfg.min_ops, cfg.max_ops + 1))
        ops = tuple(cfg.operations[int(i)] for i in rng.integers(len(cfg.operations), size=k))
        filled = _fill_numbers(cfg, rng, ops)
        if filled is not None:
            break
    else:
        raise ConfigError(f"{cfg} cannot keep subtractions non-negative; allow more operations or low=0.")
    start, operands = filled
    phrasing = tuple(int(rng.integers(len(STEP_TEMPLATES[op]))) for op in ops)
    distractor = None
    if rng.random() < cfg.distractor_rate:
        distractor = Distractor(template=int(rng.integers(len(DISTRACTOR_TEMPLATES))),
                                number=int(rng.integers(cfg.low, cfg.high + 1)),
                                person=_other(rng, person), position=int(rng.integers(len(ops) + 1)))
    return WordProblem(person, item, start, tuple(zip(ops, operands, strict=True)), phrasing, distractor)


def generate_problems(cfg: ArithmeticConfig, n: int, seed: int, start: int = 0) -> list[WordProblem]:
    """Problems start .. start+n-1 of the stream `seed`."""
    return [problem_at(cfg, seed, i) for i in range(start, start + n)]


def vary(problem: WordProblem, seed: int, names: bool = True, numbers: bool = True,
         cfg: ArithmeticConfig | None = None) -> WordProblem:
    """A GSM-Symbolic variant: same template and operations, new names/items and/or numbers.

    `names` swaps the person, the item and the distractor's other person for different ones;
    `numbers` redraws every number from `cfg`'s range (default `ArithmeticConfig()`).
    """
    cfg = cfg or ArithmeticConfig()
    rng = np.random.default_rng([seed, _stable_int(problem.key)])
    out = problem
    if names:
        person, item = _other(rng, problem.person), _other(rng, problem.item, len(ITEMS))
        out = replace(out, person=person, item=item)
        if out.distractor is not None:
            out = replace(out, distractor=replace(out.distractor, person=_other(rng, person)))
    if numbers:
        ops = tuple(op for op, _ in problem.steps)
        for _ in range(_MAX_TRIES):
            filled = _fill_numbers(cfg, rng, ops)
            if filled is not None:
                break
        else:
            raise ConfigError(f"no numbers in [{cfg.low}, {cfg.high}] keep {ops} non-negative.")
        start, operands = filled
        out = replace(out, start=start, steps=tuple(zip(ops, operands, strict=True)))
        if out.distractor is not None:
            out = replace(out, distractor=replace(out.distractor,
                                                  number=int(rng.integers(cfg.low, cfg.high + 1))))
    return out


def extract_answer(text: str, lang: Lang) -> int | None:
    """The integer after the LAST "The answer is" / 「答案是」 in a completion, else None.

    Every scorer of word problems uses this one rule. It accepts a colon, a sign (also 负),
    thousands commas ("1,234"), full-width digits ("１２") and trailing units or measure words
    ("12 apples", "12个", "12颗糖"); a self-correction counts by its final answer. It returns
    None when the last marker is not followed by a well-formed integer ("12.5", "1,23", "3+4",
    "twelve"), and ignores anything after the model started a new question ("\\nQ:" / "\\n问：").
    """
    if lang not in _MARKER:
        raise ValueError(f"lang is {lang!r}; allowed: 'en', 'zh'.")
    text = text.translate(_NORMALISE)
    if (cut := _NEXT_QUESTION[lang].search(text)) is not None:
        text = text[: cut.start()]
    markers = list(_MARKER[lang].finditer(text))
    if not markers:
        return None
    rest = text[markers[-1].end():]
    match = _NUMBER.match(rest)
    if match is None or _BAD_TAIL.match(rest, match.end()):
        return None
    value = int(match.group(2).replace(",", ""))
    return -value if match.group(1) else value
