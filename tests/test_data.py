"""The synthetic world: arithmetic, strings, facts, general text, corpus splits and packing."""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections import Counter

import numpy as np
import pytest
import torch

from phasebook.data import (
    ArithmeticConfig,
    CorpusConfig,
    FactsConfig,
    FactWorld,
    MixtureConfig,
    PackedTokens,
    StringConfig,
    StringProblem,
    WordProblem,
    corpus_digest,
    documents,
    extract_answer,
    extract_string_answer,
    fact_world,
    general_document,
    generate_problems,
    generate_string_problems,
    pack,
    problem_at,
    problems,
    split_of,
    string_split,
    vary,
)
from phasebook.data.strings import TRANSFORMS, chains
from phasebook.validation import ConfigError, from_mapping

ALL_OPS = ArithmeticConfig(min_ops=1, max_ops=3, operations=("+", "-", "*"), distractor_rate=0.5)
ZH_FORBIDDEN = re.compile(r"[ A-Za-z,.?:]")  # half-width punctuation, spaces or Latin letters


def _numbers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", text)]


# ---------------------------------------------------------------- arithmetic

def test_word_problem_renders_the_same_problem_in_both_languages():
    p = WordProblem(person=0, item=0, start=3, steps=(("+", 4), ("-", 2)), phrasing=(0, 0))
    assert p.render("en") == ("Q: Mia has 3 apples. She buys 4 more. She gives 2 to a friend. "
                              "How many apples does Mia have now?\nA: 3+4=7. 7-2=5. The answer is 5.\n")
    assert p.render("zh") == ("问：米娅有3个苹果。她又买了4个。她送给朋友2个。米娅现在有多少个苹果？\n"
                              "答：3+4=7。7-2=5。答案是5。\n")
    assert p.completion("en", cot=False) == " The answer is 5."
    assert p.completion("zh", cot=False) == "答案是5。"
    assert p.values == (3, 7, 5) and p.answer == 5


def test_generated_problems_respect_the_config_and_their_worked_steps_are_right():
    cfg = ArithmeticConfig(min_ops=2, max_ops=3, low=2, high=7, operations=("+", "-", "*"))
    for p in generate_problems(cfg, 1500, seed=3):
        assert 2 <= len(p.steps) <= 3
        assert cfg.low <= p.start <= cfg.high
        assert all(cfg.low <= n <= cfg.high for _, n in p.steps)
        assert min(p.values) >= 0  # subtraction never goes below zero
        for lang in ("en", "zh"):
            for cot in (True, False):
                assert extract_answer(p.completion(lang, cot), lang) == p.answer
        equations = re.findall(r"(\d+)([+\-×])(\d+)=(\d+)", p.completion("en"))
        assert len(equations) == len(p.steps)
        for a, op, b, c in equations:
            assert {"+": int(a) + int(b), "-": int(a) - int(b), "×": int(a) * int(b)}[op] == int(c)


def test_english_and_chinese_state_the_same_numbers_and_chinese_is_full_width():
    for p in generate_problems(ALL_OPS, 400, seed=1):
        assert _numbers(p.prompt("en")) == _numbers(p.prompt("zh"))
        assert _numbers(p.completion("en")) == _numbers(p.completion("zh"))
        zh = p.prompt("zh")
        assert zh.startswith("问：") and zh.endswith("？\n答：")
        assert not ZH_FORBIDDEN.search(zh), zh
        assert p.prompt("en").startswith("Q: ") and p.prompt("en").endswith("?\nA:")


def test_distractors_change_the_question_but_not_the_answer():
    cfg = dataclasses.replace(ALL_OPS, distractor_rate=1.0)
    for p in generate_problems(cfg, 300, seed=2):
        assert p.distractor is not None
        plain = dataclasses.replace(p, distractor=None)
        assert p.answer == plain.answer and p.completion("zh") == plain.completion("zh")
        assert p.prompt("zh").count("。") == plain.prompt("zh").count("。") + 1
        assert str(p.distractor.number) in p.prompt("en")
    rate = np.mean([p.distractor is not None for p in generate_problems(
        dataclasses.replace(ALL_OPS, distractor_rate=0.3), 2000, seed=4)])
    assert 0.26 < rate < 0.34
    assert all(p.distractor is None for p in generate_problems(ArithmeticConfig(), 300, seed=4))


def test_problem_stream_is_random_access_and_seeded():
    batch = generate_problems(ALL_OPS, 20, seed=7)
    assert batch[13] == problem_at(ALL_OPS, 7, 13) == generate_problems(ALL_OPS, 1, seed=7, start=13)[0]
    assert batch != generate_problems(ALL_OPS, 20, seed=8)


def test_vary_keeps_template_and_operations_and_swaps_what_was_asked():
    for k, p in enumerate(generate_problems(ALL_OPS, 200, seed=5)):
        names = vary(p, seed=k, names=True, numbers=False)
        assert (names.person, names.item) != (p.person, p.item)
        assert names.person != p.person and names.item != p.item
        assert names.steps == p.steps and names.start == p.start and names.answer == p.answer
        if p.distractor is not None:
            assert names.distractor.person != names.person
        numbers = vary(p, seed=k, names=False, numbers=True, cfg=ALL_OPS)
        assert [op for op, _ in numbers.steps] == [op for op, _ in p.steps]
        assert numbers.phrasing == p.phrasing and numbers.person == p.person
        assert min(numbers.values) >= 0
        assert vary(p, seed=k) == vary(p, seed=k)
    originals = generate_problems(ALL_OPS, 200, seed=5)
    changed = [vary(p, seed=1, names=False, cfg=ALL_OPS).values != p.values for p in originals]
    assert np.mean(changed) > 0.8


def test_inside_and_outside_the_training_range_are_disjoint():
    inside = generate_problems(ArithmeticConfig(low=1, high=5), 300, seed=0)
    outside = generate_problems(ArithmeticConfig(low=6, high=9), 300, seed=0)
    numbers_in = {n for p in inside for n in (p.start, *(b for _, b in p.steps))}
    numbers_out = {n for p in outside for n in (p.start, *(b for _, b in p.steps))}
    assert numbers_in == set(range(1, 6)) and numbers_out == set(range(6, 10))


def test_extract_answer_reads_model_completions():
    assert extract_answer(" 3+4=7. The answer is 7. Q: Tom has", "en") == 7
    assert extract_answer("3+4=7。答案是12。答案是5。", "zh") == 5  # a self-correction counts
    assert extract_answer(" 3+4=7. The answer is", "en") is None
    assert extract_answer("The answer is 5.", "zh") is None


@pytest.mark.parametrize(("fields", "bad"), [
    ({"min_ops": 3, "max_ops": 2}, "max_ops"),
    ({"low": 5, "high": 2}, "high"),
    ({"operations": ("+", "/")}, "operations"),
    ({"distractor_rate": 1.5}, "distractor_rate"),
    ({"min_ops": 0}, "min_ops"),
])
def test_arithmetic_config_errors_name_the_field(fields, bad):
    with pytest.raises(ConfigError) as err:
        ArithmeticConfig(**fields)
    assert f"{bad}:" in str(err.value)


# ---------------------------------------------------------------- strings

def test_elementary_transforms():
    assert TRANSFORMS["rot1"]("ABYZ") == "BCZA"
    assert TRANSFORMS["shift1"]("ABCD") == "BCDA"
    assert TRANSFORMS["reverse"]("ABCD") == "DCBA"
    rng = np.random.default_rng(0)
    for _ in range(50):
        s = "".join(rng.choice(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"), size=int(rng.integers(1, 9))))
        assert TRANSFORMS["rot13"](TRANSFORMS["rot13"](s)) == s
        assert TRANSFORMS["shift2"](s) == TRANSFORMS["shift1"](TRANSFORMS["shift1"](s))
        assert sorted(TRANSFORMS["rot3"](s)) == sorted(TRANSFORMS["rot3"](c) for c in s)


def test_string_problem_renders_each_intermediate():
    p = StringProblem("ABCD", ("rot1", "reverse"))
    assert p.intermediates == ("BCDE", "EDCB") and p.answer == "EDCB"
    assert p.completion("en") == " rot1 ABCD = BCDE. reverse BCDE = EDCB. The answer is EDCB."
    assert p.completion("zh") == "rot1 ABCD = BCDE。reverse BCDE = EDCB。答案是EDCB。"
    spaced = dataclasses.replace(p, fmt="spaced")
    assert spaced.prompt("en") != p.prompt("en") and "A B C D" in spaced.prompt("zh")
    for q in (p, spaced):
        for lang in ("en", "zh"):
            assert extract_string_answer(q.completion(lang, cot=False), lang) == "EDCB"
            assert q.render(lang).startswith(q.prompt(lang))
    assert p.key != spaced.key


def test_string_problems_follow_their_config():
    cfg = StringConfig(transforms=("rot2", "shift1", "reverse"), lengths=(3, 5), depth=(1, 3))
    ps = generate_string_problems(cfg, 600, seed=0)
    assert {len(p.source) for p in ps} == {3, 5} and {len(p.chain) for p in ps} == {1, 3}
    assert {t for p in ps for t in p.chain} == set(cfg.transforms)
    assert 0.4 < np.mean([len(p.chain) == 1 for p in ps]) < 0.6  # depth first, then a chain of it
    assert ps == generate_string_problems(cfg, 600, seed=0)


def _keys(cfg: StringConfig, n: int, seed: int) -> set:
    return {p.key for p in generate_string_problems(cfg, n, seed)}


@pytest.mark.parametrize("holdout", ["transformation", "composition", "length", "format"])
def test_string_split_sides_are_disjoint(holdout):
    cfg = StringConfig(lengths=(3, 4), depth=(1, 2))
    split = string_split(cfg, holdout, seed=1)
    assert not _keys(split.train, 2000, 0) & _keys(split.test, 2000, 0)
    if holdout in ("transformation", "composition"):
        assert not set(chains(split.train)) & set(chains(split.test))
    else:
        assert split.train.lengths != split.test.lengths or split.train.fmt != split.test.fmt


def test_held_out_transformation_never_trains_and_always_tests():
    split = string_split(StringConfig(), "transformation", seed=0, held="rot2")
    assert all("rot2" not in p.chain for p in generate_string_problems(split.train, 500, 0))
    assert all("rot2" in p.chain for p in generate_string_problems(split.test, 500, 0))


def test_held_out_composition_uses_seen_transforms_in_an_unseen_order():
    cfg = StringConfig(transforms=("rot1", "rot2", "shift1", "reverse"), depth=(1, 2, 3))
    split = string_split(cfg, "composition", seed=3)
    held = set(split.held)
    assert len(held) == 3
    train_chains = chains(split.train)
    assert {ch for ch in train_chains if len(ch) == 1} == {(t,) for t in cfg.transforms}
    assert all(not set(itertools.pairwise(ch)) & held for ch in train_chains)
    assert all(set(itertools.pairwise(ch)) & held for ch in chains(split.test))
    assert string_split(cfg, "composition", seed=3) == split


def test_string_config_errors():
    with pytest.raises(ConfigError, match="transforms:"):
        StringConfig(transforms=("rot1", "rot99"))
    with pytest.raises(ConfigError, match=r"fmt:.*Did you mean 'spaced'"):
        StringConfig(fmt="spaces")
    with pytest.raises(ConfigError, match="test_lengths"):
        string_split(StringConfig(lengths=(4,)), "length", test_lengths=(4,))
    with pytest.raises(ConfigError, match="transforms"):
        StringConfig(transforms=("rot1",), depth=(2,), banned_pairs=(("rot1", "rot1"),))


# ---------------------------------------------------------------- facts and general text

def test_fact_world_entities_are_unique_and_present_absent_partition_them():
    world = FactWorld(FactsConfig(n_entities=300, present_fraction=0.7), seed=4)
    assert len({e.name("en") for e in world.entities}) == 300
    assert len({e.name("zh") for e in world.entities}) == 300
    present, absent = {e.index for e in world.present}, {e.index for e in world.absent}
    assert len(present) == 210 and not present & absent and present | absent == set(range(300))
    assert [e.name("en") for e in FactWorld(FactsConfig(n_entities=300), seed=4).entities] == \
        [e.name("en") for e in world.entities]


def test_biographies_and_questions_state_the_same_facts():
    world = FactWorld(FactsConfig(n_entities=20), seed=0)
    for e in world.entities:
        for lang in ("en", "zh"):
            for variant in range(3):
                bio = world.biography(e, lang, variant)
                assert e.name(lang) in bio
                for qa in world.questions(e, lang):
                    assert e.value(qa.attribute, lang) in bio
                    assert e.value(qa.attribute, lang) in qa.answer
            qas = world.questions(e, lang)
            assert [qa.attribute for qa in qas] == ["city", "profession", "birth_year", "colour"]
        assert not ZH_FORBIDDEN.search(world.biography(e, "zh", 1))
        assert world.questions(e, "zh")[0].question.endswith("？\n答：")
        assert world.questions(e, "en")[0].answer.startswith(" ")


def test_general_documents_are_seeded_and_parallel():
    en, zh = general_document(0, 5, "en"), general_document(0, 5, "zh")
    assert en == general_document(0, 5, "en") and en != general_document(1, 5, "en")
    assert en.count(".") == zh.count("。") >= 3
    assert not ZH_FORBIDDEN.search(zh)


# ---------------------------------------------------------------- corpus

MIXED = CorpusConfig(n_documents=1001, eval_documents=301,
                     mixture=MixtureConfig(general=0.33, math=0.33, strings=0.14, facts=0.2),
                     facts=FactsConfig(n_entities=60, present_fraction=0.5), cot_fraction=0.5)


def test_source_and_language_proportions_are_exact():
    # 1001 * (.33, .33, .14, .2) = 330.33, 330.33, 140.14, 200.2: the spare document goes to the
    # largest remainder, and the tie between general and math to the first.
    for split, n, expected in (("train", 1001, {"general": 331, "math": 330, "strings": 140, "facts": 200}),
                               ("validation", 301, {"general": 100, "math": 99, "strings": 42, "facts": 60})):
        docs = documents(MIXED, split)
        assert len(docs) == n and {d.split for d in docs} == {split}
        assert dict(Counter(d.source for d in docs)) == expected
        for source in expected:
            langs = Counter(d.lang for d in docs if d.source == source)
            assert abs(langs["en"] - langs["zh"]) <= 1
        first = [d.source for d in docs[:60]]
        assert len(set(first)) == 4  # interleaved, not one source after another


def test_cot_fraction_is_exact_within_each_language():
    docs = [d for d in documents(MIXED, "train") if d.source == "math"]
    for lang in ("en", "zh"):
        mine = [d for d in docs if d.lang == lang]
        assert sum("=" in d.text for d in mine) == math.floor(len(mine) * 0.5)


def test_splits_are_disjoint_by_content():
    cfg = dataclasses.replace(MIXED, n_documents=3000, eval_documents=300)
    texts = {s: {d.text for d in documents(cfg, s)} for s in ("train", "validation", "test")}
    assert not texts["train"] & texts["validation"] and not texts["train"] & texts["test"]
    assert not texts["validation"] & texts["test"]
    for source in ("math", "strings", "general", "facts"):
        keys = {s: {item.key for item in problems(cfg, source, s, n)} for s, n in (("train", 2000),
                                                                                   ("test", 500))}
        assert not keys["train"] & keys["test"]
        assert all(split_of(k, cfg.holdout_fraction) == "test" for k in keys["test"])


def test_absent_entities_appear_in_no_split():
    world = fact_world(MIXED)
    all_text = "".join(d.text for s in ("train", "validation", "test") for d in documents(MIXED, s))
    for e in world.absent:
        assert e.name("zh") not in all_text
        assert not re.search(rf"\b{e.name('en')}\b", all_text)
    mentioned = {e.index for e in world.present if e.name("zh") in all_text}
    assert len(mentioned) == len(world.present)  # 200 facts documents cover all 30 present entities


def test_corpus_is_deterministic_and_seeded():
    small = dataclasses.replace(MIXED, n_documents=200, eval_documents=20)
    again = dataclasses.replace(MIXED, n_documents=200, eval_documents=20)
    assert [d.text for d in documents(small, "train")] == [d.text for d in documents(again, "train")]
    other = dataclasses.replace(small, seed=1)
    assert [d.text for d in documents(other, "train")] != [d.text for d in documents(small, "train")]
    assert corpus_digest(small) == corpus_digest(again) != corpus_digest(other)


def test_corpus_config_validation_and_from_mapping():
    with pytest.raises(ConfigError, match="add up to 1"):
        MixtureConfig(general=0.5, math=0.5, strings=0.5, facts=0.0)
    with pytest.raises(ConfigError, match="languages:"):
        CorpusConfig(languages=("en", "fr"))
    cfg = from_mapping(CorpusConfig, {"seed": 2, "languages": ["zh"],
                                      "arithmetic": {"max_ops": 3, "operations": ["+", "*"]},
                                      "strings": {"banned_pairs": [["rot1", "rot2"]]}})
    assert cfg.arithmetic.operations == ("+", "*") and cfg.strings.banned_pairs == (("rot1", "rot2"),)
    assert cfg.languages == ("zh",)
    with pytest.raises(ConfigError, match="Did you mean 'mixture'"):
        from_mapping(CorpusConfig, {"mixtur": {}})


# ---------------------------------------------------------------- packing

def test_pack_puts_eos_around_every_document():
    tokens = pack([[5, 6], [7], [8, 9, 10]], eos_id=1)
    assert tokens.tolist() == [1, 5, 6, 1, 7, 1, 8, 9, 10, 1]


def test_batches_are_windows_shifted_by_one_and_a_function_of_the_index():
    data = PackedTokens(np.arange(1000, dtype=np.int32), seed=3)
    x, y = data.batch(7, batch_size=8, seq_len=16)
    assert x.shape == y.shape == (8, 16) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1]) and torch.equal(y - x, torch.ones_like(x))
    assert int(y.max()) < 1000
    x2, _ = PackedTokens(np.arange(1000, dtype=np.int32), seed=3).batch(7, 8, 16)
    assert torch.equal(x, x2)
    assert not torch.equal(x, data.batch(8, 8, 16)[0])
    assert not torch.equal(x, PackedTokens(np.arange(1000, dtype=np.int32), seed=4).batch(7, 8, 16)[0])


def test_ranks_together_see_exactly_the_single_process_batch():
    data = PackedTokens(np.random.default_rng(0).integers(0, 500, size=5000), seed=1)
    full_x, full_y = data.batch(11, batch_size=12, seq_len=8)
    parts = [data.batch(11, batch_size=3, seq_len=8, rank=r, world_size=4) for r in range(4)]
    x = torch.empty_like(full_x)
    y = torch.empty_like(full_y)
    for r, (px, py) in enumerate(parts):
        x[r::4], y[r::4] = px, py
    assert torch.equal(x, full_x) and torch.equal(y, full_y)


def test_sequential_windows_cover_the_stream_once():
    data = PackedTokens(np.arange(103, dtype=np.int32), seed=0)
    xs = torch.cat([x for x, _ in data.sequential(batch_size=4, seq_len=10)])
    assert xs.flatten().tolist() == list(range(100))
    with pytest.raises(ValueError, match="seq_len"):
        data.batch(0, 2, 200)


def test_micro_batches_cover_exactly_the_samples_of_the_full_batch():
    data = PackedTokens(np.arange(5000, dtype=np.int32), seed=5)
    full_x, _ = data.batch(3, batch_size=8, seq_len=16)
    halves = torch.cat([data.batch(3 * 2 + m, batch_size=4, seq_len=16)[0] for m in range(2)])
    assert torch.equal(full_x, halves)  # gradient accumulation 2 x (B/2) sees the 1 x B samples
    both = torch.cat([data.batch(3 * 2 + m, batch_size=2, seq_len=16, rank=r, world_size=2)[0]
                      for m in range(2) for r in range(2)])
    assert sorted(map(tuple, both.tolist())) == sorted(map(tuple, full_x.tolist()))
