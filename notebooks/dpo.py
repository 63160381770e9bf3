# %% [markdown] tags=["en"]
# # DPO: learning from preferences, inside the data's support
#
# Direct preference optimisation {cite}`rafailov2023dpo` trains a model on pairs of responses
# to the same prompt, one preferred ("chosen") and one not ("rejected"). It needs no reward
# model and never samples during training: the loss compares how much more likely the policy
# makes each response than a frozen copy of the starting model (the *reference*) does, and
# pushes the chosen response's ratio above the rejected one's. The claim tested here comes from
# that last property: **offline preference optimisation works inside the support of its data,
# and has no way to explore beyond it.** A model can be taught to rank the responses it is
# shown; whether that makes it better at the task, on problems like those of its pairs and on
# harder ones, is what we measure.
#
# Everything starts from the book's base model after a short SFT on chat-formatted word
# problems. Its own samples, checked by the exact-answer verifier, give the pairs: a correct
# answer against a wrong one. A second kind of pair prefers the gold response to a malformed
# copy of it (the working without the answer sentence, or the answer followed by chatter).

# %% [markdown] tags=["zh"]
# # DPO：在数据覆盖的范围内学习偏好
#
# 直接偏好优化（DPO）{cite}`rafailov2023dpo` 用成对的回答来训练模型：针对同一个提示，一个回答
# 更受偏好（“选中”），另一个不受偏好（“拒绝”）。它不需要奖励模型，训练时也从不采样：损失函数
# 比较的是，相对于起点模型的一份冻结副本（即*参考模型*），策略模型让每个回答的概率提高了多少，
# 再把选中回答的这一比值推到拒绝回答之上。本章要检验的说法正源于这一点：**离线偏好优化只在其
# 数据覆盖的范围内有效，没有办法向外探索。** 模型可以学会给摆在它面前的回答排序；至于这能否让它
# 把题做得更好——无论是与训练对相似的题，还是更难的题——正是我们要测量的。
#
# 一切从本书的基座模型出发，先在聊天格式的应用题上做一次简短的 SFT。偏好对取自这个模型自己的
# 采样，由精确核对答案的验证器判定：一个答对的回答配一个答错的回答。另一类偏好对则拿标准回答
# 和它的一个格式残缺的版本作比较（有推算过程却没有给出答案的那句话，或者答完之后还在闲聊）。

# %% tags=["parameters"]
sft_steps: int = 60  # SFT steps that teach the base model the chat template (the DPO start)
sft_math: int = 256  # train-split word problems in the SFT data
items: int = 256  # train-split problems sampled for verifier pairs
samples: int = 4  # responses sampled per problem (temperature 1) to find a correct/wrong pair
format_items: int = 64  # of those problems, how many also give a format pair
heldout_items: int = 64  # test-split problems whose pairs are held out to score the ranking
steps: int = 40  # DPO optimizer steps per run
batch_size: int = 16  # pairs per DPO step
beta: float = 0.1  # DPO's β: the strength of the pull towards the reference
lr: float = 1e-4  # peak learning rate of DPO
nll_weight: float = 1.0  # weight of the chosen responses' NLL in the "DPO + NLL" run
runs: list[str] = ["sigmoid", "nll", "length", "ipo"]  # variants trained ("sigmoid", "nll" required)
n_eval: int = 128  # test problems scored per distribution (in support; outside it)
eval_samples: int = 4  # sampled responses per problem for sampled pass@1
seed: int = 0  # seed of the pairs, the pair order and the sampling

# %%
import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import torch

import phasebook.book as pb
from phasebook.data import ArithmeticConfig
from phasebook.errors import PhasebookError
from phasebook.i18n import N_, _
from phasebook.post.dpo import DPOConfig, PairsConfig, dpo, load_pairs
from phasebook.post.sampling import sample
from phasebook.post.sft import SFTConfig, SFTData, sft
from phasebook.post.tasks import math_items
from phasebook.store import Store
from phasebook.train.pretraining import PRESETS

ctx = pb.setup()
KNOWN = ("sigmoid", "nll", "length", "ipo")
if not {"sigmoid", "nll"} <= set(runs) <= set(KNOWN):
    raise PhasebookError(f"runs={runs}: include 'sigmoid' (plain DPO, the claim's subject) and 'nll' (the "
                         f"text compares them); allowed: {', '.join(KNOWN)}.")
if not torch.cuda.is_available():
    torch.set_num_threads(1)  # tiny matrices: intra-op threads only contend on a shared CPU

store = Store()
base = PRESETS["base"].replace(train={"progress": False})
sft_cfg = SFTConfig(data=SFTData(math=sft_math, present_people=0), steps=sft_steps, batch_size=16,
                    seed=seed)
start = sft(base, sft_cfg, store)
pairs_cfg = PairsConfig(items=items, samples=samples, format_items=format_items, heldout_items=heldout_items)
common = DPOConfig(beta=beta, steps=steps, batch_size=batch_size, lr=lr, pairs=pairs_cfg,
                   eval_interval=max(1, steps // 8), seed=seed)
variants = {"sigmoid": common, "nll": dataclasses.replace(common, nll_weight=nll_weight),
            "length": dataclasses.replace(common, length_normalised=True),
            "ipo": dataclasses.replace(common, variant="ipo")}
LABELS = {"sft": N_("SFT (start)"), "sigmoid": N_("DPO"), "nll": N_("DPO + NLL"),
          "length": N_("DPO, length-normalised"), "ipo": N_("IPO")}
trained = {name: dpo(base, sft_cfg, variants[name], store) for name in runs}
main = trained["sigmoid"]
counts = main.summary["pairs"]
pairs = load_pairs(main)

# %% [markdown] tags=["en"]
# ## The pairs
#
# Of the {glue:text}`items` training problems, {glue:text}`verifier_pairs` gave a pair: among
# {glue:text}`samples` samples there was a correct, well-formed answer and a wrong one. The
# others were all right or all wrong, and the verifier has nothing to prefer there. Another
# {glue:text}`format_pairs` pairs prefer a gold response to a malformed one. The held-out
# problems of the test split give {glue:text}`heldout_verifier` verifier pairs and
# {glue:text}`heldout_format` format pairs. A verifier pair looks like this:
#
# {glue:text}`example_pair`
#
# Every run below starts from the SFT model, which is also its frozen reference (a separate
# copy with its own weights), and trains for {glue:text}`steps` steps of {glue:text}`batch`
# pairs with β = {glue:text}`beta`. Besides plain DPO we train three variants. *DPO + NLL*
# adds the chosen responses' cross-entropy to the loss, as in iterative RPO (Pang et al. 2024)
# and Llama 3. *Length-normalised* DPO (Tülu 3) divides each log-ratio by the response's
# length. *IPO* (Azar et al. 2023) replaces the logistic loss with a squared one that stops
# pushing once the per-token margin reaches 1/(2β).

# %% [markdown] tags=["zh"]
# ## 偏好对
#
# 在 {glue:text}`items` 道训练题中，有 {glue:text}`verifier_pairs` 道凑成了偏好对：在
# {glue:text}`samples` 个采样里，既有格式规范的正确回答，也有错误回答。其余的题要么全对，要么全错，
# 验证器在这些题上无从偏好。另有 {glue:text}`format_pairs` 对拿标准回答与格式残缺的回答比较。
# 测试集中留出的题给出了 {glue:text}`heldout_verifier` 个验证器偏好对和
# {glue:text}`heldout_format` 个格式偏好对。一个验证器偏好对长这样：
#
# {glue:text}`example_pair`
#
# 下面每次训练都从 SFT 模型出发，它同时充当冻结的参考模型（一份单独的副本，权重独立），训练
# {glue:text}`steps` 步，每步 {glue:text}`batch` 个偏好对，β = {glue:text}`beta`。除了普通
# DPO，我们还训练了三个变体。*DPO + NLL* 在损失里加上选中回答的交叉熵，做法同迭代式 RPO
# （Pang 等，2024）和 Llama 3。*长度归一化* DPO（Tülu 3）把每个对数比值除以回答的长度。*IPO*
# （Azar 等，2023）把逻辑斯谛损失换成平方损失，逐词元的差距一旦达到 1/(2β) 就不再继续推高。

# %%
example = next(p for p in pairs["train"] if p["source"] == "verifier" and p["lang"] == ctx.lang)
pb.glue("items", items)
pb.glue("samples", samples)
pb.glue("verifier_pairs", counts["train_verifier"])
pb.glue("format_pairs", counts["train_format"])
pb.glue("heldout_verifier", counts["heldout_verifier"])
pb.glue("heldout_format", counts["heldout_format"])
pb.glue("steps", steps)
pb.glue("batch", batch_size)
pb.glue("beta", beta, digits=2)
pb.glue("example_pair", _("“{prompt}” — chosen: “{chosen}”; rejected: “{rejected}”").format(
    prompt=example["prompt"], chosen=example["chosen"], rejected=example["rejected"]))

# %% [markdown] tags=["en"]
# ## Margins and accuracy
#
# DPO's implicit reward of a response is β times its log-ratio, log π(y|x) − log π_ref(y|x).
# The *margin* is the chosen response's reward minus the rejected one's, and the *preference
# accuracy* the share of pairs whose chosen response has the higher reward. At the first step
# the policy is the reference: every margin is 0, and no pair is ranked yet.

# %% [markdown] tags=["zh"]
# ## 奖励差距与偏好准确率
#
# DPO 给一个回答的隐式奖励，是 β 乘以它的对数比值 log π(y|x) − log π_ref(y|x)。*奖励差距*
# 指选中回答的奖励减去拒绝回答的奖励，*偏好准确率*则是选中回答奖励更高的偏好对所占的比例。
# 第一步时策略模型就是参考模型：所有差距都是 0，还没有任何一对被排出先后。

# %%
COLORS = {"sigmoid": "#1f77b4", "nll": "#2ca02c", "length": "#ff7f0e", "ipo": "#9467bd", "sft": "#7f7f7f"}


def curve(records: list[dict], name: str) -> tuple[np.ndarray, np.ndarray]:
    return np.array([r["step"] for r in records]), np.array([r[name] for r in records])


fig, (ax_m, ax_a, ax_l) = plt.subplots(1, 3, figsize=(11.0, 3.4))
figure_data: dict[str, np.ndarray] = {}
for name, run in trained.items():
    for ax, metric in ((ax_m, "margin"), (ax_a, "accuracy"), (ax_l, "logp_chosen")):
        x, y = curve(run.summary["heldout"], metric)
        ax.plot(x, y, "o-", ms=3, lw=1.2, color=COLORS[name], label=_(LABELS[name]))
        figure_data[f"{name}_heldout_{metric}_step"], figure_data[f"{name}_heldout_{metric}"] = x, y
        if name == "sigmoid" and metric != "logp_chosen":
            tx, ty = curve(run.metrics, metric)
            ax.plot(tx, ty, lw=0.8, alpha=0.5, color=COLORS[name], ls="--", label=_("DPO, training batches"))
            figure_data[f"train_{metric}_step"], figure_data[f"train_{metric}"] = tx, ty
for ax, ylabel in ((ax_m, _("Implicit reward margin")), (ax_a, _("Preference accuracy")),
                   (ax_l, _("Log-prob per chosen token"))):
    ax.set_xlabel(_("DPO step"))
    ax.set_ylabel(ylabel)
ax_a.set_ylim(0, 1.02)
ax_m.legend(frameon=False, fontsize=7)
fig.tight_layout()
pb.figure(fig, "dpo-margins",
          title=N_("Implicit reward margin, preference accuracy and chosen likelihood over DPO training"),
          caption=N_("Held-out pairs (test-split problems) every few steps, for each variant; dashed: "
                     "plain DPO's training batches. The length-normalised and IPO rewards are per "
                     "token, hence their smaller margins. Right: the policy's mean log-probability per "
                     "token of the held-out chosen responses."),
          data=figure_data)

# %%
first, last = main.summary["heldout"][0], main.summary["heldout"][-1]
train_last = main.metrics[-1]
pb.glue("heldout_margin", last["margin"], digits=2)
pb.glue("heldout_accuracy", last["accuracy"], percent=True, digits=0)
pb.glue("train_margin", train_last["margin"], digits=2)
pb.glue("train_accuracy", train_last["accuracy"], percent=True, digits=0)
pb.glue("logp_before", first["logp_chosen"], digits=3)
pb.glue("logp_after", last["logp_chosen"], digits=3)
pb.glue("prob_ratio", float(np.exp(last["logp_chosen"] - first["logp_chosen"])), percent=True, digits=0)
pb.glue("logp_after_nll", trained["nll"].summary["heldout"][-1]["logp_chosen"], digits=3)
pb.glue("nll_accuracy", trained["nll"].summary["heldout"][-1]["accuracy"], percent=True, digits=0)
falls = last["logp_chosen"] < first["logp_chosen"] - 0.01
pb.glue("likelihood_verdict",
        _("falls: the policy ranks the pairs by pushing the rejected responses down faster than the "
          "chosen ones, which go down as well") if falls else
        _("does not fall: the policy ranks the pairs by pushing the rejected responses down"))

# %% [markdown] tags=["en"]
# On its last training batches plain DPO reaches a margin of {glue:text}`train_margin` and an
# accuracy of {glue:text}`train_accuracy`; on the held-out pairs, {glue:text}`heldout_margin`
# and {glue:text}`heldout_accuracy`. Ranking pairs like the ones it trained on is learnt in a
# few steps and carries over to new problems of the same kind. The likelihood of the chosen
# responses **{glue:text}`likelihood_verdict`**: from {glue:text}`logp_before` to
# {glue:text}`logp_after` nats per token, so a chosen token keeps {glue:text}`prob_ratio` of its
# probability on average. This is the failure mode reported for DPO on reasoning pairs: the loss
# only asks for a gap, and a gap can grow while both sides fall. With the NLL term the chosen
# responses stay at {glue:text}`logp_after_nll` nats per token, and the accuracy is
# {glue:text}`nll_accuracy`.

# %% [markdown] tags=["zh"]
# 普通 DPO 在最后几批训练数据上的奖励差距达到 {glue:text}`train_margin`，准确率
# {glue:text}`train_accuracy`；在留出的偏好对上分别是 {glue:text}`heldout_margin` 和
# {glue:text}`heldout_accuracy`。给训练时见过的那类偏好对排序，几步之内就能学会，而且能推广到同类的
# 新题上。选中回答的似然**{glue:text}`likelihood_verdict`**。具体来说，它从每词元 {glue:text}`logp_before`
# 奈特变为 {glue:text}`logp_after` 奈特，也就是说，选中回答里的词元平均只保住了原来概率的
# {glue:text}`prob_ratio`。这正是文献中 DPO 用在推理类偏好对上时出现的失效模式：损失只要求两者
# 之间拉开差距，而两边一起下降时差距照样可以变大。加上 NLL 项后，选中回答保持在每词元
# {glue:text}`logp_after_nll` 奈特，准确率为 {glue:text}`nll_accuracy`。

# %% [markdown] tags=["en"]
# ## Does ranking make the model better at the task?
#
# We score every model on {glue:text}`n_eval` test problems from the pairs' own distribution
# (one or two steps, numbers 1–9: *inside* the support) and {glue:text}`n_eval` problems with
# three steps, which neither SFT nor DPO ever showed (*outside* it). Pass@1 is measured greedily
# and from {glue:text}`eval_samples` samples per problem at temperature 1.

# %% [markdown] tags=["zh"]
# ## 学会排序，能让模型把题做得更好吗？
#
# 我们在 {glue:text}`n_eval` 道与偏好对同分布的测试题（一到两步运算，数字 1–9：在数据覆盖*之内*）
# 和 {glue:text}`n_eval` 道三步运算的题（SFT 和 DPO 都从未见过：在覆盖*之外*）上给每个模型打分。
# pass@1 分别用贪心解码和温度 1 下每题 {glue:text}`eval_samples` 个采样来测量。

# %%
problems = {"in": math_items(base.corpus, "test", n_eval),
            "out": math_items(base.corpus, "test", n_eval, arithmetic=ArithmeticConfig(min_ops=3, max_ops=3))}


def scores(run) -> dict:
    """Greedy and sampled pass@1 and the well-formed share of a model, in and outside the support."""
    def compute() -> dict:
        out = {}
        for where, its in problems.items():
            greedy = sample(run.model, run.tokenizer, its, 1, temperature=0.0, max_new_tokens=64)
            sampled = sample(run.model, run.tokenizer, its, eval_samples, temperature=1.0, max_new_tokens=64,
                             seed=seed + 7)
            out[f"{where}_greedy"] = greedy.accuracy
            out[f"{where}_sampled"] = sampled.accuracy
            out[f"{where}_formed"] = float(sampled.well_formed.mean())
        return out

    return store.memo("post-dpo-eval", {"model": run.key, "n_eval": n_eval, "samples": eval_samples,
                                        "seed": seed}, compute)


models = {"sft": start, **trained}
results = {name: scores(run) for name, run in models.items()}
pb.glue("n_eval", n_eval)
pb.glue("eval_samples", eval_samples)

# %%
columns = [("in_greedy", N_("in support, greedy")), ("in_sampled", N_("in support, sampled")),
           ("out_greedy", N_("outside, greedy")), ("out_sampled", N_("outside, sampled"))]
fig, ax = plt.subplots(figsize=(9.0, 3.4))
width = 0.8 / len(models)
for i, name in enumerate(models):
    values = [results[name][c] for c, _label in columns]
    ax.bar(np.arange(len(columns)) + (i - (len(models) - 1) / 2) * width, values, width,
           color=COLORS[name], label=_(LABELS[name]))
ax.set_xticks(np.arange(len(columns)), [_(label) for _c, label in columns])
ax.set_ylabel(_("Pass@1"))
ax.set_ylim(0, 1)
ax.legend(frameon=False, fontsize=7, ncol=len(models))
fig.tight_layout()
pb.figure(fig, "dpo-pass-at-1",
          title=N_("Pass@1 before and after DPO, inside and outside the pairs' support"),
          caption=N_("Share of correct answers on test problems with one or two steps (the distribution of "
                     "the pairs) and with three steps (never trained on), greedy and sampled at "
                     "temperature 1, for the SFT model DPO starts from and for each DPO variant."),
          data={"columns": [c for c, _label in columns], "models": list(models),
                "pass_at_1": np.array([[results[m][c] for c, _label in columns] for m in models])})

# %%
before, after = results["sft"], results["sigmoid"]
best = max(trained, key=lambda n: results[n]["in_greedy"])
for where in ("in", "out"):
    for how in ("greedy", "sampled"):
        pb.glue(f"sft_{where}_{how}", before[f"{where}_{how}"], percent=True, digits=0)
        pb.glue(f"dpo_{where}_{how}", after[f"{where}_{how}"], percent=True, digits=0)
        pb.glue(f"best_{where}_{how}", results[best][f"{where}_{how}"], percent=True, digits=0)
pb.glue("best_name", _(LABELS[best]))
pb.glue("sft_formed", before["in_formed"], percent=True, digits=0)
pb.glue("best_formed", results[best]["in_formed"], percent=True, digits=0)
noise = 2 * np.sqrt(0.25 / n_eval)  # about two standard errors of a share measured on n_eval problems


def change(a: float, b: float) -> str:
    if b > a + noise:
        return _("rises")
    if b < a - noise:
        return _("falls")
    return _("does not move beyond the noise")


pb.glue("noise", noise, percent=True, digits=0)
pb.glue("dpo_in_change", change(before["in_greedy"], after["in_greedy"]))
pb.glue("best_in_change", change(before["in_greedy"], results[best]["in_greedy"]))
pb.glue("best_out_change", change(before["out_greedy"], results[best]["out_greedy"]))
helped_in = any(results[n]["in_greedy"] > before["in_greedy"] + noise for n in trained)
helped_out = any(results[n]["out_greedy"] > before["out_greedy"] + noise for n in trained)
if helped_in and not helped_out:
    verdict = _("supported: DPO improves the problems its pairs come from and not the harder ones")
elif helped_in and helped_out:
    verdict = _("contradicted here: DPO also helps on problems outside its pairs' support")
elif helped_out:
    verdict = _("contradicted here: DPO helps only outside its pairs' support")
else:
    verdict = _("not shown at this scale: DPO learns to rank its pairs, but no variant turns that into "
                "more correct answers, inside the support or outside it")
pb.glue("verdict", verdict)
nll = results["nll"]["in_greedy"]
if nll > after["in_greedy"] + noise and nll > before["in_greedy"] + noise:
    nll_effect = _("removes the damage and adds correct answers beyond the SFT model's")
elif nll > after["in_greedy"] + noise and nll >= before["in_greedy"] - noise:
    nll_effect = _("removes the damage, but adds no correct answers beyond the SFT model's")
elif nll > after["in_greedy"] + noise:
    nll_effect = _("removes part of the damage")
else:
    nll_effect = _("does not change pass@1 beyond the noise")
pb.glue("nll_effect", nll_effect)
pb.glue("nll_in_greedy", nll, percent=True, digits=0)

# %% [markdown] tags=["en"]
# Greedy pass@1 inside the support is {glue:text}`sft_in_greedy` for the SFT model and
# {glue:text}`dpo_in_greedy` after plain DPO: it **{glue:text}`dpo_in_change`** (differences
# under about {glue:text}`noise` are within the noise of {glue:text}`n_eval` problems). Sampled
# pass@1 goes from {glue:text}`sft_in_sampled` to {glue:text}`dpo_in_sampled`. The best variant
# here, {glue:text}`best_name`, scores {glue:text}`best_in_greedy` greedy and
# {glue:text}`best_in_sampled` sampled: it {glue:text}`best_in_change`; its sampled responses are
# well-formed {glue:text}`best_formed` of the time, against {glue:text}`sft_formed` for the SFT
# model. Outside the support, on three-step problems, the SFT model scores
# {glue:text}`sft_out_greedy` greedy and {glue:text}`sft_out_sampled` sampled; plain DPO
# {glue:text}`dpo_out_greedy` and {glue:text}`dpo_out_sampled`, and {glue:text}`best_name`
# {glue:text}`best_out_greedy` and {glue:text}`best_out_sampled` (it
# {glue:text}`best_out_change`).
#
# Why plain DPO hurts: a wrong sample is usually right up to one slip, and every step after the
# slip is correct arithmetic on a wrong number ("15+9=24" after "9+7=15"). The sequence-level
# loss pushes all of the rejected response down, those correct steps included, so the model
# learns to avoid sums it used to get right. The NLL term keeps the chosen responses likely; with
# it greedy pass@1 is {glue:text}`nll_in_greedy`: it {glue:text}`nll_effect`.
#
# The claim that offline preference optimisation works inside its data's support and not
# beyond is **{glue:text}`verdict`**. The pairs hold no answer the SFT model could not already
# write: all DPO can do is move probability between responses it already samples, and outside
# the support even those are mostly wrong.

# %% [markdown] tags=["zh"]
# 在数据覆盖之内，SFT 模型的贪心 pass@1 是 {glue:text}`sft_in_greedy`，普通 DPO 之后是
# {glue:text}`dpo_in_greedy`：**{glue:text}`dpo_in_change`**（在 {glue:text}`n_eval` 道题上，
# 不到约 {glue:text}`noise` 的差别都在噪声范围内）。采样 pass@1 从 {glue:text}`sft_in_sampled`
# 变为 {glue:text}`dpo_in_sampled`。这里表现最好的变体是 {glue:text}`best_name`，贪心得分
# {glue:text}`best_in_greedy`，采样得分 {glue:text}`best_in_sampled`：{glue:text}`best_in_change`；
# 它采样出的回答有 {glue:text}`best_formed` 格式规范，SFT 模型则是 {glue:text}`sft_formed`。
# 在数据覆盖之外的三步题上，SFT 模型贪心得分 {glue:text}`sft_out_greedy`，采样得分
# {glue:text}`sft_out_sampled`；普通 DPO 是 {glue:text}`dpo_out_greedy` 和
# {glue:text}`dpo_out_sampled`，{glue:text}`best_name` 是 {glue:text}`best_out_greedy` 和
# {glue:text}`best_out_sampled`（{glue:text}`best_out_change`）。
#
# 普通 DPO 为什么会帮倒忙？错误的采样往往只错了一处，错处之后的每一步都是对错误数字做的正确运算
# （先算出“9+7=15”，再写“15+9=24”）。序列级的损失把整个拒绝回答一起往下压，连这些正确的步骤也
# 不例外，于是模型学会了回避那些它原本算得对的加减法。NLL 项让选中回答保持高概率；加上它之后，
# 贪心 pass@1 为 {glue:text}`nll_in_greedy`：{glue:text}`nll_effect`。
#
# “离线偏好优化只在数据覆盖的范围内有效、无法超出”这一说法：**{glue:text}`verdict`**。偏好对里
# 没有哪个答案是 SFT 模型原本写不出来的：DPO 能做的，只是在模型本来就会采样出的回答之间挪动概率；
# 而在覆盖范围之外，连这些回答也大多是错的。
