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
# name: ex03_nsp2
# init_cell: true
# check_all_cell: true
# export_cell: false
# solutions_pdf: false
# generate: true
# tests:
#   ok_format: false

# %% [markdown]
# # Exercises 3: NSP², knob by knob
#
# Companion to **chapter 3**. You measure what NSP²'s normalised projector does to a step, sweep its
# mixing weight $\eta$ for a stability–plasticity target, switch the projection and the drift penalty
# off one at a time, and look at how far the prompts move. The runs are short (tiny ViT, 3 tasks of
# 5 classes, 2 epochs): about 2 s each on a 2-core CPU, 6 runs in all (12 s measured for the
# whole notebook). About 90 minutes.
#
# | task | kind | difficulty | time |
# |---|---|---|---|
# | 1. What the normalised projector does to a step | derive and check | ★☆☆ | 15 min |
# | 2. Sweeping $\eta$ for a target | experiment | ★★☆ | 30 min |
# | 3. Projection or drift penalty? | experiment and explain | ★★☆ | 25 min |
# | 4. How far do the prompts move? | experiment (numeric) | ★★☆ | 20 min |
#
# Fill in every `...`, then run `grader.check("qN")`. Hidden checks run when your notebook is graded.

# %%
import math

import numpy as np
import pandas as pd
import torch

from nscl.consistency import ConditionSpec
from nscl.nullspace import NullSpaceRule, null_space_projector
from nscl.presets import nsp2_experiment

torch.manual_seed(0)
seed = 0          # the seed of this notebook's runs
benchmark = "shapes100-10s"
settings = dict(max_tasks=3, epochs=2, progress=False)

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 3

# %% [markdown]
# ## Task 1 · What the normalised projector does to a step (derive and check, ★☆☆, 15 min)
#
# NSP²'s projector is $B = \eta\, U_0U_0^\top/\lVert U_0U_0^\top\rVert_F + (1-\eta) I$ with $k$ null directions.
# Derive the factor by which $B$ multiplies a unit vector inside the null space, and one orthogonal
# to it. Then check on the matrix `C` below ($D = 128$, rank 17, so $k = 111$): build `B` with
# `null_space_projector(C, NullSpaceRule("energy", 0.0), eta=0.97, normalize=True, dtype=torch.float64)`
# and store `q1_inside` and `q1_outside`, the norms of `B @ v_in` and `B @ v_out`, and `q1_formula`,
# your formula for the inside factor evaluated with `eta` and `k` (no typed-in numbers).
#
# *Computation: under 0.1 s measured.*

# %%
g1 = torch.Generator().manual_seed(1)
basis, _ = torch.linalg.qr(torch.randn(128, 128, generator=g1, dtype=torch.float64))
C = basis[:, :17] @ torch.diag(torch.linspace(10, 1, 17, dtype=torch.float64)) @ basis[:, :17].T
v_in, v_out = basis[:, 60], basis[:, 3]         # unit vectors: inside and outside the null space of C
eta, k = 0.97, 128 - 17

# %% [raw]
# # BEGIN SOLUTION

# %%
B, info = null_space_projector(C, NullSpaceRule("energy", 0.0), eta=eta, normalize=True, dtype=torch.float64)
q1_inside = float((B @ v_in).norm())  # SOLUTION
q1_outside = float((B @ v_out).norm())  # SOLUTION
q1_formula = eta / math.sqrt(k) + (1 - eta)  # SOLUTION
print(f"inside {q1_inside:.4f} (formula {q1_formula:.4f}), outside {q1_outside:.4f}")

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q1_measured(q1_inside, q1_outside, q1_formula):
    assert abs(q1_inside - q1_formula) < 1e-9, \
        "q1_formula does not match the measured inside factor: what is the Frobenius norm of a rank-k projector?"
    assert 0 < q1_outside < q1_inside, "outside the null space only the identity part (1 - eta) is left"


# %%
""" # BEGIN TEST CONFIG
hidden: true
""" # END TEST CONFIG
def test_q1_hidden(q1_inside, q1_outside, eta, k):
    import math
    assert abs(q1_outside - (1 - eta)) < 1e-9, "q1_outside: the norm of B @ v_out"
    assert abs(q1_inside - (eta / math.sqrt(k) + 1 - eta)) < 1e-9, "q1_inside: the norm of B @ v_in"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q2
# points: 4

# %% [markdown]
# ## Task 2 · Sweeping $\eta$ for a target (experiment, ★★☆, 30 min)
#
# Keep the drift penalty off (`drift_weight=0`) so that $\eta$ is the only knob, and run NSP² for
# $\eta_1 = \eta_2 = \eta$ in `etas` with `run_nsp2` below. For each run record the class-incremental
# **forgetting** (`result.metrics.forgetting`) and the **plasticity**: the mean, over the tasks after
# the first, of the accuracy on a task right after learning it (the diagonal of `result.accuracy`,
# without its first entry). Keep the runs in a dict `sweep_results` ($\eta$ → result) and store a
# DataFrame `q2_sweep` with the columns `eta`, `forgetting`, `plasticity` (one row per $\eta$, in the
# order of `etas`).
#
# The target: forget at most three quarters as much as plain training ($\eta = 0$, which is Seq). Store in
# `q2_eta` the smallest $\eta$ of the sweep that meets it, and in `q2_cost` what it costs in
# plasticity (plasticity at $\eta = 0$ minus at `q2_eta`).
#
# *Computation: 8.4 s measured (4 runs of 3 tasks).*

# %%
etas = [0.0, 0.5, 0.9, 0.97]


_runs = {}


def run_nsp2(seed=0, **changes):
    """One run of NSP² (tiny ViT, `settings`) with these NSP2Config changes; returns its RunResult.

    A run is kept: asking again for the same seed and changes returns it without training again."""
    key = (seed, benchmark, tuple(settings.items()), tuple(sorted(changes.items())))
    if key not in _runs:
        experiment = nsp2_experiment("tiny", "vit", benchmark, controls=False, **changes).with_run(**settings)
        _runs[key] = experiment.run_all(seeds=[seed], only=["VPT-NSP²"])[1][("VPT-NSP²", seed)]
    return _runs[key]


def conditions(eta):
    return ConditionSpec(NullSpaceRule("adaptive"), NullSpaceRule("adaptive"), eta1=eta, eta2=eta, normalize=True)


# %% [raw]
# # BEGIN SOLUTION

# %%
# BEGIN SOLUTION
sweep_results = {eta: run_nsp2(seed, conditions=conditions(eta), drift_weight=0.0) for eta in etas}
rows = [{"eta": eta, "forgetting": r.metrics.forgetting, "plasticity": float(np.diag(r.accuracy)[1:].mean())}
        for eta, r in sweep_results.items()]
# END SOLUTION
q2_sweep = pd.DataFrame(rows)  # SOLUTION
print(q2_sweep.round(4).to_string(index=False))
baseline = q2_sweep.iloc[0]
q2_eta = float(q2_sweep[q2_sweep.forgetting <= 0.75 * baseline.forgetting].eta.min())  # SOLUTION
q2_cost = float(baseline.plasticity - q2_sweep.set_index("eta").plasticity[q2_eta])  # SOLUTION
print(f"smallest eta meeting the target: {q2_eta}, plasticity cost {q2_cost * 100:.1f} points")

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q2_table(q2_sweep, etas):
    import pandas as pd
    assert isinstance(q2_sweep, pd.DataFrame) and {"eta", "forgetting", "plasticity"} <= set(q2_sweep.columns), \
        "q2_sweep: a DataFrame with the columns eta, forgetting, plasticity"
    assert list(q2_sweep.eta) == list(etas), "one row per eta in `etas`, in that order"
    assert q2_sweep[["forgetting", "plasticity"]].abs().le(1).all().all(), "fractions, not percentages"


# %%
def test_q2_choice(q2_sweep, q2_eta, q2_cost):
    base = q2_sweep.iloc[0]
    meets = q2_sweep[q2_sweep.forgetting <= 0.75 * base.forgetting]
    assert len(meets) > 0, "no eta in your sweep meets the target: check the forgetting column"
    assert q2_eta in list(meets.eta), "q2_eta does not meet the target in your own table"
    assert q2_eta == meets.eta.min(), "a smaller eta of your sweep also meets the target"
    cost = base.plasticity - q2_sweep.set_index("eta").plasticity[q2_eta]
    assert abs(q2_cost - cost) < 1e-9, "q2_cost: plasticity at eta = 0 minus plasticity at q2_eta"


# %%
""" # BEGIN TEST CONFIG
hidden: true
""" # END TEST CONFIG
def test_q2_hidden(q2_sweep, seed, run_nsp2, conditions):
    import numpy as np
    check = run_nsp2(seed, conditions=conditions(0.97), drift_weight=0.0)
    row = q2_sweep.set_index("eta").loc[0.97]
    assert abs(row.forgetting - check.metrics.forgetting) < 1e-9, \
        "forgetting at eta = 0.97 differs from a fresh run: drift_weight=0, the same seed, the notebook's settings"
    assert abs(row.plasticity - float(np.diag(check.accuracy)[1:].mean())) < 1e-9, \
        "plasticity: the mean of the diagonal of the accuracy matrix after the first task"
    assert q2_sweep.forgetting.iloc[-1] < q2_sweep.forgetting.iloc[0], "eta = 0.97 should forget less than eta = 0"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q3
# points: 4

# %% [markdown]
# ## Task 3 · Projection or drift penalty? (experiment and explain, ★★☆, 25 min)
#
# NSP² has two protections: the projection ($\eta = 0.97$) and the drift penalty (`drift_weight=1`).
# Run the full method and the penalty alone (`null_space=False`: no projection; the penalty stays
# on); the projection alone is task 2's $\eta = 0.97$ run and plain training its $\eta = 0$ run. Store
# in `q3_forgetting` a dict with the keys `"Seq"`, `"penalty only"`, `"projection only"`, `"NSP²"`
# (class-incremental forgetting, fractions). Then answer in `q3_answer` (one letter):
#
# * **a** only the projection protects: the penalty alone forgets like Seq;
# * **b** only the penalty protects: the projection alone forgets like Seq;
# * **c** either one alone already forgets about as little as NSP²: each keeps the prompts close to
#   where the first task left them;
# * **d** neither protects: NSP² forgets like Seq.
#
# *Computation: 3.7 s measured (2 runs).*

# %% [raw]
# # BEGIN SOLUTION

# %%
full = run_nsp2(seed)
penalty_only = run_nsp2(seed, null_space=False)
runs3 = {"Seq": sweep_results[0.0], "penalty only": penalty_only, "projection only": sweep_results[0.97], "NSP²": full}  # SOLUTION
q3_forgetting = {name: result.metrics.forgetting for name, result in runs3.items()}  # SOLUTION
q3_answer = "c"  # SOLUTION
print({k: round(v * 100, 1) for k, v in q3_forgetting.items()})

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q3_format(q3_forgetting, q3_answer):
    assert isinstance(q3_forgetting, dict) and set(q3_forgetting) == {"Seq", "penalty only", "projection only", "NSP²"}, \
        "q3_forgetting: a dict with the keys 'Seq', 'penalty only', 'projection only', 'NSP²'"
    assert all(-1 <= v <= 1 for v in q3_forgetting.values()), "forgetting as a fraction, not in %"
    assert q3_answer in ("a", "b", "c", "d"), "answer with one letter: 'a', 'b', 'c' or 'd'"


# %%
""" # BEGIN TEST CONFIG
hidden: true
""" # END TEST CONFIG
def test_q3_hidden(q3_forgetting, q3_answer, q2_sweep, seed, run_nsp2):
    assert abs(q3_forgetting["Seq"] - q2_sweep.forgetting.iloc[0]) < 1e-9, "q3_forgetting['Seq']: task 2's eta = 0 run"
    assert abs(q3_forgetting["projection only"] - q2_sweep.forgetting.iloc[-1]) < 1e-9, \
        "q3_forgetting['projection only']: task 2's eta = 0.97 run"
    check = run_nsp2(seed, null_space=False)
    assert abs(q3_forgetting["penalty only"] - check.metrics.forgetting) < 1e-9, \
        "q3_forgetting['penalty only']: null_space=False with the drift penalty on (its default weight)"
    expected = "c"
    assert q3_answer == expected, "q3_answer: compare each protection alone with Seq and with NSP²"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q4
# points: 3

# %% [markdown]
# ## Task 4 · How far do the prompts move? (experiment, numeric, ★★☆, 20 min)
#
# Each run keeps the prompts after every task in `result.extras["report"]["prompts"]` (a list of
# $L \times m \times D$ tensors). For NSP² (`full`) and for plain training (`sweep_results[0.0]`), compute
# the relative change $\lVert P_t - P_{t-1}\rVert_F / \lVert P_{t-1}\rVert_F$ from each task to the next and
# average it over the tasks after the first. Store both averages in `q4_moves` (a dict with the keys
# `"NSP²"` and `"Seq"`) and their ratio NSP² / Seq in `q4_ratio`.
#
# *Computation: under 0.1 s measured.*

# %% [raw]
# # BEGIN SOLUTION

# %%
def mean_move(result):
    # BEGIN SOLUTION
    history = result.extras["report"]["prompts"]
    return float(np.mean([float((b - a).norm() / a.norm()) for a, b in zip(history, history[1:])]))
    # END SOLUTION


q4_moves = {"NSP²": mean_move(full), "Seq": mean_move(sweep_results[0.0])}  # SOLUTION
q4_ratio = q4_moves["NSP²"] / q4_moves["Seq"]  # SOLUTION
print({k: f"{v:.2e}" for k, v in q4_moves.items()}, f"ratio {q4_ratio:.3f}")

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q4_format(q4_moves, q4_ratio):
    assert isinstance(q4_moves, dict) and set(q4_moves) == {"NSP²", "Seq"}, "q4_moves: keys 'NSP²' and 'Seq'"
    assert all(v > 0 for v in q4_moves.values()), "relative changes are positive"
    assert abs(q4_ratio - q4_moves["NSP²"] / q4_moves["Seq"]) < 1e-12, "q4_ratio: NSP²'s average over Seq's"


# %%
""" # BEGIN TEST CONFIG
hidden: true
""" # END TEST CONFIG
def test_q4_hidden(q4_moves, full, sweep_results):
    import numpy as np
    def move(result):
        h = result.extras["report"]["prompts"]
        return float(np.mean([float((b - a).norm() / a.norm()) for a, b in zip(h, h[1:])]))
    assert abs(q4_moves["NSP²"] - move(full)) <= 1e-9 * move(full), \
        "q4_moves['NSP²']: from each task to the next, relative to the previous prompts, averaged"
    assert abs(q4_moves["Seq"] - move(sweep_results[0.0])) <= 1e-9 * move(sweep_results[0.0]), \
        "q4_moves['Seq']: the same for the eta = 0 run of task 2"
    assert q4_moves["NSP²"] < q4_moves["Seq"], "NSP²'s prompts should move less than Seq's"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# ## Going further (not graded)
#
# Chapter 3's exercise 5: run the tinted benchmark (`benchmark = "shapes100-tinted-10s"`), where the
# prompts have a domain gap to close. Does the answer of task 3 change?
