"""Long-context extension: the RoPE scaling maths, the long-range retrieval task, extend_context."""

from __future__ import annotations

import dataclasses
import math
import re
import shutil

import numpy as np
import pytest
import torch

from phasebook.data import PackedTokens
from phasebook.data.longcontext import LEADS, RetrievalConfig, RetrievalItem, RetrievalTask, task_names
from phasebook.errors import PhasebookError
from phasebook.model import GPT, ModelConfig, apply_rope, generate
from phasebook.model.gpt import rope_angles, rope_attention_factor, rope_frequencies
from phasebook.store import Store
from phasebook.train import context
from phasebook.train.context import (
    ContextConfig,
    ExtensionData,
    answers_correct,
    before_config,
    extend_context,
    extension_model_config,
    rescaled_model,
    retrieval_accuracy,
    short_context_loss,
)
from phasebook.train.pretraining import PRESETS, pretrain, tokenizer_for
from phasebook.validation import ConfigError, from_mapping, to_mapping

# ---- the RoPE maths --------------------------------------------------------------------------------

HEAD_DIM, BASE, ORIGINAL = 64, 10000.0, 4096  # Llama-like, so YaRN's ramp has pairs on both sides
POSITIONS = torch.tensor([[0, 1, 7, 100, 4095, 4096, 20000, 32767]])


def angles(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return torch.atan2(sin, cos)


def yarn(scaling: float, positions: torch.Tensor = POSITIONS) -> tuple[torch.Tensor, torch.Tensor]:
    return rope_angles(positions, HEAD_DIM, BASE, scaling, method="yarn", original_max_seq_len=ORIGINAL)


def test_linear_interpolation_gives_position_p_times_s_the_angles_of_p():
    p = torch.arange(0, 50)[None]
    for s in (2.0, 4.0, 2.5):
        scaled = rope_angles(p * s, 16, BASE, s)  # positions p·s (non-integer for s = 2.5 · odd)
        torch.testing.assert_close(scaled, rope_angles(p, 16, BASE))
    torch.testing.assert_close(rope_frequencies(16, BASE, 4.0), rope_frequencies(16, BASE) / 4)


def test_yarn_keeps_fast_pairs_interpolates_slow_ones_and_ramps_between():
    s = 8.0
    plain = rope_frequencies(HEAD_DIM, BASE)
    turns = ORIGINAL * plain / (2 * math.pi)  # turns of each pair within the original context
    fast, slow = turns >= 32, turns <= 1
    middle = ~(fast | slow)
    assert fast.sum() > 0 and slow.sum() > 0 and middle.sum() > 0  # the test covers all three parts
    scaled = rope_frequencies(HEAD_DIM, BASE, s, method="yarn", original_max_seq_len=ORIGINAL)
    assert torch.equal(scaled[fast], plain[fast])
    torch.testing.assert_close(scaled[slow], plain[slow] / s)
    assert bool(((scaled[middle] < plain[middle]) & (scaled[middle] > plain[middle] / s)).all())
    assert bool((scaled[1:] <= scaled[:-1]).all())  # still ordered from fast to slow

    # The angles themselves, at positions inside and far beyond the original context.
    factor = rope_attention_factor(s, "yarn")
    cos, sin = yarn(s)
    cos0, sin0 = rope_angles(POSITIONS, HEAD_DIM, BASE)
    torch.testing.assert_close(angles(cos, sin)[..., fast], angles(cos0, sin0)[..., fast])
    cos_pi, sin_pi = rope_angles(POSITIONS, HEAD_DIM, BASE, s)  # linear interpolation by s
    torch.testing.assert_close(angles(cos, sin)[..., slow], angles(cos_pi, sin_pi)[..., slow])
    torch.testing.assert_close(cos**2 + sin**2, torch.full_like(cos, factor**2))


def test_yarn_attention_temperature_scales_logits_by_the_factor_squared():
    s = 16.0
    factor = rope_attention_factor(s, "yarn")
    assert factor == pytest.approx(0.1 * math.log(16) + 1)
    assert rope_attention_factor(s, "linear") == 1.0 and rope_attention_factor(1.0, "yarn") == 1.0
    q, k = torch.randn(2, 1, 8, HEAD_DIM).unbind(0)
    positions = torch.arange(8)[None]
    cos, sin = yarn(s, positions)
    logits = apply_rope(q, cos, sin) @ apply_rope(k, cos, sin).transpose(-1, -2)
    cos1, sin1 = cos / factor, sin / factor
    unit = apply_rope(q, cos1, sin1) @ apply_rope(k, cos1, sin1).transpose(-1, -2)
    torch.testing.assert_close(logits, unit * factor**2)


def test_every_method_is_plain_rope_at_scale_one():
    plain = rope_angles(POSITIONS, HEAD_DIM, BASE)
    torch.testing.assert_close(rope_angles(POSITIONS, HEAD_DIM, BASE, 1.0, method="linear"), plain)
    torch.testing.assert_close(yarn(1.0), plain)
    idx = torch.randint(0, 37, (1, 12))
    torch.manual_seed(0)
    reference = GPT(ModelConfig(vocab_size=37, n_layer=1, n_head=2, d_model=16, max_seq_len=32,
                                init_std=0.3))
    for kind in ({"rope_scaling_type": "linear"},
                 {"rope_scaling_type": "yarn", "rope_original_max_seq_len": 8}):
        model = GPT(dataclasses.replace(reference.cfg, **kind))
        model.load_state_dict(reference.state_dict())
        torch.testing.assert_close(model(idx).logits, reference(idx).logits)


def test_abf_changes_only_the_base_and_its_default_stretches_the_slowest_pair_by_s():
    base = PRESETS["base"]
    cfg = extension_model_config(base, ContextConfig(method="abf", new_seq_len=512))
    changed = {k for k, v in to_mapping(cfg).items() if to_mapping(base.model)[k] != v}
    assert changed == {"rope_base", "max_seq_len"} and cfg.max_seq_len == 512
    s = 512 / base.train.seq_len
    old = rope_frequencies(cfg.head_dim, base.model.rope_base)
    new = rope_frequencies(cfg.head_dim, cfg.rope_base)
    assert float(new[-1]) == pytest.approx(float(old[-1]) / s, rel=1e-5)
    assert float(new[0]) == float(old[0])  # pair 0 turns by a radian per position whatever the base
    given = extension_model_config(base, ContextConfig(method="abf", new_seq_len=256, rope_base=5e5))
    assert given.rope_base == 5e5 and given.rope_scaling == 1.0

    yarn_cfg = extension_model_config(base, ContextConfig(method="yarn", new_seq_len=512))
    assert (yarn_cfg.rope_scaling, yarn_cfg.rope_scaling_type, yarn_cfg.rope_original_max_seq_len) == (
        4.0, "yarn", 128)
    none = extension_model_config(base, ContextConfig(method="none", new_seq_len=128))
    assert none == base.model


@pytest.mark.parametrize(("overrides", "field", "words"), [
    ({"rope_scaling_type": "cubic"}, "rope_scaling_type", "'linear', 'yarn'"),
    ({"rope_scaling_type": "yarn", "rope_scaling": 2.0}, "rope_original_max_seq_len", "needs the context"),
    ({"rope_original_max_seq_len": 64}, "rope_original_max_seq_len", "only rope_scaling_type 'yarn'"),
    ({"rope_scaling_type": "yarn", "rope_original_max_seq_len": 0}, "rope_original_max_seq_len", "[1, ∞)"),
    ({"rope_yarn_alpha": 40.0}, "rope_yarn_beta", "must be above rope_yarn_alpha=40.0"),
    ({"rope_yarn_alpha": 0.0}, "rope_yarn_alpha", "(0.0, ∞)"),
])
def test_invalid_rope_settings_name_the_field(overrides, field, words):
    with pytest.raises(ConfigError) as err:
        ModelConfig(vocab_size=37, n_layer=1, n_head=2, d_model=16, max_seq_len=32, **overrides)
    assert [p.key for p in err.value.problems] == [field]
    assert words in str(err.value)


def test_rope_settings_round_trip_and_old_mappings_still_load():
    cfg = ModelConfig(vocab_size=37, n_layer=1, n_head=2, d_model=16, max_seq_len=64, rope_scaling=4.0,
                      rope_scaling_type="yarn", rope_original_max_seq_len=16, rope_yarn_beta=8.0)
    assert from_mapping(ModelConfig, to_mapping(cfg)) == cfg
    old = {k: v for k, v in to_mapping(cfg).items() if not k.startswith(("rope_scaling_type", "rope_original",
                                                                         "rope_yarn"))}
    assert from_mapping(ModelConfig, old).rope_scaling_type == "linear"  # as before: rope_scaling was linear


@pytest.mark.parametrize(("overrides", "field"), [
    ({"method": "ntk"}, "method"),
    ({"method": "none", "scale": 2.0}, "scale"),
    ({"method": "abf", "scale": 2.0}, "scale"),
    ({"method": "none", "rope_base": 5e5}, "rope_base"),
    ({"task_fraction": 1.5}, "task_fraction"),
    ({"steps": 10, "warmup_steps": 20}, "warmup_steps"),
    ({"scale": 0.5}, "scale"),
    ({"start_from": ContextConfig(method="yarn")}, "start_from"),
    ({"start_from": ContextConfig(method="none", start_from=ContextConfig(method="none"))}, "start_from"),
])
def test_invalid_context_configs_name_the_field(overrides, field):
    with pytest.raises(ConfigError) as err:
        ContextConfig(**overrides)
    assert field in [p.key for p in err.value.problems]


def test_extensions_that_do_not_fit_the_base_are_refused():
    base = PRESETS["base"]
    with pytest.raises(ConfigError, match="new_seq_len: is 64; must be at least the base's seq_len"):
        extension_model_config(base, ContextConfig(new_seq_len=64))
    with pytest.raises(ConfigError, match="ABF raises the base model's rope_base"):
        extension_model_config(base, ContextConfig(method="abf", rope_base=5000.0))
    with pytest.raises(ConfigError, match="give rope_base"):
        extension_model_config(base, ContextConfig(method="abf", new_seq_len=128))


# ---- the retrieval task ----------------------------------------------------------------------------

CORPUS = PRESETS["base"].corpus


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return tokenizer_for(CORPUS, 512, Store(tmp_path_factory.mktemp("store")))


@pytest.fixture(scope="module")
def tasks(tokenizer):
    return {split: RetrievalTask(CORPUS, tokenizer, split) for split in ("train", "eval")}


def code_in_text(text: str, item: RetrievalItem) -> str:
    """The code the prompt's text states for the item's name: what a reader would answer."""
    lead = re.escape(LEADS[item.lang].format(name=item.name))
    found = re.findall(lead + r"(\d*)", text)
    assert len(found) == 2 and found[1] == ""  # the fact, and the question at the very end
    return found[0]


def test_items_are_deterministic_and_seeded(tasks, tokenizer):
    again = RetrievalTask(CORPUS, tokenizer, "eval")
    first = [tasks["eval"].item(i, 200, seed=3) for i in range(6)]
    assert first == [again.item(i, 200, seed=3) for i in range(6)]
    assert first != [again.item(i, 200, seed=4) for i in range(6)]
    assert [it.lang for it in first] == ["en", "zh"] * 3
    assert tasks["train"].random_item(5, 300) == RetrievalTask(CORPUS, tokenizer, "train").random_item(5, 300)


def test_the_fact_sits_at_the_requested_distance_and_the_answer_follows_from_the_text(tasks, tokenizer):
    task = tasks["eval"]
    cases = [(120, 40), (120, None), (300, 250), (1000, 30), (1000, None)]
    for index, (length, distance) in enumerate(cases):
        item = task.item(index, length, distance)
        longest = task.distance_range(index, length)[1]
        assert len(item.tokens) == length and item.tokens[0] == tokenizer.eos_id
        assert item.distance == (longest if distance is None else distance)
        question = item.tokens[item.question_start:item.answer_start]
        assert item.tokens[item.fact_start:item.fact_start + len(question)] == question
        assert item.tokens[item.fact_start + len(question):][:len(item.answer)] == item.answer
        assert tokenizer.decode(item.answer) == item.code and len(item.code) == 4
        assert code_in_text(tokenizer.decode(item.prompt), item) == item.code
    assert task.item(1, 120).fact_start == 1  # as far back as it goes: right after EOS
    with pytest.raises(PhasebookError, match="distance 5 is impossible"):
        task.item(0, 120, 5)
    with pytest.raises(PhasebookError, match="too short"):
        task.item(0, 20)


def test_evaluation_items_share_no_name_code_or_filler_with_training_items(tasks):
    cfg = RetrievalConfig()
    train_names, eval_names = set(task_names(cfg, "train")), set(task_names(cfg, "eval"))
    assert not train_names & eval_names and len(train_names | eval_names) == 24 * 24
    assert 0.15 < len(eval_names) / 576 < 0.35
    train = [tasks["train"].random_item(i, 150) for i in range(300)]
    held = [tasks["eval"].item(i, 150) for i in range(300)]
    assert not {it.code for it in train} & {it.code for it in held}
    assert not {it.name for it in train} & {it.name for it in held}
    assert not np.array_equal(tasks["train"].filler["en"][:500], tasks["eval"].filler["en"][:500])


def test_extension_rows_hold_an_exact_share_of_items_whatever_the_split(tasks, tokenizer):
    corpus = PackedTokens(np.arange(5000, dtype=np.int32) % 300, seed=0)
    data = ExtensionData(corpus, tasks["train"], 0.3, seed=0)
    assert sum(data.is_task(j) for j in range(1000)) == 300
    x, y = data.batch(2, 8, 96)
    assert x.shape == y.shape == (8, 96) and torch.equal(x[:, 1:], y[:, :-1])
    halves = [data.batch(2, 4, 96, rank, 2) for rank in (0, 1)]
    assert torch.equal(torch.stack([halves[0][0], halves[1][0]], 1).reshape(8, 96), x)
    eos = tokenizer.eos_id
    assert sum(int(row[0]) == eos and data.is_task(16 + r) for r, row in enumerate(x)) == sum(
        data.is_task(16 + r) for r in range(8))  # the item rows are items: they start with EOS


def test_exact_match_scoring_agrees_with_greedy_generation(tasks):
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=512, n_layer=1, n_head=2, d_model=16, max_seq_len=64,
                            init_std=0.5)).eval()
    items = [tasks["eval"].item(i, 60) for i in range(6)]
    greedy = generate(model, [list(it.prompt) for it in items], 4, temperature=0)
    # Items whose answer is what greedy decoding writes are correct; change one token and they are not.
    as_written = [dataclasses.replace(it, tokens=(*it.prompt, *new))
                  for it, new in zip(items, greedy, strict=True)]
    assert answers_correct(model, as_written).all()
    for k in (0, 3):  # the first or the last answer token wrong
        changed = []
        for it in as_written:
            tokens = list(it.tokens)
            tokens[it.answer_start + k] = (tokens[it.answer_start + k] + 1) % 512
            changed.append(dataclasses.replace(it, tokens=tuple(tokens)))
        assert not answers_correct(model, changed).any()


# ---- extend_context ---------------------------------------------------------------------------------

TINY = PRESETS["base"].replace(
    corpus={"n_documents": 300, "eval_documents": 40},
    model={"vocab_size": 300, "n_layer": 1, "d_model": 16, "n_head": 2, "max_seq_len": 32},
    train={"steps": 4, "batch_size": 4, "seq_len": 32, "eval_interval": 2, "checkpoint_interval": 2,
           "log_interval": 1, "progress": False, "schedule": {"warmup_steps": 1}})
TINY_TASK = RetrievalConfig(filler_documents=50)
# The staged comparison in miniature: the task at the base's length first, then the extension from it.
TINY_BEFORE = dataclasses.replace(before_config(TINY, steps=2), new_seq_len=48, batch_size=4, warmup_steps=1,
                                  task=TINY_TASK)
TINY_EXTENSION = ContextConfig(method="yarn", new_seq_len=64, steps=4, batch_size=4, warmup_steps=1,
                               task=TINY_TASK, start_from=TINY_BEFORE)


def weights_of(model: GPT) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, b[k]) for k, v in a.items())


def test_extend_context_is_stored_once_reproducible_and_starts_from_the_before_model(tmp_path, monkeypatch):
    store = Store(tmp_path)
    extended = extend_context(TINY, TINY_EXTENSION, store)
    cfg = extended.model.cfg
    assert (cfg.max_seq_len, cfg.rope_scaling, cfg.rope_scaling_type, cfg.rope_original_max_seq_len) == (
        64, 2.0, "yarn", 32)
    assert extended.summary["steps"] == 4 and [m["step"] for m in extended.metrics] == [1, 2, 3, 4]
    assert not extended.path.with_name(extended.path.name + ".scratch").exists()
    weights = weights_of(extended.model)
    before = extend_context(TINY, TINY_BEFORE, store)  # stored on the way: the start of the extension
    assert before.model.cfg == dataclasses.replace(TINY.model, max_seq_len=48)
    assert not same(weights_of(before.model), weights) and not same(weights_of(pretrain(TINY, store).model),
                                                                   weights_of(before.model))

    def no_training(*args, **kwargs):
        raise AssertionError("a stored run was trained again")

    real = context._train_extension
    monkeypatch.setattr(context, "_train_extension", no_training)
    assert extend_context(TINY, TINY_EXTENSION, store).path == extended.path
    with pytest.raises(AssertionError, match="trained again"):
        extend_context(TINY, dataclasses.replace(TINY_EXTENSION, seed=1), store)
    monkeypatch.setattr(context, "_train_extension", real)

    shutil.rmtree(extended.path)  # trained again from the same configuration: the same weights
    again = extend_context(TINY, TINY_EXTENSION, store)
    assert same(weights_of(again.model), weights)
    # Starting from the before model, not from the base: the same extension from the base differs.
    from_base = extend_context(TINY, dataclasses.replace(TINY_EXTENSION, start_from=None), store)
    assert not same(weights_of(from_base.model), weights)
    untrained = rescaled_model(before.model, TINY, TINY_EXTENSION)
    assert untrained.cfg == cfg and same(weights_of(untrained), weights_of(before.model))

    accuracy = retrieval_accuracy(again.model, again.tokenizer, [48, 64], n_items=4, corpus=TINY.corpus,
                                  task=TINY_TASK)
    assert set(accuracy) == {48, 64} and all(0.0 <= a <= 1.0 for a in accuracy.values())
    loss = short_context_loss(again.model, TINY, store, n_batches=2, batch_size=4)
    assert math.isfinite(loss) and 0 < loss < 10
