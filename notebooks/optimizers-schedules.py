# %% [markdown] tags=["en"]
# # Optimizers and learning-rate schedules
#
# Three pieces of received wisdom about the training loop are put to the test here:
#
# 1. **The peak learning rate is the most sensitive hyperparameter.** Set it too low and the model
#    is undertrained when the budget runs out; set it too high and training turns unstable.
# 2. **Muon can replace AdamW.** Muon orthogonalises the momentum of every weight matrix before it
#    steps; Moonshot AI's Moonlight study, the groundwork for Kimi K2's optimizer, reports about
#    twice AdamW's compute efficiency.
# 3. **A warm-up–stable–decay (WSD) schedule does as well as cosine decay**, much of its gain
#    arriving in a short final decay. Its stable phase can therefore be checkpointed and branched
#    into several decays; the mid-training notebook does that branching.
#
# Every run below is the same small language model on the same bilingual corpus, trained for the
# same number of steps; only the knob under study changes. The model has
# {glue:text}`n_params` parameters and each run reads {glue:text}`tokens_per_run` tokens. The
# score is the validation cross-entropy in nats per token, measured on held-out documents. The
# training loop's spike guard, which rewinds and skips a batch when the loss jumps, is switched
# off: a learning rate that is too high should show what it really does.

# %% [markdown] tags=["zh"]
# # 优化器与学习率调度
#
# 关于训练循环，业内流传着三条经验，本实验逐一检验：
#
# 1. **峰值学习率是最敏感的超参数。** 设得太低，算力预算耗尽时模型还没练够；设得太高，训练就会失稳。
# 2. **Muon 可以取代 AdamW。** Muon 在更新之前先把每个权重矩阵的动量正交化；月之暗面的 Moonlight
#    研究（Kimi K2 优化器的前身）报告称，它的计算效率大约是 AdamW 的两倍。
# 3. **“预热—稳定—衰减”（WSD）调度不输余弦衰减**，而且相当一部分收益来自最后那一小段衰减。因此，稳定阶段的
#    检查点可以保存下来，再分叉出多条不同的衰减路线；分叉本身留给“中期训练”一章去做。
#
# 下面每一次运行都用同一个小语言模型、同一份双语语料、同样的训练步数，只改动正在研究的那一个旋钮。
# 模型共有 {glue:text}`n_params` 个参数，每次运行读入 {glue:text}`tokens_per_run` 个词元。评分标准是
# 留出文档上的验证交叉熵，单位为纳特/词元。训练循环自带的尖峰保护（损失突然跳高时回退并跳过该批数据）
# 在这里被关掉了：学习率过高会造成什么后果，就该原原本本地暴露出来。

# %% tags=["parameters"]
steps: int = 200  # optimizer steps of every run
batch_size: int = 16  # sequences per optimizer step
seq_len: int = 64  # tokens per training sequence
d_model: int = 48  # model width (a multiple of 8: the model has four attention heads)
n_layer: int = 2  # transformer blocks
lr_low: float = 0.003  # smallest peak learning rate of the sweep
lr_high: float = 0.3  # largest peak learning rate of the sweep
n_lr: int = 5  # learning rates in the sweep, evenly spaced on a log scale
decay_fraction: float = 0.2  # WSD: share of the steps spent in the final decay
seed: int = 0  # initialisation and data-order seed of the reference runs

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

import phasebook.book as pb
from phasebook.errors import PhasebookError
from phasebook.i18n import N_, _, format_number, format_percent
from phasebook.model import GPT
from phasebook.store import Store
from phasebook.train import ScheduleConfig, lr_multiplier, stable_end
from phasebook.train.optim import split_parameters
from phasebook.train.pretraining import PRESETS, pretrain

ctx = pb.setup()
if not torch.cuda.is_available():
    # Matrices this small gain little from intra-op threads, and on a shared CPU two threads
    # contend so badly that a step takes several times longer.
    torch.set_num_threads(1)

store = Store()
warmup = max(1, steps // 10)
reference = PRESETS["base"].replace(
    model={"n_layer": n_layer, "d_model": d_model, "n_head": 4, "max_seq_len": seq_len},
    train={"steps": steps, "batch_size": batch_size, "seq_len": seq_len, "seed": seed,
           "eval_interval": max(1, steps // 20), "eval_batches": 4,
           "log_interval": max(1, steps // 40), "checkpoint_interval": steps,
           "spike_factor": 0.0, "progress": False,
           "schedule": {"name": "cosine", "warmup_steps": warmup}})


def run(**train):
    """One training run of `reference` with some train fields changed, as its metrics and summary.

    Stored, so the Chinese page reuses it; a run that blows up is recorded, not fatal.
    """
    cfg = reference.replace(train=train)

    def compute():
        try:
            result = pretrain(cfg, store)
        except PhasebookError as exc:
            return {"failed": str(exc)}
        return {"metrics": result.metrics, "summary": result.summary}

    return store.memo("optimizers-schedules-run", cfg.key(), compute)


def final_loss(result) -> float:
    summary = result.get("summary") or {}
    loss = summary.get("final_val_loss")
    return float(loss) if loss is not None and np.isfinite(loss) else float("nan")


def val_curve(result):
    rows = [m for m in result.get("metrics", []) if "val_loss" in m]
    return np.array([m["step"] for m in rows]), np.array([m["val_loss"] for m in rows])


def val_at(result, step: int) -> float:
    """Validation loss at the last evaluation at or before `step`."""
    s, v = val_curve(result)
    return float(v[s <= step][-1])


def train_seconds(result):
    """Steps and cumulative training seconds at each logged step (evaluation excluded)."""
    rows = result["metrics"]
    tokens = np.array([m["tokens"] for m in rows], dtype=float)
    rate = np.array([m["tokens_per_s"] for m in rows], dtype=float)
    window = np.diff(tokens, prepend=0.0)
    return np.array([m["step"] for m in rows]), np.cumsum(window / np.maximum(rate, 1e-9))


def steps_to_reach(result, target: float) -> float:
    """First step at which the validation loss reaches `target` (linear between evaluations)."""
    s, v = val_curve(result)
    hit = np.nonzero(v <= target)[0]
    if len(hit) == 0:
        return float("nan")
    k = int(hit[0])
    if k == 0:
        return float(s[0])
    return float(s[k - 1] + (s[k] - s[k - 1]) * (v[k - 1] - target) / (v[k - 1] - v[k]))


pb.glue("n_params", int(reference.model.num_params()))
pb.glue("tokens_per_run", steps * batch_size * seq_len)
pb.glue("steps", steps)

# %% [markdown] tags=["en"]
# ## How sensitive is the peak learning rate?
#
# We train the model with AdamW at {glue:text}`n_lr` peak learning rates spaced evenly on a
# logarithmic scale from {glue:text}`lr_low` to {glue:text}`lr_high`, each step a factor of
# {glue:text}`lr_factor`. Every run warms up linearly over the first tenth of its steps and then
# follows a cosine decay to a tenth of the peak. Then we sweep Muon over the same grid. In this
# library Muon's update is rescaled to the same root-mean-square size as a typical AdamW update,
# so the two learning rates mean roughly the same thing and one axis serves both. Muon only
# handles the hidden weight matrices; the embedding and the norms stay with AdamW at the best
# AdamW rate of the first sweep.

# %% [markdown] tags=["zh"]
# ## 峰值学习率到底有多敏感？
#
# 先用 AdamW 训练：峰值学习率取 {glue:text}`n_lr` 个值，在对数尺度上从 {glue:text}`lr_low`
# 均匀排到 {glue:text}`lr_high`，相邻两档相差 {glue:text}`lr_factor` 倍。每次运行都在前十分之一的
# 步数里线性预热，之后按余弦曲线衰减到峰值的十分之一。接着在同一组网格上扫描 Muon。本库把 Muon 的
# 更新量缩放到与 AdamW 典型更新相同的均方根大小，因此两者的学习率含义大致相当，可以共用一根横轴。
# Muon 只负责隐藏层的权重矩阵；词嵌入和归一化层的参数仍交给 AdamW，学习率取第一轮扫描中 AdamW
# 的最优值。

# %%
grid = np.geomspace(lr_low, lr_high, n_lr)
adamw = [run(optimizer={"name": "adamw", "lr": float(lr)}) for lr in grid]
adamw_loss = np.array([final_loss(r) for r in adamw])
i_adamw = int(np.nanargmin(adamw_loss))
best_lr = float(grid[i_adamw])
muon = [run(optimizer={"name": "muon", "lr": best_lr, "muon_lr": float(lr)}) for lr in grid]
muon_loss = np.array([final_loss(r) for r in muon])
i_muon = int(np.nanargmin(muon_loss))
best_muon_lr = float(grid[i_muon])

fig, ax = plt.subplots(figsize=(6.4, 3.8))
for loss, best, color, marker, label in ((adamw_loss, i_adamw, "#1f77b4", "o", "AdamW"),
                                         (muon_loss, i_muon, "#d62728", "s", "Muon")):
    ax.plot(grid, loss, marker=marker, color=color, ms=5, label=label)
    ax.plot(grid[best], loss[best], marker="*", color=color, ms=14, ls="none")
    failed = np.isnan(loss)
    if failed.any():
        ax.plot(grid[failed], np.full(failed.sum(), np.nanmax(loss)), "x", color=color, ms=9)
ax.set_xscale("log")
ax.set_yscale("log")
pb.plain_log_axis(ax.yaxis)
ax.set_xlabel(_("Peak learning rate (Muon: of the hidden matrices)"))
ax.set_ylabel(_("Final validation loss (nats/token)"))
ax.legend(frameon=False)
pb.figure(fig, "optimizers-schedules-lr-sweep",
          title=N_("Final validation loss against the peak learning rate, AdamW and Muon"),
          caption=N_("Each point is one training run of the same model for the same number of "
                     "steps with a cosine schedule; only the peak learning rate changes. Stars "
                     "mark the best rate of each optimizer; crosses, runs that failed. Logarithmic "
                     "axes."),
          data={"learning_rate": grid, "adamw_final_val_loss": adamw_loss,
                "muon_final_val_loss": muon_loss})

# %%
# Other knobs, each changed alone from the best AdamW run.
best_adamw = {"name": "adamw", "lr": best_lr}
other_seed = run(optimizer=best_adamw, seed=seed + 1)
no_decay = run(optimizer={**best_adamw, "weight_decay": 0.0})
no_warmup = run(optimizer=best_adamw, schedule={"warmup_steps": 0})
best = float(adamw_loss[i_adamw])
factor = float(grid[1] / grid[0]) if n_lr > 1 else 1.0
step_down = float(adamw_loss[i_adamw - 1] - best) if i_adamw > 0 else float("nan")
step_up = float(adamw_loss[i_adamw + 1] - best) if i_adamw < n_lr - 1 else float("nan")
others = {"other_seed": (_("another seed"), final_loss(other_seed) - best),
          "no_weight_decay": (_("no weight decay"), final_loss(no_decay) - best),
          "no_warmup": (_("no warm-up"), final_loss(no_warmup) - best)}
knobs = {"lr_down": (_("learning rate ÷ {factor}").format(factor=f"{factor:.1f}"), step_down),
         "lr_up": (_("learning rate × {factor}").format(factor=f"{factor:.1f}"), step_up),
         **others}
seed_delta = abs(others["other_seed"][1])
largest_key = max(others, key=lambda k: abs(others[k][1]))
largest_other = abs(others[largest_key][1])
adamw_spread = float(np.nanmax(adamw_loss) - best)
one_step = float(np.nanmax([step_down, step_up]))
at_edge = i_adamw in (0, n_lr - 1)

fig, ax = plt.subplots(figsize=(6.4, 3.0))
names = [label for label, _value in knobs.values()]
deltas = np.array([value for _label, value in knobs.values()])
ax.barh(range(len(names)), np.nan_to_num(deltas), color=["#1f77b4"] * 2 + ["#7f7f7f"] * 3)
for y, d in enumerate(deltas):
    ax.annotate(f"{d:+.3f}" if np.isfinite(d) else "—", (max(np.nan_to_num(d), 0), y),
                xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)
ax.set_yticks(range(len(names)), names)
ax.invert_yaxis()
ax.axvline(0, color="black", lw=0.8)
ax.set_xlim(min(0.0, np.nanmin(deltas)) * 1.2, np.nanmax(deltas) * 1.25)
ax.set_xlabel(_("Change in final validation loss (nats/token)"))
pb.figure(fig, "optimizers-schedules-knobs",
          title=N_("What one change to a training knob costs"),
          caption=N_("Change in final validation loss from the best AdamW run when one knob is "
                     "changed: the peak learning rate moved one step of the sweep down or up (blue), "
                     "or another seed, no weight decay or no warm-up (grey). Positive is worse."),
          data={"knob": list(knobs), "delta_val_loss": deltas})

pb.glue("n_lr", n_lr)
pb.glue("lr_low", f"{lr_low:.2g}")
pb.glue("lr_high", f"{lr_high:.2g}")
pb.glue("lr_factor", factor, digits=1)
pb.glue("adamw_best_lr", f"{best_lr:.2g}")
pb.glue("adamw_best_loss", best)
pb.glue("muon_best_lr", f"{best_muon_lr:.2g}")
pb.glue("muon_best_loss", float(muon_loss[i_muon]))
pb.glue("adamw_spread", adamw_spread)
pb.glue("muon_spread", float(np.nanmax(muon_loss) - muon_loss[i_muon]))
pb.glue("n_failed", int(np.isnan(adamw_loss).sum() + np.isnan(muon_loss).sum()))
for key, cost in (("step_down", step_down), ("step_up", step_up)):
    pb.glue(key, cost if np.isfinite(cost) else "—")
pb.glue("seed_delta", seed_delta)
pb.glue("wd_delta", float(others["no_weight_decay"][1]))
pb.glue("warmup_delta", float(others["no_warmup"][1]))
if adamw_spread > largest_other:
    lr_range = _("The learning rate's swing across the sweep is {ratio} times the largest of "
                 "them, “{knob}”.").format(
        knob=others[largest_key][0], ratio=format_number(adamw_spread / max(largest_other, 1e-9), 1))
else:
    lr_range = _("The largest of them, “{knob}”, moves the loss more than the learning rate does "
                 "across the whole sweep.").format(knob=others[largest_key][0])
pb.glue("lr_range", lr_range)
if one_step > largest_other:
    lr_local = _("Even one grid step away from the optimum, in the costlier of the two directions, "
                 "costs more than any of the other changes.")
else:
    lr_local = _("Near the optimum, though, the valley is flat: one grid step, even in the costlier "
                 "direction, costs less than the largest of the other changes.")
pb.glue("lr_local", lr_local)
if at_edge:
    lr_verdict = _("not settled: the best rate lies at the edge of the grid")
elif adamw_spread > largest_other and one_step > largest_other:
    lr_verdict = _("supported")
elif adamw_spread > largest_other:
    lr_verdict = _("supported across the sweep, but not for a single step")
else:
    lr_verdict = _("not supported at these settings")
pb.glue("lr_verdict", lr_verdict)

# %% [markdown] tags=["en"]
# The loss traces a valley. AdamW does best at a peak rate of {glue:text}`adamw_best_lr`
# (final loss {glue:text}`adamw_best_loss`), Muon at {glue:text}`muon_best_lr`
# ({glue:text}`muon_best_loss`). Across the grid the AdamW loss rises by up to
# {glue:text}`adamw_spread` nats per token above its best and the Muon loss by up to
# {glue:text}`muon_spread`; {glue:text}`n_failed` runs failed outright.
#
# Against that, the other knobs were changed one at a time from the best AdamW run: another seed
# (a different initialisation and data order) moves the final loss by {glue:text}`seed_delta`,
# switching weight decay off by {glue:text}`wd_delta`, dropping the warm-up by
# {glue:text}`warmup_delta`. {glue:text}`lr_range` One grid step (a factor of
# {glue:text}`lr_factor`) is a finer test: stepping down from the best rate costs
# {glue:text}`step_down`, stepping up {glue:text}`step_up`. {glue:text}`lr_local` Note that a run
# without warm-up takes its first steps at the full peak rate, so its cost is a learning-rate
# effect too.
#
# The claim that the peak learning rate is the most sensitive knob is
# **{glue:text}`lr_verdict`** by this run. Only a handful of knobs were tried, and the seed
# difference rests on one pair of runs; batch size, Adam's betas and the length of training are
# left for a larger profile.

# %% [markdown] tags=["zh"]
# 损失曲线呈一道山谷。AdamW 在峰值学习率为 {glue:text}`adamw_best_lr` 时最好（最终损失
# {glue:text}`adamw_best_loss`），Muon 在 {glue:text}`muon_best_lr` 时最好（{glue:text}`muon_best_loss`）。
# 在整组网格上，AdamW 的损失最多比最优值高出 {glue:text}`adamw_spread` 纳特/词元，Muon 最多高出
# {glue:text}`muon_spread`；彻底失败的运行有 {glue:text}`n_failed` 次。
#
# 作为对照，我们从 AdamW 的最优运行出发，每次只改动一个别的旋钮：换一个随机种子（初始化和数据顺序都随之
# 改变），最终损失变化 {glue:text}`seed_delta`；关掉权重衰减，变化 {glue:text}`wd_delta`；去掉预热，变化
# {glue:text}`warmup_delta`。{glue:text}`lr_range`更精细的检验是只挪一格（即
# {glue:text}`lr_factor` 倍）：从最优学习率往下挪一格，损失增加 {glue:text}`step_down`；往上挪一格，增加
# {glue:text}`step_up`。{glue:text}`lr_local`需要注意，不做预热的运行一开始就以满额峰值学习率更新，
# 所以它的代价本身也是学习率造成的。
#
# “峰值学习率是最敏感的旋钮”这一论断，在本次运行中的结论是：**{glue:text}`lr_verdict`**。需要说明，
# 这里只试了少数几个旋钮，种子之间的差异也只来自一对运行；批大小、Adam 的两个 β 以及训练时长，
# 留给更大的参数配置去检验。

# %% [markdown] tags=["en"]
# ## Muon against AdamW
#
# Muon keeps a momentum buffer per weight matrix, as SGD with momentum does, but before stepping
# it replaces the matrix by a nearly orthogonal one, computed with {glue:text}`ns_steps`
# Newton–Schulz iterations: every direction of the update gets the same size, so rare directions are not
# drowned out by the dominant ones. The iterations cost extra arithmetic on every step. Below,
# each optimizer runs at its own best rate from the sweep; the curves are plotted against steps
# and against measured training time.

# %% [markdown] tags=["zh"]
# ## Muon 与 AdamW 正面比较
#
# Muon 像带动量的 SGD 一样，为每个权重矩阵维护一份动量，但在更新之前，会用 {glue:text}`ns_steps`
# 次 Newton–Schulz 迭代把这个矩阵替换成一个近似正交的矩阵：更新量在每个方向上的幅度都一样，
# 少见的方向不会被主导方向淹没。代价是每一步都要多做这些迭代的计算。下面两个优化器各自使用扫描中
# 找到的最优学习率，损失曲线分别按步数和实测训练时间画出。

# %%
a_run, m_run = adamw[i_adamw], muon[i_muon]
target = final_loss(a_run)
a_steps, m_steps = steps_to_reach(a_run, target), steps_to_reach(m_run, target)
a_time, m_time = train_seconds(a_run), train_seconds(m_run)
a_ms, m_ms = 1000 * a_time[1][-1] / steps, 1000 * m_time[1][-1] / steps

model = GPT(reference.model)
ns_steps = reference.train.optimizer.ns_steps
pb.glue("ns_steps", ns_steps)
ns_flops = 0
for p in split_parameters(model)["matrix"]:
    m, n = sorted((p.shape[0], p[0].numel()))
    ns_flops += ns_steps * (4 * m * m * n + 2 * m**3)
step_flops = reference.model.flops_per_token(seq_len) * batch_size * seq_len

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8.4, 3.6), sharey=True)
for result, (s_time, t_time), color, label in ((a_run, a_time, "#1f77b4", "AdamW"),
                                               (m_run, m_time, "#d62728", "Muon")):
    s, v = val_curve(result)
    ax1.plot(s, v, color=color, label=label)
    ax2.plot(np.interp(s, s_time, t_time), v, color=color, label=label)
for ax in (ax1, ax2):
    ax.axhline(target, color="#7f7f7f", lw=0.8, ls=":")
    ax.set_yscale("log")
    pb.plain_log_axis(ax.yaxis)
ax1.set_xlabel(_("Optimizer step"))
ax2.set_xlabel(_("Training time (s)"))
ax1.set_ylabel(_("Validation loss (nats/token)"))
ax1.legend(frameon=False)
pb.figure(fig, "optimizers-schedules-muon-vs-adamw",
          title=N_("AdamW and Muon at their best learning rates"),
          caption=N_("Validation loss of the best AdamW and the best Muon run of the sweep, "
                     "against optimizer steps (left) and against measured training time, evaluation "
                     "excluded (right). The dotted line is AdamW's final loss. Logarithmic "
                     "vertical axis."),
          data={"adamw_step": val_curve(a_run)[0], "adamw_val_loss": val_curve(a_run)[1],
                "muon_step": val_curve(m_run)[0], "muon_val_loss": val_curve(m_run)[1],
                "adamw_time_step": a_time[0], "adamw_seconds": a_time[1],
                "muon_time_step": m_time[0], "muon_seconds": m_time[1]})

muon_gain = target - final_loss(m_run)
pb.glue("adamw_final", target)
pb.glue("muon_final", final_loss(m_run))
pb.glue("muon_gain", float(muon_gain))
if np.isfinite(m_steps):
    muon_reach = _("reaches AdamW's final loss after about {steps} steps, {share} of the run").format(
        steps=format_number(m_steps, 0), share=format_percent(m_steps / a_steps, 0))
else:
    muon_reach = _("does not reach AdamW's final loss within the run")
pb.glue("muon_reach", muon_reach)
pb.glue("time_ratio", float(m_ms / a_ms), digits=2)
pb.glue("adamw_ms_per_step", float(a_ms), digits=1)
pb.glue("muon_ms_per_step", float(m_ms), digits=1)
pb.glue("ns_overhead", ns_flops / step_flops, percent=True, digits=0)
if muon_gain > seed_delta:
    muon_verdict = _("supported")
elif muon_gain > -seed_delta:
    muon_verdict = _("a tie within the seed-to-seed difference")
else:
    muon_verdict = _("not supported at these settings")
pb.glue("muon_verdict", muon_verdict)

# %% [markdown] tags=["en"]
# At their best rates AdamW ends at {glue:text}`adamw_final` and Muon at
# {glue:text}`muon_final`, a gain of {glue:text}`muon_gain` for Muon. Muon
# {glue:text}`muon_reach`. Counting steps to a target inside one run is a generous reading:
# Muon's cosine schedule is still high when it gets there, and a shorter run planned from the
# start would decay earlier.
#
# The Newton–Schulz iterations add {glue:text}`ns_overhead` to the arithmetic of a step at this
# size; the share shrinks as batches grow, because the iterations cost the same however many
# tokens a step holds. On the machine that built this page a Muon step took
# {glue:text}`muon_ms_per_step` ms against {glue:text}`adamw_ms_per_step` ms for AdamW, a ratio
# of {glue:text}`time_ratio`; wall-clock times on a shared CPU are noisy, so read the right panel
# with that in mind. Measured against the difference between two seeds, the claim that Muon
# beats AdamW is **{glue:text}`muon_verdict`** by this run. The published factor of two comes
# from models thousands of times larger, trained far longer.

# %% [markdown] tags=["zh"]
# 各自取最优学习率时，AdamW 最终损失为 {glue:text}`adamw_final`，Muon 为 {glue:text}`muon_final`，
# Muon 领先 {glue:text}`muon_gain`。Muon {glue:text}`muon_reach`。在一次运行内部数“到达目标用了几步”，
# 是一种偏宽松的读法：Muon 到达时，它的余弦调度还处在高位；若一开始就按更短的训练来规划，衰减会来得
# 更早。
#
# 在这个规模下，Newton–Schulz 迭代让每一步的计算量增加 {glue:text}`ns_overhead`。批越大，这个比例越小，
# 因为迭代的开销与一步里有多少个词元无关。在生成本页的机器上，Muon 每步耗时
# {glue:text}`muon_ms_per_step` 毫秒，AdamW 为 {glue:text}`adamw_ms_per_step` 毫秒，两者之比为
# {glue:text}`time_ratio`；共享 CPU 上的墙钟时间噪声很大，看右图时请记住这一点。以两个随机种子之间的
# 差异为尺度，“Muon 胜过 AdamW”这一论断在本次运行中的结论是：**{glue:text}`muon_verdict`**。文献中
# “两倍效率”的数字，来自比这里大几千倍、训练时间也长得多的模型。

# %% [markdown] tags=["en"]
# ## Cosine, WSD and a constant rate
#
# The last experiment keeps AdamW at its best peak rate and changes only the shape of the
# schedule. Cosine decay starts to lower the rate right after warm-up. WSD holds the peak for most
# of the run and then decays linearly over the final {glue:text}`decay_share` of the steps, to the
# same floor as cosine. The constant schedule never decays. Up to the start of WSD's decay, the
# WSD and constant runs are the same computation, so their curves should coincide; what follows is
# the effect of the decay alone. All three use the peak rate that was best for cosine, which, if
# anything, favours cosine.

# %% [markdown] tags=["zh"]
# ## 余弦、WSD 与恒定学习率
#
# 最后一个实验让 AdamW 保持最优峰值学习率，只改变调度曲线的形状。余弦调度在预热结束后立刻开始降低
# 学习率；WSD 在大部分时间里保持峰值，只在最后 {glue:text}`decay_share` 的步数里线性衰减，终点与余弦
# 相同；恒定调度则始终不衰减。在 WSD 开始衰减之前，WSD 和恒定学习率两次运行做的是完全相同的计算，
# 曲线理应重合；此后两者的差别，就纯粹是衰减带来的效果。三者用的都是对余弦调度最优的峰值学习率，
# 如果说有偏向，也是偏向余弦调度。

# %%
cosine = adamw[i_adamw]
wsd = run(optimizer=best_adamw, schedule={"name": "wsd", "decay_fraction": decay_fraction})
constant = run(optimizer=best_adamw, schedule={"name": "constant"})
runs = {"cosine": cosine, "wsd": wsd, "constant": constant}
labels = {"cosine": _("cosine"), "wsd": _("WSD (warm-up, stable, decay)"),
          "constant": _("constant")}
colors = {"cosine": "#1f77b4", "wsd": "#2ca02c", "constant": "#ff7f0e"}
schedules = {name: ScheduleConfig(**{**vars(reference.train.schedule), "name": name,
                                     "decay_fraction": decay_fraction})
             for name in runs}
decay_start = stable_end(steps, schedules["wsd"])

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8.4, 3.6), gridspec_kw={"width_ratios": [1, 2]})
step_axis = np.arange(steps)
multipliers = {name: np.array([lr_multiplier(s, steps, sch) for s in step_axis])
               for name, sch in schedules.items()}
for name in runs:
    ax1.plot(step_axis + 1, multipliers[name], color=colors[name], label=labels[name])
    s, v = val_curve(runs[name])
    ax2.plot(s, v, color=colors[name], marker="o", ms=2.5, label=labels[name])
for ax in (ax1, ax2):
    ax.axvspan(decay_start, steps, color="#eeeeee", zorder=0)
ax1.set_xlabel(_("Optimizer step"))
ax1.set_ylabel(_("Learning rate / peak"))
ax2.set_xlabel(_("Optimizer step"))
ax2.set_ylabel(_("Validation loss (nats/token)"))
late = np.concatenate([v[s >= steps // 4] for s, v in map(val_curve, runs.values())])
pad = 0.05 * np.ptp(late)
ax2.set_xlim(steps // 4, steps * 1.02)
ax2.set_ylim(late.min() - pad, late.max() + pad)
ax2.legend(frameon=False, fontsize=8, loc="upper right")
pb.figure(fig, "optimizers-schedules-schedules",
          title=N_("Cosine, WSD and constant learning-rate schedules"),
          caption=N_("Left: the learning rate of each schedule as a share of the peak. Right: the "
                     "validation loss of AdamW at the same peak rate under each schedule, from a "
                     "quarter of the run on. The shaded band is WSD's decay phase."),
          data={"step": step_axis + 1, **{f"lr_multiplier_{k}": v for k, v in multipliers.items()},
                **{f"{k}_step": val_curve(r)[0] for k, r in runs.items()},
                **{f"{k}_val_loss": val_curve(r)[1] for k, r in runs.items()}})

drop = {name: val_at(r, decay_start) - final_loss(r) for name, r in runs.items()}
s_w, v_w = val_curve(wsd)
s_c, v_c = val_curve(constant)
same_until_decay = float(np.max(np.abs(v_w[s_w <= decay_start] - v_c[s_c <= decay_start])))
wsd_vs_cosine = final_loss(wsd) - final_loss(cosine)
gap = format_number(abs(wsd_vs_cosine))
pb.glue("decay_share", decay_fraction, percent=True, digits=0)
pb.glue("decay_start", int(decay_start))
pb.glue("cosine_final", final_loss(cosine))
pb.glue("wsd_final", final_loss(wsd))
pb.glue("constant_final", final_loss(constant))
pb.glue("wsd_drop", drop["wsd"])
pb.glue("constant_drop", drop["constant"])
pb.glue("cosine_drop", drop["cosine"])
pb.glue("wsd_at_decay", val_at(wsd, decay_start))
pb.glue("cosine_at_decay", val_at(cosine, decay_start))
pb.glue("wsd_vs_cosine", _("{gap} behind cosine").format(gap=gap) if wsd_vs_cosine > 0 else
        _("{gap} ahead of cosine").format(gap=gap))
pb.glue("same_until_decay", _("identical, step for step") if same_until_decay == 0 else
        _("apart by at most {gap}").format(gap=format_number(same_until_decay)))
sharp = drop["wsd"] - drop["constant"] > seed_delta
pb.glue("wsd_drop_verdict", _("supported") if sharp else _("not supported at these settings"))
matches = wsd_vs_cosine <= seed_delta
pb.glue("wsd_match_verdict", _("supported") if matches else _("not supported at these settings"))
if matches:
    wsd_explain = _("Here the decay is enough for WSD to finish level with cosine or ahead of it.")
else:
    wsd_explain = _("In a run this short the stable phase at the peak rate leaves WSD far behind, and "
                    "a decay over a small share of the steps has too little time to make up the "
                    "distance; the studies that find WSD on a par with cosine train for much longer.")
pb.glue("wsd_explain", wsd_explain)

# %% [markdown] tags=["en"]
# Until step {glue:text}`decay_start` the WSD and constant curves are
# {glue:text}`same_until_decay`: a WSD run is a constant-rate run with a decay attached, so its
# stable phase can be shared by any number of decays. At that point WSD's loss is
# {glue:text}`wsd_at_decay`, against {glue:text}`cosine_at_decay` for cosine, which has been
# cooling down all along. During its decay WSD's loss falls by {glue:text}`wsd_drop`; over the
# same steps the loss of the constant run falls by {glue:text}`constant_drop` and that of the
# cosine run by {glue:text}`cosine_drop`. Measured against the
# seed-to-seed difference, the claim that the loss drops sharply in the decay phase is
# **{glue:text}`wsd_drop_verdict`** by this run.
#
# WSD finishes at {glue:text}`wsd_final`, {glue:text}`wsd_vs_cosine`
# ({glue:text}`cosine_final`); never decaying leaves the constant run at
# {glue:text}`constant_final`. By the same yardstick, the claim that WSD does as well as cosine is
# **{glue:text}`wsd_match_verdict`** by this run. {glue:text}`wsd_explain` Rerun with a longer
# decay (`-p decay_fraction 0.4`) to see how the gap changes.
#
# Why the decay helps so much: at a high, fixed rate the weights keep bouncing around the floor of
# the loss valley, the noise of the minibatches setting how far they bounce; lowering the rate
# lets them settle. So a WSD run can be paused in its stable phase, checkpointed, and decayed
# later on whatever data the next stage calls for. The book's map of LLM training lists Llama 3
# among WSD's users; Llama 3's own report describes a cosine schedule whose last tokens are annealed linearly
# to zero, the same idea of a separate, short cool-down.

# %% [markdown] tags=["zh"]
# 直到第 {glue:text}`decay_start` 步，WSD 与恒定学习率两条曲线{glue:text}`same_until_decay`：WSD 其实
# 就是在恒定学习率的运行后面接上一段衰减，所以它的稳定阶段可以被任意多条衰减路线共用。此刻 WSD 的
# 损失为 {glue:text}`wsd_at_decay`，而一直在降温的余弦调度为 {glue:text}`cosine_at_decay`。进入衰减后，
# WSD 的损失下降了 {glue:text}`wsd_drop`；同样这几步里，恒定学习率下降 {glue:text}`constant_drop`，
# 余弦调度下降 {glue:text}`cosine_drop`。以两个随机种子之间的差异为尺度，“损失在衰减阶段骤降”这一
# 论断，在本次运行中的结论是：**{glue:text}`wsd_drop_verdict`**。
#
# WSD 最终停在 {glue:text}`wsd_final`，{glue:text}`wsd_vs_cosine`（余弦调度为
# {glue:text}`cosine_final`）；始终不衰减的恒定学习率停在 {glue:text}`constant_final`。用同一把尺子
# 衡量，“WSD 不输余弦调度”这一论断，在本次运行中的结论是：**{glue:text}`wsd_match_verdict`**。
# {glue:text}`wsd_explain`可以用更长的衰减段重新运行（`-p decay_fraction 0.4`），看看差距如何变化。
#
# 衰减为什么这么管用？学习率又高又固定时，权重会一直在损失谷底附近来回震荡，震荡的幅度由小批量的噪声
# 决定；把学习率降下来，权重才能沉到谷底。因此，一次 WSD 训练可以在稳定阶段暂停、保存检查点，之后再
# 按下一阶段需要的数据去做衰减。本书的大模型训练全景图把 Llama 3 列为 WSD 的使用者；而 Llama 3
# 自己的技术报告描述的是余弦调度，只在最后一批词元上把学习率线性退火到零——思路同样是单独安排一段短暂的降温。

# %% [markdown] tags=["en"]
# ## What this run shows
#
# | claim | verdict in this run |
# | --- | --- |
# | the peak learning rate is the most sensitive knob | {glue:text}`lr_verdict` |
# | Muon beats AdamW at equal steps | {glue:text}`muon_verdict` |
# | the loss drops sharply in WSD's decay phase | {glue:text}`wsd_drop_verdict` |
# | WSD does as well as cosine decay | {glue:text}`wsd_match_verdict` |
#
# All of it comes from a model of {glue:text}`n_params` parameters trained for
# {glue:text}`steps` steps, where one run takes seconds. What may carry over to large models is
# how the knobs rank, not the sizes of their effects; the best learning rate itself does not
# carry over, since it falls as models grow. Rerun with a larger setting, for example
# `phasebook run optimizers-schedules -p steps 600 -p d_model 64`, and the numbers above follow.

# %% [markdown] tags=["zh"]
# ## 本次运行的结论
#
# | 论断 | 本次运行的结论 |
# | --- | --- |
# | 峰值学习率是最敏感的旋钮 | {glue:text}`lr_verdict` |
# | 在相同步数下，Muon 胜过 AdamW | {glue:text}`muon_verdict` |
# | 损失在 WSD 的衰减阶段骤降 | {glue:text}`wsd_drop_verdict` |
# | WSD 不输余弦调度 | {glue:text}`wsd_match_verdict` |
#
# 以上结果都来自一个只有 {glue:text}`n_params` 个参数、训练 {glue:text}`steps` 步的模型，一次运行只需
# 几秒钟。能够迁移到大模型上的，是这些旋钮之间孰轻孰重，而不是效果的具体大小；最优学习率本身并不能
# 照搬，模型越大，它越低。换一组更大的参数重新运行，例如
# `phasebook run optimizers-schedules --lang zh -p steps 600 -p d_model 64`，上面的数字会随之更新。
