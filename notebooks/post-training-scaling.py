# %% [markdown] tags=["en"]
# # How much compute should post-training get?
#
# For years post-training was a rounding error next to pre-training: a few thousand GPU hours of
# fine-tuning after millions of pre-training. Reasoning models changed the proportion. DeepSeek
# reports spending more than a tenth of DeepSeek-V3.2's pre-training compute on post-training,
# most of it reinforcement learning, and credits that budget for much of the model's reasoning.
# This chapter asks the question at the book's scale, **for one and the same base model**: as the
# share of all training compute that goes to post-training grows, what does the model gain, and
# where does the gain stop?
#
# Two kinds of post-training spend the compute. Supervised fine-tuning (the *sft* chapter's
# recipe, word problems with worked steps) runs for more or fewer steps; GRPO (the *grpo*
# chapter's run) then continues from one of those models with reinforcement learning on harder
# problems. Every model is scored on the same held-out problems.

# %% [markdown] tags=["zh"]
# # 后训练该分到多少算力？
#
# 很多年里，后训练的算力和预训练相比只是个零头：预训练花上百万 GPU 小时，之后再微调几千小时。
# 推理模型改变了这个比例。DeepSeek 披露，DeepSeek-V3.2 的后训练花掉了超过预训练十分之一的算力，
# 其中大部分用于强化学习，模型的推理能力很大程度上要归功于这笔投入。本章在本书的尺度上提出同一个问题，
# 而且**始终针对同一个基座模型**：随着后训练在全部训练算力中所占的份额增加，模型能得到什么？
# 收益又在哪里停下？
#
# 花掉这些算力的是两种后训练。监督微调（沿用 *sft* 一章的做法，用写出步骤的应用题）训练步数有多有少；
# GRPO（即 *grpo* 一章的那次训练）再从其中一个模型出发，在更难的题上做强化学习。所有模型都在同一批
# 留出题上打分。

# %% tags=["parameters"]
sft_steps: list[int] = [4, 8, 15, 30, 60, 120]  # lengths of the SFT runs compared (60: GRPO's start)
grpo_start: int = 60  # the SFT run GRPO continues from (the GRPO chapter's)
n_eval: int = 200  # held-out word problems of the corpus's own kind, scored greedily
seed: int = 0  # seed of the SFT runs, GRPO and the held-out samples

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import FuncFormatter

import phasebook.book as pb
from phasebook.errors import PhasebookError
from phasebook.evaluate import Accuracy
from phasebook.i18n import N_, _, format_percent
from phasebook.post.grpo import GRPOConfig, grpo, heldout_pass1, rollout_width
from phasebook.post.sampling import sample
from phasebook.post.sft import SFTConfig, SFTData, sft
from phasebook.post.tasks import math_items
from phasebook.store import Store
from phasebook.train.pretraining import PRESETS, pretrain

ctx = pb.setup()
if grpo_start not in sft_steps or sorted(set(sft_steps)) != sft_steps or sft_steps[0] < 1:
    raise PhasebookError(f"sft_steps={sft_steps}, grpo_start={grpo_start}: sft_steps must be increasing "
                         "positive step counts that include grpo_start.")
if not torch.cuda.is_available():
    # Matrices this small gain little from intra-op threads; on a shared CPU two threads contend.
    torch.set_num_threads(1)

store = Store()
base = PRESETS["base"].replace(train={"progress": False})
pretrained = pretrain(base, store)
tokenizer, corpus = pretrained.tokenizer, base.corpus


def sft_config(steps: int) -> SFTConfig:
    """The GRPO chapter's SFT recipe run for `steps` steps (warm-up: a quarter of them, at most 10)."""
    return SFTConfig(data=SFTData(math=256, present_people=0), steps=steps,
                     warmup=min(10, max(1, steps // 4)), seed=seed)


sft_runs = {s: sft(base, sft_config(s), store) for s in sft_steps}
# The GRPO chapter's run, with its settings, so the stored result is reused.
grpo_cfg = GRPOConfig(steps=50, prompts=16, group=8, lr=5e-5, beta=0.04, aggregation="constant",
                      max_new_tokens=40, min_ops=2, max_ops=3, eval_every=10, eval_items=48, eval_samples=8,
                      seed=seed)
rl = grpo(base, sft_config(grpo_start), grpo_cfg, store)

# %% [markdown] tags=["en"]
# ## Counting the compute
#
# Training compute is counted the usual way: every weight costs 6 floating-point operations per
# token trained on (2 forward, 4 backward) and 2 per token only read. Pre-training the base model
# took {glue:text}`pre_flops` FLOPs ({glue:text}`pre_tokens` tokens). One SFT step trains on
# {glue:text}`sft_rows` packed rows of {glue:text}`sft_len` tokens, {glue:text}`sft_step_flops`
# FLOPs. One GRPO step samples {glue:text}`grpo_rows` answers, reads each answer of up to
# {glue:text}`grpo_width` tokens once with the policy and once with the frozen reference, and trains
# on it: about {glue:text}`grpo_step_flops` FLOPs, so a GRPO step costs
# {glue:text}`grpo_per_sft` SFT steps. The *post-training share* is post-training compute over all
# training compute, pre-training included.
#
# Two scores follow each model: **in distribution**, greedy answers to {glue:text}`n_eval` held-out
# problems of one or two operations, the kind SFT shows; and **harder problems**, pass@1 on the GRPO
# chapter's {glue:text}`n_hard` held-out problems of {glue:text}`hard_min` to {glue:text}`hard_max`
# operations ({glue:text}`hard_samples` samples each at temperature 1), the task GRPO trains on.

# %% [markdown] tags=["zh"]
# ## 怎样计算算力
#
# 训练算力按惯例计算：每个权重，每训练一个词元花 6 次浮点运算（前向 2 次，反向 4 次），只读一遍的词元
# 花 2 次。预训练基座模型用了 {glue:text}`pre_flops` 次浮点运算（{glue:text}`pre_tokens` 个词元）。
# SFT 每一步在 {glue:text}`sft_rows` 行、每行 {glue:text}`sft_len` 个词元的打包数据上训练，花
# {glue:text}`sft_step_flops` 次。GRPO 每一步采样 {glue:text}`grpo_rows` 个回答，每个回答最长
# {glue:text}`grpo_width` 个词元，先由策略模型和冻结的参考模型各读一遍，再拿来训练：大约
# {glue:text}`grpo_step_flops` 次，所以一步 GRPO 相当于 {glue:text}`grpo_per_sft` 步 SFT。
# *后训练占比*指后训练算力占全部训练算力（含预训练）的比例。
#
# 每个模型有两项成绩：**分布内**，对 {glue:text}`n_eval` 道留出的一到两步运算题贪心作答，也就是 SFT
# 教的那类题；**更难的题**，在 GRPO 一章那 {glue:text}`n_hard` 道 {glue:text}`hard_min` 到
# {glue:text}`hard_max` 步运算的留出题上的 pass@1（每题在温度 1 下采样 {glue:text}`hard_samples` 次），
# 这正是 GRPO 训练的任务。

# %%
cfg_m = base.model
pre_tokens = base.train.steps * base.train.batch_size * base.train.seq_len
pre_flops = pre_tokens * cfg_m.flops_per_token(base.train.seq_len)
probe = sft_config(1)
sft_step_flops = probe.batch_size * probe.seq_len * cfg_m.flops_per_token(probe.seq_len)
hard_train = math_items(corpus, "train", grpo_cfg.train_items, arithmetic=grpo_cfg.arithmetic)
width = rollout_width(tokenizer, hard_train, grpo_cfg.max_new_tokens)
rows = grpo_cfg.prompts * grpo_cfg.group
# Per row token: 6 (train) + 2 (read by the policy for the old log-probabilities) + 2 (reference)
# + about 2 (generating it with the KV cache): twice a training step's cost.
grpo_step_flops = 2 * rows * width * cfg_m.flops_per_token(width)


def share(post_flops: float) -> float:
    return post_flops / (pre_flops + post_flops)


hard_items = math_items(corpus, "test", grpo_cfg.eval_items, arithmetic=grpo_cfg.arithmetic)
id_items = math_items(corpus, "test", n_eval)


def scores(model) -> dict:
    greedy = sample(model, tokenizer, id_items, 1, temperature=0.0, seed=seed)
    return {"id": greedy.correct[:, 0].tolist(),
            "hard": heldout_pass1(model, tokenizer, hard_items, grpo_cfg)}


def evaluated(name: str, model) -> dict:
    key = {"model": name, "n_eval": n_eval, "hard": grpo_cfg.eval_items, "samples": grpo_cfg.eval_samples,
           "seed": seed}
    return store.memo("post-scaling-eval", key, lambda: scores(model))


points = {"base": {"flops": 0.0, **evaluated(pretrained.path.name, pretrained.model)}}
for s, run in sft_runs.items():
    points[f"sft-{s}"] = {"flops": s * sft_step_flops, **evaluated(run.path.name, run.model)}
start_flops = grpo_start * sft_step_flops
points["grpo"] = {"flops": start_flops + grpo_cfg.steps * grpo_step_flops,
                  **evaluated(rl.path.name, rl.model)}
held = {int(k): v for k, v in rl.summary["heldout_pass1"].items()}
grpo_curve = [(share(start_flops + k * grpo_step_flops), v) for k, v in sorted(held.items())]
for p in points.values():
    p["share"] = share(p["flops"])
    p["id_acc"] = Accuracy.from_verdicts(p["id"])

# %% [markdown] tags=["en"]
# ## What each share buys

# %% [markdown] tags=["zh"]
# ## 每一份算力买到了什么

# %%
sft_keys = [f"sft-{s}" for s in sft_steps]
fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 3.6), sharex=True)
for ax, metric in ((left, "id"), (right, "hard")):
    xs = [points[k]["share"] * 100 for k in sft_keys]
    if metric == "id":
        ys = [points[k]["id_acc"].rate * 100 for k in sft_keys]
        err = np.array([[points[k]["id_acc"].rate - points[k]["id_acc"].low for k in sft_keys],
                        [points[k]["id_acc"].high - points[k]["id_acc"].rate for k in sft_keys]]) * 100
        ax.errorbar(xs, ys, yerr=err, marker="o", ms=4, capsize=2, color="#1f77b4",
                    label=_("SFT, more steps"))
        g = points["grpo"]["id_acc"]
        ax.errorbar([points["grpo"]["share"] * 100], [g.rate * 100],
                    yerr=[[(g.rate - g.low) * 100], [(g.high - g.rate) * 100]], marker="s", ms=5, capsize=2,
                    color="#d62728", label=_("then GRPO"))
        ax.set_ylabel(_("Exact answers, greedy (%)"))
        ax.set_title(_("In distribution ({low}–{high} operations)").format(
            low=corpus.arithmetic.min_ops, high=corpus.arithmetic.max_ops), fontsize=9)
    else:
        ax.plot(xs, [points[k]["hard"] * 100 for k in sft_keys], "o-", ms=4, color="#1f77b4",
                label=_("SFT, more steps"))
        ax.plot([c[0] * 100 for c in grpo_curve], [c[1] * 100 for c in grpo_curve], "s-", ms=4,
                color="#d62728",
                label=_("then GRPO, every {n} steps").format(n=grpo_cfg.eval_every))
        ax.set_ylabel(_("pass@1 (%)"))
        ax.set_title(_("Harder problems ({low}–{high} operations)").format(
            low=grpo_cfg.min_ops, high=grpo_cfg.max_ops), fontsize=9)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.set_xlabel(_("Post-training share of training compute (%)"))
    ax.set_ylim(0, 100)
    ax.legend(frameon=False, fontsize=8, loc="upper left")
fig.tight_layout()
pb.figure(fig, "post-training-share",
          title=N_("Accuracy against the share of training compute spent on post-training"),
          caption=N_("One base model, post-trained with more and more compute: SFT runs of increasing "
                     "length (blue), then GRPO from one of them (red). The x-axis is post-training compute "
                     "as a share of all training compute, pre-training included (log scale). Left: greedy "
                     "accuracy on held-out problems of the trained kind, with 95% Wilson intervals. Right: "
                     "pass@1 on harder held-out problems (temperature 1)."),
          data={"model": list(points), "share": [p["share"] for p in points.values()],
                "flops": [p["flops"] for p in points.values()],
                "id_accuracy": [p["id_acc"].rate for p in points.values()],
                "hard_pass1": [p["hard"] for p in points.values()],
                "grpo_share": [c[0] for c in grpo_curve], "grpo_pass1": [c[1] for c in grpo_curve]})

# %%
pb.glue("pre_flops", pre_flops, count=True)
pb.glue("pre_tokens", pre_tokens, count=True)
pb.glue("sft_rows", probe.batch_size)
pb.glue("sft_len", probe.seq_len)
pb.glue("sft_step_flops", sft_step_flops, count=True)
pb.glue("grpo_rows", rows)
pb.glue("grpo_width", width)
pb.glue("grpo_step_flops", grpo_step_flops, count=True)
pb.glue("grpo_per_sft", grpo_step_flops / sft_step_flops, digits=2)
pb.glue("n_eval", n_eval)
pb.glue("n_hard", grpo_cfg.eval_items)
pb.glue("hard_min", grpo_cfg.min_ops)
pb.glue("hard_max", grpo_cfg.max_ops)
pb.glue("hard_samples", grpo_cfg.eval_samples)
pb.glue("grpo_steps", grpo_cfg.steps)
pb.glue("grpo_start", grpo_start)
pb.glue("base_id", points["base"]["id_acc"].rate, percent=True, digits=1)
pb.glue("share_grpo", points["grpo"]["share"], percent=True, digits=2)
pb.glue("hard_grpo", points["grpo"]["hard"], percent=True, digits=1)
pb.glue("first_steps", sft_steps[0])
pb.glue("share_first", points[sft_keys[0]]["share"], percent=True, digits=2)
pb.glue("id_first", points[sft_keys[0]]["id_acc"].rate, percent=True, digits=1)
pb.glue("hard_start", points[f"sft-{grpo_start}"]["hard"], percent=True, digits=1)
pb.glue("last_steps", sft_steps[-1])
best_sft = max(sft_keys, key=lambda k: points[k]["id_acc"].rate)
pb.glue("best_sft_steps", int(best_sft.split("-")[1]))
pb.glue("best_sft_id", points[best_sft]["id_acc"].rate, percent=True, digits=1)
# The smallest SFT share within the best SFT point's interval: where spending more stopped paying.
enough = next(k for k in sft_keys if points[k]["id_acc"].high >= points[best_sft]["id_acc"].low)
pb.glue("enough_steps", int(enough.split("-")[1]))
pb.glue("enough_share", points[enough]["share"], percent=True, digits=2)
pb.glue("enough_id", points[enough]["id_acc"].rate, percent=True, digits=1)
hard_sft_best = max(points[k]["hard"] for k in sft_keys)
pb.glue("hard_sft_best", hard_sft_best, percent=True, digits=1)
hard_gain = (points["grpo"]["hard"] - points[f"sft-{grpo_start}"]["hard"]) * 100
pb.glue("hard_gain", hard_gain, digits=2)
pb.glue("grpo_id_change", (points["grpo"]["id_acc"].rate - points[f"sft-{grpo_start}"]["id_acc"].rate) * 100,
        digits=2)
# Two standard errors of a pass@1 estimated from n_hard × samples answers (treated as independent,
# which flatters it: answers to one problem are correlated).
n_hard = grpo_cfg.eval_items * grpo_cfg.eval_samples
noise = 2 * np.sqrt(0.25 / n_hard) * 100
pb.glue("noise", noise, digits=2)
id_saturates = enough != sft_keys[-1]
hard_best = max(points, key=lambda k: points[k]["hard"])
hard_rises = (points[hard_best]["share"] > points[enough]["share"]
              and (points[hard_best]["hard"] - points[enough]["hard"]) * 100 > noise)
pb.glue("hard_enough", points[enough]["hard"], percent=True, digits=1)
pb.glue("hard_best", points[hard_best]["hard"], percent=True, digits=1)
pb.glue("hard_best_share", points[hard_best]["share"], percent=True, digits=2)
enough_share = format_percent(points[enough]["share"], 2)
if id_saturates and hard_rises:
    share_verdict = _("supported, with a distinction: on the kind of problem SFT teaches, accuracy stops "
                      "rising at a share of {share}, while on harder problems a larger share keeps "
                      "paying").format(share=enough_share)
elif id_saturates:
    share_verdict = _("only half supported: a tiny share ({share}) buys the format and the trained kind of "
                      "problem, and no larger share buys a clear gain on the harder problems at this "
                      "scale").format(share=enough_share)
elif hard_rises:
    share_verdict = _("supported: accuracy kept rising with the post-training share, on both kinds of "
                      "problem")
else:
    share_verdict = _("supported on the trained kind of problem only: accuracy rose up to the longest SFT "
                      "run, and no larger share bought a clear gain on the harder problems")
pb.glue("share_verdict", share_verdict)
last = sft_keys[-1]
pb.glue("last_share", points[last]["share"], percent=True, digits=2)
pb.glue("hard_last", points[last]["hard"], percent=True, digits=1)
more = sft_steps[-1] - grpo_start
sft_vs_grpo = (points[last]["hard"] - points["grpo"]["hard"]) * 100
if points[last]["share"] < points["grpo"]["share"] and sft_vs_grpo > -noise:
    rl_vs_sft = _("Which post-training spends the compute matters as much as how much: {more} more SFT "
                  "steps ({last_share} of the compute in all) did at least as well on the harder problems "
                  "({hard_last}) as {grpo} GRPO steps ({grpo_share}, {hard_grpo}). GRPO learns only from "
                  "groups whose answers differ, and pays for sampling them; at this scale, more worked "
                  "solutions are the cheaper teacher.").format(
        more=more, last_share=format_percent(points[last]["share"], 2),
        hard_last=format_percent(points[last]["hard"]), grpo=grpo_cfg.steps,
        grpo_share=format_percent(points["grpo"]["share"], 2),
        hard_grpo=format_percent(points["grpo"]["hard"]))
elif -sft_vs_grpo > noise:
    rl_vs_sft = _("GRPO's larger share bought what more SFT did not: on the harder problems it ends clearly "
                  "above the longest SFT run ({hard_grpo} against {hard_last}).").format(
        hard_grpo=format_percent(points["grpo"]["hard"]), hard_last=format_percent(points[last]["hard"]))
else:
    rl_vs_sft = _("On the harder problems GRPO and the longest SFT run end within noise of each other, at "
                  "different costs.")
pb.glue("rl_vs_sft", rl_vs_sft)

# %% [markdown] tags=["en"]
# The base model, asked in the chat template it never saw, answers {glue:text}`base_id` of the
# in-distribution problems. {glue:text}`first_steps` SFT steps, {glue:text}`share_first` of the
# training compute, lift that to {glue:text}`id_first`; the best SFT run
# ({glue:text}`best_sft_steps` steps) reaches {glue:text}`best_sft_id`, and already
# {glue:text}`enough_steps` steps ({glue:text}`enough_share` of the compute,
# {glue:text}`enough_id`) are within its confidence interval. On the harder problems SFT reaches at
# best {glue:text}`hard_sft_best` pass@1.
#
# GRPO spends far more: its {glue:text}`grpo_steps` steps take the post-training share to
# {glue:text}`share_grpo`. On the harder problems it changes pass@1 by {glue:text}`hard_gain` points
# from its starting model ({glue:text}`hard_start` → {glue:text}`hard_grpo`; the noise of this
# estimate is about ±{glue:text}`noise` points); on the in-distribution problems by
# {glue:text}`grpo_id_change` points. The best pass@1 on the harder problems, {glue:text}`hard_best`,
# comes at a share of {glue:text}`hard_best_share`.
#
# The claim that the share of compute spent on post-training matters is here
# **{glue:text}`share_verdict`**. {glue:text}`rl_vs_sft`
#
# The toy scale exaggerates one thing. This base model has seen each kind of problem thousands of
# times in pre-training, so on those problems SFT only has to teach the chat format, and a format is
# learnt in a few dozen steps. What a large post-training budget such as V3.2's buys at scale, better
# reasoning on problems harder than the fine-tuning data, is what the right-hand panel measures here.

# %% [markdown] tags=["zh"]
# 基座模型没见过聊天模板，用聊天模板提问时，分布内的题只答对 {glue:text}`base_id`。SFT 训练
# {glue:text}`first_steps` 步，只占训练算力的 {glue:text}`share_first`，就把它提高到
# {glue:text}`id_first`；最好的一次 SFT（{glue:text}`best_sft_steps` 步）达到 {glue:text}`best_sft_id`，
# 而训练 {glue:text}`enough_steps` 步（占 {glue:text}`enough_share`，答对 {glue:text}`enough_id`）就已经
# 落在它的置信区间之内。在更难的题上，SFT 的 pass@1 最高只有 {glue:text}`hard_sft_best`。
#
# GRPO 花的算力要多得多：{glue:text}`grpo_steps` 步就把后训练占比推到 {glue:text}`share_grpo`。
# 在更难的题上，它让 pass@1 比起点模型变化了 {glue:text}`hard_gain` 个百分点（{glue:text}`hard_start`
# → {glue:text}`hard_grpo`；这一估计的噪声约为 ±{glue:text}`noise` 个百分点）；在分布内的题上变化了
# {glue:text}`grpo_id_change` 个百分点。更难的题上最好的 pass@1 是 {glue:text}`hard_best`，出现在占比
# {glue:text}`hard_best_share` 处。
#
# “投入后训练的算力占比举足轻重”这一说法，在这里的结论是：**{glue:text}`share_verdict`**。
# {glue:text}`rl_vs_sft`
#
# 小尺度把一件事放大了：这个基座模型在预训练中把每类题都见过成千上万遍，对这些题，SFT 要做的只是教它
# 聊天格式，而格式几十步就能学会。像 V3.2 那样庞大的后训练预算，在大尺度上买到的是在比微调数据更难的题上
# 推理得更好，这正是这里右边那张图所测量的。
