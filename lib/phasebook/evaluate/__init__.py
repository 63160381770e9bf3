"""Scoring trained models: likelihoods of given text and answers the model generates itself."""

from phasebook.evaluate.cot import (
    PERTURBATIONS,
    PROMPT_FORMATS,
    SHIFTS,
    LeakageError,
    accuracy_by_steps,
    add_clause,
    assert_disjoint,
    assert_test_split,
    composition_holdout,
    extract_final_answer,
    in_distribution,
    is_correct,
    larger_numbers,
    longer,
    perturb,
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
from phasebook.evaluate.stats import Accuracy, wilson_interval

__all__ = ["PERTURBATIONS", "PROMPT_FORMATS", "SHIFTS", "Accuracy", "LeakageError", "accuracy_by_steps",
           "add_clause", "assert_disjoint", "assert_test_split", "bits_per_byte", "complete",
           "completion_logprobs", "composition_holdout", "compressor_bits_per_byte", "extract_final_answer",
           "fact_recall", "in_distribution", "is_correct", "larger_numbers", "longer", "mean_pass_at_k",
           "pass_at_k", "perturb", "rename", "render_prompt", "renumber", "score_answers", "shifted",
           "unseen_compositions", "wilson_interval"]
