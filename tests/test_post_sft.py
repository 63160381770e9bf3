"""SFT: the chat template's loss mask, packing, the SFT objective, LoRA, the stored `sft` stage
and rejection sampling."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from phasebook.data import Tokenizer, train_tokenizer
from phasebook.model import GPT, IGNORE_INDEX, ModelConfig
from phasebook.model.gpt import token_logprobs
from phasebook.post import rejection
from phasebook.post.chat import Example, encode, pack, prompt_ids, segments_and_positions
from phasebook.post.lora import LoRALinear, apply_lora, merge_lora, trainable_parameters
from phasebook.post.sampling import Samples
from phasebook.post.sft import PackedRows, SFTConfig, SFTData, SFTObjective, packed_rows, sft
from phasebook.post.tasks import Item, is_correct, is_well_formed
from phasebook.store import Store
from phasebook.train.loop import TrainConfig, train
from phasebook.train.optim import OptimizerConfig
from phasebook.train.pretraining import PRESETS
from phasebook.train.schedules import ScheduleConfig
from phasebook.validation import ConfigError

TEXTS = ["What is 2+3? The answer is 5.", "Where does Kalo live? Brinmoor.", "米娅有3个苹果。答案是7。",
         "Ada had 4 apples and ate 1. 4-1=3. The answer is 3."] * 4
EXCHANGES = [Example("What is 2+3?", "The answer is 5."), Example("Where does Kalo live?", "Brinmoor."),
             Example("米娅有几个苹果？", "答案是7。", "zh"),
             Example("Ada had 4 apples.", "4-1=3. The answer is 3.")]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return train_tokenizer(TEXTS, 300)


def tiny_gpt(tok: Tokenizer, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(ModelConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, d_model=16, max_seq_len=64)).eval()


def test_mask_covers_exactly_the_response_and_its_end(tok: Tokenizer):
    ex = Example("What is 2+3?", "The answer is 5.")
    ids, mask = encode(tok, ex)
    p = prompt_ids(tok, ex.prompt)
    # Separate tokenisation: the prompt's ids, then the response's own ids, then <|end|>.
    assert ids == p + tok.encode(ex.response) + [tok.end_id]
    assert mask == [0] * len(p) + [1] * (len(ids) - len(p))
    assert ids[len(p) - 1] == tok.assistant_id and mask[len(p) - 1] == 0  # the role token: no loss
    assert mask[len(p)] == 1 and mask[-1] == 1 and ids[-1] == tok.end_id  # first token and end included


def test_packed_targets_are_response_tokens_only(tok: Tokenizer):
    encoded = [encode(tok, e) for e in EXCHANGES[:2]]
    total = sum(len(ids) for ids, _ in encoded)
    inputs, targets = pack(encoded, total + 5, tok.pad_id)
    assert inputs.shape == (1, total + 5)
    ids = [i for e, _ in encoded for i in e]
    mask = [m for _, ms in encoded for m in ms]
    # Input t predicts token t + 1, which carries loss iff its mask is 1; padding never does.
    expected = [ids[t + 1] if mask[t + 1] else IGNORE_INDEX for t in range(total - 1)]
    assert targets[0, :total - 1].tolist() == expected
    assert (targets[0, total - 1:] == IGNORE_INDEX).all()
    assert (inputs[0, total:] == tok.pad_id).all()
    assert int((targets != IGNORE_INDEX).sum()) == sum(mask)
    # The first response token is predicted from <|assistant|>.
    at = len(prompt_ids(tok, EXCHANGES[0].prompt))
    assert inputs[0, at - 1] == tok.assistant_id and targets[0, at - 1] == ids[at]


def test_packed_rows_give_each_exchange_its_own_losses(tok: Tokenizer):
    model = tiny_gpt(tok)
    encoded = [encode(tok, e) for e in EXCHANGES]
    inputs, targets = pack(encoded, 64, tok.pad_id)
    assert len(inputs) < len(EXCHANGES)  # several exchanges share a row
    x, y = torch.from_numpy(inputs), torch.from_numpy(targets)
    segments, positions = segments_and_positions(x, tok.eos_id)
    with torch.no_grad():
        packed = token_logprobs(model, x, y, positions=positions, segment_ids=segments)
        alone = []
        for ids, mask in encoded:
            xi, yi = pack([(ids, mask)], len(ids) - 1, tok.pad_id)
            lp = token_logprobs(model, torch.from_numpy(xi), torch.from_numpy(yi))
            alone.extend(lp[0][torch.from_numpy(yi[0]) != IGNORE_INDEX].tolist())
    # pack keeps each row's exchanges in order, rows in order of first use: read them back likewise.
    got = packed[y != IGNORE_INDEX]
    assert sorted(got.tolist()) == pytest.approx(sorted(alone), abs=1e-5)
    assert len(got) == len(alone) == sum(sum(m) for _, m in encoded)
    # Without segments and positions the later exchanges of a row would see the earlier ones.
    with torch.no_grad():
        leaky = token_logprobs(model, x, y)[y != IGNORE_INDEX]
    assert not torch.allclose(leaky, got, atol=1e-4)


def test_objective_is_the_mean_over_response_tokens_and_ignores_prompts(tok: Tokenizer):
    model = tiny_gpt(tok).train()
    inputs, targets = pack([encode(tok, e) for e in EXCHANGES], 64, tok.pad_id)
    x, y = torch.from_numpy(inputs), torch.from_numpy(targets)
    captured = {}

    def keep(_module, _args, out):
        out.retain_grad()
        captured["h"] = out

    handle = model.norm.register_forward_hook(keep)
    out = SFTObjective(model, tok.eos_id)(x, y)
    handle.remove()
    out.loss.backward()
    # By hand: the negative log-softmax of the target, averaged over response positions.
    segments, positions = segments_and_positions(x, tok.eos_id)
    with torch.no_grad():
        logits = model(x, positions=positions, segment_ids=segments).logits
    valid = y != IGNORE_INDEX
    nll = -torch.log_softmax(logits, -1).gather(-1, y.clamp(min=0)[..., None])[..., 0]
    assert out.loss.item() == pytest.approx((nll[valid].sum() / valid.sum()).item(), rel=1e-5)
    assert out.metrics["response_tokens"].item() == valid.sum().item()
    # The gradient reaches the final hidden states only where a response token is predicted.
    grad = captured["h"].grad.abs().sum(-1)
    assert (grad[~valid] == 0).all()
    assert (grad[valid] > 0).all()


def test_lora_starts_at_the_base_trains_only_adapters_and_merges(tok: Tokenizer):
    base = tiny_gpt(tok)
    model = apply_lora(copy.deepcopy(base), rank=2, alpha=4.0)
    x = torch.randint(0, tok.vocab_size, (2, 12))
    with torch.no_grad():
        assert torch.equal(model(x).logits, base(x).logits)  # B = 0: step 0 is the base
    adapters = [m for m in model.modules() if isinstance(m, LoRALinear)]
    assert len(adapters) == 7  # q, k, v, o, gate, up, down of the one block
    d, f = 16, model.cfg.ffn_dim
    assert trainable_parameters(model) == 2 * (4 * (d + d) + 2 * (d + f) + (f + d))
    assert not model.tok_emb.weight.requires_grad and not isinstance(model.lm_head, LoRALinear)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):  # the second step moves A too, once B is non-zero
        model.train()
        model(x[:, :-1], x[:, 1:]).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {k for k in before if k.endswith(("lora_a", "lora_b"))}
    merged = merge_lora(model.eval())
    assert not any(isinstance(m, LoRALinear) for m in merged.modules())
    assert set(merged.state_dict()) == set(base.state_dict())
    with torch.no_grad():
        assert torch.allclose(merged(x).logits, model(x).logits, atol=1e-5)
        assert not torch.allclose(merged(x).logits, base(x).logits, atol=1e-3)
    assert any(isinstance(m, LoRALinear) for m in model.modules())  # merging copies


def test_lora_refuses_the_tied_head(tok: Tokenizer):
    with pytest.raises(ValueError, match="head"):
        apply_lora(tiny_gpt(tok), 2, 4.0, targets=("lm_head",))


def test_packed_rows_read_the_same_samples_for_any_split():
    inputs = np.arange(5 * 3).reshape(5, 3)
    data = PackedRows(inputs, inputs + 100, seed=1)
    whole, _ = data.batch(1, 4, 3)
    halves = torch.cat([data.batch(2, 2, 3)[0], data.batch(3, 2, 3)[0]])
    assert torch.equal(whole, halves)
    # Every epoch reads every row once.
    epoch = torch.cat([data.batch(i, 1, 3)[0] for i in range(5)])
    assert sorted(epoch[:, 0].tolist()) == [0, 3, 6, 9, 12]
    ranks = [data.batch(0, 2, 3, rank=r, world_size=2)[0] for r in range(2)]
    interleaved = torch.stack([ranks[0][0], ranks[1][0], ranks[0][1], ranks[1][1]])
    assert torch.equal(interleaved, data.batch(0, 4, 3)[0])


def test_gradient_accumulation_splits_give_the_same_update(tok: Tokenizer, tmp_path):
    # Exchanges of equal length: every row holds as many response tokens as any other.
    examples = [Example(f"What is {a}+{b}?", f"The answer is {a + b}.")
                for a in range(1, 5) for b in range(1, 6)]
    lengths = {len(encode(tok, e)[0]) for e in examples}
    assert len(lengths) == 1
    data = packed_rows(tok, examples, 2 * lengths.pop() - 1, seed=0)
    assert len(data) == len(examples) // 2

    results = []
    for accum in (1, 2, 4):
        model = tiny_gpt(tok)
        cfg = TrainConfig(steps=2, batch_size=4, seq_len=data.inputs.shape[1], grad_accum=accum,
                          optimizer=OptimizerConfig(lr=1e-2, weight_decay=0.0), eval_interval=0,
                          schedule=ScheduleConfig(warmup_steps=0),
                          device="cpu", progress=False, spike_factor=0.0)
        train(SFTObjective(model, tok.eos_id), data, cfg, tmp_path / f"accum-{accum}")
        results.append(model.state_dict())
    assert not torch.equal(results[0]["tok_emb.weight"], tiny_gpt(tok).state_dict()["tok_emb.weight"])
    for other in results[1:]:
        for k, v in results[0].items():
            assert torch.allclose(v, other[k], atol=1e-6), k


def test_bad_configurations_name_the_key():
    with pytest.raises(ConfigError, match="lora_rank"):
        SFTConfig(lora_rank=-1)
    with pytest.raises(ConfigError, match="warmup"):
        SFTConfig(steps=5, warmup=10)
    with pytest.raises(ConfigError, match="batch_size"):
        SFTConfig(batch_size=6, grad_accum=4)
    with pytest.raises(ConfigError, match="attributes"):
        SFTData(attributes=("height",))
    with pytest.raises(ConfigError, match="math"):
        SFTData(math=0, present_people=0)
    with pytest.raises(ConfigError, match="cot"):
        SFTData(cot="yes")  # type: ignore[arg-type]


def test_sft_data_with_or_without_worked_steps():
    corpus = PRESETS["base"].corpus
    steps = SFTData(math=6, present_people=0).items(corpus)
    bare = SFTData(math=6, present_people=0, cot=False).items(corpus)
    assert [it.prompt for it in steps] == [it.prompt for it in bare]
    assert all("=" in it.response for it in steps) and not any("=" in it.response for it in bare)
    assert all(is_correct(it, it.response) and is_well_formed(it, it.response) for it in steps + bare)


# A tiny base: 10 steps on a small world; its context holds a whole word problem exchange.
BASE = PRESETS["base"].replace(
    corpus={"n_documents": 200, "eval_documents": 20, "facts": {"n_entities": 8}},
    model={"vocab_size": 300, "n_layer": 1, "d_model": 16, "n_head": 2, "max_seq_len": 256},
    train={"steps": 10, "batch_size": 4, "seq_len": 32, "eval_interval": 0, "eval_batches": 1,
           "checkpoint_interval": 10, "log_interval": 1, "progress": False,
           "schedule": {"warmup_steps": 2}})


@pytest.mark.parametrize("rank", [0, 2])
def test_sft_stores_reloads_and_hits_the_cache(tmp_path, rank: int):
    store = Store(tmp_path)
    cfg = SFTConfig(data=SFTData(math=2, present_people=1, attributes=("city",)), steps=3, batch_size=2,
                    seq_len=256, warmup=1, lora_rank=rank, lora_alpha=4.0)
    run = sft(BASE, cfg, store)
    assert run.stage == "sft" and run.path.parent.name == "post-sft"
    assert run.summary["steps"] == 3 and run.summary["examples"] == 2 + 2  # one city question per language
    total = run.summary["total_parameters"]
    trainable = run.summary["trainable_parameters"]
    assert trainable < total / 4 if rank else trainable == total
    assert type(run.model) is GPT and not any(isinstance(m, LoRALinear) for m in run.model.modules())
    again = sft(BASE, cfg, store)
    assert again.path == run.path
    for k, v in run.model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k])
    # A chained stage is keyed by its start.
    chained = sft(BASE, dataclasses.replace(cfg, steps=2, warmup=0), store, start=run)
    assert chained.key["start"] == run.key and chained.path != run.path


def test_rejection_sampling_keeps_only_verified_samples(tok: Tokenizer, monkeypatch):
    items = [Item("math", "en", f"Q{i}", "1+1=2. The answer is 2.", "2") for i in range(3)]
    texts = [["The answer is 3.", "2 apples", "1+1=2. The answer is 2."],  # correct but ill-formed second
             ["The answer is 5.", "no", "The answer is 4."],  # none correct: dropped
             ["The answer is 2.", "1+1=2. The answer is 2.", "x"]]
    correct = np.array([[is_correct(it, t) for t in row] for it, row in zip(items, texts, strict=True)])
    formed = np.array([[is_well_formed(it, t) for t in row] for it, row in zip(items, texts, strict=True)])
    fake = Samples([[[tok.end_id]] * 3] * 3, texts, correct, formed)
    monkeypatch.setattr(rejection, "sample", lambda *a, **k: fake)
    kept = rejection.rejection_sample(tiny_gpt(tok), tok, items, n=3, temperature=1.0, seed=0)
    assert kept == [Example("Q0", "1+1=2. The answer is 2."), Example("Q2", "The answer is 2.")]
