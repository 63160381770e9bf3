"""The Llama-style GPT every experiment trains, its configuration, KV-cache generation and log-probs."""

from phasebook.model.config import ModelConfig
from phasebook.model.generate import generate, sampling_probs
from phasebook.model.gpt import (
    GPT,
    IGNORE_INDEX,
    KVCache,
    ModelOutput,
    RMSNorm,
    apply_rope,
    rope_angles,
    token_logprobs,
    token_nll,
)

__all__ = [
    "GPT",
    "IGNORE_INDEX",
    "KVCache",
    "ModelConfig",
    "ModelOutput",
    "RMSNorm",
    "apply_rope",
    "generate",
    "rope_angles",
    "sampling_probs",
    "token_logprobs",
    "token_nll",
]
