"""Time NSP² training steps: ViT-B/16 prompt tuning at 224 px on CIFAR-sized synthetic batches.

Measures images/s over one "epoch" of synthetic data, the share of step time spent in the
null-space projection (the same steps with and without projectors), and peak GPU memory.
Results go to benchmarks/results/nsp2_step_<device>.json. Weights are random (timing does not
depend on them); batches are uint8 32x32 on the device, resized to 224 there (as nscl runs them).

  python benchmarks/nsp2_step.py                       # GPU, paper sizes (batch 256, bf16)
  python benchmarks/nsp2_step.py --device cpu --model tiny --batch 32 --images 512   # quick CPU check
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from nscl.data.loading import BatchTransform
from nscl.methods.base import TaskInfo
from nscl.models.backbones import build_vit
from nscl.nsp2.method import NSP2, NSP2Config
from nscl.optim import TwoSidedProjection


def build(model: str, device: str, precision: str) -> NSP2:
    if model == "vit-b16":
        backbone, size = build_vit(pretrained=False), 224
    else:
        backbone, size = (
            build_vit(
                "vit_base_patch16_224", pretrained=False, img_size=32, patch_size=8, embed_dim=96, depth=6, num_heads=4
            ),
            32,
        )
    method = NSP2(backbone, BatchTransform(size=size, augment="rrc_flip"), NSP2Config(temperature=28.0))
    method.setup(device, precision)
    return method


def random_projection(method: NSP2) -> TwoSidedProjection:
    layers, m, d = method.prompts.shape
    g = torch.Generator().manual_seed(0)
    right = torch.linalg.qr(torch.randn(layers, d, d, generator=g))[0][..., : d // 2]
    left = torch.linalg.qr(torch.randn(layers, m, m, generator=g))[0][..., : m // 2]
    return TwoSidedProjection((left @ left.mT).to(method.device), (right @ right.mT).to(method.device))


def run_steps(method, images: torch.Tensor, labels: torch.Tensor, batch: int, sync) -> float:
    """Seconds for training steps over `images` (transform included), synchronised at both ends."""
    sync()
    start = time.perf_counter()
    for i in range(0, len(images) - batch + 1, batch):
        method.training_step(method.transform(images[i : i + batch], train=True), labels[i : i + batch])
    sync()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", choices=("vit-b16", "tiny"), default="vit-b16")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--images", type=int, default=5000, help="images per timed epoch (CIFAR task: 5,000)")
    parser.add_argument("--precision", default=None, help="fp32 | bf16 | fp16 (default: bf16 on GPU, fp32 on CPU)")
    args = parser.parse_args()
    precision = args.precision or ("bf16" if args.device.startswith("cuda") else "fp32")
    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    method = build(args.model, args.device, precision)
    n = args.images - args.images % args.batch
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, device=args.device)
    labels = torch.randint(0, 10, (n,), device=args.device)
    names = [str(i) for i in range(10)]
    task = TaskInfo(1, range(0, 10), 10, tuple(names), n, n // args.batch, 1)
    method.begin_task(task)
    run_steps(method, images[: 3 * args.batch], labels[: 3 * args.batch], args.batch, sync)  # warm-up
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    plain = run_steps(method, images, labels, args.batch, sync)
    method.optimizer.set_projection(method.prompts, random_projection(method))
    projected = run_steps(method, images, labels, args.batch, sync)
    result = {
        "model": args.model,
        "device": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
        "precision": precision,
        "batch": args.batch,
        "images": n,
        "torch": torch.__version__,
        "img_per_s_projected": n / projected,
        "img_per_s_unprojected": n / plain,
        "projection_share_of_step": max(0.0, 1 - plain / projected),
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
    }
    out = Path(__file__).parent / "results" / f"nsp2_step_{args.model}_{args.device.split(':')[0]}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
