"""Rejection sampling: the model writes its own SFT data, and the verifier keeps what is right.

Best-of-N as in Llama 2's rejection-sampling fine-tuning and STaR: sample N responses per
prompt, keep one that the task's verifier accepts (correct answer, well-formed, turn closed),
drop the prompts with none. The kept exchanges are ordinary SFT data (`SFTData.extra`, or
`sft(..., start=...)` from the model that wrote them). The share of prompts that keep a sample
is the yield: it is pass@N of the sampling model on those prompts, and it says how much data a
round of rejection sampling buys.
"""

from __future__ import annotations

from collections.abc import Sequence

from phasebook.data import Tokenizer
from phasebook.model import GPT
from phasebook.post.chat import Example
from phasebook.post.sampling import sample
from phasebook.post.tasks import Item


def rejection_sample(model: GPT, tokenizer: Tokenizer, items: Sequence[Item], n: int,
                     temperature: float = 1.0, seed: int = 0, max_new_tokens: int = 48) -> list[Example]:
    """One verified exchange per item whose `n` samples include one: the first sample (in
    sampling order) that is both correct and well-formed, as the item's prompt and the model's
    own response. The yield is len(result) / len(items)."""
    drawn = sample(model, tokenizer, items, n, temperature=temperature, max_new_tokens=max_new_tokens,
                   seed=seed)
    accepted = drawn.correct & drawn.well_formed
    kept = []
    for i, item in enumerate(items):
        good = accepted[i].nonzero()[0]
        if len(good):
            kept.append(item.example(drawn.texts[i][int(good[0])]))
    return kept
