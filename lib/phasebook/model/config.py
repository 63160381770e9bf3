"""The model's hyperparameters: one frozen, validated dataclass shared by training and notebooks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from phasebook.validation import Checks

ROPE_SCALING_TYPES = ("linear", "yarn")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """A Llama-style decoder: RMSNorm, RoPE, grouped-query attention, SwiGLU, optional QK-norm.

    Keyword-only, so call sites read as configurations and never depend on field order.
    """

    vocab_size: int
    n_layer: int
    n_head: int
    d_model: int
    n_kv_head: int | None = None  # grouped-query attention; None = n_head (plain multi-head)
    ffn_hidden: int | None = None  # None = 8/3·d_model rounded up to a multiple of 32
    max_seq_len: int  # the training context; RoPE itself has no hard limit
    # RoPE and its context extension (the maths is in `gpt.rope_frequencies`): raising rope_base is ABF;
    # rope_scaling = s > 1 stretches the angles by s, uniformly ("linear", position interpolation) or
    # per frequency ("yarn", which also needs the pre-training context and sharpens attention).
    rope_base: float = 10000.0
    rope_scaling: float = 1.0  # s; 1 = plain RoPE whatever the type
    rope_scaling_type: Literal["linear", "yarn"] = "linear"
    rope_original_max_seq_len: int | None = None  # yarn only: the context the model was pre-trained at
    rope_yarn_alpha: float = 1.0  # yarn: below alpha turns within that context, a frequency is interpolated
    rope_yarn_beta: float = 32.0  # yarn: above beta turns it is kept; a linear ramp in between
    qk_norm: bool = False  # RMSNorm on each head's queries and keys before RoPE
    tie_embeddings: bool = True  # the LM head reuses the token-embedding matrix
    z_loss: float = 0.0  # weight of mean(logsumexp(logits)²) added to the loss
    norm_eps: float = 1e-5
    init_std: float = 0.02

    def __post_init__(self) -> None:
        c = Checks(self)
        for name in ("vocab_size", "n_layer", "n_head", "d_model", "max_seq_len"):
            c.range(name, 1, integer=True)
        if self.n_kv_head is not None:
            c.range("n_kv_head", 1, integer=True)
        if self.ffn_hidden is not None:
            c.range("ffn_hidden", 1, integer=True)
        c.range("rope_base", 1.0, lo_open=True)
        c.range("rope_scaling", 1.0)
        self._check_rope_scaling(c)
        c.range("z_loss", 0.0)
        c.range("norm_eps", 0.0, lo_open=True)
        c.range("init_std", 0.0, lo_open=True)
        for name in ("qk_norm", "tie_embeddings"):
            c.rule(isinstance(getattr(self, name), bool), name, "must be true or false.")
        if not c.problems:  # the relations below assume the sizes are valid integers
            c.rule(self.d_model % self.n_head == 0, "d_model",
                   f"must be a multiple of n_head={self.n_head} (head_dim = d_model / n_head).")
            if self.d_model % self.n_head == 0:
                c.rule(self.head_dim % 2 == 0, "d_model",
                       f"d_model / n_head = {self.head_dim} must be even: RoPE rotates pairs of dimensions.")
            c.rule(self.n_head % self.kv_heads == 0, "n_kv_head",
                   f"must divide n_head={self.n_head} (each key/value head serves a group of query heads).")
        c.done()

    def _check_rope_scaling(self, c: Checks) -> None:
        c.choice("rope_scaling_type", ROPE_SCALING_TYPES)
        n_before = len(c.problems)
        c.range("rope_yarn_alpha", 0.0, lo_open=True)
        c.range("rope_yarn_beta", 0.0, lo_open=True)
        if len(c.problems) == n_before:
            c.rule(self.rope_yarn_beta > self.rope_yarn_alpha, "rope_yarn_beta",
                   f"must be above rope_yarn_alpha={self.rope_yarn_alpha}: the ramp runs from alpha to beta.")
        original = self.rope_original_max_seq_len
        if self.rope_scaling_type != "yarn":
            c.rule(original is None, "rope_original_max_seq_len",
                   f"only rope_scaling_type 'yarn' uses it (here {self.rope_scaling_type!r}); leave it None.")
        elif original is None:
            c.fail("rope_original_max_seq_len", "is None; rope_scaling_type 'yarn' needs the context length "
                   "the model was pre-trained at (it decides which frequencies are interpolated).")
        else:
            c.range("rope_original_max_seq_len", 1, integer=True)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def kv_heads(self) -> int:
        """The number of key/value heads, with the default resolved."""
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def ffn_dim(self) -> int:
        """The SwiGLU hidden width: 8/3·d_model keeps the MLP's parameters at 8·d_model², as a 4x GELU MLP."""
        if self.ffn_hidden is not None:
            return self.ffn_hidden
        return -(-8 * self.d_model // (3 * 32)) * 32

    def block_matmul_params(self) -> int:
        """Weights of the matrix multiplies in one transformer block (attention and MLP)."""
        d, hd = self.d_model, self.head_dim
        attention = d * self.n_head * hd * 2 + d * self.kv_heads * hd * 2  # q, out; k, v
        return attention + 3 * d * self.ffn_dim

    def num_params(self, exclude_embedding: bool = False) -> int:
        """Parameter count from the configuration alone, as `GPT.num_params` counts the built model.

        `exclude_embedding` leaves out the vocabulary matrices (token embedding and an untied LM
        head), the usual N of scaling laws: what remains grows with depth and width only.
        """
        norms = self.n_layer * (2 * self.d_model + (2 * self.head_dim if self.qk_norm else 0)) + self.d_model
        n = self.n_layer * self.block_matmul_params() + norms
        if not exclude_embedding:
            n += self.vocab_size * self.d_model * (1 if self.tie_embeddings else 2)
        return n

    def flops_per_token(self, seq_len: int) -> int:
        """Training FLOPs (forward + backward) per token at context `seq_len`, for MFU.

        Every weight in a matrix multiply costs 2 FLOPs per token forward (multiply and add) and
        4 backward (gradients for the input and for the weight): 6 per weight, counting the LM head
        (tied or not: its matmul is real work) but not the embedding lookup or the norms. Attention
        adds, per layer and token, QKᵀ and attention·V over seq_len keys of width n_head·head_dim =
        d_model: 2·2·seq_len·d_model forward, times 3 with backward = 12·seq_len·d_model. As in
        PaLM's MFU, the causal mask's saving (half the score matrix) is not subtracted.
        """
        matmul = self.n_layer * self.block_matmul_params() + self.vocab_size * self.d_model
        return 6 * matmul + 12 * self.n_layer * self.d_model * seq_len
