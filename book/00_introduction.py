# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 0. Continual learning, and what this book builds
#
# A model that learns **tasks one after another**, without keeping the data of earlier tasks, tends
# to lose what it knew: training on task $t$ moves parameters that tasks $1, \dots, t-1$ relied on.
# This is *catastrophic forgetting* (McCloskey & Cohen, 1989). Continual learning asks for methods
# that keep old tasks while still learning new ones: **stability** and **plasticity**.
#
# This book studies one family of answers, **null-space methods**: change the parameters only in
# directions that earlier tasks' inputs do not see, so their outputs stay where they were. It
# derives them, checks them numerically, and runs two recent methods end to end:
#
# * **NSP²** (Lu et al., NeurIPS 2024): visual prompt tuning of a frozen ViT, with the prompts'
#   updates projected into the null space of earlier tasks' attention features;
# * **DMNSP** (Kang et al., ICCV 2025): adapters in CLIP, whose visual gradients are projected into
#   null spaces shared by several layers and scaled by a dynamic coefficient.
#
# This chapter sets the stage: the two protocols, the metrics (worked by hand), the data and the
# models every later chapter uses, the baseline that forgets, and a map of the book.

# %% tags=["parameters"]
samples_per_class = 4  # images per class in the data grids
seed = 0

# %%
# a mistyped parameter (papermill -p NAME VALUE) stops here instead of being silently ignored
from nscl.experiment.config import check_parameters

parameters = check_parameters(
    globals(),
    {"samples_per_class", "seed"},
    types={"samples_per_class": int, "seed": int},
    at_least={"samples_per_class": 1, "seed": 0},
)

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import FancyBboxPatch

from nscl.data import load_dataset
from nscl.data.protocols import BASE_CLASSES, NOVEL_CLASSES
from nscl.metrics import (
    average_incremental_accuracy,
    backward_transfer,
    forgetting,
    forgetting_per_task,
    last_accuracy,
    step_accuracies,
)
from nscl.models.backbones import count_parameters
from nscl.models.tiny import build_tiny_clip, build_tiny_vit
from nscl.paths import output_dir, repo_root
from nscl.results.plots import plot_accuracy_matrix, savefig

out = output_dir("00_introduction")

# %% [markdown]
# ## 0.1 Two protocols
#
# The classes of a data set are cut into a sequence of tasks. After each task the model is tested
# on every class seen so far.
#
# * **Task-incremental**: at test time the model is told which task an image comes from and
#   predicts among that task's classes only.
# * **Class-incremental**: no task identity; the prediction is the arg-max over *all* classes seen
#   so far. This is the protocol of both papers, and the harder one: a model must also tell a new
#   task's classes from the old ones', which no single task's training asks it to do.
#
# The picture below shows the tiny benchmark of this book: 50 classes in 10 tasks of 5.

# %%
fig, ax = plt.subplots(figsize=(11, 2.2))
for t in range(10):
    ax.add_patch(
        FancyBboxPatch((t * 1.1, 0), 1.0, 1.0, boxstyle="round,pad=0.02", fc=plt.cm.viridis(t / 10), alpha=0.8)
    )
    ax.text(t * 1.1 + 0.5, 0.5, f"task {t + 1}\n5 classes", ha="center", va="center", fontsize=8, color="w")
ax.annotate("", xy=(10.9, -0.2), xytext=(0, -0.2), arrowprops=dict(arrowstyle="->", color="k"))
ax.text(
    0,
    -0.55,
    "test after task t: every class of tasks 1..t (class-incremental: one arg-max over all of them)",
    fontsize=9,
)
ax.set_xlim(-0.1, 11.1)
ax.set_ylim(-0.8, 1.1)
ax.axis("off")
ax.set_title("A class-incremental sequence: train on one task at a time, never revisit old data")
savefig(fig, out / "protocol.png")
plt.show()

# %% [markdown]
# ## 0.2 The metrics, by hand
#
# Everything is computed from the **accuracy matrix** $R$: $R_{ij}$ is the accuracy on the test data
# of task $j$ after training task $i$ (only $j \le i$ exists). With equal test sets per task:
#
# * accuracy after step $i$: $A_i = \frac{1}{i+1}\sum_{j \le i} R_{ij}$ (all classes seen so far);
# * **last accuracy** $A_{T-1}$, and **average incremental accuracy** $\frac1T\sum_i A_i$
#   (Rebuffi et al., 2017);
# * **forgetting** (Chaudhry et al., 2018): for each old task, its best accuracy before the end
#   minus its final accuracy, averaged over the old tasks;
# * **backward transfer** (Lopez-Paz & Ranzato, 2017): final minus just-learnt accuracy,
#   averaged over the old tasks (negative when the model forgets).
#
# Take three tasks and this matrix (in %):

# %%
R = np.array([[90.0, np.nan, np.nan], [70.0, 80.0, np.nan], [60.0, 75.0, 85.0]]) / 100
print(
    pd.DataFrame(
        R * 100, index=["after task 1", "after task 2", "after task 3"], columns=["task 1", "task 2", "task 3"]
    ).to_string(na_rep="-")
)

# %% [markdown]
# By hand: $A_0 = 90$, $A_1 = (70 + 80)/2 = 75$, $A_2 = (60 + 75 + 85)/3 = 73.33$; last accuracy
# $73.33$; average incremental accuracy $(90 + 75 + 73.33)/3 = 79.44$. Forgetting: task 1 was best at
# 90 and ends at 60 (30 points), task 2 best at 80, ends at 75 (5 points): mean 17.5. Backward
# transfer: $((60 - 90) + (75 - 80))/2 = -17.5$, the same here because each task was best right
# after it was learnt. The package's functions give the same numbers:

# %%
by_hand = {
    "step accuracies": [90.0, 75.0, 220 / 3],
    "last accuracy": 220 / 3,
    "average incremental accuracy": (90 + 75 + 220 / 3) / 3,
    "forgetting": 17.5,
    "backward transfer": -17.5,
}
package = {
    "step accuracies": list(step_accuracies(R) * 100),
    "last accuracy": last_accuracy(R) * 100,
    "average incremental accuracy": average_incremental_accuracy(R) * 100,
    "forgetting": forgetting(R) * 100,
    "backward transfer": backward_transfer(R) * 100,
}
for name in by_hand:
    assert np.allclose(by_hand[name], package[name]), name
    print(f"{name:30s} by hand {np.round(by_hand[name], 2)}   nscl.metrics {np.round(package[name], 2)}")
print("forgetting per old task:", forgetting_per_task(R) * 100)

# %% [markdown]
# ## 0.3 The data
#
# Real benchmarks (CIFAR-100, ImageNet-R, DomainNet, TinyImageNet) need a GPU and downloads; every
# chapter can run them through its `preset = "paper"` parameter. So that every page also runs on a
# laptop CPU in minutes, the book ships **shapes100**, a procedural data set: 10 shapes × 10 colours,
# class names such as "blue star", drawn at random positions, sizes and rotations. Half of the
# classes (a checkerboard over colour and shape) are *base* classes, used only to pretrain the tiny
# models; the other 50 are *novel* and form the continual sequence, so every task brings classes
# the model has never seen, made of colours and shapes it has.


# %%
def sample_grid(background: str, classes: list[int], title: str):
    data = load_dataset(
        "shapes100", "test", n_per_class=samples_per_class, image_size=32, seed=seed, background=background
    )
    fig, axes = plt.subplots(samples_per_class, len(classes), figsize=(1.2 * len(classes), 1.25 * samples_per_class))
    for c, label in enumerate(classes):
        images = data.images[data.targets == label]
        for r in range(samples_per_class):
            axes[r, c].imshow(images[r].permute(1, 2, 0).numpy())
            axes[r, c].axis("off")
        axes[0, c].set_title(data.classes[label].replace(" ", "\n"), fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


first_task = list(NOVEL_CLASSES[:5])
fig = sample_grid(
    "grey",
    [*BASE_CLASSES[:5], *first_task],
    "shapes100: five base classes (left) and the five classes of the first task (right)",
)
savefig(fig, out / "shapes100_grey.png")
plt.show()

# %% [markdown]
# The *tinted* version shows the same classes on backgrounds pulled towards a random colour: a
# domain shift away from the grey images the tiny models were pretrained on. Chapter 5 uses it for
# DMNSP, because on the grey images the tiny CLIP already names most classes right (chapter 5 prints
# by how much) and its adapters would have little to learn.

# %%
fig = sample_grid("tinted", first_task, "shapes100, tinted backgrounds: the first task's classes")
savefig(fig, out / "shapes100_tinted.png")
plt.show()

# %% [markdown]
# ## 0.4 The models
#
# The papers use ViT-B/16 (86M parameters) and CLIP ViT-B/16 (150M). The tiny preset builds the same
# kinds of model through the same libraries' constructors (timm's `VisionTransformer`, open_clip's
# `CLIP`), small enough to pretrain on the base classes in a few CPU minutes each. The book's
# results were computed from one such pretraining, whose weights ship with the package
# (`nscl/models/weights`, checked by checksum when loaded): pretrained again on another machine,
# the same recipe gives other weights, because the arithmetic of another CPU differs in its last
# bits and thousands of optimiser steps amplify that.

# %%
vit, clip = build_tiny_vit(), build_tiny_clip()
print(
    pd.DataFrame(
        {
            "model": ["tiny ViT (timm)", "tiny CLIP (open_clip)", "  of which the image tower"],
            "parameters": [count_parameters(vit), count_parameters(clip), count_parameters(clip.visual)],
            "blocks x width": ["4 x 128", "4 x 128 image, 2 x 64 text", "4 x 128"],
            "stands in for": ["vit_base_patch16_224.augreg_in21k", "CLIP ViT-B/16 (openai)", ""],
        }
    ).to_string(index=False)
)

# %% [markdown]
# ## 0.5 The baseline that forgets
#
# **Seq** trains the same parameters task after task with nothing to protect old tasks. Here is its
# accuracy matrix on the tiny benchmark (VPT-Seq: prompts in a frozen tiny ViT, a head per task;
# seed 0 of the 3-seed runs of chapter 3, read from `benchmarks/results`). Below the diagonal, old
# tasks fade as new ones arrive, although the heads of old tasks are frozen: the prompts they rely
# on keep moving, and every new head competes with the old ones for the arg-max.

# %%
matrices = pd.read_csv(repo_root() / "benchmarks" / "results" / "nsp2_tiny_3seeds_accuracy.csv")
seq = matrices[(matrices.method == "VPT-Seq") & (matrices.seed == 0)]
n = seq.train_task.max() + 1
R_seq = np.full((n, n), np.nan)
R_seq[seq.train_task, seq.eval_task] = seq.accuracy
fig, ax = plt.subplots(figsize=(6, 5))
plot_accuracy_matrix(ax, R_seq, title="VPT-Seq on shapes100-10s (seed 0)")
savefig(fig, out / "seq_accuracy_matrix.png")
plt.show()
print(
    f"last accuracy {last_accuracy(R_seq) * 100:.1f}, forgetting {forgetting(R_seq) * 100:.1f}, "
    f"backward transfer {backward_transfer(R_seq) * 100:.1f} (%)"
)
assert forgetting(R_seq) > 0.05  # old tasks fade: the text above

# %% [markdown]
# ## 0.6 Where null-space methods come from
#
# * **Regularisation**: EWC (Kirkpatrick et al., 2017) penalises changes of parameters that were
#   important for old tasks; it slows forgetting but does not bound it.
# * **Orthogonal projection**: GPM (Saha et al., 2021) keeps, per layer, a basis of the inputs old
#   tasks showed it and projects new gradients orthogonally to it; Adam-NSCL (Wang et al., 2021)
#   projects Adam's updates into the null space of the uncentered covariance of old inputs.
#   Chapter 1 builds this on one linear layer.
# * **Null spaces for pretrained transformers**: NSP² carries the idea through self-attention and
#   LayerNorm to prompts (chapters 2 and 3); DMNSP carries it to CLIP's adapters, across layers
#   and with a per-task scale, and treats the vision and text branches differently (chapters 4
#   and 5).
#
# ## 0.7 A map of the book
#
# | chapter | what it does |
# | --- | --- |
# | 1. The null space of a linear layer | derivation, projector, approximate null spaces, the stability–plasticity trade-off |
# | 2. The consistency conditions | NSP²'s affinity and aggregation conditions, heads, LayerNorm, checked on a real ViT block |
# | 3. NSP² end to end | NSP² against Seq, frozen and joint training, over seeds; null-space sizes; the prompts |
# | 4. Two modalities | do CLIP's visual adapters spread and drift more than the text ones? |
# | 5. DMNSP | multi-layer null spaces and the dynamic coefficient against zero-shot CLIP and adapter-Seq |
# | 6. The null-space atlas | spectra, cuts, room left and angles between tasks, per layer, for both methods |
# | 7. The report | every run of a grid, mean ± std over seeds beside the papers' numbers, NSP² against DMNSP per protocol; how far runs move on another CPU |
#
# Every chapter runs with small CPU defaults; its first code cell, tagged `parameters`, lists what
# can be changed, e.g. `papermill build/book/03_nsp2.ipynb out.ipynb -p preset paper -p device cuda`.
#
# ## References
#
# * McCloskey, M., Cohen, N. J. *Catastrophic Interference in Connectionist Networks.* 1989.
# * Kirkpatrick, J. et al. *Overcoming catastrophic forgetting in neural networks.* PNAS 2017.
# * Rebuffi, S.-A. et al. *iCaRL: Incremental Classifier and Representation Learning.* CVPR 2017.
# * Lopez-Paz, D., Ranzato, M. *Gradient Episodic Memory for Continual Learning.* NeurIPS 2017.
# * Chaudhry, A. et al. *Riemannian Walk for Incremental Learning.* ECCV 2018.
# * Saha, G., Garg, I., Roy, K. *Gradient Projection Memory for Continual Learning.* ICLR 2021.
# * Wang, S. et al. *Training Networks in Null Space of Feature Covariance for Continual Learning.* CVPR 2021.
# * Lu, Y. et al. *Visual Prompt Tuning in Null Space for Continual Learning.* NeurIPS 2024.
# * Kang, B. et al. *Dynamic Multi-Layer Null Space Projection for Vision-Language Continual Learning.* ICCV 2025.
