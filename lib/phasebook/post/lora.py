"""LoRA: fine-tune a model through low-rank updates of its matrices, the matrices themselves frozen.

Hu et al. (2021), "LoRA: Low-Rank Adaptation of Large Language Models". A linear layer y = W x
with W (out × in) frozen learns only ΔW = (α / r) · B A, with A (r × in) and B (out × r):

    y = W x + (α / r) · B (A x)

- A starts small and random, B at zero, so ΔW = 0 and the adapted model is exactly the base
  model at step 0; the first gradient reaches B (through A x ≠ 0), and A moves once B ≠ 0.
- α / r keeps the update's scale roughly independent of the rank r, so a rank sweep need not
  retune the learning rate (the paper's argument; α is fixed while r varies).
- After training, W + (α / r) · B A is an ordinary matrix: `merge_lora` folds every adapter back,
  and the result is a plain GPT of the same shape, with no extra cost at inference.

Adapters go on the attention projections (q, k, v, o) and the MLP's three matrices by default,
never on the token embedding or the output head, which this model ties together.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from phasebook.model import GPT

# Every matrix of a block: attention q, k, v, o and the SwiGLU gate, up and down.
DEFAULT_TARGETS: tuple[str, ...] = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")


class LoRALinear(nn.Module):
    """A frozen `nn.Linear` plus the trainable low-rank update (alpha / rank) · B A."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank is {rank}; it must be at least 1.")
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.rank, self.alpha, self.scale = rank, alpha, alpha / rank
        like = {"dtype": base.weight.dtype, "device": base.weight.device}
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, **like))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, **like))
        # A as nn.Linear would initialise a weight of its shape (the reference implementation's
        # choice); B = 0 makes the update zero.
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: Tensor) -> Tensor:
        return self.base(x) + (x @ self.lora_a.T @ self.lora_b.T) * self.scale

    def delta(self) -> Tensor:
        """ΔW = (alpha / rank) · B A, the shape of the base weight."""
        return (self.lora_b @ self.lora_a) * self.scale


def apply_lora(model: GPT, rank: int, alpha: float, targets: Sequence[str] = DEFAULT_TARGETS) -> GPT:
    """Freeze every parameter of `model` and wrap its linear layers named in `targets` (the last
    part of the module name: "wq", "w_up", …) in `LoRALinear`, in place; returns the model.

    The embedding (tied to the output head) and the norms stay frozen, so only A and B train.
    """
    for name in targets:
        if name == "lm_head":
            raise ValueError("the output head shares its matrix with the token embedding; "
                             "LoRA leaves it out.")
    for p in model.parameters():
        p.requires_grad_(False)
    found = 0
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if child_name in targets and isinstance(child, nn.Linear):
                setattr(module, child_name, LoRALinear(child, rank, alpha))
                found += 1
    if found == 0:
        raise ValueError(f"no linear layer is named any of {list(targets)}; LoRA would train nothing.")
    return model


@torch.no_grad()
def merge_lora(model: GPT) -> GPT:
    """A plain GPT whose matrices are W + ΔW for every adapted layer (a copy; `model` is unchanged)."""
    merged = copy.deepcopy(model)
    for module in list(merged.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                linear = child.base
                linear.weight.add_(child.delta())
                linear.weight.requires_grad_(True)
                setattr(module, child_name, linear)
    for p in merged.parameters():
        p.requires_grad_(True)
    return merged


def trainable_parameters(model: nn.Module) -> int:
    """How many parameters would train (requires_grad), shared ones counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
