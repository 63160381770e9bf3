"""Post-training on the book's own model: SFT, rejection sampling, DPO and GRPO.

`chat` is the template every stage shares; `tasks` gives chat prompts from the synthetic world
with their verifiers.
"""
