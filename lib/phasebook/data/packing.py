"""Token batches for training: random windows of one long token stream.

Training sample j is a window whose start is a hash of (seed, j), and batch `index` holds a
contiguous range of sample numbers. So resuming at step k reproduces exactly the batches an
uninterrupted run would have seen, and splitting a batch into micro-batches (gradient
accumulation) or among data-parallel ranks changes nothing about which samples are seen.
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

    def window_starts(self, samples: np.ndarray, seq_len: int) -> np.ndarray:
        """Start offset of each training sample: a hash of (seed, sample number).

        Sample j's window depends on nothing else, so any split of a batch (micro-batches for
        gradient accumulation, ranks for data parallelism) sees exactly the same samples.
        """
        x = samples.astype(np.uint64) + np.uint64(self.seed * 0x9E3779B97F4A7C15 % 2**64)
        # splitmix64's finaliser; uint64 arithmetic wraps, which is what the mixing relies on
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
        return (x % np.uint64(self.num_tokens - seq_len)).astype(np.int64)

    def batch(self, index: int, batch_size: int, seq_len: int, rank: int = 0,
              world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows rank::world_size of global batch `index`, which holds samples
        index·G … (index+1)·G − 1 with G = batch_size·world_size.

        Returns (x, y), int64 tensors of shape (batch_size, seq_len) with y = x shifted by one.
        """
        self._check(seq_len)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside [0, {world_size}).")
        size = batch_size * world_size
        samples = np.arange(index * size, (index + 1) * size)[rank::world_size]
        return self._windows(self.window_starts(samples, seq_len), seq_len)

    def sequential(self, batch_size: int, seq_len: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Non-overlapping windows covering the stream in order (for evaluation loss)."""
        self._check(seq_len)
        starts = np.arange(0, self.num_tokens - seq_len, seq_len)
        for k in range(0, len(starts), batch_size):
            yield self._windows(starts[k:k + batch_size], seq_len)
