"""The pre-training corpus: documents from four sources, mixed in exact proportions.

Every item (a word problem, a string problem, a biography, a general story) has a content
`key`; its split (train / validation / test) is a hash of that key, so the splits are
disjoint by construction and stay the same whatever the corpus seed or size. Each split then
takes the first items of each source's seeded stream that hash into it: source counts are
exact (largest remainder), languages alternate within every source, and the sources are
interleaved by a seeded permutation. Only *present* entities ever get a biography.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from phasebook.data.arithmetic import LANGS, ArithmeticConfig, problem_at
from phasebook.data.facts import Biography, FactsConfig, FactWorld
from phasebook.data.general import general_item
from phasebook.data.strings import StringConfig, string_problem_at
from phasebook.validation import Checks, ConfigError

Source = Literal["general", "math", "strings", "facts"]
Split = Literal["train", "validation", "test"]
SOURCES: tuple[Source, ...] = ("general", "math", "strings", "facts")
SPLITS: tuple[Split, ...] = ("train", "validation", "test")


@dataclass(frozen=True)
class MixtureConfig:
    """The share of each source in every split; the shares sum to 1."""

    general: float = 0.4
    math: float = 0.4
    strings: float = 0.0
    facts: float = 0.2

    def __post_init__(self) -> None:
        c = Checks(self)
        for source in SOURCES:
            c.range(source, 0.0, 1.0)
        c.done()
        total = sum(self.shares().values())
        if abs(total - 1.0) > 1e-9:
            c.fail("facts", f"is {self.facts!r}; the shares add up to {total:g}, they must add up to 1.")
        c.done()

    def shares(self) -> dict[Source, float]:
        return {source: getattr(self, source) for source in SOURCES}


@dataclass(frozen=True)
class CorpusConfig:
    """Everything the corpus depends on. `n_documents` is the train size; validation and test
    have `eval_documents` each; `holdout_fraction` of the item space is routed to them."""

    seed: int = 0
    languages: tuple[str, ...] = ("en", "zh")
    n_documents: int = 20_000
    eval_documents: int = 1_000
    holdout_fraction: float = 0.1
    mixture: MixtureConfig = field(default_factory=MixtureConfig)
    arithmetic: ArithmeticConfig = field(default_factory=ArithmeticConfig)
    strings: StringConfig = field(default_factory=StringConfig)
    facts: FactsConfig = field(default_factory=FactsConfig)
    cot_fraction: float = 1.0

    def __post_init__(self) -> None:
        c = Checks(self)
        c.range("seed", 0, None, integer=True)
        c.rule(isinstance(self.languages, tuple) and len(self.languages) > 0
               and len(set(self.languages)) == len(self.languages) and set(self.languages) <= set(LANGS),
               "languages", f"must be a non-empty tuple of distinct languages from {LANGS}.")
        c.range("n_documents", 1, 10**8, integer=True)
        c.range("eval_documents", 0, 10**7, integer=True)
        c.range("holdout_fraction", 0.0, 0.5, lo_open=True)
        c.range("cot_fraction", 0.0, 1.0)
        if self.mixture.facts > 0 and self.facts.n_present == 0:
            c.fail("facts", "has no present entity (present_fraction too small) but mixture.facts > 0.")
        c.done()


@dataclass(frozen=True)
class Document:
    """One pre-training document and where it came from."""

    text: str
    lang: str
    source: str
    split: str


def split_of(key: Any, holdout_fraction: float = 0.1) -> Split:
    """The split of an item, a pure function of its content key (same in every process)."""
    digest = hashlib.sha256(("phasebook.split:" + repr(key)).encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u >= holdout_fraction:
        return "train"
    return "validation" if u < holdout_fraction / 2 else "test"


def _counts(n: int, shares: dict[Source, float]) -> dict[Source, int]:
    """Largest-remainder apportionment of n among the sources (ties go to the earlier source)."""
    exact = {s: n * shares[s] for s in SOURCES}
    counts = {s: math.floor(exact[s]) for s in SOURCES}
    by_remainder = sorted(SOURCES, key=lambda s: (-(exact[s] - counts[s]), SOURCES.index(s)))
    for s in by_remainder[: n - sum(counts.values())]:
        counts[s] += 1
    return counts


def _stream_seed(seed: int, source: str) -> int:
    return int.from_bytes(hashlib.sha256(f"phasebook.corpus:{seed}:{source}".encode()).digest()[:8], "big")


@functools.lru_cache(maxsize=8)
def fact_world(cfg: CorpusConfig) -> FactWorld:
    """The fictional entities of this corpus (the same world that its biographies describe)."""
    return FactWorld(cfg.facts, cfg.seed)


def kept_in_split(make: Callable[[int], Any], split: Split, holdout: float, what: str) -> Iterator[Any]:
    """The items of stream `make` whose key hashes into `split`, in stream order."""
    share = 1 - holdout if split == "train" else holdout / 2
    misses = 0
    for i in range(10**12):
        item = make(i)
        if split_of(item.key, holdout) == split:
            misses = 0
            yield item
        else:
            misses += 1
            if misses > 200 / share:  # a tiny item space may have no item in this split at all
                raise ConfigError(f"{what}: no new {split} item in {misses} draws; the item space is too "
                                  "small for this split (widen the config or change holdout_fraction).")


def problems(cfg: CorpusConfig, source: Source, split: Split, n: int) -> list[Any]:
    """The first n abstract items of `source` in `split`: exactly those its documents render.

    Use the test side for evaluation prompts: it is disjoint from the training documents.
    For "facts" the items are `Biography` variants, cycling over the present entities.
    """
    if source == "facts":
        return list(itertools.islice(_facts_items(cfg, split), n))
    seed = _stream_seed(cfg.seed, source)
    make: Callable[[int], Any] = {
        "general": lambda i: general_item(seed, i),
        "math": lambda i: problem_at(cfg.arithmetic, seed, i),
        "strings": lambda i: string_problem_at(cfg.strings, seed, i),
    }[source]
    stream = kept_in_split(make, split, cfg.holdout_fraction, f"corpus source {source!r}")
    return list(itertools.islice(stream, n))


def _facts_items(cfg: CorpusConfig, split: Split) -> Iterator[Biography]:
    """Biographies in rounds: each round gives every present entity one variant per language."""
    world = fact_world(cfg)
    if not world.present:
        raise ConfigError("facts: no present entity to write biographies of; raise present_fraction.")
    streams = {e.index: kept_in_split(functools.partial(world.biography_variant, e), split,
                                      cfg.holdout_fraction, f"biographies of entity {e.index}")
               for e in world.present}
    while True:
        for entity in world.present:
            for _ in cfg.languages:
                yield next(streams[entity.index])


def _render(cfg: CorpusConfig, source: Source, split: Split, items: list[Any]) -> list[Document]:
    """Document j is in language j mod L; within each language, CoT goes to an exact cot_fraction."""
    f, n_langs, out = cfg.cot_fraction, len(cfg.languages), []
    for j, item in enumerate(items):
        lang, r = cfg.languages[j % n_langs], j // n_langs
        if source in ("math", "strings"):
            text = item.render(lang, cot=math.floor((r + 1) * f) > math.floor(r * f))
        else:
            text = item.render(lang)
        out.append(Document(text, lang, source, split))
    return out


@functools.lru_cache(maxsize=8)
def _documents(cfg: CorpusConfig, split: Split) -> tuple[Document, ...]:
    n = cfg.n_documents if split == "train" else cfg.eval_documents
    counts = _counts(n, cfg.mixture.shares())
    per_source = {s: iter(_render(cfg, s, split, problems(cfg, s, split, counts[s]))) for s in SOURCES}
    labels = [s for s in SOURCES for _ in range(counts[s])]
    order = np.random.default_rng([cfg.seed, SPLITS.index(split), 0x1EAF]).permutation(len(labels))
    return tuple(next(per_source[labels[k]]) for k in order)


def documents(cfg: CorpusConfig, split: Split) -> list[Document]:
    """The documents of one split, in training order."""
    if split not in SPLITS:
        raise ConfigError(f"split is {split!r}; allowed: {', '.join(map(repr, SPLITS))}.")
    return list(_documents(cfg, split))


def corpus_digest(cfg: CorpusConfig) -> str:
    """sha256 of the train texts (in order): the cache key of a tokenizer trained on them."""
    h = hashlib.sha256()
    for doc in _documents(cfg, "train"):
        data = doc.text.encode()
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()
