"""Training precision end to end: the kernel dispatch rule, fp8 model conversion, and fp8 training
(the emulated CPU path) against bf16 on the real GPT."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from phasebook.bench.train import RandomTokens
from phasebook.errors import PhasebookError
from phasebook.kernels import Fp8Linear, KernelError, resolve_backend
from phasebook.model import GPT, ModelConfig
from phasebook.train import OptimizerConfig, ScheduleConfig, TrainConfig, prepare_model, train

BLOCK_LINEARS = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")


def tiny_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(ModelConfig(vocab_size=64, n_layer=2, n_head=4, d_model=32, max_seq_len=16))


def config(**overrides: object) -> TrainConfig:
    base: dict[str, object] = {
        "steps": 24, "batch_size": 8, "seq_len": 16, "checkpoint_interval": 12, "log_interval": 4,
        "eval_interval": 0, "eval_batches": 1, "progress": False, "spike_factor": 0.0,
        "schedule": ScheduleConfig(name="cosine", warmup_steps=4), "optimizer": OptimizerConfig(lr=1e-2)}
    return TrainConfig(**{**base, **overrides})


# --- the dispatch rule ---------------------------------------------------------------------------

def test_dispatch_rule_picks_reference_on_cpu_and_explains_what_cannot_run() -> None:
    x = torch.ones(2, 2)
    assert resolve_backend("auto", x) == "reference"
    assert resolve_backend("reference", x) == "reference"
    assert resolve_backend("triton", x) == "triton"  # the tests run with the Triton interpreter on
    with pytest.raises(KernelError, match="unknown; allowed: auto, triton, reference"):
        resolve_backend("cuda", x)
    meta = torch.ones(2, 2, device="meta")
    with pytest.raises(KernelError, match="different devices"):
        resolve_backend("auto", x, meta)
    with pytest.raises(KernelError, match=r"Triton kernels run on CUDA tensors.*backend='reference'"):
        resolve_backend("triton", meta)


def test_inside_torch_compile_auto_means_reference() -> None:
    seen: list[str] = []

    def probe(x: torch.Tensor) -> torch.Tensor:
        seen.append(resolve_backend("auto", x))
        return x + 1

    torch.compile(probe, backend="eager")(torch.ones(3))
    assert seen == ["reference"]


# --- fp8 conversion ------------------------------------------------------------------------------

def test_fp8_conversion_swaps_block_linears_and_keeps_parameters() -> None:
    model = tiny_gpt()
    keys = list(model.state_dict())
    weights = {name: p for name, p in model.named_parameters()}
    assert prepare_model(model, "fp8") == len(BLOCK_LINEARS) * model.cfg.n_layer
    assert prepare_model(model, "fp8") == 0  # already converted: nothing more to do
    for block in model.blocks:
        for name in ("wq", "wk", "wv", "wo"):
            assert isinstance(getattr(block.attn, name), Fp8Linear)
        for name in ("w_gate", "w_up", "w_down"):
            assert isinstance(getattr(block.mlp, name), Fp8Linear)
    assert type(model.lm_head) is nn.Linear  # the output head stays in higher precision
    assert list(model.state_dict()) == keys
    assert all(p is weights[name] for name, p in model.named_parameters())
    assert prepare_model(tiny_gpt(), "bf16") == 0
    with pytest.raises(PhasebookError, match="precision 'fp16' is unknown"):
        prepare_model(tiny_gpt(), "fp16")


def test_fp8_forward_differs_from_bf16_by_quantisation_only() -> None:
    bf16, fp8 = tiny_gpt(), tiny_gpt()
    prepare_model(fp8, "fp8")
    idx = torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = bf16(idx, idx).loss, fp8(idx, idx).loss
    assert a.item() != b.item()  # the linears really quantise
    assert abs(a.item() - b.item()) < 0.02 * a.item()


# --- fp8 training --------------------------------------------------------------------------------

def test_fp8_training_tracks_bf16_and_resumes_exactly(tmp_path: Path) -> None:
    data = RandomTokens(vocab_size=16)  # 16 of the 64 ids: a distribution the model can learn
    runs = {p: train(tiny_gpt(), data, config(precision=p), tmp_path / p) for p in ("bf16", "fp8")}
    first = runs["bf16"].metrics[0]["loss"]
    for result in runs.values():
        assert result.final_loss < first - 0.8  # both learn (ln 64 → towards ln 16)
    gap = abs(runs["fp8"].final_loss / runs["bf16"].final_loss - 1)
    assert 0 < gap < 0.05

    # Interrupted at step 16 and started again, it resumes from the step-12 checkpoint and ends
    # on exactly the same loss as the uninterrupted run.
    class Interrupted(Exception):
        pass

    def stop_at_16(record: dict) -> None:
        if record["step"] == 16:
            raise Interrupted

    halves = tmp_path / "halves"
    with pytest.raises(Interrupted):
        train(tiny_gpt(), data, config(precision="fp8"), halves, on_log=stop_at_16)
    resumed = train(tiny_gpt(), data, config(precision="fp8"), halves)
    assert resumed.final_loss == runs["fp8"].final_loss


def test_a_checkpoint_trained_in_fp8_loads_into_a_plain_model(tmp_path: Path) -> None:
    model = tiny_gpt()
    train(model, RandomTokens(vocab_size=16), config(precision="fp8", steps=4), tmp_path)
    plain = tiny_gpt(seed=1)
    plain.load_state_dict(model.state_dict())  # same keys: fp8 changed the arithmetic, not the model
    for a, b in zip(plain.parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b)
