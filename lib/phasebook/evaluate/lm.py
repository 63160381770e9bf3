"""Likelihood and generation scores of a language model on the synthetic world's text.

Two views of the same model: how much probability it gives a known text (smooth: bits per
byte, log-probability of a gold answer) and what it writes when asked (sharp: the exact answer
or not). Every prompt starts with EOS, as every document does in the packed pre-training stream.
"""

from __future__ import annotations

import lzma
import math
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from phasebook.data import Tokenizer
from phasebook.model import GPT, IGNORE_INDEX, generate, token_logprobs


def _batches(n: int, size: int) -> list[range]:
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


@torch.no_grad()
def _masked_logprobs(model: GPT, seqs: list[list[int]], masks: list[list[int]], pad_id: int,
                     batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per sequence: (sum of log-probs of the tokens whose mask is 1, how many there are).

    A token's mask says whether it is scored; the first token of a sequence never is (nothing
    predicts it). Sequences longer than the context keep their end.
    """
    model.eval()
    device = next(model.parameters()).device
    limit = model.cfg.max_seq_len + 1
    sums, counts = np.zeros(len(seqs)), np.zeros(len(seqs), dtype=np.int64)
    for rows in _batches(len(seqs), batch_size):
        cut = [(seqs[i][-limit:], masks[i][-limit:]) for i in rows]
        width = max(len(s) for s, _ in cut) - 1
        idx = torch.full((len(cut), width), pad_id, dtype=torch.long)
        tgt = torch.full((len(cut), width), IGNORE_INDEX, dtype=torch.long)
        for r, (seq, mask) in enumerate(cut):
            n = len(seq) - 1
            idx[r, :n] = torch.tensor(seq[:-1])
            tgt[r, :n] = torch.where(torch.tensor(mask[1:]) == 1, torch.tensor(seq[1:]), IGNORE_INDEX)
        lp = token_logprobs(model, idx.to(device), tgt.to(device)).cpu()
        for r, i in enumerate(rows):
            sums[i] = float(lp[r].sum())
            counts[i] = int((tgt[r] != IGNORE_INDEX).sum())
    return sums, counts


def completion_logprobs(model: GPT, tokenizer: Tokenizer, prompts: Sequence[str],
                        completions: Sequence[str], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(sum of log p(completion tokens | EOS + prompt), number of completion tokens) per pair.

    Prompt and completion are tokenized separately and concatenated, so the completion's
    tokens are exactly the ones scored.
    """
    seqs, masks = [], []
    for prompt, completion in zip(prompts, completions, strict=True):
        p, c = [tokenizer.eos_id, *tokenizer.encode(prompt)], tokenizer.encode(completion)
        seqs.append(p + c)
        masks.append([0] * len(p) + [1] * len(c))
    return _masked_logprobs(model, seqs, masks, tokenizer.pad_id, batch_size)


def complete(model: GPT, tokenizer: Tokenizer, prompts: Sequence[str], max_new_tokens: int = 48, *,
             temperature: float = 0.0, batch_size: int = 128, seed: int = 0) -> list[str]:
    """The model's continuation of each prompt up to the end of its line (greedy by default)."""
    generator = torch.Generator().manual_seed(seed)
    out: list[str] = []
    for rows in _batches(len(prompts), batch_size):
        ids = [[tokenizer.eos_id, *tokenizer.encode(prompts[i])] for i in rows]
        new = generate(model, ids, max_new_tokens, temperature=temperature, stop_tokens=(tokenizer.eos_id,),
                       pad_id=tokenizer.pad_id, generator=generator)
        out.extend(tokenizer.decode([t for t in n if t != tokenizer.eos_id]).split("\n")[0] for n in new)
    return out


def score_answers(model: GPT, tokenizer: Tokenizer, items: Sequence[Any], lang: str,
                  extract: Callable[[str, str], Any], *, cot: bool = True,
                  max_new_tokens: int = 48) -> dict[str, Any]:
    """Exact-match accuracy and gold-answer likelihood of `items` (word or string problems).

    `extract(text, lang)` pulls the final answer out of a completion; an item is correct when
    it equals `item.answer`. Also returns the mean per-token log-probability of the gold
    completion, the smooth counterpart of the same test.
    """
    prompts = [it.prompt(lang) for it in items]
    golds = [it.completion(lang, cot=cot) for it in items]
    texts = complete(model, tokenizer, prompts, max_new_tokens)
    correct = np.array([extract(t, lang) == it.answer for t, it in zip(texts, items, strict=True)])
    sums, counts = completion_logprobs(model, tokenizer, prompts, golds)
    return {"accuracy": float(correct.mean()), "correct": correct, "completions": texts,
            "gold_logprob": sums, "gold_tokens": counts,
            "mean_token_logprob": float(sums.sum() / max(counts.sum(), 1))}


def bits_per_byte(model: GPT, tokenizer: Tokenizer, texts: Sequence[str], batch_size: int = 64) -> float:
    """Cross-entropy of the texts in bits per UTF-8 byte: the model as a compressor.

    Each text is scored as a document of the pre-training stream (EOS, text, EOS): the closing
    EOS is paid for, as a compressor pays to mark where a file ends.
    """
    seqs = [[tokenizer.eos_id, *tokenizer.encode(t), tokenizer.eos_id] for t in texts]
    masks = [[0] + [1] * (len(s) - 1) for s in seqs]
    sums, _ = _masked_logprobs(model, seqs, masks, tokenizer.pad_id, batch_size)
    total_bytes = sum(len(t.encode("utf-8")) for t in texts)
    return float(-sums.sum() / math.log(2) / total_bytes)


def compressor_bits_per_byte(texts: Sequence[str]) -> dict[str, float]:
    """Bits per byte of general-purpose compressors on the same texts, joined as one file."""
    blob = "\n".join(texts).encode("utf-8")
    return {"zlib": 8 * len(zlib.compress(blob, 9)) / len(blob),
            "xz": 8 * len(lzma.compress(blob, preset=9 | lzma.PRESET_EXTREME)) / len(blob)}
