"""The bilingual synthetic world (arithmetic, letter strings, facts, general text) and its tokenizer.

Everything is a deterministic function of a seed, and every item renders the same content in
English and in Chinese.
"""

from __future__ import annotations

from phasebook.data.arithmetic import (
    ArithmeticConfig,
    Distractor,
    WordProblem,
    extract_answer,
    generate_problems,
    problem_at,
    vary,
)
from phasebook.data.corpus import (
    CorpusConfig,
    Document,
    MixtureConfig,
    corpus_digest,
    documents,
    fact_world,
    problems,
    split_of,
)
from phasebook.data.facts import QA, Biography, Entity, FactsConfig, FactWorld
from phasebook.data.general import GeneralDocument, general_document, general_item
from phasebook.data.packing import PackedTokens, pack
from phasebook.data.strings import (
    TRANSFORMS,
    StringConfig,
    StringProblem,
    StringSplit,
    extract_string_answer,
    generate_string_problems,
    string_problem_at,
    string_split,
)
from phasebook.data.tokenizer import SPECIAL_TOKENS, Tokenizer, train_tokenizer

__all__ = [
    "QA", "SPECIAL_TOKENS", "TRANSFORMS", "ArithmeticConfig", "Biography", "CorpusConfig", "Distractor",
    "Document", "Entity", "FactWorld", "FactsConfig", "GeneralDocument", "MixtureConfig", "PackedTokens",
    "StringConfig", "StringProblem", "StringSplit", "Tokenizer", "WordProblem", "corpus_digest",
    "documents", "extract_answer", "extract_string_answer", "fact_world", "general_document",
    "general_item", "generate_problems", "generate_string_problems", "pack", "problem_at", "problems",
    "split_of", "string_problem_at", "string_split", "train_tokenizer", "vary",
]
