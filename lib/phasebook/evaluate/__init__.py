"""Scoring trained models: likelihoods of given text and answers the model generates itself."""

from phasebook.evaluate.cot import (
    ANSWER_CUE,
    PERTURBATIONS,
    PROMPT_FORMATS,
    SHIFTS,
    LeakageError,
    accuracy_by_steps,
    add_clause,
    assert_disjoint,
    assert_test_split,
    composition_holdout,
    in_distribution,
    is_correct,
    larger_config,
    larger_numbers,
    longer,
    longer_config,
    perturb,
    prompted_answers,
    rename,
    render_prompt,
    renumber,
    shifted,
    unseen_compositions,
)
from phasebook.evaluate.knowledge import fact_recall
from phasebook.evaluate.lm import (
    bits_per_byte,
    complete,
    completion_logprobs,
    compressor_bits_per_byte,
    score_answers,
)
from phasebook.evaluate.passk import mean_pass_at_k, pass_at_k
from phasebook.evaluate.stats import Accuracy, PairedChange, wilson_interval

__all__ = ["ANSWER_CUE", "PERTURBATIONS", "PROMPT_FORMATS", "SHIFTS", "Accuracy", "LeakageError",
           "PairedChange", "accuracy_by_steps", "add_clause", "assert_disjoint", "assert_test_split",
           "bits_per_byte", "complete", "completion_logprobs", "composition_holdout",
           "compressor_bits_per_byte", "fact_recall", "in_distribution", "is_correct", "larger_config",
           "larger_numbers", "longer", "longer_config", "mean_pass_at_k", "pass_at_k", "perturb",
           "prompted_answers", "rename", "render_prompt", "renumber", "score_answers", "shifted",
           "unseen_compositions", "wilson_interval"]
