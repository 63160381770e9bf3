# %% [markdown] tags=["en"]
# # Mid-training: annealing, domain adaptation and longer contexts
#
# Between pre-training on a broad corpus and post-training on instructions sits a phase that
# reports of large models describe in a few lines each: the learning rate is brought down on a
# chosen data mixture, the model is trained further on the domain it is meant for, and its
# context is stretched. This chapter tests four claims about that phase:
#
# 1. **The cool-down does much of the late work.** With a warm-up–stable–decay (WSD) schedule the
#    loss drops sharply once the learning rate decays, and the checkpoint where the stable phase
#    ends can be decayed several times over, once per purpose.
# 2. **The annealing mix has an outsized effect.** What the model reads while the rate decays,
#    a few per cent of all its tokens, shifts which skills it leaves with. Llama 3 spent its last
#    40 million tokens on upsampled high-quality data, and OLMo 2's annealing mix weights math
#    and code two to three times more than its pre-training mix. If a math-heavy anneal lifts
#    math far more than the ordinary mix does, the skill was latent in the base and the anneal
#    brought it out.
# 3. **Replaying 10–20 % general data limits forgetting.** Continued pre-training on one domain
#    erodes what the model knew of everything else, unless a share of the original data is mixed
#    back in.
# 4. **Rescaling RoPE extends the context cheaply.** Rotary positions are a continuous function
#    of the position, so raising RoPE's base frequency (ABF: Llama 3 went from 10,000 to 500,000)
#    or interpolating positions (YaRN) lets a model work at lengths it was not pre-trained on,
#    after a short training on longer sequences.
#
# Every run below starts from one small base model, pre-trained here with a WSD schedule, and
# every expensive step is a stored library call: the Chinese page reuses what the English one
# trained.

# %% [markdown] tags=["zh"]
# # 中期训练：退火、领域适应与上下文扩展
#
# 在大语料上的预训练与针对指令的后训练之间，还有一个阶段，大模型的技术报告往往只用寥寥几行带过：
# 在精心挑选的数据配比上把学习率降下来，在目标领域上接着训练，再把上下文拉长。本章检验关于这一阶段的
# 四个说法：
#
# 1. **后期的收益大多来自冷却。** 采用“预热—稳定—衰减”（WSD）调度时，学习率一开始衰减，损失就明显
#    下降；稳定阶段结束时的检查点可以分头衰减多次，每次服务一个目标。
# 2. **退火阶段的数据配比影响极大。** 学习率衰减期间读到的数据只占全部词元的百分之几，却决定了模型
#    最终带走哪些能力。Llama 3 最后的 4000 万个词元用的是提高了采样比例的高质量数据；OLMo 2 的
#    退火配比把数学和代码的权重提到预训练时的两到三倍。如果偏重数学的退火让数学能力的提升远远超过
#    常规配比，就说明这项能力本已潜藏在基座模型里，退火只是把它激发了出来。
# 3. **回放 10%–20% 的通用数据就能抑制遗忘。** 只在一个领域上继续预训练，模型对其他内容的掌握会
#    逐渐流失，除非把一部分原始数据掺回去。
# 4. **调整 RoPE 就能低成本地扩展上下文。** 旋转位置编码是位置的连续函数，所以只要调高 RoPE 的基频
#    （ABF：Llama 3 把它从 1 万调到 50 万），或者对位置做插值（YaRN），再在较长的序列上短暂
#    训练，模型就能处理预训练时没见过的长度。
#
# 下面所有实验都从同一个小型基座模型出发，它在这里用 WSD 调度预训练；每一步耗时的计算都是本库里
# 带存储的函数调用，所以中文页面直接复用英文页面训练好的结果。

# %% tags=["parameters"]
steps: int = 300  # optimizer steps of the WSD base model's pre-training
n_layer: int = 2  # transformer blocks of the base model
d_model: int = 64  # width of the residual stream
lr: float = 0.003  # peak learning rate of pre-training and of the annealing branches
decay_fraction: float = 0.2  # WSD: share of the steps in the final decay (each branch decays as long)
seed: int = 0  # seed of the initialisation and of the batch order
n_eval: int = 100  # held-out word problems scored per language
adapt_steps: int = 60  # steps of continued pre-training on the math domain
adapt_lr: float = 0.001  # peak learning rate of continued pre-training
replays: list[float] = [0.0, 0.1, 0.2, 0.5]  # shares of general data replayed (must include 0, 0.1, 0.2)
before_steps: int = 500  # steps that teach the book's base model the look-up at its own length
context_factor: int = 4  # the extended context, in multiples of the base model's training length
context_steps: int = 200  # steps of training at the extended length, per method
context_batch_size: int = 4  # sequences per step at the extended length
context_methods: list[str] = ["abf", "linear", "yarn"]  # RoPE changes compared (also: "none")
n_retrieval: int = 100  # look-up test items scored at each context length

# %%
import re

import matplotlib.pyplot as plt
import numpy as np
import torch

import phasebook.book as pb
from phasebook.data import MixtureConfig, extract_answer, fact_world, problems
from phasebook.data.longcontext import RetrievalTask
from phasebook.errors import PhasebookError
from phasebook.evaluate import fact_recall, score_answers
from phasebook.i18n import N_, _, format_number, format_percent
from phasebook.model import GPT
from phasebook.store import Store
from phasebook.train.checkpoint import load_checkpoint
from phasebook.train.context import (
    ContextConfig,
    before_config,
    extend_context,
    extension_model_config,
    rescaled_model,
    retrieval_accuracy,
    short_context_loss,
)
from phasebook.train.midtraining import AdaptConfig, AnnealConfig, adapt, anneal
from phasebook.train.pretraining import PRESETS, pretrain
from phasebook.train.schedules import stable_end

ctx = pb.setup()
if not {0.0, 0.1, 0.2} <= set(replays):
    raise PhasebookError(f"replays={replays}: include 0, 0.1 and 0.2, the points the claim is about "
                         "(no replay, and the 10–20 % it recommends).")
if context_factor < 2:
    raise PhasebookError(f"context_factor={context_factor}: use at least 2, so that the extended context is "
                         "longer than the original one.")
if not torch.cuda.is_available():
    # Matrices this small gain little from intra-op threads; on a shared CPU two threads contend.
    torch.set_num_threads(1)

store = Store()
base = PRESETS["base"].replace(
    model={"n_layer": n_layer, "d_model": d_model},
    train={"steps": steps, "seed": seed, "progress": False, "optimizer": {"lr": lr},
           "eval_interval": max(1, steps // 30), "eval_batches": 4, "log_interval": 5,
           "checkpoint_interval": steps,
           "schedule": {"name": "wsd", "warmup_steps": max(1, steps // 10),
                        "decay_fraction": decay_fraction, "decay_shape": "linear"}})
run = pretrain(base, store)
branch_step = stable_end(steps, base.train.schedule)
decay_steps = steps - branch_step

# %% [markdown] tags=["en"]
# ## The cool-down of a WSD run
#
# The base model is the book's usual small decoder, made smaller still (see the parameters
# above), trained on the bilingual corpus of word problems, biographies and everyday text. Its
# schedule warms up, holds the peak rate, and spends its last {glue:text}`decay_share` of the
# steps decaying linearly to {glue:text}`floor` of the peak. The training loop keeps the
# checkpoint where the stable phase ends, with the optimizer's state: the *branch point*.
#
# A loss that falls during the decay would also have fallen, more slowly, had training simply
# gone on at the peak rate. To tell the two apart we branch once more from the branch point and
# train the same steps on the same data at the peak rate, without decaying it.

# %% [markdown] tags=["zh"]
# ## WSD 训练中的冷却
#
# 基座模型就是本书一直在用的小型解码器，只是规模更小（见上面的参数），训练数据是那份中英双语语料：
# 应用题、人物小传和日常短文。它的学习率先预热，再保持峰值，最后 {glue:text}`decay_share` 的步数
# 线性衰减到峰值的 {glue:text}`floor`。训练循环会把稳定阶段结束时的检查点连同优化器状态一起保留
# 下来，这就是*分支点*。
#
# 衰减期间损失下降了，可即使一直保持峰值学习率训练下去，损失也会下降，只是慢一些。为了把两者区分开，
# 我们再从分支点分出一支：在同样的数据上训练同样多的步数，学习率保持峰值，不做衰减。

# %%
def val_curve(metrics: list[dict], offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(steps, validation losses) of a run's evaluations; a branch's steps shifted by `offset`."""
    rows = [m for m in metrics if m.get("val_loss") is not None]
    return np.array([offset + m["step"] for m in rows]), np.array([m["val_loss"] for m in rows])


# The same steps and data as the base's own decay, at a rate that ends where it starts.
flat = anneal(base, AnnealConfig(steps=decay_steps, mixture=base.corpus.mixture, min_lr_ratio=1.0, seed=seed),
              store)
decay, no_decay = flat.summary["decay"]["base"], flat.summary["decay"]["branch"]
val_steps, val_loss = val_curve(run.metrics)
flat_steps, flat_loss = val_curve(flat.metrics, branch_step)
flat_steps = np.concatenate([[branch_step], flat_steps])
flat_loss = np.concatenate([[decay["val_loss_before"]], flat_loss])
lr_rows = [m for m in run.metrics if "lr" in m]
lr_steps = np.array([m["step"] for m in lr_rows])
lr_values = np.array([m["lr"] for m in lr_rows])

fig, (ax, zoom) = plt.subplots(1, 2, figsize=(9.0, 3.6))
ax.axvspan(branch_step, steps, color="#eeeeee", zorder=0)
ax.plot(val_steps, val_loss, "o-", color="#1f77b4", ms=2.5, lw=1.2, label=_("validation loss"))
ax.axvline(branch_step, color="black", lw=0.8, ls=":")
ax.set_yscale("log")
pb.plain_log_axis(ax.yaxis)
ax.set_xlabel(_("Optimizer step"))
ax.set_ylabel(_("Validation loss (nats/token)"))
lr_ax = ax.twinx()
lr_ax.plot(lr_steps, lr_values, color="#7f7f7f", lw=1, ls="--", label=_("learning rate (right axis)"))
lr_ax.set_ylabel(_("Learning rate"))
lr_ax.set_ylim(0, 1.1 * lr_values.max())
lr_ax.spines["right"].set_visible(True)
handles, labels = ax.get_legend_handles_labels()
more = lr_ax.get_legend_handles_labels()
ax.legend(handles + more[0], labels + more[1], frameon=False, fontsize=8, loc="center right")
start = branch_step - 2 * decay_steps
shown = val_steps >= start
zoom.axvspan(branch_step, steps, color="#eeeeee", zorder=0, label=_("decay phase"))
zoom.plot(val_steps[shown], val_loss[shown], "o-", color="#1f77b4", ms=3, lw=1.2,
          label=_("WSD: decay after the branch point"))
zoom.plot(flat_steps, flat_loss, "s--", color="#ff7f0e", ms=3, lw=1.2, label=_("same steps at the peak rate"))
zoom.axvline(branch_step, color="black", lw=0.8, ls=":", label=_("branch point"))
zoom.set_xlabel(_("Optimizer step"))
zoom.set_ylabel(_("Validation loss (nats/token)"))
zoom.legend(frameon=False, fontsize=8, loc="upper right")
fig.tight_layout()
pb.figure(fig, "midtraining-wsd-decay",
          title=N_("Validation loss of the WSD base run through its decay, and without the decay"),
          caption=N_("Left: held-out loss of the base model during pre-training (logarithmic axis) and "
                     "its learning rate (dashed, right axis); the shaded band is the decay phase and "
                     "the dotted line the branch point, the end-of-stable checkpoint that every "
                     "annealing branch starts from. Right: the last part of the run, with a branch "
                     "from the branch point that trains the same steps on the same data at the peak "
                     "rate instead of decaying it."),
          data={"val_step": val_steps, "val_loss": val_loss, "lr_step": lr_steps, "lr": lr_values,
                "no_decay_step": flat_steps, "no_decay_val_loss": flat_loss, "branch_step": branch_step,
                "steps": steps})

# %%
window_start = float(np.interp(branch_step - decay_steps, val_steps, val_loss))  # as many steps before
rate = {"stable": (window_start - decay["val_loss_before"]) / decay_steps * 100,
        "decay": decay["val_drop"] / decay_steps * 100, "flat": no_decay["val_drop"] / decay_steps * 100}
from_decay = (decay["val_drop"] - no_decay["val_drop"]) / decay["val_drop"] if decay["val_drop"] > 0 else 0.0
pb.glue("params", run.summary["parameters"])
pb.glue("steps", steps)
pb.glue("branch_step", branch_step)
pb.glue("decay_steps", decay_steps)
pb.glue("decay_share", decay_fraction, percent=True, digits=0)
pb.glue("floor", base.train.schedule.min_lr_ratio, percent=True, digits=0)
pb.glue("val_branch", decay["val_loss_before"])
pb.glue("val_final", decay["val_loss_after"])
pb.glue("val_flat", no_decay["val_loss_after"])
pb.glue("decay_drop", decay["val_drop"])
pb.glue("flat_drop", no_decay["val_drop"])
pb.glue("rate_stable", rate["stable"])
pb.glue("rate_decay", rate["decay"])
pb.glue("rate_flat", rate["flat"])
pb.glue("from_decay", from_decay, percent=True, digits=0)
ratio = decay["val_drop"] / no_decay["val_drop"] if no_decay["val_drop"] > 0 else float("inf")
if decay["val_drop"] > 0 >= no_decay["val_drop"]:
    decay_verdict = _("supported: the same steps at the peak rate do not lower the loss at all")
elif ratio >= 1.5:
    decay_verdict = _("supported: the decay lowers the loss {ratio} times as much as the same steps at "
                      "the peak rate").format(ratio=format_number(ratio, 1))
elif ratio > 1:
    decay_verdict = _("partly supported: the decay adds to the drop, but the same steps at the peak "
                      "rate do most of it")
else:
    decay_verdict = _("not supported at these settings: the same steps at the peak rate lower the loss "
                      "as much as the decay")
pb.glue("decay_verdict", decay_verdict)

# %% [markdown] tags=["en"]
# The base model has {glue:text}`params` parameters and trains for {glue:text}`steps` steps; its
# decay starts after step {glue:text}`branch_step`. At the branch point its validation loss is
# {glue:text}`val_branch` nats per token, and {glue:text}`decay_steps` steps of decay later it is
# {glue:text}`val_final`: a drop of {glue:text}`decay_drop`, or {glue:text}`rate_decay` per 100
# steps. Over as many steps just before the branch point, at the peak rate, the loss fell by
# {glue:text}`rate_stable` per 100 steps. The branch that goes on at the peak rate ends at
# {glue:text}`val_flat`, a drop of {glue:text}`flat_drop`; so {glue:text}`from_decay` of the
# decay phase's drop is owed to the decay itself. The claim that the cool-down does much of the
# late work is **{glue:text}`decay_verdict`**. (The optimizers-schedules chapter compares WSD
# with cosine decay over a whole run.)

# %% [markdown] tags=["zh"]
# 基座模型有 {glue:text}`params` 个参数，训练 {glue:text}`steps` 步，第 {glue:text}`branch_step` 步
# 之后开始衰减。在分支点，它的验证损失是 {glue:text}`val_branch` 纳特/词元；衰减
# {glue:text}`decay_steps` 步之后为 {glue:text}`val_final`，降幅 {glue:text}`decay_drop`，折合每 100 步
# 下降 {glue:text}`rate_decay`。在分支点之前同样多的步数里，学习率处于峰值，损失每 100 步只下降
# {glue:text}`rate_stable`。保持峰值学习率继续训练的那一支，最终停在 {glue:text}`val_flat`，降幅为
# {glue:text}`flat_drop`；可见衰减阶段的降幅中，有 {glue:text}`from_decay` 要归功于衰减本身。“后期的
# 收益大多来自冷却”这一说法，在这里的结论是：**{glue:text}`decay_verdict`**。（WSD 与余弦衰减在整个
# 训练过程中的比较，见“优化器与学习率调度”一章。）

# %% [markdown] tags=["en"]
# ## Annealing branches from one checkpoint
#
# From the branch point we decay again, {glue:text}`decay_steps` steps each time, exactly as long
# and with the same schedule as the base's own decay, but on other mixtures of the same corpus:
# a *math-heavy* mix with {glue:text}`math_up` times the math share of pre-training, and a
# *facts-heavy* one with {glue:text}`facts_up` times the biographies. The base's own decay is
# the branch with the *base mix* (the library's tests check that such a branch reproduces it step
# for step), so it needs no run of its own. Every branch costs the same compute:
# {glue:text}`decay_share` of the base's steps.
#
# Each model is then scored on three things: the exact final answer on {glue:text}`n_eval`
# held-out word problems per language (greedy decoding), the mean log-probability per token
# the model gives the correct worked solution (a smooth view of the same skill), and fact
# recall: for every fictional person in the corpus, whether the true city, job and colour is
# the model's most likely choice among eight.

# %% [markdown] tags=["zh"]
# ## 从同一个检查点分出的退火分支
#
# 从分支点出发，我们重新做衰减，每次 {glue:text}`decay_steps` 步，长度和调度都与基座自己的衰减完全
# 相同，只是换成同一语料的其他配比：*偏重数学*的配比把数学的份额提到预训练时的
# {glue:text}`math_up` 倍，*偏重事实*的配比把人物小传提到 {glue:text}`facts_up` 倍。基座自己的衰减
# 就是采用*基座配比*的那个分支（本库的测试验证过，这样的分支与它逐步一致），所以不必单独再跑一次。
# 每个分支的算力相同，都是基座训练步数的 {glue:text}`decay_share`。
#
# 然后从三个方面给每个模型打分：在每种语言 {glue:text}`n_eval` 道留出应用题上，贪心解码得到的最终
# 答案是否完全正确；模型给正确解题过程的平均每词元对数概率（同一项能力的平滑度量）；以及事实回忆：
# 对语料中的每个虚构人物，真实的城市、职业和颜色是不是模型在八个选项中最看好的那一个。

# %%
MIXES = {"math": MixtureConfig(general=0.1, math=0.8, facts=0.1),
         "facts": MixtureConfig(general=0.1, math=0.1, facts=0.8)}
branches = {name: anneal(base, AnnealConfig(steps=decay_steps, mixture=mix, seed=seed), store)
            for name, mix in MIXES.items()}
base_mix = base.corpus.mixture

branch_point = GPT(base.model)
load_checkpoint(run.branch_checkpoint, branch_point)
models = {"branch_point": branch_point.eval(), "base": run.model,
          **{name: b.model for name, b in branches.items()}}
languages = base.corpus.languages
world = fact_world(base.corpus)


def score(model: GPT) -> dict:
    """Exact answers and the gold solution's log-probability on held-out word problems, and fact
    recall over the people in the corpus; both languages averaged."""
    items = problems(base.corpus, "math", "test", n_eval)
    scored = [score_answers(model, run.tokenizer, items, lang, extract_answer) for lang in languages]
    recall = [v for lang in languages
              for v in fact_recall(model, run.tokenizer, world.present, lang).values()]
    return {"arithmetic": float(np.mean([s["accuracy"] for s in scored])),
            "answer_logprob": float(np.mean([s["mean_token_logprob"] for s in scored])),
            "facts": float(np.mean(recall))}


skills = store.memo("midtraining-skills",
                    {"base": run.path.name, "branches": sorted(b.path.name for b in branches.values()),
                     "n_eval": n_eval},
                    lambda: {name: score(model) for name, model in models.items()})
val_base_mix = {"branch_point": decay["val_loss_before"], "base": decay["val_loss_after"],
                **{name: b.summary["val_loss"]["annealed"]["base_mix"] for name, b in branches.items()}}

# %%
NAMES = {"branch_point": _("branch point"), "base": _("base mix"), "math": _("math-heavy"),
         "facts": _("facts-heavy")}
COLORS = {"branch_point": "#bbbbbb", "base": "#1f77b4", "math": "#ff7f0e", "facts": "#2ca02c"}
order = list(NAMES)
panels = [("arithmetic", _("Exact answers (%)"), _("Word problems"), 100),
          ("answer_logprob", _("Log-probability per token"), _("Correct worked solution"), 1),
          ("facts", _("Facts recalled (%)"), _("Facts about fictional people"), 100),
          ("val_base_mix", _("Validation loss (nats/token)"), _("Base mix, held out"), 1)]
table = {name: {**skills[name], "val_base_mix": val_base_mix[name]} for name in order}
n_arith = n_eval * len(languages)  # word problems scored
n_facts = len(world.present) * 3 * len(languages)  # (person, attribute, language) probes
fig, axes = plt.subplots(2, 2, figsize=(7.6, 5.6))
for ax, (key, ylabel, title, factor) in zip(axes.flat, panels, strict=True):
    values = [factor * table[name][key] for name in order]
    if key in ("arithmetic", "facts"):  # shares: bars from zero, with one standard error
        n_items = n_arith if key == "arithmetic" else n_facts
        errors = [factor * np.sqrt(table[n][key] * (1 - table[n][key]) / n_items) for n in order]
        ax.bar(np.arange(len(order)), values, yerr=errors, capsize=3, color=[COLORS[n] for n in order],
               error_kw={"elinewidth": 0.8, "ecolor": "#444444"})
    else:  # losses and log-probabilities have no natural zero: points
        ax.scatter(np.arange(len(order)), values, s=70, color=[COLORS[n] for n in order], zorder=3)
        spread = max(values) - min(values)
        ax.set_ylim(min(values) - 0.25 * spread, max(values) + 0.25 * spread)
        ax.set_xlim(-0.5, len(order) - 0.5)
        ax.grid(axis="y", color="#eeeeee")
    ax.set_xticks(np.arange(len(order)), [NAMES[n] for n in order], fontsize=8)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_title(title, fontsize=10)
axes.flat[2].axhline(100 / 8, color="black", lw=0.8, ls=":", label=_("chance"))
axes.flat[2].legend(frameon=False, fontsize=8, loc="upper left")
fig.tight_layout()
pb.figure(fig, "midtraining-anneal-branches",
          title=N_("What each annealing branch leaves the model with"),
          caption=N_("The branch point (end of the stable phase) and three decays from it at the same "
                     "compute: the base's own mix, a math-heavy mix and a facts-heavy mix. Top: exact "
                     "final answers on held-out word problems, and the mean log-probability per "
                     "token of their correct worked solutions. Bottom: facts recalled about the "
                     "people in the corpus (dotted: chance, one in eight), and the held-out loss on "
                     "the base mix. Both languages averaged; error bars are one standard error."),
          data={"model": order, **{key: [table[n][key] for n in order] for key, *_rest in panels},
                "mixtures": {"base": base_mix.shares(), **{k: m.shares() for k, m in MIXES.items()}}})


# %%
def noise(p: float, q: float, n: int) -> float:
    """Two standard errors of the difference of two shares measured on n items each."""
    return 2 * float(np.sqrt((p * (1 - p) + q * (1 - q)) / n))


acc, facts = ({n: table[n][k] for n in order} for k in ("arithmetic", "facts"))
lp = {n: table[n]["answer_logprob"] for n in order}
pb.glue("math_up", MIXES["math"].math / base_mix.math, digits=0)
pb.glue("facts_up", MIXES["facts"].facts / base_mix.facts, digits=0)
pb.glue("n_eval", n_eval)
for name in order:
    pb.glue(f"acc_{name}", acc[name], percent=True, digits=0)
    pb.glue(f"lp_{name}", lp[name], digits=2)
    pb.glue(f"facts_{name}", facts[name], percent=True, digits=0)
    pb.glue(f"val_{name}", table[name]["val_base_mix"])
pb.glue("chance", 1 / 8, percent=True, digits=1)
pb.glue("anneal_share", decay_steps / steps, percent=True, digits=0)

math_gain, math_noise = acc["math"] - acc["base"], noise(acc["math"], acc["base"], n_arith)
if math_gain > math_noise:
    math_verdict = _("Yes: it answers more word problems exactly than the base-mix anneal, by more "
                     "than sampling noise.")
elif math_gain < -math_noise:
    math_verdict = _("No: it answers fewer word problems exactly than the base-mix anneal.")
else:
    math_verdict = _("No: the two answer about as many word problems exactly; the difference is "
                     "within sampling noise.")
pb.glue("math_verdict", math_verdict)
pb.glue("math_noise", math_noise, percent=True, digits=0)
pb.glue("lp_compare", _("finds the correct working more likely") if lp["math"] > lp["base"]
        else _("finds the correct working less likely"))

facts_gain, facts_noise = facts["facts"] - facts["base"], noise(facts["facts"], facts["base"], n_facts)
points = f"{100 * abs(facts_gain):.0f}"
facts_compare = (_("{points} points more of the facts than the base-mix branch does") if facts_gain >= 0
                 else _("{points} points fewer of the facts than the base-mix branch does"))
pb.glue("facts_compare", facts_compare.format(points=points))
cost_arith = acc["base"] - acc["facts"]
pb.glue("facts_cost", _("and gives up {points} points of exact arithmetic").format(
    points=f"{100 * cost_arith:.0f}") if cost_arith > noise(acc["facts"], acc["base"], n_arith)
    else _("at no measurable cost in exact arithmetic"))
worse = [n for n in MIXES if table[n]["val_base_mix"] > table["base"]["val_base_mix"]]
pb.glue("val_compare", _("both targeted branches end with a higher loss than the base-mix branch: what "
                         "one mix sharpens, another blunts") if len(worse) == len(MIXES) else
        _("the targeted branches do not all lose ground against the base-mix branch"))

moved = {k for k, gain, nz in (("math", math_gain, math_noise), ("facts", facts_gain, facts_noise))
         if gain > nz}
if moved == {"math", "facts"}:
    mix_verdict = _("supported: at the same compute each targeted mix raised its own skill beyond noise")
    latent = _("Both skills responded to the mix: a targeted decay brought out what the base half knew.")
elif moved == {"facts"}:
    mix_verdict = _("partly supported: the facts-heavy mix raised fact recall beyond noise, but the "
                    "math-heavy mix did not raise exact arithmetic")
    latent = _("The contrast between the two skills is the interesting part. Facts that the base already "
               "half knew respond to more biographies in the decay. Exact arithmetic, a procedure the base "
               "has not yet formed at this size and length of training (the pre-training chapter shows "
               "how abruptly it arrives), is not conjured up by more word problems in a short decay, "
               "even though the likelihood of the correct working moves. An anneal brings out what is "
               "nearly there; it does not build what is missing.")
elif moved == {"math"}:
    mix_verdict = _("partly supported: the math-heavy mix raised exact arithmetic beyond noise, but the "
                    "facts-heavy mix did not raise fact recall")
    latent = _("Exact arithmetic responded to the mix and fact recall did not: the procedure was latent "
               "in the base, while the facts needed more than a short decay.")
else:
    mix_verdict = _("not supported at these settings: neither targeted mix raised its skill beyond noise")
    latent = _("Neither skill was close enough to the surface for a short decay to bring it out.")
pb.glue("mix_verdict", mix_verdict)
pb.glue("latent", latent)

# %% [markdown] tags=["en"]
# At the branch point the model answers {glue:text}`acc_branch_point` of the word problems
# exactly and recalls {glue:text}`facts_branch_point` of the facts (chance: {glue:text}`chance`).
# The base-mix anneal takes these to {glue:text}`acc_base` and {glue:text}`facts_base`, the
# math-heavy one to {glue:text}`acc_math` and {glue:text}`facts_math`, the facts-heavy one to
# {glue:text}`acc_facts` and {glue:text}`facts_facts`.
#
# Does the math-heavy anneal raise math accuracy more than the base-mix anneal at the same
# compute? **{glue:text}`math_verdict`** (Two standard errors of that difference are about
# {glue:text}`math_noise` here.) The smooth measure tells more: the mean log-probability per token
# of the correct worked solution is {glue:text}`lp_base` after the base-mix anneal and
# {glue:text}`lp_math` after the math-heavy one, which {glue:text}`lp_compare`. The
# facts-heavy branch recalls {glue:text}`facts_compare`, {glue:text}`facts_cost`. On
# held-out text of the base mix, the loss is {glue:text}`val_base` after the base-mix anneal,
# {glue:text}`val_math` after the math-heavy one and {glue:text}`val_facts` after the
# facts-heavy one: {glue:text}`val_compare`.
#
# So the claim that the annealing mix has an outsized effect, on a decay of only
# {glue:text}`anneal_share` of the steps, is **{glue:text}`mix_verdict`**.
# {glue:text}`latent`

# %% [markdown] tags=["zh"]
# 在分支点，模型能完全答对 {glue:text}`acc_branch_point` 的应用题，答对 {glue:text}`facts_branch_point`
# 的事实（随机水平为 {glue:text}`chance`）。基座配比的退火把这两项分别带到 {glue:text}`acc_base` 和
# {glue:text}`facts_base`，偏重数学的退火带到 {glue:text}`acc_math` 和 {glue:text}`facts_math`，偏重
# 事实的退火带到 {glue:text}`acc_facts` 和 {glue:text}`facts_facts`。
#
# 在算力相同的前提下，偏重数学的退火是否比基座配比的退火更能提高数学正确率？
# **{glue:text}`math_verdict`**（这里两者之差的两倍标准误约为 {glue:text}`math_noise`。）平滑的度量
# 透露了更多信息：正确解题过程的平均每词元对数概率，在基座配比退火后为 {glue:text}`lp_base`，在偏重
# 数学的退火后为 {glue:text}`lp_math`，也就是说，后者{glue:text}`lp_compare`。偏重
# 事实的分支{glue:text}`facts_compare`，{glue:text}`facts_cost`。在基座配比的留出文本上，基座配比
# 退火后的损失为 {glue:text}`val_base`，偏重数学的为 {glue:text}`val_math`，偏重事实的为
# {glue:text}`val_facts`：{glue:text}`val_compare`。
#
# 因此，“退火阶段的数据配比影响极大”这一说法（这里的衰减只占全部步数的 {glue:text}`anneal_share`），
# 结论是：**{glue:text}`mix_verdict`**。{glue:text}`latent`

# %% [markdown] tags=["en"]
# ## Continued pre-training and replay
#
# Domain adaptation continues pre-training from the base's final weights, with a fresh
# optimizer, on a mixture that is mostly the domain. Here the domain is word problems alone, and
# a share *r* of the training documents is *replayed* general data, drawn from the base's own
# mixture: the training mix is (1 − r) × math + r × base mix. Each run takes
# {glue:text}`adapt_steps` steps at a peak rate of {glue:text}`adapt_lr`. Two held-out losses
# tell what happened: on the base mix (its rise is *forgetting*) and on math alone (its fall is
# the *gain*).

# %% [markdown] tags=["zh"]
# ## 继续预训练与回放
#
# 领域适应就是从基座的最终权重出发，换一个全新的优化器，在以目标领域为主的数据配比上继续预训练。
# 这里的领域只有应用题，另有比例为 *r* 的训练文档是*回放*的通用数据，取自基座自己的配比：训练配比为
# (1 − r) × 数学 + r × 基座配比。每次运行训练 {glue:text}`adapt_steps` 步，峰值学习率为
# {glue:text}`adapt_lr`。两个留出损失说明了发生的变化：基座配比上的损失上升，就是*遗忘*；纯数学数据上的
# 损失下降，就是*收益*。

# %%
domain = MixtureConfig(general=0.0, math=1.0, facts=0.0)
adapted = {r: adapt(base, AdaptConfig(steps=adapt_steps, domain=domain, replay=r, lr=adapt_lr, seed=seed),
                    store) for r in sorted(replays)}
shares = np.array(sorted(replays))
forgetting = np.array([adapted[r].summary["forgetting"] for r in shares])
gain = np.array([adapted[r].summary["gain"] for r in shares])
recall_after = np.array([adapted[r].summary["tasks"]["fact_recall"]["after"] for r in shares])
recall_before = adapted[0.0].summary["tasks"]["fact_recall"]["before"]

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8.4, 3.4))
ax1.plot(100 * shares, forgetting, "o-", color="#d62728", label=_("forgetting: rise of the base-mix loss"))
ax1.plot(100 * shares, gain, "s-", color="#1f77b4", label=_("gain: fall of the math loss"))
ax1.axhline(0, color="black", lw=0.8)
ax1.axvspan(10, 20, color="#eeeeee", zorder=0)
ax1.set_xlabel(_("General data replayed (%)"))
ax1.set_ylabel(_("Change in held-out loss (nats/token)"))
ax1.legend(frameon=False, fontsize=8)
ax2.plot(100 * shares, 100 * recall_after, "o-", color="#2ca02c", label=_("after adaptation"))
ax2.axhline(100 * recall_before, color="#7f7f7f", lw=1, ls="--", label=_("base model"))
ax2.axhline(100 / 8, color="black", lw=0.8, ls=":", label=_("chance"))
ax2.set_ylim(0, 100 * max(recall_after.max(), recall_before) * 1.3)
ax2.axvspan(10, 20, color="#eeeeee", zorder=0)
ax2.set_xlabel(_("General data replayed (%)"))
ax2.set_ylabel(_("Facts recalled (%)"))
ax2.legend(frameon=False, fontsize=8)
fig.tight_layout()
pb.figure(fig, "midtraining-replay",
          title=N_("Forgetting and gain of continued pre-training on math, against the share of replay"),
          caption=N_("Continued pre-training of the base model on word problems with a share of its "
                     "own general mixture replayed. Left: the rise of the held-out loss on the base "
                     "mix (forgetting) and the fall of the held-out loss on math (gain). Right: facts "
                     "recalled about the people in the corpus, after adaptation and for the base "
                     "model (dashed); the dotted line is chance. The shaded band is the 10–20 % "
                     "replay the claim recommends."),
          data={"replay": shares, "forgetting": forgetting, "gain": gain, "fact_recall_after": recall_after,
                "fact_recall_before": recall_before, "steps": adapt_steps, "lr": adapt_lr})

# %%
at = {r: i for i, r in enumerate(shares)}
f0, g0 = forgetting[at[0.0]], gain[at[0.0]]
left = {r: forgetting[at[r]] / f0 for r in (0.1, 0.2)}
kept = {r: gain[at[r]] / g0 for r in (0.1, 0.2)}
pb.glue("adapt_steps", adapt_steps)
pb.glue("adapt_lr", adapt_lr)
pb.glue("forget_0", f0)
pb.glue("forget_clause", (_("raise the loss on the base mix by {x}") if f0 >= 0 else
                          _("even lower the loss on the base mix, by {x}")).format(x=format_number(abs(f0))))
pb.glue("forget_where", _("That mix is itself {share} math, which the run improves, so what the model "
                          "forgets is the everyday text and the biographies.").format(
    share=format_percent(base_mix.math, 0)) if f0 > 0 else "")
pb.glue("gain_0", g0)
for r in (0.1, 0.2):
    pb.glue(f"forget_{round(100 * r)}", forgetting[at[r]])
    pb.glue(f"left_{round(100 * r)}", left[r], percent=True, digits=0)
    pb.glue(f"kept_{round(100 * r)}", kept[r], percent=True, digits=0)
top = shares.max()
pb.glue("replay_top", top, percent=True, digits=0)
pb.glue("kept_top", gain[at[top]] / g0, percent=True, digits=0)
pb.glue("recall_before", recall_before, percent=True, digits=0)
pb.glue("recall_0", recall_after[at[0.0]], percent=True, digits=0)
pb.glue("recall_20", recall_after[at[0.2]], percent=True, digits=0)


def works(r: float) -> bool:
    """Replay r removes at least three quarters of the forgetting and keeps three quarters of the gain."""
    return left[r] <= 0.25 and kept[r] >= 0.75


if f0 < 0.01:
    replay_verdict = _("not testable at these settings: without replay the model barely forgets")
elif works(0.1) and works(0.2):
    replay_verdict = _("supported: 10 % and 20 % replay both remove most of the forgetting and keep "
                       "most of the gain")
elif works(0.2):
    replay_verdict = _("supported for 20 % replay; 10 % still leaves {share} of the forgetting").format(
        share=format_percent(left[0.1], 0))
elif left[0.2] > 0.25:
    replay_verdict = _("not supported at this scale: even 20 % replay leaves {share} of the "
                       "forgetting").format(share=format_percent(left[0.2], 0))
else:
    replay_verdict = _("not supported at this scale: 20 % replay removes the forgetting but keeps only "
                       "{share} of the gain").format(share=format_percent(kept[0.2], 0))
pb.glue("replay_verdict", replay_verdict)

# %% [markdown] tags=["en"]
# Without replay, {glue:text}`adapt_steps` steps on math lower the math loss by
# {glue:text}`gain_0` nats per token and {glue:text}`forget_clause`. {glue:text}`forget_where`
# Replaying 10 % general data leaves {glue:text}`left_10` of that forgetting and keeps
# {glue:text}`kept_10` of the gain; 20 % leaves {glue:text}`left_20` and keeps
# {glue:text}`kept_20`. Replay has a price: at {glue:text}`replay_top` replay,
# {glue:text}`kept_top` of the gain remains. Fact recall, a skill that the math data never
# trains, is a second witness: {glue:text}`recall_before` before adaptation,
# {glue:text}`recall_0` after it without replay, {glue:text}`recall_20` with 20 % replay (whose
# general share includes biographies, so the model also rereads some of them).
#
# The claim that replaying 10–20 % general data limits forgetting is
# **{glue:text}`replay_verdict`**. Keep the scale in mind: here the domain and the general data
# share one tokenizer and the adaptation lasts seconds, while the continued pre-training the
# claim comes from spends 50–100 billion domain tokens on a 7-billion-parameter model. How the
# right share moves with scale is beyond what this sweep can tell.

# %% [markdown] tags=["zh"]
# 不做回放时，在数学数据上训练 {glue:text}`adapt_steps` 步，使数学上的损失下降 {glue:text}`gain_0`
# 纳特/词元，同时{glue:text}`forget_clause`。{glue:text}`forget_where`回放 10% 的通用数据后，遗忘
# 只剩原来的 {glue:text}`left_10`，收益保留了 {glue:text}`kept_10`；回放 20% 时，遗忘剩
# {glue:text}`left_20`，收益保留 {glue:text}`kept_20`。回放也有代价：回放比例达到
# {glue:text}`replay_top` 时，收益只剩 {glue:text}`kept_top`。事实回忆是数学数据完全不训练的能力，
# 可以作为第二个证据：适应前为 {glue:text}`recall_before`，不回放时适应后为 {glue:text}`recall_0`，
# 回放 20% 时为 {glue:text}`recall_20`（回放的通用数据里也有人物小传，模型顺带又读了一些）。
#
# “回放 10%–20% 的通用数据就能抑制遗忘”这一说法，在这里的结论是：**{glue:text}`replay_verdict`**。
# 不过要记住规模上的差距：这里领域数据和通用数据共用一个分词器，适应过程只有几秒钟；而这一说法所
# 依据的继续预训练，是在 70 亿参数的模型上投入 500 亿到 1000 亿个领域词元。合适的回放比例如何随
# 规模变化，这组扫描无从回答。

# %% [markdown] tags=["en"]
# ## Longer contexts: RoPE rescaling
#
# The last claim needs a model that can look something up in its context at all, and the small
# WSD model above cannot: it has no reliable induction mechanism (copying what followed an
# earlier occurrence of the current tokens), and it does not learn one in a short training. So
# this section starts from the book's base model, the one the pre-training chapter trains (and
# stores, so it is not trained again here): {glue:text}`ctx_layers` layers, trained at
# {glue:text}`original_len` tokens per sequence.
#
# The test is a synthetic look-up. Somewhere in a stretch of everyday text sits a sentence such
# as "The code of Kalo is #4827."; the text ends with the same sentence cut before the digits, and
# the model must write the code. Names, codes and text in the test items never occur in
# training. Here is a short test item in the language of this page, with the fact as far back as
# the item allows:

# %% [markdown] tags=["zh"]
# ## 更长的上下文：调整 RoPE
#
# 最后一个说法要求模型本来就能在上下文里查找信息，而上面那个小小的 WSD 模型做不到：它没有可靠的
# 归纳机制（即找到当前词元在前文中出现过的位置，把紧跟其后的内容抄过来），短暂训练也学不会。所以
# 这一节改用本书的基座模型，也就是“预训练”一章训练的那个模型（它已经存储下来，这里不必重新训练）：
# {glue:text}`ctx_layers` 层，训练时每条序列 {glue:text}`original_len` 个词元。
#
# 测试用的是一个合成的查找任务。一段日常短文中间藏着一句话，比如“卡洛的密码是#4827。”；文本的结尾
# 重复这句话，但在数字之前截断，模型必须写出密码。测试样例中的人名、密码和短文都不会在训练中出现。
# 下面是一条用本页语言写的短测试样例，事实尽可能放在最靠前的位置：

# %%
ctx_base = PRESETS["base"].replace(train={"progress": False})  # the pre-training chapter's model
book_run = pretrain(ctx_base, store)
original_len = ctx_base.train.seq_len
new_len = context_factor * original_len
lengths = [original_len // 2] + [k * original_len for k in range(1, context_factor + 1)]
# Test items alternate languages: item 0 is English, item 1 Chinese.
page_item = ctx_base.corpus.languages.index(ctx.lang) if ctx.lang in ctx_base.corpus.languages else 0
example = RetrievalTask(ctx_base.corpus, book_run.tokenizer, "eval").item(page_item, original_len // 2)
decode = book_run.tokenizer.decode
# The filler is cut at token boundaries, which may split a character: shown as "…".
print((decode(list(example.prompt[1:])) + "▸" + decode(list(example.answer))).replace("\ufffd", "…"))

# %% [markdown] tags=["en"]
# First, the fair *before*: the base model trained on a mix of its corpus and such items at its
# own length, {glue:text}`original_len` tokens, for {glue:text}`before_steps` steps. Then each
# method starts from that model, stretches RoPE for a context {glue:text}`context_factor` times
# as long ({glue:text}`new_len` tokens) and trains for {glue:text}`context_steps` steps at the new
# length on the same mix:
#
# - **ABF** raises RoPE's base from {glue:text}`rope_base` to {glue:text}`abf_base`, which slows
#   the slowest rotation exactly {glue:text}`context_factor` times and the fastest not at all.
# - **Linear interpolation** divides every position by {glue:text}`context_factor`, so the new
#   context maps onto the positions of the old one, and neighbouring tokens end up closer than
#   any two tokens ever were in training.
# - **YaRN** interpolates only the slow rotations, keeps the fast ones, and ramps between them;
#   it also sharpens attention slightly to make up for the longer context.
#
# Each model is scored on {glue:text}`n_retrieval` test items at every length from
# {glue:text}`shortest_len` to {glue:text}`new_len` tokens, the fact always at the start. The same
# stretched models are also scored *zero-shot*, before their extra training.

# %% [markdown] tags=["zh"]
# 先准备公平的“扩展前”模型：让基座模型在它自己的长度（{glue:text}`original_len` 个词元）上，用语料
# 与这类样例的混合数据训练 {glue:text}`before_steps` 步。然后，每种方法都从这个模型出发，调整
# RoPE，把上下文拉长到原来的 {glue:text}`context_factor` 倍（{glue:text}`new_len` 个词元），再用同样的
# 混合数据在新长度上训练 {glue:text}`context_steps` 步：
#
# - **ABF** 把 RoPE 的基频从 {glue:text}`rope_base` 提高到 {glue:text}`abf_base`，最慢的那一组旋转
#   恰好放慢 {glue:text}`context_factor` 倍，最快的一组则完全不变。
# - **线性插值**把每个位置都除以 {glue:text}`context_factor`，让新的上下文落在旧上下文的位置范围里；
#   代价是相邻词元之间的距离比训练时见过的任何两个词元都要近。
# - **YaRN** 只对慢速旋转做插值，快速旋转保持不变，两者之间线性过渡；它还让注意力稍微变得尖锐一些，
#   以抵消上下文变长带来的稀释。
#
# 每个模型在 {glue:text}`shortest_len` 到 {glue:text}`new_len` 个词元的各个长度上，各用
# {glue:text}`n_retrieval` 条测试样例打分，事实总放在最开头。同样经过拉伸的模型，在额外训练之前也
# 打一次分，这就是*零样本*的结果。

# %%
before_cfg = before_config(ctx_base, before_steps)
before = extend_context(ctx_base, before_cfg, store)
extended = {m: extend_context(ctx_base, ContextConfig(method=m, new_seq_len=new_len, steps=context_steps,
                                                      batch_size=context_batch_size, start_from=before_cfg),
                              store)
            for m in context_methods}


def context_scores() -> dict:
    """Retrieval accuracy at every length and short-context loss of each model, trained and zero-shot."""
    models = {"base": book_run.model, "before": before.model, **{m: e.model for m, e in extended.items()},
              **{f"zero-shot {m}": rescaled_model(before.model, ctx_base, e.config)
                 for m, e in extended.items()}}
    out = {}
    for name, model in models.items():
        accuracy = retrieval_accuracy(model, book_run.tokenizer, lengths, n_retrieval, corpus=ctx_base.corpus)
        out[name] = {"accuracy": [accuracy[n] for n in lengths],
                     "short_loss": short_context_loss(model, ctx_base, store)}
    return out


context = store.memo("midtraining-context",
                     {"before": before.path.name, "extended": sorted(e.path.name for e in extended.values()),
                      "lengths": lengths, "n_items": n_retrieval},
                     context_scores)

METHOD_NAMES = {"none": _("no RoPE change"), "abf": "ABF", "linear": _("linear interpolation"),
                "yarn": "YaRN"}
METHOD_COLORS = {"none": "#8c564b", "abf": "#2ca02c", "linear": "#ff7f0e", "yarn": "#d62728"}
fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(11.0, 3.6), gridspec_kw={"width_ratios": [1.2, 1.2, 1]})
for ax, prefix, title in ((ax1, "", _("After training at the new length")),
                          (ax2, "zero-shot ", _("Stretched, not trained"))):
    ax.plot(lengths, 100 * np.array(context["before"]["accuracy"]), "o--", color="black", ms=4,
            label=_("before extension"))
    if not prefix:
        ax.plot(lengths, 100 * np.array(context["base"]["accuracy"]), "x:", color="#7f7f7f", ms=4,
                label=_("base model, never saw the task"))
    for m in context_methods:
        ax.plot(lengths, 100 * np.array(context[prefix + m]["accuracy"]), "o-", color=METHOD_COLORS[m], ms=4,
                label=METHOD_NAMES[m])
    ax.axvline(original_len, color="black", lw=0.8, ls=":")
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths, [str(n) for n in lengths])
    ax.set_ylim(-3, 103)
    ax.set_xlabel(_("Context length (tokens)"))
    ax.set_ylabel(_("Codes written exactly (%)"))
    ax.set_title(title, fontsize=10)
names = ["base", "before", *context_methods]
short_names = {"base": _("base model"), "before": _("before extension"), **METHOD_NAMES}
short = [context[n]["short_loss"] for n in names]
ax3.scatter(np.arange(len(names)), short, s=70, zorder=3,
            color=["#7f7f7f", "black", *[METHOD_COLORS[m] for m in context_methods]])
ax3.set_xticks(np.arange(len(names)), [short_names[n] for n in names], rotation=25, ha="right", fontsize=8)
ax3.set_xlim(-0.5, len(names) - 0.5)
ax3.set_ylim(min(short) - 0.25 * np.ptp(short), max(short) + 0.25 * np.ptp(short))
ax3.grid(axis="y", color="#eeeeee")
ax3.set_ylabel(_("Validation loss (nats/token)"))
ax3.set_title(_("Short text, original length"), fontsize=10)
handles, labels = ax1.get_legend_handles_labels()
fig.legend(handles, labels, frameon=False, fontsize=8, loc="lower center", ncols=len(labels))
fig.tight_layout(rect=(0, 0.07, 1, 1))
pb.figure(fig, "midtraining-context-extension",
          title=N_("Look-up accuracy against context length, before and after extending RoPE"),
          caption=N_("Share of test items whose code the model writes exactly (greedy), with the fact at "
                     "the start of the context, against the item's length; the dotted line is the "
                     "length the base model was trained at. Left: after each method's training at the "
                     "extended length (the longest shown); middle: the same RoPE changes applied without "
                     "training. Right: held-out loss on ordinary text at the original length."),
          data={"lengths": lengths, "original_len": original_len, "new_len": new_len,
                **{f"{name}_accuracy": v["accuracy"] for name, v in context.items()},
                **{f"{name}_short_loss": v["short_loss"] for name, v in context.items()}})

# %%
acc_at = {name: dict(zip(lengths, v["accuracy"], strict=True)) for name, v in context.items()}
before_orig, before_new = acc_at["before"][original_len], acc_at["before"][new_len]
pb.glue("ctx_layers", ctx_base.model.n_layer)
pb.glue("original_len", original_len)
pb.glue("new_len", new_len)
pb.glue("shortest_len", lengths[0])
pb.glue("twice_len", 2 * original_len)
pb.glue("context_factor", context_factor)
pb.glue("context_steps", context_steps)
pb.glue("before_steps", before_cfg.steps)
pb.glue("n_retrieval", n_retrieval)
pb.glue("rope_base", ctx_base.model.rope_base, digits=0)
abf_model = extension_model_config(ctx_base, ContextConfig(method="abf", new_seq_len=new_len))
pb.glue("abf_base", abf_model.rope_base, digits=0)
pb.glue("acc_base_orig", acc_at["base"][original_len], percent=True, digits=0)
pb.glue("acc_before_orig", before_orig, percent=True, digits=0)
pb.glue("acc_before_2x", acc_at["before"][2 * original_len], percent=True, digits=0)
pb.glue("acc_before_new", before_new, percent=True, digits=0)
pb.glue("short_base", context["base"]["short_loss"])
pb.glue("base_lookup", _("the look-up is learned in the before stage, not in pre-training.")
        if acc_at["base"][original_len] < 0.1 else
        _("pre-training already gave it part of the look-up, and the before stage the rest."))
pb.glue("plain_rope", _("plain RoPE does not carry the skill past the distances it was trained on.")
        if acc_at["before"][2 * original_len] < 0.5 * before_orig else
        _("plain RoPE carries the skill some way past the distances it was trained on."))
pb.glue("short_before", context["before"]["short_loss"])
for m in METHOD_NAMES:  # every method, so the prose reads "—" for one that was not run
    ran = m in context_methods
    for key, value in ((f"acc_{m}_new", acc_at[m][new_len] if ran else None),
                       (f"acc_{m}_2x", acc_at[m][2 * original_len] if ran else None),
                       (f"zs_{m}_orig", acc_at[f"zero-shot {m}"][original_len] if ran else None),
                       (f"zs_{m}_2x", acc_at[f"zero-shot {m}"][2 * original_len] if ran else None)):
        pb.glue(key, value if value is not None else "—", percent=value is not None, digits=0)
    pb.glue(f"short_{m}", context[m]["short_loss"] if ran else "—")


# Chinese prose sets Latin words and digits off by a space; messages that insert names leave it to this.
CJK_LATIN = re.compile(r"(?<=[\u4e00-\u9fff])(?=[A-Za-z0-9])|(?<=[A-Za-z0-9])(?=[\u4e00-\u9fff])")


def spaced(text: str) -> str:
    return CJK_LATIN.sub(" ", text)


def method_list(methods: list[str]) -> str:
    """Method names as prose lists them: "ABF", "ABF and YaRN", "ABF, linear interpolation and YaRN"."""
    shown = [METHOD_NAMES[m] for m in methods]
    return shown[0] if len(shown) == 1 else _(", ").join(shown[:-1]) + _(" and ") + shown[-1]


# A method extends the context when, at the new length, it keeps at least half of what the model
# wrote at its own length before, and clearly beats the model before extension there.
works = [m for m in context_methods if acc_at[m][new_len] >= 0.5 * before_orig
         and acc_at[m][new_len] >= before_new + 0.2]
fails = [m for m in context_methods if m not in works]
if before_orig < 0.5:
    ctx_verdict = _("not testable at these settings: the model did not learn the look-up even at its "
                    "own length")
elif works and fails:
    ctx_verdict = _("supported for {works}, not for {fails}").format(works=method_list(works),
                                                                       fails=method_list(fails))
elif works:
    ctx_verdict = _("supported for every method tried")
else:
    ctx_verdict = _("not supported at these settings: no method keeps half of the look-up accuracy at "
                    "the new length")
pb.glue("ctx_verdict", spaced(ctx_verdict))
best = max(context_methods, key=lambda m: acc_at[m][new_len])
pb.glue("best_method", METHOD_NAMES[best])
pb.glue("acc_best_new", acc_at[best][new_len], percent=True, digits=0)
short_len = lengths[0]
lost = [m for m in works if acc_at[m][short_len] < acc_at["before"][short_len] - 0.1]
short_message = _("One cost shows at the other end: on items of only {n} tokens, fewer codes come out right "
                  "after extension with {methods} than before it ({before} before; {after}).")
pb.glue("short_items", spaced(short_message.format(
    n=short_len, methods=method_list(lost), before=format_percent(acc_at["before"][short_len], 0),
    after=_(", ").join(f"{METHOD_NAMES[m]} {format_percent(acc_at[m][short_len], 0)}" for m in lost)))
    if lost else "")
zero_best = max(context_methods, key=lambda m: acc_at[f"zero-shot {m}"][2 * original_len])
zero_2x = acc_at[f"zero-shot {zero_best}"][2 * original_len]
if zero_2x >= 0.5 * before_orig:
    zero_verdict = _("Zero-shot, {method} already writes {share} of the codes at twice the length: "
                     "the continuity of RoPE carries it part of the way.").format(
        method=METHOD_NAMES[zero_best], share=format_percent(zero_2x, 0))
else:
    zero_verdict = _("That RoPE is a continuous function of the position does not by itself make a "
                     "stretched model work: without training, no method keeps half of its accuracy at "
                     "twice the length (the best, {method}, writes {share}). What a method preserves "
                     "decides how much it has to relearn.").format(
        method=METHOD_NAMES[zero_best], share=format_percent(zero_2x, 0))
pb.glue("zero_verdict", spaced(zero_verdict))
yarn_beta = ContextConfig().yarn_beta
pb.glue("yarn_beta", yarn_beta, digits=0)
pb.glue("head_dim", ctx_base.model.head_dim)
pb.glue("fastest_turns", original_len / (2 * np.pi), digits=0)  # pair 0 turns one radian per position

rise = {m: context[m]["short_loss"] / context["before"]["short_loss"] - 1 for m in context_methods}
kept = [m for m in context_methods if rise[m] <= 0.02]
pb.glue("short_rises", _(", ").join(f"{METHOD_NAMES[m]} {'+' if rise[m] >= 0 else '−'}"
                                    f"{format_percent(abs(rise[m]), 1)}" for m in context_methods))
if len(kept) == len(context_methods):
    short_verdict = _("every method stays within 2 % of the loss before extension")
elif kept:
    short_verdict = _("within 2 % of the loss before extension for {kept}, beyond it for {others}").format(
        kept=method_list(kept), others=method_list([m for m in context_methods if m not in kept]))
else:
    short_verdict = _("every method costs more than 2 % of the loss before extension")
pb.glue("short_verdict", spaced(short_verdict))
ext_tokens = context_steps * extended[best].config.batch_size * new_len
pb.glue("ext_tokens", ext_tokens, count=True)
pb.glue("ext_share", ext_tokens / book_run.summary["tokens_seen"], percent=True, digits=0)

# %% [markdown] tags=["en"]
# The base model, which never saw the task, writes {glue:text}`acc_base_orig` of the codes even
# at its own length: {glue:text}`base_lookup` After that stage the model writes
# {glue:text}`acc_before_orig` of the codes at {glue:text}`original_len` tokens,
# {glue:text}`acc_before_2x` at twice that length and {glue:text}`acc_before_new` at
# {glue:text}`new_len`: {glue:text}`plain_rope`
#
# After {glue:text}`context_steps` steps at {glue:text}`new_len` tokens, the share of codes
# written exactly at that length is {glue:text}`acc_abf_new` with ABF,
# {glue:text}`acc_linear_new` with linear interpolation and {glue:text}`acc_yarn_new` with YaRN
# (at twice the original length: {glue:text}`acc_abf_2x`, {glue:text}`acc_linear_2x` and
# {glue:text}`acc_yarn_2x`). The claim that rescaling RoPE and a short training extend the
# context is **{glue:text}`ctx_verdict`**; the best here is {glue:text}`best_method`, with
# {glue:text}`acc_best_new` at {glue:text}`new_len` tokens. {glue:text}`short_items`
#
# Without the extra training the picture differs. At twice the original length the stretched
# models write {glue:text}`zs_abf_2x` (ABF), {glue:text}`zs_linear_2x` (linear) and
# {glue:text}`zs_yarn_2x` (YaRN) of the codes, and at the original length, where no distance is
# new, linear interpolation writes {glue:text}`zs_linear_orig` and YaRN {glue:text}`zs_yarn_orig`.
# ABF changes RoPE least where the look-up needs it: its fastest rotation, which tells
# neighbouring tokens apart, stays exactly as it was. Linear interpolation slows every rotation
# {glue:text}`context_factor` times. YaRN is meant to keep the fast rotations, but only those that
# turn more than {glue:text}`yarn_beta` times within the original context; with heads of
# {glue:text}`head_dim` dimensions and a context of {glue:text}`original_len` tokens even the
# fastest turns only {glue:text}`fastest_turns` times, so here YaRN too interpolates every
# rotation to some degree. (At the scale YaRN was designed for, 4,096 tokens and heads of 128
# dimensions, the fastest rotations turn hundreds of times and are left alone.)
# {glue:text}`zero_verdict`
#
# On ordinary text at the original length the loss is {glue:text}`short_base` for the base
# model and {glue:text}`short_before` before extension; relative to that, the extended models
# change it by {glue:text}`short_rises`: {glue:text}`short_verdict`. As for the price, each
# extension read {glue:text}`ext_tokens` tokens, {glue:text}`ext_share` of what pre-training read;
# YaRN's reported extensions use about a billion tokens against trillions in pre-training, so
# "cheaply" describes the large scale, not this one.

# %% [markdown] tags=["zh"]
# 从没见过这个任务的基座模型，即使在它自己的长度上，写对的密码也只有 {glue:text}`acc_base_orig`：
# {glue:text}`base_lookup`经过这一阶段，模型在 {glue:text}`original_len` 个词元的长度上能写对
# {glue:text}`acc_before_orig` 的密码，长度翻倍时为 {glue:text}`acc_before_2x`，到
# {glue:text}`new_len` 个词元时为 {glue:text}`acc_before_new`：{glue:text}`plain_rope`
#
# 在 {glue:text}`new_len` 个词元的长度上训练 {glue:text}`context_steps` 步之后，在这个长度上完全写对
# 密码的比例，ABF 为 {glue:text}`acc_abf_new`，线性插值为 {glue:text}`acc_linear_new`，YaRN 为
# {glue:text}`acc_yarn_new`（在两倍原长度上分别为 {glue:text}`acc_abf_2x`、{glue:text}`acc_linear_2x`
# 和 {glue:text}`acc_yarn_2x`）。“调整 RoPE 再短暂训练就能扩展上下文”这一说法，在这里的结论是：
# **{glue:text}`ctx_verdict`**；表现最好的是 {glue:text}`best_method`，在 {glue:text}`new_len` 个词元的
# 长度上写对 {glue:text}`acc_best_new`。{glue:text}`short_items`
#
# 如果不做额外训练，情况就不一样了。在两倍原长度上，拉伸后的模型写对的密码比例分别为
# {glue:text}`zs_abf_2x`（ABF）、{glue:text}`zs_linear_2x`（线性插值）和 {glue:text}`zs_yarn_2x`
# （YaRN）；而在原长度上，没有任何距离是新的，线性插值却只写对 {glue:text}`zs_linear_orig`，YaRN 只写对
# {glue:text}`zs_yarn_orig`。ABF 对 RoPE 的改动恰好避开了查找所依赖的部分：负责区分相邻词元的最快
# 那组旋转原封不动。线性插值则把每一组旋转都放慢 {glue:text}`context_factor` 倍。YaRN 本意是保留快速
# 旋转，但它只保留在原上下文内转过 {glue:text}`yarn_beta` 圈以上的那些；这里每个注意力头只有
# {glue:text}`head_dim` 维，上下文只有 {glue:text}`original_len` 个词元，连最快的一组也只转
# {glue:text}`fastest_turns` 圈，所以 YaRN 在这里同样对每一组旋转都做了不同程度的插值。（在 YaRN
# 面向的规模上，上下文 4096 个词元、注意力头 128 维，最快的几组旋转要转几百圈，会被原样保留。）
# {glue:text}`zero_verdict`
#
# 在原长度的普通文本上，基座模型的损失为 {glue:text}`short_base`，扩展前为 {glue:text}`short_before`；
# 与扩展前相比，各扩展模型的损失变化为 {glue:text}`short_rises`：{glue:text}`short_verdict`。至于代价，
# 每次扩展都读了 {glue:text}`ext_tokens` 个词元，相当于预训练读量的 {glue:text}`ext_share`；而 YaRN
# 报告的扩展只用了大约十亿个词元，预训练却是以万亿计。所以“低成本”说的是大规模下的情形，不是这里。
