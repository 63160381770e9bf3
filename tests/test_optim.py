"""Optimizers: Newton–Schulz orthogonalisation, param-group roles, learning, state round trips."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from phasebook.train.optim import (
    MUON_UPDATE_RMS,
    Muon,
    OptimizerConfig,
    build_optimizer,
    orthogonalize,
    split_parameters,
)
from phasebook.validation import ConfigError, from_mapping


class RMSNorm(nn.Module):
    """A norm the optimizer can only recognise by its class name."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


class TinyLM(nn.Module):
    """Embedding, one hidden block (two matrices, a bias), a norm and an optionally tied head."""

    def __init__(self, vocab: int = 12, dim: int = 16, tied: bool = False):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.up = nn.Linear(dim, 2 * dim)
        self.down = nn.Linear(2 * dim, dim, bias=False)
        self.norm = RMSNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        if tied:
            self.lm_head.weight = self.embed.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        h = h + self.down(torch.relu(self.up(h)))
        return self.lm_head(self.norm(h))


def loss_of(model: TinyLM, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())


def problem(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Next token = (token * 5 + 3) mod 12: learnable by a lookup."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 12, (16, 8), generator=g)
    return x, (x * 5 + 3) % 12


@pytest.mark.parametrize("shape", [(32, 64), (96, 48), (8, 200)])
def test_newton_schulz_puts_singular_values_in_a_band_around_one(shape: tuple[int, int]) -> None:
    torch.manual_seed(0)
    g = torch.randn(*shape) * 7.0  # the scale of the input must not matter
    out = orthogonalize(g, steps=5)
    s = torch.linalg.svdvals(out)
    assert out.shape == g.shape and out.dtype == g.dtype
    assert s.min() > 0.6 and s.max() < 1.25
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    exact = u @ vh  # the orthogonal factor that Newton–Schulz approximates
    cosine = (out * exact).sum() / (out.norm() * exact.norm())
    assert cosine > 0.97


def test_newton_schulz_needs_its_iterations() -> None:
    torch.manual_seed(1)
    g = torch.randn(40, 20)
    assert torch.linalg.svdvals(orthogonalize(g, steps=1)).min() < 0.5


def test_adamw_groups_decay_only_linear_matrices() -> None:
    model = TinyLM()
    opt = build_optimizer(model, OptimizerConfig(name="adamw", lr=1e-3, weight_decay=0.2))
    assert isinstance(opt, torch.optim.AdamW)
    groups = {g["name"]: g for g in opt.param_groups}
    assert set(groups) == {"decay", "no_decay"}
    ids = {name: {id(p) for p in g["params"]} for name, g in groups.items()}
    assert ids["decay"] == {id(model.up.weight), id(model.down.weight), id(model.lm_head.weight)}
    assert ids["no_decay"] == {id(model.embed.weight), id(model.up.bias), id(model.norm.weight)}
    assert groups["decay"]["weight_decay"] == 0.2 and groups["no_decay"]["weight_decay"] == 0.0
    assert all(g["base_lr"] == 1e-3 for g in opt.param_groups)


def test_muon_takes_hidden_matrices_and_adamw_the_rest() -> None:
    model = TinyLM()
    opt = build_optimizer(model, OptimizerConfig(name="muon", lr=1e-3, muon_lr=0.03))
    assert isinstance(opt, Muon)
    groups = {g["name"]: g for g in opt.param_groups}
    ids = {name: {id(p) for p in g["params"]} for name, g in groups.items()}
    assert ids["muon"] == {id(model.up.weight), id(model.down.weight)}
    assert ids["adamw_decay"] == {id(model.lm_head.weight)}
    assert ids["adamw_no_decay"] == {id(model.embed.weight), id(model.up.bias), id(model.norm.weight)}
    assert groups["muon"]["use_muon"] and not groups["adamw_no_decay"]["use_muon"]
    assert groups["muon"]["base_lr"] == 0.03 and groups["adamw_decay"]["base_lr"] == 1e-3


@pytest.mark.parametrize("name", ["adamw", "muon"])
def test_tied_head_is_an_undecayed_embedding_held_once(name: str) -> None:
    model = TinyLM(tied=True)
    roles = split_parameters(model)
    assert roles["head"] == [] and any(p is model.embed.weight for p in roles["other"])
    opt = build_optimizer(model, OptimizerConfig(name=name))
    held = [id(p) for g in opt.param_groups for p in g["params"]]
    assert len(held) == len(set(held)) == len(list(model.parameters()))
    group_of = {id(p): g for g in opt.param_groups for p in g["params"]}
    assert group_of[id(model.embed.weight)]["weight_decay"] == 0.0


@pytest.mark.parametrize("name", ["adamw", "muon"])
def test_optimizer_reduces_the_loss(name: str) -> None:
    torch.manual_seed(0)
    model = TinyLM()
    x, y = problem()
    opt = build_optimizer(model, OptimizerConfig(name=name, lr=1e-2, muon_lr=0.02))
    first = loss_of(model, x, y).item()
    for _ in range(60):
        opt.zero_grad()
        loss = loss_of(model, x, y)
        loss.backward()
        opt.step()
    assert loss_of(model, x, y).item() < 0.3 * first


@pytest.mark.parametrize("shape", [(16, 64), (64, 16), (32, 32)])
def test_muon_update_rms_does_not_depend_on_shape(shape: tuple[int, int]) -> None:
    torch.manual_seed(0)
    w = nn.Parameter(torch.zeros(shape))
    opt = Muon([{"params": [w], "use_muon": True}], lr=0.01, weight_decay=0.0)
    w.grad = torch.randn(shape)
    opt.step()
    rms = w.detach().pow(2).mean().sqrt().item()
    assert rms == pytest.approx(MUON_UPDATE_RMS * 0.01, rel=0.3)


def test_muon_rejects_vectors_in_a_muon_group() -> None:
    with pytest.raises(ValueError, match="matrices"):
        Muon([{"params": [nn.Parameter(torch.zeros(4))], "use_muon": True}])


@pytest.mark.parametrize("name", ["adamw", "muon"])
def test_state_dict_round_trip_continues_identically(name: str) -> None:
    torch.manual_seed(0)
    cfg = OptimizerConfig(name=name)
    model = TinyLM()
    opt = build_optimizer(model, cfg)
    x, y = problem(1)

    def step(m: TinyLM, o: torch.optim.Optimizer) -> None:
        o.zero_grad()
        loss_of(m, x, y).backward()
        o.step()

    for _ in range(3):
        step(model, opt)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    twin = copy.deepcopy(model)
    twin_opt = build_optimizer(twin, cfg)
    buffer.seek(0)
    twin_opt.load_state_dict(torch.load(buffer, weights_only=True))
    assert [g["base_lr"] for g in twin_opt.param_groups] == [g["base_lr"] for g in opt.param_groups]
    for _ in range(2):
        step(model, opt)
        step(twin, twin_opt)
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)


def test_invalid_optimizer_config_names_each_field() -> None:
    with pytest.raises(ConfigError) as err:
        OptimizerConfig(name="sgd", lr=0.0, betas=(0.9, 1.5), ns_steps=0)
    text = str(err.value)
    for field in ("name", "lr", "betas", "ns_steps"):
        assert f"{field}:" in text
    assert from_mapping(OptimizerConfig, {"betas": [0.8, 0.99]}).betas == (0.8, 0.99)
