# %% [markdown] tags=["en"]
# # Interpolation and extrapolation
#
# Everything else in this book leans on one picture: a model fitted to data is trustworthy
# where the data was, and much less so where it was not. Before we train any language model
# we test that picture in its simplest form. We draw noisy samples of a smooth function on
# the interval $[-1, 1]$, fit polynomials of degree $0, 1, \dots, d_{\max}$ by least squares,
# and then score every fit twice: on a dense grid *inside* the interval (interpolation) and on
# the two strips *outside* it, out to $\pm$`reach` (extrapolation).
#
# The error we report is the root-mean-square distance to the true function,
#
# $$\mathrm{RMSE} = \sqrt{\frac{1}{n}\sum_{i=1}^{n}\bigl(\hat f(x_i) - f(x_i)\bigr)^2}.$$

# %% [markdown] tags=["zh"]
# # 内插与外推
#
# 本书后面的所有讨论都建立在一个直观判断之上：用数据拟合出来的模型，在数据覆盖过的地方值得信赖，
# 离开那片区域就靠不住了。在训练任何语言模型之前，我们先用最朴素的方式检验这个判断：在区间
# $[-1, 1]$ 上对一个光滑函数加噪采样，用最小二乘法依次拟合 $0, 1, \dots, d_{\max}$ 次多项式，
# 然后给每个拟合结果打两次分——一次在区间*内部*的密集网格上（内插），一次在区间*外侧*、
# 一直延伸到 $\pm$`reach` 的两段上（外推）。
#
# 误差取拟合曲线与真实函数之间的均方根误差：
#
# $$\mathrm{RMSE} = \sqrt{\frac{1}{n}\sum_{i=1}^{n}\bigl(\hat f(x_i) - f(x_i)\bigr)^2}.$$

# %% tags=["parameters"]
max_degree: int = 15  # highest polynomial degree fitted
n_train: int = 30  # noisy training points drawn inside [-1, 1]
noise: float = 0.05  # standard deviation of the label noise
reach: float = 1.5  # extrapolation test points go out to ±reach
seed: int = 0  # random seed of the training sample

# %%
import matplotlib.pyplot as plt
import numpy as np

import phasebook.book as pb
from phasebook.book.widgets import curve_slider
from phasebook.i18n import N_, _, format_number
from phasebook.interpolation import InterpolationConfig, run

ctx = pb.setup()
cfg = InterpolationConfig(max_degree=max_degree, n_train=n_train, noise=noise, reach=reach,
                          seed=seed)
result = run(cfg)
degrees, err_in, err_out = result["degrees"], result["err_in"], result["err_out"]
best = int(result["best_degree"])

# %% [markdown] tags=["en"]
# ## Error against degree
#
# The first figure puts the three errors side by side. On the training points the error can
# only fall as the degree rises, because every higher-degree family contains the lower ones.
# Inside the interval the error falls too, until the fit starts to chase the noise. Outside
# the interval nothing holds it down.

# %% [markdown] tags=["zh"]
# ## 误差随次数的变化
#
# 第一张图把三种误差放在一起比较。在训练点上，次数越高误差只会越低，因为高次多项式族包含了所有
# 低次多项式。区间内部的误差起初也随之下降，直到拟合开始追逐噪声为止；而区间外部的误差则没有任何
# 东西能把它压住。

# %%
fig, ax = plt.subplots(figsize=(6.4, 3.8))
ax.semilogy(degrees, result["err_train"], "o-", color="#7f7f7f", ms=3,
            label=_("on the training points"))
ax.semilogy(degrees, err_in, "o-", color="#1f77b4", ms=4,
            label=_("inside the training range (interpolation)"))
ax.semilogy(degrees, err_out, "s-", color="#d62728", ms=4,
            label=_("outside the training range (extrapolation)"))
ax.axvline(best, color="#1f77b4", lw=0.8, ls=":")
ax.set_xlabel(_("Polynomial degree"))
ax.set_ylabel(_("Root-mean-square error"))
ax.legend(frameon=False, fontsize=9)
pb.figure(fig, "interpolation-error-vs-degree",
          title=N_("Error inside and outside the training range, by polynomial degree"),
          caption=N_("Polynomials of rising degree fitted by least squares to noisy samples of "
                     "a smooth function on [-1, 1]; the error is measured against the true "
                     "function on a dense grid inside that interval and beyond it. Logarithmic "
                     "vertical axis."),
          data={"degree": degrees, "rmse_train": result["err_train"], "rmse_inside": err_in,
                "rmse_outside": err_out})

# %%
ratio_best = err_out[best] / err_in[best]
ratio_top = err_out[-1] / err_in[-1]
pb.glue("best_degree", best)
pb.glue("err_in_best", float(err_in[best]))
pb.glue("err_out_best", float(err_out[best]))
pb.glue("ratio_best", float(ratio_best), digits=0)
pb.glue("ratio_top", float(ratio_top), digits=0)
pb.glue("top_degree", int(degrees[-1]))
pb.glue("n_train", n_train)
# The verdict is computed, not written: at other parameters the page may have to say otherwise.
supported = ratio_best > 10 and err_out[-1] > err_out[1]
pb.glue("verdict", _("supported") if supported else _("not supported at these settings"))

# %% [markdown] tags=["en"]
# With {glue:text}`n_train` training points, the best interpolating degree is
# {glue:text}`best_degree`, with an error of {glue:text}`err_in_best` inside the interval. The
# very same polynomial is off by {glue:text}`err_out_best` outside it: about
# {glue:text}`ratio_best` times worse. At degree {glue:text}`top_degree` the ratio is
# {glue:text}`ratio_top`. The claim that fitting is reliable inside the training range and
# fragile outside it is **{glue:text}`verdict`** by this run.
#
# ## Watching the fits
#
# Move the slider to change the degree. Low degrees are too stiff to follow the function
# anywhere; moderate ones match it closely between the training points; high ones still pass
# close to every point, yet swing wildly as soon as they leave the shaded training range.

# %% [markdown] tags=["zh"]
# 用 {glue:text}`n_train` 个训练点时，内插效果最好的是 {glue:text}`best_degree` 次多项式，区间内误差为
# {glue:text}`err_in_best`。同一个多项式到了区间外，误差变成 {glue:text}`err_out_best`，大约差了
# {glue:text}`ratio_best` 倍；到 {glue:text}`top_degree` 次时，这个倍数是 {glue:text}`ratio_top`。
# “拟合在训练范围内可靠、在范围外脆弱”这一论断，在本次运行中的结论是：**{glue:text}`verdict`**。
#
# ## 动手看拟合曲线
#
# 拖动滑块即可切换多项式次数。次数太低时曲线过于僵硬，哪里都贴不上真实函数；次数适中时，
# 它在训练点之间与真实函数几乎重合；次数很高时，它依旧紧贴每一个训练点，可一旦离开阴影标出的
# 训练范围，就开始剧烈摆动。

# %%
show = [d for d in (1, 3, best, int(degrees[-1])) if d <= degrees[-1]]
show = list(dict.fromkeys(show))
fig, ax = plt.subplots(figsize=(6.4, 3.8))
ax.axvspan(-1, 1, color="#eeeeee", label=_("training range"))
ax.plot(result["x"], result["truth"], color="#7f7f7f", lw=2.5, label=_("true function"))
for d in show:
    ax.plot(result["x"], result["curves"][d], lw=1.4,
            label=_("degree {degree}").format(degree=d))
ax.plot(result["x_train"], result["y_train"], "o", color="#1f77b4", ms=3,
        label=_("training points"))
ax.set_ylim(-3, 3)
ax.set_xlabel("x")
ax.legend(frameon=False, fontsize=8, ncol=2)
info = [_("inside: {inside} · outside: {outside}").format(
    inside=format_number(float(a)), outside=format_number(float(b)))
    for a, b in zip(err_in, err_out, strict=True)]
explorer = curve_slider(
    "interpolation-explorer", result["x"], result["curves"], result["truth"],
    (result["x_train"], result["y_train"]), slider_label=_("Degree"),
    reference_label=_("true function"), curve_label=_("fitted polynomial"),
    points_label=_("training points"), y_limits=(-3, 3), shade=(-1.0, 1.0),
    shade_label=_("training range"), start=best, info=info)
pb.figure(fig, "interpolation-fit-explorer",
          title=N_("Polynomial fits inside and beyond the training range"),
          caption=N_("The true function, the training sample and fits of several degrees; the "
                     "interactive version has a slider for the degree. The shaded band is the "
                     "training range."),
          data={"x": result["x"], "truth": result["truth"], "x_train": result["x_train"],
                "y_train": result["y_train"], "degrees_shown": show,
                "curves_shown": np.asarray(result["curves"])[show]},
          interactive_html=explorer)

# %% [markdown] tags=["en"]
# ## What this does and does not show
#
# A polynomial is not a transformer, and one input dimension is not language. What carries
# over is the shape of the failure: a flexible model fitted to a range of data has no reason
# to behave outside that range, and the training error gives no warning. The rest of the book
# asks where "inside the range" ends for a language model — and what pre-training,
# post-training and step-by-step reasoning do to that boundary.
#
# Rerun this notebook with other settings, for example
# `phasebook run interpolation -p n_train 200 -p noise 0.2`, and the numbers above follow.

# %% [markdown] tags=["zh"]
# ## 这个实验能说明什么，不能说明什么
#
# 多项式不是 Transformer，一维输入也不是语言。能迁移过来的是失败的形态：一个足够灵活的模型在某个
# 范围的数据上拟合之后，并没有任何理由在范围之外依然表现良好，而训练误差对此毫无预警。本书接下来
# 要追问的是：对语言模型而言，“范围之内”的边界究竟在哪里？预训练、后训练和逐步推理又分别如何
# 改变这条边界？
#
# 你可以换一组参数重新运行本实验，例如
# `phasebook run interpolation --lang zh -p n_train 200 -p noise 0.2`，上面的数字会随之更新。
