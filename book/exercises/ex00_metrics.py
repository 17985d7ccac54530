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
# name: ex00_metrics
# init_cell: true
# check_all_cell: true
# export_cell: false
# solutions_pdf: false
# generate: true
# tests:
#   ok_format: false

# %% [markdown]
# # Exercises 0: reading an accuracy matrix
#
# Companion to **chapter 0**. Every result in the book is read off an accuracy matrix $R$
# ($R_{ij}$: accuracy on task $j$'s test data after training task $i$). You implement the metrics,
# find out when two of them agree, and weigh tasks of different sizes. About 60 minutes (a warm-up:
# pair it with another set for a 90-minute lab); every computation is instantaneous.
#
# | task | kind | difficulty | time |
# |---|---|---|---|
# | 1. Accuracy after each step | implement | ★☆☆ | 10 min |
# | 2. Forgetting | implement | ★☆☆ | 15 min |
# | 3. Forgetting against backward transfer | derive and check | ★★☆ | 15 min |
# | 4. Tasks of different sizes | derive and check | ★☆☆ | 10 min |
# | 5. Task-aware or class-incremental? | explain (multiple choice) | ★☆☆ | 10 min |
#
# Fill in every `...`, then run `grader.check("qN")`. Hidden checks run when your notebook is graded.

# %%
import numpy as np
import pandas as pd

from nscl.metrics import backward_transfer, forgetting, step_accuracies
from nscl.paths import repo_root

# %% [markdown]
# VPT-Seq on the tiny benchmark (10 tasks; seed 0 of chapter 3's runs, read from `benchmarks/results`):
# `R` is class-incremental (the arg-max over every class seen so far), `R_aware` task-aware (within the
# right task's classes). `R_joint` is the joint upper bound's (each step retrains on all data seen so
# far). Entries above the diagonal are NaN.

# %%
runs = pd.read_csv(repo_root() / "benchmarks" / "results" / "nsp2_tiny_3seeds_accuracy.csv")
seq_run = runs[(runs.method == "VPT-Seq") & (runs.seed == 0)]
T = int(seq_run.train_task.max()) + 1
R = np.full((T, T), np.nan)
R[seq_run.train_task, seq_run.eval_task] = seq_run.accuracy
R_aware = np.full((T, T), np.nan)
R_aware[seq_run.train_task, seq_run.eval_task] = seq_run.accuracy_task_aware
joint_run = runs[(runs.method == "VPT-joint") & (runs.seed == 0)]
R_joint = np.full((T, T), np.nan)
R_joint[joint_run.train_task, joint_run.eval_task] = joint_run.accuracy
print(pd.DataFrame(R * 100).round(1).to_string(na_rep="-"))

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 3

# %% [markdown]
# ## Task 1 · Accuracy after each step (implement, ★☆☆, 10 min)
#
# Write `step_acc(R)`: the array of $A_i = \frac{1}{i+1}\sum_{j\le i} R_{ij}$, $i = 0..T-1$ (tasks of
# equal size). Do not call `nscl.metrics`. Store `q1_steps = step_acc(R)`.
#
# *Computation: 0.2 s measured (reading the runs above included).*

# %% [raw]
# # BEGIN SOLUTION

# %%
def step_acc(R):
    R = np.asarray(R, dtype=float)
    return np.array([R[i, : i + 1].mean() for i in range(R.shape[0])])  # SOLUTION


q1_steps = step_acc(R)  # SOLUTION
print(np.round(q1_steps * 100, 1))

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q1_matches(q1_steps, R):
    import numpy as np

    from nscl.metrics import step_accuracies
    assert np.shape(q1_steps) == (R.shape[0],), "one accuracy per step: T values"
    assert np.all(np.isfinite(q1_steps)), "NaN in your steps: use only the entries on and below the diagonal"
    assert np.allclose(q1_steps, step_accuracies(R), atol=1e-12), \
        "your step accuracies differ: after step i, the mean over the i + 1 tasks seen"


# %%
""" # BEGIN TEST CONFIG
hidden: true
""" # END TEST CONFIG
def test_q1_hidden(step_acc):
    import numpy as np

    from nscl.metrics import step_accuracies
    rng = np.random.default_rng(1)
    for t in (1, 2, 5):
        r = np.tril(rng.uniform(0.2, 1.0, (t, t)))
        r[np.triu_indices(t, 1)] = np.nan
        assert np.allclose(step_acc(r), step_accuracies(r), atol=1e-12), f"wrong on a random {t} x {t} matrix"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q2
# points: 4

# %% [markdown]
# ## Task 2 · Forgetting (implement, ★☆☆, 15 min)
#
# Write `forgetting_of(R)`: the mean over the old tasks $j < T-1$ of
# $\max_{j \le i < T-1} R_{ij} - R_{T-1,j}$ (the best accuracy *before* the last step, minus the final
# one; 0 when $T = 1$). Store `q2_forgetting = forgetting_of(R)`. Do not call `nscl.metrics`.
#
# *Computation: under 0.1 s measured.*

# %% [raw]
# # BEGIN SOLUTION

# %%
def forgetting_of(R):
    # BEGIN SOLUTION
    R = np.asarray(R, dtype=float)
    t = R.shape[0]
    if t == 1:
        return 0.0
    return float(np.mean([R[j: t - 1, j].max() - R[t - 1, j] for j in range(t - 1)]))
    # END SOLUTION


q2_forgetting = forgetting_of(R)  # SOLUTION
print(f"forgetting {q2_forgetting * 100:.2f} %")

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q2_matches(q2_forgetting, R):
    from nscl.metrics import forgetting
    assert abs(q2_forgetting - forgetting(R)) < 1e-12, \
        "your forgetting differs: best accuracy before the last step minus the final one, averaged over old tasks"


# %%
""" # BEGIN TEST CONFIG
hidden: true
""" # END TEST CONFIG
def test_q2_hidden(forgetting_of):
    import numpy as np

    from nscl.metrics import forgetting
    rising = np.array([[0.5, np.nan, np.nan], [0.6, 0.7, np.nan], [0.9, 0.8, 0.9]])
    assert abs(forgetting_of(rising) - forgetting(rising)) < 1e-12, \
        "a task that ends at its best has forgotten nothing: the max runs over the steps before the last"
    rng = np.random.default_rng(2)
    for t in (1, 2, 6):
        r = rng.uniform(0.1, 1.0, (t, t))
        r[np.triu_indices(t, 1)] = np.nan
        assert abs(forgetting_of(r) - forgetting(r)) < 1e-12, f"wrong on a random {t} x {t} matrix"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q3
# points: 3

# %% [markdown]
# ## Task 3 · Forgetting against backward transfer (derive and check, ★★☆, 15 min)
#
# Backward transfer is $\frac{1}{T-1}\sum_{j<T-1}(R_{T-1,j} - R_{jj})$. Show that forgetting $\ge -$BWT
# always, with equality exactly when every old task's best accuracy before the end is the one right
# after learning it. Store `q3_gap` $=$ forgetting $+$ BWT for the joint run's `R_joint` (use
# `nscl.metrics`), and `q3_tasks`, the list of its old tasks $j$ (0-based) whose best accuracy before
# the end came later than step $j$. (For Seq's `R` the gap is 0: why?)
#
# *Computation: under 0.1 s measured.*

# %% [raw]
# # BEGIN SOLUTION

# %%
q3_gap = forgetting(R_joint) + backward_transfer(R_joint)  # SOLUTION
q3_tasks = [j for j in range(T - 1) if R_joint[j: T - 1, j].max() > R_joint[j, j]]  # SOLUTION
print(f"gap {q3_gap * 100:.2f} points, tasks {q3_tasks}")

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q3_gap(q3_gap):
    assert q3_gap >= -1e-12, "forgetting + BWT is never negative: check the sign of BWT"
    assert q3_gap > 0, "the gap is positive for the joint run: use R_joint"


# %%
""" # BEGIN TEST CONFIG
hidden: true
""" # END TEST CONFIG
def test_q3_hidden(q3_gap, q3_tasks, R_joint):
    import numpy as np

    from nscl.metrics import backward_transfer, forgetting
    R = R_joint
    assert abs(q3_gap - (forgetting(R) + backward_transfer(R))) < 1e-12, "q3_gap: forgetting + backward transfer"
    t = R.shape[0]
    later = [j for j in range(t - 1) if R[j: t - 1, j].max() > R[j, j]]
    assert sorted(q3_tasks) == later, "q3_tasks: the old tasks whose best accuracy came after the step that learnt them"
    gap = np.mean([R[j: t - 1, j].max() - R[j, j] for j in range(t - 1)])
    assert abs(gap - q3_gap) < 1e-12


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q4
# points: 3

# %% [markdown]
# ## Task 4 · Tasks of different sizes (derive and check, ★☆☆, 10 min)
#
# With test sets of different sizes $n_j$, both official code bases pool the accuracy over test
# *samples*. Derive $A_i$ for sizes $n_j$, and store `q4_last`, the pooled last accuracy for the
# sizes below, and `q4_difference`, pooled minus the plain mean over tasks (as in task 1).
#
# *Computation: under 0.1 s measured.*

# %%
sizes = np.array([50 + 25 * j for j in range(T)])

# %% [raw]
# # BEGIN SOLUTION

# %%
q4_last = float(np.dot(R[-1], sizes) / sizes.sum())  # SOLUTION
q4_difference = q4_last - float(np.mean(R[-1]))  # SOLUTION
print(f"pooled {q4_last * 100:.2f}, difference {q4_difference * 100:+.2f} points")

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q4(q4_last, R, sizes):
    from nscl.metrics import last_accuracy
    assert abs(q4_last - last_accuracy(R, sizes)) < 1e-12, \
        "q4_last: weigh each task's accuracy by its number of test samples"


# %%
""" # BEGIN TEST CONFIG
hidden: true
""" # END TEST CONFIG
def test_q4_hidden(q4_difference, R, sizes):
    import numpy as np

    from nscl.metrics import last_accuracy
    expected = last_accuracy(R, sizes) - last_accuracy(R)
    assert abs(q4_difference - expected) < 1e-12, "q4_difference: pooled minus the plain mean, in that order"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q5
# points: 2

# %% [markdown]
# ## Task 5 · Task-aware or class-incremental? (explain, multiple choice, ★☆☆, 10 min)
#
# VPT-Seq's task-aware forgetting on this run is far smaller than its class-incremental forgetting.
# What explains most of the gap? Store one letter in `q5_answer`.
#
# * **a** the old heads' weights change while new tasks train;
# * **b** the new tasks' heads also score the old images, and nothing calibrates the heads of different
#   tasks against each other: old images get assigned to new classes;
# * **c** the test sets of old tasks shrink;
# * **d** the task-aware protocol uses more test images.
#
# *Computation: none.*

# %% [raw]
# # BEGIN SOLUTION

# %%
q5_answer = "b"  # SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q5_format(q5_answer):
    assert q5_answer in ("a", "b", "c", "d"), "answer with one letter: 'a', 'b', 'c' or 'd'"


# %%
""" # BEGIN TEST CONFIG
hidden: true
""" # END TEST CONFIG
def test_q5_hidden(q5_answer):
    expected = "b"
    assert q5_answer == expected, "q5_answer: old heads are frozen; what else competes for the arg-max?"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION
