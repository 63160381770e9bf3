"""Letter-string transformations and their compositions, after DataAlchemy.

Elementary transforms on A–Z strings (`rotN`, `shiftN`, `reverse`) compose into chains; a
problem asks for the result of a chain and its worked answer shows every intermediate
string. `string_split` builds train/test distributions that differ in exactly one controlled
way (an unseen transform, an unseen composition, an unseen length or an unseen format), so
chain-of-thought can be tested in and out of distribution.
"""

from __future__ import annotations

import functools
import itertools
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from phasebook.validation import Checks, ConfigError

Lang = Literal["en", "zh"]
Holdout = Literal["transformation", "composition", "length", "format"]
FORMATS = ("standard", "spaced")
_LETTERS = string.ascii_uppercase
_MAX_CHAINS = 100_000


def _rot(n: int) -> Callable[[str], str]:
    table = str.maketrans(_LETTERS, _LETTERS[n:] + _LETTERS[:n])
    return lambda s: s.translate(table)


def _shift(n: int) -> Callable[[str], str]:
    return lambda s: s[n % len(s):] + s[:n % len(s)] if s else s


# rotN: Caesar shift of each letter (rot1: ABCZ -> BCDA); shiftN: cyclic shift of positions to
# the left (shift1: ABCD -> BCDA); reverse: ABCD -> DCBA.
TRANSFORMS: dict[str, Callable[[str], str]] = {
    **{f"rot{n}": _rot(n) for n in range(1, 26)},
    **{f"shift{n}": _shift(n) for n in range(1, 10)},
    "reverse": lambda s: s[::-1],
}


@dataclass(frozen=True)
class StringConfig:
    """A distribution of string problems: which chains, source lengths and surface format.

    `lengths` and `depth` are sets of allowed values (depth = number of transforms in a
    chain). The last three fields restrict chains, which is how `string_split` holds things
    out: a chain must contain one of `required_transforms` (if any), must contain one of
    `required_pairs` as adjacent steps (if any), and never contains a `banned_pairs` pair.
    """

    transforms: tuple[str, ...] = ("rot1", "rot2", "shift1", "reverse")
    lengths: tuple[int, ...] = (4,)
    depth: tuple[int, ...] = (1, 2)
    fmt: str = "standard"
    required_transforms: tuple[str, ...] = ()
    banned_pairs: tuple[tuple[str, str], ...] = ()
    required_pairs: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        c = Checks(self)
        names = self.transforms
        c.rule(_tuple_of(names, lambda t: t in TRANSFORMS) and len(set(names)) == len(names), "transforms",
               "must be distinct names of TRANSFORMS: rot1..rot25, shift1..shift9, reverse.")
        c.rule(_tuple_of(self.lengths, lambda n: isinstance(n, int) and 1 <= n <= 64), "lengths",
               "must be a non-empty tuple of integers in [1, 64].")
        c.rule(_tuple_of(self.depth, lambda d: isinstance(d, int) and 1 <= d <= 6), "depth",
               "must be a non-empty tuple of integers in [1, 6].")
        c.choice("fmt", FORMATS)
        c.rule(all(t in names for t in self.required_transforms), "required_transforms",
               f"must be drawn from transforms {names}.")
        for field in ("banned_pairs", "required_pairs"):
            c.rule(all(isinstance(p, tuple) and len(p) == 2 and set(p) <= set(names)
                       for p in getattr(self, field)), field,
                   f"must be pairs of names drawn from transforms {names}.")
        c.done()
        if len(self.transforms) ** max(self.depth) > _MAX_CHAINS:
            c.fail("depth", f"is {self.depth}; {len(self.transforms)} transforms to depth "
                   f"{max(self.depth)} make more than {_MAX_CHAINS} chains.")
        elif not chains(self):
            c.fail("transforms", "leave no chain that satisfies required_transforms, banned_pairs "
                   "and required_pairs.")
        c.done()


def _tuple_of(value: object, ok: Callable[[object], bool]) -> bool:
    return isinstance(value, tuple) and len(value) > 0 and all(ok(v) for v in value)


@functools.lru_cache(maxsize=64)
def chains(cfg: StringConfig) -> tuple[tuple[str, ...], ...]:
    """Every chain of transforms that `cfg` allows, shortest first."""
    out = []
    for d in sorted(set(cfg.depth)):
        for chain in itertools.product(cfg.transforms, repeat=d):
            pairs = set(itertools.pairwise(chain))
            if (cfg.required_transforms and not set(chain) & set(cfg.required_transforms)) \
                    or pairs & set(cfg.banned_pairs) \
                    or (cfg.required_pairs and not pairs & set(cfg.required_pairs)):
                continue
            out.append(chain)
    return tuple(out)


@dataclass(frozen=True)
class StringProblem:
    """Apply `chain` to `source` (A–Z letters); rendered in format `fmt` and either language."""

    source: str
    chain: tuple[str, ...]
    fmt: str = "standard"

    @property
    def intermediates(self) -> tuple[str, ...]:
        """The string after each transform; the last is the answer."""
        out, s = [], self.source
        for name in self.chain:
            s = TRANSFORMS[name](s)
            out.append(s)
        return tuple(out)

    @property
    def answer(self) -> str:
        return self.intermediates[-1]

    @property
    def key(self) -> tuple:
        return ("strings", self.source, self.chain, self.fmt)

    def _show(self, s: str) -> str:
        return " ".join(s) if self.fmt == "spaced" else s

    def prompt(self, lang: Lang) -> str:
        """The question, ending with the answer cue ("\\nA:" / "\\n答：")."""
        src = self._show(self.source)
        if self.fmt == "spaced":
            if lang == "en":
                return f"Q: Letters: {src}. Steps: {', '.join(self.chain)}.\nA:"
            return f"问：字母：{src}。步骤：{'、'.join(self.chain)}。\n答："
        if lang == "en":
            return f"Q: Apply {', then '.join(self.chain)} to {src}.\nA:"
        if len(self.chain) == 1:
            return f"问：对{src}做{self.chain[0]}变换。\n答："
        return f"问：对{src}依次做{'、'.join(self.chain)}变换。\n答："

    def completion(self, lang: Lang, cot: bool = True) -> str:
        """The answer; with `cot`, each step and its intermediate result before it."""
        before = (self.source, *self.intermediates[:-1])
        steps = [f"{name} {self._show(a)} = {self._show(b)}"
                 for name, a, b in zip(self.chain, before, self.intermediates, strict=True)]
        answer = self._show(self.answer)
        if lang == "en":
            work = "".join(f" {s}." for s in steps) if cot else ""
            return f"{work} The answer is {answer}."
        work = "".join(f"{s}。" for s in steps) if cot else ""
        return f"{work}答案是{answer}。"

    def render(self, lang: Lang, cot: bool = True) -> str:
        return self.prompt(lang) + self.completion(lang, cot) + "\n"


def string_problem_at(cfg: StringConfig, seed: int, index: int) -> StringProblem:
    """Problem `index` of stream `seed`: a depth, then a chain of it, a length, then letters."""
    rng = np.random.default_rng([seed, index])
    allowed = chains(cfg)
    depths = sorted({len(ch) for ch in allowed})
    depth = depths[int(rng.integers(len(depths)))]
    of_depth = [ch for ch in allowed if len(ch) == depth]
    chain = of_depth[int(rng.integers(len(of_depth)))]
    length = cfg.lengths[int(rng.integers(len(cfg.lengths)))]
    source = "".join(_LETTERS[i] for i in rng.integers(26, size=length))
    return StringProblem(source, chain, cfg.fmt)


def generate_string_problems(cfg: StringConfig, n: int, seed: int, start: int = 0) -> list[StringProblem]:
    """Problems start .. start+n-1 of stream `seed` of distribution `cfg`."""
    return [string_problem_at(cfg, seed, i) for i in range(start, start + n)]


@dataclass(frozen=True)
class StringSplit:
    """Train and test distributions that differ in one controlled way; `held` says what."""

    train: StringConfig
    test: StringConfig
    holdout: str
    held: tuple


def string_split(cfg: StringConfig, holdout: Holdout, seed: int = 0, *,
                 held: str | tuple[tuple[str, str], ...] | None = None,
                 test_lengths: tuple[int, ...] | None = None, test_fmt: str | None = None) -> StringSplit:
    """Split `cfg` so that the test side is out of the training distribution, disjoint by construction.

    - "transformation": one transform (`held`, else drawn by `seed`) never appears in training;
      every test chain contains it.
    - "composition": about a quarter of the ordered pairs of distinct transforms (`held`, else
      drawn by `seed`) are never adjacent in training, though each transform is seen; every
      test chain (depth >= 2) contains one of them.
    - "length": test sources have `test_lengths` (default: one longer than the longest trained).
    - "format": test problems use `test_fmt` (default: the other format).
    """
    if cfg.required_transforms or cfg.banned_pairs or cfg.required_pairs:
        raise ConfigError("string_split needs an unrestricted StringConfig (no required_transforms, "
                          "banned_pairs or required_pairs) to split.")
    rng = np.random.default_rng([seed, 0x5EED])
    if holdout == "transformation":
        name = held if isinstance(held, str) else cfg.transforms[int(rng.integers(len(cfg.transforms)))]
        if name not in cfg.transforms or len(cfg.transforms) < 2:
            raise ConfigError(f"held transform {name!r} must be one of {cfg.transforms} (at least two).")
        train = replace(cfg, transforms=tuple(t for t in cfg.transforms if t != name))
        return StringSplit(train, replace(cfg, required_transforms=(name,)), holdout, (name,))
    if holdout == "composition":
        deep = tuple(d for d in cfg.depth if d >= 2)
        if not deep or len(cfg.transforms) < 2:
            raise ConfigError("a composition split needs depth >= 2 and at least two transforms.")
        if held is None or isinstance(held, str):
            pairs = list(itertools.permutations(cfg.transforms, 2))
            picks = rng.choice(len(pairs), size=max(1, round(len(pairs) / 4)), replace=False)
            held = tuple(pairs[i] for i in sorted(picks))
        train = replace(cfg, banned_pairs=tuple(held))
        return StringSplit(train, replace(cfg, depth=deep, required_pairs=tuple(held)), holdout, held)
    if holdout == "length":
        lengths = test_lengths or (max(cfg.lengths) + 1,)
        if set(lengths) & set(cfg.lengths):
            raise ConfigError(f"test_lengths {lengths} overlap the trained lengths {cfg.lengths}.")
        return StringSplit(cfg, replace(cfg, lengths=tuple(lengths)), holdout, tuple(lengths))
    if holdout == "format":
        fmt = test_fmt or next(f for f in FORMATS if f != cfg.fmt)
        if fmt == cfg.fmt:
            raise ConfigError(f"test_fmt {fmt!r} is the trained format; pick another of {FORMATS}.")
        return StringSplit(cfg, replace(cfg, fmt=fmt), holdout, (fmt,))
    raise ConfigError(f"holdout is {holdout!r}; allowed: 'transformation', 'composition', 'length', "
                      "'format'.")


_ANSWER_RE = {"en": re.compile(r"The answer is ([A-Z](?: ?[A-Z])*)"),
              "zh": re.compile(r"答案是([A-Z](?: ?[A-Z])*)")}


def extract_string_answer(text: str, lang: Lang) -> str | None:
    """The letters after "The answer is" / 「答案是」 (spaces removed), else None."""
    match = _ANSWER_RE[lang].search(text)
    return match.group(1).replace(" ", "") if match else None
