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
# # 3. NSP² end to end
#
# Chapter 2 showed, one update at a time, that projecting a prompt update into the null spaces of
# the two consistency conditions keeps old image tokens' outputs. This chapter trains **NSP²**
# (Lu et al., NeurIPS 2024) through a whole class-incremental task sequence and compares it with
# **VPT-Seq**, the same prompts trained with no projection and no penalty.
#
# Per task $t$, NSP² does:
#
# 1. **Train** the prompts $P \in \mathbb R^{L \times m \times D}$ (and this task's head) with Adam.
#    From the second task on, each step's Adam *update* of layer $l$ is projected on both sides,
#    $\Delta P_l \leftarrow B_{2,l}\, \Delta P_l\, B_{1,l}$, and the loss has the drift penalty
#    $\lVert \mu_{P} - \mu_{P_{t-1}} \rVert_1 + \lVert \sigma_{P} - \sigma_{P_{t-1}} \rVert_1$ on each prompt
#    token's mean and standard deviation.
# 2. **Collect** $\Omega_{1,l}^\top \Omega_{1,l}$ ($D \times D$) and $\Omega_{2,l}^\top \Omega_{2,l}$
#    ($m \times m$) over the task's training images and add them to the sums over earlier tasks.
# 3. **Project.** SVD, the adaptive threshold (null space past the knee of the spectrum), projectors
#    $U_0 U_0^\top$ normalised and mixed with the identity:
#    $B = \eta\, \tfrac{U_0U_0^\top}{\lVert U_0U_0^\top \rVert} + (1-\eta) I$.
#
# The **tiny preset** runs on a CPU in about a minute: the book's small timm ViT (4 blocks,
# $D = 128$, pretrained by nscl on the 50 *base* classes of shapes100, cached), then 10 tasks of 5
# *novel* classes (never seen in pretraining), 4 prompts in every block, a linear head per task
# with the paper's temperature 28, $\eta_1 = \eta_2 = 0.97$. The **paper preset** (set `preset =
# "paper"` in the parameters cell, on a GPU) runs the official recipes: timm
# `vit_base_patch16_224.augreg_in21k` or OpenAI CLIP ViT-B/16 on CIFAR-100, ImageNet-R or DomainNet.

# %% tags=["parameters"]
preset = "tiny"          # "tiny" (CPU, about a minute per method and seed) or "paper" (GPU, the official recipes)
backbone = "vit"         # "vit" (VPT-NSP²) or "clip" (CLIP-NSP²)
benchmark = None         # None: the preset's default (shapes100-10s for tiny, cifar100-10s for paper)
seeds = [0]              # the closing notes of the project report 3 seeds
device = "cpu"
epochs = None            # None: the recipe's; an int overrides it (e.g. quick paper-preset smoke runs)
max_tasks = None         # None: all tasks
data_root = None         # where CIFAR-100 / ImageNet-R / DomainNet live (default: $NSCL_DATA)
download = False         # let torchvision download CIFAR-100 when the machine is online
run_root = None          # None: build/outputs/03_nsp2/<preset>-<backbone>-<benchmark>; runs resume from here
progress = False         # True: tqdm bars per task (long GPU runs)

# %%
from dataclasses import asdict

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from nscl.metrics import forgetting_per_task
from nscl.paths import output_dir
from nscl.presets import nsp2_experiment
from nscl.sweeps import mean_step_accuracies, summary_table
from nscl.viz import plot_accuracy_matrix, plot_step_accuracies, savefig

experiment = nsp2_experiment(preset, backbone, benchmark, device=device, data_root=data_root, download=download)
experiment.with_run(epochs=epochs, max_tasks=max_tasks, progress=progress)
bench = experiment.benchmark
out = output_dir("03_nsp2")
runs = run_root or out / f"{preset}-{backbone}-{bench.id}"
seq_name, nsp2_name = list(experiment.methods)
print(f"benchmark {bench.id}: {bench.n_tasks} tasks, {bench.n_classes} classes; methods {list(experiment.methods)}")
print("run settings:", {k: v for k, v in asdict(experiment.run).items() if k in ("epochs", "batch_size", "data_repeats",
                                                                                  "precision", "device")})

# %% [markdown]
# ## 3.1 Training
#
# Each method and seed is one run directory holding a checkpoint after every task: re-running this
# cell after an interruption resumes where it stopped (and a finished run is only read back).

# %%
frame, results = experiment.run_all(seeds=seeds, run_root=runs)
summary = summary_table(frame, ["last_accuracy", "average_incremental_accuracy", "forgetting",
                                "last_accuracy_task_aware", "forgetting_task_aware"])
summary.to_csv(out / "summary.csv")
summary

# %% [markdown]
# *Last accuracy* is the accuracy on all classes after the final task, *average incremental
# accuracy* its mean over the steps, *forgetting* the mean drop of each old task from its best
# earlier accuracy (all in %, class-incremental: the prediction is the arg-max over every class
# seen so far). The *task-aware* columns predict within the right task's classes only; their
# forgetting isolates what the representation itself forgets, without the confusion between tasks.
#
# With the paper preset, the paper's numbers for the benchmark are printed beside ours:

# %%
print(experiment.reference_text())

# %% [markdown]
# ## 3.2 Accuracy task by task
#
# The paper's Figure 2 plots the accuracy on all classes seen so far after each task. Seq's curve
# falls faster: each new task's training moves the prompts that every earlier task relies on.

# %%
curves = mean_step_accuracies(results)
fig, ax = plt.subplots(figsize=(6, 4))
plot_step_accuracies(ax, curves, title=f"{bench.id}: accuracy on seen classes (mean of {len(seeds)} seed(s))")
savefig(fig, out / "step_accuracies.png")

# %% [markdown]
# The accuracy matrices $R_{ij}$ (accuracy on task $j$ after training task $i$) show where that
# comes from: the columns under the diagonal fade for Seq, while NSP² keeps them.

# %%
first_seed = seeds[0]
fig, axes = plt.subplots(1, 2, figsize=(12, 5))
for ax, name in zip(axes, (seq_name, nsp2_name)):
    plot_accuracy_matrix(ax, results[(name, first_seed)].accuracy, title=f"{name} (seed {first_seed})")
fig.tight_layout()
savefig(fig, out / "accuracy_matrices.png")

# %%
rows = [{"method": name, "seed": seed, "task": j + 1, "forgetting": f * 100}
        for (name, seed), res in results.items() for j, f in enumerate(forgetting_per_task(res.accuracy))]
fig, ax = plt.subplots(figsize=(7, 3.5))
sns.barplot(data=pd.DataFrame(rows), x="task", y="forgetting", hue="method", ax=ax, errorbar="sd")
ax.set_xlabel("old task")
ax.set_ylabel("forgetting (%): best earlier − final")
ax.set_title("Forgetting of each old task at the end of the sequence")
savefig(fig, out / "forgetting_per_task.png")

# %% [markdown]
# ## 3.3 How large are the null spaces?
#
# After each task NSP² sums the new task's $\Omega^\top\Omega$ into the old ones and picks the null
# space again, so the null space can only shrink as tasks accumulate. The adaptive rule reads
# each layer's spectrum; below, the share of each layer's space that the null space keeps.

# %%
null_space = pd.DataFrame(results[(nsp2_name, first_seed)].extras["report"]["null_space"])
null_space["null fraction"] = null_space.null_dim / null_space["dim"]
null_space["task"] += 1
null_space["layer"] += 1
null_space.to_csv(out / "null_space_dims.csv", index=False)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
for ax, cond, size in zip(axes, ("affinity", "aggregation"), ("D", "m")):
    part = null_space[null_space.condition == cond]
    sns.lineplot(data=part, x="task", y="null fraction", hue="layer", marker="o", ax=ax, palette="viridis")
    ax.set_title(f"{cond} condition: null-space dim / {size} ({size} = {part['dim'].iloc[0]})")
    ax.set_xlabel("after task")
    ax.set_ylabel("null-space dimension / total")
    ax.grid(alpha=0.3)
fig.tight_layout()
savefig(fig, out / "null_space_dims.png")
null_space.pivot_table(index=["condition", "layer"], columns="task", values="null_dim")

# %% [markdown]
# ## 3.4 The prompts themselves
#
# What do the projection and the drift penalty do to the learnt parameters? Below, the
# distribution of all prompt values after the first and the last task, and how far each prompt
# token's LayerNorm statistics (its mean $\mu$ and standard deviation $\sigma$ over the $D$
# features, the quantities of the drift penalty) move from one task to the next.

# %%
def prompt_frame(name: str) -> pd.DataFrame:
    history = results[(name, first_seed)].extras["report"]["prompts"]
    picks = {"after task 1": history[0], f"after task {len(history)}": history[-1]}
    return pd.DataFrame([{"method": name, "when": when, "value": float(v)}
                         for when, p in picks.items() for v in p.flatten()[::max(1, p.numel() // 4000)]])


def statistic_drift(name: str) -> pd.DataFrame:
    history = results[(name, first_seed)].extras["report"]["prompts"]
    rows = []
    for t in range(1, len(history)):
        prev, cur = history[t - 1], history[t]
        rows.append({"method": name, "task": t + 1,
                     "relative change ‖P_t − P_t−1‖ / ‖P_t−1‖": float((cur - prev).norm() / prev.norm()),
                     "|Δμ| (mean over tokens)": float((cur.mean(-1) - prev.mean(-1)).abs().mean()),
                     "|Δσ| (mean over tokens)": float((cur.std(-1) - prev.std(-1)).abs().mean())})
    return pd.DataFrame(rows)


values = pd.concat([prompt_frame(n) for n in (seq_name, nsp2_name)])
values["prompts"] = values.method + ", " + values.when
drift = pd.concat([statistic_drift(n) for n in (seq_name, nsp2_name)])
drift.to_csv(out / "prompt_drift.csv", index=False)
fig, axes = plt.subplots(2, 2, figsize=(12, 7))
sns.kdeplot(data=values, x="value", hue="prompts", ax=axes[0, 0], common_norm=False)
axes[0, 0].set_title("Prompt values (all layers)")
axes[0, 0].set_xlabel("prompt entry")
for ax, col in zip(axes.flat[1:], drift.columns[2:]):
    sns.lineplot(data=drift, x="task", y=col, hue="method", marker="o", ax=ax)
    ax.set_yscale("log")
    ax.set_title(col.split(" (")[0].split(" ‖")[0] + " of the prompts from the previous task")
    ax.set_xlabel("task")
    ax.grid(alpha=0.3)
fig.tight_layout()
savefig(fig, out / "prompt_distributions.png")
drift.groupby("method")[list(drift.columns[2:])].mean()

# %% [markdown]
# NSP²'s two density curves hide under Seq's "after task 1" curve: with the same seed the first
# task trains identically (there is nothing to protect yet), and afterwards NSP²'s prompts barely
# move: on the tiny preset each later task changes them by about a thousandth of their norm, while
# Seq rewrites a third of them every task. New tasks are learnt mostly by their own heads, through
# the small part of prompt space that the projection leaves free.

# %% [markdown]
# ## Summary
#
# * On the tiny preset NSP² keeps far more of every old task than Seq (compare the forgetting
#   columns). Seq's *task-aware* forgetting is small: what it mostly loses is the calibration
#   between tasks, as its moving prompts shift old heads' logits against the new head's; NSP² keeps
#   old features, and so old logits, in place.
# * Its null spaces are approximate (chapter 2): the adaptive rule leaves most of the feature axis
#   free in the affinity condition and three of the $m = 4$ token directions in the aggregation
#   condition. On the tiny preset the knee of the summed spectra, and so the dimensions, stay put
#   as tasks accumulate; on larger benchmarks watch them shrink.
# * The projection and the penalty keep the prompts, and their statistics, nearly still from task
#   to task, while Seq's wander.
#
# The measured numbers of this run are in `summary.csv` beside the figures; the project's closing
# notes report the tiny preset over 3 seeds.
#
# ## Exercises
#
# 1. Run Seq and NSP² with `eta1 = eta2` in {0.5, 0.9, 0.99} (pass `conditions=` to
#    `nsp2_experiment`; see `nscl.consistency.ConditionSpec`). Plot last accuracy and forgetting
#    against $\eta$: where is the stability–plasticity sweet spot on the tiny preset?
# 2. Switch the drift penalty off (`drift_weight=0`) and then the projection off
#    (`null_space=False`) one at a time. Which of the two does the work here?
# 3. Replace the adaptive rule by `NullSpaceRule("energy", 1e-3)`. How do the null-space
#    dimensions of section 3.3 change, and with them the accuracy?
# 4. The task-aware forgetting of NSP² is close to zero, yet its class-incremental forgetting is
#    not. Explain with the accuracy matrix what else makes old classes harder once new ones arrive.
# 5. Run `backbone = "clip"` (CLIP-NSP², text-feature classifier with the refinement stage). Does it
#    forget less or more than VPT-NSP², and why might a frozen text classifier help?
