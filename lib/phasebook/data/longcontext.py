"""A synthetic long-range task: a code stated far back in the context, asked for at its end.

An item is one token sequence (English or Chinese, alternating by item index):

    EOS · filler · "\\nThe code of Kalo is #4827.\\n" · filler · "\\nThe code of Kalo is #" → 4 8 2 7

The filler is general text of the corpus (`general` documents, cut at token boundaries), the
name is a two-syllable name of the synthetic world ("Kalo", 「卡洛」) and the code a string of
digits, one token each. Nothing but the fact says what the code is, so a model answers only if
it attends back to it: across `distance` tokens, from the question's first token to the fact's.
The question repeats the fact's opening tokens exactly, so the answer is a copy of the tokens
that followed them — an induction-head lookup, at a distance the test chooses.

Items are built at the token level, so their length and the fact's distance are exact token
counts. Training and evaluation items are disjoint: each name and each code belongs to one
side by a hash of its text (`eval_fraction` of them to evaluation), and the filler comes from
the corpus's train split for training items and from its test split for evaluation items.
Every item is a deterministic function of (split, seed, index, length, distance).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from phasebook.data.corpus import CorpusConfig, problems
from phasebook.data.facts import SYLLABLES
from phasebook.data.tokenizer import Tokenizer
from phasebook.errors import PhasebookError
from phasebook.validation import Checks

TaskSplit = Literal["train", "eval"]
TASK_SPLITS: tuple[TaskSplit, ...] = ("train", "eval")
# The fact's opening in each language ({name}); the question is this opening again. It ends in "#",
# which no corpus text has: the token after the question's last one is then the code's first digit
# wherever that token occurs earlier, the simplest look-back there is (with "is " the English
# opening would hold three lone-space tokens, each followed by something else).
LEADS = {"en": "The code of {name} is #", "zh": "{name}的密码是#"}
ENDS = {"en": ".", "zh": "。"}
# Which corpus split a task split cuts its filler from: evaluation text is never trained on.
FILLER_SPLIT = {"train": "train", "eval": "test"}
_Draw = tuple[np.random.Generator, tuple[int, ...], tuple[int, ...], int]


@dataclass(frozen=True)
class RetrievalConfig:
    """The task's fixed parts: code length, languages, the held-out share and the filler pool."""

    n_digits: int = 4
    languages: tuple[str, ...] = ("en", "zh")
    eval_fraction: float = 0.25  # share of the names and of the codes that only evaluation items use
    filler_documents: int = 400  # general documents per language that the filler is cut from

    def __post_init__(self) -> None:
        c = Checks(self)
        c.range("n_digits", 1, integer=True)
        c.rule(isinstance(self.languages, tuple) and len(self.languages) > 0
               and len(set(self.languages)) == len(self.languages) and set(self.languages) <= set(LEADS),
               "languages", f"must be a non-empty tuple of distinct languages from {tuple(LEADS)}.")
        c.range("eval_fraction", 0.0, 1.0, lo_open=True, hi_open=True)
        c.range("filler_documents", 1, integer=True)
        c.done()


DEFAULT_TASK = RetrievalConfig()


@dataclass(frozen=True)
class RetrievalItem:
    """One item: `tokens` = EOS, filler, fact, filler, question, answer (exactly `length` tokens).

    The fact is "\\n" + opening + code + "." + "\\n", the question "\\n" + the same opening, the
    answer the code's digit tokens. `fact_start`, `question_start` and `answer_start` index into
    `tokens`: the answer is `tokens[answer_start:]`, and the fact holds it from
    `fact_start + (answer_start - question_start)` on.
    """

    tokens: tuple[int, ...]
    fact_start: int
    question_start: int
    answer_start: int
    name: str
    code: str
    lang: str

    @property
    def distance(self) -> int:
        """Tokens from the fact's first token to the question's first token."""
        return self.question_start - self.fact_start

    @property
    def prompt(self) -> tuple[int, ...]:
        return self.tokens[:self.answer_start]

    @property
    def answer(self) -> tuple[int, ...]:
        return self.tokens[self.answer_start:]


def _held_out(kind: str, value: str, fraction: float) -> bool:
    """Whether a name or code belongs to evaluation: a hash of its text, the same in every process."""
    digest = hashlib.sha256(f"phasebook.longcontext:{kind}:{value}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def task_names(cfg: RetrievalConfig, split: TaskSplit) -> list[tuple[str, str]]:
    """The (English, Chinese) names of one side of the task: every two-syllable name of the
    synthetic world, each on one side by hash."""
    names = [((SYLLABLES[a][0] + SYLLABLES[b][0]).capitalize(), SYLLABLES[a][1] + SYLLABLES[b][1])
             for a, b in itertools.product(range(len(SYLLABLES)), repeat=2)]
    return [n for n in names if _held_out("name", n[0], cfg.eval_fraction) == (split == "eval")]


class RetrievalTask:
    """Items of one side ("train" or "eval") of the task, over one corpus and tokenizer."""

    def __init__(self, corpus: CorpusConfig, tokenizer: Tokenizer, split: TaskSplit,
                 cfg: RetrievalConfig = DEFAULT_TASK):
        if split not in TASK_SPLITS:
            raise PhasebookError(f"split is {split!r}; allowed: 'train', 'eval'.")
        self.corpus, self.tokenizer, self.split, self.cfg = corpus, tokenizer, split, cfg
        self.names = task_names(cfg, split)
        self.newline = self._one_token("\n")
        self.digits = [self._one_token(str(d)) for d in range(10)]
        self.filler = {lang: _filler_stream(corpus, tokenizer, FILLER_SPLIT[split], lang,
                                            cfg.filler_documents) for lang in cfg.languages}
        self._sentences: dict[tuple[int, str], tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def _one_token(self, text: str) -> int:
        ids = self.tokenizer.encode(text)
        if len(ids) != 1:
            raise PhasebookError(f"the retrieval task needs {text!r} to be one token; this tokenizer makes "
                                 f"{len(ids)} of it.")
        return ids[0]

    def _sentence(self, name_index: int, lang: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(opening, end) tokens of a fact about name `name_index` in `lang` (tokenized once)."""
        key = (name_index, lang)
        if key not in self._sentences:
            name = self.names[name_index][0 if lang == "en" else 1]
            self._sentences[key] = (tuple(self.tokenizer.encode(LEADS[lang].format(name=name))),
                                    tuple(self.tokenizer.encode(ENDS[lang])))
        return self._sentences[key]

    def _code(self, rng: np.random.Generator) -> str:
        """A code of this side: drawn until its hash puts it here (a handful of draws)."""
        for _ in range(10_000):
            code = "".join(str(int(d)) for d in rng.integers(0, 10, self.cfg.n_digits))
            if _held_out("code", code, self.cfg.eval_fraction) == (self.split == "eval"):
                return code
        raise PhasebookError(f"no {self.split} code of {self.cfg.n_digits} digits found; "
                             "change eval_fraction or n_digits.")

    def distance_range(self, index: int, length: int, seed: int = 0) -> tuple[int, int]:
        """The shortest and longest distances item `index` can have at `length` tokens (its fact
        and question lengths depend on the name and language it draws)."""
        _, opening, end, _ = self._draw(index, seed)
        fact = 1 + len(opening) + self.cfg.n_digits + len(end) + 1
        question = 1 + len(opening)
        return fact, length - 1 - question - self.cfg.n_digits

    def _draw(self, index: int, seed: int) -> _Draw:
        """The item's random generator, after it drew the name: (rng, opening, end, name index)."""
        rng = np.random.default_rng([seed, TASK_SPLITS.index(self.split), index, 0x10C0])
        name_index = int(rng.integers(len(self.names)))
        opening, end = self._sentence(name_index, self.cfg.languages[index % len(self.cfg.languages)])
        return rng, opening, end, name_index

    def item(self, index: int, length: int, distance: int | None = None, seed: int = 0) -> RetrievalItem:
        """Item `index` of `length` tokens whose fact starts `distance` tokens before the question
        (None: as far back as it goes, right after the leading EOS)."""
        lang = self.cfg.languages[index % len(self.cfg.languages)]
        shortest, longest = self.distance_range(index, length, seed)
        if longest < shortest:
            raise PhasebookError(f"length {length} is too short for a retrieval item: its fact and question "
                                 f"alone take {length - longest + shortest} tokens.")
        distance = longest if distance is None else distance
        if not shortest <= distance <= longest:
            raise PhasebookError(f"distance {distance} is impossible for item {index} at length {length}: "
                                 f"allowed {shortest} … {longest} tokens.")
        rng, opening, end, name_index = self._draw(index, seed)
        code = self._code(rng)
        answer = [self.digits[int(d)] for d in code]
        fact = [self.newline, *opening, *answer, *end, self.newline]
        question = [self.newline, *opening]
        before = length - 1 - distance - len(question) - len(answer)
        filler = self._filler(rng, lang, before + distance - len(fact))
        tokens = [self.tokenizer.eos_id, *filler[:before], *fact, *filler[before:], *question, *answer]
        fact_start = 1 + before
        return RetrievalItem(tuple(tokens), fact_start, fact_start + distance, length - len(answer),
                             self.names[name_index][0 if lang == "en" else 1], code, lang)

    def random_item(self, index: int, length: int, seed: int = 0) -> RetrievalItem:
        """Item `index` at a random distance, log-uniform over those possible (for training).

        Log-uniform, so every octave of distance gets as many items: the short ones, where a
        model first learns to look back at all, as much as the long ones it is extended for.
        """
        shortest, longest = self.distance_range(index, length, seed)
        rng = np.random.default_rng([seed, TASK_SPLITS.index(self.split), index, 0xD157])
        distance = round(math.exp(rng.uniform(math.log(shortest), math.log(max(shortest, longest)))))
        return self.item(index, length, min(max(distance, shortest), longest), seed)

    def _filler(self, rng: np.random.Generator, lang: str, n: int) -> list[int]:
        """n consecutive tokens of the language's filler stream, from a random offset (wrapping)."""
        stream = self.filler[lang]
        start = int(rng.integers(len(stream)))
        picks = (start + np.arange(n)) % len(stream)
        return stream[picks].tolist()


@functools.lru_cache(maxsize=16)
def _filler_stream(corpus: CorpusConfig, tokenizer: Tokenizer, split: str, lang: str, n: int) -> np.ndarray:
    """The first n general documents of a corpus split in `lang`, tokenized and joined (each ends in
    a newline)."""
    texts = [doc.render(lang) for doc in problems(corpus, "general", split, n)]  # type: ignore[arg-type]
    return np.concatenate([np.asarray(ids, dtype=np.int64) for ids in tokenizer.encode_batch(texts)])
