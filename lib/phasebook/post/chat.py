"""The chat template: how a prompt and a response become token ids, and which ids carry the loss.

One exchange, in token ids:

    EOS <|user|> prompt <|end|> <|assistant|> response <|end|>

- It opens with EOS, as every pre-training document does, so the model starts a chat from the
  state it starts any text from, and a packed row splits into exchanges at its EOS tokens.
- The template has no words, only the tokenizer's special tokens, so it is the same in English
  and Chinese: the language of a conversation is the language of its text.
- Prompt and response are tokenised separately and concatenated. Byte-level BPE could otherwise
  merge the last bytes of a prompt with the first of a response, and the response's tokens would
  not be the ones the model must produce on its own.
- The loss covers every response token, the first included, and the closing <|end|>, which is
  the end of the sequence: a model that never learns to write it never stops. The prompt, the
  role tokens before the response and padding carry none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from phasebook.data import Tokenizer
from phasebook.errors import PhasebookError
from phasebook.model import IGNORE_INDEX


@dataclass(frozen=True)
class Example:
    """One exchange: what the user writes and what the assistant should answer."""

    prompt: str
    response: str
    lang: str = "en"


def prompt_ids(tokenizer: Tokenizer, prompt: str) -> list[int]:
    """EOS <|user|> prompt <|end|> <|assistant|>: what a model is given to answer."""
    return [tokenizer.eos_id, tokenizer.user_id, *tokenizer.encode(prompt), tokenizer.end_id,
            tokenizer.assistant_id]


def response_ids(tokenizer: Tokenizer, response: str) -> list[int]:
    """response <|end|>: what the model must write, its end included."""
    return [*tokenizer.encode(response), tokenizer.end_id]


def encode(tokenizer: Tokenizer, example: Example) -> tuple[list[int], list[int]]:
    """(token ids, loss mask): the mask is 1 on exactly the response tokens and the closing <|end|>."""
    p, r = prompt_ids(tokenizer, example.prompt), response_ids(tokenizer, example.response)
    return p + r, [0] * len(p) + [1] * len(r)


def response_text(tokenizer: Tokenizer, ids: Sequence[int]) -> str:
    """The text of generated ids up to the first <|end|> (or EOS), which is not included."""
    out = []
    for token in ids:
        if token in (tokenizer.end_id, tokenizer.eos_id):
            break
        out.append(token)
    return tokenizer.decode(out)


def finished(tokenizer: Tokenizer, ids: Sequence[int]) -> bool:
    """Whether generated ids close the turn with <|end|> (a response cut off by the length limit does not)."""
    return tokenizer.end_id in ids


def pack(encoded: Sequence[tuple[list[int], list[int]]], seq_len: int, pad_id: int,
         ) -> tuple[np.ndarray, np.ndarray]:
    """Pack encoded exchanges, in order, into rows of seq_len inputs and targets (first fit).

    Returns (inputs, targets), each (rows, seq_len). Targets are the next token where the next
    token carries loss, else IGNORE_INDEX, so no loss crosses from one exchange into the next and
    padding has none. An exchange always fits whole in one row; each opens with EOS, which is how
    `segments_and_positions` tells the exchanges of a row apart.
    """
    limit = seq_len + 1  # a row of inputs predicts one token past its end
    rows: list[list[tuple[list[int], list[int]]]] = []
    room: list[int] = []
    for i, (ids, mask) in enumerate(encoded):
        if len(ids) > limit:
            raise PhasebookError(f"exchange {i} has {len(ids)} tokens; a packed row holds {limit} "
                                 f"(seq_len + 1): raise seq_len or shorten the exchange.")
        for r, free in enumerate(room):
            if len(ids) <= free:
                rows[r].append((ids, mask))
                room[r] -= len(ids)
                break
        else:
            rows.append([(ids, mask)])
            room.append(limit - len(ids))
    inputs = np.full((len(rows), limit), pad_id, dtype=np.int64)
    targets = np.full((len(rows), limit), IGNORE_INDEX, dtype=np.int64)
    for r, row in enumerate(rows):
        at = 0
        for ids, mask in row:
            n = len(ids)
            inputs[r, at:at + n] = ids
            targets[r, at:at + n] = np.where(np.array(mask) == 1, ids, IGNORE_INDEX)
            at += n
    # Input t predicts token t + 1: shift the targets left by one.
    return inputs[:, :-1], targets[:, 1:]


def segments_and_positions(ids: Tensor, eos_id: int) -> tuple[Tensor, Tensor]:
    """Segment ids and RoPE positions of packed rows (B, T): a new segment at every EOS, and
    positions counting from 0 at each segment's start, so a packed exchange sees exactly what it
    would see alone. Tokens before a row's first EOS form segment 0."""
    starts = ids == eos_id
    segments = starts.long().cumsum(dim=1)
    t = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
    start_of_segment = torch.where(starts, t, torch.zeros_like(t)).cummax(dim=1).values
    return segments, t - start_of_segment


class EpochOrder:
    """Which of `n` rows each sample of a post-training batch source reads.

    Sample s is row perm_e[s mod n] of epoch e = s // n, with a fresh permutation per epoch drawn
    from (seed, e). Micro-batch `index` holds samples index·B·W … (B rows per rank, W ranks) and
    rank r takes every W-th of them, so a step reads the same rows whatever the batch split, the
    world size or a resume.
    """

    def __init__(self, n: int, seed: int = 0):
        self.n, self.seed = n, seed
        self._perms: dict[int, np.ndarray] = {}

    def row(self, sample: int) -> int:
        epoch, at = divmod(sample, self.n)
        if epoch not in self._perms:
            self._perms[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return int(self._perms[epoch][at])

    def rows(self, index: int, batch_size: int, rank: int = 0, world_size: int = 1) -> list[int]:
        """The rows rank `rank` reads for micro-batch `index`."""
        first = index * batch_size * world_size
        return [self.row(first + rank + k * world_size) for k in range(batch_size)]
