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

# %% [raw]
# # ASSIGNMENT CONFIG
# name: ex04_modalities
# init_cell: true
# check_all_cell: true
# export_cell: false
# solutions_pdf: false
# generate: true
# tests:
#   ok_format: false

# %% [markdown]
# # Exercises 4: do CLIP's two towers behave differently?
#
# Companion to **chapter 4**. DMNSP's premise is that CLIP's visual adapters spread wider and move
# more over class increments than the text adapters. You predict the towers' difference at
# initialisation, implement the drift measure, and test the premise on two seeds. About 80 minutes;
# every computation takes seconds.
#
# | task | kind | difficulty | time |
# |---|---|---|---|
# | 1. The towers at initialisation | derive and check | ★☆☆ | 15 min |
# | 2. Drift over the increments | implement | ★★☆ | 20 min |
# | 3. Visual over text, on two seeds | experiment | ★★☆ | 25 min |
# | 4. What the comparison needs | explain (multiple choice) | ★☆☆ | 10 min |
#
# Fill in every `...`, then run `grader.check("qN")`. Hidden checks run when your notebook is graded.

# %%
import numpy as np
import pandas as pd
import torch

from nscl.analysis.modalities import across_task_variance, parameter_set, spread_statistics
from nscl.experiment.run import run_continual
from nscl.presets import dmnsp_experiment

torch.manual_seed(0)

# %% [markdown]
# adapter-Seq (adapters in both towers of the tiny CLIP, trained with no projection) on the tinted
# shapes100 benchmark for 3 tasks of one epoch, keeping every adapter parameter after each task.
# `seq.initial` maps each adapter parameter's name to its value at initialisation, `snapshots[t]` to
# its value after task `t`; visual parameters' names start with `visual.`.

# %%
seed = 0   # the seed of this notebook's runs (task 3 also runs seed + 1)
experiment = dmnsp_experiment("tiny", joint=False, record_parameters=True).with_run(max_tasks=3, epochs=1,
                                                                                    progress=False)
data = experiment.data(seed)
seq = experiment.methods["adapter-Seq"](seed)
seq_result = run_continual(seq, data, experiment.run)
snapshots, initial = seq.report()["parameters"], seq.report()["initial_parameters"]
widths = {tower: seq.adapters.tower(tower)[0].down_proj.in_features for tower in ("visual", "text")}
print(f"{len(snapshots)} snapshots; adapter input widths {widths}; "
      f"{sum(1 for n in initial if n.startswith('visual.'))} visual and "
      f"{sum(1 for n in initial if not n.startswith('visual.'))} text adapter tensors")

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 3

# %% [markdown]
# ## Task 1 · The towers at initialisation (derive and check, ★☆☆, 15 min)
#
# Each adapter's $W_{down}$ starts from `nn.init.kaiming_uniform_(weight, a=math.sqrt(5))`. Derive its
# variance as a function of the fan-in (the adapter's input width), and store your predictions for
# the two towers in `q1_predicted` (a dict `{"visual": ..., "text": ...}`, computed from `widths`).
# Then measure the variance of all `down_proj.weight` entries of each tower at init (`initial`), in
# `q1_measured` (same keys).
#
# *Computation: 1.7 s measured, the run above included.*

# %% [raw]
# # BEGIN SOLUTION

# %%
# bound = gain * sqrt(3 / fan_in) with gain = sqrt(2 / (1 + a^2)) = sqrt(1/3): U(-1/sqrt(fan_in), 1/sqrt(fan_in))
q1_predicted = {tower: 1.0 / (3 * fan_in) for tower, fan_in in widths.items()}  # SOLUTION
# BEGIN SOLUTION
down = {tower: torch.cat([v.flatten() for n, v in initial.items()
                          if n.endswith("down_proj.weight") and n.startswith("visual.") == (tower == "visual")])
        for tower in widths}
# END SOLUTION
q1_measured = {tower: float(values.double().var()) for tower, values in down.items()}  # SOLUTION
print(q1_predicted, q1_measured)

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q1_measured(q1_measured, initial):
    import torch
    assert set(q1_measured) == {"visual", "text"}, "q1_measured: a dict with the keys 'visual' and 'text'"
    for tower in ("visual", "text"):
        values = torch.cat([v.flatten() for n, v in initial.items()
                            if n.endswith("down_proj.weight") and n.startswith("visual.") == (tower == "visual")])
        assert abs(q1_measured[tower] - float(values.double().var())) < 1e-3 * float(values.double().var()), \
            f"q1_measured[{tower!r}]: the variance of that tower's down_proj.weight entries at init"


# %%
def test_q1_prediction_close(q1_predicted, q1_measured):
    for tower in ("visual", "text"):
        assert abs(q1_predicted[tower] / q1_measured[tower] - 1) < 0.05, \
            f"q1_predicted[{tower!r}] is far from the measurement: the uniform bound, then the variance of U(-b, b)"


# %%
""" # BEGIN TEST CONFIG
hidden: true
""" # END TEST CONFIG
def test_q1_hidden(q1_predicted, widths):
    for tower, fan_in in widths.items():
        expected = 1.0 / (3 * fan_in)
        assert abs(q1_predicted[tower] - expected) < 1e-9 * expected, \
            f"q1_predicted[{tower!r}]: close to the measurement, but not the exact formula in the fan-in"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q2
# points: 4

# %% [markdown]
# ## Task 2 · Drift over the increments (implement, ★★☆, 20 min)
#
# Write `drift(snapshots, initial, tower)`: for one tower's up-projection weights (the entries of every
# parameter whose name ends in `up_proj.weight`), the list over tasks $t = 0, 1, \dots$ of
# $\lVert\theta_t - \theta_{t-1}\rVert_2/\sqrt P$, with $\theta_{-1}$ the init and $P$ the number of entries.
# The check compares with `nscl.analysis.modalities.spread_statistics`. Store `q2_drift`, a dict with both
# towers' lists.
#
# *Computation: under 0.1 s measured.*

# %% [raw]
# # BEGIN SOLUTION

# %%
def drift(snapshots, initial, tower):
    # BEGIN SOLUTION
    def flat(snapshot):
        return torch.cat([snapshot[n].double().flatten() for n in sorted(snapshot)
                          if n.endswith("up_proj.weight") and n.startswith("visual.") == (tower == "visual")])
    previous, out = flat(initial), []
    for snapshot in snapshots:
        current = flat(snapshot)
        out.append(float((current - previous).norm() / np.sqrt(current.numel())))
        previous = current
    return out
    # END SOLUTION


q2_drift = {tower: drift(snapshots, initial, tower) for tower in ("visual", "text")}  # SOLUTION
print({k: np.round(v, 5) for k, v in q2_drift.items()})

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q2_matches_nscl(q2_drift, snapshots, initial):
    import numpy as np

    from nscl.analysis.modalities import spread_statistics
    stats = spread_statistics(snapshots, initial)
    for tower in ("visual", "text"):
        ref = stats[(stats.set == "up_proj.weight") & (stats.tower == tower)].sort_values("task")["drift"].to_numpy()
        mine = np.asarray(q2_drift[tower], dtype=float)
        assert mine.shape == ref.shape, f"{tower}: one drift per task, the first measured from the init"
        assert np.allclose(mine, ref, rtol=1e-6), \
            f"{tower}: drift differs; from the previous task (not from the init), divided by sqrt(P)"


# %%
""" # BEGIN TEST CONFIG
hidden: true
""" # END TEST CONFIG
def test_q2_hidden(drift):
    import numpy as np
    import torch
    g = torch.Generator().manual_seed(3)
    init = {"visual.b.0.adaptmlp.up_proj.weight": torch.zeros(6, 4), "b.0.adaptmlp.up_proj.weight": torch.zeros(3, 4),
            "visual.b.0.adaptmlp.down_proj.weight": torch.ones(4, 6)}
    snaps, current = [], init
    for _ in range(4):
        current = {k: v + torch.randn(v.shape, generator=g) for k, v in current.items()}
        snaps.append(current)
    mine = drift(snaps, init, "visual")
    flat = [init["visual.b.0.adaptmlp.up_proj.weight"].flatten()] + [s["visual.b.0.adaptmlp.up_proj.weight"].flatten()
                                                                    for s in snaps]
    expected = [float((b - a).double().norm() / np.sqrt(24)) for a, b in zip(flat, flat[1:])]
    assert np.allclose(mine, expected, rtol=1e-6), \
        "on other snapshots your drift differs: only up_proj.weight of the asked tower, task after task"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q3
# points: 4

# %% [markdown]
# ## Task 3 · Visual over text, on two seeds (experiment, ★★☆, 25 min)
#
# Chapter 4 reads the premise as three ratios visual / text for adapter-Seq's $W_{up}$: the variance of
# the values after the last task (`"spread"`), the mean drift over tasks (`"drift"`), and the median
# over entries of each entry's variance across the task snapshots (`"across"`, see
# `across_task_variance`). Compute them for `seed` (the run above) and `seed + 1` (run it), and store
# a DataFrame `q3_ratios` with one row per seed (index `[seed, seed + 1]`) and the columns `"spread"`,
# `"drift"`, `"across"`. Then store in `q3_stable` the list of the measures whose verdict (ratio above or below 1)
# is the same on both seeds.
#
# *Computation: 1.7 s measured (one more run).*

# %% [raw]
# # BEGIN SOLUTION

# %%
# BEGIN SOLUTION
def ratios(snapshots, initial):
    def up(snapshot, tower):
        return parameter_set(snapshot, initial, tower, "up_proj.weight")
    spread = float(up(snapshots[-1], "visual").var(unbiased=False) / up(snapshots[-1], "text").var(unbiased=False))
    d = {t: np.mean(drift(snapshots, initial, t)) for t in ("visual", "text")}
    across = {t: float(across_task_variance(snapshots, initial, t).median()) for t in ("visual", "text")}
    return {"spread": spread, "drift": d["visual"] / d["text"], "across": across["visual"] / across["text"]}


seq1 = experiment.methods["adapter-Seq"](seed + 1)
run_continual(seq1, experiment.data(seed + 1), experiment.run)
# END SOLUTION
second = ratios(seq1.report()["parameters"], seq1.report()["initial_parameters"])  # SOLUTION
q3_ratios = pd.DataFrame([ratios(snapshots, initial), second], index=[seed, seed + 1])  # SOLUTION
q3_stable = [c for c in q3_ratios.columns if len(set(q3_ratios[c] > 1)) == 1]  # SOLUTION
print(q3_ratios.round(3), q3_stable)

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q3_format(q3_ratios, q3_stable, seed):
    import pandas as pd
    assert isinstance(q3_ratios, pd.DataFrame) and list(q3_ratios.index) == [seed, seed + 1], \
        "q3_ratios: a DataFrame with one row per seed, index [seed, seed + 1]"
    assert set(q3_ratios.columns) == {"spread", "drift", "across"}, "columns 'spread', 'drift' and 'across'"
    assert bool((q3_ratios > 0).all().all()), "ratios of variances and drifts are positive"
    assert set(q3_stable) <= {"spread", "drift", "across"}, "q3_stable lists column names of q3_ratios"


# %%
""" # BEGIN TEST CONFIG
hidden: true
""" # END TEST CONFIG
def test_q3_hidden(q3_ratios, q3_stable, snapshots, initial, seed):
    import numpy as np

    from nscl.analysis.modalities import across_task_variance, spread_statistics
    stats = spread_statistics(snapshots, initial)
    up = stats[stats.set == "up_proj.weight"].pivot(index="task", columns="tower")
    expected = {"spread": up["variance"]["visual"].iloc[-1] / up["variance"]["text"].iloc[-1],
                "drift": up["drift"]["visual"].mean() / up["drift"]["text"].mean(),
                "across": float(across_task_variance(snapshots, initial, "visual").median()
                                / across_task_variance(snapshots, initial, "text").median())}
    for key, value in expected.items():
        assert abs(q3_ratios.loc[seed, key] / value - 1) < 1e-4, f"q3_ratios, first row, {key!r}: not the ratio asked for"
    assert not np.allclose(q3_ratios.loc[seed].to_numpy(), q3_ratios.loc[seed + 1].to_numpy()), \
        "the two rows are equal: did the second run really use seed + 1 (its own data and initialisation)?"
    agree = sorted(c for c in ("spread", "drift", "across") if len(set(q3_ratios[c] > 1)) == 1)
    assert sorted(q3_stable) == agree, "q3_stable: the measures whose ratio is on the same side of 1 for both seeds"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q4
# points: 2

# %% [markdown]
# ## Task 4 · What the comparison needs (explain, multiple choice, ★☆☆, 10 min)
#
# Why does chapter 4 compare $W_{down} - W_{down}^{init}$ between the towers, and not $W_{down}$ itself?
# Store one letter in `q4_answer`.
#
# * **a** because $W_{down}$ does not train;
# * **b** because the init's variance is $1/(3\,\text{fan-in})$ and the towers' widths differ, so raw
#   values would mostly compare the two inits (task 1), not what training did;
# * **c** because the text tower has fewer blocks;
# * **d** because subtracting the init removes the effect of the learning rate.
#
# *Computation: none.*

# %% [raw]
# # BEGIN SOLUTION

# %%
q4_answer = "b"  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q4_format(q4_answer):
    assert q4_answer in ("a", "b", "c", "d"), "answer with one letter: 'a', 'b', 'c' or 'd'"


# %%
""" # BEGIN TEST CONFIG
hidden: true
""" # END TEST CONFIG
def test_q4_hidden(q4_answer):
    expected = "b"
    assert q4_answer == expected, "q4_answer: what did task 1 show about the two towers before any training?"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# ## Going further (not graded)
#
# Chapter 4's exercise 4 (`project_text=True`) and exercise 5 (the grey benchmark, where the adapters
# barely learn): which tower looks "broader" then?
