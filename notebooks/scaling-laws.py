# %% [markdown] tags=["en"]
# # Scaling laws: model size, data and compute
#
# Three claims about scale shape how large models are planned, and this notebook tests each of
# them on models small enough to train by the dozen on a laptop CPU.
#
# 1. **Loss is a smooth power law in model size and data.** Kaplan et al. (2020) found that
#    the test loss of a language model falls as a power of its parameter count $N$ and of the
#    number of tokens $D$ it trains on {cite}`kaplan2020scaling`; Hoffmann et al. (2022) fitted
#    the joint form
#
#    $$L(N, D) = E + \frac{A}{N^{\alpha}} + \frac{B}{D^{\beta}},$$
#
#    where $E$ is the loss no model can beat (the entropy of the text) and the two other terms
#    are what a finite model and a finite dataset add to it.
# 2. **The compute-optimal model sees about {glue:text}`chinchilla_ratio` tokens per
#    parameter.** Training costs about $C \approx 6ND$ floating-point operations. For a fixed
#    $C$ the fitted law has a best split between $N$ and $D$; Hoffmann et al. ("Chinchilla") put
#    it near {glue:text}`chinchilla_ratio` tokens per parameter.
# 3. **"Emergent" abilities depend on the metric.** Schaeffer et al. (2023) argued that skills
#    which seem to switch on suddenly at some scale often do so only because they are scored by
#    an all-or-nothing metric such as exact match; scored by a smooth metric, the same models
#    improve gradually.
#
# The experiment is a grid: {glue:text}`n_sizes` model shapes, each pre-trained from scratch
# at {glue:text}`n_budgets` token budgets, {glue:text}`n_runs` runs in all. Every run has its
# own cosine learning-rate schedule that ends exactly at its budget. This matters: reading the
# loss of a long run halfway through, while its learning rate is still high, overstates the
# loss a run of that length would reach, which is one of the corrections Hoffmann et al. made
# to earlier work. Narrower models take a larger peak learning rate, inversely proportional to
# the width (a common rule of thumb), so that no size is handicapped by a rate chosen for
# another.

# %% [markdown] tags=["zh"]
# # 缩放定律：模型规模、数据量与算力
#
# 关于“规模”，有三条论断直接左右着大模型的规划方式。本笔记本用一批小到可以在笔记本电脑 CPU 上
# 成批训练的模型，逐条检验它们。
#
# 1. **损失随模型规模和数据量按幂律平滑下降。** Kaplan 等人（2020）发现，语言模型的测试损失
#    随参数量 $N$ 和训练词元数 $D$ 按幂函数下降 {cite}`kaplan2020scaling`；Hoffmann 等人（2022）
#    进一步拟合了二者的联合形式
#
#    $$L(N, D) = E + \frac{A}{N^{\alpha}} + \frac{B}{D^{\beta}},$$
#
#    其中 $E$ 是任何模型都无法突破的损失（文本本身的熵），另外两项分别是模型有限、数据有限
#    所带来的额外损失。
# 2. **算力最优的模型，每个参数约对应 {glue:text}`chinchilla_ratio` 个训练词元。**
#    训练的计算量约为 $C \approx 6ND$ 次浮点运算。给定 $C$，拟合出的定律会给出 $N$ 与 $D$
#    之间的最佳分配；Hoffmann 等人（即 Chinchilla 论文）估计这个比例大约是每个参数
#    {glue:text}`chinchilla_ratio` 个词元。
# 3. **所谓“涌现”取决于评价指标。** Schaeffer 等人（2023）指出，许多看似在某个规模上突然出现的
#    能力，之所以显得突然，往往只是因为评分方式非对即错（例如完全匹配）；换成平滑的指标，同一批
#    模型的进步其实是渐进的。
#
# 实验是一张网格：{glue:text}`n_sizes` 种模型形状，每种都在 {glue:text}`n_budgets` 个词元预算下
# 从零开始预训练，共 {glue:text}`n_runs` 次训练。每次训练都有自己的余弦学习率调度，恰好在预算
# 用完时结束。这一点很重要：一次长训练在中途学习率还很高时的损失，会高估同样长度的完整训练所能
# 达到的损失——这正是 Hoffmann 等人对早期工作所做的修正之一。越窄的模型使用越大的峰值学习率，
# 与宽度成反比（这是常用的经验法则），免得某个规模因为套用了为其他规模选定的学习率而吃亏。

# %% tags=["parameters"]
layers: list[int] = [1, 1, 2, 2]  # transformer blocks of each model shape
widths: list[int] = [16, 32, 48, 64]  # residual width of each model shape (heads of width 16)
max_steps: int = 400  # steps of the longest runs; the others get a half and a quarter of it
batch_size: int = 16  # sequences of 128 tokens per optimizer step
lr: float = 0.01  # peak AdamW learning rate at width 64; a width-w model uses lr x 64 / w
n_documents: int = 20000  # training documents in the corpus (20,000: the book's base corpus)
n_problems: int = 200  # held-out word problems scored for every run
seed: int = 0  # seed of the initialisation and of the batch order

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

import phasebook.book as pb
from phasebook.data import extract_answer, problems
from phasebook.evaluate import score_answers
from phasebook.i18n import N_, _, format_number, format_percent
from phasebook.store import Store
from phasebook.train.pretraining import PRESETS, pretrain
from phasebook.train.scaling import PARAMS, ScalingFit, fit_scaling_law

ctx = pb.setup()
store = Store()
# Models this small gain little from several CPU threads, and on a busy machine threads that
# wait for one another can slow training many times over; one thread is the robust choice.
torch.set_num_threads(1)
device = "cuda" if torch.cuda.is_available() else "cpu"
# Hoffmann et al. (2022): the compute-optimal ratio and the exponents of their third approach.
CHINCHILLA = {"tokens_per_parameter": 20, "alpha": 0.34, "beta": 0.28}
TOLERANCE = 0.01  # loss differences below 1% are within the noise of the validation estimate
CLOSE = 3.0  # a ratio within this factor of Chinchilla's counts as close to it
base = PRESETS["base"].replace(corpus={"n_documents": n_documents})
budgets = sorted({max(1, max_steps // 4), max(1, max_steps // 2), max_steps})
shapes = list(zip(layers, widths, strict=True))
items = problems(base.corpus, "math", "test", n_problems)


def configure(n_layer: int, width: int, steps: int):
    """One run of the grid: its own model shape, budget and cosine schedule ending at the budget."""
    return base.replace(
        model={"n_layer": n_layer, "d_model": width, "n_head": max(1, width // 16)},
        train={"steps": steps, "batch_size": batch_size, "seed": seed, "eval_interval": 0,
               "eval_batches": 16, "checkpoint_interval": steps, "progress": False,
               "optimizer": {"lr": lr * 64 / width},
               "schedule": {"name": "cosine", "warmup_steps": max(1, steps // 10)}})


def evaluate(run) -> dict:
    """Exact match and gold-answer log-likelihood on the held-out problems (stored per run)."""
    def compute() -> dict:
        s = score_answers(run.model.to(device), run.tokenizer, items, "en", extract_answer)
        return {"accuracy": s["accuracy"], "logprob": s["mean_token_logprob"],
                "solution_probability": float(np.exp(s["gold_logprob"]).mean()),
                "gold_tokens": float(s["gold_tokens"].mean())}
    return store.memo("scaling-laws-eval", {"run": run.path.name, "problems": n_problems}, compute)


rows = []
for n_layer, width in shapes:
    for steps in budgets:
        run = pretrain(configure(n_layer, width, steps))
        scores = evaluate(run)
        s = run.summary
        rows.append({"shape": f"{n_layer}×{width}", "N": s["non_embedding_parameters"],
                     "N_total": s["parameters"], "D": s["tokens_seen"], "loss": s["final_val_loss"],
                     "accuracy": scores["accuracy"], "logprob": scores["logprob"],
                     "solution_probability": scores["solution_probability"],
                     "gold_tokens": scores["gold_tokens"],
                     "flops_per_token": run.config.model.flops_per_token(run.config.train.seq_len),
                     "available": s["train_tokens_available"]})
        print(f"{n_layer}×{width:<3}  N={s['non_embedding_parameters']:>7,}  D={s['tokens_seen']:>9,}  "
              + _("loss {loss:.3f}, exact match {accuracy:.0%}").format(loss=s["final_val_loss"],
                                                                         accuracy=scores["accuracy"]))

N = np.array([r["N"] for r in rows], float)
N_total = np.array([r["N_total"] for r in rows], float)
D = np.array([r["D"] for r in rows], float)
loss = np.array([r["loss"] for r in rows])
accuracy = np.array([r["accuracy"] for r in rows])
logprob = np.array([r["logprob"] for r in rows])
C = 6 * N * D
sizes = sorted(set(N))
colors = dict(zip(sizes, plt.cm.viridis(np.linspace(0.0, 0.85, len(sizes))), strict=True))
shape_of = {r["N"]: r["shape"] for r in rows}


def sci(x: float) -> str:
    """x as a×10ⁿ for prose and labels."""
    if not np.isfinite(x) or x == 0:
        return format_number(x) if x == 0 else "–"
    exponent = int(np.floor(np.log10(abs(x))))
    mantissa = x / 10**exponent
    sup = str(exponent).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
    return f"{format_number(mantissa, 1)}×10{sup}"


def log_ticks(axis, values, scale: float = 1.0, digits: int = 1) -> None:
    """Label a log axis at `values` only, divided by `scale`: narrow ranges stay uncluttered."""
    axis.set_major_locator(FixedLocator(values))
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(lambda v, pos: format_number(v / scale, digits)))


def loss_ticks(axis, lo: float, hi: float) -> None:
    log_ticks(axis, [v for v in (0.3, 0.4, 0.5, 0.6, 0.8, 1, 1.5, 2, 3, 4, 6) if lo <= v <= hi])


# %%
smallest = min(rows, key=lambda r: r["N"])
largest = max(rows, key=lambda r: r["N"])
epochs = D.max() / rows[0]["available"]
pb.glue("chinchilla_ratio", CHINCHILLA["tokens_per_parameter"])
pb.glue("n_sizes", len(shapes))
pb.glue("n_budgets", len(budgets))
pb.glue("n_runs", len(rows))
pb.glue("n_min", int(N.min()))
pb.glue("n_max", int(N.max()))
pb.glue("d_min", int(D.min()))
pb.glue("d_max", int(D.max()))
pb.glue("c_min", sci(C.min()))
pb.glue("c_max", sci(C.max()))
pb.glue("epochs", float(epochs), digits=2)
pb.glue("embedding_share_small", 1 - smallest["N"] / smallest["N_total"], digits=0, percent=True)
pb.glue("embedding_share_large", 1 - largest["N"] / largest["N_total"], digits=0, percent=True)
pb.glue("flops_ratio_small", smallest["flops_per_token"] / (6 * smallest["N"]), digits=1)
pb.glue("flops_ratio_large", largest["flops_per_token"] / (6 * largest["N"]), digits=1)
repeat_note = (_("so no token was seen twice") if epochs <= 1
               else _("so the longest runs saw part of the corpus more than once"))
pb.glue("repeat_note", repeat_note)

# %% [markdown] tags=["en"]
# ## The sweep
#
# The models range from {glue:text}`n_min` to {glue:text}`n_max` non-embedding parameters (the
# count $N$ explained below) and the budgets from
# {glue:text}`d_min` to {glue:text}`d_max` tokens, so the compute of the runs spans
# {glue:text}`c_min` to {glue:text}`c_max` FLOPs by the $6ND$ rule. The longest budget is
# {glue:text}`epochs` of one pass over the training corpus, {glue:text}`repeat_note`.
#
# Here $N$ counts the parameters of the transformer blocks and leaves out the token-embedding
# matrix, as Kaplan et al. did. The embedding is a lookup table that costs almost no computation
# per token, and Kaplan et al. found the trends of small models cleaner without it. At this scale the
# choice is not a detail. The embedding holds {glue:text}`embedding_share_small` of all
# parameters of the smallest model and {glue:text}`embedding_share_large` of the largest.
# Hoffmann et al. counted every parameter, and Pearce and Song (2024) traced a good part of the
# disagreement between the two papers to this very difference at small scale. We therefore
# report the compute-optimal ratio under both counts below. The $6ND$ rule is approximate for
# the same reason: counting the output layer and attention, a training token costs
# {glue:text}`flops_ratio_small` times $6N$ in the smallest model and
# {glue:text}`flops_ratio_large` times $6N$ in the largest.

# %% [markdown] tags=["zh"]
# ## 扫描范围
#
# 模型的非嵌入参数量（即下文解释的 $N$）从 {glue:text}`n_min` 到 {glue:text}`n_max`，词元预算
# 从 {glue:text}`d_min` 到 {glue:text}`d_max`，按 $6ND$ 估算，各次训练的计算量从
# {glue:text}`c_min` 到 {glue:text}`c_max` 次浮点运算不等。最大的预算相当于把训练语料过
# {glue:text}`epochs` 遍，{glue:text}`repeat_note`。
#
# 这里的 $N$ 只统计 Transformer 块中的参数，不含词嵌入矩阵，这与 Kaplan 等人的做法一致。词嵌入
# 本质上是一张查找表，每个词元几乎不消耗计算；Kaplan 等人也发现，不计词嵌入时小模型的规律更干净。在我们
# 这个规模上，这个选择绝非细枝末节：最小的模型有 {glue:text}`embedding_share_small` 的参数在词嵌入
# 里，最大的模型也有 {glue:text}`embedding_share_large`。Hoffmann 等人统计的是全部参数，而
# Pearce 和 Song（2024）发现，两篇论文结论的分歧有相当一部分正来自小规模下的这一差别。因此下文
# 会在两种计数方式下分别给出算力最优的比例。$6ND$ 规则同样只是近似：把输出层和注意力的开销也算上，
# 最小的模型每训练一个词元要花 $6N$ 的 {glue:text}`flops_ratio_small` 倍，最大的模型是
# {glue:text}`flops_ratio_large` 倍。

# %%
def stored_fit(n: np.ndarray, d: np.ndarray, y: np.ndarray, n_boot: int) -> ScalingFit:
    """`fit_scaling_law`, stored: the Chinese run reads the English run's fit."""
    def compute() -> dict:
        f = fit_scaling_law(n, d, y, n_boot=n_boot, seed=seed)
        return {**f.as_dict(), "bootstrap": f.bootstrap}
    key = {"N": n.tolist(), "D": d.tolist(), "loss": y.tolist(), "n_boot": n_boot, "seed": seed}
    v = store.memo("scaling-laws-fit", key, compute)
    return ScalingFit(*(float(v[k]) for k in PARAMS), stderr={k: float(v[f"{k}_stderr"]) for k in PARAMS},
                      bootstrap=np.asarray(v["bootstrap"]))


fit = stored_fit(N, D, loss, n_boot=50)
predicted = fit.predict(N, D)
rel_err = np.abs(predicted - loss) / loss
# The real use of a scaling law: fit the smaller models, predict the largest before training it.
held = np.equal(N, N.max())
fit_small = stored_fit(N[~held], D[~held], loss[~held], n_boot=0)
extrapolation_err = np.abs(fit_small.predict(N[held], D[held]) - loss[held]) / loss[held]
# Smoothness: more data never hurts a given model, a bigger model never hurts at a given budget.
order = np.lexsort((D, N))
log_grid = np.log(loss[order].reshape(len(shapes), len(budgets)))
grid_shapes = [shape_of[n] for n in sizes]
grid_tokens = [format_number(d, 0) for d in sorted(set(D))]
exceptions = [_("{shape} is worse with {more} tokens than with {fewer}").format(
                  shape=grid_shapes[i], more=grid_tokens[j + 1], fewer=grid_tokens[j])
              for i, j in zip(*np.nonzero(np.diff(log_grid, axis=1) > np.log1p(TOLERANCE)), strict=True)]
exceptions += [_("{bigger} is worse than {smaller} at {tokens} tokens").format(
                   bigger=grid_shapes[i + 1], smaller=grid_shapes[i], tokens=grid_tokens[j])
               for i, j in zip(*np.nonzero(np.diff(log_grid, axis=0) > np.log1p(TOLERANCE)), strict=True)]
violations = len(exceptions)

fig, (ax_d, ax_n) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
d_grid = np.geomspace(D.min() / 1.5, D.max() * 1.5, 100)
for n in sizes:
    sel = np.equal(N, n)
    label = _("{shape}: N = {n}").format(shape=shape_of[n], n=format_number(n, 0))
    ax_d.plot(D[sel], loss[sel], "o", color=colors[n], ms=6, label=label)
    ax_d.plot(d_grid, fit.predict(n, d_grid), "-", color=colors[n], lw=1.2)
ax_d.plot(d_grid, fit_small.predict(N.max(), d_grid), "--", color=colors[N.max()], lw=1.2,
          label=_("largest model, predicted from the others"))
ax_d.set_xscale("log")
ax_d.set_yscale("log")
log_ticks(ax_d.xaxis, sorted(set(D)), scale=1e6, digits=2)
loss_ticks(ax_d.yaxis, loss.min() * 0.9, max(fit.predict(N.min(), d_grid.min()), loss.max()))
ax_d.set_xlabel(_("Training tokens D (millions)"))
ax_d.set_ylabel(_("Validation loss (nats per token)"))
ax_d.legend(frameon=False, fontsize=8)
n_grid = np.geomspace(N.min() / 1.5, N.max() * 1.5, 100)
greys = plt.cm.Greys(np.linspace(0.45, 0.95, len(budgets)))
for d, grey in zip(sorted(set(D)), greys, strict=True):
    sel = np.equal(D, d)
    ax_n.plot(N[sel], loss[sel], "s", color=grey, ms=5,
              label=_("D = {d} tokens").format(d=format_number(d, 0)))
    ax_n.plot(n_grid, fit.predict(n_grid, d), "-", color=grey, lw=1.2)
ax_n.set_xscale("log")
log_ticks(ax_n.xaxis, sizes, scale=1e3)
ax_n.set_xlabel(_("Non-embedding parameters N (thousands)"))
ax_n.legend(frameon=False, fontsize=8)
pb.figure(fig, "scaling-laws-loss-surface",
          title=N_("Validation loss against training tokens and model size, with the fitted scaling law"),
          caption=N_("Each point is the final validation loss of one pre-training run whose cosine "
                     "schedule ends at its token budget. Solid lines: the law L(N, D) = E + A/N^α + "
                     "B/D^β fitted to all runs. Dashed line: the same law fitted without the largest "
                     "model, extrapolated to it. Logarithmic axes."),
          data={"shape": [r["shape"] for r in rows], "N": N, "N_total": N_total, "D": D,
                "loss": loss, "fit": fit.as_dict(), "fit_without_largest": fit_small.as_dict()})

# %%
def with_error(name: str) -> str:
    value, err = getattr(fit, name), fit.stderr[name]
    if not np.isfinite(err):  # too few bootstrap resamples to estimate it
        return sci(value) if abs(value) >= 1e4 else format_number(value, 2)
    if max(abs(value), err) >= 1e4:
        return f"{sci(value)} ± {sci(err)}"
    return f"{format_number(value, 2)} ± {format_number(err, 2)}"


for name in PARAMS:
    pb.glue(f"fit_{name}", with_error(name))
for name in ("alpha", "beta"):
    pb.glue(f"chinchilla_{name}", CHINCHILLA[name], digits=2)
rms = float(np.sqrt(np.mean(rel_err**2)))
pb.glue("fit_rms", rms, digits=1, percent=True)
pb.glue("fit_max", float(rel_err.max()), digits=1, percent=True)
pb.glue("extrapolation_err", float(extrapolation_err.mean()), digits=1, percent=True)
pb.glue("largest_shape", largest["shape"])
pb.glue("violations", violations)
pb.glue("tolerance", TOLERANCE, digits=0, percent=True)
colon, separator = ("：", "；") if ctx.lang == "zh" else (": ", "; ")
pb.glue("exceptions", colon + separator.join(exceptions) if exceptions
        else _(", so both hold throughout"))
predicts = extrapolation_err.mean() <= 0.10
pb.glue("verdict_power_law", _("supported") if violations == 0 and rms <= 0.05 and predicts
        else _("partly supported") if predicts or rms <= 0.10 else _("not supported at these settings"))
beta_steeper = fit.beta > fit.alpha
pb.glue("exponent_note", _("data: the exponent of D is the larger one") if beta_steeper
        else _("model size: the exponent of N is the larger one"))

# %% [markdown] tags=["en"]
# ## Loss against model size and data
#
# The first figure shows the measured losses with the fitted law. Two simple rules should hold
# if loss falls smoothly with scale: every model improves with more tokens, and at every budget
# a bigger model does better. Counting only differences beyond {glue:text}`tolerance`, the grid
# breaks these rules {glue:text}`violations` times{glue:text}`exceptions`. The fit, with
# bootstrap standard errors over the runs, is
#
# | | fitted here | Hoffmann et al. |
# | --- | --- | --- |
# | $E$ | {glue:text}`fit_E` | |
# | $A$ | {glue:text}`fit_A` | |
# | $\alpha$ | {glue:text}`fit_alpha` | {glue:text}`chinchilla_alpha` |
# | $B$ | {glue:text}`fit_B` | |
# | $\beta$ | {glue:text}`fit_beta` | {glue:text}`chinchilla_beta` |
#
# It misses the measured losses by {glue:text}`fit_rms` (root mean square; at worst
# {glue:text}`fit_max`). The stricter test is prediction: fitted without the largest model
# ({glue:text}`largest_shape`), the law predicts that model's losses to within
# {glue:text}`extrapolation_err` on average (the dashed line). The claim that loss falls as a
# smooth power law in $N$ and $D$ is **{glue:text}`verdict_power_law`** by this run.
#
# The exponents should not be read as estimates of the large-model values. Our models train for
# a few hundred steps, far from convergence, where the loss still falls steeply with every
# token: the fitted law says the loss is more sensitive to {glue:text}`exponent_note`. The
# additive form has no way to let a bigger model do worse than a smaller one, which can happen
# in the shortest runs, where a larger network has had too few steps to make use of its size.
# And the bootstrap errors only say how much the fit moves when the same runs are resampled;
# they do not cover the larger uncertainty of having measured so narrow a range of sizes and
# budgets, orders of magnitude below where the published exponents were fitted.

# %% [markdown] tags=["zh"]
# ## 损失与模型规模、数据量的关系
#
# 第一张图给出实测损失和拟合出的定律。如果损失真的随规模平滑下降，下面两条简单规则应当成立：
# 每个模型都随训练词元增多而变好；在同一预算下，更大的模型总是更好。只计超过
# {glue:text}`tolerance` 的差异，整张网格违反这两条规则 {glue:text}`violations`
# 次{glue:text}`exceptions`。拟合结果如下，误差为对各次训练做自助重采样得到的标准误：
#
# | | 本次拟合 | Hoffmann 等人 |
# | --- | --- | --- |
# | $E$ | {glue:text}`fit_E` | |
# | $A$ | {glue:text}`fit_A` | |
# | $\alpha$ | {glue:text}`fit_alpha` | {glue:text}`chinchilla_alpha` |
# | $B$ | {glue:text}`fit_B` | |
# | $\beta$ | {glue:text}`fit_beta` | {glue:text}`chinchilla_beta` |
#
# 拟合值与实测损失的均方根相对偏差为 {glue:text}`fit_rms`，最大为 {glue:text}`fit_max`。更严格的
# 检验是预测：去掉最大的模型（{glue:text}`largest_shape`）重新拟合，得到的定律对该模型损失的预测
# 平均偏差为 {glue:text}`extrapolation_err`（图中虚线）。“损失随 $N$ 和 $D$ 按幂律平滑下降”这一
# 论断，在本次运行中的结论是：**{glue:text}`verdict_power_law`**。
#
# 不要把这里的指数当作大模型上的估计值。我们的模型只训练几百步，离收敛还很远，损失仍在随每个
# 词元快速下降；拟合出的定律显示，损失对{glue:text}`exponent_note`。这种加和形式也无法表达
# “大模型反而不如小模型”的情况，而这在最短的训练里确实可能出现：更大的网络还没走够步数，来不及
# 发挥规模的优势。此外，自助标准误只反映同一批训练被重新抽样时拟合结果的摆动幅度，并不涵盖另一种
# 更大的不确定性：我们测量的规模和预算范围如此之窄，又比已发表指数的拟合范围低了好几个数量级。

# %%
log_c = np.log(C)
levels = np.exp(log_c.min() + np.array([0.25, 0.5, 0.75]) * (log_c.max() - log_c.min()))
n_opt, d_opt = fit.optimal_split(levels)
ratios = d_opt / n_opt
# The same question with every parameter counted, as Hoffmann et al. did.
fit_total = stored_fit(N_total, D, loss, n_boot=0)
c_total = 6 * N_total * D
mid_total = np.exp(np.log(c_total).mean())
ratio_total = float(fit_total.tokens_per_parameter(mid_total))
boot_ratios = np.array([ScalingFit(*b, stderr={}, bootstrap=np.empty((0, 5))).tokens_per_parameter(levels[1])
                        for b in fit.bootstrap])

fig, ax = plt.subplots(figsize=(6.4, 4))
ax.axvspan(N.min(), N.max(), color="#eeeeee", label=_("model sizes trained"))
grid = np.geomspace(N.min() / 10, N.max() * 10, 200)
for c, n_star, colour in zip(levels, n_opt, ("#9ecae1", "#4292c6", "#08519c"), strict=True):
    ax.plot(grid, fit.predict(grid, c / (6 * grid)), color=colour, lw=1.5,
            label=_("C = {c} FLOPs").format(c=sci(c)))
    ax.plot(n_star, fit.predict(n_star, c / (6 * n_star)), "*", color=colour, ms=13, mec="black",
            mew=0.5)
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_ylim(loss.min() * 0.8, loss.max() * 1.5)
loss_ticks(ax.yaxis, loss.min() * 0.8, loss.max() * 1.5)
ax.set_xlabel(_("Non-embedding parameters N"))
ax.set_ylabel(_("Fitted validation loss (nats per token)"))
ax.legend(frameon=False, fontsize=8)
pb.figure(fig, "scaling-laws-isoflop",
          title=N_("Fitted loss at fixed compute: the compute-optimal model size"),
          caption=N_("For three compute budgets inside the sweep, the fitted law's loss when the "
                     "budget C = 6ND is spent on a model of N parameters and the tokens it leaves. "
                     "Stars mark the best N for each budget; the shaded band is the range of model "
                     "sizes actually trained. Logarithmic axes."),
          data={"compute": levels, "n_opt": n_opt, "d_opt": d_opt, "tokens_per_parameter": ratios,
                "tokens_per_parameter_all_parameters": ratio_total})

# %%
ratio_mid = float(ratios[1])
pb.glue("c_mid", sci(levels[1]))
pb.glue("n_opt_mid", float(n_opt[1]), digits=0)
pb.glue("ratio_mid", ratio_mid, digits=0)
pb.glue("ratio_low", float(ratios[0]), digits=0)
pb.glue("ratio_high", float(ratios[-1]), digits=0)
pb.glue("ratio_q10", float(np.quantile(boot_ratios, 0.1)), digits=0)
pb.glue("ratio_q90", float(np.quantile(boot_ratios, 0.9)), digits=0)
pb.glue("ratio_total", ratio_total, digits=0)
vs_chinchilla = ratio_mid / CHINCHILLA["tokens_per_parameter"]
pb.glue("ratio_vs_chinchilla", vs_chinchilla, digits=1)
inside = N.min() <= n_opt[1] <= N.max()
pb.glue("n_opt_where", _("inside the range of sizes we trained") if inside
        else _("outside the range of sizes we trained, so it is an extrapolation of the fit"))
pb.glue("ratio_trend", _("grows") if ratios[-1] > ratios[0] else _("shrinks"))
pb.glue("close_factor", CLOSE, digits=0)
verdict_ratio = (_("close to Chinchilla's ratio") if 1 / CLOSE <= vs_chinchilla <= CLOSE
                 else _("far above Chinchilla's ratio") if vs_chinchilla > CLOSE
                 else _("far below Chinchilla's ratio"))
pb.glue("verdict_ratio", verdict_ratio)
pb.glue("ratio_cell", _("{ratio} tokens per parameter, {verdict}").format(
    ratio=format_number(ratio_mid, 0), verdict=verdict_ratio))

# %% [markdown] tags=["en"]
# ## Spending a fixed compute budget
#
# A scaling law is most useful for planning: given a budget $C$, which model should one train,
# and on how much data? Along each curve of the second figure the compute is fixed, so a larger
# model means fewer tokens. For the middle budget, {glue:text}`c_mid` FLOPs, the fitted optimum
# is a model of {glue:text}`n_opt_mid` non-embedding parameters, {glue:text}`n_opt_where`. It
# would see **{glue:text}`ratio_mid` tokens per parameter**, {glue:text}`ratio_vs_chinchilla`
# times Chinchilla's {glue:text}`chinchilla_ratio`: {glue:text}`verdict_ratio` (we call it close
# within a factor of {glue:text}`close_factor` either way). The bootstrap
# puts this ratio between {glue:text}`ratio_q10` and {glue:text}`ratio_q90` (10th to 90th
# percentile). Across the three budgets it {glue:text}`ratio_trend` from {glue:text}`ratio_low`
# to {glue:text}`ratio_high`, because the two exponents differ; in Chinchilla's fit they are
# close, so the ratio changes only slowly with scale. Counting every parameter, embedding included, as
# Hoffmann et al. did, the same runs give {glue:text}`ratio_total` tokens per parameter at the
# middle of their compute range.
#
# Whichever way this comparison comes out, a toy sweep is weak evidence about the large-scale
# number. Our models are tiny, so the embedding and the output layer, left out of $N$, are a
# large part of both the parameters and the computation. The corpus is synthetic and highly
# regular, so its loss floor $E$ is low and a small model gets close to it quickly. The runs are
# short, and the steep early part of training inflates the data exponent. And the learning rate
# was set by a rule of thumb, not tuned per run. What carries over is the method: fit the law on
# small runs, read the optimum off it, and check the prediction on a larger run before spending
# the budget.

# %% [markdown] tags=["zh"]
# ## 固定算力预算该怎么花
#
# 缩放定律最大的用处在于规划：给定预算 $C$，该训练多大的模型、喂多少数据？第二张图中每条曲线上
# 的计算量都固定不变，所以模型越大，能用的词元就越少。对中间那档预算（{glue:text}`c_mid` 次浮点
# 运算），拟合给出的最优模型有 {glue:text}`n_opt_mid` 个非嵌入参数，{glue:text}`n_opt_where`。
# 它对应的是**每个参数 {glue:text}`ratio_mid` 个词元**，是 Chinchilla 所给 {glue:text}`chinchilla_ratio`
# 的 {glue:text}`ratio_vs_chinchilla` 倍，结论是：{glue:text}`verdict_ratio`（两者相差不超过
# {glue:text}`close_factor` 倍即视为相近）。自助重采样给出的区间
# （第 10 到第 90 百分位）为 {glue:text}`ratio_q10` 到 {glue:text}`ratio_q90`。在三档预算之间，这个
# 比例从 {glue:text}`ratio_low` {glue:text}`ratio_trend` 到 {glue:text}`ratio_high`，原因是两个指数
# 并不相等；而在 Chinchilla 的拟合中两者很接近，所以这个比例随规模的变化很缓慢。如果像 Hoffmann
# 等人那样把词嵌入在内的全部参数都计入，同一批训练在其计算量范围的中点给出的是每个参数
# {glue:text}`ratio_total` 个词元。
#
# 无论这个比较结果如何，玩具规模的扫描对大规模下的那个数字都只是薄弱的证据。我们的模型极小，
# 不计入 $N$ 的词嵌入和输出层在参数量和计算量中都占了很大比重。语料是合成的，规律性很强，损失
# 下限 $E$ 很低，小模型也能很快逼近它。每次训练都很短，训练初期损失陡降的阶段会抬高数据项的
# 指数。学习率也只是按经验法则设定，而非逐次调优。真正可以迁移到大规模的是方法本身：在小规模
# 训练上拟合定律，从中读出最优配置，并在投入全部预算之前先用一次更大的训练检验预测。

# %%
def halfway(metric: np.ndarray) -> float:
    """Where, on the log-compute axis of the sweep (0 = least, 1 = most compute), the first run
    reaches half of the metric's total improvement."""
    reached = metric - metric.min() >= 0.5 * (metric.max() - metric.min())
    return float((log_c[reached].min() - log_c.min()) / (log_c.max() - log_c.min()))


def compute_at(position: float) -> float:
    """The compute at a fraction `position` of the sweep's log-compute range."""
    return float(np.exp(log_c.min() + position * (log_c.max() - log_c.min())))


answers = np.array([it.answer for it in items])
guess = float(np.max(np.unique(answers, return_counts=True)[1]) / len(answers))
half_acc, half_lp = halfway(accuracy), halfway(logprob)
emerged = accuracy.max() >= guess + 0.10  # ten points above always giving the commonest answer
sharp = half_acc - half_lp >= 0.25

fig, (ax_a, ax_l) = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
for n in sizes:
    sel = np.equal(N, n)
    label = _("{shape}: N = {n}").format(shape=shape_of[n], n=format_number(n, 0))
    ax_a.plot(C[sel], 100 * accuracy[sel], "o", color=colors[n], ms=6, label=label)
    ax_l.plot(C[sel], logprob[sel], "o", color=colors[n], ms=6)
ax_a.axhline(100 * guess, color="#7f7f7f", lw=1, ls="--", label=_("always the most common answer"))
ax_a.set_ylim(0, max(100 * accuracy.max(), 100 * guess) * 1.25 + 1)
if emerged:
    ax_a.axvline(compute_at(half_acc), color="#7f7f7f", lw=0.8, ls=":")
ax_l.axvline(compute_at(half_lp), color="#7f7f7f", lw=0.8, ls=":")
ax_a.set_xscale("log")
ax_a.set_xlabel(_("Training compute C = 6ND (FLOPs)"))
ax_l.set_xlabel(_("Training compute C = 6ND (FLOPs)"))
ax_a.set_ylabel(_("Exact-match accuracy (%)"))
ax_l.set_ylabel(_("Mean log-probability per gold token"))
ax_a.set_title(_("Exact match: all or nothing"), fontsize=10)
ax_l.set_title(_("Likelihood of the gold answer: graded"), fontsize=10)
ax_a.legend(frameon=False, fontsize=8, loc="lower right")
pb.figure(fig, "scaling-laws-emergence",
          title=N_("The same models scored by exact match and by the likelihood of the right answer"),
          caption=N_("Held-out arithmetic word problems, in English. Left: share of problems whose "
                     "generated answer (greedy decoding) is exactly right; the dashed line is what "
                     "always giving the most common answer would score. Right: mean log-probability "
                     "the model gives to each token of the correct worked solution. Dotted lines: "
                     "the first run that achieves half of the metric's total improvement over the "
                     "sweep (for exact match, only when it rose clearly above guessing). "
                     "Logarithmic compute axis."),
          data={"shape": [r["shape"] for r in rows], "N": N, "D": D, "compute": C,
                "accuracy": accuracy, "mean_token_logprob": logprob,
                "solution_probability": [r["solution_probability"] for r in rows],
                "guess_accuracy": guess, "halfway_accuracy": half_acc, "halfway_logprob": half_lp})

# %%
pb.glue("n_problems", n_problems)
pb.glue("acc_min", float(accuracy.min()), digits=0, percent=True)
pb.glue("acc_max", float(accuracy.max()), digits=0, percent=True)
pb.glue("acc_guess", guess, digits=0, percent=True)
pb.glue("lp_min", float(logprob.min()), digits=2)
pb.glue("lp_max", float(logprob.max()), digits=2)
pb.glue("p_min", float(np.exp(logprob.min())), digits=0, percent=True)
pb.glue("p_max", float(np.exp(logprob.max())), digits=0, percent=True)
pb.glue("gold_tokens", float(np.mean([r["gold_tokens"] for r in rows])), digits=0)
pb.glue("solution_p_max", max(r["solution_probability"] for r in rows), digits=1, percent=True)
pb.glue("acc_story", _("Most of that rise comes in the runs with the most compute: plotted against "
                       "compute, it looks like an ability switching on.") if emerged and sharp
        else _("It rises about as gradually as the smooth metric below.") if emerged
        else _("Exact match has not left the level that guessing reaches, so at this scale it "
               "says little about which runs are better."))
shares = {"lp": format_percent(half_lp, 0), "acc": format_percent(half_acc, 0)}
pb.glue("halfway_story", _("To put one number on sharp and smooth, take the first run that achieves "
                           "half of a metric's total improvement and ask how far along the sweep's "
                           "log-compute range it lies: {lp} of the way for the log-likelihood, "
                           "{acc} for exact match.").format(**shares) if emerged
        else _("Since exact match never rose clearly above guessing, the sweep cannot say how "
               "sharply it would rise. The log-likelihood achieves half of its total improvement "
               "{lp} of the way along the sweep's log-compute range.").format(**shares))
pb.glue("verdict_emergence", _("supported") if emerged and sharp
        else _("not supported at these settings") if emerged
        else _("not testable at these settings: exact match never rose above guessing"))

# %% [markdown] tags=["en"]
# ## Emergence and the choice of metric
#
# Every run was also asked to solve {glue:text}`n_problems` held-out word problems, writing out
# its steps and then the answer, and we score the same completions in two ways. Exact match asks
# whether the generated answer is right. Over the sweep it lies between {glue:text}`acc_min` and
# {glue:text}`acc_max`; always giving the most common answer among these problems would score
# {glue:text}`acc_guess`. {glue:text}`acc_story` The log-probability that the model assigns to
# each token of the correct solution tells another story: it climbs steadily, from
# {glue:text}`lp_min` to {glue:text}`lp_max` nats per token, so that a typical token of the gold
# solution goes from a probability of about {glue:text}`p_min` to about {glue:text}`p_max`.
#
# {glue:text}`halfway_story` The claim that emergence depends on the metric is
# **{glue:text}`verdict_emergence`** by this run.
#
# The mechanism is simple. A worked solution counts only if every one of its tokens is right, so
# its chance behaves roughly like a per-token probability raised to the length of the solution:
# a number that stays near zero while the per-token probability climbs, then rises quickly once
# that probability is close to one. Here a solution is {glue:text}`gold_tokens` tokens long on
# average, and even the best run gives the complete correct solution a probability of only
# {glue:text}`solution_p_max` on average. The smooth metric shows progress that exact match
# cannot register until nearly every token is right; nothing discontinuous needs to happen
# inside the model for the exact-match curve to jump when it finally does.

# %% [markdown] tags=["zh"]
# ## 涌现与评价指标的选择
#
# 每次训练得到的模型还要解 {glue:text}`n_problems` 道留出的应用题：先写出步骤，再给出答案。同一批
# 输出，我们用两种方式打分。完全匹配只看生成的答案对不对：在整个扫描中，它介于
# {glue:text}`acc_min` 和 {glue:text}`acc_max` 之间；而对这批题目一律回答最常见的那个答案，也能
# 得到 {glue:text}`acc_guess`。{glue:text}`acc_story` 换成模型给正确解答中每个词元分配的对数概率，
# 看到的却是另一幅景象：它从每词元 {glue:text}`lp_min` 纳特稳步上升到 {glue:text}`lp_max` 纳特，
# 相当于正确解答中一个典型词元的概率从约 {glue:text}`p_min` 升到约 {glue:text}`p_max`。
#
# {glue:text}`halfway_story` “涌现取决于评价指标”这一论断，在本次运行中的结论是：
# **{glue:text}`verdict_emergence`**。
#
# 背后的机制并不复杂。一个带步骤的解答，只有每个词元都正确才算对，所以它答对的概率大致相当于
# 单个词元的正确概率再取解答长度次方：单个词元的概率稳步上升时，这个数依旧贴近于零，直到单词元
# 概率接近 1，它才迅速抬升。这里的解答平均长 {glue:text}`gold_tokens` 个词元，即便是最好的那次
# 训练，给完整正确解答的概率平均也只有 {glue:text}`solution_p_max`。平滑指标记录下的进步，完全
# 匹配要等到几乎每个词元都正确时才看得见；模型内部并不需要发生任何突变，完全匹配的曲线在那一刻
# 也会显得陡然跃升。

# %% [markdown] tags=["en"]
# ## The same question along one longer run
#
# The sweep stops before its models learn to copy the question's numbers into their steps, which
# is what exact match needs. The book's base model, trained in the pre-training chapter for
# longer, does cross that line, and its run kept its weights at a few checkpoints. Scoring each
# checkpoint on the same problems, both ways, puts the two metrics side by side where exact match
# does move: here compute grows with the tokens seen, at a fixed model size.

# %% [markdown] tags=["zh"]
# ## 沿着一次更长的训练再看一遍
#
# 上面的扫描在模型学会“把题目中的数字抄进步骤”之前就停了，而完全匹配恰恰离不开这一步。本书的
# 基座模型在预训练一章中训练得更久，跨过了这道坎，训练过程中还在几个检查点保存了权重。用同一批
# 题目、以两种方式给每个检查点打分，就能在完全匹配确实有变化的范围里把两种指标并排比较：这里模型
# 大小不变，计算量随读过的词元数增长。


# %%
base_run = pretrain(PRESETS["base"].replace(train={"progress": False}))


def score_snapshots() -> dict:
    steps_kept = [s for s in base_run.snapshot_steps() if s > 0]
    out: dict = {"steps": steps_kept, "accuracy": [], "logprob": []}
    for step in steps_kept:
        scored = score_answers(base_run.snapshot(step), base_run.tokenizer, items, "en", extract_answer)
        out["accuracy"].append(scored["accuracy"])
        out["logprob"].append(scored["mean_token_logprob"])
    return out


along = Store().memo("scaling-laws-base-snapshots", {"run": base_run.path.name, "n": n_problems},
                     lambda: {"r": score_snapshots()})["r"]
run_tokens = np.array(along["steps"]) * base_run.config.train.batch_size * base_run.config.train.seq_len
run_acc, run_lp = np.array(along["accuracy"]), np.array(along["logprob"])
fig, ax_a = plt.subplots(figsize=(6.4, 3.6))
ax_a.plot(run_tokens / 1e6, 100 * run_acc, "o-", color="#d62728", label=_("exact match (left axis)"))
ax_a.set_ylim(0, 100)
ax_a.set_xlabel(_("Tokens seen by the base model (millions)"))
ax_a.set_ylabel(_("Exact-match accuracy (%)"))
ax_p = ax_a.twinx()
ax_p.plot(run_tokens / 1e6, run_lp, "s--", color="#1f77b4",
          label=_("log-probability per gold token (right axis)"))
ax_p.set_ylabel(_("Mean log-probability per gold token"))
ax_p.spines["right"].set_visible(True)
handles = [h for a in (ax_a, ax_p) for h in a.get_legend_handles_labels()[0]]
ax_a.legend(handles, [h.get_label() for h in handles], frameon=False, fontsize=8, loc="lower right")
pb.figure(fig, "scaling-laws-emergence-along-a-run",
          title=N_("Exact match and gold-answer likelihood along the base model's run"),
          caption=N_("The book's base model at the checkpoints its pre-training run kept, scored on the "
                     "same held-out English word problems as the sweep: share of exactly right "
                     "answers (left axis) and mean log-probability of each token of the correct "
                     "worked solution (right axis)."),
          data={"step": along["steps"], "tokens": run_tokens, "accuracy": run_acc,
                "mean_token_logprob": run_lp})

# %%
acc_gain = np.diff(run_acc) / max(run_acc[-1] - run_acc[0], 1e-9)
lp_gain = np.diff(run_lp) / max(run_lp[-1] - run_lp[0], 1e-9)
pb.glue("run_acc_first", float(run_acc[0]), percent=True, digits=0)
pb.glue("run_acc_last", float(run_acc[-1]), percent=True, digits=0)
pb.glue("run_lp_first", float(run_lp[0]), digits=2)
pb.glue("run_lp_last", float(run_lp[-1]), digits=2)
pb.glue("run_acc_biggest", float(acc_gain.max()), percent=True, digits=0)
pb.glue("run_lp_biggest", float(lp_gain.max()), percent=True, digits=0)
pb.glue("run_acc_biggest_where", int(along["steps"][int(acc_gain.argmax()) + 1]))
pb.glue("run_lp_biggest_where", int(along["steps"][int(lp_gain.argmax()) + 1]))
# Sharp: one interval carries most of exact match's rise while the likelihood's rise is spread out.
sharp_run = run_acc[-1] - run_acc[0] >= 0.3 and acc_gain.max() >= 0.5 and acc_gain.max() > lp_gain.max()
pb.glue("verdict_emergence_run", _("supported") if sharp_run else _("not supported at these settings"))

# %% [markdown] tags=["en"]
# Between its first and last kept checkpoints the base model goes from {glue:text}`run_acc_first`
# to {glue:text}`run_acc_last` exact answers, and {glue:text}`run_acc_biggest` of that rise falls in
# a single interval, the one ending at step {glue:text}`run_acc_biggest_where`. The log-probability
# per gold token climbs from {glue:text}`run_lp_first` to {glue:text}`run_lp_last`, and its largest
# single interval carries {glue:text}`run_lp_biggest` of its rise (ending at step
# {glue:text}`run_lp_biggest_where`). That exact match jumps where the likelihood moves gradually is
# **{glue:text}`verdict_emergence_run`** along this run.

# %% [markdown] tags=["zh"]
# 从第一个到最后一个保留的检查点，基座模型答案完全正确的比例从 {glue:text}`run_acc_first` 升到
# {glue:text}`run_acc_last`，其中 {glue:text}`run_acc_biggest` 的涨幅集中在截至第
# {glue:text}`run_acc_biggest_where` 步的那一段。每个正确词元的对数概率从 {glue:text}`run_lp_first`
# 升到 {glue:text}`run_lp_last`，涨幅最大的一段（截至第 {glue:text}`run_lp_biggest_where` 步）占其总
# 涨幅的 {glue:text}`run_lp_biggest`。“完全匹配陡然跃升，而似然平缓上升”这一点，沿着这次训练的结论
# 是：**{glue:text}`verdict_emergence_run`**。

# %% [markdown] tags=["en"]
# ## What this run shows
#
# | claim | this run |
# | --- | --- |
# | loss falls as a smooth power law in $N$ and $D$ | {glue:text}`verdict_power_law` |
# | compute-optimal data ≈ {glue:text}`chinchilla_ratio` tokens per parameter | {glue:text}`ratio_cell` |
# | "emergence" is an artefact of sharp metrics | {glue:text}`verdict_emergence` |
# | … along one longer run of the base model | {glue:text}`verdict_emergence_run` |
#
# Each point of the sweep is a real pre-training run with the book's training code, so a larger
# sweep is a matter of parameters. On a GPU, for example,
#
# ```
# phasebook run scaling-laws -p layers 2,4,6,8 -p widths 64,128,192,256 \
#     -p max_steps 4000 -p batch_size 32 -p n_documents 400000
# ```
#
# trains much larger models on a corpus large enough that no token is repeated. There the
# exponents and the ratio can be compared with the published ones on firmer ground, and exact
# match may get far enough above guessing to show whether it rises abruptly.

# %% [markdown] tags=["zh"]
# ## 本次运行的结论
#
# | 论断 | 本次运行 |
# | --- | --- |
# | 损失随 $N$ 和 $D$ 按幂律平滑下降 | {glue:text}`verdict_power_law` |
# | 算力最优时每个参数约对应 {glue:text}`chinchilla_ratio` 个词元 | {glue:text}`ratio_cell` |
# | “涌现”是非对即错指标造成的假象 | {glue:text}`verdict_emergence` |
# | ……沿着基座模型的一次更长训练 | {glue:text}`verdict_emergence_run` |
#
# 扫描中的每个点都是用本书训练代码完成的一次真实预训练，所以想做更大的扫描，只需改参数。例如在
# GPU 上运行
#
# ```
# phasebook run scaling-laws --lang zh -p layers 2,4,6,8 -p widths 64,128,192,256 \
#     -p max_steps 4000 -p batch_size 32 -p n_documents 400000
# ```
#
# 会在足够大、不必重复任何词元的语料上训练大得多的模型。届时这里的指数和比例就能在更可靠的基础上
# 与已发表的结果比较，完全匹配也可能明显超出猜测水平，从而看清它的上升是否陡峭。
