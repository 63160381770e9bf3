"""Byte-level BPE tokenizer (HuggingFace `tokenizers`), trained on the synthetic corpus.

Byte level with all 256 byte symbols in the initial alphabet, and no normalizer, so every
UTF-8 string round-trips exactly: `decode(encode(s)) == s`. Special tokens (BOS, EOS, PAD and
the chat tokens reserved for post-training) have fixed ids 0..5 and are never produced from
text: `encode("<|eos|>")` yields the ordinary bytes of that string, so text (a user message,
a model's output) cannot smuggle in a control token. Insert special ids by id.

Digits are split one per token before the byte-level step (as Llama and DeepSeek do): "25"
is two tokens, so a small model sees arithmetic digit by digit instead of as opaque numbers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from phasebook.validation import ConfigError

if TYPE_CHECKING:  # imported where used, so the rest of phasebook.data works without `tokenizers`
    from tokenizers import Tokenizer as HFTokenizer

SPECIAL_TOKENS = ("<|bos|>", "<|eos|>", "<|pad|>", "<|user|>", "<|assistant|>", "<|end|>")
MIN_VOCAB = 256 + len(SPECIAL_TOKENS)


class Tokenizer:
    """A trained byte-level BPE tokenizer with the phasebook special tokens."""

    def __init__(self, tokenizer: HFTokenizer):
        self._tok = tokenizer
        self._tok.encode_special_tokens = True  # not serialised, so set on every construction
        ids = [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS]
        if ids != list(range(len(SPECIAL_TOKENS))):
            raise ValueError(f"not a phasebook tokenizer: special tokens {SPECIAL_TOKENS} have ids {ids}.")
        self.bos_id, self.eos_id, self.pad_id, self.user_id, self.assistant_id, self.end_id = ids

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`; special ids appear as their strings, e.g. "<|eos|>"."""
        return self._tok.decode(list(ids), skip_special_tokens=False)

    def token(self, token_id: int) -> str | None:
        """The vocabulary entry of an id (byte-level symbols), for inspection."""
        return self._tok.id_to_token(token_id)

    def to_json(self) -> str:
        return self._tok.to_str()

    @classmethod
    def from_json(cls, s: str) -> Tokenizer:
        from tokenizers import Tokenizer as HFTokenizer

        return cls(HFTokenizer.from_str(s))

    @property
    def digest(self) -> str:
        """sha256 of the JSON: identifies the tokenizer (and the token ids a model was trained on)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train BPE on `texts`; deterministic (same texts, same JSON).

    The vocabulary can come out smaller than `vocab_size` when the texts run out of pairs to
    merge; read `Tokenizer.vocab_size` for the model's embedding size.
    """
    if not isinstance(vocab_size, int) or vocab_size < MIN_VOCAB:
        raise ConfigError(f"vocab_size is {vocab_size!r}; must be an integer >= {MIN_VOCAB} "
                          "(256 bytes and the special tokens).")
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return Tokenizer(tok)
