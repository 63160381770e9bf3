"""CoT evaluation: Wilson intervals, answer extraction, shifts, perturbations, leakage, pass@k."""

from __future__ import annotations

import itertools
import math
import re

import pytest
import torch

from phasebook.data.arithmetic import ITEMS, ArithmeticConfig, WordProblem, extract_answer, generate_problems
from phasebook.data.corpus import CorpusConfig, MixtureConfig, problems, split_of
from phasebook.data.strings import chains
from phasebook.data.tokenizer import train_tokenizer
from phasebook.evaluate import (
    ANSWER_CUE,
    Accuracy,
    LeakageError,
    PairedChange,
    accuracy_by_steps,
    add_clause,
    assert_disjoint,
    assert_test_split,
    composition_holdout,
    in_distribution,
    is_correct,
    larger_numbers,
    longer,
    mean_pass_at_k,
    pass_at_k,
    perturb,
    prompted_answers,
    rename,
    render_prompt,
    renumber,
    shifted,
    unseen_compositions,
    wilson_interval,
)
from phasebook.evaluate.cot import answer_sentence
from phasebook.model import GPT, ModelConfig
from phasebook.validation import ConfigError

CFG = CorpusConfig()
# Multiplications and irrelevant clauses too, so every perturbation meets every kind of problem.
RICH = ArithmeticConfig(min_ops=1, max_ops=4, operations=("+", "-", "*"), distractor_rate=0.5)


def recompute(problem: WordProblem) -> int:
    value = problem.start
    for op, n in problem.steps:
        value = value + n if op == "+" else value - n if op == "-" else value * n
    return value


def equations_hold(problem: WordProblem, lang: str) -> bool:
    """Every worked equation "a+b=c" in the rendered CoT is true and the last gives the answer."""
    eqs = re.findall(r"(-?\d+)([+\-×])(\d+)=(-?\d+)", problem.completion(lang))
    ops = {"+": int.__add__, "-": int.__sub__, "×": int.__mul__}
    return (len(eqs) == len(problem.steps) and all(ops[o](int(a), int(b)) == int(c) for a, o, b, c in eqs)
            and int(eqs[-1][3]) == problem.answer)


def numbers_masked(text: str) -> str:
    """The text with every number replaced by # and English nouns made singular ("1 pen", "2 pens")."""
    for singular, plural, _, _ in ITEMS:
        text = re.sub(rf"\b{plural}\b", singular, text)
    return re.sub(r"\d+", "#", re.sub(r"\b(year|minute)s\b", r"\1", text))


# ---------------------------------------------------------------- Wilson / Accuracy

@pytest.mark.parametrize(("k", "n", "z", "low", "high"), [
    # the bounds are the roots p of (k/n − p)² = z²·p(1 − p)/n, solved by hand
    (5, 10, 1.96, 0.236590, 0.763410),
    (0, 10, 1.96, 0.0, 0.277540),  # 0.38416 / 1.38416
    (10, 10, 1.96, 0.722460, 1.0),
    (0, 1, 1.96, 0.0, 0.793457),
    (2, 4, 1.0, 0.5 - math.sqrt(5) / 10, 0.5 + math.sqrt(5) / 10),  # exact: 1/2 ± √5/10
])
def test_wilson_matches_hand_computed_values(k: int, n: int, z: float, low: float, high: float) -> None:
    got = wilson_interval(k, n, z)
    assert got == pytest.approx((low, high), abs=1e-6)


def test_wilson_edges_contain_rate_and_narrow_with_n() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    for n in range(1, 31):
        for k in range(n + 1):
            low, high = wilson_interval(k, n)
            assert 0.0 <= low <= k / n <= high <= 1.0
            assert (low == 0.0) == (k == 0) and (high == 1.0) == (k == n)
            assert wilson_interval(n - k, n) == pytest.approx((1 - high, 1 - low))  # symmetry
    w10, w40 = (h - lo for lo, h in (wilson_interval(5, 10), wilson_interval(20, 40)))
    assert w40 < w10
    for bad in [(-1, 5), (6, 5), (0, -1)]:
        with pytest.raises(ValueError):
            wilson_interval(*bad)


def test_accuracy_record() -> None:
    acc = Accuracy.from_verdicts([True, False, True, True])
    assert (acc.k, acc.n, acc.rate) == (3, 4, 0.75)
    assert (acc.low, acc.high) == wilson_interval(3, 4)
    assert "3/4" in str(acc)
    with pytest.raises(ValueError, match="at least one"):
        Accuracy.of(0, 0)


# ---------------------------------------------------------------- answer extraction

EN_CASES = [
    ("3+4=7. The answer is 7.", 7),
    ("The answer is -3.", -3),
    ("The answer is −5", -5),
    ("The answer is 1,234.", 1234),
    ("The answer is 1,234,567 marbles", 1234567),
    ("The answer is １２.", 12),
    ("The answer is 12 apples.", 12),
    ("The answer is    42", 42),
    ("the answer is: 9", 9),
    ("The answer is 12, I think.", 12),
    ("The answer is 5. Wait, 3+4=7. The answer is 7.", 7),
    ("The answer is 7.\nQ: Tom has 3 pens. He buys 2 more.\nA: 3+2=5. The answer is 5.", 7),
    ("The answer is 12.5.", None),
    ("The answer is 1,23.", None),
    ("The answer is 1,2345", None),
    ("The answer is 3+4.", None),
    ("The answer is 12 - 3", None),
    ("The answer is twelve.", None),
    ("The answer is", None),
    ("The answer is 8. No. The answer is", None),
    ("Mia has 7 apples.", None),
]
ZH_CASES = [
    ("4+3=7。答案是7。", 7),
    ("答案是-3。", -3),
    ("答案是－６", -6),
    ("答案是负4。", -4),
    ("答案是１２。", 12),
    ("答案是12个。", 12),
    ("答案是12颗糖。", 12),
    ("答案是 12 个", 12),
    ("答案是：15", 15),
    ("答案是1,234。", 1234),
    ("答案是5。不对，答案是8。", 8),
    ("答案是7。\n问：汤姆有3支笔。\n答：答案是9。", 7),
    ("答案是十二。", None),
    ("答案是12.5。", None),
    ("答案是1,23个", None),
    ("答案是3×4。", None),
    ("答案是", None),
    ("一共有7个。", None),
]


@pytest.mark.parametrize(("text", "expected"), EN_CASES)
def test_extract_answer_en(text: str, expected: int | None) -> None:
    assert extract_answer(text, "en") == expected


@pytest.mark.parametrize(("text", "expected"), ZH_CASES)
def test_extract_answer_zh(text: str, expected: int | None) -> None:
    assert extract_answer(text, "zh") == expected


def test_extraction_reads_every_rendered_completion() -> None:
    items = generate_problems(RICH, 60, seed=3) + larger_numbers(CFG, 20)
    for p in items:
        for lang in ("en", "zh"):
            for cot in (True, False):
                text = p.completion(lang, cot) + "\n"
                assert extract_answer(text, lang) == p.answer
                assert is_correct(p, text, lang)
                assert not is_correct(p, text.replace(str(p.answer), str(p.answer + 1)), lang)
    with pytest.raises(ValueError):
        extract_answer("The answer is 1", "fr")  # type: ignore[arg-type]


# ---------------------------------------------------------------- distribution shifts

def test_in_distribution_is_the_test_split_of_the_corpus_distribution() -> None:
    items = in_distribution(CFG, 40)
    assert_test_split(items, CFG)
    a = CFG.arithmetic
    assert all(a.min_ops <= len(p.steps) <= a.max_ops for p in items)
    assert shifted(CFG, "id", 40) == items


def test_longer_has_more_steps_than_any_training_item() -> None:
    train = problems(CFG, "math", "train", 500)
    items = longer(CFG, 40)
    assert_test_split(items, CFG)
    assert min(len(p.steps) for p in items) > max(len(p.steps) for p in train)
    assert min(len(p.steps) for p in items) > CFG.arithmetic.max_ops
    assert all(p.answer == recompute(p) >= 0 and equations_hold(p, "en") for p in items)
    with pytest.raises(ConfigError, match="max_ops"):
        longer(CorpusConfig(arithmetic=ArithmeticConfig(min_ops=1, max_ops=8)), 1)


def test_larger_numbers_exceed_the_training_range() -> None:
    high = CFG.arithmetic.high
    train = problems(CFG, "math", "train", 500)
    assert max(max(p.start, *(n for _, n in p.steps)) for p in train) <= high
    items = larger_numbers(CFG, 40)
    assert_test_split(items, CFG)
    for p in items:
        assert p.start > high and all(n > high for _, n in p.steps)
        assert p.answer == recompute(p) >= 0 and min(p.values) >= 0
    assert shifted(CFG, "larger-numbers", 40) == items
    with pytest.raises(ConfigError, match="larger-numbers"):
        shifted(CFG, "larger_numbers", 1)  # type: ignore[arg-type]


def test_unseen_compositions_are_never_composed_in_training() -> None:
    cfg = CorpusConfig(mixture=MixtureConfig(general=0.4, math=0.3, strings=0.1, facts=0.2))
    corpus_cfg, split = composition_holdout(cfg, seed=1)
    held = set(split.held)
    assert held
    assert not any(set(itertools.pairwise(ch)) & held for ch in chains(corpus_cfg.strings))
    trained = problems(corpus_cfg, "strings", "train", 300)
    assert not any(set(itertools.pairwise(p.chain)) & held for p in trained)
    items = unseen_compositions(corpus_cfg, split, 30)
    assert_test_split(items, corpus_cfg)
    assert all(set(itertools.pairwise(p.chain)) & held for p in items)
    assert {t for p in items for t in p.chain} <= set(corpus_cfg.strings.transforms)  # every part seen
    with pytest.raises(ConfigError, match="composition_holdout"):
        unseen_compositions(cfg, split, 1)  # the unrestricted corpus trains on those compositions


def test_render_prompt_formats() -> None:
    p = in_distribution(CFG, 1)[0]
    for lang in ("en", "zh"):
        assert render_prompt(p, lang) == p.prompt(lang)
        shifted_formats = {render_prompt(p, lang, f) for f in ("question", "inline")}
        assert len(shifted_formats) == 2 and p.prompt(lang) not in shifted_formats
        assert all(p.question(lang) in s for s in shifted_formats)
        assert all(not s.startswith(("Q:", "问：")) for s in shifted_formats)
    with pytest.raises(ConfigError, match="question"):
        render_prompt(p, "en", "questoin")


# ---------------------------------------------------------------- perturbations

def test_rename_changes_only_names() -> None:
    for i, p in enumerate(generate_problems(RICH, 80, seed=5)):
        q = rename(p, seed=i)
        assert q.person != p.person and q.item != p.item
        assert (q.start, q.steps, q.phrasing, q.answer) == (p.start, p.steps, p.phrasing, p.answer)
        if p.distractor is not None:
            d, e = p.distractor, q.distractor
            assert (e.template, e.number, e.position) == (d.template, d.number, d.position)
            assert e.person != q.person
        for lang in ("en", "zh"):
            assert re.findall(r"\d+", q.question(lang)) == re.findall(r"\d+", p.question(lang))
            assert q.question(lang) != p.question(lang)


def test_renumber_changes_only_numbers_and_recomputes_the_answer() -> None:
    for i, p in enumerate(generate_problems(RICH, 80, seed=6)):
        q = renumber(p, seed=i, cfg=RICH)
        assert (q.person, q.item, q.phrasing) == (p.person, p.item, p.phrasing)
        assert [op for op, _ in q.steps] == [op for op, _ in p.steps]
        assert (q.start, q.steps, q.distractor) != (p.start, p.steps, p.distractor)
        if p.distractor is not None:
            d, e = p.distractor, q.distractor
            assert (e.template, e.person, e.position) == (d.template, d.person, d.position)
        assert q.answer == recompute(q) and min(q.values) >= 0
        assert all(RICH.low <= n <= RICH.high for n in (q.start, *(n for _, n in q.steps)))
        assert equations_hold(q, "en") and equations_hold(q, "zh")
        # the text differs from the original only in its digits
        for lang in ("en", "zh"):
            assert numbers_masked(q.question(lang)) == numbers_masked(p.question(lang))


def test_add_clause_inserts_exactly_one_irrelevant_sentence() -> None:
    plain = [p for p in generate_problems(RICH, 80, seed=7) if p.distractor is None]
    assert len(plain) > 20
    for i, p in enumerate(plain):
        q = add_clause(p, seed=i, cfg=RICH)
        assert q.distractor is not None and q.distractor.person != p.person
        same = ("person", "item", "start", "steps", "phrasing")
        assert [getattr(q, f) for f in same] == [getattr(p, f) for f in same]
        assert q.answer == p.answer == recompute(q)
        for lang in ("en", "zh"):
            old, new = p._sentences(lang), q._sentences(lang)
            assert len(new) == len(old) + 1
            extra = [k for k in range(len(new)) if new[:k] + new[k + 1:] == old]
            assert extra == [len(new) - 1]  # the last sentence of the story, right before the question
    with_clause = next(p for p in generate_problems(RICH, 80, seed=7) if p.distractor is not None)
    with pytest.raises(ValueError, match="already has"):
        add_clause(with_clause, seed=0)


def test_perturb_keeps_variants_out_of_the_train_split() -> None:
    items = in_distribution(CFG, 40)
    for kind in ("names", "numbers", "clause"):
        pairs = perturb(items, kind, CFG, seed=1)
        assert len(pairs) >= 36  # a rename may have no held-out variant; rarely
        assert all(b != a and split_of(b.key, CFG.holdout_fraction) != "train" for a, b in pairs)
        assert all(b.answer == recompute(b) >= 0 for _, b in pairs)
        assert_disjoint([b for _, b in pairs], CFG)
    with pytest.raises(ConfigError, match="names"):
        perturb(items, "name", CFG)  # type: ignore[arg-type]


# ---------------------------------------------------------------- accuracy by steps, leakage

def test_accuracy_by_steps_groups_by_step_count() -> None:
    items = generate_problems(RICH, 50, seed=8)
    verdicts = [len(p.steps) % 2 == 0 for p in items]
    by = accuracy_by_steps(items, verdicts)
    assert list(by) == sorted({len(p.steps) for p in items})
    for steps, acc in by.items():
        assert acc.n == sum(len(p.steps) == steps for p in items)
        assert acc.rate == (1.0 if steps % 2 == 0 else 0.0)
    assert sum(a.n for a in by.values()) == len(items)
    with pytest.raises(ValueError, match="verdicts"):
        accuracy_by_steps(items, verdicts[:-1])


def test_leakage_guard() -> None:
    test_items = in_distribution(CFG, 20)
    assert_disjoint(test_items, CFG)
    train_items = problems(CFG, "math", "train", 5)
    with pytest.raises(LeakageError, match="1 of 21 evaluation items fall in the training split"):
        assert_disjoint([*test_items, train_items[0]], CFG)
    validation = problems(CFG, "math", "validation", 3)
    assert_disjoint(validation, CFG)  # never trained on ...
    with pytest.raises(LeakageError, match="not in the test split"):
        assert_test_split(validation, CFG)  # ... but not the test split either


# ---------------------------------------------------------------- pass@k

def test_pass_at_k_equals_exact_enumeration_over_k_subsets() -> None:
    for n in range(1, 8):
        for c in range(n + 1):
            for k in range(1, n + 1):
                subsets = list(itertools.combinations(range(n), k))
                exact = sum(any(i < c for i in s) for s in subsets) / len(subsets)
                assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)
    verdicts = [[i < c for i in range(6)] for c in (0, 1, 3, 6)]
    got = mean_pass_at_k(verdicts, [1, 2, 5])
    for k in (1, 2, 5):
        subsets = list(itertools.combinations(range(6), k))
        exact = sum(sum(any(row[i] for i in s) for s in subsets) / len(subsets) for row in verdicts) / 4
        assert got[k] == pytest.approx(exact, abs=1e-12)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


# ---------------------------------------------------------------- paired change, prompted answers

def test_paired_change_counts_discordant_pairs() -> None:
    before = [True] * 30 + [False] * 10
    after = [False] * 12 + [True] * 18 + [True] * 2 + [False] * 8
    change = PairedChange.of(before, after)
    assert (change.lost, change.gained) == (12, 2)
    assert change.change == pytest.approx((20 - 30) / 40)
    assert change.z == pytest.approx(10 / math.sqrt(14))
    assert change.significant_drop()
    # the same two accuracies with the changes spread over both directions are not a paired drop
    mixed = PairedChange.of([True] * 20 + [False] * 20, [False] * 20 + [True] * 10 + [False] * 10)
    assert mixed.change == pytest.approx(-0.25) and not mixed.significant_drop()
    assert PairedChange.of([True, False], [True, False]).z == 0.0
    with pytest.raises(ValueError, match="as many"):
        PairedChange.of([True], [True, False])


def test_prompted_answers_put_the_cue_back_and_score_like_any_completion() -> None:
    torch.manual_seed(0)
    items = in_distribution(CFG, 6)
    langs = ["en", "zh"] * 3
    tok = train_tokenizer([p.render(lang) for p in items for lang in ("en", "zh")], 300)
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, d_model=32, max_seq_len=128))
    model.eval()
    direct = prompted_answers(model, tok, items, langs, direct=True, max_new_tokens=4)
    free = prompted_answers(model, tok, items, langs, fmt="question", max_new_tokens=4)
    assert all(t.startswith(ANSWER_CUE[lang]) for t, lang in zip(direct, langs, strict=True))
    assert not any(t.startswith(ANSWER_CUE[lang]) for t, lang in zip(free, langs, strict=True))
    # a cue followed by the right number is a correct answer, whichever language
    assert all(is_correct(p, f"{ANSWER_CUE[lang]} {p.answer}.", lang)
               for p, lang in zip(items, langs, strict=True))
    with pytest.raises(ValueError, match="languages"):
        prompted_answers(model, tok, items, langs[:2])


def test_a_direct_answer_is_its_first_sentence_only() -> None:
    # a base model made to answer at once may go on to work it out and answer again
    assert answer_sentence(" 20. 0-6=6. The answer is 6.") == " 20."
    assert answer_sentence("12。3+4=7。答案是7。") == "12。"
    assert answer_sentence(" 1,234.5 apples. Then") == " 1,234.5 apples."
    assert answer_sentence(" 7\nQ: next") == " 7\n"
    assert answer_sentence(" 7") == " 7"
    p = in_distribution(CFG, 1)[0]
    later = answer_sentence(f" {p.answer + 1}. The answer is {p.answer}.")
    assert not is_correct(p, ANSWER_CUE["en"] + later, "en")
