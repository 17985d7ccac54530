"""Plausible wrong answers for every checked question of book/exercises (tests/test_exercises.py).

WRONG[set name]() lists (question, label, mutate, phrase): `mutate(env)` turns the solved notebook's
variables into a wrong answer (a wrong sign, a missing normalisation, the transpose, an off-by-one...),
and `phrase` must appear in the failing check's message.
"""

from __future__ import annotations


def _ex01_wrong():
    import numpy as np
    import torch

    def eig(x):
        c = x.T @ x
        s, u = torch.linalg.eigh((c + c.T) / 2)
        return s, u, 10 * c.shape[0] * torch.finfo(torch.float64).eps * s.max()

    def range_projector(x):  # the old inputs' span instead of its complement
        s, u, tol = eig(x)
        return u[:, s > tol] @ u[:, s > tol].T

    def gram_of_basis(x):  # U0^T U0 instead of U0 U0^T (the transpose)
        s, u, tol = eig(x)
        return u[:, s <= tol].T @ u[:, s <= tol]

    def absolute_tolerance(x):  # the zero test not relative to s_max: misses directions
        s, u, _ = eig(x)
        return u[:, s <= 1e-14] @ u[:, s <= 1e-14].T

    def p1(env, f):
        p = f(env["x_old"])
        change = env["relative_change"](env["weight"], env["update"] @ p, env["x_old"]) if p.shape == (64, 64) else 1.0
        return {"projector_from_features": f, "P": p, "q1_change": change}

    def spectrum(cov):
        s, u = torch.linalg.eigh((cov + cov.T) / 2)
        return s.flip(0).clamp_min(0), u.flip(1)

    def from_head(cov, eps):  # budget spent from the top of the spectrum
        s, u = spectrum(cov)
        return u[:, s.cumsum(0) <= eps * s.sum()]

    def absolute_budget(cov, eps):  # eps not multiplied by the total energy
        s, u = spectrum(cov)
        return u[:, s.flip(0).cumsum(0).flip(0) <= eps]

    def one_too_many(cov, eps):  # off by one: the tail starts one direction early
        s, u = spectrum(cov)
        keep = s.flip(0).cumsum(0).flip(0) <= eps * s.sum()
        start = int(torch.nonzero(keep)[0]) if keep.any() else s.numel()
        return u[:, max(start - 1, 0) :]

    def transposed_basis(cov, eps):  # k x d instead of d x k
        s, u = spectrum(cov)
        return u[:, s.flip(0).cumsum(0).flip(0) <= eps * s.sum()].T

    def mixed_swapped(env):  # eta on the identity, 1 - eta on the projector
        eye = torch.eye(64, dtype=torch.float64)
        return {
            "q2_changes": [
                env["relative_change"](env["weight"], env["update"] @ ((1 - e) * env["P"] + e * eye), env["x_old"])
                for e in env["etas"]
            ]
        }

    def slope_against_eta(env):  # fitted against log(eta) instead of log(1 - eta)
        pairs = [(e, c) for e, c in zip(env["etas"], env["q2_changes"]) if 0 < e < 1]
        return {"q2_slope": float(np.polyfit(np.log([e for e, _ in pairs]), np.log([c for _, c in pairs]), 1)[0])}

    def bound_frobenius(env):  # Frobenius instead of spectral norm in the bound
        delta = env["G"] @ env["P_eps"]
        bound = float(env["eps4"] * torch.trace(env["cov"]) * torch.linalg.norm(delta) ** 2)
        return {"q4_bound": bound, "q4_tightness": env["q4_lhs"] / bound}

    def lhs_not_squared(env):  # the norm, not its square
        lhs = float(torch.linalg.norm(env["features"] @ (env["G"] @ env["P_eps"]).T))
        return {"q4_lhs": lhs, "q4_tightness": lhs / env["q4_bound"]}

    return [
        ("q1", "range instead of null space", lambda env: p1(env, range_projector), "old outputs still move"),
        ("q1", "transpose: U0^T U0", lambda env: p1(env, gram_of_basis), "64 x 64"),
        ("q1", "absolute zero tolerance", lambda env: p1(env, absolute_tolerance), "wrong dimension"),
        ("q2", "eta and 1 - eta swapped", mixed_swapped, "at eta = 1 the update is purely projected"),
        ("q2", "slope against log(eta)", slope_against_eta, "q2_slope"),
        ("q3", "budget from the top", lambda env: {"energy_null_space": from_head}, "number of directions differs"),
        (
            "q3",
            "budget not normalised",
            lambda env: {"energy_null_space": absolute_budget},
            "number of directions differs",
        ),
        ("q3", "off by one", lambda env: {"energy_null_space": one_too_many}, "one direction too many"),
        ("q3", "transposed basis", lambda env: {"energy_null_space": transposed_basis}, "d x k basis"),
        ("q4", "Frobenius norm in the bound", bound_frobenius, "SQUARED spectral norm"),
        ("q4", "lhs not squared", lhs_not_squared, "q4_lhs is not the squared Frobenius norm"),
        ("q5", "rounding as the reason", lambda env: {"q5_answer": "a"}, "not the reason"),
        ("q5", "float32 training", lambda env: {"q5_train_change": 3e-7}, "stay put to rounding"),
        (
            "q5",
            "changes swapped",
            lambda env: {"q5_train_change": env["q5_test_change"], "q5_test_change": env["q5_train_change"]},
            "stay put to rounding",
        ),
    ]


def _ex02_wrong():
    import math as _math

    import torch
    import torch.nn.functional as F

    def affinity(w, x, *, norm=True, key_rows=(1, 2), scale=1.0, bias=True, heads=None):
        b, n, dim = x.shape
        h = w.num_heads
        d = dim // h
        xn = w.norm(x) if norm else x
        q = F.linear(xn, w.qkv_weight[:dim], w.qkv_bias[:dim] if bias else None) * scale
        q = q.reshape(b, n, h, d).permute(0, 2, 1, 3)
        wk = w.qkv_weight[key_rows[0] * dim : key_rows[1] * dim].reshape(h, d, dim)
        rows = torch.einsum("bhnd,hdD->bhnD", q, wk)
        if heads is not None:
            rows = rows[:, :heads]
        return rows.reshape(-1, dim)

    def aggregation(w, x, prompts, *, prompts_only=False, softmax=True, scaled=True):
        b, n, dim = x.shape
        h = w.num_heads
        d = dim // h
        qkv = F.linear(w.norm(x), w.qkv_weight, w.qkv_bias).reshape(b, n, 3, h, d).permute(2, 0, 3, 1, 4)
        q, k = qkv[0], qkv[1]
        kp = F.linear(w.norm(prompts), w.qkv_weight[dim : 2 * dim], w.qkv_bias[dim : 2 * dim])
        kp = kp.reshape(-1, h, d).permute(1, 0, 2).unsqueeze(0).expand(b, -1, -1, -1)
        logits = q @ torch.cat([k, kp], dim=2).transpose(-1, -2) / (_math.sqrt(d) if scaled else 1.0)
        if prompts_only:
            out = torch.softmax(logits[..., n:], dim=-1)
        else:
            out = torch.softmax(logits, dim=-1)[..., n:] if softmax else logits[..., n:]
        return out.reshape(-1, prompts.shape[0])

    def q1(env, **kw):
        f = lambda w, x: affinity(w, x, **kw)  # noqa: E731
        with torch.no_grad():
            return {"affinity_rows": f, "omega1": f(env["w"], env["x"])}

    def q2(env, **kw):
        f = lambda w, x, p: aggregation(w, x, p, **kw)  # noqa: E731
        with torch.no_grad():
            return {"aggregation_rows": f, "omega2": f(env["w"], env["x"], env["prompts"])}

    def range_projectors(env):  # I - B: the complement of the null spaces
        eye1 = torch.eye(env["D"], dtype=torch.float64)
        eye2 = torch.eye(env["m"], dtype=torch.float64)
        b1, b2 = eye1 - env["B1"], eye2 - env["B2"]
        bc = env["block_change"]
        return {"q3_changes": {**env["q3_changes"], "both": bc(b2 @ env["G"] @ b1)}}

    def swapped_labels(env):  # affinity and aggregation exchanged
        c = dict(env["q3_changes"])
        c["affinity"], c["aggregation"] = c["aggregation"], c["affinity"]
        return {"q3_changes": c}

    return [
        ("q1", "no LayerNorm", lambda env: q1(env, norm=False), "differs from the recorded one"),
        ("q1", "W_v rows as keys", lambda env: q1(env, key_rows=(2, 3)), "differs from the recorded one"),
        (
            "q1",
            "queries scaled by 1/sqrt(d)",
            lambda env: q1(env, scale=1 / _math.sqrt(env["D"] // env["H"])),
            "wrong scale",
        ),
        ("q1", "first head only", lambda env: q1(env, heads=1), "one row per (image, head, token)"),
        ("q1", "query bias missing", lambda env: q1(env, bias=False), "differs from the recorded one"),
        ("q2", "softmax over the prompts only", lambda env: q2(env, prompts_only=True), "not over the prompts alone"),
        ("q2", "before the softmax", lambda env: q2(env, softmax=False), "after the softmax"),
        ("q2", "no 1/sqrt(d)", lambda env: q2(env, scaled=False), "differs from the recorded one"),
        ("q3", "range projectors", range_projectors, "stay put to rounding"),
        ("q3", "labels swapped", swapped_labels, "is not the change under that projection"),
        (
            "q4",
            "floor instead of ceiling",
            lambda env: {"q4_aggregation_images": env["m"] // (env["H"] * env["N"])},
            "count rows against columns",
        ),
        (
            "q4",
            "affinity off by one",
            lambda env: {"q4_affinity_images": env["q4_affinity_images"] + 1},
            "how many independent rows",
        ),
        ("q5", "sizes change the exact null space", lambda env: {"q5_answer": "b"}, "which null space"),
    ]


def _ex00_wrong():
    import numpy as np

    def steps_over_all(r):  # divided by T, not by the i + 1 tasks seen
        r = np.asarray(r, dtype=float)
        return np.array([np.nansum(r[i]) / r.shape[0] for i in range(r.shape[0])])

    def steps_off_by_one(r):  # the first i tasks only
        r = np.asarray(r, dtype=float)
        return np.array([r[i, :i].mean() if i else r[0, 0] for i in range(r.shape[0])])

    def forgetting_incl_last(r):  # the max also over the last step: never negative, differs
        r = np.asarray(r, dtype=float)
        t = r.shape[0]
        return float(np.mean([r[j:, j].max() - r[t - 1, j] for j in range(t - 1)])) if t > 1 else 0.0

    def forgetting_from_diagonal(r):  # -BWT instead of forgetting
        r = np.asarray(r, dtype=float)
        t = r.shape[0]
        return float(np.mean([r[j, j] - r[t - 1, j] for j in range(t - 1)])) if t > 1 else 0.0

    def forgetting_sign(r):
        return -forgetting_from_diagonal(r)

    def with_forgetting(env, f):
        return {"forgetting_of": f, "q2_forgetting": f(env["R"])}

    def bwt_wrong_sign(env):  # forgetting - BWT
        from nscl.metrics import backward_transfer, forgetting

        return {"q3_gap": forgetting(env["R_joint"]) - backward_transfer(env["R_joint"])}

    return [
        (
            "q1",
            "divided by T",
            lambda env: {"step_acc": steps_over_all, "q1_steps": steps_over_all(env["R"])},
            "mean over the i + 1 tasks seen",
        ),
        (
            "q1",
            "off by one",
            lambda env: {"step_acc": steps_off_by_one, "q1_steps": steps_off_by_one(env["R"])},
            "your step accuracies differ",
        ),
        (
            "q2",
            "max including the last step",
            lambda env: with_forgetting(env, forgetting_incl_last),
            "the max runs over the steps before the last",
        ),
        (
            "q2",
            "-BWT instead",
            lambda env: with_forgetting(env, forgetting_from_diagonal),
            "the max runs over the steps before the last",
        ),
        ("q2", "wrong sign", lambda env: with_forgetting(env, forgetting_sign), "your forgetting differs"),
        ("q3", "BWT with the wrong sign", bwt_wrong_sign, "q3_gap: forgetting + backward transfer"),
        ("q3", "Seq's matrix", lambda env: {"q3_gap": 0.0, "q3_tasks": []}, "use R_joint"),
        ("q3", "best at any step", lambda env: {"q3_tasks": list(range(env["T"] - 1))}, "q3_tasks"),
        ("q4", "plain mean", lambda env: {"q4_last": float(np.mean(env["R"][-1]))}, "weigh each task's accuracy"),
        ("q4", "difference reversed", lambda env: {"q4_difference": -env["q4_difference"]}, "in that order"),
        ("q5", "old heads change", lambda env: {"q5_answer": "a"}, "what else competes"),
    ]


def _ex04_wrong():
    import numpy as np
    import torch

    def up(snapshot, tower):
        return torch.cat(
            [
                snapshot[n].double().flatten()
                for n in sorted(snapshot)
                if n.endswith("up_proj.weight") and n.startswith("visual.") == (tower == "visual")
            ]
        )

    def drift_from_init(snapshots, initial, tower):  # cumulative: from the init every time
        start = up(initial, tower)
        return [float((up(s, tower) - start).norm() / np.sqrt(start.numel())) for s in snapshots]

    def drift_unnormalised(snapshots, initial, tower):  # no 1 / sqrt(P)
        flats = [up(initial, tower)] + [up(s, tower) for s in snapshots]
        return [float((b - a).norm()) for a, b in zip(flats, flats[1:])]

    def drift_skip_first(snapshots, initial, tower):  # off by one: starts at task 1
        flats = [up(s, tower) for s in snapshots]
        return [float((b - a).norm() / np.sqrt(a.numel())) for a, b in zip(flats, flats[1:])]

    def with_drift(env, f):
        return {"drift": f, "q2_drift": {t: f(env["snapshots"], env["initial"], t) for t in ("visual", "text")}}

    return [
        (
            "q1",
            "bound squared, not divided by 3",
            lambda env: {"q1_predicted": {t: 1.0 / w for t, w in env["widths"].items()}},
            "far from the measurement",
        ),
        (
            "q1",
            "fan-out instead of fan-in",
            lambda env: {"q1_predicted": {t: 1.0 / (3 * 64) for t in env["widths"]}},
            "far from the measurement",
        ),
        (
            "q1",
            "standard deviation measured",
            lambda env: {"q1_measured": {t: v**0.5 for t, v in env["q1_measured"].items()}},
            "the variance of that tower's down_proj.weight",
        ),
        (
            "q1",
            "rounded prediction",
            lambda env: {"q1_predicted": {t: round(v, 4) for t, v in env["q1_predicted"].items()}},
            "not the exact formula",
        ),
        ("q2", "drift from the init", lambda env: with_drift(env, drift_from_init), "from the previous task"),
        ("q2", "no sqrt(P)", lambda env: with_drift(env, drift_unnormalised), "divided by sqrt(P)"),
        ("q2", "off by one", lambda env: with_drift(env, drift_skip_first), "one drift per task"),
        ("q3", "text over visual", lambda env: {"q3_ratios": 1 / env["q3_ratios"]}, "not the ratio asked for"),
        (
            "q3",
            "the first seed twice",
            lambda env: {"q3_ratios": env["q3_ratios"].iloc[[0, 0]].set_axis([env["seed"], env["seed"] + 1])},
            "did the second run really use seed + 1",
        ),
        (
            "q3",
            "every measure called stable",
            lambda env: (
                {"q3_stable": ["spread", "drift", "across"]} if len(env["q3_stable"]) < 3 else {"q3_stable": []}
            ),
            "same side of 1",
        ),
        ("q4", "W_down does not train", lambda env: {"q4_answer": "a"}, "before any training"),
    ]


def _ex05_wrong():
    import torch

    def coefficients(tops, bases, ratio=0.1, scale=30.0, *, sign=-1, normalise_columns=True, top=None, mean_all=False):
        u = tops.double() / tops.double().norm(dim=1, keepdim=True)
        lam = torch.empty(u.shape[0], len(bases), dtype=torch.float64)
        for k, b in enumerate(bases):
            b = b.double()
            b = b / b.norm(dim=0, keepdim=True) if normalise_columns else b
            cos = u @ b
            count = top(b.shape[1], ratio) if top else max(int(b.shape[1] * ratio), 1)
            m = cos.mean(dim=1) if mean_all else cos.topk(count, dim=1).values.mean(dim=1)
            lam[:, k] = scale * torch.exp(sign * m)
        return lam

    def q1(env, **kw):
        f = lambda tops, bases, ratio=0.1, scale=30.0: coefficients(tops, bases, ratio, scale, **kw)  # noqa: E731
        return {"dynamic_coefficients": f, "lam": f(env["tops"], env["bases"])}

    def pooled(covs, theta, *, normalise=True, shift=0, share=None):
        p = sum((c / torch.trace(c) if normalise else c).double() for c in covs)
        s, u = torch.linalg.eigh((p + p.T) / 2)
        s, u = s.flip(0).clamp_min(0), u.flip(1)
        share = theta if share is None else share(theta)
        dropped = int(torch.searchsorted(s.cumsum(0), share * s.sum() * (1 - 1e-12))) + 1 + shift
        return u[:, dropped:] @ u[:, dropped:].T

    def q3(env, **kw):
        f = lambda covs, theta: pooled(covs, theta, **kw)  # noqa: E731
        return {"pooled_null_projector": f, "q3_pooled_dim": round(float(torch.trace(f(env["covs"], env["theta"]))))}

    return [
        ("q1", "exp(+m)", lambda env: q1(env, sign=+1), "mind the sign in the exponent"),
        ("q1", "mean of all cosines", lambda env: q1(env, mean_all=True), "largest signed cosines"),
        ("q1", "one cosine too many", lambda env: q1(env, top=lambda c, r: int(c * r) + 1), "how many cosines"),
        ("q1", "basis columns not normalised", lambda env: q1(env, normalise_columns=False), "other ratio, scale"),
        ("q2", "one direction fewer", lambda env: {"q2_count_two": env["q2_count_two"] - 1}, "orthogonal to both"),
        (
            "q2",
            "squared cosine",
            lambda env: {"q2_other": [1 + env["c"] ** 2, 1 - env["c"] ** 2]},
            "write it in that basis",
        ),
        (
            "q2",
            "exponents swapped",
            lambda env: {"q2_gain": float(env["n_layers"] ** env["n_tasks"])},
            "which multiple, how many times",
        ),
        ("q3", "layers not normalised", lambda env: q3(env, normalise=False), "normalise each to unit trace"),
        ("q3", "1 - theta dropped", lambda env: q3(env, share=lambda t: 1 - t), "wrong number of free directions"),
        ("q3", "off by one", lambda env: q3(env, shift=1), "wrong number of free directions"),
        (
            "q3",
            "intersection rank from the pooled one",
            lambda env: {"q3_intersect_dim": env["q3_pooled_dim"]},
            "q3_intersect_dim",
        ),
        ("q4", "SGD copies unscaled", lambda env: {"q4_sgd_diff": 0.0}, "with SGD the scaled copy"),
        (
            "q4",
            "against the start",
            lambda env: {"q4_max_diff": float((env["train_copy"](torch.optim.AdamW, 1.0) - env["start4"]).abs().max())},
            "AdamW's two copies",
        ),
        (
            "q5",
            "in percent",
            lambda env: {"q5_forgetting": {k: 100 * v for k, v in env["q5_forgetting"].items()}},
            "as a fraction",
        ),
        ("q5", "the coefficient does the work", lambda env: {"q5_answer": "a"}, "compare the three numbers"),
    ]


def _ex03_wrong():
    import numpy as np
    import pandas as pd

    def with_first_diagonal(env):  # plasticity including the first task's diagonal entry
        def plasticity_of(accuracy):
            return float(np.diag(accuracy).mean())

        rows = [
            {"eta": e, "forgetting": r.metrics.forgetting, "plasticity": plasticity_of(r.accuracy)}
            for e, r in env["sweep_results"].items()
        ]
        return {"plasticity_of": plasticity_of, "q2_sweep": pd.DataFrame(rows)}

    def next_eta(env):  # off by one: the next eta after the smallest that meets the target
        def smallest_meeting(sweep):
            right = env["smallest_meeting"](sweep)
            later = [e for e in sweep.eta if e > right]
            return float(later[0]) if later else right

        return {"smallest_meeting": smallest_meeting, "q2_eta": smallest_meeting(env["q2_sweep"])}

    def projection_from_half(env):  # the eta = 0.5 run taken as "projection only"
        runs = {**env["q3_runs"], "projection only": env["sweep_results"][0.5]}
        return {"q3_runs": runs, "q3_forgetting": {k: r.metrics.forgetting for k, r in runs.items()}}

    def cumulative_moves(env):  # from the first task's prompts every time
        def move(result):
            h = result.extras["report"]["prompts"]
            return float(np.mean([float((b - h[0]).norm() / h[0].norm()) for b in h[1:]]))

        moves = {"NSP²": move(env["full"]), "Seq": move(env["sweep_results"][0.0])}
        return {"q4_moves": moves, "q4_ratio": moves["NSP²"] / moves["Seq"]}

    return [
        (
            "q1",
            "normalised by k",
            lambda env: {"q1_formula": env["eta"] / env["k"] + 1 - env["eta"]},
            "Frobenius norm of a rank-k projector",
        ),
        ("q1", "no normalisation", lambda env: {"q1_formula": 1.0}, "Frobenius norm of a rank-k projector"),
        (
            "q1",
            "inside and outside swapped",
            lambda env: {"q1_inside": env["q1_outside"], "q1_outside": env["q1_inside"]},
            "q1_formula does not match",
        ),
        ("q2", "plasticity with the first task", with_first_diagonal, "plasticity: the mean of the diagonal"),
        ("q2", "the next eta", next_eta, "a smaller eta of your sweep also meets the target"),
        (
            "q2",
            "cost with the wrong sign",
            lambda env: {"q2_cost": -env["q2_cost"]} if env["q2_cost"] else {"q2_cost": 0.01},
            "q2_cost",
        ),
        (
            "q3",
            "in percent",
            lambda env: {"q3_forgetting": {k: 100 * v for k, v in env["q3_forgetting"].items()}},
            "as a fraction",
        ),
        ("q3", "projection only from eta = 0.5", projection_from_half, "task 2's eta = 0.97 run"),
        ("q3", "the projection does it all", lambda env: {"q3_answer": "a"}, "compare each protection alone"),
        ("q4", "Seq over NSP²", lambda env: {"q4_ratio": 1 / env["q4_ratio"]}, "NSP²'s average over Seq's"),
        ("q4", "moves from the first task", cumulative_moves, "from each task to the next"),
    ]


def _ex06_wrong():
    import pandas as pd
    import torch

    def angles(a, b, *, degrees=True, arcsin=False, descending=False):
        cos = torch.linalg.svdvals(a.double().T @ b.double()).clamp(-1, 1)
        out = torch.arcsin(cos) if arcsin else torch.arccos(cos)
        out = torch.rad2deg(out) if degrees else out
        return out.flip(0) if descending else out

    def q1(env, **kw):
        f = lambda a, b: angles(a, b, **kw)  # noqa: E731
        return {"angles": f, "q1_angles": f(env["basis"](0, env["last"]), env["basis"](2, env["last"]))}

    def q2(env, f):
        return {"overlap": f, "q2_overlap": f(env["basis"](0, env["last"]), env["basis"](2, env["last"]))}

    def from_head(env):  # the budget spent from the top of the spectrum
        rows = []
        for r in env["atlas"].itertuples():
            s = torch.as_tensor(r.spectrum).double()
            rows.append(
                {"task": int(r.task), "layer": int(r.layer), "free": int((s.cumsum(0) <= env["eps"] * s.sum()).sum())}
            )
        return {"q4_room": pd.DataFrame(rows)}

    return [
        ("q1", "radians", lambda env: q1(env, degrees=False), "degrees, not radians"),
        ("q1", "arcsin of the cosines", lambda env: q1(env, arcsin=True), "your angles differ"),
        ("q1", "descending", lambda env: q1(env, descending=True), "ascending angles"),
        (
            "q2",
            "not squared",
            lambda env: q2(env, lambda a, b: float((a.double().T @ b.double()).norm() / min(a.shape[1], b.shape[1]))),
            "overlaps itself by exactly 1",
        ),
        (
            "q2",
            "normalised by the larger basis",
            lambda env: q2(
                env, lambda a, b: float((a.double().T @ b.double()).square().sum() / max(a.shape[1], b.shape[1]))
            ),
            "3 and 6 directions",
        ),
        (
            "q3",
            "tasks 0 and 1",
            lambda env: {
                "q3_overlaps": {l: env["overlap"](env["basis"](0, l), env["basis"](1, l)) for l in env["q3_overlaps"]}
            },
            "task 0 against task 2",
        ),
        ("q3", "the null space suffices", lambda env: {"q3_answer": "b"}, "where does the new task's gradient live"),
        ("q4", "budget from the top", from_head, "the wrong number of free directions"),
        ("q4", "negated", lambda env: {"q4_shrinks": not env["q4_shrinks"]}, "does not follow from your table"),
    ]


WRONG = {
    "ex00_metrics": _ex00_wrong,
    "ex03_nsp2": _ex03_wrong,
    "ex06_null_space_atlas": _ex06_wrong,
    "ex01_null_space": _ex01_wrong,
    "ex02_consistency_conditions": _ex02_wrong,
    "ex04_modalities": _ex04_wrong,
    "ex05_dmnsp": _ex05_wrong,
}
