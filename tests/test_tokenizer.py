"""Byte-level BPE: exact round trips, inert special-token strings, determinism, compression."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phasebook.data import SPECIAL_TOKENS, CorpusConfig, MixtureConfig, Tokenizer, documents, train_tokenizer
from phasebook.validation import ConfigError

CORPUS = CorpusConfig(n_documents=2000, eval_documents=200,
                      mixture=MixtureConfig(general=0.3, math=0.3, strings=0.2, facts=0.2))


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return train_tokenizer([d.text for d in documents(CORPUS, "train")], vocab_size=800)


# Arbitrary unicode, spiced with the strings most likely to break a round trip.
PIECES = st.one_of(st.text(), st.sampled_from(
    [*SPECIAL_TOKENS, "<|eos", "|>", "\n", "\r\n", "  ", " 12", "米娅有3个苹果。", "😀", "\u200b", "\x00"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(PIECES, max_size=8).map("".join))
def test_decode_inverts_encode_and_text_never_yields_special_ids(tok, text):
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert not set(ids) & set(range(len(SPECIAL_TOKENS)))


def test_special_tokens_have_fixed_ids_and_are_inserted_by_id_only(tok):
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (0, 1, 2)
    assert (tok.user_id, tok.assistant_id, tok.end_id) == (3, 4, 5)
    assert tok.decode([tok.eos_id]) == "<|eos|>"
    assert tok.eos_id not in tok.encode("<|eos|>")
    ids = [tok.user_id, *tok.encode("你好"), tok.end_id]
    assert tok.decode(ids) == "<|user|>你好<|end|>"


def test_digits_are_single_tokens(tok):
    assert len(tok.encode("1234567")) == 7
    assert tok.encode_batch(["3+4=7", "答案是5。"]) == [tok.encode("3+4=7"), tok.encode("答案是5。")]


def test_training_is_deterministic_across_processes_and_json_round_trips(tok):
    texts = [d.text for d in documents(CORPUS, "train")][:500]
    code = ("import sys; from phasebook.data import train_tokenizer; "
            "print(train_tokenizer(sys.stdin.read().split('\\x1e'), 600).digest)")
    runs = {subprocess.run([sys.executable, "-c", code], input="\x1e".join(texts), text=True,
                           capture_output=True, check=True).stdout.strip() for _ in range(2)}
    assert runs == {train_tokenizer(texts, 600).digest}
    again = Tokenizer.from_json(tok.to_json())
    assert again.digest == tok.digest and again.vocab_size == tok.vocab_size
    sample = "Q: Kalo <|eos|> 卡洛住在哪里？\n答："
    assert again.encode(sample) == tok.encode(sample)
    assert train_tokenizer(texts[:-1], 600).digest != runs.pop()


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_tokenizer_compresses_held_out_text_in_both_languages(tok, lang):
    texts = [d.text for d in documents(CORPUS, "validation") if d.lang == lang]
    n_bytes = sum(len(t.encode()) for t in texts)
    n_tokens = sum(len(ids) for ids in tok.encode_batch(texts))
    assert n_bytes / n_tokens > 1.5
    assert 262 < tok.vocab_size <= 800


def test_vocab_size_too_small_is_a_config_error():
    with pytest.raises(ConfigError, match="vocab_size"):
        train_tokenizer(["abc"], 100)
