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
# # 1. The null space of a linear layer
#
# A network that learns tasks one after another forgets: the gradient of task $t$ moves
# parameters that tasks $1, \dots, t-1$ relied on. *Null-space* methods answer with a piece of
# linear algebra: change the parameters only in directions that the old tasks' inputs cannot see.
# This chapter builds that idea on a single linear layer, where it is exact, before later chapters
# carry it through attention (NSP²) and adapters (DMNSP). The idea has a short lineage: Gradient
# Projection Memory (GPM; Saha et al., ICLR 2021) projects gradients orthogonally to a basis of old
# inputs kept per layer, and Adam-NSCL (Wang et al., CVPR 2021) projects Adam's updates into the
# null space of the uncentered covariance of old inputs, the construction used below and by NSP².
#
# You need linear algebra (rank, orthogonal projections, the SVD); no continual learning.
#
# **Plan.** (1) derive when an update leaves old outputs unchanged; (2) build the projector from
# the uncentered feature matrix; (3) check it numerically; (4) relax it to an *approximate* null
# space and meet the stability–plasticity trade-off on a real continual problem.

# %% tags=["parameters"]
dataset = "digits"  # "digits" (scikit-learn, real) or "shapes100" (procedural)
n_tasks = 5
feature_dim = 512  # width of the fixed random feature network
hidden = 64  # width of the shared (protected) linear layer
epochs = 20
batch_size = 32
lr = 1e-2
energies = [0.0, 1e-4, 1e-3, 1e-2, 5e-2, 0.2, 0.5]  # approximate null spaces to sweep
seeds = [0, 1, 2]
device = "cpu"

# %%
# a mistyped parameter (papermill -p NAME VALUE) stops here instead of being silently ignored
from nscl.experiment.config import check_parameters

parameters = check_parameters(
    globals(),
    {"dataset", "n_tasks", "feature_dim", "hidden", "epochs", "batch_size", "lr", "energies", "seeds", "device"},
    types={
        "dataset": str,
        "n_tasks": int,
        "feature_dim": int,
        "hidden": int,
        "epochs": int,
        "batch_size": int,
        "lr": (int, float),
        "energies": list,
        "seeds": list,
        "device": str,
    },
    at_least={"n_tasks": 2, "feature_dim": 1, "hidden": 1, "epochs": 1, "batch_size": 1, "lr": 0},
)

# %%
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from nscl.analysis.invariance import OutputRecorder
from nscl.data import BatchTransform, ContinualData, Scenario, load_dataset
from nscl.experiment.experiment import compare
from nscl.experiment.run import RunConfig, run_continual
from nscl.methods.linear import SharedLayerClassifier, SharedLayerConfig
from nscl.models.features import RandomReLUFeatures
from nscl.nullspace import (
    EmptyNullSpaceWarning,
    NullSpaceRule,
    null_space_basis,
    null_space_projector,
    uncentered_covariance,
)
from nscl.paths import output_dir
from nscl.results.plots import plot_accuracy_matrix, plot_metric_sweep, plot_spectrum, savefig
from nscl.results.tables import paired_difference, summary_table

out = output_dir("01_null_space")
torch.manual_seed(0)

# %% [markdown]
# ## 1.1 When does an update keep old outputs?
#
# Take a linear layer $y = W x$ with $W \in \mathbb{R}^{m \times d}$, and stack the inputs the old
# tasks showed it as rows of $X_{old} \in \mathbb{R}^{n \times d}$. Their outputs are
# $Y_{old} = X_{old} W^\top$. After an update $W \to W + \Delta W$,
#
# $$Y_{old}' - Y_{old} = X_{old}\, \Delta W^\top .$$
#
# So the old outputs are **unchanged exactly when every row of $\Delta W$ is orthogonal to every
# old input**: $\Delta W x_i = 0$ for all $i$, i.e. the rows of $\Delta W$ lie in the null space
# $\mathcal N(X_{old})$.
#
# We never want to keep $X_{old}$ itself (it grows with the data). Its $d \times d$ *uncentered*
# Gram matrix $C = X_{old}^\top X_{old}$ has the same null space:
#
# $$C v = 0 \;\Rightarrow\; v^\top C v = \lVert X_{old} v \rVert^2 = 0 \;\Rightarrow\; X_{old} v = 0,$$
#
# and conversely $X_{old} v = 0 \Rightarrow C v = 0$. Better still, $C$ *accumulates*: after tasks
# $1..t$, $C = \sum_{s \le t} X_s^\top X_s$, a fixed-size memory of everything the layer has seen.
# It is *uncentered* on purpose: the mean input is one of the directions old tasks use, and a bias
# is just a weight on a constant input 1.

# %% [markdown]
# ## 1.2 The projector
#
# $C$ is symmetric positive semi-definite, so its SVD is an eigen-decomposition
# $C = U \operatorname{diag}(s_1 \ge \dots \ge s_d \ge 0)\, U^\top$. Split the columns of $U$ into
# those with $s_i > 0$ (the old inputs' span) and $U_0$, those with $s_i = 0$ (the null space).
# Then
#
# $$P = U_0 U_0^\top$$
#
# is the orthogonal projector onto $\mathcal N(C)$: $P^\top = P$, $P^2 = P$, $X_{old} P = 0$.
# Given any proposed update $G$ (a gradient step), $\Delta W = G P$ is the allowed update closest
# to it in Frobenius norm, and $X_{old}\,(G P)^\top = X_{old} P\, G^\top = 0$.
#
# Let us check this on random low-rank "old inputs": 300 samples in $d = 64$ dimensions that only
# span 20 of them.

# %%
g = torch.Generator().manual_seed(0)
d, rank = 64, 20
x_old = torch.randn(300, rank, generator=g, dtype=torch.float64) @ torch.randn(
    rank, d, generator=g, dtype=torch.float64
)
weight = torch.randn(10, d, generator=g, dtype=torch.float64)
update = torch.randn(10, d, generator=g, dtype=torch.float64)  # as large as W itself

cov = uncentered_covariance(x_old)
projector, info = null_space_projector(cov, NullSpaceRule("energy", 0.0), dtype=torch.float64)


def relative_change(w, dw, x):
    """||X (W + dW)^T - X W^T|| / ||X W^T||: how far old outputs move."""
    return (torch.linalg.norm(x @ dw.T) / torch.linalg.norm(x @ w.T)).item()


print(f"null-space dimension {info.null_dim} of {info.dim} (expected {d - rank})")
print(
    f"symmetric: {torch.allclose(projector, projector.T)}, idempotent: "
    f"{torch.allclose(projector @ projector, projector)}"
)
print(f"relative change of old outputs, raw update:       {relative_change(weight, update, x_old):.3e}")
print(f"relative change of old outputs, projected update: {relative_change(weight, update @ projector, x_old):.3e}")
for dtype in (torch.float32,):
    p32, _ = null_space_projector(cov, NullSpaceRule("energy", 0.0), dtype=dtype)
    change32 = relative_change(weight.to(dtype), update.to(dtype) @ p32, x_old.to(dtype))
    print(f"                                     in float32: {change32:.3e}")
# rounding level, in each precision, against a raw change of order one (the text below)
assert relative_change(weight, update @ projector, x_old) < 1e-12 and change32 < 1e-5
assert relative_change(weight, update, x_old) > 0.1

# %% [markdown]
# The projected update changes old outputs only at the level of floating-point rounding
# ($\sim10^{-15}$ in float64, $\sim10^{-7}$ in float32), while the raw update moves them by as much
# as the weights themselves.
#
# ## 1.3 Mixing with the identity
#
# A pure projector can leave too little room to learn. NSP² softens it with a mixing weight
# $\eta \in [0, 1]$:
#
# $$P_\eta = \eta P + (1-\eta) I .$$
#
# $\eta = 1$ is the strict null space, $\eta = 0$ plain training. The old outputs then move by
# $(1-\eta)\, X_{old} G^\top$, linearly in $1 - \eta$:

# %%
etas = np.array([1.0, 0.999, 0.99, 0.97, 0.9, 0.7, 0.5, 0.0])
changes = []
for eta in etas:
    p_eta, _ = null_space_projector(cov, NullSpaceRule("energy", 0.0), eta=float(eta), dtype=torch.float64)
    changes.append(relative_change(weight, update @ p_eta, x_old))
fig, ax = plt.subplots(figsize=(5, 3.2))
ax.loglog(1 - etas[1:], changes[1:], "o-")
ax.set_xlabel(r"$1-\eta$")
ax.set_ylabel("relative change of old outputs")
ax.set_title(r"Old outputs move linearly in $1-\eta$" + f"\n($\\eta=1$: {changes[0]:.1e})")
ax.grid(alpha=0.3)
savefig(fig, out / "eta_sweep.png")

# %% [markdown]
# ## 1.4 Approximate null spaces
#
# Real features are rarely exactly rank-deficient: the spectrum of $C$ decays but does not hit
# zero. Write the change of old outputs in the eigenbasis,
#
# $$\lVert X_{old} \Delta W^\top \rVert_F^2 = \operatorname{tr}(\Delta W\, C\, \Delta W^\top)
#   = \sum_i s_i \, \lVert \Delta W u_i \rVert^2 .$$
#
# Updates along directions with *small* $s_i$ barely move old outputs. An approximate null space
# keeps the tail of the spectrum; if it holds a fraction $\varepsilon$ of the energy
# $\sum_i s_i = \operatorname{tr} C$, then
#
# $$\lVert X_{old} \Delta W^\top \rVert_F^2 \le \lVert \Delta W \rVert_2^2 \sum_{i \in \text{null}} s_i
#   = \varepsilon \, \operatorname{tr}(C)\, \lVert \Delta W \rVert_2^2 .$$
#
# `nscl.nullspace` offers the rules the two papers use, all on the descending spectrum:
#
# | rule | keeps as null space | used by |
# | --- | --- | --- |
# | `energy` $\varepsilon$ | the tail holding at most $\varepsilon$ of $\sum_i s_i$ | (this chapter) |
# | `adaptive` | everything past the knee (largest curvature of the smoothed spectrum) | NSP² |
# | `drop_top` $k$ | all but the top $k$ directions | DMNSP |
# | `threshold` $\tau$ / `times` $k$ | $s_i \le \tau$ / $s_i \le k\, s_{min}$ | NSP² option |
#
# A larger null space means more freedom to learn (plasticity) and more drift of old outputs
# (less stability). The rest of the chapter measures that trade-off.

# %% [markdown]
# ## 1.5 A real continual problem
#
# The data: scikit-learn's handwritten digits (1,797 real 8×8 images), split into
# `n_tasks` tasks of two digits each, learnt one after another. The model is a miniature of the
# NSP² set-up:
#
# $$x \xrightarrow{\phi \text{ (fixed)}} \tilde\phi = [\phi(x); 1] \xrightarrow{W \text{ (shared)}}
#   h = \mathrm{ReLU}(W \tilde\phi) \xrightarrow{V_t \text{ (head of task } t)} z_t .$$
#
# $\phi$ is a fixed random ReLU network (never trained); $W$ is the one layer all tasks share;
# each task gets its own head $V_t$, trained on that task only and then frozen. **Seq** trains $W$
# freely; the **null-space** method projects every Adam update of $W$ onto the (approximate) null
# space of the $\tilde\phi$'s of all earlier tasks. If $W$ keeps old $h$'s, every old head keeps its
# outputs.

# %%
if dataset == "digits":
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    transform = BatchTransform(size=8, mean=(0.3,) * 3, std=(0.4,) * 3)
    in_features, channels = 64, 1
elif dataset == "shapes100":
    classes = np.random.default_rng(0).choice(100, 2 * n_tasks, replace=False).tolist()
    train = load_dataset("shapes100", "train", n_per_class=200, image_size=16)
    test = load_dataset("shapes100", "test", n_per_class=50, image_size=16)
    transform = BatchTransform(size=16, mean=(0.5,) * 3, std=(0.25,) * 3)
    in_features, channels = 3 * 16 * 16, 3
else:
    raise ValueError(f"dataset={dataset!r}: this chapter supports 'digits' or 'shapes100'")
class_order = list(range(10)) if dataset == "digits" else classes
data = ContinualData(train, test, Scenario.equal_split(class_order, n_tasks))
print(
    f"{dataset}: {len(train)} train / {len(test)} test images, tasks:",
    [list(data.scenario.task_classes(t)) for t in range(n_tasks)],
)
run_config = RunConfig(epochs=epochs, batch_size=batch_size, device=device, progress=False)


def shared_layer(null_space, seed, dtype="float32"):
    features = RandomReLUFeatures(in_features, feature_dim, seed=seed, channels=channels)
    config = SharedLayerConfig(hidden=hidden, lr=lr, null_space=null_space, dtype=dtype, seed=seed)
    return SharedLayerClassifier(features, feature_dim, transform, config)


# %% [markdown]
# ### The spectrum after the first task
#
# Before training anything, look at what the null space will be built from: $C$ for the inputs
# $\tilde\phi$ of the first task, and where each rule would start the null space.

# %%
probe = shared_layer(None, seed=0)
first = data.task(0, "train")
cov0 = uncentered_covariance(probe.inputs(transform(first.images)))
marks = {}
for label, rule in [
    ("energy 1e-3", NullSpaceRule("energy", 1e-3)),
    ("energy 0.05", NullSpaceRule("energy", 0.05)),
    ("adaptive (NSP²)", NullSpaceRule("adaptive")),
    ("numerical zero", NullSpaceRule("energy", 0.0)),
]:
    ns = null_space_basis(cov0, rule)
    marks[label] = ns.info.dim - ns.info.null_dim
s0 = ns.singular_values.numpy()
fig, ax = plt.subplots(figsize=(6, 3.5))
plot_spectrum(ax, s0, marks, title=f"Spectrum of $C$ after task 1 ({len(first)} inputs, d = {feature_dim + 1})")
savefig(fig, out / "spectrum_task1.png")

# %%
rank = int(torch.linalg.matrix_rank(probe.inputs(transform(first.images)).double()))
print(
    f"{len(first)} inputs in d = {feature_dim + 1} dimensions: rank of X = {rank}; "
    f"s_{rank} = {s0[rank - 1]:.2e}, s_{rank + 1} = {s0[rank]:.2e}"
)
assert rank < feature_dim + 1 and s0[rank] < 1e-10 * s0[0]  # the cliff past the rank (text below)

# %% [markdown]
# The spectrum falls by many orders of magnitude: a handful of directions carry almost all the
# energy of the first task's inputs, and a long tail carries little. Then comes a cliff: $C$ has
# rank at most the number of inputs $n$, so when $n < d$ every eigenvalue past the rank of $X$ is
# zero up to rounding (printed above). Directions past the cliff are the *exact* null space; the
# tail before it is what an approximate null space adds. Both are where the later tasks can learn.
#
# ### Exact null space versus Seq: do old outputs move?
#
# We train both through all tasks, in float64 so that rounding does not blur the picture, and
# record the first head's outputs on the first task's inputs after every task.

# %%
invariance = []
for label, rule in [("Seq", None), ("null space (exact)", NullSpaceRule("energy", 0.0))]:
    method = shared_layer(rule, seed=0, dtype="float64")
    # the first head's two logits on task 1's training inputs, recorded after every task
    first_head = OutputRecorder(data.task(0, "train").images, columns=slice(0, 2))
    result = run_continual(method, data, run_config, after_task=first_head)
    for t, change in enumerate(first_head.changes(), start=2):
        invariance.append(dict(method=label, after_task=t, change=change))
    dims = [i.null_dim for i in getattr(method, "null_space_info", [])]
    print(
        f"{label:20s} task-1 accuracy after every task (task-aware): "
        f"{np.round(result.accuracy_task_aware[:, 0] * 100, 1)}" + (f"  null-space dims {dims}" if dims else "")
    )
invariance = pd.DataFrame(invariance)
print(invariance.pivot(index="after_task", columns="method", values="change").to_string(float_format="%.2e"))
exact = invariance[invariance.method == "null space (exact)"].change
moved = invariance[invariance.method == "Seq"].change
print(f"largest relative change, exact null space: {exact.max():.1e}; smallest under Seq: {moved.min():.1e}")
assert exact.max() < 1e-12 < moved.min()
assert moved.min() > 1e6 * max(exact.max(), 1e-18) and all(np.diff(dims) <= 0)  # orders of magnitude; dims shrink

# %% [markdown]
# With the exact null space the first task's outputs on its own training inputs move by less than
# $10^{-12}$, relative (the largest change is printed): float64 rounding accumulated over hundreds
# of Adam steps, nothing more. Seq moves them by orders of magnitude more, and the first task's
# accuracy drops. (The null space was estimated from the *training* inputs;
# test inputs of the same task lie almost, not exactly, in their span, so their outputs can move
# a little. Exercise 2 measures this.)
#
# Note the null-space dimension shrinking task by task: each task uses up directions, and the
# exact null space soon leaves little room to learn. That is the price of exactness.
#
# ## 1.6 The stability–plasticity trade-off
#
# Now sweep the approximate null space, $\varepsilon$ from 0 (exact) to 0.5, with Seq beside it,
# over `seeds`. We report two accuracies:
#
# * **task-aware**: the right head is known at test time (argmax within the task's own classes);
#   this isolates forgetting caused by drift of the shared layer;
# * **class-incremental**: argmax over all classes seen so far, the protocol both papers use;
#   it also needs the heads of different tasks to be comparable with each other.
#
# Metrics (from the accuracy matrix $R_{ij}$, accuracy on task $j$ after training task $i$): last
# accuracy (on all seen classes after the final task), forgetting (mean over old tasks of the
# best earlier accuracy minus the final one).

# %%
methods = {"Seq": lambda seed: shared_layer(None, seed)}
for eps in energies:
    methods[f"energy={eps:g}"] = (lambda e: lambda seed: shared_layer(NullSpaceRule("energy", e), seed))(eps)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", EmptyNullSpaceWarning)  # the exact null space may run out; that is the point
    frame, results = compare(methods, data, run_config, seeds=seeds, run_root=None)
frame["energy"] = frame["method"].map(lambda m: float(m.split("=")[1]) if "=" in m else np.nan)
frame.to_csv(out / "sweep.csv", index=False)
summary = summary_table(frame, ["last_accuracy", "forgetting", "last_accuracy_task_aware", "forgetting_task_aware"])
summary

# %%
seq = frame[frame.method == "Seq"].mean(numeric_only=True)
sweep = frame.dropna(subset=["energy"])
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for ax, metric, label in [(axes[0], "last_accuracy", "last accuracy"), (axes[1], "forgetting", "forgetting")]:
    long = pd.concat(
        [
            sweep.assign(protocol="task-aware", value=sweep[f"{metric}_task_aware"]),
            sweep.assign(protocol="class-incremental", value=sweep[metric]),
        ]
    )
    plot_metric_sweep(
        ax,
        long,
        x="energy",
        y="value",
        hue="protocol",
        logx=True,
        baselines={"Seq, task-aware": seq[f"{metric}_task_aware"], "Seq, class-incremental": seq[metric]},
        xlabel=r"null-space energy $\varepsilon$ (0 = exact)",
        ylabel=label,
        title=f"{label.capitalize()} vs. the size of the null space",
    )
fig.tight_layout()
savefig(fig, out / "tradeoff.png")

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
for ax, name in zip(axes, ["Seq", "energy=0", "energy=0.01"]):
    plot_accuracy_matrix(ax, results[(name, seeds[0])].accuracy_task_aware, title=f"{name} (task-aware)")
fig.tight_layout()
savefig(fig, out / "accuracy_matrices.png")

# %% [markdown]
# Each method ran on the same seeds (same random features, batches and heads' initialisation), so
# compare them seed by seed: below, each $\varepsilon$ minus Seq, in points (mean ± std over the
# seeds, and the range).

# %%
against_seq = pd.DataFrame(
    {
        (name, metric): paired_difference(frame, name, "Seq", metric)
        for name in methods
        if name != "Seq"
        for metric in ("forgetting_task_aware", "last_accuracy_task_aware", "last_accuracy")
    }
).T
display(against_seq[["mean", "std", "min", "max"]].round(1))
# the reading below, on these runs
exact_runs, seq_runs = frame[frame.method == "energy=0"], frame[frame.method == "Seq"]
assert exact_runs.forgetting_task_aware.abs().max() < 1e-9 and seq_runs.forgetting_task_aware.min() > 0.02
assert (frame.last_accuracy < frame.last_accuracy_task_aware).all()

# %% [markdown]
# What to read from the tables and the plots:
#
# * **Task-aware forgetting** is zero for the exact null space ($\varepsilon = 0$), on every seed,
#   while Seq forgets clearly: protecting the shared layer works as the algebra promised. The
#   table above shows, row by row, how much of that protection each larger $\varepsilon$ keeps.
# * **Plasticity** pays for it: with the exact null space each task consumes directions, so the
#   later tasks are learnt with less room (the diagonal of its task-aware matrix).
# * **Class-incremental** accuracy is far below task-aware accuracy for every method. The null
#   space keeps each old head's outputs, but every new head also scores the old inputs, and nothing
#   calibrates heads of different tasks against each other. Whether some $\varepsilon$ beats Seq
#   here depends on the spread: read the last-accuracy rows of the table above, seed range
#   included, before calling any $\varepsilon$ a sweet spot. NSP² (chapter 3) trains its heads with
#   a temperature partly for this reason; DMNSP (chapter 5) scores classes against text
#   embeddings instead of heads.
#
# ## Summary
#
# * $\Delta W X_{old}^\top = 0$ keeps old outputs; the null space of $C = X_{old}^\top X_{old}$ is
#   the same as that of $X_{old}$ and $C$ accumulates over tasks in fixed memory.
# * $P = U_0 U_0^\top$ from the eigenvectors with (near-)zero eigenvalues; $\eta$ mixes it with
#   the identity.
# * Approximate null spaces trade stability for plasticity; the energy they hold bounds the drift.
#
# ## Exercises
#
# 1. **Rank and room.** Re-run the invariance cell with `feature_dim = 128` and `2048`. How does
#    the null-space dimension after each task change, and what happens to the last task's
#    accuracy under the exact null space? Explain with the rank of $C$.
# 2. **Train versus test inputs.** Measure the relative change of the first head's outputs on the
#    first task's *test* images under the exact null space. Why is it not at rounding level? How does it
#    change if you build $C$ from twice as many training images?
# 3. **The bound.** For `energy = 0.01`, compute $\lVert X_{old}\Delta W^\top\rVert_F^2$ and the
#    bound $\varepsilon\,\operatorname{tr}(C)\lVert\Delta W\rVert_2^2$ for the update of one task.
#    How tight is it?
# 4. **Other rules.** Replace the energy rule by `NullSpaceRule("adaptive")` and by
#    `NullSpaceRule("drop_top", k)` for a few `k`. Where do they land on the trade-off curve?
# 5. **$\eta$ instead of $\varepsilon$.** Keep the exact null space and lower $\eta$ instead
#    (`SharedLayerConfig(eta=...)`). Is mixing with the identity a better or worse knob than a
#    larger null space? Why might that be?
# 6. **Another data set.** Run the chapter with `dataset = "shapes100"` (pass it as a papermill
#    parameter: `-p dataset shapes100`). The inputs now have 768 dimensions: what changes?
#
# ## References
#
# * Saha, G., Garg, I., Roy, K. *Gradient Projection Memory for Continual Learning.* ICLR 2021.
# * Wang, S., Li, X., Sun, J., Xu, Z. *Training Networks in Null Space of Feature Covariance for
#   Continual Learning* (Adam-NSCL). CVPR 2021.
# * Lu, Y. et al. *Visual Prompt Tuning in Null Space for Continual Learning.* NeurIPS 2024.
# * Kang, B. et al. *Dynamic Multi-Layer Null Space Projection for Vision-Language Continual
#   Learning.* ICCV 2025.
