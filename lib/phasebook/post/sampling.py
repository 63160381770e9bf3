"""Answers a chat model writes: sampling with the KV cache, scoring with the task's verifier.

Every post-training stage samples: rejection sampling keeps the best of N, DPO pairs a correct
answer with a wrong one, GRPO learns from groups of samples, and pass@k counts how many of k
samples are right. They all use `sample`, so the prompts, stopping rule and seeding are the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from phasebook.data import Tokenizer
from phasebook.model import GPT, generate
from phasebook.post.chat import finished, prompt_ids, response_text
from phasebook.post.tasks import Item, is_correct, is_well_formed


@dataclass(frozen=True)
class Samples:
    """n responses to each of a list of items: token ids (up to and including <|end|> when the
    model closed its turn), their text, and the verifier's verdicts, each indexed [item][sample]."""

    ids: list[list[list[int]]]
    texts: list[list[str]]
    correct: np.ndarray  # (items, n) bool
    well_formed: np.ndarray  # (items, n) bool: the format check, and the turn closed with <|end|>

    @property
    def accuracy(self) -> float:
        """Share of all samples that are correct (pass@1 estimated from every sample)."""
        return float(self.correct.mean())


def sample(model: GPT, tokenizer: Tokenizer, items: Sequence[Item], n: int = 1, *, temperature: float = 1.0,
           max_new_tokens: int = 48, seed: int = 0, batch_size: int = 256) -> Samples:
    """`n` responses per item from the chat prompt, with the KV cache; temperature 0 is greedy.

    Rows are item-major (item 0's n samples, then item 1's …) and drawn in batches of
    `batch_size` rows from one generator seeded with `seed`, so the same call gives the same
    samples. A response ends at <|end|> or after `max_new_tokens`.
    """
    if n < 1:
        raise ValueError(f"n is {n}; sample at least one response per item.")
    prompts = [prompt_ids(tokenizer, it.prompt) for it in items for _ in range(n)]
    generator = torch.Generator().manual_seed(seed)
    new: list[list[int]] = []
    for start in range(0, len(prompts), batch_size):
        new.extend(generate(model, prompts[start:start + batch_size], max_new_tokens, temperature=temperature,
                            stop_tokens=(tokenizer.end_id, tokenizer.eos_id), pad_id=tokenizer.pad_id,
                            generator=generator))
    ids = [new[i * n:(i + 1) * n] for i in range(len(items))]
    texts = [[response_text(tokenizer, r) for r in rows] for rows in ids]
    correct = np.array([[is_correct(it, t) for t in rows] for it, rows in zip(items, texts, strict=True)],
                       dtype=bool).reshape(len(items), n)
    formed = np.array([[is_well_formed(it, t) and finished(tokenizer, r)
                        for t, r in zip(rows, id_rows, strict=True)]
                       for it, rows, id_rows in zip(items, texts, ids, strict=True)],
                      dtype=bool).reshape(len(items), n)
    return Samples(ids, texts, correct, formed)
