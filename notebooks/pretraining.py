# %% [markdown] tags=["en"]
# # Pre-training: next-token prediction on a synthetic world
#
# Pre-training asks a model one question, over and over: *what comes next?* The claim this
# notebook tests is that answering it well forces the model to pick up the regularities of its
# corpus — the grammar of its sentences, the procedure behind its worked sums, the facts it
# repeats — and that the training loss is, quite literally, a compression rate: a model that
# predicts the next token well can encode the text in few bits.
#
# We train the book's base model from scratch on a bilingual synthetic corpus, then ask three
# things of it. How many bits per byte does it need for text it has never seen, compared with
# general-purpose compressors? Can it carry out the worked arithmetic it read? Does it know the
# facts it was told — and, as a control, does it "know" facts it was never told?

# %% [markdown] tags=["zh"]
# # 预训练：在一个合成世界里做下一个词预测
#
# 预训练只向模型反复提一个问题：*下一个词是什么？* 本笔记本要检验的论断是：想把这个问题答好，
# 模型就不得不学会语料中的规律——句子的语法、算式背后的步骤、反复出现的事实；而训练损失
# 本身就是一种压缩率：能准确预测下一个词的模型，也就能用很少的比特把文本编码下来。
#
# 我们从零开始，在一份中英双语的合成语料上训练本书的基座模型，然后向它提三个问题：对于从未
# 见过的文本，它每个字节需要多少比特，和通用压缩软件相比如何？它能否完成读过的那类分步算术？
# 它是否记住了语料里讲过的事实——作为对照，对于语料里从未出现的事实，它又“知道”多少？

# %% tags=["parameters"]
steps: int = 1000  # optimizer steps of pre-training
n_layer: int = 4  # transformer blocks
d_model: int = 64  # width of the residual stream
lr: float = 0.003  # peak learning rate (AdamW, cosine schedule)
seed: int = 0  # seed of the initialisation and of the batch order
n_eval: int = 200  # held-out word problems scored per language

# %%
import matplotlib.pyplot as plt
import numpy as np

import phasebook.book as pb
from phasebook.data import documents, extract_answer, fact_world, problems
from phasebook.evaluate import bits_per_byte, complete, compressor_bits_per_byte, fact_recall, score_answers
from phasebook.i18n import N_, _
from phasebook.store import Store
from phasebook.train.pretraining import PRESETS, pretrain

ctx = pb.setup()
lang = ctx.lang
base = PRESETS["base"]
cfg = base.replace(model={"n_layer": n_layer, "d_model": d_model},
                   train={"steps": steps, "seed": seed, "optimizer": {"lr": lr}, "progress": False})
run = pretrain(cfg)
model, tokenizer, summary = run.model, run.tokenizer, run.summary
train_docs = documents(cfg.corpus, "train")
val_docs = documents(cfg.corpus, "validation")

# %% [markdown] tags=["en"]
# ## The corpus
#
# Every document is generated from a seed, in English or in Chinese: short everyday sentences
# ("general"), arithmetic word problems with their worked steps ("math"), and biographies of
# fictional people ("facts"). Only some of the fictional people appear in the corpus; the others
# are held back so that we can tell knowing a fact from guessing it. Here is one document of each
# kind, in the language of this page:

# %% [markdown] tags=["zh"]
# ## 语料
#
# 每篇文档都由随机种子生成，或是英文，或是中文，分为三类：日常短句（“通用”）、带解题步骤的
# 算术应用题（“数学”），以及虚构人物的小传（“事实”）。虚构人物中只有一部分出现在语料里，其余的
# 被刻意留在语料之外，这样我们才能分清模型是真的知道某个事实，还是在瞎猜。下面是本页语言下
# 每类文档各一篇：

# %%
for source in ("general", "math", "facts"):
    example = next(d for d in train_docs if d.source == source and d.lang == lang)
    print(f"[{source}]\n{example.text}")

# %%
n_tokens = summary["train_tokens_available"]
world = fact_world(cfg.corpus)
pb.glue("n_docs", len(train_docs))
pb.glue("n_tokens", n_tokens, count=True)
pb.glue("vocab", tokenizer.vocab_size)
pb.glue("n_present", len(world.present))
pb.glue("n_absent", len(world.absent))
for share_lang in ("en", "zh"):
    texts = [d.text for d in val_docs if d.lang == share_lang]
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    pb.glue(f"bytes_per_token_{share_lang}",
            n_bytes / sum(len(ids) for ids in tokenizer.encode_batch(texts)), digits=2)

# %% [markdown] tags=["en"]
# The training split holds {glue:text}`n_docs` documents, {glue:text}`n_tokens` tokens once
# tokenized by a byte-level BPE tokenizer of {glue:text}`vocab` tokens trained on the same split.
# On held-out text one token covers {glue:text}`bytes_per_token_en` bytes of English and
# {glue:text}`bytes_per_token_zh` bytes of Chinese (a Chinese character takes three bytes in
# UTF-8). Of the fictional people, {glue:text}`n_present` have biographies in the corpus and
# {glue:text}`n_absent` do not.
#
# ## Training
#
# The model is a small Llama-style decoder (RMSNorm, rotary positions, SwiGLU, tied embeddings)
# trained with AdamW and a cosine schedule. The whole pipeline — corpus, tokenizer, model,
# training loop — is the same code that runs a 100M-parameter model on a GPU; only the
# configuration differs.

# %% [markdown] tags=["zh"]
# 训练集共有 {glue:text}`n_docs` 篇文档。我们在同一份训练集上训练了一个词表大小为 {glue:text}`vocab`
# 的字节级 BPE 分词器，分词后共 {glue:text}`n_tokens` 个词元。在留出的文本上，一个词元平均覆盖
# {glue:text}`bytes_per_token_en` 个字节的英文、{glue:text}`bytes_per_token_zh` 个字节的中文
# （UTF-8 编码下一个汉字占三个字节）。虚构人物中有 {glue:text}`n_present` 位的小传收录在语料里，
# 另有 {glue:text}`n_absent` 位没有收录。
#
# ## 训练
#
# 模型是一个小型的 Llama 式解码器（RMSNorm、旋转位置编码、SwiGLU、输入输出共享词嵌入），用 AdamW
# 优化器和余弦学习率调度训练。从语料、分词器、模型到训练循环，整条流水线与在 GPU 上训练一亿参数
# 模型所用的代码完全相同，差别只在配置。

# %%
steps_logged = np.array([m["step"] for m in run.metrics])
train_loss = np.array([m["ce_loss"] for m in run.metrics])
val = [(m["step"], m["val_loss"]) for m in run.metrics if m.get("val_loss") is not None]
val_steps, val_loss = (np.array(v) for v in zip(*val, strict=True))
tokens_per_step = cfg.train.batch_size * cfg.train.seq_len

fig, ax = plt.subplots(figsize=(6.4, 3.6))
ax.plot(steps_logged * tokens_per_step / 1e6, train_loss, color="#1f77b4", lw=1.2,
        label=_("training batches"))
ax.plot(val_steps * tokens_per_step / 1e6, val_loss, "o-", color="#d62728", ms=4,
        label=_("held-out documents"))
ax.axhline(np.log(cfg.model.vocab_size), color="#7f7f7f", lw=0.8, ls=":",
           label=_("uniform guess over the vocabulary"))
ax.set_yscale("log")
ax.set_xlabel(_("Tokens seen (millions)"))
ax.set_ylabel(_("Cross-entropy (nats per token)"))
ax.legend(frameon=False, fontsize=9)
pb.figure(fig, "pretraining-loss",
          title=N_("Pre-training loss of the base model"),
          caption=N_("Cross-entropy of next-token prediction on the training batches and on "
                     "held-out documents, against the number of tokens seen. The dotted line is "
                     "the loss of a uniform guess. Logarithmic vertical axis."),
          data={"step": steps_logged, "train_loss": train_loss, "val_step": val_steps,
                "val_loss": val_loss, "tokens_per_step": tokens_per_step})

# %%
pb.glue("params", summary["parameters"])
pb.glue("flops_per_token", float(model.flops_per_token(cfg.train.seq_len)) / 1e6, digits=2)
pb.glue("steps", summary["steps"])
pb.glue("tokens_seen", summary["tokens_seen"], count=True)
pb.glue("epochs", summary["tokens_seen"] / n_tokens, digits=1)
pb.glue("wall_s", summary["wall_s"], digits=0)
pb.glue("tokens_per_s", summary["tokens_per_s"], digits=0)
pb.glue("val_loss_final", float(val_loss[-1]), digits=3)
pb.glue("uniform_loss", float(np.log(cfg.model.vocab_size)), digits=2)

# %% [markdown] tags=["en"]
# The model has {glue:text}`params` parameters and costs {glue:text}`flops_per_token` million
# floating-point operations per token of training. It took {glue:text}`steps` steps and
# {glue:text}`tokens_seen` tokens (about {glue:text}`epochs` passes over the corpus):
# {glue:text}`wall_s` seconds at {glue:text}`tokens_per_s` tokens per second on the machine that
# built this page. The held-out loss fell from {glue:text}`uniform_loss` nats per token, a uniform
# guess, to {glue:text}`val_loss_final`.
#
# ## Loss is compression
#
# A model that assigns probability $p$ to the token that actually comes next can encode it, with
# arithmetic coding, in $-\log_2 p$ bits. Summed over a text and divided by its length in bytes,
# the cross-entropy becomes *bits per byte*, a figure we can put next to ordinary compressors
# run on the same held-out documents.

# %% [markdown] tags=["zh"]
# 模型共有 {glue:text}`params` 个参数，训练时每个词元需要 {glue:text}`flops_per_token` 百万次
# 浮点运算。训练共 {glue:text}`steps` 步、{glue:text}`tokens_seen` 个词元（约把语料过了
# {glue:text}`epochs` 遍）；在构建本页的机器上耗时 {glue:text}`wall_s` 秒，每秒处理
# {glue:text}`tokens_per_s` 个词元。留出集上的损失从均匀猜测的 {glue:text}`uniform_loss` 纳特/词元
# 降到了 {glue:text}`val_loss_final`。
#
# ## 损失就是压缩率
#
# 如果模型给真正出现的下一个词元分配的概率是 $p$，借助算术编码，它就能用 $-\log_2 p$ 比特把这个词元
# 编码下来。把整段文本的交叉熵加起来、再除以文本的字节数，就得到*每字节比特数*。这个指标可以
# 直接和普通压缩软件在同一批留出文档上的表现放在一起比较。


# %%
def compression_table() -> dict:
    sources = ("general", "math", "facts")
    out: dict = {"sources": list(sources)}
    for source in sources:
        texts = [d.text for d in val_docs if d.source == source]
        out[source] = {"model": bits_per_byte(model, tokenizer, texts), **compressor_bits_per_byte(texts)}
    texts = [d.text for d in val_docs]
    out["all"] = {"model": bits_per_byte(model, tokenizer, texts), **compressor_bits_per_byte(texts)}
    return out


compression = Store().memo("pretraining-compression", {"run": run.path.name},
                           lambda: {"table": compression_table()})["table"]
groups = [*compression["sources"], "all"]
names = {"general": _("general"), "math": _("math"), "facts": _("facts"), "all": _("all held-out")}
fig, ax = plt.subplots(figsize=(6.4, 3.4))
width = 0.27
for k, (method, color, label) in enumerate([("model", "#1f77b4", _("this model")),
                                            ("xz", "#ff7f0e", "xz -9e"), ("zlib", "#7f7f7f", "zlib -9")]):
    ax.bar(np.arange(len(groups)) + (k - 1) * width, [compression[g][method] for g in groups], width,
           color=color, label=label)
ax.set_xticks(np.arange(len(groups)), [names[g] for g in groups])
ax.set_ylabel(_("Bits per byte"))
ax.legend(frameon=False, fontsize=9)
pb.figure(fig, "pretraining-compression",
          title=N_("The pre-trained model as a compressor"),
          caption=N_("Bits per UTF-8 byte needed for the held-out documents: the model's "
                     "cross-entropy, and the size of the same documents compressed by xz and zlib "
                     "at their strongest settings, per kind of document and overall."),
          data={"groups": groups, "bits_per_byte": {g: compression[g] for g in groups}})

# %%
bpb_model, bpb_xz = compression["all"]["model"], compression["all"]["xz"]
pb.glue("bpb_model", bpb_model, digits=2)
pb.glue("bpb_xz", bpb_xz, digits=2)
pb.glue("bpb_zlib", compression["all"]["zlib"], digits=2)
pb.glue("bpb_ratio", bpb_xz / bpb_model, digits=1)
pb.glue("compression_verdict", _("supported") if bpb_model < bpb_xz else _("not supported at these settings"))

# %% [markdown] tags=["en"]
# On the held-out documents the model needs {glue:text}`bpb_model` bits per byte, against
# {glue:text}`bpb_xz` for xz and {glue:text}`bpb_zlib` for zlib: {glue:text}`bpb_ratio` times fewer
# bits than xz. The comparison flatters the model in one way — it learned from many documents
# of the same kind, while xz sees only the held-out file — and that is exactly the point: what
# the model carries in its weights is a description of the corpus's regularities, and the better
# that description, the shorter the code. That a trained model compresses held-out text better
# than a general-purpose compressor is **{glue:text}`compression_verdict`** by this run.
#
# ## What it learned
#
# Low loss is an average. To see *which* regularities the model picked up, we ask it two kinds of
# question. Word problems it has never seen, answered by greedy generation and scored on the
# final number; and facts, probed by asking which of the eight possible cities, jobs or colours
# the model finds most likely after a prompt such as "Kalo lives in". A model that only guesses
# gets one in eight right.

# %% [markdown] tags=["zh"]
# 在留出文档上，模型每字节只需 {glue:text}`bpb_model` 比特，xz 需要 {glue:text}`bpb_xz` 比特，zlib
# 需要 {glue:text}`bpb_zlib` 比特：比 xz 少了 {glue:text}`bpb_ratio` 倍。这种比较在某种意义上偏袒
# 模型——它从大量同类文档中学习过，而 xz 只能看到留出的这一个文件——但这恰恰是要点所在：模型
# 权重里存的，是对语料规律的一份描述；描述得越好，编码就越短。“训练好的模型压缩留出文本的能力
# 胜过通用压缩软件”这一论断，在本次运行中的结论是：**{glue:text}`compression_verdict`**。
#
# ## 模型学到了什么
#
# 低损失只是一个平均数。为了看清模型究竟掌握了*哪些*规律，我们向它提两类问题。一类是它从未见过
# 的应用题：让它贪心生成解答，只看最后的数字对不对；另一类是事实：在“卡洛住在”这样的提示之后，
# 看模型认为八个候选城市（或职业、颜色）中哪一个最可能。纯靠猜的模型，八道题只能对一道。


# %%
def learned() -> dict:
    items = problems(cfg.corpus, "math", "test", n_eval)
    out: dict = {"n_steps": [len(p.steps) for p in items]}
    for code in ("en", "zh"):
        scored = score_answers(model, tokenizer, items, code, extract_answer)
        out[f"math_{code}"] = scored["correct"].astype(float).tolist()
        out[f"present_{code}"] = fact_recall(model, tokenizer, world.present, code)
        out[f"absent_{code}"] = fact_recall(model, tokenizer, world.absent, code)
    return out


skills = Store().memo("pretraining-skills", {"run": run.path.name, "n_eval": n_eval},
                      lambda: {"r": learned()})["r"]
n_ops = np.array(skills["n_steps"])
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(7.2, 3.4))
ops = sorted(set(n_ops.tolist()))
for k, (code, color) in enumerate([("en", "#1f77b4"), ("zh", "#d62728")]):
    correct = np.array(skills[f"math_{code}"])
    ax1.bar(np.arange(len(ops)) + (k - 0.5) * 0.38, [correct[n_ops == o].mean() for o in ops], 0.38,
            color=color, label=_("English") if code == "en" else _("Chinese"))
ax1.set_xticks(np.arange(len(ops)), [_("{n} steps").format(n=o) if o > 1 else _("1 step") for o in ops])
ax1.set_ylim(0, 1)
ax1.set_ylabel(_("Exact answers"))
ax1.set_title(_("Held-out word problems"), fontsize=10)
ax1.legend(frameon=False, fontsize=8)
attributes = ["city", "profession", "colour"]
attr_names = {"city": _("city"), "profession": _("job"), "colour": _("colour")}
for k, (kind, color, label) in enumerate([("present", "#2ca02c", _("in the corpus")),
                                          ("absent", "#7f7f7f", _("never in the corpus"))]):
    rates = [np.mean([skills[f"{kind}_{c}"][a] for c in ("en", "zh")]) for a in attributes]
    ax2.bar(np.arange(3) + (k - 0.5) * 0.38, rates, 0.38, color=color, label=label)
ax2.axhline(1 / 8, color="black", lw=0.8, ls=":", label=_("chance"))
ax2.set_xticks(np.arange(3), [attr_names[a] for a in attributes])
ax2.set_ylim(0, 1)
ax2.set_ylabel(_("Facts recalled"))
ax2.set_title(_("Facts about fictional people"), fontsize=10)
ax2.legend(frameon=False, fontsize=8)
fig.tight_layout()
pb.figure(fig, "pretraining-skills",
          title=N_("What the base model learned from pre-training"),
          caption=N_("Left: share of held-out word problems whose final answer the model generates "
                     "exactly, by number of steps and language. Right: share of facts for which the "
                     "true value is the model's most likely choice among eight, for people whose "
                     "biographies were in the corpus and for people who never appeared; both "
                     "languages averaged. The dotted line is chance."),
          data={"n_steps": n_ops, **{k: v for k, v in skills.items() if k != "n_steps"}})

# %%
math_acc = {c: float(np.mean(skills[f"math_{c}"])) for c in ("en", "zh")}
present = float(np.mean([skills[f"present_{c}"][a] for c in ("en", "zh") for a in attributes]))
absent = float(np.mean([skills[f"absent_{c}"][a] for c in ("en", "zh") for a in attributes]))
pb.glue("math_en", math_acc["en"], percent=True, digits=0)
pb.glue("math_zh", math_acc["zh"], percent=True, digits=0)
pb.glue("n_eval", n_eval)
pb.glue("present", present, percent=True, digits=0)
pb.glue("absent", absent, percent=True, digits=0)
pb.glue("chance", 1 / 8, percent=True, digits=1)
learned_facts = present > 2 * absent and present > 0.25
pb.glue("facts_verdict", _("supported") if learned_facts else _("not supported at these settings"))

# %% [markdown] tags=["en"]
# On {glue:text}`n_eval` held-out word problems the model writes the exact answer for
# {glue:text}`math_en` of them in English and {glue:text}`math_zh` in Chinese. For the people in
# the corpus it picks the true city, job or colour {glue:text}`present` of the time; for the people
# it never read about, {glue:text}`absent`, against a chance rate of {glue:text}`chance`. The claim
# that pre-training stores the facts of its corpus — and only those — is
# **{glue:text}`facts_verdict`** by this run.
#
# Two cautions. The fact probe reads the model's preferences among a known set of answers, which
# is a gentler test than asking it to produce the answer unprompted. And the arithmetic of a model
# this small sits on a threshold, which the next section shows.
#
# ## A skill that arrives late
#
# To answer a word problem the model must copy the question's numbers into its worked steps.
# Until it has learned that, it writes well-formed equations with the wrong numbers in them. The
# training run kept its weights at a few checkpoints; scoring each one on the same held-out
# problems shows when the skill arrived, next to the loss at the same moments.
#

# %% [markdown] tags=["zh"]
# 在 {glue:text}`n_eval` 道留出的应用题上，模型用英文作答时有 {glue:text}`math_en` 的题给出了完全
# 正确的答案，用中文时为 {glue:text}`math_zh`。对于语料中出现过的人物，它选中真实城市、职业或颜色
# 的比例是 {glue:text}`present`；对于从未读到过的人物，这一比例是 {glue:text}`absent`，而随机猜测
# 的水平是 {glue:text}`chance`。“预训练会把语料中的事实存进模型，而且只存这些事实”这一论断，在本次
# 运行中的结论是：**{glue:text}`facts_verdict`**。
#
# 有两点需要提醒。事实探测考察的是模型在一组已知答案中的偏好，这比让它凭空说出答案要宽松。
# 另外，这么小的模型，算术能力恰好卡在一道门槛上，下一节就来看这一点。
#
# ## 姗姗来迟的能力
#
# 要解应用题，模型必须学会把题目里的数字抄进解题步骤。在学会之前，它写出的算式格式工整，数字
# 却是错的。训练过程中，我们在几个检查点保存了模型权重；用同一批留出题目给每个检查点打分，就能
# 看出这项能力是何时出现的，并与同一时刻的损失对照。
#

# %%
def along_the_way() -> dict:
    items = problems(cfg.corpus, "math", "test", n_eval)
    out: dict = {"steps": run.snapshot_steps()}
    for code in ("en", "zh"):
        out[code] = [score_answers(run.snapshot(step), tokenizer, items, code, extract_answer)["accuracy"]
                     for step in out["steps"]]
    return out


history = Store().memo("pretraining-history", {"run": run.path.name, "n_eval": n_eval},
                       lambda: {"h": along_the_way()})["h"]
snap_steps = np.array(history["steps"])
fig, ax = plt.subplots(figsize=(6.4, 3.6))
ax.plot(snap_steps, history["en"], "o-", color="#1f77b4", label=_("exact answers, English"))
ax.plot(snap_steps, history["zh"], "s-", color="#d62728", label=_("exact answers, Chinese"))
ax.set_ylim(0, 1)
ax.set_xlabel(_("Training step"))
ax.set_ylabel(_("Exact answers"))
loss_ax = ax.twinx()
loss_ax.plot(val_steps, val_loss, color="#7f7f7f", lw=1, ls="--", label=_("held-out loss (right axis)"))
loss_ax.set_ylabel(_("Cross-entropy (nats per token)"))
loss_ax.set_yscale("log")
loss_ax.spines["right"].set_visible(True)
lines = ax.get_legend_handles_labels()
more = loss_ax.get_legend_handles_labels()
ax.legend(lines[0] + more[0], lines[1] + more[1], frameon=False, fontsize=8, loc="center right")
pb.figure(fig, "pretraining-arithmetic-over-training",
          title=N_("Word-problem accuracy along the pre-training run"),
          caption=N_("Share of held-out word problems answered exactly by the weights saved at each "
                     "checkpoint of the base model's run, in English and in Chinese, with the "
                     "held-out loss of the same run (dashed, right axis)."),
          data={"step": snap_steps, "accuracy_en": history["en"], "accuracy_zh": history["zh"],
                "val_step": val_steps, "val_loss": val_loss})

# %%
mean_acc = (np.array(history["en"]) + np.array(history["zh"])) / 2
jump = int(np.argmax(np.diff(mean_acc))) + 1 if len(mean_acc) > 1 else 0
pb.glue("jump_from_step", int(snap_steps[max(jump - 1, 0)]))
pb.glue("jump_to_step", int(snap_steps[jump]))
pb.glue("acc_before", float(mean_acc[max(jump - 1, 0)]), percent=True, digits=0)
pb.glue("acc_after", float(mean_acc[jump]), percent=True, digits=0)
# The loss was evaluated every eval_interval steps, not necessarily at the checkpoints.
pb.glue("loss_before", float(np.interp(snap_steps[max(jump - 1, 0)], val_steps, val_loss)), digits=3)
pb.glue("loss_after", float(np.interp(snap_steps[jump], val_steps, val_loss)), digits=3)

# %% [markdown] tags=["en"]
# The largest jump comes between step {glue:text}`jump_from_step` and step
# {glue:text}`jump_to_step`: from {glue:text}`acc_before` to {glue:text}`acc_after` exact answers
# (both languages averaged), while the held-out loss only moves from {glue:text}`loss_before` to
# {glue:text}`loss_after` nats per token. A smooth average can hide a sharp change in one skill;
# the scaling-laws chapter asks how much of such "emergence" is a property of the metric.
#
# ## Samples
#
# Finally, what the model writes when left to itself, sampled at temperature 0.8 after the
# opening words of a few documents:

# %% [markdown] tags=["zh"]
# 最大的跃升出现在第 {glue:text}`jump_from_step` 步到第 {glue:text}`jump_to_step` 步之间：答案完全
# 正确的比例（两种语言平均）从 {glue:text}`acc_before` 升到 {glue:text}`acc_after`，而同一时段留出集
# 损失只是从 {glue:text}`loss_before` 变为 {glue:text}`loss_after` 纳特/词元。平滑的平均值可能掩盖
# 某一项能力的陡变；这类“涌现”有多少其实取决于度量方式，留待“缩放定律”一章探讨。
#
# ## 生成样例
#
# 最后看看模型自由发挥时写些什么：给出几篇文档的开头，以温度 0.8 采样续写：

# %%
openings = {"en": ["Q: Mia has", "Kalo", "In the morning,"], "zh": ["问：米娅有", "卡洛", "早上，"]}[lang]
for opening, text in zip(openings, complete(model, tokenizer, openings, 60, temperature=0.8, seed=seed),
                         strict=True):
    print(f"{opening}{text}")

# %% [markdown] tags=["en"]
# Rerun with other settings, for example `phasebook run pretraining -p steps 600 -p seed 1`;
# the numbers on this page follow. The same model is the starting point of the post-training
# chapters, which load it from the store instead of training it again.

# %% [markdown] tags=["zh"]
# 可以换一组参数重新运行，例如 `phasebook run pretraining --lang zh -p steps 600 -p seed 1`，本页的
# 数字会随之更新。后训练各章都以这个模型为起点，它们会直接从存储中读取，而不是重新训练一遍。
