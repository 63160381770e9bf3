"""Optimizers: AdamW with decay on Linear matrices only, and Muon for the hidden matrices.

Both come as one `torch.optim.Optimizer` whose param groups carry a `name` and their peak
learning rate in `base_lr`; the training loop sets `lr = base_lr * schedule multiplier`, so
one schedule drives every group and one state_dict checkpoints them all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from phasebook.validation import Checks

OPTIMIZERS = ("adamw", "muon")

# Quintic Newton–Schulz coefficients (a, b, c) from K. Jordan's Muon write-up (2024): chosen for a
# steep slope at 0, so small singular values grow fast, at the price of landing in a band around 1.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
# Muon's orthogonal update is rescaled to this RMS per element, about that of an AdamW update
# (Liu et al. 2025, "Muon is scalable for LLM training"), whatever the matrix's shape.
MUON_UPDATE_RMS = 0.2


@dataclass(frozen=True)
class OptimizerConfig:
    name: Literal["adamw", "muon"] = "adamw"
    lr: float = 3e-3  # AdamW peak rate (for Muon: of the embedding, head, norms and biases)
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.1  # decoupled; only on Linear matrices
    muon_lr: float = 0.02  # Muon peak rate of the hidden matrices
    muon_momentum: float = 0.95
    ns_steps: int = 5  # Newton–Schulz iterations per Muon update

    def __post_init__(self) -> None:
        c = Checks(self)
        c.choice("name", OPTIMIZERS)
        c.range("lr", 0.0, lo_open=True)
        betas_ok = (isinstance(self.betas, tuple) and len(self.betas) == 2
                    and all(isinstance(b, int | float) and 0.0 <= b < 1.0 for b in self.betas))
        c.rule(betas_ok, "betas", "must be two numbers in [0, 1).")
        c.range("eps", 0.0, lo_open=True)
        c.range("weight_decay", 0.0)
        c.range("muon_lr", 0.0, lo_open=True)
        c.range("muon_momentum", 0.0, 1.0, hi_open=True)
        c.range("ns_steps", 1, 20, integer=True)
        c.done()


def orthogonalize(g: Tensor, steps: int = 5) -> Tensor:
    """An approximation of U Vᵀ for g = U S Vᵀ: every singular value pushed into a band around 1.

    Runs in bf16 on GPUs (fast, and the band is wide anyway) and in fp32 elsewhere.
    """
    if g.ndim != 2:
        raise ValueError(f"orthogonalize needs a matrix, got shape {tuple(g.shape)}.")
    x = g.to(torch.bfloat16 if g.is_cuda else torch.float32)
    wide = x.size(0) <= x.size(1)
    if not wide:  # iterate on the smaller Gram matrix
        x = x.T
    x = x / (x.norm() + 1e-7)  # Frobenius norm >= spectral norm, so every singular value <= 1
    a, b, c = NS_COEFFICIENTS
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * (gram @ gram)) @ x
    if not wide:
        x = x.T
    return x.to(g.dtype)


class Muon(torch.optim.Optimizer):
    """Muon for groups with `use_muon=True`, AdamW for the others, in one optimizer.

    Muon: SGD momentum with a Nesterov look-ahead whose update, seen as a matrix (rows x the
    rest), is orthogonalised by Newton–Schulz and rescaled to RMS `MUON_UPDATE_RMS`, so the
    matrices learn at a comparable rate whatever their shape. Weight decay is decoupled.
    """

    def __init__(self, params: Iterable[dict[str, Any]], *, lr: float = 0.02, momentum: float = 0.95,
                 nesterov: bool = True, ns_steps: int = 5, betas: tuple[float, float] = (0.9, 0.95),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        defaults = {"lr": lr, "momentum": momentum, "nesterov": nesterov, "ns_steps": ns_steps,
                    "betas": betas, "eps": eps, "weight_decay": weight_decay, "use_muon": False}
        super().__init__(params, defaults)
        for group in self.param_groups:
            group.setdefault("base_lr", group["lr"])
            if group["use_muon"] and any(p.ndim < 2 for p in group["params"]):
                raise ValueError("Muon groups may only hold matrices (ndim >= 2); put vectors in an "
                                 "AdamW group (use_muon=False).")

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group["use_muon"]:
                self._muon_step(group)
            else:
                self._adamw_step(group)
        return loss

    def _muon_step(self, group: dict[str, Any]) -> None:
        lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if not state:
                state["momentum_buffer"] = torch.zeros_like(p)
            buf = state["momentum_buffer"]
            buf.mul_(mu).add_(p.grad)
            update = p.grad.add(buf, alpha=mu) if group["nesterov"] else buf
            matrix = update.reshape(update.size(0), -1)
            ortho = orthogonalize(matrix, group["ns_steps"]).view_as(p)
            scale = MUON_UPDATE_RMS * math.sqrt(max(matrix.shape))  # an orthogonal matrix has RMS 1/sqrt(max)
            p.mul_(1.0 - lr * wd)
            p.add_(ortho, alpha=-lr * scale)

    def _adamw_step(self, group: dict[str, Any]) -> None:
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        beta1, beta2 = group["betas"]
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"] += 1
            t = state["step"]
            m, v = state["exp_avg"], state["exp_avg_sq"]
            m.lerp_(p.grad, 1.0 - beta1)
            v.mul_(beta2).addcmul_(p.grad, p.grad, value=1.0 - beta2)
            denom = (v.sqrt() / math.sqrt(1.0 - beta2**t)).add_(eps)
            p.mul_(1.0 - lr * wd)
            p.addcdiv_(m, denom, value=-lr / (1.0 - beta1**t))


def split_parameters(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Trainable parameters by role: 'matrix' (hidden Linear weights), 'head' (an untied `lm_head`
    weight) and 'other' (embeddings, tied heads, norms, biases and anything else).

    Roles are decided by the module holding each parameter: the output head is the Linear named
    `lm_head`, norms are modules whose class name contains "Norm"; a tied head is an embedding.
    """
    embedding, norm, linear, head = set(), set(), set(), set()
    for name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if isinstance(module, nn.Embedding):
            embedding.update(id(p) for p in own)
        elif "Norm" in type(module).__name__:
            norm.update(id(p) for p in own)
        elif isinstance(module, nn.Linear):
            (head if name.split(".")[-1] == "lm_head" else linear).add(id(module.weight))
    roles: dict[str, list[nn.Parameter]] = {"matrix": [], "head": [], "other": []}
    for p in model.parameters():  # shared (tied) parameters come once
        if not p.requires_grad:
            continue
        if id(p) in embedding or id(p) in norm:
            roles["other"].append(p)
        elif id(p) in head:
            roles["head"].append(p)
        elif id(p) in linear:
            roles["matrix"].append(p)
        else:
            roles["other"].append(p)
    return roles


def build_optimizer(model: nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """The optimizer of `cfg.name` for `model`, param groups named and carrying `base_lr`."""
    roles = split_parameters(model)

    def group(name: str, params: list[nn.Parameter], lr: float, wd: float, **extra: Any) -> dict[str, Any]:
        return {"params": params, "name": name, "lr": lr, "base_lr": lr, "weight_decay": wd, **extra}

    if cfg.name == "adamw":
        groups = [group("decay", roles["matrix"] + roles["head"], cfg.lr, cfg.weight_decay),
                  group("no_decay", roles["other"], cfg.lr, 0.0)]
        return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=cfg.betas,
                                 eps=cfg.eps)
    groups = [group("muon", roles["matrix"], cfg.muon_lr, cfg.weight_decay, use_muon=True),
              group("adamw_decay", roles["head"], cfg.lr, cfg.weight_decay, use_muon=False),
              group("adamw_no_decay", roles["other"], cfg.lr, 0.0, use_muon=False)]
    return Muon([g for g in groups if g["params"]], lr=cfg.muon_lr, momentum=cfg.muon_momentum,
                ns_steps=cfg.ns_steps, betas=cfg.betas, eps=cfg.eps)
