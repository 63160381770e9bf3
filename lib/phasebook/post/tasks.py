"""Post-training tasks from the synthetic world: chat prompts with a gold response and a verifier.

Two kinds, both bilingual:

- "math": a word problem of the corpus (its story and question, without the pre-training
  cues "Q:"/"A:"), answered with one equation per step and "The answer is N." / 「答案是N。」.
  The answer is checked exactly: a verifiable reward.
- "fact": a question about one attribute of a fictional person ("Where does Kalo live?"),
  answered with the value ("Brinmoor." / 「布林穆尔。」). Pre-training read biographies of the
  *present* people only, so a question about an *absent* one has no answer the model could know.

Items come from the corpus's own splits (a word problem's split is a hash of its content), so
evaluation items on the test split never appear in pre-training or in post-training data drawn
from the train split.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from phasebook.data import ArithmeticConfig, CorpusConfig, WordProblem, extract_answer, fact_world, problems
from phasebook.data.corpus import Split
from phasebook.data.facts import ATTRIBUTES, QUESTIONS, Entity
from phasebook.post.chat import Example

Kind = Literal["math", "fact"]
# The whole of a well-formed math response: equations, then the answer sentence, nothing after.
_MATH_FORMAT = {"en": re.compile(r"^(?:\d+[+\-×]\d+=-?\d+\. )*The answer is -?\d+\.$"),
                "zh": re.compile(r"^(?:\d+[+\-×]\d+=-?\d+。)*答案是-?\d+。$")}


@dataclass(frozen=True)
class Item:
    """A prompt with its gold response and the answer a verifier checks for."""

    kind: Kind
    lang: str
    prompt: str
    response: str  # the gold response (worked steps for math)
    answer: str  # math: the number as digits; fact: the value as written in `lang`
    source: Any = None  # the WordProblem, or (Entity, attribute)

    def example(self, response: str | None = None) -> Example:
        """This item as an SFT exchange, with the gold response or another one."""
        return Example(self.prompt, self.response if response is None else response, self.lang)


def math_item(problem: WordProblem, lang: str, cot: bool = True) -> Item:
    """A word problem as a chat item; `cot` = the gold response shows one equation per step."""
    return Item("math", lang, problem.question(lang), problem.completion(lang, cot=cot).strip(),
                str(problem.answer), problem)


def math_items(corpus: CorpusConfig, split: Split, n: int, *, arithmetic: ArithmeticConfig | None = None,
               cot: bool = True) -> list[Item]:
    """The first n word problems of `split`, languages alternating (item j in corpus language
    j mod L). `arithmetic` draws from another problem distribution (more steps, larger numbers)
    with the same split rule, so its test items are still disjoint from its train items."""
    if arithmetic is not None:
        corpus = dataclasses.replace(corpus, arithmetic=arithmetic)
    langs = corpus.languages
    return [math_item(p, langs[j % len(langs)], cot)
            for j, p in enumerate(problems(corpus, "math", split, n))]


def fact_item(entity: Entity, attribute: str, lang: str) -> Item:
    """A question about one attribute of `entity`, answered with its value and a full stop."""
    (q_en, _), (q_zh, _) = QUESTIONS[attribute]
    value = entity.value(attribute, lang)  # type: ignore[arg-type]
    name = entity.name(lang)  # type: ignore[arg-type]
    if lang == "en":
        return Item("fact", lang, q_en.format(name=name), f"{value}.", value, (entity, attribute))
    answer = f"{value}年" if attribute == "birth_year" else value
    return Item("fact", lang, q_zh.format(name=name), f"{answer}。", answer, (entity, attribute))


def fact_items(corpus: CorpusConfig, which: Literal["present", "absent"], attributes: Sequence[str],
               langs: Sequence[str] | None = None, entities: slice = slice(None)) -> list[Item]:
    """Questions about the `present` (pre-training read their biographies) or `absent` people,
    `entities` of them in world order, one per attribute and language."""
    world = fact_world(corpus)
    people = (world.present if which == "present" else world.absent)[entities]
    for a in attributes:
        if a not in ATTRIBUTES:
            raise ValueError(f"attribute {a!r}; allowed: {', '.join(ATTRIBUTES)}.")
    return [fact_item(e, a, lang) for e in people for a in attributes for lang in (langs or corpus.languages)]


def is_correct(item: Item, response: str) -> bool:
    """The verifier: math — the number after the last "The answer is" / 「答案是」
    (`data.extract_answer`) equals the answer;
    fact — the response, without its closing full stop and spaces, is exactly the value."""
    if item.kind == "math":
        return str(extract_answer(response, item.lang)) == item.answer  # type: ignore[arg-type]
    return response.strip().rstrip(".。").strip() == item.answer


def is_well_formed(item: Item, response: str) -> bool:
    """The format check: math — equations, then the answer sentence, nothing else; fact — a
    single short phrase ending in a full stop."""
    text = response.strip()
    if item.kind == "math":
        return _MATH_FORMAT[item.lang].match(text) is not None
    return text.endswith("." if item.lang == "en" else "。") and "\n" not in text and len(text) <= 40
