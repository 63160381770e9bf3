"""Chain-of-thought evaluation: answer extraction, distribution shifts, perturbations, leakage guard.

The claim under test is that CoT helps in distribution and breaks under shift. So every
evaluation set here is drawn from the *test* side of the item space (`split_of`), every
shift changes one controlled thing (more steps, larger numbers, unseen compositions, an
unseen prompt format), and every GSM-Symbolic perturbation changes only what it names
(names, numbers or one irrelevant clause) and recomputes the answer from the steps.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, Literal

import numpy as np

from phasebook.data.arithmetic import (
    DISTRACTOR_TEMPLATES,
    NAMES,
    ArithmeticConfig,
    Distractor,
    Lang,
    WordProblem,
    extract_answer,
    problem_at,
    vary,
)
from phasebook.data.corpus import CorpusConfig, kept_in_split, problems, split_of
from phasebook.data.strings import StringConfig, StringProblem, StringSplit, string_problem_at, string_split
from phasebook.data.tokenizer import Tokenizer
from phasebook.errors import PhasebookError, suggest
from phasebook.evaluate.lm import complete
from phasebook.evaluate.stats import Accuracy
from phasebook.model import GPT
from phasebook.validation import ConfigError

Shift = Literal["id", "longer", "larger-numbers"]
SHIFTS: tuple[Shift, ...] = ("id", "longer", "larger-numbers")
Perturbation = Literal["names", "numbers", "clause"]
PERTURBATIONS: tuple[Perturbation, ...] = ("names", "numbers", "clause")
PROMPT_FORMATS = ("standard", "question", "inline")

# ---------------------------------------------------------------- scoring

def is_correct(problem: WordProblem, completion: str, lang: Lang) -> bool:
    """Whether the completion's final answer (`data.extract_answer`) equals the problem's answer."""
    return extract_answer(completion, lang) == problem.answer


# ---------------------------------------------------------------- distribution shifts

def _shift_seed(seed: int, name: str) -> int:
    """A stream seed of its own for each shift, so shifted items never repeat the corpus stream."""
    return int.from_bytes(hashlib.sha256(f"phasebook.cot:{seed}:{name}".encode()).digest()[:8], "big")


def _test_items(make: Callable[[int], Any], cfg: CorpusConfig, n: int, what: str) -> list[Any]:
    stream = kept_in_split(make, "test", cfg.holdout_fraction, what)
    return [next(stream) for _ in range(n)]


def in_distribution(cfg: CorpusConfig, n: int) -> list[WordProblem]:
    """n test-split word problems of the corpus's own distribution (what its test documents show)."""
    return problems(cfg, "math", "test", n)


def longer_config(arithmetic: ArithmeticConfig, extra_ops: int = 2) -> ArithmeticConfig:
    """The corpus's problems with max_ops+1 .. max_ops+extra_ops operations (at most 8)."""
    if extra_ops < 1:
        raise ConfigError(f"extra_ops is {extra_ops}; it must be >= 1.")
    if arithmetic.max_ops >= 8:
        raise ConfigError(f"arithmetic.max_ops is {arithmetic.max_ops}; a longer shift needs max_ops < 8.")
    return replace(arithmetic, min_ops=arithmetic.max_ops + 1, max_ops=min(8, arithmetic.max_ops + extra_ops))


def larger_config(arithmetic: ArithmeticConfig, factor: int = 10) -> ArithmeticConfig:
    """The corpus's problems with every number in [high+1, factor·(high+1) − 1]: beyond training."""
    if factor < 2:
        raise ConfigError(f"factor is {factor}; it must be >= 2.")
    return replace(arithmetic, low=arithmetic.high + 1, high=factor * (arithmetic.high + 1) - 1)


def longer(cfg: CorpusConfig, n: int, extra_ops: int = 2) -> list[WordProblem]:
    """n test-split problems with more operations than any training problem has."""
    shifted = longer_config(cfg.arithmetic, extra_ops)
    seed = _shift_seed(cfg.seed, "longer")
    return _test_items(lambda i: problem_at(shifted, seed, i), cfg, n, "shift 'longer'")


def larger_numbers(cfg: CorpusConfig, n: int, factor: int = 10) -> list[WordProblem]:
    """n test-split problems whose start and operands all exceed the corpus's `high`."""
    shifted = larger_config(cfg.arithmetic, factor)
    seed = _shift_seed(cfg.seed, "larger-numbers")
    return _test_items(lambda i: problem_at(shifted, seed, i), cfg, n, "shift 'larger-numbers'")


def shifted(cfg: CorpusConfig, shift: Shift, n: int) -> list[WordProblem]:
    """n test-split word problems under `shift` ("id", "longer" or "larger-numbers")."""
    makers: dict[str, Callable[[CorpusConfig, int], list[WordProblem]]] = {
        "id": in_distribution, "longer": longer, "larger-numbers": larger_numbers}
    if shift not in makers:
        raise ConfigError(f"shift is {shift!r}; allowed: {', '.join(map(repr, SHIFTS))}."
                          f"{suggest(shift, SHIFTS)}")
    return makers[shift](cfg, n)


def composition_holdout(cfg: CorpusConfig, seed: int = 0,
                        held: tuple[tuple[str, str], ...] | None = None) -> tuple[CorpusConfig, StringSplit]:
    """The corpus trained without some compositions, and the split that names them.

    Build the corpus from the returned config: its string problems never have a held pair
    of transforms adjacent, though each transform is seen. `unseen_compositions` then asks
    for exactly those.
    """
    split = string_split(cfg.strings, "composition", seed, held=held)
    return replace(cfg, strings=split.train), split


def unseen_compositions(cfg: CorpusConfig, split: StringSplit, n: int) -> list[StringProblem]:
    """n test-split string problems whose chain composes a pair the corpus never composed."""
    if split.holdout != "composition":
        raise ConfigError(f"split.holdout is {split.holdout!r}; unseen_compositions needs a "
                          "'composition' split.")
    if cfg.strings != split.train:
        raise ConfigError("cfg.strings is not split.train, so the corpus may contain the 'unseen' "
                          "compositions; build it with composition_holdout(cfg).")
    seed = _shift_seed(cfg.seed, "unseen-compositions")
    test: StringConfig = split.test
    return _test_items(lambda i: string_problem_at(test, seed, i), cfg, n, "shift 'unseen-compositions'")


def render_prompt(problem: WordProblem, lang: Lang, fmt: str = "standard") -> str:
    """The problem's prompt in a format: "standard" is the corpus's "Q: …\\nA:" / "问：…\\n答：";
    "question" ("Question: …\\nAnswer:" / "题目：…\\n解答：") and "inline" (the question then
    " A:" / "答：" on the same line) are phrasings the model never saw: a format shift."""
    q = problem.question(lang)
    if fmt == "standard":
        return problem.prompt(lang)
    if fmt == "question":
        return f"Question: {q}\nAnswer:" if lang == "en" else f"题目：{q}\n解答："
    if fmt == "inline":
        return f"{q} A:" if lang == "en" else f"{q}答："
    raise ConfigError(f"fmt is {fmt!r}; allowed: {', '.join(map(repr, PROMPT_FORMATS))}."
                      f"{suggest(fmt, PROMPT_FORMATS)}")


# The answer cue that makes a base model answer at once: the sentence it always writes last.
ANSWER_CUE = {"en": " The answer is", "zh": "答案是"}
# Where that sentence ends: a full stop not inside a number, or the line.
_SENTENCE_END = re.compile(r"\.(?!\d)|。|\n")


def answer_sentence(text: str) -> str:
    """The text up to the end of its first sentence ("12. 3+4=7." -> "12."; "1.5 more" is kept whole)."""
    return text[: m.end()] if (m := _SENTENCE_END.search(text)) else text


def prompted_answers(model: GPT, tokenizer: Tokenizer, items: Sequence[WordProblem], langs: Sequence[Lang], *,
                     direct: bool = False, fmt: str = "standard", max_new_tokens: int = 48) -> list[str]:
    """A base model's greedy answers to word problems in a prompt format (`render_prompt`).

    With `direct` the prompt ends with the answer cue, so the model must give the number
    without working; the answer is that sentence alone (a base model may go on to write steps
    and answer again, which would no longer be a direct answer), with the cue put back in front,
    so `is_correct` reads both kinds of answer the same way. Item j is asked in `langs[j]`.
    """
    if len(items) != len(langs):
        raise ValueError(f"prompted_answers got {len(items)} problems but {len(langs)} languages.")
    cues = [ANSWER_CUE[lang] if direct else "" for lang in langs]
    prompts = [render_prompt(p, lang, fmt) + cue for p, lang, cue in zip(items, langs, cues, strict=True)]
    texts = complete(model, tokenizer, prompts, max_new_tokens)
    if direct:
        texts = [answer_sentence(t) for t in texts]
    return [cue + text for cue, text in zip(cues, texts, strict=True)]


# ---------------------------------------------------------------- perturbations (GSM-Symbolic)

def _stable_int(obj: object) -> int:
    return int.from_bytes(hashlib.sha256(repr(obj).encode()).digest()[:8], "big")


def rename(problem: WordProblem, seed: int) -> WordProblem:
    """The same problem about another person and item (and another bystander in the clause):
    numbers, operations and phrasing are kept, so the answer is unchanged."""
    return vary(problem, seed, names=True, numbers=False)


def renumber(problem: WordProblem, seed: int, cfg: ArithmeticConfig | None = None,
             tries: int = 100) -> WordProblem:
    """The same story with new numbers from `cfg`'s range; the answer is recomputed (and >= 0).

    At least one number differs from the original; names, operations and phrasing are kept.
    """
    cfg = cfg or ArithmeticConfig()
    for t in range(tries):
        out = vary(problem, _stable_int(("renumber", seed, t)), names=False, numbers=True, cfg=cfg)
        if out != problem:
            return out
    raise ConfigError(f"no renumbering of {problem.key} in [{cfg.low}, {cfg.high}] differs from it.")


def add_clause(problem: WordProblem, seed: int, cfg: ArithmeticConfig | None = None) -> WordProblem:
    """The same problem with one irrelevant clause (a number about someone else) inserted.

    The clause comes after the last step, right before the question: placed mid-story, a clause
    about another person would leave the next step's pronoun ("She loses 6", 「他卖掉了1颗」)
    ambiguous, and the answer open to two readings. The question names the person, so the
    answer does not change; a model that uses every number it sees will get it wrong.
    """
    if problem.distractor is not None:
        raise ValueError(f"problem {problem.key} already has an irrelevant clause; a WordProblem holds one.")
    cfg = cfg or ArithmeticConfig()
    rng = np.random.default_rng([seed, _stable_int(problem.key)])
    other = (problem.person + 1 + int(rng.integers(len(NAMES) - 1))) % len(NAMES)
    clause = Distractor(template=int(rng.integers(len(DISTRACTOR_TEMPLATES))),
                        number=int(rng.integers(cfg.low, cfg.high + 1)),
                        person=other, position=len(problem.steps))
    return replace(problem, distractor=clause)


def perturb(items: Iterable[WordProblem], kind: Perturbation, cfg: CorpusConfig, seed: int = 0,
            tries: int = 256) -> list[tuple[WordProblem, WordProblem]]:
    """(original, variant) pairs whose variant is outside the training split.

    Numbers and clauses come from the corpus's own range, so only the named thing shifts.
    A variant that would fall in the train split is redrawn; a problem with no such variant
    in `tries` draws (a rename has about 49 options) is left out, so compare on the pairs.
    Problems that already have a clause are left out of "clause".
    """
    if kind not in PERTURBATIONS:
        raise ConfigError(f"kind is {kind!r}; allowed: {', '.join(map(repr, PERTURBATIONS))}."
                          f"{suggest(kind, PERTURBATIONS)}")
    make: dict[str, Callable[[WordProblem, int], WordProblem]] = {
        "names": rename,
        "numbers": lambda p, s: renumber(p, s, cfg.arithmetic),
        "clause": lambda p, s: add_clause(p, s, cfg.arithmetic),
    }
    pairs = []
    for problem in items:
        if kind == "clause" and problem.distractor is not None:
            continue
        for t in range(tries):
            variant = make[kind](problem, _stable_int((kind, seed, t)))
            if split_of(variant.key, cfg.holdout_fraction) != "train":
                pairs.append((problem, variant))
                break
    return pairs


# ---------------------------------------------------------------- accuracy by steps

def accuracy_by_steps(items: Sequence[WordProblem], correct: Sequence[bool],
                      z: float = 1.96) -> dict[int, Accuracy]:
    """{number of reasoning steps: accuracy}, ascending: how errors accumulate with length."""
    if len(items) != len(correct):
        raise ValueError(f"accuracy_by_steps got {len(items)} problems but {len(correct)} verdicts.")
    groups: dict[int, list[bool]] = defaultdict(list)
    for problem, ok in zip(items, correct, strict=True):
        groups[len(problem.steps)].append(bool(ok))
    return {steps: Accuracy.from_verdicts(groups[steps], z) for steps in sorted(groups)}


# ---------------------------------------------------------------- leakage guard

class LeakageError(PhasebookError, ValueError):
    """Evaluation items that the model may have been trained on."""


def _leak_message(bad: list[Any], total: int, what: str, cfg: CorpusConfig) -> str:
    shown = "; ".join(repr(item.key) for item in bad[:3])
    return (f"{len(bad)} of {total} evaluation items {what} (holdout_fraction={cfg.holdout_fraction}), "
            f"e.g. {shown}. Draw evaluation items with corpus.problems(cfg, source, 'test', n) or the "
            "shift functions of phasebook.evaluate.cot.")


def assert_disjoint(eval_items: Iterable[Any], corpus: CorpusConfig) -> None:
    """Raise LeakageError if any item's content key falls in the corpus's train split."""
    items = list(eval_items)
    bad = [item for item in items if split_of(item.key, corpus.holdout_fraction) == "train"]
    if bad:
        raise LeakageError(_leak_message(bad, len(items), "fall in the training split", corpus))


def assert_test_split(eval_items: Iterable[Any], corpus: CorpusConfig) -> None:
    """Raise LeakageError unless every item's content key falls in the test split."""
    items = list(eval_items)
    bad = [item for item in items if split_of(item.key, corpus.holdout_fraction) != "test"]
    if bad:
        raise LeakageError(_leak_message(bad, len(items), "are not in the test split", corpus))
