"""Token batches for training: random windows of one long token stream.

Batch `index` is a pure function of (seed, index): resuming at step k reproduces exactly the
batches an uninterrupted run would have seen, and data-parallel ranks split the rows of the
one global batch, so N ranks together see exactly what a single process sees.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch


def pack(token_lists: Iterable[Sequence[int]], eos_id: int) -> np.ndarray:
    """Documents joined into one int32 stream: EOS, doc, EOS, doc, ..., EOS.

    Every document is preceded by EOS, so a model learns how documents start after it:
    prompt it with `[eos_id] + tokenizer.encode(prompt)`.
    """
    parts = [np.array([eos_id], dtype=np.int32)]
    for tokens in token_lists:
        parts.append(np.asarray(tokens, dtype=np.int32))
        parts.append(np.array([eos_id], dtype=np.int32))
    return np.concatenate(parts)


class PackedTokens:
    """A packed token stream and the seed that places its training windows."""

    def __init__(self, tokens: np.ndarray, seed: int):
        if tokens.ndim != 1:
            raise ValueError(f"PackedTokens needs a 1-D token array, got shape {tokens.shape}.")
        self.tokens = tokens
        self.seed = seed

    @property
    def num_tokens(self) -> int:
        return int(self.tokens.shape[0])

    def _windows(self, starts: np.ndarray, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.tokens[starts[:, None] + np.arange(seq_len + 1)].astype(np.int64)
        return torch.from_numpy(rows[:, :-1].copy()), torch.from_numpy(rows[:, 1:].copy())

    def _check(self, seq_len: int) -> None:
        if seq_len < 1 or self.num_tokens < seq_len + 1:
            raise ValueError(f"seq_len {seq_len} needs at least {seq_len + 1} tokens; the stream has "
                             f"{self.num_tokens}. Use a shorter seq_len or more documents.")

    def batch(self, index: int, batch_size: int, seq_len: int, rank: int = 0,
              world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows rank::world_size of global batch `index` (batch_size*world_size random windows).

        Returns (x, y), int64 tensors of shape (batch_size, seq_len) with y = x shifted by one.
        """
        self._check(seq_len)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside [0, {world_size}).")
        rng = np.random.default_rng([self.seed, index])
        starts = rng.integers(0, self.num_tokens - seq_len, size=batch_size * world_size)
        return self._windows(starts[rank::world_size], seq_len)

    def sequential(self, batch_size: int, seq_len: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Non-overlapping windows covering the stream in order (for evaluation loss)."""
        self._check(seq_len)
        starts = np.arange(0, self.num_tokens - seq_len, seq_len)
        for k in range(0, len(starts), batch_size):
            yield self._windows(starts[k:k + batch_size], seq_len)
