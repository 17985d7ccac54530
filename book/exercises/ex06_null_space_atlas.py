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
# name: ex06_null_space_atlas
# init_cell: true
# check_all_cell: true
# export_cell: false
# solutions_pdf: false
# generate: true
# tests:
#   ok_format: false

# %% [markdown]
# # Exercises 6: principal angles and the room left
#
# Companion to **chapter 6**. You implement the two measures of the atlas (principal angles and
# subspace overlap), use them to ask whether tasks share their dominant directions, and count the room
# an energy rule leaves after each task. About 70 minutes; every computation takes seconds.
#
# | task | kind | difficulty | time |
# |---|---|---|---|
# | 1. Principal angles | implement | ★★☆ | 20 min |
# | 2. Subspace overlap | implement | ★☆☆ | 10 min |
# | 3. Do tasks use the same directions? | experiment and explain | ★★☆ | 20 min |
# | 4. How much room is left? | derive and check | ★☆☆ | 15 min |
#
# Fill in every `...`, then run `grader.check("qN")`. Hidden checks run when your notebook is graded.

# %%
import numpy as np
import pandas as pd
import torch

from nscl.experiment.run import run_continual
from nscl.presets import dmnsp_experiment

torch.manual_seed(0)

# %% [markdown]
# DMNSP (tiny preset) trained for 3 tasks of one epoch; its `atlas` holds, after every task and for
# every visual block, the accumulated spectrum of the adapter inputs (`spectrum`, descending) and an
# orthonormal basis of the task's own top-8 input directions (`task_basis`, $D \times 8$).

# %%
seed = 0   # the seed of this notebook's run
experiment = dmnsp_experiment("tiny", joint=False).with_run(max_tasks=3, epochs=1, progress=False)
dmnsp = experiment.methods["DMNSP"](seed)
run_continual(dmnsp, experiment.data(seed), experiment.run)
atlas = pd.DataFrame(dmnsp.report()["atlas"])
atlas = atlas[(atlas.tower == "visual") & (atlas.kind == "x")].reset_index(drop=True)
D = atlas.spectrum.iloc[0].numel()
print(f"{len(atlas)} rows: tasks {sorted(atlas.task.unique())}, layers {sorted(atlas.layer.unique())}, D = {D}")

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 4

# %% [markdown]
# ## Task 1 · Principal angles (implement, ★★☆, 20 min)
#
# Write `angles(a, b)`: the principal angles, in **degrees** and ascending, between the spans of two
# orthonormal bases `a` ($D \times k$) and `b` ($D \times l$): their cosines are the singular values of
# $a^\top b$ (clamp them to $[-1, 1]$ before the arc-cosine). Do not call `nscl.atlas`. Store in
# `q1_angles` the angles between task 0's and task 2's bases in the last layer.
#
# *Computation: 2.2 s measured, the run above included (this task alone: under 0.1 s).*

# %%
def basis(task, layer):
    return atlas[(atlas.task == task) & (atlas.layer == layer)].task_basis.iloc[0].double()


last = int(atlas.layer.max())

# %% [raw]
# # BEGIN SOLUTION

# %%
def angles(a, b):
    # BEGIN SOLUTION
    cosines = torch.linalg.svdvals(a.double().T @ b.double()).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.arccos(cosines))
    # END SOLUTION


q1_angles = angles(basis(0, last), basis(2, last))  # SOLUTION
print(np.round(q1_angles.numpy(), 1))

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q1_matches(q1_angles, basis, last):
    import torch

    from nscl.atlas import principal_angles
    ref = principal_angles(basis(0, last), basis(2, last))
    mine = torch.as_tensor(q1_angles).double().flatten()
    assert mine.shape == ref.shape, "one angle per direction of the smaller basis"
    assert bool(torch.isfinite(mine).all()), "NaN angles: clamp the cosines to [-1, 1] first"
    radians = torch.deg2rad(ref)
    assert not (torch.allclose(mine, radians, atol=1e-6) and not torch.allclose(radians, ref, atol=1e-6)), \
        "angles in degrees, not radians"
    assert torch.allclose(mine, ref, atol=1e-6), "your angles differ: the cosines are the singular values of a^T b, ascending angles"


# %%
""" # BEGIN TEST CONFIG
hidden: true
""" # END TEST CONFIG
def test_q1_hidden(angles):
    import unittest.mock as mock

    import torch

    import nscl.atlas as at
    g = torch.Generator().manual_seed(6)
    a = torch.linalg.qr(torch.randn(30, 5, generator=g, dtype=torch.float64))[0]
    b = torch.linalg.qr(torch.cat([a[:, :2], torch.randn(30, 5, generator=g, dtype=torch.float64)], 1))[0]
    ref = at.principal_angles(a, b)
    forbidden = mock.Mock(side_effect=RuntimeError("forbidden"))
    module_globals = angles.__globals__
    patched = {k: forbidden for k, v in list(module_globals.items()) if v is at.principal_angles}
    with mock.patch.object(at, "principal_angles", forbidden), mock.patch.dict(module_globals, patched):
        try:
            mine = torch.as_tensor(angles(a, b)).double().flatten()
        except RuntimeError:
            raise AssertionError("implement the angles yourself: do not call nscl.atlas")
    assert mine.shape == ref.shape and torch.allclose(mine, ref, atol=1e-5), \
        "for bases of 5 and 7 directions sharing 2 your angles differ (two of them should be 0)"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q2
# points: 3

# %% [markdown]
# ## Task 2 · Subspace overlap (implement, ★☆☆, 10 min)
#
# Write `overlap(a, b)`: the mean squared cosine of the principal angles,
# $\lVert a^\top b\rVert_F^2 / \min(k, l)$ (1 for the same span, about $\max(k,l)/D$ for random
# subspaces). Store `q2_overlap`, the overlap of task 0's and task 2's bases in the last layer,
# and `q2_random`, the overlap of two random orthonormal $D \times 8$ bases drawn with `g2`.
#
# *Computation: under 0.1 s measured.*

# %%
g2 = torch.Generator().manual_seed(2)
random_a = torch.linalg.qr(torch.randn(D, 8, generator=g2, dtype=torch.float64))[0]
random_b = torch.linalg.qr(torch.randn(D, 8, generator=g2, dtype=torch.float64))[0]

# %% [raw]
# # BEGIN SOLUTION

# %%
def overlap(a, b):
    return float((a.double().T @ b.double()).square().sum() / min(a.shape[1], b.shape[1]))  # SOLUTION


q2_overlap = overlap(basis(0, last), basis(2, last))  # SOLUTION
q2_random = overlap(random_a, random_b)  # SOLUTION
print(f"tasks 0 and 2: {q2_overlap:.3f}; random: {q2_random:.3f} (8 / D = {8 / D:.3f})")

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q2_matches(overlap, q2_overlap, basis, last):
    from nscl.atlas import subspace_overlap
    a, b = basis(0, last), basis(2, last)
    assert abs(overlap(a, a) - 1) < 1e-5, "a subspace overlaps itself by exactly 1: normalise by min(k, l)"
    assert abs(q2_overlap - subspace_overlap(a, b)) < 1e-9, "q2_overlap differs: the squared Frobenius norm of a^T b"


# %%
""" # BEGIN TEST CONFIG
hidden: true
""" # END TEST CONFIG
def test_q2_hidden(q2_random, random_a, random_b, overlap):
    import torch

    from nscl.atlas import subspace_overlap
    assert abs(q2_random - subspace_overlap(random_a, random_b)) < 1e-9, "q2_random: the overlap of random_a and random_b"
    g = torch.Generator().manual_seed(9)
    a = torch.linalg.qr(torch.randn(20, 3, generator=g, dtype=torch.float64))[0]
    b = torch.linalg.qr(torch.randn(20, 6, generator=g, dtype=torch.float64))[0]
    assert abs(overlap(a, b) - subspace_overlap(a, b)) < 1e-9, "for bases of 3 and 6 directions your overlap differs"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q3
# points: 3

# %% [markdown]
# ## Task 3 · Do tasks use the same directions? (experiment and explain, ★★☆, 20 min)
#
# For every layer, compute the overlap of task 0's and task 2's top-8 input directions; store them in
# `q3_overlaps` (a dict layer → overlap) and their mean in `q3_mean`. Then answer in `q3_answer`
# (one letter): what does an overlap far above the random level mean for a null-space method?
#
# * **a** the new task's gradient lies mostly in directions the old task already uses, so projecting it
#   away leaves little to learn with;
# * **b** the new task can be learnt entirely in the null space;
# * **c** the old task's features have changed.
#
# *Computation: under 0.1 s measured.*

# %% [raw]
# # BEGIN SOLUTION

# %%
q3_overlaps = {int(layer): overlap(basis(0, layer), basis(2, layer)) for layer in sorted(atlas.layer.unique())}  # SOLUTION
q3_mean = float(np.mean(list(q3_overlaps.values())))  # SOLUTION
q3_answer = "a"  # SOLUTION
print({k: round(v, 3) for k, v in q3_overlaps.items()}, f"mean {q3_mean:.3f}")

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q3_format(q3_overlaps, q3_mean, q3_answer, atlas):
    assert isinstance(q3_overlaps, dict) and sorted(q3_overlaps) == sorted(int(x) for x in atlas.layer.unique()), \
        "q3_overlaps: one entry per layer, keyed by the layer index"
    assert all(0 <= v <= 1 + 1e-9 for v in q3_overlaps.values()), "overlaps lie between 0 and 1"
    assert q3_answer in ("a", "b", "c"), "answer with one letter: 'a', 'b' or 'c'"


# %%
""" # BEGIN TEST CONFIG
hidden: true
""" # END TEST CONFIG
def test_q3_hidden(q3_overlaps, q3_mean, q3_answer, basis, D):
    import numpy as np

    from nscl.atlas import subspace_overlap
    for layer, value in q3_overlaps.items():
        assert abs(value - subspace_overlap(basis(0, layer), basis(2, layer))) < 1e-9, \
            f"q3_overlaps[{layer}]: task 0 against task 2 in that layer"
    assert abs(q3_mean - np.mean(list(q3_overlaps.values()))) < 1e-12, "q3_mean: the mean over layers"
    assert q3_mean > 3 * 8 / D, "the tasks' overlap should be far above the random level here"
    expected = "a"
    assert q3_answer == expected, "q3_answer: where does the new task's gradient live, then?"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q4
# points: 3

# %% [markdown]
# ## Task 4 · How much room is left? (derive and check, ★☆☆, 15 min)
#
# From the accumulated spectra alone, count the free directions that the energy rule with budget
# $\varepsilon = 0.015$ (the tail holding at most 1.5% of the energy, chapter 1) leaves in each layer
# after each task. Store a DataFrame `q4_room` with the columns `task`, `layer`, `free` (one row per
# atlas row), and in `q4_shrinks` whether the room never grows from one task to the next in any layer
# (a bool computed from your table).
#
# *Computation: under 0.1 s measured.*

# %%
eps = 0.015

# %% [raw]
# # BEGIN SOLUTION

# %%
def free_directions(spectrum, eps):
    s = torch.as_tensor(spectrum).double()
    tail = s.flip(0).cumsum(0).flip(0)  # SOLUTION
    return int((tail <= eps * s.sum()).sum())  # SOLUTION


# BEGIN SOLUTION
rows4 = [{"task": int(r.task), "layer": int(r.layer), "free": free_directions(r.spectrum, eps)}
         for r in atlas.itertuples()]
# END SOLUTION
q4_room = pd.DataFrame(rows4)  # SOLUTION
by_layer = q4_room.pivot(index="task", columns="layer", values="free")
q4_shrinks = bool((by_layer.diff().dropna() <= 0).all().all())  # SOLUTION
print(by_layer, q4_shrinks)

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q4_table(q4_room, atlas):
    import pandas as pd
    assert isinstance(q4_room, pd.DataFrame) and {"task", "layer", "free"} <= set(q4_room.columns), \
        "q4_room: a DataFrame with the columns task, layer, free"
    assert len(q4_room) == len(atlas), "one row per atlas row (task and layer)"


# %%
""" # BEGIN TEST CONFIG
hidden: true
""" # END TEST CONFIG
def test_q4_hidden(q4_room, q4_shrinks, atlas, eps):
    from nscl.nullspace import NullSpaceRule, null_space_mask
    for r in atlas.itertuples():
        expected = int(null_space_mask(r.spectrum.double(), NullSpaceRule("energy", eps)).sum())
        got = q4_room[(q4_room.task == r.task) & (q4_room.layer == r.layer)].free
        assert len(got) == 1 and int(got.iloc[0]) == expected, \
            f"task {r.task}, layer {r.layer}: the wrong number of free directions (the tail within eps of the energy)"
    table = q4_room.pivot(index="task", columns="layer", values="free")
    assert q4_shrinks == bool((table.diff().dropna() <= 0).all().all()), "q4_shrinks does not follow from your table"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION
