# %% [markdown] tags=["en"]
# # Chain-of-thought under distribution shift
#
# The essays of this book argue that a reasoning chain is a sequence of short steps, each one
# an interpolation the model learnt in training, and that the chain holds together only while
# every step stays inside that training distribution. This chapter turns the argument into
# three measurements on the book's own small model, where we control exactly what training saw:
#
# 1. **CoT helps in distribution and breaks outside it.** Writing out the steps should beat
#    answering at once on problems like the training ones, and the advantage should shrink or
#    vanish when the problems are longer than any seen, use larger numbers, or are phrased in a
#    format never seen (the DataAlchemy study of Zhao et al. found exactly this with models trained
#    from scratch on controlled tasks).
# 2. **Perturbations hurt.** GSM-Symbolic (Mirzadeh et al., 2024) showed that changing the names
#    and numbers of a grade-school problem, or adding a clause that does not matter, lowers the
#    accuracy of large models: a sign that they match patterns rather than follow the problem.
# 3. **Errors accumulate.** If each step is right with probability p, a chain of n steps is right
#    with about pⁿ, so accuracy should fall with the number of steps.
#
# Every test item comes from the test side of the corpus's item space (a problem's split is a
# hash of its content), and the notebook checks that none falls in the training split before it
# scores anything. Every accuracy carries a 95 % Wilson interval.

# %% [markdown] tags=["zh"]
# # 分布偏移下的思维链
#
# 本书的几篇随笔认为：一条推理链由许多小步组成，每一步都是模型在训练中学会的一次内插；只有每一步
# 都落在训练分布之内，整条链才立得住。本章把这一论点变成三项测量，对象是本书自己训练的小模型——
# 它在训练中见过什么，我们一清二楚：
#
# 1. **思维链在分布内有效，出了分布就失效。** 对于和训练题相似的题，先写出步骤应当比直接给答案更准；
#    而一旦题目比见过的都长、数字更大，或者换了一种从没见过的提问格式，这份优势就该缩小乃至消失
#    （Zhao 等人的 DataAlchemy 研究在受控任务上从零训练模型，看到的正是这样）。
# 2. **扰动会拉低准确率。** GSM-Symbolic（Mirzadeh 等，2024）发现，把小学数学题里的人名和数字换掉，
#    或者插进一句无关紧要的话，大模型的准确率就会下降：这说明它们是在匹配模式，而不是在理解题目。
# 3. **错误会累积。** 如果每一步做对的概率是 p，那么 n 步的链全对的概率约为 pⁿ，准确率应当随步数下降。
#
# 所有测试题都取自语料题目空间的测试一侧（一道题属于哪个划分，由其内容的哈希决定）；打分之前，
# 笔记本会先确认没有一道题落在训练划分里。每个准确率都附有 95% 的 Wilson 置信区间。

# %% tags=["parameters"]
sft_steps: int = 60  # steps of both SFT runs (the one with worked steps is the GRPO chapter's start)
n_math: int = 256  # training word problems in each SFT run's data
n_eval: int = 200  # test problems per cell of the grid, languages alternating
extra_ops: int = 2  # the "longer" shift: up to this many operations beyond the longest trained
factor: int = 10  # the "larger numbers" shift: numbers above the trained range, up to factor times it
prompt_format: str = "question"  # the unseen prompt format: "question" or "inline"
seed: int = 0  # seed of the SFT runs and of the perturbations

# %%
import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import torch

import phasebook.book as pb
from phasebook.errors import PhasebookError
from phasebook.evaluate import (
    PERTURBATIONS,
    Accuracy,
    PairedChange,
    accuracy_by_steps,
    assert_disjoint,
    assert_test_split,
    is_correct,
    larger_config,
    longer_config,
    perturb,
    prompted_answers,
    render_prompt,
    shifted,
)
from phasebook.i18n import N_, _, format_list, format_percent
from phasebook.post.sampling import sample
from phasebook.post.sft import SFTConfig, SFTData, sft
from phasebook.post.tasks import math_item
from phasebook.store import Store
from phasebook.train.pretraining import PRESETS, pretrain

ctx = pb.setup()
if prompt_format == "standard":
    raise PhasebookError("prompt_format='standard' is the trained format; pick 'question' or 'inline'.")
if not torch.cuda.is_available():
    # Matrices this small gain little from intra-op threads; on a shared CPU two threads contend.
    torch.set_num_threads(1)

store = Store()
base = PRESETS["base"].replace(train={"progress": False})
pretrained = pretrain(base, store)
tokenizer, corpus = pretrained.tokenizer, base.corpus
cot_cfg = SFTConfig(data=SFTData(math=n_math, present_people=0), steps=sft_steps, seed=seed)
direct_cfg = dataclasses.replace(cot_cfg, data=dataclasses.replace(cot_cfg.data, cot=False))
sft_cot, sft_direct = sft(base, cot_cfg, store), sft(base, direct_cfg, store)

# %% [markdown] tags=["en"]
# ## Four ways to answer, seven kinds of test
#
# The base model read {glue:text}`n_docs` documents, a share of them word problems of
# {glue:text}`min_ops` to {glue:text}`max_ops` operations on numbers from {glue:text}`low` to
# {glue:text}`high`, each answered with one equation per step and then "The answer is N.". It
# never saw an answer without its steps. Four conditions answer the same problems, greedily:
#
# - **prompted, steps**: the base model given the corpus's own "Q: … A:" prompt, which it
#   completes with worked steps, as in its training;
# - **prompted, answer only**: the same prompt ending in "The answer is", so that the number
#   must come at once;
# - **SFT with steps**: the base model fine-tuned for {glue:text}`sft_steps` steps on
#   {glue:text}`n_math` training problems in the chat template, answered with worked steps;
# - **SFT on answers**: the same fine-tuning, with the same problems answered by the answer
#   sentence alone.
#
# Each answers {glue:text}`n_eval` test problems of each kind: **in distribution** (the corpus's
# own kind of problem); **longer**, with {glue:text}`long_min` to {glue:text}`long_max` operations;
# **larger numbers**, every number from {glue:text}`large_low` to {glue:text}`large_high`; and
# **new format**, the in-distribution problems asked as "{glue:text}`format_example`". Three
# GSM-Symbolic perturbations rewrite the in-distribution problems: **names** (another person
# and item, same numbers), **numbers** (new numbers from the trained range, the answer
# recomputed) and **clause** (one sentence about someone else's number, which changes nothing).
# A perturbed problem is compared with its own original.

# %% [markdown] tags=["zh"]
# ## 四种作答方式，七类测试题
#
# 基座模型读过 {glue:text}`n_docs` 篇文档，其中一部分是 {glue:text}`min_ops` 到 {glue:text}`max_ops`
# 步运算的应用题，数字取自 {glue:text}`low` 到 {glue:text}`high`，每道题都是每步写一个算式，再写
# “答案是N。”。不写步骤直接给答案的样子，它一次也没见过。下面四种条件回答同一批题目，一律贪心解码：
#
# - **提示·写步骤**：给基座模型语料自己的“问：…… 答：”提示，它会像训练时那样先写出步骤；
# - **提示·只给答案**：同样的提示，但以“答案是”结尾，逼它直接说出数字；
# - **SFT·写步骤**：基座模型用聊天模板在 {glue:text}`n_math` 道训练题上微调 {glue:text}`sft_steps`
#   步，回答里写出步骤；
# - **SFT·只给答案**：同样的微调，同样的题目，回答只有最后那句答案。
#
# 每种条件在每类题上各答 {glue:text}`n_eval` 道测试题：**分布内**（语料本来的那类题）；**更长**，
# 有 {glue:text}`long_min` 到 {glue:text}`long_max` 步运算；**更大的数**，每个数都在
# {glue:text}`large_low` 到 {glue:text}`large_high` 之间；**新格式**，把分布内的题换成
# “{glue:text}`format_example`”这样的问法。另有三种 GSM-Symbolic 式的扰动改写分布内的题：
# **换名字**（换一个人、一样东西，数字不变）、**换数字**（从训练范围里另取数字，答案重新计算）和
# **加从句**（加一句关于别人的数字的话，对答案毫无影响）。每道扰动后的题都和它自己的原题比较。

# %%
LANGS = corpus.languages
langs = [LANGS[j % len(LANGS)] for j in range(n_eval)]
SHIFT_SETS = {name: shifted(corpus, name, n_eval) for name in ("id", "longer", "larger-numbers")}
for items in SHIFT_SETS.values():
    assert_test_split(items, corpus)  # raises LeakageError if any test item is in a training split
lang_of = {p.key: lang for p, lang in zip(SHIFT_SETS["id"], langs, strict=True)}
PAIRS = {kind: perturb(SHIFT_SETS["id"], kind, corpus, seed) for kind in PERTURBATIONS}
for pairs in PAIRS.values():
    assert_disjoint([variant for _original, variant in pairs], corpus)
CONDITIONS = {"prompted_cot": N_("prompted, steps"), "prompted_direct": N_("prompted, answer only"),
              "sft_cot": N_("SFT with steps"), "sft_direct": N_("SFT on answers")}
COLUMNS = {"id": N_("in distribution"), "longer": N_("longer"), "larger-numbers": N_("larger numbers"),
           "format": N_("new format"), "names": N_("names"), "numbers": N_("numbers"),
           "clause": N_("irrelevant clause")}


def answers(condition: str, items: list, item_langs: list, fmt: str = "standard") -> list[str]:
    """Greedy answers of one condition; a chat model gets the question in the user turn (in the
    new format, the whole prompt with its new cues)."""
    if condition.startswith("prompted"):
        return prompted_answers(pretrained.model, tokenizer, items, item_langs,
                                direct=condition == "prompted_direct", fmt=fmt)
    model = (sft_cot if condition == "sft_cot" else sft_direct).model
    chat = [math_item(p, lang) if fmt == "standard"
            else dataclasses.replace(math_item(p, lang), prompt=render_prompt(p, lang, fmt))
            for p, lang in zip(items, item_langs, strict=True)]
    return [rows[0] for rows in sample(model, tokenizer, chat, 1, temperature=0.0, seed=seed).texts]


def verdicts(condition: str, items: list, item_langs: list, fmt: str = "standard") -> list[bool]:
    texts = answers(condition, items, item_langs, fmt)
    return [is_correct(p, t, lang) for p, t, lang in zip(items, texts, item_langs, strict=True)]


def clause_example(lang: str):
    """The first problem with a clause that the grid asks in `lang`."""
    return next(v for o, v in PAIRS["clause"] if lang_of[o.key] == lang)


def grid() -> dict:
    """Right/wrong per condition and test kind (perturbations: variants, in pair order), plus
    one example answer per condition to the first in-distribution problem and, per language, to
    the first problem with a clause."""
    out = {}
    for c in CONDITIONS:
        for name, items in SHIFT_SETS.items():
            out[f"{c}/{name}"] = verdicts(c, items, langs)
        out[f"{c}/format"] = verdicts(c, SHIFT_SETS["id"], langs, prompt_format)
        for kind, pairs in PAIRS.items():
            variants = [v for _o, v in pairs]
            out[f"{c}/{kind}"] = verdicts(c, variants, [lang_of[o.key] for o, _v in pairs])
        out[f"{c}/example"] = answers(c, SHIFT_SETS["id"][:1], langs[:1])[0]
        for lang in LANGS:
            variant = clause_example(lang)
            out[f"{c}/clause_example/{lang}"] = answers(c, [variant], [lang])[0]
    return out


key = {"base": pretrained.path.name, "cot": sft_cot.path.name, "direct": sft_direct.path.name,
       "n_eval": n_eval,
       "extra_ops": extra_ops, "factor": factor, "format": prompt_format, "seed": seed}
results = store.memo("post-cot-grid", key, grid)
id_index = {p.key: j for j, p in enumerate(SHIFT_SETS["id"])}


def accuracy(condition: str, column: str) -> Accuracy:
    return Accuracy.from_verdicts(results[f"{condition}/{column}"])


def paired(condition: str, kind: str) -> PairedChange:
    """A perturbation's effect: the originals' verdicts against their variants', pair by pair."""
    original = results[f"{condition}/id"]
    before = [original[id_index[o.key]] for o, _v in PAIRS[kind]]
    return PairedChange.of(before, results[f"{condition}/{kind}"])


# %% [markdown] tags=["en"]
# ## Chain-of-thought in and out of distribution

# %% [markdown] tags=["zh"]
# ## 分布内与分布外的思维链

# %%
COLOURS = {"prompted_cot": "#9ecae1", "prompted_direct": "#dddddd", "sft_cot": "#1f77b4",
           "sft_direct": "#7f7f7f"}
fig, ax = plt.subplots(figsize=(9.0, 3.8))
width = 0.2
x = np.arange(len(COLUMNS))
table = {}
for i, c in enumerate(CONDITIONS):
    accs = [accuracy(c, col) for col in COLUMNS]
    rate = np.array([a.rate for a in accs]) * 100
    err = np.array([[a.rate - a.low for a in accs], [a.high - a.rate for a in accs]]) * 100
    ax.bar(x + (i - 1.5) * width, rate, width, yerr=err, capsize=2, color=COLOURS[c], label=_(CONDITIONS[c]),
           error_kw={"lw": 0.8})
    table[c] = [a.rate for a in accs]
    table[f"{c}_low"] = [a.low for a in accs]
    table[f"{c}_high"] = [a.high for a in accs]
ax.axvline(3.5, color="black", lw=0.6, ls=":")
ax.set_xticks(x, [_(COLUMNS[col]) for col in COLUMNS], fontsize=8)
ax.set_ylabel(_("Exact answers (%)"))
ax.set_ylim(0, 105)
ax.legend(frameon=False, fontsize=8, ncol=4, loc="upper center", bbox_to_anchor=(0.5, 1.14))
fig.tight_layout()
pb.figure(fig, "cot-grid",
          title=N_("Chain-of-thought against answering at once, in distribution, under three shifts and "
                   "under three perturbations"),
          caption=N_("Share of exactly right greedy answers to held-out word problems, with 95% Wilson "
                     "intervals. Light bars: the pre-trained model prompted in the corpus's own format, "
                     "left to write its steps or made to answer at once; dark bars: the model fine-tuned "
                     "on the same training problems with worked steps or with the answer only. Left of the "
                     "dotted line: the in-distribution problems and three shifts (more operations than "
                     "any training problem, numbers above the training range, an unseen prompt format); "
                     "right of it: the in-distribution problems with other names, other numbers or one "
                     "irrelevant clause."),
          data={"column": list(COLUMNS), **table})

# %%
a = corpus.arithmetic
long_cfg, large_cfg = longer_config(a, extra_ops), larger_config(a, factor)
pb.glue("n_docs", corpus.n_documents)
pb.glue("min_ops", a.min_ops)
pb.glue("max_ops", a.max_ops)
pb.glue("low", a.low)
pb.glue("high", a.high)
pb.glue("sft_steps", sft_steps)
pb.glue("n_math", n_math)
pb.glue("n_eval", n_eval)
pb.glue("long_min", long_cfg.min_ops)
pb.glue("long_max", long_cfg.max_ops)
pb.glue("large_low", large_cfg.low)
pb.glue("large_high", large_cfg.high)
example = SHIFT_SETS["id"][0]
pb.glue("format_example", render_prompt(example, ctx.lang if ctx.lang in LANGS else "en", prompt_format)
        .replace("\n", " "))
for c in CONDITIONS:
    for col in COLUMNS:
        pb.glue(f"{c}_{col.replace('-', '_')}", accuracy(c, col).rate, percent=True, digits=1)


def gain(column: str, prefix: str = "sft") -> float:
    """Points by which writing steps beats answering at once, for the SFT or the prompted pair."""
    return (accuracy(f"{prefix}_cot", column).rate - accuracy(f"{prefix}_direct", column).rate) * 100


def clearly_above(c1: str, c2: str, column: str) -> bool:
    """Whether c1's accuracy is above c2's with non-overlapping 95% intervals."""
    return accuracy(c1, column).low > accuracy(c2, column).high


for col in ("id", "longer", "larger-numbers", "format"):
    pb.glue(f"gain_{col.replace('-', '_')}", gain(col), digits=2)
    pb.glue(f"pgain_{col.replace('-', '_')}", gain(col, "prompted"), digits=2)
id_cot = accuracy("sft_cot", "id").rate
SHIFTS = ("longer", "larger-numbers", "format")
broken = [s for s in SHIFTS if accuracy("sft_cot", s).high < 0.5 * id_cot]
helps_id = (clearly_above("sft_cot", "sft_direct", "id")
            and clearly_above("prompted_cot", "prompted_direct", "id"))
still_helps = [s for s in SHIFTS if clearly_above("sft_cot", "sft_direct", s)]
SHIFT_NAMES = {"longer": N_("longer chains"), "larger-numbers": N_("larger numbers"),
               "format": N_("a new prompt format")}
names = {s: _(SHIFT_NAMES[s]) for s in SHIFTS}
if helps_id and len(broken) == len(SHIFTS):
    cot_verdict = _("supported: writing the steps wins clearly in distribution, and under every shift "
                    "the fine-tuned model keeps less than half of its in-distribution accuracy")
elif helps_id and broken:
    cot_verdict = _("partly supported: writing the steps wins clearly in distribution, and the model "
                    "collapses under {broken}, but not under {kept}").format(
        broken=format_list([names[s] for s in broken]), kept=format_list([names[s] for s in SHIFTS
                                                                         if s not in broken]))
elif helps_id:
    cot_verdict = _("half supported: writing the steps wins clearly in distribution, but no shift halves "
                    "the accuracy")
else:
    cot_verdict = _("not supported at this scale: writing the steps does not clearly beat answering at once "
                    "in distribution")
pb.glue("cot_verdict", cot_verdict)
if still_helps:
    gain_note = _("Where the problems are still solvable the steps still help: under {shifts} the "
                  "fine-tuned model with steps stays clearly ahead of the one without. A shift costs "
                  "accuracy; it does not make the chain worthless.").format(
        shifts=format_list([names[s] for s in still_helps]))
else:
    gain_note = _("Out of distribution nothing is left of the advantage: no shift leaves the model with "
                  "steps clearly ahead of the one without.")
pb.glue("gain_note", gain_note)

# %% [markdown] tags=["en"]
# In distribution the fine-tuned model that writes its steps answers
# {glue:text}`sft_cot_id` right, the one fine-tuned on bare answers {glue:text}`sft_direct_id`:
# a gain of {glue:text}`gain_id` points from the steps alone. Prompting the base model shows the
# same gap ({glue:text}`prompted_cot_id` with steps, {glue:text}`prompted_direct_id` without,
# {glue:text}`pgain_id` points). The model has learnt each step, an addition or a subtraction of
# small numbers, and chaining steps it has learnt is easy; computing the same result in one go
# is a different task that its few layers do poorly.
#
# The shifts take that away. With more operations than any training problem, the model with steps
# falls to {glue:text}`sft_cot_longer`; with larger numbers to {glue:text}`sft_cot_larger_numbers`;
# in a new prompt format it answers {glue:text}`sft_cot_format` right. The base model prompted
# with steps scores {glue:text}`prompted_cot_longer`, {glue:text}`prompted_cot_larger_numbers` and
# {glue:text}`prompted_cot_format` on the same three. What the steps gain, in the SFT pair: longer
# {glue:text}`gain_longer`, larger numbers {glue:text}`gain_larger_numbers`, new format
# {glue:text}`gain_format` points.
# {glue:text}`gain_note`
#
# The claim that chain-of-thought helps in distribution and breaks under shifts of length,
# format or task is here **{glue:text}`cot_verdict`**.
# The third kind of shift, a new task made by composing operations in a way training never
# did, is not measured here: the base corpus has no string-transformation problems, and a model
# that learns them does not fit the CPU budget of this book (the library's
# `unseen_compositions` is ready for it).

# %% [markdown] tags=["zh"]
# 在分布内，写步骤的微调模型答对 {glue:text}`sft_cot_id`，只用答案微调的模型答对
# {glue:text}`sft_direct_id`：光是写出步骤，就多了 {glue:text}`gain_id` 个百分点。直接提示基座模型，
# 差距也一样（写步骤 {glue:text}`prompted_cot_id`，不写 {glue:text}`prompted_direct_id`，相差
# {glue:text}`pgain_id` 个百分点）。每一步——小数字的一次加法或减法——模型都学会了，把学会的步骤串起来
# 并不难；一口气算出同样的结果则是另一回事，只有几层的小模型做不好。
#
# 分布偏移把这份优势拿走了。运算步数多于任何训练题时，写步骤的模型跌到 {glue:text}`sft_cot_longer`；
# 数字变大时跌到 {glue:text}`sft_cot_larger_numbers`；换一种提问格式，答对 {glue:text}`sft_cot_format`。
# 写步骤的基座模型在这三类题上分别是
# {glue:text}`prompted_cot_longer`、{glue:text}`prompted_cot_larger_numbers`
# 和 {glue:text}`prompted_cot_format`。
# SFT 这一对模型里写步骤带来的提升：更长的题
# {glue:text}`gain_longer`，更大的数 {glue:text}`gain_larger_numbers`，新格式 {glue:text}`gain_format`
# 个百分点。{glue:text}`gain_note`
#
# “思维链在训练分布之内有效，一旦长度、格式或任务发生偏移就会失效”这一说法，在这里的结论是：
# **{glue:text}`cot_verdict`**。第三种偏移——把运算以训练中从未有过的方式组合成新任务——这里没有测量：
# 基座语料里没有字符串变换题，而学会这类题的模型超出了本书的 CPU 预算（本库的 `unseen_compositions`
# 已经为此备好）。

# %%
effects = {c: {kind: paired(c, kind) for kind in PERTURBATIONS} for c in CONDITIONS}
for c in CONDITIONS:
    for kind in PERTURBATIONS:
        e = effects[c][kind]
        pb.glue(f"{c}_{kind}_before", e.before.rate, percent=True, digits=1)
        pb.glue(f"{c}_{kind}_change", e.change * 100, digits=2)
for kind in PERTURBATIONS:
    pb.glue(f"pairs_{kind}", len(PAIRS[kind]))
    pb.glue(f"lost_{kind}", effects["sft_cot"][kind].lost)
    pb.glue(f"gained_{kind}", effects["sft_cot"][kind].gained)
KIND_NAMES = {"names": N_("new names"), "numbers": N_("new numbers"),
              "clause": N_("an irrelevant clause")}
hurt = [k for k in PERTURBATIONS if effects["sft_cot"][k].significant_drop()]
if len(hurt) == len(PERTURBATIONS):
    perturb_verdict = _("supported: all three perturbations significantly lower the accuracy of the model "
                        "with steps")
elif hurt:
    perturb_verdict = _("partly supported: the model with steps loses accuracy significantly under {hurt}, "
                        "but not under {unhurt}").format(
        hurt=format_list([_(KIND_NAMES[k]) for k in hurt]),
        unhurt=format_list([_(KIND_NAMES[k]) for k in PERTURBATIONS if k not in hurt]))
else:
    perturb_verdict = _("not supported at this scale: no perturbation significantly lowers the accuracy of "
                        "the model with steps")
pb.glue("perturb_verdict", perturb_verdict)
page_lang = ctx.lang if ctx.lang in LANGS else LANGS[0]
pb.glue("clause_example", clause_example(page_lang).question(page_lang))
pb.glue("clause_answer", clause_example(page_lang).answer)
pb.glue("clause_response", results[f"sft_cot/clause_example/{page_lang}"])
if "clause" in hurt and "names" not in hurt and "numbers" not in hurt:
    perturb_note = _("The toy scale differs from GSM-Symbolic in one instructive way. A large model has "
                     "read its benchmark's exact problems, so new names and numbers move it away from what "
                     "it memorised; this model was trained on an item space in which every name, and every "
                     "number in range, is common, so renaming and renumbering leave it inside its training "
                     "distribution. The irrelevant clause does not: no training problem ever contained one.")
else:
    perturb_note = _("Each perturbation that lowers accuracy here changes something the training problems "
                     "never varied in that way; those that do not stay inside what the model saw.")
pb.glue("perturb_note", perturb_note)

# %% [markdown] tags=["en"]
# ## Perturbations
#
# Each perturbation is compared pair by pair with the problem it was made from, and a drop counts
# only when McNemar's test finds that clearly more pairs went from right to wrong than from wrong
# to right. For the fine-tuned model with steps: other names change the accuracy by
# {glue:text}`sft_cot_names_change` points (from {glue:text}`sft_cot_names_before`, over
# {glue:text}`pairs_names` pairs), other numbers by {glue:text}`sft_cot_numbers_change`, and the
# irrelevant clause by {glue:text}`sft_cot_clause_change`: {glue:text}`lost_clause` problems lost,
# {glue:text}`gained_clause` gained. The base model prompted with steps: names
# {glue:text}`prompted_cot_names_change`, numbers {glue:text}`prompted_cot_numbers_change`, clause
# {glue:text}`prompted_cot_clause_change` points. A problem with a clause reads, for example:
# "{glue:text}`clause_example`" (answer: {glue:text}`clause_answer`). The model with steps
# answers: "{glue:text}`clause_response`".
#
# The claim that renamed entities, changed numbers and irrelevant clauses lower accuracy is here
# **{glue:text}`perturb_verdict`**. {glue:text}`perturb_note`

# %% [markdown] tags=["zh"]
# ## 扰动
#
# 每道扰动题都和它的原题逐对比较；只有 McNemar 检验发现“由对变错”的题明显多于“由错变对”的题时，
# 才算准确率下降。对写步骤的微调模型而言：换名字让准确率变化 {glue:text}`sft_cot_names_change` 个
# 百分点（原题为 {glue:text}`sft_cot_names_before`，共 {glue:text}`pairs_names` 对），换数字变化
# {glue:text}`sft_cot_numbers_change`，加无关从句变化 {glue:text}`sft_cot_clause_change`：
# {glue:text}`lost_clause` 道由对变错，{glue:text}`gained_clause` 道由错变对。写步骤的基座模型：
# 换名字 {glue:text}`prompted_cot_names_change`，换数字 {glue:text}`prompted_cot_numbers_change`，
# 加从句 {glue:text}`prompted_cot_clause_change` 个百分点。加了从句的题读起来是这样的：
# “{glue:text}`clause_example`”（答案：{glue:text}`clause_answer`）。写步骤的模型答道：
# “{glue:text}`clause_response`”。
#
# “更换人名、改动数字、插入无关从句都会拉低准确率”这一说法，在这里的结论是：
# **{glue:text}`perturb_verdict`**。{glue:text}`perturb_note`

# %% [markdown] tags=["en"]
# ## Errors along the chain

# %% [markdown] tags=["zh"]
# ## 沿推理链累积的错误

# %%
step_sets = SHIFT_SETS["id"] + SHIFT_SETS["longer"]
by_steps = {c: accuracy_by_steps(step_sets, results[f"{c}/id"] + results[f"{c}/longer"]) for c in CONDITIONS}
steps_seen = sorted(by_steps["sft_cot"])
fig, ax = plt.subplots(figsize=(6.4, 3.6))
for c in CONDITIONS:
    s = sorted(by_steps[c])
    rate = np.array([by_steps[c][k].rate for k in s]) * 100
    err = np.array([[by_steps[c][k].rate - by_steps[c][k].low for k in s],
                    [by_steps[c][k].high - by_steps[c][k].rate for k in s]]) * 100
    ax.errorbar(s, rate, yerr=err, marker="o", ms=4, capsize=2, lw=1.4, color=COLOURS[c],
                label=_(CONDITIONS[c]))
ax.axvspan(a.min_ops - 0.5, a.max_ops + 0.5, color="#2ca02c", alpha=0.08, label=_("lengths seen in training"))
ax.set_xticks(steps_seen)
ax.set_xlabel(_("Operations in the problem (reasoning steps)"))
ax.set_ylabel(_("Exact answers (%)"))
ax.set_ylim(0, 105)
ax.legend(frameon=False, fontsize=8)
fig.tight_layout()
pb.figure(fig, "cot-steps",
          title=N_("Accuracy against the number of reasoning steps"),
          caption=N_("Share of exactly right greedy answers by the number of operations in the problem, "
                     "with 95% Wilson intervals, over the in-distribution and the longer test problems. "
                     "The shaded band marks the lengths of the training problems."),
          data={"steps": steps_seen, **{c: [by_steps[c][k].rate if k in by_steps[c] else None
                                            for k in steps_seen] for c in CONDITIONS}})

# %%
one, two = (by_steps["sft_cot"].get(k) for k in (a.min_ops, a.max_ops))
for c in CONDITIONS:
    pb.glue(f"{c}_by_steps", format_list([_("{k}-step problems: {p}").format(k=k, p=format_percent(acc.rate))
                                          for k, acc in sorted(by_steps[c].items())]))
per_step = one.rate ** (1 / a.min_ops) if one is not None and one.rate > 0 else 0.0
predicted = {k: per_step ** k for k in steps_seen}
pb.glue("per_step", per_step, percent=True, digits=1)
pb.glue("predicted_two", predicted[a.max_ops], percent=True, digits=1)
pb.glue("observed_two", two.rate, percent=True, digits=1)
longest = max(steps_seen)
pb.glue("longest", longest)
pb.glue("predicted_longest", predicted[longest], percent=True, digits=1)
pb.glue("observed_longest", by_steps["sft_cot"][longest].rate, percent=True, digits=1)
falls_in = two.high < one.low
cliff = by_steps["sft_cot"][a.max_ops + 1].rate < 0.5 * predicted[a.max_ops + 1]
if falls_in and cliff:
    steps_verdict = _("supported, with a twist: accuracy falls with each step inside the trained lengths, "
                      "and then drops far below what compounding errors predict as soon as the chain is "
                      "longer than any trained")
elif cliff:
    steps_verdict = _("supported only beyond the trained lengths: inside them one more step costs no "
                      "significant accuracy, but past them accuracy falls far below what compounding "
                      "errors predict, a cliff rather than a slope")
elif falls_in:
    steps_verdict = _("supported: accuracy falls step by step, at about the rate compounding errors predict")
else:
    steps_verdict = _("not supported at this scale: accuracy does not clearly fall with the number of steps")
pb.glue("steps_verdict", steps_verdict)

# %% [markdown] tags=["en"]
# Accuracy by number of operations, for the fine-tuned model with steps:
# {glue:text}`sft_cot_by_steps`; for the one fine-tuned on answers: {glue:text}`sft_direct_by_steps`.
# If every step were an
# independent chance of error, the one-step accuracy would put each step at
# {glue:text}`per_step`, two steps at {glue:text}`predicted_two` (observed:
# {glue:text}`observed_two`) and {glue:text}`longest` steps at {glue:text}`predicted_longest`
# (observed: {glue:text}`observed_longest`). The claim that errors accumulate over long chains is
# here **{glue:text}`steps_verdict`**. A chain of steps the model has practised compounds small
# errors; a chain longer than any it practised fails as a whole, because the model has never
# learnt to continue past its last trained step: it stops and states an answer. That is the
# interpolation lens of this book in its plainest form.

# %% [markdown] tags=["zh"]
# 按运算步数统计准确率，写步骤的微调模型：{glue:text}`sft_cot_by_steps`；只用答案微调的模型：
# {glue:text}`sft_direct_by_steps`。假如每一步出错都是相互独立的，那么由一步题的准确率可以推出每步做对的
# 概率约为 {glue:text}`per_step`，两步题应有 {glue:text}`predicted_two`（实测 {glue:text}`observed_two`），
# {glue:text}`longest` 步的题应有 {glue:text}`predicted_longest`（实测 {glue:text}`observed_longest`）。
# “推理链越长，错误累积越多”这一说法，在这里的结论是：**{glue:text}`steps_verdict`**。模型练过的步骤串成
# 的链，会把小错误一点点累积起来；比练过的都长的链则整个失败，因为模型从没学过在最后一个练过的步骤之后
# 接着算下去：它会停下来，直接报出一个答案。这正是本书“内插视角”最直白的体现。
