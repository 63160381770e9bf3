"""Does a model know a fact? Rank every possible value of an attribute by its likelihood.

The probe is a statement prefix from the pre-training templates ("Kalo lives in" / 「卡洛住在」)
followed by each candidate value; the model "knows" the fact when the true value is the most
likely continuation. Chance is one over the number of values, and entities absent from
pre-training show what chance looks like for this model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from phasebook.data.facts import CITIES, COLOURS, FACT_TEMPLATES, PROFESSIONS, Entity
from phasebook.data.tokenizer import Tokenizer
from phasebook.evaluate.lm import completion_logprobs
from phasebook.model import GPT

CHOICES = {"city": CITIES, "profession": PROFESSIONS, "colour": COLOURS}


def _probe(attribute: str, entity: Entity, lang: str, value: str) -> tuple[str, str]:
    """(prompt, continuation) of the attribute's first template, split before the value."""
    template = FACT_TEMPLATES[attribute][0][0 if lang == "en" else 1]
    cut = template.index("{", len("{name}"))
    if lang == "en":  # the space before the value (or its article) belongs to the continuation
        cut -= 1
    article = "an" if value[0] in "aeiou" else "a"
    prompt = template[:cut].format(name=entity.name(lang))
    return prompt, template[cut:].format(value=value, article=article)


def fact_recall(model: GPT, tokenizer: Tokenizer, entities: Sequence[Entity], lang: str,
                attributes: Sequence[str] = ("city", "profession", "colour")) -> dict[str, float]:
    """Share of (entity, attribute) pairs whose true value is the model's most likely choice."""
    out = {}
    for attribute in attributes:
        table = CHOICES[attribute]
        prompts, continuations = [], []
        for e in entities:
            for value in table:
                p, c = _probe(attribute, e, lang, value[0 if lang == "en" else 1])
                prompts.append(p)
                continuations.append(c)
        sums, _ = completion_logprobs(model, tokenizer, prompts, continuations)
        picks = sums.reshape(len(entities), len(table)).argmax(axis=1)
        truth = np.array([getattr(e, attribute) for e in entities])
        out[attribute] = float((picks == truth).mean())
    return out
