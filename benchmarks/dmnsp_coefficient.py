"""DMNSP's dynamic coefficient and multi-layer projection: nscl's vectorised maths vs the official loops.

At the paper's sizes (12 visual layers, width 768, TOP_SELECT = 1, so 767 columns per task and
layer), for a few task indices t: time `coefficients` (one matmul per layer) against
`coefficients_loop` (the official per-column Python loop), and the closed-form projection chain
against the official per-layer, per-step loop; check both give the same numbers.
Run: python benchmarks/dmnsp_coefficient.py [--tasks 1 2 4] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch

from nscl.dmnsp.multilayer import coefficients, coefficients_loop, projector_chain


def random_bases(layers: int, dim: int, tasks: int, generator: torch.Generator) -> list[torch.Tensor]:
    blocks = [
        [
            torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))[0][:, 1:]
            for _ in range(tasks)
        ]
        for _ in range(layers)
    ]
    return [torch.cat(b, dim=1).float() for b in blocks]


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    start = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    return (time.perf_counter() - start) / repeat, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    print(
        f"{'t':>3} {'columns':>8} {'loop λ (s)':>11} {'vectorised λ (s)':>17} {'speed-up':>9} {'max |Δλ|':>9}"
        f" {'loop proj (s)':>14} {'chain proj (s)':>15} {'speed-up':>9}"
    )
    for t in args.tasks:
        bases = random_bases(args.layers, args.dim, t, g)
        tops = torch.randn(args.layers, args.dim, generator=g)
        loop_s, lam_loop = timed(lambda: coefficients_loop(tops, bases))
        dev_bases = [b.to(args.device) for b in bases]
        vec_s, lam_vec = timed(lambda: coefficients(tops.to(args.device), dev_bases), repeat=3)
        grad = torch.randn(64, args.dim, generator=g).to(args.device)

        def loop_projection():
            out = grad
            for b in dev_bases:  # the official order: G <- (G B_k) B_k^T, every step, every layer's weight
                out = (out @ b) @ b.T
            return out

        chain = projector_chain(dev_bases).float()
        loop_p, ref = timed(loop_projection, repeat=3)
        chain_p, fast = timed(lambda: grad @ chain, repeat=10)
        rel = float((fast - ref).norm() / ref.norm())
        print(
            f"{t:>3} {bases[0].shape[1]:>8} {loop_s:>11.2f} {vec_s:>17.4f} {loop_s / vec_s:>8.0f}x "
            f"{float((lam_loop - lam_vec.cpu()).abs().max()):>9.1e} {loop_p:>14.4f} {chain_p:>15.5f} "
            f"{loop_p / chain_p:>8.0f}x  (chain vs loop relative difference {rel:.1e})"
        )


if __name__ == "__main__":
    main()
