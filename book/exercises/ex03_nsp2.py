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

from nscl.nsp2.conditions import ConditionSpec
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
# $\eta_1 = \eta_2 = \eta$ in `etas` with `run_nsp2` below. Keep the runs in a dict `sweep_results`
# ($\eta$ → result). Write `plasticity_of(accuracy)`: the mean, over the tasks after the first, of the
# accuracy on a task right after learning it (the diagonal of an accuracy matrix, without its first
# entry). Store a DataFrame `q2_sweep` with the columns `eta`, the class-incremental `forgetting`
# (`result.metrics.forgetting`) and `plasticity` (one row per $\eta$, in the order of `etas`).
#
# The target: keep at least half of the reduction in forgetting that the sweep can buy, i.e. forget
# at most $F_{\text{Seq}} - \tfrac12 (F_{\text{Seq}} - F_{\min})$, where $F_{\text{Seq}}$ is the forgetting
# at $\eta = 0$ (plain training, Seq) and $F_{\min}$ the least forgetting of the sweep (so some $\eta$
# always meets it). Write `smallest_meeting(sweep)`, which returns the smallest $\eta$ of a table like
# `q2_sweep` that meets the target, store `q2_eta = smallest_meeting(q2_sweep)`, and in `q2_cost` what it
# costs in plasticity (plasticity at $\eta = 0$ minus at `q2_eta`).
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
def plasticity_of(accuracy):
    # BEGIN SOLUTION
    return float(np.diag(accuracy)[1:].mean())
    # END SOLUTION


def smallest_meeting(sweep):
    # BEGIN SOLUTION
    seq, least = sweep.forgetting.iloc[0], sweep.forgetting.min()
    target = seq - 0.5 * (seq - least)
    return float(sweep[sweep.forgetting <= target].eta.min())
    # END SOLUTION


# BEGIN SOLUTION
sweep_results = {eta: run_nsp2(seed, conditions=conditions(eta), drift_weight=0.0) for eta in etas}
rows = [{"eta": eta, "forgetting": r.metrics.forgetting, "plasticity": plasticity_of(r.accuracy)}
        for eta, r in sweep_results.items()]
# END SOLUTION
q2_sweep = pd.DataFrame(rows)  # SOLUTION
print(q2_sweep.round(4).to_string(index=False))
q2_eta = smallest_meeting(q2_sweep)  # SOLUTION
q2_cost = float(q2_sweep.plasticity.iloc[0] - q2_sweep.set_index("eta").plasticity[q2_eta])  # SOLUTION
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
def test_q2_choice(q2_sweep, q2_eta, q2_cost, smallest_meeting):
    seq, least = q2_sweep.forgetting.iloc[0], q2_sweep.forgetting.min()
    meets = q2_sweep[q2_sweep.forgetting <= seq - 0.5 * (seq - least) + 1e-12]
    assert q2_eta in list(meets.eta), "q2_eta does not meet the target in your own table"
    assert q2_eta == meets.eta.min(), "a smaller eta of your sweep also meets the target"
    assert q2_eta == smallest_meeting(q2_sweep), "q2_eta: store smallest_meeting(q2_sweep)"
    cost = q2_sweep.plasticity.iloc[0] - q2_sweep.set_index("eta").plasticity[q2_eta]
    assert abs(q2_cost - cost) < 1e-9, "q2_cost: plasticity at eta = 0 minus plasticity at q2_eta"


# %%
""" # BEGIN TEST CONFIG
hidden: true
""" # END TEST CONFIG
def test_q2_hidden(q2_sweep, sweep_results, etas, plasticity_of, smallest_meeting):
    import numpy as np
    import pandas as pd
    nan = float("nan")
    # plasticity_of on a matrix worked by hand: (0.5 + 0.7) / 2, the first task's 1.0 left out
    hand = np.array([[1.0, nan, nan], [0.9, 0.5, nan], [0.8, 0.6, 0.7]])
    assert abs(plasticity_of(hand) - 0.6) < 1e-12, "plasticity: the mean of the diagonal of the accuracy matrix " \
                                                   "after the first task"
    for eta in etas:
        row, run = q2_sweep.set_index("eta").loc[eta], sweep_results[eta]
        assert abs(row.forgetting - run.metrics.forgetting) < 1e-9, f"q2_sweep: forgetting at eta = {eta} is not its run's"
        assert abs(row.plasticity - plasticity_of(run.accuracy)) < 1e-9, \
            f"q2_sweep: plasticity at eta = {eta} is not plasticity_of(its accuracy matrix)"
    # smallest_meeting on a table worked by hand: target 0.10 - 0.5 * (0.10 - 0.05) = 0.075, met from 0.9 on
    table = pd.DataFrame({"eta": [0.0, 0.5, 0.9, 0.97], "forgetting": [0.10, 0.09, 0.06, 0.05],
                          "plasticity": [0.96, 0.95, 0.93, 0.92]})
    picked = smallest_meeting(table)
    assert picked >= 0.9, "q2_eta does not meet the target in your own table"
    assert picked == 0.9, "a smaller eta of your sweep also meets the target"


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
# (class-incremental forgetting, fractions), and the four runs themselves in `q3_runs` (same keys,
# each a result; reuse task 2's runs). Then answer in `q3_answer` (one letter):
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
q3_runs = {"Seq": sweep_results[0.0], "penalty only": penalty_only, "projection only": sweep_results[0.97], "NSP²": full}  # SOLUTION
q3_forgetting = {name: result.metrics.forgetting for name, result in q3_runs.items()}  # SOLUTION
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
def test_q3_hidden(q3_forgetting, q3_runs, q3_answer, sweep_results, seed, run_nsp2):
    assert q3_runs["Seq"] is sweep_results[0.0], "q3_runs['Seq']: task 2's eta = 0 run"
    assert q3_runs["projection only"] is sweep_results[0.97], "q3_runs['projection only']: task 2's eta = 0.97 run"
    check = run_nsp2(seed, null_space=False)
    assert abs(q3_runs["penalty only"].metrics.forgetting - check.metrics.forgetting) < 1e-9, \
        "q3_runs['penalty only']: null_space=False with the drift penalty on (its default weight)"
    full = run_nsp2(seed)
    assert abs(q3_runs["NSP²"].metrics.forgetting - full.metrics.forgetting) < 1e-9, "q3_runs['NSP²']: the full method"
    for name, run in q3_runs.items():
        assert abs(q3_forgetting[name] - run.metrics.forgetting) < 1e-9, f"q3_forgetting[{name!r}] is not its run's"
    # The letters your numbers support: a protection alone "protects" when it buys at least 65% of NSP²'s
    # reduction from Seq, "forgets like Seq" below 35% (in between, either reading is accepted).
    f = q3_forgetting
    span = f["Seq"] - f["NSP²"]
    if span < 0.01:
        accepted = {"d"}
    else:
        def reads(name):
            share = (f["Seq"] - f[name]) / span
            return {True} if share >= 0.65 else {False} if share <= 0.35 else {True, False}
        letter = {(True, True): "c", (True, False): "a", (False, True): "b", (False, False): "d"}
        accepted = {letter[p, q] for p in reads("projection only") for q in reads("penalty only")}
    assert q3_answer in accepted, "q3_answer: compare each protection alone with Seq and with NSP²"


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
