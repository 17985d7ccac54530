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
# # 4. Two modalities, two behaviours? The adapters of a continually trained CLIP
#
# DMNSP (Kang et al., ICCV 2025) treats CLIP's two towers differently: it projects the gradients of
# the *visual* adapters into null spaces of old tasks and trains the *text* adapters plainly. Its
# reason, in the abstract's words: "the visual modality experiences a broader parameter
# distribution and greater variance during class increments than the textual modality, leading
# to higher vulnerability to forgetting". This chapter measures that claim on our own runs.
#
# **Setting.** CLIP with an AdaptFormer-style adapter beside the MLP of every block of both
# towers, placed and initialised as in the official code (chapter 5 has the details): for block
# input $x$,
#
# $$a(x) = s\,\big(W_{up}\,\mathrm{ReLU}(W_{down}\,x + b_{down}) + b_{up}\big), \qquad s = 0.1,$$
#
# with $W_{up} = 0$ and $b = 0$ at init, so training starts from zero-shot CLIP. Only adapters
# train, with cross-entropy over the current task's classes, scored against the text features of
# "a bad photo of a {class}.".
#
# **Protocol.** DMNSP motivates its asymmetric treatment by an observation stated in words: the
# visual adapters' parameters are distributed more broadly, and vary more during class increments,
# than the text adapters'. This chapter turns the observation into measurements:
#
# 1. train **adapter-Seq** (no projection: the observation motivates the method, so it must be
#    measured without it) and, for comparison, DMNSP; keep every adapter parameter after each task;
# 2. compare the towers on parameter sets that are fair to both: $W_{up}$ (zero at init: all of it
#    is learnt) and $W_{down} - W_{down}^{init}$ (the kaiming init of $W_{down}$ depends on the
#    fan-in, which differs between towers, so raw values would compare inits, not training);
# 3. per task: spread (variance, percentiles) and drift $\lVert\theta_t-\theta_{t-1}\rVert_2/\sqrt{P}$;
#    per parameter: the variance across tasks, $\mathrm{Var}_t(\theta_t)$ (the other reading of
#    "greater variance during class increments").

# %% tags=["parameters"]
preset = "tiny"  # "tiny" (CPU) or "paper" (OpenAI CLIP ViT-B/16, GPU)
benchmark = None  # None: shapes100-tinted-10s (tiny) or cifar100-10-10 (paper)
seed = 0
device = "cpu"
epochs = None  # None: the recipe's
max_tasks = None
data_root = None
download = False
run_root = None  # None: build/outputs/runs/dmnsp-<preset>-<benchmark> (shared with chapter 5)
progress = False  # True: tqdm bars per task (long GPU runs)

# %%
# One typed config checks every parameter before anything is loaded (as `python -m nscl run` does).
from nscl.experiment.config import ExperimentConfig, check_parameters

check_parameters(
    globals(),
    {"preset", "benchmark", "seed", "device", "epochs", "max_tasks", "data_root", "download", "run_root", "progress"},
    types={"seed": int},
)
config = ExperimentConfig(
    method="dmnsp",
    preset=preset,
    benchmark=benchmark,
    seeds=[seed],
    device=device,
    epochs=epochs,
    max_tasks=max_tasks,
    data_root=data_root,
    download=download,
    progress=progress,
    only=["Seq", "DMNSP"],
    overrides={"record_parameters": True},
)

# %%

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from nscl.analysis.modalities import across_task_variance, layer_statistics, parameter_set, spread_statistics
from nscl.paths import book_runs, output_dir
from nscl.results.plots import savefig
from nscl.results.tables import summary_table

experiment = config.experiment()  # the recipe, with every weight recorded after each task
out = output_dir("04_modalities")
runs = run_root or book_runs(f"dmnsp-{preset}-{experiment.benchmark.id}")  # chapter 5 reads these runs back
frame, results = experiment.run_all(seeds=[seed], run_root=runs, only=config.selected_methods())
summary_table(frame, ["last_accuracy", "forgetting", "forgetting_task_aware"])

# %% [markdown]
# ## 4.1 Where the towers start
#
# First the confound: at init the two towers' adapters are *not* alike. $W_{down}$ is drawn
# uniformly with a bound set by the fan-in (the width of the tower), and $W_{up}$ is zero.


# %%
def report(name: str) -> dict:
    return results[(name, seed)].extras["report"]


initial = report("adapter-Seq")["initial_parameters"]
init_rows = []
for tower in ("visual", "text"):
    for which in ("up_proj.weight", "all"):
        x = parameter_set(initial, initial, tower, which)
        init_rows.append({"tower": tower, "set": which, "parameters": x.numel(), "variance at init": float(x.var())})
pd.DataFrame(init_rows)

# %% [markdown]
# ## 4.2 Distributions task by task
#
# Each curve is the density of one tower's learnt up-projection weights after one task of
# adapter-Seq (light: early tasks, dark: late tasks), on a shared axis.

# %%
snapshots = {name: report(name)["parameters"] for name in ("adapter-Seq", "DMNSP")}
n_tasks = len(snapshots["adapter-Seq"])
fig, axes = plt.subplots(2, 2, figsize=(12, 7), sharex="col")
for row, name in enumerate(("adapter-Seq", "DMNSP")):
    for col, which in enumerate(("up_proj.weight", "down_proj.weight - init")):
        ax = axes[row, col]
        pooled = np.concatenate(
            [parameter_set(s, initial, t, which).numpy() for s in snapshots[name] for t in ("visual", "text")]
        )
        lo, hi = np.quantile(pooled, [0.001, 0.999])
        bins = np.linspace(lo, hi, 120)
        for tower, cmap in (("visual", "Blues"), ("text", "Oranges")):
            colours = sns.color_palette(cmap, n_tasks + 2)[2:]
            for task, snap in enumerate(snapshots[name]):
                values = parameter_set(snap, initial, tower, which).numpy()
                ax.hist(
                    values,
                    bins=bins,
                    density=True,
                    histtype="step",
                    color=colours[task],
                    lw=1,
                    label=f"{tower}" if task == n_tasks - 1 else None,
                )
        ax.set_yscale("log")
        ax.set_title(f"{name}: {which}")
        ax.set_xlabel("parameter value")
        ax.set_ylabel("density (log)")
        ax.legend(title="tower (darkest = last task)", fontsize=8)
fig.tight_layout()
savefig(fig, out / "parameter_distributions.png")

# %% [markdown]
# ## 4.3 Spread and drift over the increments

# %%
stats = pd.concat([spread_statistics(snapshots[name], initial).assign(method=name) for name in snapshots])
stats["task"] += 1
stats.to_csv(out / "spread_statistics.csv", index=False)
fig, axes = plt.subplots(2, 2, figsize=(12, 7))
for col, which in enumerate(("up_proj.weight", "down_proj.weight - init")):
    part = stats[stats.set == which]
    for row, metric in enumerate(("variance", "drift")):
        ax = axes[row, col]
        sns.lineplot(data=part, x="task", y=metric, hue="tower", style="method", marker="o", ax=ax)
        ax.set_yscale("log")
        ax.set_title(f"{which}: {'variance of the values' if metric == 'variance' else 'drift from the previous task'}")
        ax.set_xlabel("after task")
        ax.set_ylabel(metric if metric == "variance" else r"$\|\theta_t-\theta_{t-1}\|_2/\sqrt{P}$")
        ax.grid(alpha=0.3)
fig.tight_layout()
savefig(fig, out / "spread_and_drift.png")

# %% [markdown]
# ## 4.4 Variance across the increments, parameter by parameter

# %%
rows = []
for name in snapshots:
    for tower in ("visual", "text"):
        var = across_task_variance(snapshots[name], initial, tower).numpy()
        rows += [{"method": name, "tower": tower, "log10 variance across tasks": v} for v in np.log10(var + 1e-20)]
variance = pd.DataFrame(rows)
fig, ax = plt.subplots(figsize=(7, 3.6))
sns.violinplot(data=variance, x="method", y="log10 variance across tasks", hue="tower", split=True, ax=ax, cut=0)
ax.set_title(r"$\mathrm{Var}_t(\theta_t)$ of each up-projection weight")
savefig(fig, out / "across_task_variance.png")

fig, axes = plt.subplots(1, 2, figsize=(12, 3.2))
for ax, tower in zip(axes, ("visual", "text")):
    table = layer_statistics(snapshots["adapter-Seq"], initial, tower)
    table.columns = [c + 1 for c in table.columns]
    sns.heatmap(np.log10(table), ax=ax, cmap="mako", cbar_kws={"label": "log10 variance of W_up"})
    ax.set_title(f"adapter-Seq, {tower} tower")
    ax.set_xlabel("after task")
    ax.set_ylabel("block")
fig.tight_layout()
savefig(fig, out / "layer_variance.png")

# %% [markdown]
# ## 4.5 What our run shows
#
# The paper's claim predicts, for adapter-Seq, that the visual tower's learnt weights spread wider
# (larger variance) and move more from task to task (larger drift, larger variance across tasks)
# than the text tower's. The cell below reads these three comparisons off this run and says
# whether each one holds; with the tiny preset the towers also differ in size (visual width 128,
# 4 blocks; text width 64, 2 blocks), which the per-parameter normalisations above account for.

# %%
seq = stats[(stats.method == "adapter-Seq") & (stats.set == "up_proj.weight")].pivot(index="task", columns="tower")
across = variance[variance.method == "adapter-Seq"].groupby("tower")["log10 variance across tasks"].median()
checks = {
    "spread (variance of W_up after the last task)": (
        seq["variance"]["visual"].iloc[-1],
        seq["variance"]["text"].iloc[-1],
    ),
    "drift (mean over tasks)": (seq["drift"]["visual"].mean(), seq["drift"]["text"].mean()),
    "variance across tasks (median per weight)": (10 ** across["visual"], 10 ** across["text"]),
}
verdict = pd.DataFrame(
    [
        {"measure": k, "visual": v, "text": t, "visual / text": v / t, "paper's claim holds here": bool(v > t)}
        for k, (v, t) in checks.items()
    ]
)
visual_drift = stats[(stats.set == "up_proj.weight") & (stats.tower == "visual") & (stats.task > 1)]
by_method = visual_drift.groupby("method")["drift"].mean()
print(
    f"visual W_up drift from task 2 on (mean): adapter-Seq {by_method['adapter-Seq']:.2e}, "
    f"DMNSP {by_method['DMNSP']:.2e} -> DMNSP {'lower' if by_method['DMNSP'] < by_method['adapter-Seq'] else 'not lower'}"
)
verdict.to_csv(out / "verdict.csv", index=False)
for row in verdict.itertuples():
    print(
        f"{row.measure}: visual / text = {row._4:.2f} -> "
        f"{'visual larger, as the paper says' if row._5 else 'text larger, unlike the paper'}"
    )
verdict

# %% [markdown]
# Read the figures with these numbers in hand. What the paper's account predicts: in 4.2 the blue
# (visual) curves wider than the orange (text) ones and fanning out more from light to dark; in 4.3
# the visual lines above the text lines; under DMNSP a lower visual drift, since its visual updates
# are confined to the null spaces of earlier tasks, and an untouched text drift.
#
# **How to read the verdict.** Each ratio above is visual over text for this run; a ratio near 1 is
# not a difference (exercise 1 asks how much it moves with the seed). The *spread* measure compares
# where the parameters end; the *drift* and *across-task variance* measures are the "vary more during
# class increments" half. Exercise 5 runs the grey-background benchmark, where the adapters have no
# domain gap to close and hardly learn: the ratios there show how much the finding depends on the
# adapters having something to learn. Whether DMNSP's visual drift comes out lower than
# adapter-Seq's (the first printed line) says little about the projection either way: it
# constrains the *direction* of the updates, not their size, and AdamW divides each
# coordinate by its own running scale, so projected gradients still give steps of about the
# learning rate per coordinate (chapter 5.2). What it aims at is that the adapters' outputs on old
# tasks' inputs stay where they were, which chapter 5 measures as forgetting. Two limits on the test: the
# tiny CLIP's text tower is small (2 blocks of width 64, class names that share colour and shape
# words across tasks), and DMNSP projects the *gradient* before AdamW, whose per-coordinate scaling
# moves the update out of the projected subspace. CIFAR-100 with CLIP ViT-B/16 (`preset = "paper"`
# on a GPU) is the test that matters; the claim stays the paper's until it is run.
#
# ## Summary
#
# * DMNSP's premise is an asymmetry: the visual adapters' parameters spread more and vary more across
#   class increments than the text adapters', so the visual branch is the one to protect.
# * Three measures test it on a run: the spread of the parameters where they end, their drift from
#   their initial values per task, and their variance across tasks; each is compared as a visual /
#   text ratio, printed above for this run, with a ratio near 1 meaning no difference.
# * A projection constrains the direction of the updates, not their size: under AdamW, lower visual
#   drift is not what to expect from DMNSP, unchanged outputs on old tasks' inputs are.
#
# ## Exercises
#
# 1. Repeat the analysis with `seed` in {1, 2}. Which of the three comparisons are stable?
# 2. Compare raw `down_proj.weight` values instead of their change from init. Why does the text
#    tower look "broader" at init on the paper preset (fan-in 512 < 768)?
# 3. Normalise the drift by the weights' scale instead of $\sqrt{P}$ (relative drift). Does the
#    conclusion change?
# 4. Turn on `project_text=True` (DMNSP projecting the text tower too). Does the text drift fall
#    as the visual one did, and what happens to the accuracy?
# 5. Run the chapter with `benchmark = "shapes100-10s"` (grey backgrounds, no domain gap). How
#    large are the adapters' updates there, and which tower now looks "broader"?
