# %% [markdown] tags=["en"]
# # Numerical precision: fp32, bf16 and fp8
#
# A training step is mostly matrix multiplication, and the number format of those multiplications
# sets both the speed and the memory of training. Three claims about it are tested here:
#
# 1. **bf16 is the standard.** Mixed-precision training keeps fp32 master weights and optimizer
#    state, and runs the forward and backward passes in a 16-bit format. bf16 won over fp16
#    because it keeps fp32's eight exponent bits, so gradients neither overflow nor underflow
#    and no loss scaling is needed.
# 2. **fp8 trains as well as bf16 when its scales are fine-grained.** DeepSeek-V3 ran its
#    matrix multiplications with E4M3 operands (8 bits: 4 exponent, 3 mantissa), giving every
#    1×128 tile of activations and every 128×128 block of weights its own scale, and reported a
#    loss within a quarter of a percent of the bf16 run.
# 3. **Fine-grained scaling is what makes fp8 work.** One scale for a whole tensor lets a single
#    outlier decide how coarsely everything else is rounded.
#
# Everything here runs the library's own code: the training loop switches precision with one
# field (`precision: fp32 | bf16 | fp8`), and on a GPU the fp8 matrix multiplications are
# Triton kernels that take fp8 operands with those fine-grained scales. On a CPU the same layer
# runs an emulated path that quantises and dequantises with exactly the same scales, so the
# numbers below are the numbers the GPU kernels would produce, up to the order of summation.

# %% [markdown] tags=["zh"]
# # 数值精度：fp32、bf16 与 fp8
#
# 训练的每一步，绝大部分计算都是矩阵乘法；这些乘法用什么数值格式，既决定训练速度，也决定显存占用。
# 本实验检验与此相关的三个说法：
#
# 1. **bf16 是标准做法。** 混合精度训练把主权重和优化器状态留在 fp32，前向和反向传播则用 16 位格式。
#    bf16 之所以胜过 fp16，是因为它保留了 fp32 的 8 个指数位，梯度既不会上溢也不会下溢，用不着损失缩放。
# 2. **只要缩放因子足够细，fp8 训练不输 bf16。** DeepSeek-V3 的矩阵乘法以 E4M3 格式
#    （8 位：4 位指数、3 位尾数）作为操作数，激活值每个 1×128 的小块、权重每个 128×128 的大块各有
#    自己的缩放因子；论文报告的损失与 bf16 训练相差不到千分之二点五。
# 3. **fp8 行得通，靠的是细粒度缩放。** 整个张量只用一个缩放因子时，一个离群值就决定了其余所有数值
#    被舍入得有多粗。
#
# 这里用的全是本库自己的代码：训练循环只需改一个字段（`precision: fp32 | bf16 | fp8`）就能切换精度；
# 在 GPU 上，fp8 矩阵乘法是 Triton 内核，操作数为 fp8，缩放粒度如上所述。在 CPU 上，同一个层走模拟
# 路径：用完全相同的缩放因子先量化、再反量化。因此下面的数字与 GPU 内核算出的结果一致，差别只在
# 求和的先后次序。

# %% tags=["parameters"]
steps: int = 300  # optimizer steps of each training run
batch_size: int = 16  # sequences per optimizer step
seq_len: int = 64  # tokens per training sequence
d_model: int = 128  # model width: at least 128, so a 1×128 tile is finer than a whole row
n_layer: int = 2  # transformer blocks
lr: float = 0.003  # peak learning rate (AdamW, cosine schedule)
seed: int = 0  # initialisation and data-order seed, the same for all three runs

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display

import phasebook.book as pb
from phasebook.errors import PhasebookError
from phasebook.i18n import N_, _
from phasebook.kernels.fp8 import fake_quantize
from phasebook.store import Store
from phasebook.train.precision import PRECISIONS
from phasebook.train.pretraining import PRESETS, pretrain, token_stream

ctx = pb.setup()
if d_model < 128 or d_model % 4:
    raise PhasebookError(f"d_model={d_model}: use a multiple of 4 of at least 128, so that a 1×128 "
                         "tile is a part of a row, not the whole row.")
if not torch.cuda.is_available():
    # Matrices this small gain little from intra-op threads; on a shared CPU two threads contend.
    torch.set_num_threads(1)

store = Store()
reference = PRESETS["base"].replace(
    model={"n_layer": n_layer, "d_model": d_model, "n_head": 4, "max_seq_len": seq_len},
    train={"steps": steps, "batch_size": batch_size, "seq_len": seq_len, "seed": seed,
           "eval_interval": max(1, steps // 15), "eval_batches": 4,
           "log_interval": max(1, steps // 60), "checkpoint_interval": steps,
           "progress": False, "optimizer": {"lr": lr},
           "schedule": {"name": "cosine", "warmup_steps": max(1, steps // 10)}})
runs = {p: pretrain(reference.replace(train={"precision": p}), store) for p in PRECISIONS}
# The same bf16 run from another seed: how far apart two runs land when only chance differs.
other_seed = pretrain(reference.replace(train={"precision": "bf16", "seed": seed + 1}), store)

pb.glue("n_params", int(reference.model.num_params()))
pb.glue("steps", steps)

# %% [markdown] tags=["en"]
# ## The formats
#
# A floating-point number spends its bits on a sign, an exponent (the range: how large and how
# small a value can be) and a mantissa (the precision: how far apart neighbouring values are).
# The table is read from PyTorch's own description of each type.

# %% [markdown] tags=["zh"]
# ## 几种格式
#
# 浮点数把它的位分给三部分：符号、指数（决定范围，即能表示多大和多小的数）和尾数（决定精度，即相邻
# 两个可表示的数相隔多远）。下表直接读取 PyTorch 对每种类型的描述。

# %%
FORMATS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
           "fp8 E4M3": torch.float8_e4m3fn, "fp8 E5M2": torch.float8_e5m2}


def layout(dtype: torch.dtype) -> tuple[int, int, int]:
    """Total, exponent and mantissa bits of a floating-point dtype."""
    info = torch.finfo(dtype)
    mantissa = round(-np.log2(info.eps))
    return info.bits, info.bits - 1 - mantissa, mantissa


header = [_("format"), _("bits"), _("exponent bits"), _("mantissa bits"), _("largest value"),
          _("smallest normal value"), _("relative spacing")]
rows = []
for name, dtype in FORMATS.items():
    info = torch.finfo(dtype)
    bits, exponent, mantissa = layout(dtype)
    rows.append([name, str(bits), str(exponent), str(mantissa), f"{info.max:.4g}",
                 f"{info.tiny:.3g}", f"{info.eps:.3g}"])
table = "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                  + ["| " + " | ".join(r) + " |" for r in rows])
display(Markdown(table))

e4m3 = torch.finfo(torch.float8_e4m3fn)
pb.glue("e4m3_max", f"{e4m3.max:g}")
pb.glue("e4m3_spacing", f"{e4m3.eps:g}")
pb.glue("bf16_spacing", f"{torch.finfo(torch.bfloat16).eps:.3g}")
pb.glue("fp16_max", f"{torch.finfo(torch.float16).max:g}")
pb.glue("e4m3_levels", 2 ** layout(torch.float8_e4m3fn)[2])

# %% [markdown] tags=["en"]
# bf16 and fp32 share a range; bf16 simply rounds more coarsely, with neighbouring values
# {glue:text}`bf16_spacing` apart relative to their size. fp16 is more precise but tops out at
# {glue:text}`fp16_max`, which is why fp16 training needs loss scaling. E4M3 is coarse on both
# counts: it reaches only {glue:text}`e4m3_max` and divides each power of two into
# {glue:text}`e4m3_levels` steps, a relative spacing of {glue:text}`e4m3_spacing`. So an fp8
# tensor is always stored with a scale: the values are divided by `amax / 448` before
# rounding, which maps the largest magnitude onto the largest representable value, and
# multiplied back afterwards. The question is how many values share one scale.

# %% [markdown] tags=["zh"]
# bf16 与 fp32 的范围相同，只是舍入更粗：相邻两个可表示数之间的相对间距为 {glue:text}`bf16_spacing`。
# fp16 更精确，但最大只能表示 {glue:text}`fp16_max`，所以用 fp16 训练离不开损失缩放。E4M3 在范围和
# 精度上都很粗：最大值只有 {glue:text}`e4m3_max`，每个 2 的幂次区间只分成 {glue:text}`e4m3_levels`
# 档，相对间距为 {glue:text}`e4m3_spacing`。因此 fp8 张量总是连同一个缩放因子一起存储：舍入之前先把
# 数值除以 `amax / 448`，让绝对值最大的数正好落到可表示的最大值上，用完再乘回去。问题在于：多少个
# 数值共用一个缩放因子。

# %% [markdown] tags=["en"]
# ## Quantisation error by tile size
#
# We take the inputs of every linear layer of the trained fp32 model on validation text, and the
# layers' weights, and round them to E4M3 with one scale per tile, for tiles from 1×16 values up
# to the whole tensor. The error is the root-mean-square rounding error relative to the
# tensor's own RMS, averaged over the layers.

# %% [markdown] tags=["zh"]
# ## 量化误差与小块大小
#
# 取训练后的 fp32 模型在验证文本上每个线性层的输入，以及这些层的权重，按“每个小块一个缩放因子”的
# 方式舍入成 E4M3，小块从 1×16 个数一直放大到整个张量。误差的度量是舍入误差的均方根除以张量自身的
# 均方根，再对各层取平均。

# %%
fp32_model = runs["fp32"].model
val_tokens = token_stream(reference.corpus, "validation", runs["fp32"].tokenizer, store)
window = torch.as_tensor(val_tokens[: 8 * seq_len].astype(np.int64)).view(8, seq_len)
inputs: dict[str, torch.Tensor] = {}
weights: dict[str, torch.Tensor] = {}


def keep_input(name: str):
    """A forward hook that stores the layer's input as a (tokens, features) matrix."""
    def hook(module, args, output):
        inputs[name] = args[0].detach().reshape(-1, args[0].shape[-1])
    return hook


hooks = []
for name, module in fp32_model.blocks.named_modules():
    if isinstance(module, torch.nn.Linear):
        weights[name] = module.weight.detach()
        hooks.append(module.register_forward_hook(keep_input(name)))
with torch.no_grad():
    fp32_model(window)
for hook in hooks:
    hook.remove()

TILES = {"1×16": (1, 16), "1×32": (1, 32), "1×128": (1, 128), _("row"): (1, None),
         "128×128": (128, 128), _("tensor"): (None, None)}
ROW, TENSOR = _("row"), _("tensor")


def relative_error(x: torch.Tensor, tile: tuple[int | None, int | None],
                   keep: torch.Tensor | None = None) -> float:
    """RMS of the E4M3 rounding error over RMS of x, over the entries `keep` selects (default: all).

    A None in `tile` stands for the whole extent of that dimension.
    """
    shape = (tile[0] or x.shape[0], tile[1] or x.shape[1])
    err, ref = (fake_quantize(x, shape) - x).square(), x.square()
    if keep is not None:
        err, ref = err[keep], ref[keep]
    return float((err.mean() / ref.mean()).sqrt())


def mean_error(tensors: dict[str, torch.Tensor], tile) -> float:
    return float(np.mean([relative_error(x, tile) for x in tensors.values()]))


errors = {"activations": [mean_error(inputs, t) for t in TILES.values()],
          "weights": [mean_error(weights, t) for t in TILES.values()]}
labels = list(TILES)
fig, ax = plt.subplots(figsize=(6.4, 3.4))
for i, (key, label, color) in enumerate((("activations", _("activations"), "#1f77b4"),
                                         ("weights", _("weights"), "#7f7f7f"))):
    ax.bar(np.arange(len(labels)) + (i - 0.5) * 0.38, 100 * np.array(errors[key]), 0.38,
           label=label, color=color)
ax.set_xticks(np.arange(len(labels)), labels)
ax.set_xlabel(_("Values sharing one scale (tile)"))
ax.set_ylabel(_("Relative RMS rounding error (%)"))
ax.legend(frameon=False, loc="lower center", ncols=2, bbox_to_anchor=(0.5, 1.0))
pb.figure(fig, "precision-tile-error",
          title=N_("E4M3 rounding error against the size of the tile that shares a scale"),
          caption=N_("Inputs of every linear layer of the trained fp32 model on validation text, "
                     "and the layers' weights, rounded to E4M3 with one scale per tile; the error "
                     "is averaged over layers. “row” is one scale per row, “tensor” one for the "
                     "whole tensor."),
          data={"tile": labels, **errors})

e4m3_range = e4m3.max / e4m3.smallest_normal
pb.glue("err_1x128", 100 * errors["activations"][labels.index("1×128")], digits=2)
pb.glue("err_tensor", 100 * errors["activations"][labels.index(TENSOR)], digits=2)
pb.glue("err_w_block", 100 * errors["weights"][labels.index("128×128")], digits=2)
pb.glue("e4m3_range", round(e4m3_range))

# %% [markdown] tags=["en"]
# Without outliers the tile size barely matters: 1×128 tiles leave an error of
# {glue:text}`err_1x128` % on the activations, one scale for the whole tensor
# {glue:text}`err_tensor` %, and 128×128 blocks {glue:text}`err_w_block` % on the weights. That
# floor is set by the three mantissa bits. E4M3 is a floating-point format, so each value is
# rounded relative to its own size wherever the scale puts it, as long as it stays above the
# smallest normal number. The scale maps a tile's largest magnitude to 448, so a tile can hold
# values that span a factor of {glue:text}`e4m3_range` before the small ones slip into the
# subnormal range and lose precision. An integer format such as INT8 has no such slack: its steps
# are evenly spaced, so any outlier coarsens everything that shares its scale.
#
# Activations of large models do carry a few outlier channels, far larger than the rest. Our small
# model has none to speak of, so we plant one: one input channel is set to a multiple of the
# activations' RMS, from 1 to 100,000, and we measure the error on all the other channels. We do
# this for the inputs of the MLP's down-projection, the only layers here whose rows are longer
# than one tile ({glue:text}`wide_k` values, so a 1×128 tile holds {glue:text}`tile_share` % of a
# row). In a model as wide as DeepSeek-V3, whose hidden size is 7168, a tile is under 2 % of a
# row.

# %% [markdown] tags=["zh"]
# 没有离群值时，小块大小几乎无关紧要：激活值按 1×128 小块量化，误差为 {glue:text}`err_1x128` %；整个
# 张量共用一个缩放因子，误差为 {glue:text}`err_tensor` %；权重按 128×128 大块量化，误差为
# {glue:text}`err_w_block` %。这个下限由 3 位尾数决定。E4M3 是浮点格式，只要数值不低于最小的正规数，
# 无论缩放因子把它放到哪里，它都按自身大小的比例舍入。缩放因子把小块中绝对值最大的数映射到 448，
# 因此一个小块里的数值可以跨越 {glue:text}`e4m3_range` 倍的范围，较小的数才会滑进次正规数区间、开始
# 丢失精度。INT8 这类整数格式就没有这样的余量：它的刻度是等间距的，任何离群值都会让共用缩放因子的
# 所有数值变粗。
#
# 大模型的激活里确实存在少数离群通道，比其余数值大得多。我们的小模型里没有像样的离群通道，所以人为
# 植入一个：把某一个输入通道设为激活均方根的若干倍，从 1 倍一直到 10 万倍，再测量其余所有通道上的
# 误差。实验对象是 MLP 下投影层的输入，因为在这个模型里，只有这些层的一行比一个小块长（每行
# {glue:text}`wide_k` 个数，一个 1×128 小块占一行的 {glue:text}`tile_share` %）。在 DeepSeek-V3 这样
# 隐藏维度为 7168 的模型里，一个小块还不到一行的 2 %。

# %%
OUTLIERS = np.geomspace(1.0, 1e5, 16)
COMPARED = {"1×128": (1, 128), ROW: (1, None), TENSOR: (None, None)}


def planted(x: torch.Tensor, size: float) -> torch.Tensor:
    """x with channel 0 set to ±size·RMS(x) (keeping each entry's sign)."""
    out = x.clone()
    out[:, 0] = torch.where(x[:, 0] >= 0, 1.0, -1.0) * size * x.square().mean().sqrt()
    return out


wide = {name: x for name, x in inputs.items() if name.endswith("w_down")}
wide_k = next(iter(wide.values())).shape[1]
others = {name: torch.ones_like(x, dtype=torch.bool) for name, x in wide.items()}
for mask in others.values():
    mask[:, 0] = False
sweep = {label: np.array([np.mean([relative_error(planted(x, size), tile, others[name])
                                   for name, x in wide.items()]) for size in OUTLIERS])
         for label, tile in COMPARED.items()}
pb.glue("wide_k", wide_k)
pb.glue("tile_share", 100 * min(128, wide_k) / wide_k, digits=0)

fig, ax = plt.subplots(figsize=(6.4, 3.6))
for (label, values), color in zip(sweep.items(), ("#2ca02c", "#ff7f0e", "#d62728"), strict=True):
    ax.plot(OUTLIERS, 100 * values, marker="o", ms=3, color=color, label=label)
ax.axvline(e4m3_range, color="black", lw=0.8, ls=":")
ax.set_xscale("log")
ax.set_yscale("log")
pb.plain_log_axis(ax.yaxis)
ax.set_xlabel(_("Planted outlier (multiples of the activations' RMS)"))
ax.set_ylabel(_("Error on the other channels (%)"))
ax.legend(title=_("one scale per"), frameon=False)
pb.figure(fig, "precision-outlier-sweep",
          title=N_("How a single outlier channel degrades E4M3 with coarse and fine scales"),
          caption=N_("One input channel of the MLP down-projections is set to a multiple of the "
                     "activations' RMS; the relative RMS rounding error of all other channels, "
                     "averaged over layers, with one scale per 1×128 tile, per row or per tensor. "
                     "The dotted line marks E4M3's normal range, 448 over the smallest normal "
                     "number. Logarithmic axes."),
          data={"outlier": OUTLIERS, **sweep})

tensor_err, tile_err = sweep[TENSOR], sweep["1×128"]
broken = np.nonzero(tensor_err > 2 * tensor_err[0])[0]
big = len(OUTLIERS) - 1
pb.glue("breakdown", f"{OUTLIERS[broken[0]]:,.0f}" if len(broken) else "—")
pb.glue("max_outlier", f"{OUTLIERS[big]:,.0f}")
pb.glue("err_big_tensor", 100 * tensor_err[big], digits=2)
pb.glue("err_big_row", 100 * sweep[ROW][big], digits=2)
pb.glue("err_big_1x128", 100 * tile_err[big], digits=2)
# Mean squared errors add over entries, so the extra error of the tiled scheme, as a share of the
# per-tensor one, is the share of entries the outlier's scale reaches (the tile's share of a row).
damage_share = ((tile_err[big] ** 2 - tile_err[0] ** 2) / (tensor_err[big] ** 2 - tensor_err[0] ** 2))
pb.glue("damage_share", 100 * damage_share, digits=0)
if len(broken) and damage_share < 0.6:
    granularity_verdict = _("supported only for extreme outliers: below about {size} times the RMS one "
                            "scale per tensor loses nothing, and beyond it 1×128 tiles confine the "
                            "damage to the outlier's own tile").format(size=f"{OUTLIERS[broken[0]]:,.0f}")
else:
    granularity_verdict = _("not supported within this sweep")
pb.glue("granularity_verdict", granularity_verdict)

# %% [markdown] tags=["en"]
# One scale per tensor holds out for a long time: its error on the other channels first doubles
# when the outlier reaches about {glue:text}`breakdown` times the RMS, past the dotted line where
# ordinary values start to fall below E4M3's smallest normal number. At
# {glue:text}`max_outlier` times the RMS it has grown to {glue:text}`err_big_tensor` % (one scale
# per row gives {glue:text}`err_big_row` %, the same, since the outlier sits in every row), while
# 1×128 tiles hold it to {glue:text}`err_big_1x128` %. The extra error left with tiles is
# {glue:text}`damage_share` % of the per-tensor extra, close to the {glue:text}`tile_share` % of
# each row that shares a tile with the outlier: fine scales confine the damage to the outlier's
# own tile, and the wider the model, the smaller that tile's share. So the claim that
# fine-grained scaling is what makes fp8 work is **{glue:text}`granularity_verdict`**. Whether a
# model needs fine scales depends on how extreme its largest activations are; a per-tile scale is
# cheap insurance, one float32 number per 128 values.

# %% [markdown] tags=["zh"]
# 整张量共用一个缩放因子的方案能撑很久：离群值要达到均方根的大约 {glue:text}`breakdown` 倍，其余通道
# 上的误差才首次翻倍，这已经越过了图中的虚线，也就是普通数值开始跌破 E4M3 最小正规数的位置。离群值达到
# 均方根的 {glue:text}`max_outlier` 倍时，整张量方案的误差涨到 {glue:text}`err_big_tensor` %（每行一个
# 缩放因子为 {glue:text}`err_big_row` %，两者相同，因为每一行都含有这个离群值），而 1×128 小块把误差压在
# {glue:text}`err_big_1x128` %。按小块量化时多出来的误差，只有整张量方案多出部分的
# {glue:text}`damage_share` %，与每行中和离群值同处一个小块的数值所占的比例 {glue:text}`tile_share` %
# 相当：细粒度缩放把损害限制在离群值所在的那个小块里，模型越宽，这个小块所占的比例就越小。因此，
# “细粒度缩放是 fp8 行得通的关键”这一说法的结论是：**{glue:text}`granularity_verdict`**。一个模型是否
# 需要细粒度缩放，取决于它最大的激活值有多极端；而按小块缩放代价很低，每 128 个数只多存一个 float32，
# 算是一份便宜的保险。

# %% [markdown] tags=["en"]
# ## Training in fp32, bf16 and fp8
#
# The same model ({glue:text}`n_params` parameters) is trained three times for
# {glue:text}`steps` steps from the same initialisation on the same batches; only `precision`
# differs. In the fp8 run every linear layer inside the transformer blocks computes its forward
# product, its input gradient and its weight gradient from E4M3 operands with the scales
# described above; the embedding, the norms, attention and the output head run in bf16, and the
# master weights and AdamW's state stay in fp32.

# %% [markdown] tags=["zh"]
# ## 用 fp32、bf16 和 fp8 训练
#
# 同一个模型（{glue:text}`n_params` 个参数）从同一个初始化出发、在同样的批次上训练三遍，每遍
# {glue:text}`steps` 步，只有 `precision` 不同。在 fp8 运行中，Transformer 块里的每个线性层都用带上述
# 缩放因子的 E4M3 操作数来计算前向乘积、输入梯度和权重梯度；词嵌入、归一化层、注意力和输出头用 bf16，
# 主权重和 AdamW 的状态留在 fp32。

# %%
def val_curve(run) -> tuple[np.ndarray, np.ndarray]:
    rows = [m for m in run.metrics if "val_loss" in m]
    return np.array([m["step"] for m in rows]), np.array([m["val_loss"] for m in rows])


colors = {"fp32": "#000000", "bf16": "#1f77b4", "fp8": "#d62728"}
fig, (ax, gap_ax) = plt.subplots(1, 2, figsize=(9.6, 3.6))
curves = {p: val_curve(r) for p, r in runs.items()}
for p, (s, v) in curves.items():
    ax.plot(s, v, color=colors[p], lw=1.4, label=p)
ax.set_yscale("log")
pb.plain_log_axis(ax.yaxis)
ax.set_xlabel(_("Optimizer step"))
ax.set_ylabel(_("Validation loss (nats/token)"))
ax.legend(frameon=False)
for p in ("bf16", "fp8"):
    s, v = curves[p]
    gap_ax.plot(s, 100 * (v / curves["fp32"][1] - 1), color=colors[p], lw=1.4, label=p)
gap_ax.axhline(0, color="black", lw=0.8)
gap_ax.set_xlabel(_("Optimizer step"))
gap_ax.set_ylabel(_("Relative difference from fp32 (%)"))
gap_ax.legend(frameon=False)
fig.tight_layout()
pb.figure(fig, "precision-loss-curves",
          title=N_("Validation loss of the same model trained in fp32, bf16 and fp8"),
          caption=N_("Left: validation loss during training, logarithmic axis. Right: the bf16 and "
                     "fp8 losses relative to fp32 at each evaluation. Same initialisation, data and "
                     "schedule; fp8 is emulated on a CPU with the GPU kernels' scaling."),
          data={"step": curves["fp32"][0], **{f"{p}_val_loss": curves[p][1] for p in PRECISIONS}})

final = {p: float(r.summary["final_val_loss"]) for p, r in runs.items()}
gap_fp8 = final["fp8"] / final["bf16"] - 1
gap_bf16 = final["bf16"] / final["fp32"] - 1
s, fp8_curve = curves["fp8"]
late = s >= steps // 2
worst_late = float(np.max(np.abs(fp8_curve[late] / curves["bf16"][1][late] - 1)))
for p in PRECISIONS:
    pb.glue(f"final_{p}", final[p])
pb.glue("gap_fp8_abs", 100 * abs(gap_fp8), digits=2)
pb.glue("gap_bf16", 100 * gap_bf16, digits=2)
pb.glue("worst_late", 100 * worst_late, digits=2)
pb.glue("fp8_direction", _("above") if gap_fp8 > 0 else _("below"))
DEEPSEEK_GAP = 0.0025  # DeepSeek-V3's reported bound on the relative loss error of fp8 against bf16
pb.glue("deepseek_gap", 100 * DEEPSEEK_GAP, digits=2)
if abs(gap_fp8) <= DEEPSEEK_GAP:
    fp8_verdict = _("supported: the gap is inside DeepSeek-V3's bound")
elif abs(gap_fp8) <= 4 * DEEPSEEK_GAP:
    fp8_verdict = _("roughly supported: the gap is small but larger than DeepSeek-V3's bound")
else:
    fp8_verdict = _("not supported at this scale: the gap is well beyond DeepSeek-V3's bound")
pb.glue("fp8_verdict", fp8_verdict)
pb.glue("bf16_verdict", _("supported") if abs(gap_bf16) <= 0.01 else _("not supported at this scale"))
seed_gap = float(other_seed.summary["final_val_loss"]) / final["bf16"] - 1
pb.glue("seed_gap", 100 * abs(seed_gap), digits=2)
if abs(gap_fp8) < abs(seed_gap):
    pb.glue("noise_compare", _("smaller than that, so at this scale fp8 cannot be told apart from bf16"))
else:
    pb.glue("noise_compare", _("larger than that, so here fp8 costs something measurable"))

# %% [markdown] tags=["en"]
# The three runs end at validation losses of {glue:text}`final_fp32` (fp32),
# {glue:text}`final_bf16` (bf16) and {glue:text}`final_fp8` (fp8). bf16 differs from fp32 by
# {glue:text}`gap_bf16` %: the claim that bf16 trains like fp32 without loss scaling is
# **{glue:text}`bf16_verdict`** here. The fp8 run ends {glue:text}`gap_fp8_abs` %
# {glue:text}`fp8_direction` bf16, and over the second half of training the largest gap at any
# evaluation is {glue:text}`worst_late` %. DeepSeek-V3 reported a relative loss difference below
# {glue:text}`deepseek_gap` % against bf16; the claim is **{glue:text}`fp8_verdict`**. For scale,
# the same bf16 run started from another seed ends {glue:text}`seed_gap` % away from the first;
# the fp8 gap is {glue:text}`noise_compare`.
#
# What this cannot show: the model is tiny and trains for minutes, while fp8 rounding errors can
# accumulate over trillions of tokens. DeepSeek-V3 kept the embedding, the output head, the
# normalisation and attention operators (and its mixture-of-experts gating) in higher precision;
# our split is the same, minus the gating that a dense model does not have.

# %% [markdown] tags=["zh"]
# 三次运行的最终验证损失分别为 {glue:text}`final_fp32`（fp32）、{glue:text}`final_bf16`（bf16）和
# {glue:text}`final_fp8`（fp8）。bf16 与 fp32 相差 {glue:text}`gap_bf16` %，因此“bf16 不用损失缩放也能
# 练得和 fp32 一样好”这一说法，在这里的结论是：**{glue:text}`bf16_verdict`**。fp8 的最终损失比 bf16
# {glue:text}`fp8_direction` {glue:text}`gap_fp8_abs` %；在训练后半程的各次评估中，两者的最大差距为
# {glue:text}`worst_late` %。DeepSeek-V3 报告 fp8 与 bf16 的相对损失差低于 {glue:text}`deepseek_gap` %；
# 这一说法在这里的结论是：**{glue:text}`fp8_verdict`**。作为参照，同样的 bf16 训练换一个随机种子重跑，
# 最终损失与第一次相差 {glue:text}`seed_gap` %；fp8 的差距{glue:text}`noise_compare`。
#
# 这个实验说明不了的是：模型很小，只练了几分钟，而 fp8 的舍入误差可能要在上万亿个词元上才会积累起来。
# DeepSeek-V3 把词嵌入、输出头、归一化和注意力运算（以及混合专家的门控）留在更高精度下计算；我们的划分
# 与之相同，只是稠密模型没有门控这一项。

# %% [markdown] tags=["en"]
# ## Kernel speed on a GPU
#
# The point of fp8 is speed: an H100's tensor cores multiply E4M3 matrices at twice their bf16
# rate. Whether our kernels collect that is measured by `phasebook bench kernels` on a GPU, whose
# results are stored in the repository with the hardware, software versions, date and commit
# that produced them. {glue:text}`gpu_status`

# %% [markdown] tags=["zh"]
# ## GPU 上的内核速度
#
# fp8 的意义在于速度：H100 的张量核心做 E4M3 矩阵乘法的速度是 bf16 的两倍。我们的内核能否拿到这份
# 加速，要在 GPU 上用 `phasebook bench kernels` 来测；测量结果连同产生它的硬件、软件版本、日期和
# 提交号一起存放在代码仓库中。{glue:text}`gpu_status`

# %%
BENCH = Path("results/gpu/bench-kernels.json")
COMMAND = "PYTHONPATH=lib python3 -m phasebook.cli bench kernels --out results/gpu/bench-kernels.json"
record = json.loads(BENCH.read_text(encoding="utf-8")) if BENCH.is_file() else None
if record is None or record.get("device") == "cpu":
    pb.glue("gpu_status", _("No GPU measurement is stored in this copy of the book, so no figure "
                            "is drawn here; on a machine with an NVIDIA GPU, `{command}` measures "
                            "one, and the next build shows it.").format(command=COMMAND))
else:
    IMPLS = {"torch_bf16": "cuBLAS bf16", "ours_bf16": _("ours, bf16"),
             "scaled_mm_rowwise": _("torch fp8, row-wise scales"),
             "ours_fp8": _("ours, fp8 1×128/128×128"), "ours_fp8_quant": _("ours, fp8 with quantisation")}
    gemm_rows = [r for r in record["rows"] if r["family"] in ("gemm", "fp8") and r["status"] == "ok"]
    cases = list(dict.fromkeys(r["case"] for r in gemm_rows))
    fig, ax = plt.subplots(figsize=(7.6, 3.8))
    width = 0.8 / len(IMPLS)
    for i, (impl, label) in enumerate(IMPLS.items()):
        tflops = {r["case"]: r["tflops"] for r in gemm_rows if r["impl"] == impl}
        ax.bar(np.arange(len(cases)) + (i - (len(IMPLS) - 1) / 2) * width,
               [tflops.get(c, 0.0) for c in cases], width, label=label)
    ax.set_xticks(np.arange(len(cases)), cases, rotation=20, fontsize=8, ha="right")
    ax.set_ylabel(_("TFLOP/s (M×N×K)"))
    ax.legend(frameon=False, fontsize=8)
    gpu, date = record["hardware"].get("gpu", "GPU"), record["date"][:10]
    pb.figure(fig, "precision-kernel-bench",
              title=N_("GEMM throughput of the bf16 and fp8 kernels on a GPU"),
              caption=_("Stored result, not rerun by this build: measured on {gpu} on {date} "
                        "(commit {commit}, torch {torch}, Triton {triton}) by `{command}`.").format(
                  gpu=gpu, date=date, commit=record["commit"][:10], torch=record["torch"],
                  triton=record["triton"], command=record["command"]),
              data={"case": cases, "source": str(BENCH),
                    **{impl: [next((r["tflops"] for r in gemm_rows if r["impl"] == impl and r["case"] == c),
                                   None) for c in cases] for impl in IMPLS}})
    pb.glue("gpu_status", _("The figure below was measured on {gpu} on {date}.").format(gpu=gpu, date=date))
