"""Scoring trained models: likelihoods of given text and answers the model generates itself."""

from phasebook.evaluate.knowledge import fact_recall
from phasebook.evaluate.lm import (
    bits_per_byte,
    complete,
    completion_logprobs,
    compressor_bits_per_byte,
    score_answers,
)

__all__ = ["bits_per_byte", "complete", "completion_logprobs", "compressor_bits_per_byte",
           "fact_recall", "score_answers"]
