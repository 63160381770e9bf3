# %% [markdown] tags=["en"]
# # GRPO: reinforcement learning from verifiable rewards
#
# Reinforcement learning with a verifiable reward (RLVR) trains a model on its own samples: it
# answers a problem several times, a program checks each answer, and the answers that scored
# above their group's average are made more likely, the others less. DeepSeekMath introduced
# the recipe used here, Group Relative Policy Optimisation (GRPO), and DeepSeek-R1 made it the
# centre of reasoning-model training. It reliably raises pass@1, the chance that one sample is
# right. This chapter asks what that gain is made of:
#
# **Does RL elicit, or does it create?** Yue et al. (2025, "Does reinforcement learning really
# incentivize reasoning capacity in LLMs beyond the base model?") sampled many answers per
# problem before and after RLVR and found that the RL-trained model wins at small k, but the
# base model catches up and overtakes it as k grows: every problem the RL model solves, the base
# model already solved in some of its samples. RL *selects* what the base model could already
# produce and makes it likely; it does not *create* solutions beyond the base model's reach. If
# that holds here, the pass@k curves before and after GRPO should meet, or cross, at large k.
#
# The model is the book's small pre-trained model, fine-tuned on word problems in the chat
# template (the *sft* chapter's recipe), and every expensive step is a stored library call: the
# Chinese page reuses what the English one trained.

# %% [markdown] tags=["zh"]
# # GRPO：基于可验证奖励的强化学习
#
# 基于可验证奖励的强化学习（RLVR）让模型从自己的样本中学习：同一道题让它回答好几次，由程序逐一
# 检查，得分高于本组平均的回答被调高概率，其余的被压低。这里用的方法是 DeepSeekMath 提出的组相对
# 策略优化（GRPO），DeepSeek-R1 又把它放到了推理模型训练的核心位置。它总能提高 pass@1，也就是
# 采样一次就答对的概率。本章追问的是：这份提升究竟从何而来？
#
# **RL 是“激发”能力，还是“创造”能力？** Yue 等人（2025，《Does reinforcement learning really
# incentivize reasoning capacity in LLMs beyond the base model?》）在 RLVR 前后对每道题都采样
# 大量回答，发现 k 较小时 RL 训练过的模型占优，但随着 k 增大，基座模型逐渐追平、甚至反超：RL
# 模型能解的题，基座模型在某些样本里早就解出来过。也就是说，RL 是从基座模型本来就能写出的答案里
# *挑选*，并让它们更容易出现，而不是*创造*出基座模型够不着的解法。如果这一点在这里也成立，GRPO
# 前后的 pass@k 曲线在 k 很大时应当重合，甚至交叉。
#
# 模型是本书那个预训练好的小模型，先用聊天模板在应用题上做过微调（沿用 *sft* 一章的做法）；每一步
# 耗时的计算都是本库里带存储的函数调用，所以中文页面直接复用英文页面训练好的结果。

# %% tags=["parameters"]
sft_steps: int = 60  # steps of the SFT run GRPO starts from (math word problems only)
min_ops: int = 2  # the RL task: word problems with min_ops to max_ops operations
max_ops: int = 3  # (the SFT data has one or two, so three steps are new to the model)
steps: int = 50  # GRPO optimizer steps (one rollout batch each)
prompts: int = 16  # prompts per rollout batch
group: int = 8  # samples per prompt (the group whose mean is the baseline)
lr: float = 5e-5  # AdamW learning rate of the policy
beta: float = 0.04  # weight of the k3 KL penalty towards the SFT model (0: no reference model)
aggregation: str = "constant"  # "sequence" (GRPO), "token" (DAPO) or "constant" (Dr. GRPO)
max_new_tokens: int = 40  # generation limit of every sample
eval_every: int = 10  # GRPO steps between held-out pass@1 measurements
n_test: int = 48  # held-out test problems for pass@k
n_samples: int = 64  # samples per test problem for pass@k (k goes up to this)
seed: int = 0  # seed of the rollouts and of the pass@k samples

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

import phasebook.book as pb
from phasebook.bench import rollout as rollout_bench
from phasebook.errors import PhasebookError
from phasebook.evaluate.passk import mean_pass_at_k
from phasebook.i18n import N_, _, format_number
from phasebook.post.grpo import GRPOConfig, grpo
from phasebook.post.sampling import sample
from phasebook.post.sft import SFTConfig, SFTData, sft
from phasebook.post.tasks import math_items
from phasebook.store import Store
from phasebook.train.pretraining import PRESETS

ctx = pb.setup()
if n_samples < 64:
    raise PhasebookError(f"n_samples={n_samples}: the question is about large k; sample at least 64 per "
                         "problem.")
if not torch.cuda.is_available():
    # Matrices this small gain little from intra-op threads; on a shared CPU two threads contend.
    torch.set_num_threads(1)

store = Store()
base = PRESETS["base"].replace(train={"progress": False})
sft_cfg = SFTConfig(data=SFTData(math=256, present_people=0), steps=sft_steps, seed=seed)
start = sft(base, sft_cfg, store)
cfg = GRPOConfig(steps=steps, prompts=prompts, group=group, lr=lr, beta=beta, aggregation=aggregation,
                 max_new_tokens=max_new_tokens, min_ops=min_ops, max_ops=max_ops, eval_every=eval_every,
                 eval_items=n_test, eval_samples=8, seed=seed)
run = grpo(base, sft_cfg, cfg, store)
tokenizer = start.tokenizer

# %% [markdown] tags=["en"]
# ## The task and the training run
#
# SFT showed the model {glue:text}`n_sft` word problems of one or two steps, each answered with
# one equation per step and "The answer is N.". The RL task is harder: problems of
# {glue:text}`min_ops` to {glue:text}`max_ops` steps, which the fine-tuned model solves only
# sometimes. The reward is a program: 1 when the number after "The answer is" is right, plus
# {glue:text}`format_weight` when the whole answer has the expected form and ends its turn.
#
# Each GRPO step draws {glue:text}`prompts` problems of the training split and samples
# {glue:text}`group` answers to each with the KV cache. An answer's advantage is its reward minus
# its group's mean, divided by the group's standard deviation; a group whose answers all score
# the same has advantage 0 and teaches nothing. The loss builds on DeepSeekMath's: the clipped
# importance-weighted surrogate per token (ε from {glue:text}`eps_low` below to
# {glue:text}`eps_high` above, DAPO's "clip-higher"), {glue:text}`aggregation_text`, plus
# {glue:text}`beta` times the k3 estimate of the KL divergence from the SFT model, which is
# kept frozen as the reference. With one update per batch of samples the importance ratio is
# exactly 1 at every update, so the clip never acts (it matters when a batch is reused for
# several updates); the gradient is still the policy gradient, because the ratio's own gradient
# is not zero.

# %% [markdown] tags=["zh"]
# ## 任务与训练过程
#
# SFT 给模型看了 {glue:text}`n_sft` 道一到两步的应用题，每步写一个算式，最后一句是“答案是N。”。
# 强化学习的任务更难：{glue:text}`min_ops` 到 {glue:text}`max_ops` 步的应用题，微调后的模型只是
# 时对时错。奖励由程序给出：“答案是”后面的数对了得 1 分；整段回答格式合规并以结束符收尾，再加
# {glue:text}`format_weight` 分。
#
# GRPO 每一步从训练集抽 {glue:text}`prompts` 道题，借助 KV 缓存给每道题采样 {glue:text}`group`
# 个回答。一个回答的优势值等于它的奖励减去本组平均，再除以本组的标准差；如果一组回答得分全都一样，
# 优势值就是 0，这组什么也教不了。损失函数以 DeepSeekMath 的为基础：逐词元计算经过裁剪的重要性加权代理
# 目标（下界 ε 为 {glue:text}`eps_low`，上界为 {glue:text}`eps_high`，即 DAPO 的“放宽上界”），
# {glue:text}`aggregation_text`；另加 {glue:text}`beta` 倍的 KL 散度 k3 估计，约束模型不要
# 偏离 SFT 模型太远——SFT 模型冻结后充当参考模型。每批样本只更新一次时，重要性比值在每次更新时都
# 恰好是 1，裁剪根本不起作用（同一批样本反复用来更新多次时它才要紧）；但梯度仍然就是策略梯度，
# 因为比值本身的梯度并不为零。

# %%
metrics = run.metrics
step = np.array([m["step"] for m in metrics])
reward = np.array([m["reward"] for m in metrics])
train_acc = np.array([m["accuracy"] for m in metrics])
kl = np.array([m.get("kl", 0.0) for m in metrics])
length = np.array([m["response_length"] for m in metrics])
entropy = np.array([m["entropy"] for m in metrics])
held = {int(k): v for k, v in run.summary["heldout_pass1"].items()}
held_steps, held_pass1 = np.array(sorted(held)), np.array([held[k] for k in sorted(held)])


def smooth(values: np.ndarray, width: int = 5) -> np.ndarray:
    """Trailing mean over `width` steps (the rewards of one batch of 16 problems are noisy)."""
    out = np.cumsum(values, dtype=float)
    out[width:] = out[width:] - out[:-width]
    return out / np.minimum(np.arange(1, len(values) + 1), width)


fig, (ax, side) = plt.subplots(1, 2, figsize=(9.0, 3.6))
ax.plot(step, reward, color="#1f77b4", alpha=0.3, lw=1)
ax.plot(step, smooth(reward), color="#1f77b4", lw=1.5, label=_("reward of the rollouts (5-step mean)"))
ax.plot(held_steps, held_pass1, "o-", color="#d62728", ms=4, lw=1.5, label=_("pass@1 on held-out problems"))
ax.set_xlabel(_("GRPO step"))
ax.set_ylabel(_("Reward / pass@1"))
ax.set_ylim(0, 1)
ax.legend(frameon=False, fontsize=8, loc="upper left")
side.plot(step, kl, color="#2ca02c", lw=1.2, label=_("KL to the SFT model (k3, per token)"))
side.plot(step, entropy, color="#9467bd", lw=1.2, label=_("entropy (nats per token)"))
side.set_xlabel(_("GRPO step"))
side.set_ylabel(_("Nats per token"))
len_ax = side.twinx()
len_ax.plot(step, length, color="#7f7f7f", lw=1, ls="--", label=_("response length (right axis)"))
len_ax.set_ylabel(_("Tokens"))
len_ax.set_ylim(0, max_new_tokens)
len_ax.spines["right"].set_visible(True)
handles, labels = side.get_legend_handles_labels()
more = len_ax.get_legend_handles_labels()
side.legend(handles + more[0], labels + more[1], frameon=False, fontsize=8, loc="upper right")
fig.tight_layout()
pb.figure(fig, "grpo-training",
          title=N_("Reward and held-out pass@1 during GRPO, with KL, entropy and response length"),
          caption=N_("Left: mean reward of each step's rollouts (faint: per step; solid: mean of the last "
                     "five steps) and pass@1 on held-out test problems (several samples each at temperature "
                     "1). "
                     "Right: the k3 estimate of the KL divergence from the SFT model, the policy's "
                     "entropy on its own samples, and the mean response length (dashed, right axis)."),
          data={"step": step, "reward": reward, "accuracy": train_acc, "kl": kl, "entropy": entropy,
                "response_length": length, "heldout_step": held_steps, "heldout_pass1": held_pass1})

# %%
pb.glue("n_sft", sft_cfg.data.math)
pb.glue("min_ops", min_ops)
pb.glue("max_ops", max_ops)
pb.glue("format_weight", cfg.format_weight)
pb.glue("prompts", prompts)
pb.glue("group", group)
pb.glue("eps_low", cfg.eps_low)
pb.glue("eps_high", cfg.eps_high)
pb.glue("beta", beta)
AGGREGATION_TEXT = {
    "sequence": N_("averaged over each answer's tokens and then over the answers (DeepSeekMath's GRPO)"),
    "token": N_("averaged over all the tokens of the batch (DAPO's token mean)"),
    "constant": N_("summed over each answer's tokens and divided by a constant, the number of answers times "
                   "the generation limit (Dr. GRPO), so that no answer's tokens weigh more for being few"),
}
pb.glue("aggregation_text", _(AGGREGATION_TEXT[aggregation]))
pb.glue("steps", steps)
pb.glue("grpo_s", run.summary["wall_s"], digits=2)
pb.glue("reward_first", float(reward[:5].mean()))
pb.glue("reward_last", float(reward[-5:].mean()))
pb.glue("held_first", held_pass1[0], percent=True)
pb.glue("held_last", held_pass1[-1], percent=True)
pb.glue("kl_last", float(kl[-5:].mean()))
pb.glue("len_first", float(length[:5].mean()), digits=2)
pb.glue("len_last", float(length[-5:].mean()), digits=2)
pb.glue("entropy_first", float(entropy[:5].mean()))
pb.glue("entropy_last", float(entropy[-5:].mean()))

# %% [markdown] tags=["en"]
# Over {glue:text}`steps` steps ({glue:text}`grpo_s` seconds), the mean reward of the rollouts
# goes from {glue:text}`reward_first` in the first five steps to {glue:text}`reward_last` in the
# last five, and pass@1 on held-out problems from {glue:text}`held_first` to
# {glue:text}`held_last`. The policy drifts from the SFT model by {glue:text}`kl_last` nats per
# token at the end; its entropy goes from {glue:text}`entropy_first` to
# {glue:text}`entropy_last` nats per token, and its answers from {glue:text}`len_first` to
# {glue:text}`len_last` tokens. The rewards of a batch of {glue:text}`prompts` problems are noisy,
# so the held-out curve is the one to read.

# %% [markdown] tags=["zh"]
# {glue:text}`steps` 步训练（用时 {glue:text}`grpo_s` 秒）中，采样回答的平均奖励从前五步的
# {glue:text}`reward_first` 变为最后五步的 {glue:text}`reward_last`，留出题上的 pass@1 则从
# {glue:text}`held_first` 变为 {glue:text}`held_last`。训练结束时，策略偏离 SFT 模型的程度为每个
# 词元 {glue:text}`kl_last` 奈特；它的熵从每词元 {glue:text}`entropy_first` 奈特变为
# {glue:text}`entropy_last` 奈特，回答长度从 {glue:text}`len_first` 个词元变为 {glue:text}`len_last`
# 个。一批只有 {glue:text}`prompts` 道题，奖励波动很大，所以应该看留出题上的那条曲线。

# %% [markdown] tags=["en"]
# ## pass@k before and after: selection or creation?
#
# Both models, the SFT model and the GRPO model, now answer {glue:text}`n_test` held-out test
# problems {glue:text}`n_samples` times each at temperature 1. From c correct answers out of n,
# pass@k = 1 − C(n − c, k) / C(n, k) estimates without bias the chance that at least one of k
# samples is right (Chen et al., 2021). At k = 1 it is the accuracy of one sample; at
# k = {glue:text}`n_samples` it is close to the share of problems the model can solve at all.

# %% [markdown] tags=["zh"]
# ## GRPO 前后的 pass@k：挑选，还是创造？
#
# 现在让 SFT 模型和 GRPO 模型分别回答 {glue:text}`n_test` 道留出的测试题，每题在温度 1 下采样
# {glue:text}`n_samples` 次。若 n 个回答中有 c 个正确，pass@k = 1 − C(n − c, k) / C(n, k) 就是
# “k 个样本中至少一个正确”这一概率的无偏估计（Chen 等，2021）。k = 1 时它就是单次采样的正确率；
# k = {glue:text}`n_samples` 时，它接近模型“有能力解出”的题目所占的比例。

# %%
test_items = math_items(base.corpus, "test", n_test, arithmetic=cfg.arithmetic)
ks = [k for k in (1, 2, 4, 8, 16, 32, 64, 128, 256) if k <= n_samples]


def correct_counts(model) -> dict:
    """Correct answers per test problem out of `n_samples` (temperature 1)."""
    s = sample(model, tokenizer, test_items, n_samples, temperature=1.0, max_new_tokens=max_new_tokens,
               seed=seed + 1)
    return {"correct": s.correct.sum(axis=1), "well_formed": float(s.well_formed.mean())}


counts = {name: store.memo("post-grpo-passk", {"model": path.name, "n_test": n_test, "n": n_samples,
                                               "max_new_tokens": max_new_tokens, "seed": seed,
                                               "min_ops": min_ops, "max_ops": max_ops},
                           lambda model=model: correct_counts(model))
          for name, model, path in (("before", start.model, start.path), ("after", run.model, run.path))}
curves = {}
for name, c in counts.items():
    verdicts = np.arange(n_samples)[None, :] < np.asarray(c["correct"])[:, None]  # c True of n per problem
    curves[name] = mean_pass_at_k(verdicts, ks)

fig, ax = plt.subplots(figsize=(6.5, 3.6))
ax.plot(ks, [curves["before"][k] * 100 for k in ks], "o-", color="#7f7f7f",
        label=_("SFT model (before GRPO)"))
ax.plot(ks, [curves["after"][k] * 100 for k in ks], "s-", color="#d62728", label=_("after GRPO"))
ax.set_xscale("log", base=2)
ax.set_xticks(ks, [str(k) for k in ks])
ax.set_xlabel(_("k (samples per problem)"))
ax.set_ylabel(_("pass@k (%)"))
ax.set_ylim(0, 100)
ax.legend(frameon=False, fontsize=8, loc="lower right")
fig.tight_layout()
pb.figure(fig, "grpo-pass-at-k",
          title=N_("pass@k on held-out problems before and after GRPO"),
          caption=N_("Unbiased pass@k from n samples per held-out test problem at temperature 1 (n is the "
                     "largest k), for the SFT model GRPO started from (grey) and the model after GRPO (red); "
                     "k on a logarithmic axis. Where the curves meet at large k, GRPO made likely what the "
                     "SFT model could already sample."),
          data={"k": ks, "before": [curves["before"][k] for k in ks],
                "after": [curves["after"][k] for k in ks],
                "correct_before": counts["before"]["correct"], "correct_after": counts["after"]["correct"]})

# %%
k_max = ks[-1]
c_before, c_after = np.asarray(counts["before"]["correct"]), np.asarray(counts["after"]["correct"])
gain_1 = curves["after"][1] - curves["before"][1]
gain_max = curves["after"][k_max] - curves["before"][k_max]
new_solved = int(((c_before == 0) & (c_after > 0)).sum())
lost = int(((c_before > 0) & (c_after == 0)).sum())
crossing = next((k for k in ks if curves["after"][k] <= curves["before"][k]), None)
# At large k only problems change sides: McNemar's z on the problems solved only after GRPO against
# those solved only before says whether the lead at k_max is more than a few lucky problems.
net_z = (new_solved - lost) / np.sqrt(new_solved + lost) if new_solved + lost else 0.0
for k in (1, 8, k_max):
    pb.glue(f"before_{k}", curves["before"][k], percent=True)
    pb.glue(f"after_{k}", curves["after"][k], percent=True)
pb.glue("k_max", k_max)
pb.glue("n_test", n_test)
pb.glue("n_samples", n_samples)
pb.glue("gain_1", gain_1 * 100, digits=2)
pb.glue("gain_max", gain_max * 100, digits=2)
pb.glue("solved_before", int((c_before > 0).sum()))
pb.glue("solved_after", int((c_after > 0).sum()))
pb.glue("new_solved", new_solved)
pb.glue("lost", lost)
pb.glue("passk_table", "; ".join(f"k={k}: {format_number(curves['before'][k] * 100, 3)} → "
                                 f"{format_number(curves['after'][k] * 100, 3)}" for k in ks))
if gain_1 < -0.02:
    passk_verdict = _("not testable at these settings: GRPO lowered pass@1 by {g1} points, so there is no "
                      "gain to take apart").format(g1=format_number(-gain_1 * 100, 2))
elif gain_1 <= 0.02:
    passk_verdict = _("not testable at these settings: GRPO did not change pass@1 by more than two points "
                      "({g1} points), so there is no gain to take apart").format(
        g1=format_number(gain_1 * 100, 2))
elif crossing is not None:
    passk_verdict = _("selection: GRPO raises pass@1 by {g1} points, but the curves meet or cross by "
                      "k = {k}, and at k = {kmax} the SFT model is {gmax} points ahead or level").format(
        g1=format_number(gain_1 * 100, 2), k=crossing, kmax=k_max, gmax=format_number(-gain_max * 100, 2))
elif gain_max < gain_1 / 2:
    passk_verdict = _("mostly selection: GRPO raises pass@1 by {g1} points, and the gap shrinks to {gmax} "
                      "points at k = {kmax}").format(g1=format_number(gain_1 * 100, 2),
                                                      gmax=format_number(gain_max * 100, 2), kmax=k_max)
elif net_z < 1.96:
    passk_verdict = _("undecided at this scale: GRPO raises pass@1 by {g1} points and is still {gmax} points "
                      "ahead at k = {kmax}, but that lead rests on {new} problems solved only after GRPO "
                      "against {lost} solved only before, too few to tell creation from chance").format(
        g1=format_number(gain_1 * 100, 2), gmax=format_number(gain_max * 100, 2), kmax=k_max, new=new_solved,
        lost=lost)
else:
    passk_verdict = _("evidence of creation at this scale: GRPO raises pass@1 by {g1} points and is still "
                      "{gmax} points ahead at k = {kmax}").format(g1=format_number(gain_1 * 100, 2),
                                                                   gmax=format_number(gain_max * 100, 2),
                                                                   kmax=k_max)
pb.glue("passk_verdict", passk_verdict)

# %% [markdown] tags=["en"]
# pass@k before → after GRPO, in per cent: {glue:text}`passk_table`. At k = 1 GRPO moves the
# held-out accuracy from {glue:text}`before_1` to {glue:text}`after_1` ({glue:text}`gain_1`
# points); at k = 8 from {glue:text}`before_8` to {glue:text}`after_8`; at
# k = {glue:text}`k_max` from {glue:text}`before_64` to {glue:text}`after_64`
# ({glue:text}`gain_max` points). The SFT model solved {glue:text}`solved_before` of the
# {glue:text}`n_test` problems in at least one of its {glue:text}`n_samples` samples, the GRPO
# model {glue:text}`solved_after`; {glue:text}`new_solved` problems are solved only after GRPO,
# and {glue:text}`lost` only before.
#
# The verdict on "RL elicits rather than creates" is **{glue:text}`passk_verdict`**.
#
# What this toy can and cannot say. The model has a quarter of a million parameters and the
# RL run a few dozen steps; Yue et al. measured models of billions of parameters after
# thousands of RL steps, with k up to 256 and more. What transfers is the method: the large-k
# end of the pass@k curve measures what a model can produce at all, the small-k end how reliably
# it does, and only the first would grow if RL created new abilities. On a few dozen problems a
# difference of a few points at k = {glue:text}`k_max` is one or two problems either way.

# %% [markdown] tags=["zh"]
# GRPO 前 → 后的 pass@k（百分数）：{glue:text}`passk_table`。k = 1 时，GRPO 把留出题的正确率从
# {glue:text}`before_1` 变为 {glue:text}`after_1`（{glue:text}`gain_1` 个百分点）；k = 8 时从
# {glue:text}`before_8` 变为 {glue:text}`after_8`；k = {glue:text}`k_max` 时从 {glue:text}`before_64`
# 变为 {glue:text}`after_64`（{glue:text}`gain_max` 个百分点）。{glue:text}`n_test` 道题中，SFT 模型
# 在 {glue:text}`n_samples` 个样本里至少答对一次的有 {glue:text}`solved_before` 道，GRPO 模型有
# {glue:text}`solved_after` 道；只有 GRPO 之后才解出的有 {glue:text}`new_solved` 道，只有之前才解出的
# 有 {glue:text}`lost` 道。
#
# 对“RL 激发而非创造能力”这一说法，这里的结论是：**{glue:text}`passk_verdict`**。
#
# 这个玩具实验能说明什么、不能说明什么：模型只有二十多万个参数，强化学习也只跑了几十步；Yue 等人
# 测的是数十亿参数的模型，RL 训练了成千上万步，k 取到 256 甚至更大。能迁移过来的是方法本身：pass@k
# 曲线在 k 很大的一端衡量模型究竟能不能写出正确答案，k 很小的一端衡量它写得有多稳；如果 RL 真能
# 创造新能力，变大的应该是前者。题目只有几十道，k = {glue:text}`k_max` 处相差几个百分点，不过是
# 一两道题的出入。

# %% [markdown] tags=["en"]
# ## Rollouts need the KV cache
#
# GRPO spends most of its compute sampling. Without a cache, every new token runs the model over
# the whole sequence so far; with the KV cache it runs over the new token only and reads the
# keys and values of the others. `phasebook bench rollout` times both paths of the model's
# `generate` on a random model of the base model's shape, {glue:text}`bench_rows` prompts ×
# {glue:text}`bench_tokens` new tokens, and checks that they sample the same tokens: here the
# cache gives {glue:text}`bench_cache` tokens per second against {glue:text}`bench_naive`, a
# speed-up of {glue:text}`bench_speedup` times (the goal: at least 5). The command for a
# GPU: `phasebook bench rollout --device cuda --out build/bench/rollout.json`.

# %% [markdown] tags=["zh"]
# ## 采样离不开 KV 缓存
#
# GRPO 的算力大多花在采样上。没有缓存时，每生成一个新词元，模型都要把到目前为止的整段序列重新算
# 一遍；有了 KV 缓存，只需算新词元本身，其余词元的键和值直接读取。`phasebook bench rollout` 在一个
# 与基座模型同样形状的随机模型上，给 `generate` 的两条路径计时（{glue:text}`bench_rows` 条提示 ×
# {glue:text}`bench_tokens` 个新词元），并核对两者采样出的词元完全相同。这里有缓存时每秒生成
# {glue:text}`bench_cache` 个词元，没有缓存时是 {glue:text}`bench_naive` 个，加速
# {glue:text}`bench_speedup` 倍（本任务的目标是至少 5 倍）。在 GPU 上运行的命令是
# `phasebook bench rollout --device cuda --out build/bench/rollout.json`。

# %%
bench = store.memo("post-grpo-bench", {"new_tokens": 256, "batch_size": 8, "repeat": 1, "seed": seed},
                   lambda: rollout_bench.run(new_tokens=256, batch_size=8, repeat=1, device="cpu", seed=seed))
if not bench["same_tokens"]:
    raise PhasebookError("the cached and the recomputing generate sampled different tokens.")
pb.glue("bench_rows", bench["batch_size"])
pb.glue("bench_tokens", bench["new_tokens"])
pb.glue("bench_cache", bench["kv_cache"]["tokens_per_s"], digits=2)
pb.glue("bench_naive", bench["recompute"]["tokens_per_s"], digits=2)
pb.glue("bench_speedup", bench["speedup"], digits=2)
