"""A Llama-style GPT: the one model every experiment trains, from 0.2M parameters on a CPU to 125M on a GPU.

Pre-norm decoder blocks (RMSNorm → attention with RoPE and grouped-query heads → residual;
RMSNorm → SwiGLU MLP → residual). Every matrix multiply is an `nn.Linear` and every norm an
`RMSNorm` module, so faster kernels (fp8 matmuls, fused norms) can be swapped in by module.
The training forward has no data-dependent Python branches, so it compiles as one graph.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from phasebook.kernels.linear_ce import linear_cross_entropy
from phasebook.kernels.rmsnorm import rms_norm
from phasebook.model.config import ModelConfig

IGNORE_INDEX = -100  # targets with this value carry no loss (prompts, padding)


class RMSNorm(nn.Module):
    """x / rms(x) · weight, statistics in float32 so bf16 activations normalise accurately.

    The fused kernel of `phasebook.kernels.rmsnorm` on CUDA, its plain-torch reference elsewhere.
    """

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return rms_norm(x, self.weight, self.eps)


def rope_frequencies(head_dim: int, base: float, scaling: float = 1.0, *, method: str = "linear",
                     original_max_seq_len: int | None = None, yarn_alpha: float = 1.0,
                     yarn_beta: float = 32.0, device: torch.device | None = None) -> Tensor:
    """The rotation per position θ'_i of each pair i = 0 … head_dim/2 − 1 (float32), and why.

    Plain RoPE turns pair i of the token at position p by the angle p·θ_i, θ_i = base^(−2i/head_dim):
    pair 0 turns by a radian per position, the last pair barely at all. Attention scores then
    depend on the angle (p − q)·θ_i between a query and a key only. A model trained on contexts of
    length L has seen the angles 0 … L·θ_i; a longer context brings angles it never saw, on the
    slow pairs, which turn less than once within L. The extensions make long contexts look short:

    - ABF (adjusted base frequency) raises `base` itself: all θ_i shrink, the slow ones the most.
    - "linear" (position interpolation): θ'_i = θ_i / s for every pair, so position p·s gets
      exactly the angles that position p had (the model sees positions ÷ s).
    - "yarn" ("NTK-by-parts" interpolation of YaRN): pair i completes r_i = L / λ_i turns within
      the pre-training context L = `original_max_seq_len` (λ_i = 2π / θ_i is its wavelength).
      A pair with r_i ≥ β turns often enough that every angle is familiar: it keeps θ_i
      (extrapolates), so nearby tokens stay as sharply ordered as in pre-training. A pair with
      r_i ≤ α has not seen a full turn: it is interpolated, θ_i / s. In between the share kept,
      γ_i = (r_i − α) / (β − α), ramps linearly: θ'_i = (1 − γ_i)·θ_i / s + γ_i·θ_i.

    With s = 1 every method is plain RoPE. YaRN also sharpens attention; see
    `rope_attention_factor`.
    """
    exponents = torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim
    inv_freq = base ** -exponents
    if method == "linear":
        return inv_freq / scaling
    if method != "yarn":
        raise ValueError(f"RoPE scaling method is {method!r}; allowed: 'linear', 'yarn'.")
    if original_max_seq_len is None:
        raise ValueError("RoPE scaling method 'yarn' needs original_max_seq_len, the pre-training context.")
    turns = original_max_seq_len * inv_freq / (2 * math.pi)  # r_i = L / λ_i
    kept = ((turns - yarn_alpha) / (yarn_beta - yarn_alpha)).clamp(0.0, 1.0)  # γ_i
    interpolated = inv_freq / scaling
    return interpolated + kept * (inv_freq - interpolated)  # the blend above, exact at s = 1


def rope_attention_factor(scaling: float, method: str = "linear") -> float:
    """How much "yarn" scales queries and keys: √(1/t) = 0.1·ln(s) + 1; 1 for the other methods.

    Stretching the context spreads attention over more keys, and its softmax gets flatter (its
    entropy rises). YaRN divides the attention logits by a temperature t < 1, sharpening it back:
    softmax(q·k / (t·√d)). Scaling q and k each by √(1/t) does that without touching attention,
    so the factor is folded into RoPE's cos and sin (`rope_angles`), and logits grow by its square.
    """
    return 0.1 * math.log(scaling) + 1.0 if method == "yarn" else 1.0


def rope_angles(positions: Tensor, head_dim: int, base: float, scaling: float = 1.0, *,
                method: str = "linear", original_max_seq_len: int | None = None, yarn_alpha: float = 1.0,
                yarn_beta: float = 32.0) -> tuple[Tensor, Tensor]:
    """cos and sin (B, T, head_dim/2) of the rotary angles of `positions` (B, T), each multiplied by
    `rope_attention_factor` (1 but for "yarn").

    The angle of pair i at position p is p·θ'_i with θ'_i from `rope_frequencies`; for "linear"
    it is computed as (p / scaling)·θ_i, position interpolation as it is usually written.
    """
    inv_freq = rope_frequencies(head_dim, base, 1.0 if method == "linear" else scaling, method=method,
                                original_max_seq_len=original_max_seq_len, yarn_alpha=yarn_alpha,
                                yarn_beta=yarn_beta, device=positions.device)
    scaled = positions.float() / scaling if method == "linear" else positions.float()
    angles = scaled.unsqueeze(-1) * inv_freq
    factor = rope_attention_factor(scaling, method)
    if factor == 1.0:
        return angles.cos(), angles.sin()
    return angles.cos() * factor, angles.sin() * factor


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs (x[i], x[i + head_dim/2]) of x (B, H, T, head_dim) by the angles of their positions."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half].float(), x[..., half:].float()
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # broadcast over heads
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).type_as(x)


class KVCache:
    """Keys and values of the tokens seen so far, preallocated per layer as (B, n_kv_head, max_len, head_dim).

    Also keeps each cached token's segment id, so new queries attend only to keys of their own
    segment (generation marks left padding as its own segment). `length` is how many positions
    are filled; `GPT.forward` appends T tokens per call.
    """

    def __init__(self, cfg: ModelConfig, batch_size: int, max_len: int, *,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32):
        shape = (batch_size, cfg.kv_heads, max_len, cfg.head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.segment_ids = torch.zeros(batch_size, max_len, dtype=torch.long, device=device)
        self.batch_size = batch_size
        self.max_len = max_len
        self.length = 0

    def begin(self, segment_ids: Tensor) -> Tensor:
        """Record the segments of T new tokens; the attention mask (B, 1, T, length + T) for them."""
        batch, t = segment_ids.shape
        start, end = self.length, self.length + t
        if batch != self.batch_size:
            raise ValueError(f"KVCache was made for batch size {self.batch_size}, got {batch}.")
        if end > self.max_len:
            raise ValueError(f"KVCache holds {self.max_len} positions; {start} used, {t} more do not fit.")
        self.segment_ids[:, start:end] = segment_ids
        query_at = torch.arange(start, end, device=segment_ids.device)
        key_at = torch.arange(end, device=segment_ids.device)
        causal = key_at[None, :] <= query_at[:, None]
        same_segment = self.segment_ids[:, None, :end] == segment_ids[:, :, None]
        return (causal & same_segment).unsqueeze(1)

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store layer `layer`'s new keys and values; all of its keys and values so far."""
        start, end = self.length, self.length + k.shape[2]
        self.keys[layer][:, :, start:end] = k
        self.values[layer][:, :, start:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def advance(self, t: int) -> None:
        self.length += t


class Attention(nn.Module):
    """Causal self-attention with RoPE, grouped-query heads and optional QK-norm."""

    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.kv_heads, cfg.head_dim
        self.wq = nn.Linear(cfg.d_model, cfg.n_head * cfg.head_dim, bias=False)
        self.wk = nn.Linear(cfg.d_model, cfg.kv_heads * cfg.head_dim, bias=False)
        self.wv = nn.Linear(cfg.d_model, cfg.kv_heads * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_head * cfg.head_dim, cfg.d_model, bias=False)
        self.q_norm = RMSNorm(cfg.head_dim, cfg.norm_eps) if cfg.qk_norm else None
        self.k_norm = RMSNorm(cfg.head_dim, cfg.norm_eps) if cfg.qk_norm else None

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None,
                cache: KVCache | None = None) -> Tensor:
        b, t, _ = x.shape
        q = self.wq(x).view(b, t, self.n_head, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(b, t, self.n_kv_head, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(b, t, self.n_kv_head, self.head_dim).transpose(1, 2)
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)
        if self.n_kv_head != self.n_head:
            # Repeating keys/values per query group keeps every SDPA backend (flash included) usable.
            group = self.n_head // self.n_kv_head
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
        return self.wo(y.transpose(1, 2).reshape(b, t, self.n_head * self.head_dim))


class SwiGLU(nn.Module):
    """down(silu(gate(x)) · up(x)): the gated MLP of Llama and PaLM."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.w_gate = nn.Linear(cfg.d_model, cfg.ffn_dim, bias=False)
        self.w_up = nn.Linear(cfg.d_model, cfg.ffn_dim, bias=False)
        self.w_down = nn.Linear(cfg.ffn_dim, cfg.d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = Attention(cfg, layer)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = SwiGLU(cfg)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None,
                cache: KVCache | None = None) -> Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin, mask, cache)
        return x + self.mlp(self.mlp_norm(x))


class ModelOutput(NamedTuple):
    """What `GPT.forward` returns; `loss` and `ce_loss` are None without targets."""

    logits: Tensor | None  # (B, T, V) float32, (B, 1, V) with last_only; None for a loss-only call
    loss: Tensor | None  # the training objective: ce_loss + z_loss · mean(logsumexp²)
    ce_loss: Tensor | None  # mean cross-entropy over targets != -100, for reporting


def token_nll(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-token negative log-likelihood, logsumexp of the logits and the valid mask, each (B, T).

    Positions whose target is -100 get nll 0 and valid False.
    """
    valid = targets != IGNORE_INDEX
    lse = torch.logsumexp(logits, dim=-1)
    picked = logits.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (lse - picked) * valid, lse, valid


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.apply(self._init_weights)
        residual_std = cfg.init_std / math.sqrt(2 * cfg.n_layer)
        for block in self.blocks:
            # Each block adds two outputs to the residual stream; scaling them keeps its variance
            # independent of depth at initialisation.
            nn.init.normal_(block.attn.wo.weight, std=residual_std)
            nn.init.normal_(block.mlp.w_down.weight, std=residual_std)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=self.cfg.init_std)

    def num_params(self, exclude_embedding: bool = False) -> int:
        """Parameters of the built model (shared ones once); see `ModelConfig.num_params`."""
        n = sum(p.numel() for p in self.parameters())
        if exclude_embedding:
            n -= self.tok_emb.weight.numel()
            if not self.cfg.tie_embeddings:
                n -= self.lm_head.weight.numel()
        return n

    def flops_per_token(self, seq_len: int) -> int:
        """Training FLOPs per token at context `seq_len`; derived in `ModelConfig.flops_per_token`."""
        return self.cfg.flops_per_token(seq_len)

    def make_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        """An empty KV cache on the model's device and in its parameters' dtype."""
        weight = self.tok_emb.weight
        return KVCache(self.cfg, batch_size, max_len or self.cfg.max_seq_len, device=weight.device,
                       dtype=weight.dtype)

    def forward(self, idx: Tensor, targets: Tensor | None = None, *, positions: Tensor | None = None,
                segment_ids: Tensor | None = None, cache: KVCache | None = None,
                last_only: bool = False, return_logits: bool = False) -> ModelOutput:
        """Logits for token ids `idx` (B, T) or, given `targets` (B, T), the loss.

        positions: (B, T) RoPE positions, default 0..T-1 (continuing after the cache's length).
        segment_ids: (B, T) tokens attend only to earlier tokens of the same segment (packed sequences).
        cache: a `KVCache` to read earlier keys from and append these tokens' keys to.
        last_only: compute logits for the last position only (generation; saves a (B, T, V) tensor).
        return_logits: with targets, also return the logits. Without it the loss comes from the
            fused linear + cross-entropy kernel, which never holds all (B, T, V) logits at once.
        """
        b, t = idx.shape
        if last_only and targets is not None:
            raise ValueError("last_only=True computes no logits for the loss; pass targets=None.")
        start = 0 if cache is None else cache.length
        if positions is None:
            positions = torch.arange(start, start + t, device=idx.device).expand(b, t)
        cfg = self.cfg
        cos, sin = rope_angles(
            positions, cfg.head_dim, cfg.rope_base, cfg.rope_scaling, method=cfg.rope_scaling_type,
            original_max_seq_len=cfg.rope_original_max_seq_len, yarn_alpha=cfg.rope_yarn_alpha,
            yarn_beta=cfg.rope_yarn_beta)
        if cache is not None:
            mask = cache.begin(segment_ids if segment_ids is not None else torch.zeros_like(idx))
        elif segment_ids is not None:
            causal = torch.ones(t, t, dtype=torch.bool, device=idx.device).tril()
            mask = (causal & (segment_ids[:, :, None] == segment_ids[:, None, :])).unsqueeze(1)
        else:
            mask = None  # plain causal attention: SDPA's is_causal path (flash attention on GPU)

        x = self.tok_emb(idx)
        for block in self.blocks:
            x = block(x, cos, sin, mask, cache)
        if cache is not None:
            cache.advance(t)
        if last_only:
            x = x[:, -1:]
        h = self.norm(x)
        if targets is not None and not return_logits:
            return self._fused_loss(h, targets)
        logits = self.lm_head(h).float()
        if targets is None:
            return ModelOutput(logits, None, None)

        nll, lse, valid = token_nll(logits, targets)
        count = valid.sum().clamp(min=1)  # a batch with no targets has loss 0, not NaN
        ce_loss = nll.sum() / count
        loss = ce_loss
        if self.cfg.z_loss > 0:
            # PaLM's z-loss keeps the softmax normaliser near 1, so logits cannot drift upwards.
            loss = ce_loss + self.cfg.z_loss * (lse.pow(2) * valid).sum() / count
        return ModelOutput(logits, loss, ce_loss)

    def _fused_loss(self, h: Tensor, targets: Tensor) -> ModelOutput:
        """The loss of the logits path above, from the final hidden states without the logits."""
        weight = self.lm_head.weight
        device_type = h.device.type
        if torch.is_autocast_enabled(device_type):
            # The head is a matmul: run it in the autocast dtype, as nn.Linear would be.
            dtype = torch.get_autocast_dtype(device_type)
            h, weight = h.to(dtype), weight.to(dtype)
        loss, ce_loss = linear_cross_entropy(h.reshape(-1, h.shape[-1]), weight, targets.reshape(-1),
                                             z_loss=self.cfg.z_loss, ignore_index=IGNORE_INDEX)
        return ModelOutput(None, loss, ce_loss)


def token_logprobs(model: GPT, idx: Tensor, targets: Tensor, *, positions: Tensor | None = None,
                   segment_ids: Tensor | None = None) -> Tensor:
    """log p(targets[b, t] | idx[b, ≤t]) as (B, T), 0 where targets == -100.

    Keeps the autograd graph and the model's mode as they are: DPO and GRPO differentiate it,
    evaluation wraps it in `torch.no_grad()`. Sum over T for a sequence's log-probability.
    """
    logits = model(idx, positions=positions, segment_ids=segment_ids).logits
    nll, _, _ = token_nll(logits, targets)
    return -nll
