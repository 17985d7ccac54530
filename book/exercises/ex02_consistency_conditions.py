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
# name: ex02_consistency_conditions
# init_cell: true
# check_all_cell: true
# export_cell: false
# solutions_pdf: false
# generate: true
# tests:
#   ok_format: false

# %% [markdown]
# # Exercises 2: NSP²'s consistency conditions, by hand
#
# Companion to **chapter 2**. You rebuild the two conditions of a prompted attention block from its
# weights, check that projecting a prompt update onto both null spaces keeps the block's outputs, and
# reason about when the exact null spaces run out. About 85 minutes; the computations take seconds.
#
# | task | kind | difficulty | time |
# |---|---|---|---|
# | 1. The affinity rows $\Omega_1$ | implement | ★★★ | 30 min |
# | 2. The aggregation rows $\Omega_2$ | implement | ★★☆ | 20 min |
# | 3. Both conditions, or one? | derive and check | ★★☆ | 15 min |
# | 4. When does the exact null space run out? | explain (numeric) | ★☆☆ | 10 min |
# | 5. Normalising each batch | explain (multiple choice) | ★☆☆ | 10 min |
#
# Fill in every `...`, then run `grader.check("qN")`. Hidden checks run when your notebook is graded.

# %%
import math

import torch
import torch.nn.functional as F

from nscl.analysis.invariance import block_output_change, collect_conditions
from nscl.data import load_dataset
from nscl.data.protocols import TINY_IMAGE_SIZE
from nscl.models.encoders import PromptedEncoder
from nscl.models.tiny import pretrained_tiny_vit, tiny_transform
from nscl.nullspace import NullSpaceRule, null_space_projector

torch.manual_seed(0)

# %% [markdown]
# The model is the book's tiny ViT in float64, with $m = HN + 8$ prompts in every block (as in
# chapter 2, section 2.4), and one old image. `block` is the first prompted block, `x` its input
# (the image tokens, shape $B \times N \times D$) and `prompts` its raw prompts ($m \times D$).
# `w = block.weights()` holds what you need: `w.norm` (the block's LayerNorm), `w.qkv_weight`
# ($3D \times D$: the rows of $W_q$, then $W_k$, then $W_v$, each in PyTorch's out × in layout),
# `w.qkv_bias` ($3D$) and `w.num_heads` ($H$; head $h$ owns rows $hd, \dots, (h+1)d - 1$ of each
# of $W_q, W_k, W_v$, with $d = D/H$).

# %%
vit = pretrained_tiny_vit(progress=False).double()
H = vit.blocks[0].attn.num_heads
N = vit.patch_embed.num_patches + vit.num_prefix_tokens
m = H * N + 8
encoder = PromptedEncoder(vit, None, m, generator=torch.Generator().manual_seed(0)).double()
D = encoder.width
test_images = tiny_transform(train=False)(
    load_dataset("shapes100", "test", n_per_class=1, image_size=TINY_IMAGE_SIZE).images[:3]).double()
old_images = test_images[:1]
block = encoder.prompted_blocks()[0]
w = block.weights()
prompts = encoder.bank.prompts[0].detach()
with torch.no_grad():
    x = vit.norm_pre(vit._pos_embed(vit.patch_embed(old_images)))
# what nscl records for the same image: per layer, Omega^T Omega divided by its number of rows
recorder = collect_conditions(encoder, [old_images])
layer = encoder.bank.layers[0]
print(f"D = {D}, H = {H}, N = {N}, m = {m}, x: {tuple(x.shape)}")

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 5

# %% [markdown]
# ## Task 1 · The affinity rows $\Omega_1$ (implement, ★★★, 30 min)
#
# Write `affinity_rows(w, x)`: the rows of $\Omega_1$, one per image, head and image token, each the
# query of that token in that head mapped back to the prompts' space through the head's key weights,
# $q_{h,n} W_{k,h}$ with $q = \mathrm{LN}(x) W_q^\top + b_q$ (queries *before* the $1/\sqrt d$ scaling).
# Return a $(B H N) \times D$ tensor. The check compares $\Omega_1^\top\Omega_1 / (BHN)$ with
# `recorder.affinity[layer].matrix`. Store `omega1 = affinity_rows(w, x)`.
#
# *Computation: 0.7 s measured, loading the model above included.*

# %% [raw]
# # BEGIN SOLUTION

# %%
def affinity_rows(w, x):
    # BEGIN SOLUTION
    b, n, dim = x.shape
    h = w.num_heads
    d = dim // h
    q = F.linear(w.norm(x), w.qkv_weight[:dim], w.qkv_bias[:dim])          # (B, N, D)
    q = q.reshape(b, n, h, d).permute(0, 2, 1, 3)                           # (B, H, N, d)
    wk = w.qkv_weight[dim:2 * dim].reshape(h, d, dim)                       # W_k per head: (H, d, D)
    return torch.einsum("bhnd,hdD->bhnD", q, wk).reshape(-1, dim)
    # END SOLUTION


with torch.no_grad():
    omega1 = affinity_rows(w, x)  # SOLUTION
print(tuple(omega1.shape))

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q1_shape(omega1, H, N, D):
    assert tuple(omega1.shape) == (H * N, D), "one row per (image, head, token), D columns"


# %%
def test_q1_matches_recorder(omega1, recorder, layer):
    import torch
    ref = recorder.affinity[layer].matrix
    mine = omega1.T @ omega1 / omega1.shape[0]
    assert torch.isfinite(mine).all(), "omega1 has NaN or inf entries"
    ratio = float(torch.trace(mine) / torch.trace(ref))
    assert abs(ratio - 1) < 1e-6 or not torch.allclose(mine / ratio, ref, rtol=1e-6, atol=1e-10), \
        "right directions, wrong scale: queries before the 1/sqrt(d) scaling, with their bias"
    assert torch.allclose(mine, ref, rtol=1e-6, atol=1e-10 * float(ref.abs().max())), \
        "Omega1^T Omega1 differs from the recorded one: check LN, which rows are W_q and W_k, and the heads"


# %%
""" # BEGIN TEST CONFIG
hidden: true
""" # END TEST CONFIG
def test_q1_hidden(affinity_rows, encoder, test_images, vit):
    import torch

    from nscl.analysis.invariance import collect_conditions
    for i, blk in enumerate(encoder.prompted_blocks()[:2]):
        with torch.no_grad():
            x = vit.norm_pre(vit._pos_embed(vit.patch_embed(test_images)))
            for earlier in encoder.prompted_blocks()[:i]:
                x = earlier(x)
            rows = affinity_rows(blk.weights(), x)
        rec = collect_conditions(encoder, [test_images])
        ref = rec.affinity[encoder.bank.layers[i]].matrix
        assert rows.shape[0] == x.shape[0] * blk.weights().num_heads * x.shape[1], \
            "with several images: one row per image, head and token"
        assert torch.allclose(rows.T @ rows / rows.shape[0], ref, rtol=1e-6, atol=1e-10 * float(ref.abs().max())), \
            "on 3 images and in block 2 your rows differ from NSP²'s affinity condition"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q2
# points: 4

# %% [markdown]
# ## Task 2 · The aggregation rows $\Omega_2$ (implement, ★★☆, 20 min)
#
# Write `aggregation_rows(w, x, prompts)`: for every image, head and image token, the attention
# weights it puts on the $m$ prompts, taken from the block's full softmax over all $N + m$ keys
# (image tokens and layer-normed prompts, scaled by $1/\sqrt d$). Return a $(BHN) \times m$ tensor and
# store `omega2 = aggregation_rows(w, x, prompts)`. The check compares with
# `recorder.aggregation[layer].matrix`.
#
# *Computation: under 0.1 s measured.*

# %% [raw]
# # BEGIN SOLUTION

# %%
def aggregation_rows(w, x, prompts):
    # BEGIN SOLUTION
    b, n, dim = x.shape
    h = w.num_heads
    d = dim // h
    qkv = F.linear(w.norm(x), w.qkv_weight, w.qkv_bias).reshape(b, n, 3, h, d).permute(2, 0, 3, 1, 4)
    q, k = qkv[0], qkv[1]                                                   # (B, H, N, d)
    kp = F.linear(w.norm(prompts), w.qkv_weight[dim:2 * dim], w.qkv_bias[dim:2 * dim])
    kp = kp.reshape(-1, h, d).permute(1, 0, 2).unsqueeze(0).expand(b, -1, -1, -1)   # (B, H, m, d)
    keys = torch.cat([k, kp], dim=2)
    attention = torch.softmax(q @ keys.transpose(-1, -2) / math.sqrt(d), dim=-1)
    return attention[..., n:].reshape(-1, prompts.shape[0])
    # END SOLUTION


with torch.no_grad():
    omega2 = aggregation_rows(w, x, prompts)  # SOLUTION
print(tuple(omega2.shape), f"attention on prompts per row: {float(omega2.sum(1).mean()):.3f}")

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q2_shape(omega2, H, N, m):
    assert tuple(omega2.shape) == (H * N, m), "one row per (image, head, token), m columns (one per prompt)"


# %%
def test_q2_rows(omega2):
    import torch
    assert bool((omega2 >= 0).all()), "attention weights are non-negative: take them after the softmax"
    sums = omega2.sum(1)
    assert bool((sums < 1 - 1e-9).all()), ("each row sums to 1 here: the softmax must run over all N + m keys, "
                                           "image tokens included, not over the prompts alone")


# %%
def test_q2_matches_recorder(omega2, recorder, layer):
    import torch
    ref = recorder.aggregation[layer].matrix
    mine = omega2.T @ omega2 / omega2.shape[0]
    assert torch.allclose(mine, ref, rtol=1e-6, atol=1e-12), \
        "Omega2^T Omega2 differs from the recorded one: check the keys (layer-normed prompts) and the scaling"


# %%
""" # BEGIN TEST CONFIG
hidden: true
""" # END TEST CONFIG
def test_q2_hidden(aggregation_rows, encoder, test_images, vit):
    import torch

    from nscl.analysis.invariance import collect_conditions
    with torch.no_grad():
        x = vit.norm_pre(vit._pos_embed(vit.patch_embed(test_images)))
        blk = encoder.prompted_blocks()[0]
        rows = aggregation_rows(blk.weights(), x, encoder.bank.prompts[0].detach())
    ref = collect_conditions(encoder, [test_images]).aggregation[encoder.bank.layers[0]].matrix
    assert torch.allclose(rows.T @ rows / rows.shape[0], ref, rtol=1e-6, atol=1e-12), \
        "on 3 images your rows differ from NSP²'s aggregation condition"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q3
# points: 4

# %% [markdown]
# ## Task 3 · Both conditions, or one? (derive and check, ★★☆, 15 min)
#
# Build the exact projectors $B_1$ ($D \times D$, onto the null space of $\Omega_1^\top\Omega_1$) and $B_2$
# ($m \times m$, of $\Omega_2^\top\Omega_2$) with `null_space_projector(..., NullSpaceRule("energy", 0.0),
# dtype=torch.float64)` (use the recorder's matrices if your tasks 1-2 are not done). Move the
# layer-normed prompts of this block by four versions of the proposed change `G`: both conditions,
# affinity only, aggregation only, none. Store in `q3_changes` a dict with keys `"both"`,
# `"affinity"`, `"aggregation"`, `"none"` and the relative change of the block's output for each
# (use `block_change`).
#
# *Computation: under 0.1 s measured.*

# %%
G = torch.randn(m, D, generator=torch.Generator().manual_seed(2), dtype=torch.float64)


def block_change(delta):
    """Relative change of the block's image-token outputs when its layer-normed prompts move by delta (m x D)."""
    offset = torch.zeros_like(encoder.bank.prompts)
    offset[0] = delta
    return block_output_change(encoder, x, offset)


# %% [raw]
# # BEGIN SOLUTION

# %%
exact = NullSpaceRule("energy", 0.0)
B1, _ = null_space_projector(recorder.affinity[layer].matrix, exact, dtype=torch.float64)  # SOLUTION
B2, _ = null_space_projector(recorder.aggregation[layer].matrix, exact, dtype=torch.float64)  # SOLUTION
deltas = {"both": B2 @ G @ B1, "affinity": G @ B1, "aggregation": B2 @ G, "none": G}  # SOLUTION
q3_changes = {key: block_change(delta) for key, delta in deltas.items()}  # SOLUTION
print({k: f"{v:.1e}" for k, v in q3_changes.items()})

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q3_keys(q3_changes):
    assert isinstance(q3_changes, dict) and set(q3_changes) == {"both", "affinity", "aggregation", "none"}, \
        "q3_changes: a dict with the keys 'both', 'affinity', 'aggregation' and 'none'"


# %%
def test_q3_both(q3_changes):
    assert q3_changes["both"] < 1e-10, ("with both conditions the block's outputs must stay put to rounding: "
                                        "B2 acts on the token axis (left), B1 on the feature axis (right)")


# %%
""" # BEGIN TEST CONFIG
hidden: true
""" # END TEST CONFIG
def test_q3_hidden(q3_changes, recorder, layer, G, block_change):
    import torch

    from nscl.nullspace import NullSpaceRule, null_space_projector
    exact = NullSpaceRule("energy", 0.0)
    b1, _ = null_space_projector(recorder.affinity[layer].matrix, exact, dtype=torch.float64)
    b2, _ = null_space_projector(recorder.aggregation[layer].matrix, exact, dtype=torch.float64)
    expected = {"affinity": block_change(G @ b1), "aggregation": block_change(b2 @ G), "none": block_change(G)}
    for key, value in expected.items():
        assert abs(q3_changes[key] - value) <= 1e-6 * value, \
            f"q3_changes[{key!r}] is not the change under that projection of G"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q4
# points: 3

# %% [markdown]
# ## Task 4 · When does the exact null space run out? (explain, numeric, ★☆☆, 10 min)
#
# Each old image adds $HN$ rows to $\Omega_1$ (in $\mathbb R^D$) and to $\Omega_2$ (in $\mathbb R^m$).
# Predict from $H$, $N$, $m$ and $D$ (no experiment) the smallest number of old images for which
# the exact **aggregation** null space is empty (`q4_aggregation_images`) and the smallest for which
# the exact **affinity** null space is empty (`q4_affinity_images`). Assume the rows are in general
# position, and mind that head $h$'s rows lie in the row space of $W_{k,h}$ ($d$ dimensions).
#
# *Computation: none (the hidden check counts the free directions one image leaves: under 1 s).*

# %% [raw]
# # BEGIN SOLUTION

# %%
d_head = D // H
q4_aggregation_images = math.ceil(m / (H * N))  # SOLUTION
q4_affinity_images = next(k for k in range(1, 100) if H * min(k * N, d_head) >= D)  # SOLUTION
print(q4_aggregation_images, q4_affinity_images)

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
def test_q4_type(q4_aggregation_images, q4_affinity_images):
    for value in (q4_aggregation_images, q4_affinity_images):
        assert isinstance(value, int) and value >= 1, "give a whole number of images (at least 1)"


# %%
""" # BEGIN TEST CONFIG
hidden: true
""" # END TEST CONFIG
def test_q4_hidden(q4_aggregation_images, q4_affinity_images, encoder, test_images, D, H, N, m):
    import math

    import torch

    from nscl.analysis.invariance import collect_conditions
    # The prediction, from the row counts (exact maths: head h's rows span at most d = D / H directions).
    d = D // H
    assert q4_aggregation_images == math.ceil(m / (H * N)), "q4_aggregation_images: count rows against columns again"
    assert q4_affinity_images == next(k for k in range(1, 100) if H * min(k * N, d) >= D), \
        "q4_affinity_images: how many independent rows can one image give?"
    # The count it rests on, measured on one image: HN rows leave exactly m - HN aggregation and
    # D - H min(N, d) affinity directions free. Free eigenvalues sit at rounding level (~1e-16 of the
    # largest), the others above 1e-9: a cut at 1e-12 is four decades from both.
    rec = collect_conditions(encoder, [test_images[:1]])
    layer = encoder.bank.layers[0]
    for name, acc, free in (("affinity", rec.affinity, D - H * min(N, d)), ("aggregation", rec.aggregation, m - H * N)):
        eig = torch.linalg.eigvalsh(acc[layer].matrix).flip(0).clamp_min(0)
        assert int((eig <= 1e-12 * eig[0]).sum()) == free, f"one image should leave {free} {name} directions free"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q5
# points: 2

# %% [markdown]
# ## Task 5 · Normalising each batch (explain, multiple choice, ★☆☆, 10 min)
#
# NSP²'s official code (and `ConditionRecorder`) divides each batch's $\Omega^\top\Omega$ by its number
# of rows before summing. Which statement is true? Store one letter in `q5_answer`; try it on small
# random matrices if you are unsure.
#
# * **a** It changes the exact null space of a single task.
# * **b** It changes the exact null space once tasks of different sizes are summed.
# * **c** It changes no exact null space (one task or several), but it can move the cut of an
#   approximate rule (energy, adaptive) once tasks or batches of different sizes are summed.
# * **d** It makes the projectors non-symmetric.
#
# *Computation: none.*

# %% [raw]
# # BEGIN SOLUTION

# %%
q5_answer = "c"  # SOLUTION

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
    expected = "c"
    assert q5_answer == expected, "q5_answer: a positive weighted sum of PSD matrices has which null space?"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# ## Going further (not graded)
#
# Chapter 2's exercises 1 and 4 are proofs: the induction over layers, and LayerNorm's first-order
# Jacobian. Check the second numerically with `nscl.analysis.invariance.prompt_step_change` and
# `ConditionSpec(ln_exact=True, ln_invariant=True)`.
