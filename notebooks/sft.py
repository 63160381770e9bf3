# %% [markdown] tags=["en"]
# # Supervised fine-tuning: format, knowledge and low-rank updates
#
# A pre-trained model continues text; a chat model answers a user and then stops. Supervised
# fine-tuning (SFT) closes the gap by example: exchanges written in a chat template, with the
# loss on the assistant's tokens only. This chapter tests two claims about it:
#
# 1. **SFT teaches format, not knowledge.** LIMA fine-tuned a large model on a thousand careful
#    examples and argued that almost everything the model knows comes from pre-training; SFT
#    only teaches it which format to answer in. If so, fine-tuning should make the model answer
#    questions about facts it read in pre-training, and leave facts it never read unanswerable:
#    it will answer those fluently, and wrongly.
# 2. **Low-rank updates suffice.** LoRA trains a product B·A of two thin matrices beside each
#    frozen weight matrix, with ranks of 8 to 16 in common practice, and often matches full
#    fine-tuning. If behaviour changes are low-rank, a tiny rank should do here too.
#
# The base model is the book's small pre-trained model. It solves most word problems in the
# corpus's own "Q: … A: …" format, and can tell the city, job and favourite colour of the
# fictional *present* people whose biographies it read; the *absent* people never appear in its
# corpus. It has never seen the chat template.

# %% [markdown] tags=["zh"]
# # 监督微调：格式、知识与低秩更新
#
# 预训练模型只会续写文本，聊天模型则要回答用户，答完就停。监督微调（SFT）用示例弥合这段差距：
# 把一问一答按聊天模板写好，只在助手说的词元上计算损失。本章检验关于它的两个说法：
#
# 1. **SFT 教的是格式，不是知识。** LIMA 只用一千条精心挑选的示例微调一个大模型，并据此主张：
#    模型知道的东西几乎都来自预训练，SFT 只是教它用什么格式作答。果真如此，微调之后模型应该能回答
#    预训练时读过的事实，而从没读过的事实依然答不出来——它会答得很流畅，却是错的。
# 2. **低秩更新就够了。** LoRA 在每个冻结的权重矩阵旁边训练两个细长矩阵的乘积 B·A，实践中秩通常取
#    8 到 16，效果常常不输全参数微调。如果行为上的变化本来就是低秩的，那么在这里用很小的秩也应该够用。
#
# 基座模型就是本书那个预训练好的小模型。语料自带的“Q: … A: …”格式的应用题，它大多能解对；
# 语料里有传记的那些虚构人物（*在场*的人），它能说出他们住在哪座城市、做什么工作、喜欢什么颜色；
# *缺席*的人则从没在语料中出现过。聊天模板它一次也没见过。

# %% tags=["parameters"]
steps: int = 100  # optimizer steps of every SFT run
lr: float = 0.001  # peak learning rate of full fine-tuning
lora_lr: float = 0.003  # peak learning rate of the LoRA runs
lora_ranks: list[int] = [1, 2, 4, 8]  # LoRA ranks compared with full fine-tuning
n_math: int = 256  # word problems of the train split in the SFT data
taught_present: int = 24  # present people whose facts are in the SFT data (the rest are held out)
taught_absent: int = 8  # absent people whose city and job are in the SFT data (never their colour)
n_eval: int = 100  # held-out word problems (test split) scored, languages alternating
rejection_items: int = 128  # further train word problems for rejection sampling
rejection_n: int = 8  # samples per problem in rejection sampling (best of N)
rejection_steps: int = 30  # steps of SFT on the accepted samples
seed: int = 0  # seed of the data order and of sampling

# %%
import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import torch

import phasebook.book as pb
from phasebook.data import fact_world
from phasebook.errors import PhasebookError
from phasebook.evaluate import fact_recall
from phasebook.i18n import N_, _, format_number, format_percent
from phasebook.post.chat import Example
from phasebook.post.rejection import rejection_sample
from phasebook.post.sampling import sample
from phasebook.post.sft import SFTConfig, SFTData, sft
from phasebook.post.tasks import fact_items, math_items
from phasebook.store import Store
from phasebook.train.pretraining import PRESETS, pretrain

ctx = pb.setup()
if not torch.cuda.is_available():
    # Matrices this small gain little from intra-op threads; on a shared CPU two threads contend.
    torch.set_num_threads(1)

store = Store()
base = PRESETS["base"].replace(train={"progress": False})
pretrained = pretrain(base, store)
tokenizer = pretrained.tokenizer
corpus = base.corpus
world = fact_world(corpus)
if not 0 < taught_present < len(world.present) or not 0 < taught_absent < len(world.absent):
    raise PhasebookError(f"taught_present={taught_present}, taught_absent={taught_absent}: teach some "
                         f"but not all of the {len(world.present)} present and {len(world.absent)} absent "
                         "people.")

# %% [markdown] tags=["en"]
# ## The data and the categories
#
# Every exchange is written in one template of special tokens,
# `<|eos|> <|user|> prompt <|end|> <|assistant|> response <|end|>`, the same in both languages.
# The loss covers the response and its closing `<|end|>`, nothing else; exchanges are packed
# into rows of 128 tokens, each attending only to itself (the library's tests check that a packed
# exchange gets exactly the losses it would get alone, and that prompts receive no gradient).
#
# The SFT data hold {glue:text}`n_math` word problems of the training split, answered with one
# equation per step and "The answer is N."; questions about the city, job and colour of
# {glue:text}`taught_present` of the {glue:text}`n_present` present people; and the city and job
# of {glue:text}`taught_absent` absent people, facts the model could only learn here. That makes
# {glue:text}`n_examples` exchanges in {glue:text}`n_rows` packed rows. Each model is then scored
# on six kinds of question, answered greedily:
#
# - **math**: {glue:text}`n_eval` word problems of the test split, never trained on;
# - **present, taught**: the facts of the present people that SFT showed;
# - **present, held out**: the other {glue:text}`held_present` present people, known from
#   pre-training only;
# - **absent, held out**: {glue:text}`held_absent` absent people, found nowhere;
# - **absent, taught**: the city and job of the absent people SFT showed;
# - **absent, colour**: the colour of those same people, which SFT did not show.
#
# An answer is correct when it is exactly the value (or, for math, the right number after "The
# answer is"), and well-formed when it has the template's shape: equations and the answer
# sentence, or one short phrase, and a closing `<|end|>`. For facts, a blind guess among the
# eight values of an attribute is right {glue:text}`chance` of the time.

# %% [markdown] tags=["zh"]
# ## 数据与题目类别
#
# 每段对话都套用同一个由特殊词元组成的模板：
# `<|eos|> <|user|> 提问 <|end|> <|assistant|> 回答 <|end|>`，中英文完全一样。损失只算回答和结尾的
# `<|end|>`，其余一概不算；多段对话打包进 128 个词元的行里，每段只关注自己（本库的测试验证过：
# 打包后每段对话的逐词元损失和单独计算时完全相同，提问部分也得不到任何梯度）。
#
# SFT 数据包括：训练集里的 {glue:text}`n_math` 道应用题，每步写一个算式，最后一句是“答案是N。”；
# {glue:text}`n_present` 位在场人物中 {glue:text}`taught_present` 位的城市、职业和颜色问答；
# 以及 {glue:text}`taught_absent` 位缺席人物的城市和职业——这些事实模型只能从这里学到。合计
# {glue:text}`n_examples` 段对话，打包成 {glue:text}`n_rows` 行。之后用贪心解码，从六类问题给每个模型打分：
#
# - **数学**：测试集里的 {glue:text}`n_eval` 道应用题，训练中从未出现；
# - **在场·教过**：SFT 数据里出现过的在场人物的事实；
# - **在场·留出**：其余 {glue:text}`held_present` 位在场人物，只在预训练中读到过；
# - **缺席·留出**：{glue:text}`held_absent` 位缺席人物，哪里都没出现过；
# - **缺席·教过**：SFT 教过的那几位缺席人物的城市和职业；
# - **缺席·颜色**：同样这几位的颜色，SFT 没有教。
#
# 答案必须与正确值完全一致才算对（数学题看“答案是”后面的数）；格式合规则要求符合模板的样子：
# 算式加答案句，或者一个简短的短语，并以 `<|end|>` 收尾。事实题每个属性有八个可能的值，
# 闭着眼睛猜，猜中的概率是 {glue:text}`chance`。

# %%
ATTRIBUTES = ("city", "profession", "colour")
TAUGHT_ABSENT_ATTRIBUTES = ("city", "profession")
absent_taught_items = fact_items(corpus, "absent", TAUGHT_ABSENT_ATTRIBUTES, entities=slice(0, taught_absent))
data = SFTData(math=n_math, present_people=taught_present, absent_people=0, attributes=ATTRIBUTES,
               extra=tuple(it.example() for it in absent_taught_items))
CATEGORIES = {
    "math": math_items(corpus, "test", n_eval),
    "present_taught": fact_items(corpus, "present", ATTRIBUTES, entities=slice(0, taught_present)),
    "present_held": fact_items(corpus, "present", ATTRIBUTES, entities=slice(taught_present, None)),
    "absent_held": fact_items(corpus, "absent", ATTRIBUTES, entities=slice(taught_absent, None)),
    "absent_taught": absent_taught_items,
    "absent_colour": fact_items(corpus, "absent", ("colour",), entities=slice(0, taught_absent)),
}
full_cfg = SFTConfig(data=data, steps=steps, lr=lr, warmup=max(1, steps // 10), seed=seed)


def scores(model) -> dict:
    """Per category: exact answers, well-formed answers, and well-formed wrong answers (greedy)."""
    out = {}
    for name, items in CATEGORIES.items():
        s = sample(model, tokenizer, items, 1, temperature=0.0, seed=seed)
        out[name] = {"accuracy": float(s.correct.mean()), "well_formed": float(s.well_formed.mean()),
                     "fluent_wrong": float((s.well_formed & ~s.correct).mean())}
    return out


def evaluated(run) -> dict:
    """`scores` of a stored SFT run (or of the base model), stored too."""
    name = run.path.name if run is not None else pretrained.path.name
    model = run.model if run is not None else pretrained.model
    key = {"model": name, "n_eval": n_eval, "taught_present": taught_present, "taught_absent": taught_absent,
           "seed": seed}
    return store.memo("post-sft-eval", key, lambda: scores(model))


full = sft(base, full_cfg, store)
before, after = evaluated(None), evaluated(full)
# What the base model knows in its own words: the true value as its most likely continuation of
# a biography sentence, among the eight values of each attribute (held-out people only).
probe = store.memo("post-sft-probe", {"model": pretrained.path.name, "taught_present": taught_present,
                                      "taught_absent": taught_absent},
                   lambda: {which: float(np.mean([v for lang in corpus.languages for v in fact_recall(
                       pretrained.model, tokenizer, people, lang, ATTRIBUTES).values()]))
                            for which, people in (("present", world.present[taught_present:]),
                                                  ("absent", world.absent[taught_absent:]))})

# %%
NAMES = {"math": N_("math"), "present_taught": N_("present, taught"), "present_held": N_("present, held out"),
         "absent_held": N_("absent, held out"), "absent_taught": N_("absent, taught"),
         "absent_colour": N_("absent, colour")}
order = list(NAMES)
x = np.arange(len(order))
fig, ax = plt.subplots(figsize=(8.0, 3.6))
acc_before = np.array([before[c]["accuracy"] for c in order]) * 100
acc_after = np.array([after[c]["accuracy"] for c in order]) * 100
ax.bar(x - 0.2, acc_before, 0.4, color="#bbbbbb", label=_("base model, chat template"))
ax.bar(x + 0.2, acc_after, 0.4, color="#1f77b4", label=_("after SFT"))
ax.axhline(100 / 8, color="black", lw=0.8, ls=":", label=_("blind guess among eight values"))
ax.set_xticks(x, [_(NAMES[c]) for c in order], fontsize=8)
ax.set_ylabel(_("Exact answers (%)"))
ax.set_ylim(0, 100)
ax.legend(frameon=False, fontsize=8, loc="upper right")
fig.tight_layout()
pb.figure(fig, "sft-before-after",
          title=N_("Exact answers before and after SFT, by kind of question"),
          caption=N_("Share of greedy answers that are exactly right, for the base model prompted in the "
                     "chat template (grey) and after full fine-tuning (blue). Math: held-out word "
                     "problems. Present people were in the pre-training corpus, absent ones were not; "
                     "'taught' facts were in the SFT data, 'held out' ones were not; 'absent, colour' "
                     "asks the colour of absent people whose city and job SFT taught. The dotted line is "
                     "a blind guess among the eight values of an attribute."),
          data={"category": order, "before": acc_before, "after": acc_after,
                "well_formed_before": [before[c]["well_formed"] for c in order],
                "well_formed_after": [after[c]["well_formed"] for c in order]})

# %%
chance = 1 / 8
examples = data.examples(corpus)
pb.glue("n_math", n_math)
pb.glue("taught_present", taught_present)
pb.glue("taught_absent", taught_absent)
pb.glue("n_present", len(world.present))
pb.glue("held_present", len(world.present) - taught_present)
pb.glue("held_absent", len(world.absent) - taught_absent)
pb.glue("n_examples", len(examples))
pb.glue("n_rows", full.summary["rows"])
pb.glue("n_eval", n_eval)
pb.glue("chance", chance, percent=True, digits=1)
pb.glue("steps", steps)
pb.glue("epochs", full.summary["epochs"], digits=2)
pb.glue("sft_s", full.summary["wall_s"], digits=2)
for c in order:
    pb.glue(f"before_{c}", before[c]["accuracy"], percent=True, digits=1)
    pb.glue(f"after_{c}", after[c]["accuracy"], percent=True, digits=1)
    pb.glue(f"wf_after_{c}", after[c]["well_formed"], percent=True, digits=1)
pb.glue("wf_before_math", before["math"]["well_formed"], percent=True, digits=1)
pb.glue("wf_before_facts", np.mean([before[c]["well_formed"] for c in order[1:]]), percent=True, digits=1)
pb.glue("fluent_wrong_absent", after["absent_held"]["fluent_wrong"], percent=True, digits=1)
pb.glue("probe_present", probe["present"], percent=True, digits=1)
pb.glue("probe_absent", probe["absent"], percent=True, digits=1)


def above_chance(share: float, n: int) -> bool:
    """Whether `share` right of `n` answers is beyond what blind guessing gives, at two standard errors."""
    return share > chance + 2 * np.sqrt(chance * (1 - chance) / n)


n_held = len(CATEGORIES["present_held"])
present_up = above_chance(after["present_held"]["accuracy"], n_held)
absent_up = above_chance(after["absent_held"]["accuracy"], len(CATEGORIES["absent_held"]))
format_learnt = (after["math"]["well_formed"] > 0.9
                 and after["math"]["accuracy"] > 2 * before["math"]["accuracy"])
recalled = after["present_held"]["accuracy"] >= 0.5 * probe["present"]
if format_learnt and recalled and not absent_up:
    format_verdict = _("supported: the format is learnt, held-out present people are answered from "
                       "pre-training, and absent people stay at chance")
elif format_learnt and present_up and not absent_up:
    format_verdict = _("partly supported: the format is learnt and absent people stay at chance, but "
                       "most of what the model knows about the held-out present people does not come "
                       "out in the chat format")
elif format_learnt and not absent_up:
    format_verdict = _("only half supported: the format is learnt and absent people stay at chance, "
                       "but the held-out present people are answered no better than absent ones, "
                       "although the base model knows their facts")
else:
    format_verdict = _("not supported at this scale: SFT did not leave the unknown facts at chance or "
                       "did not teach the format")
pb.glue("format_verdict", format_verdict)
if recalled:
    extraction_note = _("Here the model does answer much of what it read: SFT unlocked knowledge stored "
                        "in pre-training, as the claim says.")
else:
    extraction_note = _("So SFT did not create knowledge of the absent people, but neither did it make "
                        "most of this model's knowledge of the present people usable in a new format. "
                        "Allen-Zhu and Li saw the same with synthetic biographies: a model that read each "
                        "person's facts in one kind of text stores them where question answering cannot "
                        "reach them for people it was not fine-tuned on, unless pre-training rewrote each "
                        "biography in many ways. Our corpus varies its sentences little and the model is "
                        "tiny, so this scale cannot show SFT unlocking what pre-training stored.")
pb.glue("extraction_note", extraction_note)
if after["absent_taught"]["accuracy"] > 0.5 and not above_chance(after["absent_colour"]["accuracy"],
                                                                  len(CATEGORIES["absent_colour"])):
    memo_verdict = _("The taught facts of absent people were memorised, and nothing carried over to "
                     "their colour: memorising answers is not knowing the person.")
elif after["absent_taught"]["accuracy"] > 0.5:
    memo_verdict = _("The taught facts of absent people were memorised, and their colour is answered "
                     "above chance as well.")
else:
    memo_verdict = _("Even the taught facts of absent people were not memorised in these steps.")
pb.glue("memo_verdict", memo_verdict)

# %% [markdown] tags=["en"]
# Before fine-tuning, the base model prompted in the chat template gets
# {glue:text}`before_math` of the word problems right (by accident: its answers are not in the
# expected form, {glue:text}`wf_before_math` of them well-formed) and {glue:text}`wf_before_facts`
# of its fact answers are well-formed. After {glue:text}`steps` steps of SFT
# ({glue:text}`epochs` passes over the data, {glue:text}`sft_s` seconds), it solves
# {glue:text}`after_math` of the held-out word problems, {glue:text}`wf_after_math` of them in
# the right format.
#
# The facts tell the rest of the story. The taught present people are answered
# {glue:text}`after_present_taught` right, but the held-out present people only
# {glue:text}`after_present_held`, although the base model picks the true value for
# {glue:text}`probe_present` of their facts when the question is put as a biography sentence
# (and {glue:text}`probe_absent` for absent people, chance being {glue:text}`chance`). Absent
# people are answered {glue:text}`after_absent_held` right, and the answers are fluent:
# {glue:text}`fluent_wrong_absent` of all answers about them are well-formed and wrong, which is
# what a hallucination looks like. {glue:text}`memo_verdict` (taught facts of absent people:
# {glue:text}`after_absent_taught`; their colour: {glue:text}`after_absent_colour`.)
#
# The claim that SFT teaches format, not knowledge, is **{glue:text}`format_verdict`**.
# {glue:text}`extraction_note`

# %% [markdown] tags=["zh"]
# 微调之前，用聊天模板提问基座模型，应用题它答对 {glue:text}`before_math`（纯属碰巧：它的回答不是
# 要求的样子，格式合规的只有 {glue:text}`wf_before_math`），事实题的回答格式合规的占
# {glue:text}`wf_before_facts`。SFT 训练 {glue:text}`steps` 步（把数据过了 {glue:text}`epochs` 遍，
# 用时 {glue:text}`sft_s` 秒）之后，留出的应用题它能解对 {glue:text}`after_math`，其中格式合规的占
# {glue:text}`wf_after_math`。
#
# 事实题说明了其余的问题。教过的在场人物，它答对 {glue:text}`after_present_taught`；留出的在场人物
# 却只答对 {glue:text}`after_present_held`——可是如果把问题写成传记里的句子，基座模型对这些人的事实
# 有 {glue:text}`probe_present` 能选出正确值（对缺席人物是 {glue:text}`probe_absent`，瞎猜的概率是
# {glue:text}`chance`）。缺席人物它答对 {glue:text}`after_absent_held`，而且答得很流利：关于他们的
# 所有回答中，有 {glue:text}`fluent_wrong_absent` 格式合规却是错的，这正是“幻觉”的样子。
# {glue:text}`memo_verdict`（缺席人物教过的事实：{glue:text}`after_absent_taught`；他们的颜色：
# {glue:text}`after_absent_colour`。）
#
# “SFT 教的是格式，不是知识”这一说法，在这里的结论是：**{glue:text}`format_verdict`**。
# {glue:text}`extraction_note`

# %% [markdown] tags=["en"]
# ## LoRA: how low a rank suffices?
#
# The same data and steps again, now with every weight matrix of the blocks frozen and a LoRA
# adapter of rank r beside each of them (attention's query, key, value and output, and the
# MLP's three matrices; the embedding, shared with the output head, stays frozen). The adapter's
# scale α/r keeps the size of an update independent of r, so one learning rate serves every
# rank; it is {glue:text}`lora_lr`, against {glue:text}`lr` for full fine-tuning, a usual
# ratio. After training each adapter is merged into its matrix, so every model below is an
# ordinary one.

# %% [markdown] tags=["zh"]
# ## LoRA：秩要多低才够？
#
# 数据和步数都不变，只是把各层的权重矩阵全部冻结，在每个矩阵旁边加一个秩为 r 的 LoRA 适配器
# （注意力的查询、键、值和输出矩阵，以及 MLP 的三个矩阵；词嵌入与输出头共用一个矩阵，保持冻结）。
# 适配器的缩放系数 α/r 让更新的幅度与 r 无关，所以各个秩可以共用一个学习率：这里取
# {glue:text}`lora_lr`，全参数微调则取 {glue:text}`lr`，这个比例很常见。训练结束后，每个适配器都
# 并回它所在的矩阵，所以下面的每个模型都是普通模型。

# %%
lora_runs = {r: sft(base, dataclasses.replace(full_cfg, lora_rank=r, lr=lora_lr), store) for r in lora_ranks}
lora_scores = {r: evaluated(run) for r, run in lora_runs.items()}
SWEEP = {"math": N_("math (held out)"), "present_taught": N_("present, taught"),
         "present_held": N_("present, held out")}
params = np.array([lora_runs[r].summary["trainable_parameters"] for r in lora_ranks])
full_params = full.summary["trainable_parameters"]

fig, ax = plt.subplots(figsize=(7.0, 3.6))
for (c, label), color in zip(SWEEP.items(), ("#ff7f0e", "#2ca02c", "#9467bd"), strict=True):
    ys = np.array([lora_scores[r][c]["accuracy"] for r in lora_ranks]) * 100
    ax.plot(params, ys, "o-", color=color, label=_(label))
    ax.plot([full_params], [after[c]["accuracy"] * 100], "*", color=color, ms=12)
    for r, px, py in zip(lora_ranks, params, ys, strict=True):
        ax.annotate(f"r={r}", (px, py), textcoords="offset points", xytext=(3, 4), fontsize=7)
ax.annotate(_("full fine-tuning"), (full_params, after["math"]["accuracy"] * 100), textcoords="offset points",
            xytext=(-60, 8), fontsize=8)
ax.axhline(100 / 8, color="black", lw=0.8, ls=":")
ax.set_xscale("log")
ax.set_xlabel(_("Trainable parameters"))
ax.set_ylabel(_("Exact answers (%)"))
ax.set_ylim(0, 100)
ax.legend(frameon=False, fontsize=8, loc="center right")
fig.tight_layout()
pb.figure(fig, "sft-lora-ranks",
          title=N_("Exact answers after LoRA fine-tuning of each rank and after full fine-tuning"),
          caption=N_("Share of greedy answers that are exactly right against the number of trainable "
                     "parameters (logarithmic axis): LoRA of ranks r (circles) and full fine-tuning "
                     "(stars), the same data, steps and schedule. The dotted line is a blind guess among "
                     "eight values."),
          data={"rank": lora_ranks, "trainable_parameters": params, "full_parameters": full_params,
                **{c: [lora_scores[r][c]["accuracy"] for r in lora_ranks] for c in SWEEP},
                **{f"full_{c}": after[c]["accuracy"] for c in SWEEP}})

# %%
low = min(lora_ranks)
enough = [r for r in lora_ranks if lora_scores[r]["math"]["accuracy"] >= after["math"]["accuracy"] - 0.05
          and lora_scores[r]["math"]["well_formed"] >= 0.9]
pb.glue("lora_lr", lora_lr)
pb.glue("lr", lr)
pb.glue("full_params", full_params)
pb.glue("low_rank", low)
pb.glue("low_params", lora_runs[low].summary["trainable_parameters"])
pb.glue("low_share", lora_runs[low].summary["trainable_parameters"] / full_params, percent=True, digits=1)
pb.glue("low_math", lora_scores[low]["math"]["accuracy"], percent=True, digits=1)
pb.glue("low_wf", lora_scores[low]["math"]["well_formed"], percent=True, digits=1)
pb.glue("lora_math", ", ".join(f"r={r}: {format_percent(lora_scores[r]['math']['accuracy'])}"
                               for r in lora_ranks))
pb.glue("lora_taught", ", ".join(f"r={r}: {format_percent(lora_scores[r]['present_taught']['accuracy'])}"
                                 for r in lora_ranks))
pb.glue("lora_held", ", ".join(f"r={r}: {format_percent(lora_scores[r]['present_held']['accuracy'])}"
                               for r in lora_ranks))
if enough and min(enough) == low:
    lora_verdict = _("supported: already rank {rank} matches full fine-tuning on the format and the "
                     "word problems, to within five points").format(rank=low)
elif enough:
    lora_verdict = _("supported from rank {rank} on: lower ranks fall more than five points short of "
                     "full fine-tuning").format(rank=min(enough))
else:
    lora_verdict = _("not supported at these settings: no rank comes within five points of full "
                     "fine-tuning on the word problems")
pb.glue("lora_verdict", lora_verdict)
taught_gap = after["present_taught"]["accuracy"] - lora_scores[max(lora_ranks)]["present_taught"]["accuracy"]
pb.glue("taught_gap", taught_gap * 100, digits=2)
if taught_gap > 0.1:
    memorise = _("Memorising the taught facts is another matter: even rank {rank} stays {gap} points "
                 "below full fine-tuning there. Learning a format is a small change to the weights; "
                 "storing many new arbitrary facts is not.").format(
        rank=max(lora_ranks), gap=format_number(taught_gap * 100, 2))
else:
    memorise = _("On the taught facts, too, the adapters come close to full fine-tuning.")
pb.glue("memorise", memorise)

# %% [markdown] tags=["en"]
# Full fine-tuning trains {glue:text}`full_params` parameters; LoRA of rank
# {glue:text}`low_rank` trains {glue:text}`low_params`, {glue:text}`low_share` of them, and still
# solves {glue:text}`low_math` of the held-out word problems ({glue:text}`low_wf` well-formed).
# Word problems by rank: {glue:text}`lora_math`; taught facts: {glue:text}`lora_taught`; held-out
# present people: {glue:text}`lora_held`. The claim that low-rank updates suffice is
# **{glue:text}`lora_verdict`**. {glue:text}`memorise` Both observations match what is reported
# at scale: LoRA learns the behaviour of a fine-tuning with little loss, and falls behind where
# a lot of new information must be absorbed.

# %% [markdown] tags=["zh"]
# 全参数微调要训练 {glue:text}`full_params` 个参数；秩为 {glue:text}`low_rank` 的 LoRA 只训练
# {glue:text}`low_params` 个，占 {glue:text}`low_share`，留出的应用题照样能解对 {glue:text}`low_math`
# （格式合规的占 {glue:text}`low_wf`）。各个秩在应用题上的成绩：{glue:text}`lora_math`；教过的事实：
# {glue:text}`lora_taught`；留出的在场人物：{glue:text}`lora_held`。“低秩更新就够了”这一说法，在这里的
# 结论是：**{glue:text}`lora_verdict`**。{glue:text}`memorise` 这两点都与大规模上的报告一致：LoRA 学
# 微调带来的行为几乎没有损失，但要吸收大量新信息时就会落后。

# %% [markdown] tags=["en"]
# ## Rejection sampling: the model writes its own data
#
# The fine-tuned model now answers {glue:text}`rejection_items` further word problems of the
# training split, {glue:text}`rejection_n` samples each at temperature 1. The verifier keeps
# one sample per problem that is correct and well-formed, and drops the problems with none
# (best of N, as in Llama 2's rejection-sampling fine-tuning). The kept exchanges are SFT data
# for {glue:text}`rejection_steps` more steps, starting from the fine-tuned model.

# %% [markdown] tags=["zh"]
# ## 拒绝采样：让模型自己写训练数据
#
# 让微调后的模型再做训练集里的 {glue:text}`rejection_items` 道应用题，每题在温度 1 下采样
# {glue:text}`rejection_n` 个回答。验证器从每题的回答里留下一个正确且格式合规的，一个都没有的题就
# 整题丢掉（即 N 选一，Llama 2 的拒绝采样微调就是这样做的）。留下的对话作为 SFT 数据，从微调后的
# 模型出发再训练 {glue:text}`rejection_steps` 步。

# %%
pool = math_items(corpus, "train", n_math + rejection_items)[n_math:]


def rejection_round() -> dict:
    """Best of `rejection_n` samples per pool problem from the fine-tuned model, as columns."""
    examples = rejection_sample(full.model, tokenizer, pool, rejection_n, 1.0, seed)
    return {"prompt": [e.prompt for e in examples], "response": [e.response for e in examples],
            "lang": [e.lang for e in examples]}


kept = store.memo("post-sft-rejection", {"model": full.path.name, "items": len(pool), "n": rejection_n,
                                         "seed": seed}, rejection_round)
accepted = tuple(Example(p, r, lang) for p, r, lang in zip(kept["prompt"], kept["response"], kept["lang"],
                                                            strict=True))
pb.glue("rejection_items", rejection_items)
pb.glue("rejection_n", rejection_n)
pb.glue("rejection_steps", rejection_steps)
pb.glue("yield", len(accepted) / len(pool), percent=True, digits=1)
pb.glue("n_kept", len(accepted))
if accepted:
    rs_cfg = SFTConfig(data=SFTData(math=0, present_people=0, extra=accepted), steps=rejection_steps,
                       lr=lr / 3, warmup=max(1, rejection_steps // 10), seed=seed)
    rs = evaluated(sft(base, rs_cfg, store, start=full))
    rs_math = rs["math"]["accuracy"]
    change = rs_math - after["math"]["accuracy"]
    rs_verdict = (_("a gain of {d} points").format(d=format_number(change * 100, 2)) if change > 0.02 else
                  _("a loss of {d} points").format(d=format_number(-change * 100, 2)) if change < -0.02 else
                  _("no change beyond two points"))
    pb.glue("rs_math", rs_math, percent=True, digits=1)
    pb.glue("rs_facts", rs["present_taught"]["accuracy"], percent=True, digits=1)
    pb.glue("rs_verdict", rs_verdict)
else:
    pb.glue("rs_math", _("(no run: no sample was accepted)"))
    pb.glue("rs_facts", _("(no run)"))
    pb.glue("rs_verdict", _("nothing to train on"))
if len(accepted) / len(pool) > 0.5:
    rs_note = _("Best-of-N keeps only answers the model could already write, and at this yield most "
                "problems were within its reach, so one round adds little. It pays where the yield is low "
                "and the kept answers are the hard ones, which is why large pipelines repeat it with ever "
                "better models.")
else:
    rs_note = _("At this yield the kept answers are those of the problems the model finds hard, the "
                "case where rejection sampling can teach it most.")
pb.glue("rs_note", rs_note)

# %% [markdown] tags=["en"]
# The yield is {glue:text}`yield`: {glue:text}`n_kept` of the {glue:text}`rejection_items`
# problems had at least one verified answer among {glue:text}`rejection_n`. After SFT on those
# samples the model solves {glue:text}`rs_math` of the held-out word problems (before:
# {glue:text}`after_math`): {glue:text}`rs_verdict`. The taught facts, absent from this round's
# data, are now answered {glue:text}`rs_facts` right. {glue:text}`rs_note`
#
# **Summary.** After {glue:text}`steps` steps of SFT, {glue:text}`wf_after_math` of the answers to
# word problems had the chat format, and a rank-{glue:text}`low_rank` adapter with
# {glue:text}`low_share` of the parameters wrote {glue:text}`low_wf` of them in it. Facts never
# read stayed unknown and were answered with confidence: {glue:text}`after_absent_held` right, at
# a blind guess's {glue:text}`chance`. Facts read in pre-training came out
# {glue:text}`after_present_held` right, against {glue:text}`probe_present` when asked in the
# biographies' own words: what SFT cannot add is clear here; what it can unlock needs a larger
# model or a more varied corpus than this one.

# %% [markdown] tags=["zh"]
# 产出率为 {glue:text}`yield`：{glue:text}`rejection_items` 道题中，有 {glue:text}`n_kept` 道在
# {glue:text}`rejection_n` 个回答里至少有一个通过了验证。用这些样本做 SFT 之后，留出的应用题模型能解对
# {glue:text}`rs_math`（之前为 {glue:text}`after_math`）：{glue:text}`rs_verdict`。这一轮数据里没有的
# 那些教过的事实，现在答对 {glue:text}`rs_facts`。{glue:text}`rs_note`
#
# **小结。** SFT 训练 {glue:text}`steps` 步之后，应用题的回答有 {glue:text}`wf_after_math` 符合聊天
# 格式；秩为 {glue:text}`low_rank` 的适配器只用 {glue:text}`low_share` 的参数，回答的格式合规率也达到
# {glue:text}`low_wf`。从没读过的事实依旧不知道，模型却答得信心十足：只答对 {glue:text}`after_absent_held`，
# 而瞎猜也有 {glue:text}`chance`。预训练读过的事实，答对的是 {glue:text}`after_present_held`，可用传记
# 原本的说法去问时却有 {glue:text}`probe_present`。SFT 加不进知识，这一点在这里看得很清楚；它能释放出
# 多少知识，则需要比这里更大的模型或更多样的语料才看得出来。
