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
# name: ex01_null_space
# init_cell: true
# check_all_cell: true
# export_cell: false
# solutions_pdf: false
# generate: true
# tests:
#   ok_format: false

# %% [markdown]
# # Exercises 1: the null space of a linear layer
#
# Companion to **chapter 1**. Five tasks, about 85 minutes in all; every computation runs in seconds
# on a laptop CPU (the time measured for each task's computations is given with it).
#
# | task | kind | difficulty | time |
# |---|---|---|---|
# | 1. The projector from features | derive and check | ★☆☆ | 15 min |
# | 2. Mixing with the identity | derive and check | ★☆☆ | 10 min |
# | 3. The energy rule | implement | ★★☆ | 25 min |
# | 4. How tight is the drift bound? | derive and check | ★★☆ | 15 min |
# | 5. Training inputs versus test inputs | experiment and explain | ★★☆ | 20 min |
#
# Fill in every `...`, then run `grader.check("qN")` below each task. The checks shown to you are a
# part of the grading; more (hidden) checks run when your notebook is graded, so make your answers
# right, not only green. Do not change the names of the variables and functions you are asked for.

# %%
import math

import numpy as np
import torch

from nscl.data import ContinualData, Scenario, load_dataset
from nscl.data.loading import BatchTransform
from nscl.experiment.run import RunConfig, run_continual
from nscl.methods.linear import SharedLayerClassifier, SharedLayerConfig
from nscl.models.features import RandomReLUFeatures
from nscl.nullspace import NullSpaceRule, null_space_basis, null_space_projector, uncentered_covariance

torch.manual_seed(0)

# %% [markdown]
# ## Task 1 · The projector from features (derive and check, ★☆☆, 15 min)
#
# Old inputs $X_{old}$ ($n \times d$, rows are inputs) span only `rank` of the $d$ dimensions. Chapter 1
# showed that an update $\Delta W$ keeps old outputs exactly when its rows lie in the null space of
# $C = X_{old}^\top X_{old}$, and that $P = U_0U_0^\top$ projects onto it.

# %%
g = torch.Generator().manual_seed(0)
d, rank = 64, 20
x_old = torch.randn(300, rank, generator=g, dtype=torch.float64) @ torch.randn(rank, d, generator=g,
                                                                                 dtype=torch.float64)
weight = torch.randn(10, d, generator=g, dtype=torch.float64)
update = torch.randn(10, d, generator=g, dtype=torch.float64)


def relative_change(w, dw, x):
    """||X (W + dW)^T - X W^T|| / ||X W^T||: how far old outputs move."""
    return float(torch.linalg.norm(x @ dw.T) / torch.linalg.norm(x @ w.T))


# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 4

# %% [markdown]
# **1a.** Write `projector_from_features(x)`: it forms $C = X^\top X$, takes its eigen-decomposition
# (`torch.linalg.eigh`), keeps the eigenvectors whose eigenvalue is numerically zero,
# $s_i \le 10\, d\, \varepsilon_{mach}\, s_{max}$ with $\varepsilon_{mach}$ = `torch.finfo(torch.float64).eps`,
# and returns $P = U_0U_0^\top$ ($d \times d$, float64). Do not use `nscl.nullspace` here.
#
# **1b.** Store `P = projector_from_features(x_old)` and `q1_change`, the relative change of the old
# outputs under the projected update `update @ P` (use `relative_change`).
#
# *Computation: 1.4 s measured, imports included (the projector itself: under 0.1 s).*

# %% [raw]
# # BEGIN SOLUTION

# %%
def projector_from_features(x):
    # BEGIN SOLUTION
    c = x.T.to(torch.float64) @ x.to(torch.float64)
    s, u = torch.linalg.eigh((c + c.T) / 2)
    tol = 10 * c.shape[0] * torch.finfo(torch.float64).eps * s.max()
    u0 = u[:, s <= tol]
    return u0 @ u0.T
    # END SOLUTION


P = projector_from_features(x_old)
q1_change = relative_change(weight, update @ P, x_old)  # SOLUTION
print(f"null-space dimension {round(float(torch.trace(P)))}, old outputs move by {q1_change:.1e}")

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q1_shape(P):
    import torch
    assert isinstance(P, torch.Tensor) and P.shape == (64, 64), "P should be a 64 x 64 torch tensor (d x d)"
    assert P.dtype == torch.float64, "compute P in float64"


# %%
def test_q1_projector(P):
    import torch
    assert torch.allclose(P, P.T, atol=1e-10), "P is not symmetric: U0 U0^T is, whatever U0 is (columns or rows?)"
    assert torch.allclose(P @ P, P, atol=1e-10), "P is not idempotent (P P != P): are the columns of U0 orthonormal eigenvectors?"


# %%
def test_q1_old_outputs(P, q1_change):
    assert q1_change < 1e-10, ("old outputs still move: P must keep the directions the old inputs cannot see, "
                               "not the ones they use")


# %%
""" # BEGIN TEST CONFIG
hidden: true
""" # END TEST CONFIG
def test_q1_hidden(projector_from_features):
    import torch

    from nscl.nullspace import NullSpaceRule, null_space_projector, uncentered_covariance
    g = torch.Generator().manual_seed(123)
    for n, d, r in [(50, 30, 7), (12, 40, 12), (200, 16, 15)]:
        x = torch.randn(n, r, generator=g, dtype=torch.float64) @ torch.randn(r, d, generator=g, dtype=torch.float64)
        mine = projector_from_features(x)
        ref, info = null_space_projector(uncentered_covariance(x), NullSpaceRule("energy", 0.0), dtype=torch.float64)
        assert mine.shape == (d, d), "projector_from_features must return a d x d matrix for any (n, d) input"
        dim = round(float(torch.trace(mine)))
        assert dim == info.null_dim, "the null space has the wrong dimension on other inputs: count the zero eigenvalues again"
        assert torch.allclose(mine, ref, atol=1e-9), "the projector differs from the exact null-space projector on other inputs"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q2
# points: 2

# %% [markdown]
# ## Task 2 · Mixing with the identity (derive and check, ★☆☆, 10 min)
#
# NSP² softens the projector: $P_\eta = \eta P + (1-\eta) I$. Derive how the relative change of old
# outputs under `update @ P_eta` depends on $\eta$, then check it: store in `q2_changes` (a list) the
# relative change for each $\eta$ in `etas`, and in `q2_slope` the slope of
# $\log(\text{change})$ against $\log(1-\eta)$ over the $\eta < 1$ (`np.polyfit`, degree 1).
#
# *Computation: under 0.1 s measured.*

# %%
etas = [1.0, 0.999, 0.99, 0.9, 0.5, 0.0]

# %% [raw]
# # BEGIN SOLUTION

# %%
eye = torch.eye(d, dtype=torch.float64)
q2_changes = [relative_change(weight, update @ (eta * P + (1 - eta) * eye), x_old) for eta in etas]  # SOLUTION
mixed = [(eta, c) for eta, c in zip(etas, q2_changes) if eta < 1]  # SOLUTION
q2_slope = float(np.polyfit(np.log([1 - e for e, _ in mixed]), np.log([c for _, c in mixed]), 1)[0])  # SOLUTION
print("changes:", np.round(q2_changes, 6), "slope:", round(q2_slope, 6))

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q2_shape(q2_changes, etas):
    assert len(q2_changes) == len(etas), "one change per eta in `etas`, in the same order"


# %%
""" # BEGIN TEST CONFIG
hidden: true
""" # END TEST CONFIG
def test_q2_hidden(q2_changes, q2_slope, etas, weight, update, x_old):
    import numpy as np
    base = float(np.linalg.norm((x_old @ update.T).numpy()) / np.linalg.norm((x_old @ weight.T).numpy()))
    values = np.asarray(q2_changes, dtype=float)
    assert values[0] < 1e-10, "at eta = 1 the update is purely projected: old outputs must not move"
    assert abs(values[-1] - base) < 1e-8 * base, "at eta = 0 there is no projection: the change is the raw update's"
    assert np.all(np.diff(values) >= -1e-12), "old outputs should move more as eta falls towards 0"
    expected = (1 - np.asarray(etas)) * base
    assert np.allclose(values, expected, rtol=1e-6, atol=1e-12), "the changes do not follow the law you should derive"
    assert abs(q2_slope - 1.0) < 1e-6, "q2_slope: fit log(change) against log(1 - eta), for eta < 1 only"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# ## Task 3 · The energy rule (implement, ★★☆, 25 min)
#
# Real features have no exact null space. The *energy* rule keeps the longest tail of the spectrum
# (descending $s_1 \ge \dots \ge s_d$) whose energy $\sum_{i \in \text{tail}} s_i$ is at most
# $\varepsilon \sum_i s_i$, plus every numerically-zero direction ($s_i \le 10\,d\,\varepsilon_{mach}\,s_{max}$).
# The features below are chapter 1's: a fixed random ReLU network on the first task's digits,
# with a constant 1 appended ($d = 513$).

# %%
digits_train, digits_test = load_dataset("digits", "train"), load_dataset("digits", "test")
digits_transform = BatchTransform(size=8, mean=(0.3,) * 3, std=(0.4,) * 3)
digits = ContinualData(digits_train, digits_test, Scenario.equal_split(list(range(10)), 5))
phi = RandomReLUFeatures(64, 512, seed=0, channels=1).double()
first_images = digits_transform(digits.task(0, "train").images)
features = torch.cat([phi(first_images), torch.ones(len(first_images), 1, dtype=torch.float64)], dim=1)
cov = uncentered_covariance(features)
print(f"{features.shape[0]} inputs in d = {features.shape[1]} dimensions")

# %% [raw]
# # BEGIN QUESTION
# name: q3
# points: 5

# %% [markdown]
# Write `energy_null_space(cov, eps)`: it returns an orthonormal basis (a $d \times k$ tensor, float64,
# columns = directions) of the null space that the energy rule keeps for budget `eps`. Do not call
# `nscl.nullspace`'s functions; the checks compare your basis with
# `null_space_basis(cov, NullSpaceRule("energy", eps))` for several budgets.
#
# *Computation: 2.0 s measured, loading the digits and their features above included.*

# %% [raw]
# # BEGIN SOLUTION

# %%
def energy_null_space(cov, eps):
    # BEGIN SOLUTION
    c = cov.to(torch.float64)
    s, u = torch.linalg.eigh((c + c.T) / 2)
    s, u = s.flip(0).clamp_min(0.0), u.flip(1)                # descending
    tail = s.flip(0).cumsum(0).flip(0)                         # tail[i] = energy of directions i..d-1
    keep = tail <= eps * s.sum()
    keep |= s <= 10 * s.numel() * torch.finfo(torch.float64).eps * s[0]
    return u[:, keep]
    # END SOLUTION


for eps in (1e-3, 1e-2, 0.05):
    basis = energy_null_space(cov, eps)
    print(f"eps = {eps:g}: {basis.shape[1]} directions kept")

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q3_shape(energy_null_space, cov):
    import torch
    basis = energy_null_space(cov, 0.01)
    assert isinstance(basis, torch.Tensor) and basis.ndim == 2 and basis.shape[0] == cov.shape[0], \
        "return a d x k basis: one direction per column"
    gram = basis.T.to(torch.float64) @ basis.to(torch.float64)
    assert torch.allclose(gram, torch.eye(basis.shape[1], dtype=torch.float64), atol=1e-8), \
        "the columns of the basis are not orthonormal"


# %%
def test_q3_budget(energy_null_space, cov):
    import torch
    total = float(torch.trace(cov))
    for eps in (1e-3, 1e-2, 0.05):
        basis = energy_null_space(cov, eps).to(torch.float64)
        held = float(torch.trace(basis.T @ cov @ basis))
        assert held <= eps * total * (1 + 1e-9) + 1e-12, \
            f"eps = {eps}: your directions hold more than eps of the total energy (one direction too many?)"


# %%
def test_q3_matches_nscl(energy_null_space, cov):
    import torch

    from nscl.nullspace import NullSpaceRule, null_space_basis
    for eps in (1e-3, 1e-2, 0.05):
        mine = energy_null_space(cov, eps).to(torch.float64)
        ref = null_space_basis(cov, NullSpaceRule("energy", eps)).basis
        assert mine.shape[1] == ref.shape[1], (f"eps = {eps}: the number of directions differs from the energy rule's; "
                                              "is the budget a share of the total energy, taken from the small end?")
        assert torch.allclose(mine @ mine.T, ref @ ref.T, atol=1e-8), f"eps = {eps}: not the same subspace"


# %%
""" # BEGIN TEST CONFIG
hidden: true
""" # END TEST CONFIG
def test_q3_hidden(energy_null_space):
    import unittest.mock as mock

    import torch

    import nscl.nullspace as ns
    g = torch.Generator().manual_seed(7)
    q, _ = torch.linalg.qr(torch.randn(40, 40, generator=g, dtype=torch.float64))
    s = torch.logspace(3, -6, 40, dtype=torch.float64) * 1e-4   # small absolute scale: the budget is relative
    cov = q @ torch.diag(s) @ q.T
    forbidden = mock.Mock(side_effect=RuntimeError("forbidden"))
    names = ("null_space_basis", "null_space_mask", "null_space_projector")
    originals = {getattr(ns, n) for n in names}
    module_globals = energy_null_space.__globals__
    patched = {k: forbidden for k, v in list(module_globals.items()) if any(v is o for o in originals)}
    with mock.patch.multiple(ns, **{n: forbidden for n in names}), mock.patch.dict(module_globals, patched):
        try:
            bases = {eps: energy_null_space(cov, eps).to(torch.float64) for eps in (1e-4, 1e-2, 0.3)}
        except RuntimeError:
            raise AssertionError("implement the rule yourself: energy_null_space should not call nscl.nullspace")
    for eps, basis in bases.items():
        tail = s.flip(0).cumsum(0).flip(0)
        k = int((tail <= eps * s.sum()).sum())
        assert basis.shape[1] == k, "on another spectrum your rule keeps the wrong number of directions"
        top = q[:, :40 - k]
        assert float((top.T @ basis).abs().max()) < 1e-6, "the kept directions must be the smallest-eigenvalue ones"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q4
# points: 3

# %% [markdown]
# ## Task 4 · How tight is the drift bound? (derive and check, ★★☆, 15 min)
#
# Chapter 1 bounds the change of old outputs by the energy the null space holds:
# $\lVert X\Delta W^\top\rVert_F^2 \le \varepsilon\,\operatorname{tr}(C)\,\lVert\Delta W\rVert_2^2$.
# Take the energy rule with $\varepsilon = 0.01$ (the projector `P_eps` below) and the update
# $\Delta W$ = `G @ P_eps`. Compute `q4_lhs` $=\lVert X\Delta W^\top\rVert_F^2$ (with $X$ = `features`),
# `q4_bound` $=\varepsilon\,\operatorname{tr}(C)\,\lVert\Delta W\rVert_2^2$ (spectral norm: the largest
# singular value) and `q4_tightness` = `q4_lhs / q4_bound`. Then say in a sentence (in your own
# markdown cell) why the bound is loose.
#
# *Computation: under 0.1 s measured.*

# %%
eps4 = 0.01
P_eps, _ = null_space_projector(cov, NullSpaceRule("energy", eps4), dtype=torch.float64)
G = torch.randn(64, cov.shape[0], generator=torch.Generator().manual_seed(4), dtype=torch.float64)

# %% [raw]
# # BEGIN SOLUTION

# %%
delta = G @ P_eps
q4_lhs = float(torch.linalg.norm(features @ delta.T) ** 2)  # SOLUTION
q4_bound = float(eps4 * torch.trace(cov) * torch.linalg.matrix_norm(delta, ord=2) ** 2)  # SOLUTION
q4_tightness = q4_lhs / q4_bound  # SOLUTION
print(f"lhs {q4_lhs:.3e} <= bound {q4_bound:.3e}: ratio {q4_tightness:.2e}")

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q4_bound_holds(q4_lhs, q4_bound, q4_tightness):
    assert q4_lhs >= 0 and q4_bound > 0, "both sides are squared norms: non-negative"
    assert q4_lhs <= q4_bound, "the bound is violated: check each side against the formula"
    assert abs(q4_tightness - q4_lhs / q4_bound) < 1e-12 * max(1.0, q4_tightness), "q4_tightness is lhs / bound"


# %%
""" # BEGIN TEST CONFIG
hidden: true
""" # END TEST CONFIG
def test_q4_hidden(q4_lhs, q4_bound, features, G, P_eps, cov, eps4):
    import torch
    delta = G @ P_eps
    lhs = float(torch.linalg.norm(features @ delta.T) ** 2)
    spectral = float(torch.linalg.matrix_norm(delta, ord=2))
    bound = float(eps4 * torch.trace(cov)) * spectral ** 2
    assert abs(q4_lhs - lhs) <= 1e-6 * lhs, "q4_lhs is not the squared Frobenius norm of X dW^T"
    assert abs(q4_bound - bound) <= 1e-6 * bound, \
        "q4_bound is off: eps times the trace of C times the SQUARED spectral norm of dW"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q5
# points: 4

# %% [markdown]
# ## Task 5 · Training inputs versus test inputs (experiment and explain, ★★☆, 20 min)
#
# Train chapter 1's null-space method with the **exact** null space
# (`NullSpaceRule("energy", 0.0)`), in float64, on the first 3 digit tasks (`make_method` and
# `track` below do the bookkeeping). Store in `q5_train_change` and `q5_test_change` the relative
# change, from right after task 1 to after task 3, of the first head's outputs on task 1's *training*
# and *test* images ($\lVert Z_3 - Z_1\rVert_F/\lVert Z_1\rVert_F$). Then answer in `q5_answer` (one
# letter): why does the test change not sit at rounding level?
#
# * **a** float64 rounding accumulates over the many Adam steps;
# * **b** the test inputs are not in the span of the training inputs, so they have a component in
#   the null space, where the later updates are free to act;
# * **c** the head of task 1 keeps training on later tasks;
# * **d** Adam's second-moment estimate carries gradient from outside the null space.
#
# *Computation: 0.4 s measured (3 tasks, 10 epochs each).*

# %%
def make_method(rule, seed=0):
    features = RandomReLUFeatures(64, 512, seed=seed, channels=1)
    config = SharedLayerConfig(hidden=64, lr=1e-2, null_space=rule, dtype="float64", seed=seed)
    return SharedLayerClassifier(features, 512, digits_transform, config)


def track(method, images):
    """After every task, record the first head's outputs on each image set in `images` (a dict)."""
    history = {name: [] for name in images}
    end_task = method.end_task

    def end_task_and_record(task, batches):
        end_task(task, batches)
        for name, x in images.items():
            history[name].append(method.logits(method.transform(x))[:, :2].clone())

    method.end_task = end_task_and_record
    return history


run5 = RunConfig(epochs=10, batch_size=32, max_tasks=3, progress=False)
task1_images = {"train": digits.task(0, "train").images, "test": digits.task(0, "test").images}

# %% [raw]
# # BEGIN SOLUTION

# %%
# BEGIN SOLUTION
method = make_method(NullSpaceRule("energy", 0.0))
history = track(method, task1_images)
run_continual(method, digits, run5)
changes = {k: float(torch.linalg.norm(h[-1] - h[0]) / torch.linalg.norm(h[0])) for k, h in history.items()}
# END SOLUTION
q5_train_change = changes["train"]  # SOLUTION
q5_test_change = changes["test"]  # SOLUTION
q5_answer = "b"  # SOLUTION
print(f"train {q5_train_change:.1e}, test {q5_test_change:.1e}")

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q5_values(q5_train_change, q5_test_change, q5_answer):
    assert isinstance(q5_train_change, float) and isinstance(q5_test_change, float), "store the changes as floats"
    assert q5_train_change < 1e-10, ("the training images' outputs should stay put to rounding: exact null space "
                                     "(energy 0), float64, outputs of the first head only, after task 3 vs after task 1")
    assert q5_answer in ("a", "b", "c", "d"), "answer with one letter: 'a', 'b', 'c' or 'd'"


# %%
""" # BEGIN TEST CONFIG
hidden: true
""" # END TEST CONFIG
def test_q5_hidden(q5_train_change, q5_test_change, q5_answer):
    assert 1e-8 < q5_test_change < 1.0, ("q5_test_change: the relative change of the first head's outputs on the "
                                         "first task's test images, after task 3 against after task 1")
    assert q5_test_change > 1e3 * q5_train_change, "the test images' outputs should move far more than the training ones'"
    expected = "b"
    assert q5_answer == expected, "q5_answer: not the reason; what do the test inputs have that the training ones lack?"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# ## Going further (not graded)
#
# Chapter 1's exercises 1, 4 and 6 make good follow-ups: the null-space dimension against the
# feature width, the adaptive and `drop_top` rules on the trade-off curve, and the 768-dimensional
# shapes100 inputs.
