"""Training throughput of NSP² and DMNSP at the papers' size: ViT-B/16 at 224 px, random weights.

Per method, on its second task (so that the null-space projection is on):

* images/s over timed training steps (the batch transform, 32 px uint8 -> 224 px, included, as
  training runs it);
* the step time split into transform, forward, backward, projection and the rest of the optimiser
  step, from separate instrumented steps (a device synchronisation at each boundary);
* peak memory: on a GPU `torch.cuda.max_memory_allocated` over the timed steps and, apart, over the
  null-space build; on a CPU the process's peak resident set size (`ru_maxrss`: everything since the
  process started, model included; each method runs in its own process);
* the null-space build at the task's end (`end_task`): the feature collection over the task's images
  and the rest (covariances' eigendecompositions, projectors), with the collection scaled to a
  5,000-image task (one CIFAR-100 task of 10) for an estimate of a whole task's end.

Warm-up steps (the first steps of each task, including DMNSP's coefficient step) are not timed.
Methods: NSP² = VPT-NSP² (timm ViT-B/16, prompts in all 12 blocks, the paper recipe for
cifar100-10s); DMNSP = the paper recipe for cifar100-10-10 (OpenAI CLIP ViT-B/16 with adapters in
both towers, the `paper` variant). Results: benchmarks/results/throughput_<cpu|cuda>.csv, one row per
method, with the device named.

  python benchmarks/throughput.py                                     # GPU when visible: the recipes' batch sizes
  python benchmarks/throughput.py --device cpu --batch 4 --steps 3 --threads 2   # a few minutes on a CPU
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd
import torch

from nscl.methods.base import ContinualMethod, TaskInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nsp2_step import run_steps  # noqa: E402  (steps over a batch of images, synchronised at both ends)

RESULTS = Path(__file__).parent / "results"
CLASSES_PER_TASK = 10
FULL_TASK_IMAGES = 5000  # one task of CIFAR-100 in 10 tasks
METHODS = ("nsp2", "dmnsp")
MODELS = {
    "nsp2": "timm ViT-B/16 at 224 px, prompts in 12 blocks, random weights",
    "dmnsp": "OpenAI CLIP ViT-B/16 at 224 px, adapters in both towers, random weights",
}


# -- the methods at paper size -----------------------------------------------------------------------


def build(name: str, device: str) -> tuple[ContinualMethod, str, int]:
    """(method with random weights, set up on device; its precision; the recipe's batch size)."""
    if name == "nsp2":
        from nscl.nsp2.recipe import build_nsp2, nsp2_recipe

        benchmark, config, run = nsp2_recipe("paper", "vit", "cifar100-10s", device=device)
        method = build_nsp2("paper", "vit", config, benchmark, pretrained=False)
    else:
        from nscl.dmnsp.method import DMNSP
        from nscl.dmnsp.recipe import build_clip_for, dmnsp_recipe

        _, config, run = dmnsp_recipe("paper", "cifar100-10-10", device=device)
        clip, tokenizer, transform = build_clip_for("paper", pretrained=False)
        method = DMNSP(clip, tokenizer, transform, config)
    method.setup(device, run.precision)
    return method, run.precision, run.batch_size


def task(index: int, n_train: int, batch: int) -> TaskInfo:
    names = tuple(f"class {i}" for i in range(2 * CLASSES_PER_TASK))
    positions = range(index * CLASSES_PER_TASK, (index + 1) * CLASSES_PER_TASK)
    return TaskInfo(
        index, positions, positions.stop, names, n_train, steps_per_epoch=max(n_train // batch, 1), epochs=1
    )


def cifar_like(n: int, device: str, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen).to(device)


# -- clocks --------------------------------------------------------------------------------------------


def synchronizer(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


@dataclass
class StepClock:
    """Per instrumented step: when backward started and ended, and the time spent projecting."""

    sync: Callable[[], None]
    marks: dict[str, float] = field(default_factory=dict)
    projection: float = 0.0

    def now(self) -> float:
        self.sync()
        return time.perf_counter()


@contextlib.contextmanager
def instrumented(method: ContinualMethod, clock: StepClock) -> Iterator[None]:
    """Time backward (torch.Tensor.backward) and the projection (NSP²: the optimiser's update
    projection; DMNSP: `_project_gradients`) without changing what a step computes."""
    backward = torch.Tensor.backward

    def timed_backward(tensor, *args, **kwargs):
        clock.marks["backward_start"] = clock.now()
        backward(tensor, *args, **kwargs)
        clock.marks["backward_end"] = clock.now()

    def timed(fn):
        def call(*args, **kwargs):
            start = clock.now()
            out = fn(*args, **kwargs)
            clock.projection += clock.now() - start
            return out

        return call

    restore: list[Callable[[], None]] = []
    if hasattr(method, "_project_gradients"):
        method._project_gradients = timed(method._project_gradients)
        restore.append(lambda: delattr(method, "_project_gradients"))
    else:
        projections = method.optimizer.projections
        saved = dict(projections)
        for param, projection in saved.items():
            projections[param] = timed(projection)
        restore.append(lambda: projections.update(saved))
    torch.Tensor.backward = timed_backward
    try:
        yield
    finally:
        torch.Tensor.backward = backward
        for undo in restore:
            undo()


def split_steps(
    method: ContinualMethod, images: torch.Tensor, labels: torch.Tensor, batch: int, sync: Callable[[], None]
) -> dict[str, float]:
    """Mean seconds per step of transform, forward, backward, projection and the rest (optimiser)."""
    parts = {"transform": 0.0, "forward": 0.0, "backward": 0.0, "projection": 0.0, "optimizer": 0.0}
    steps = 0
    for i in range(0, len(images) - batch + 1, batch):
        clock = StepClock(sync)
        with instrumented(method, clock):
            start = clock.now()
            x = method.transform(images[i : i + batch], train=True)
            ready = clock.now()
            method.training_step(x, labels[i : i + batch])
            end = clock.now()
        parts["transform"] += ready - start
        parts["forward"] += clock.marks["backward_start"] - ready
        parts["backward"] += clock.marks["backward_end"] - clock.marks["backward_start"]
        parts["projection"] += clock.projection
        parts["optimizer"] += end - clock.marks["backward_end"] - clock.projection
        steps += 1
    return {k: v / steps for k, v in parts.items()}


def task_end(
    method: ContinualMethod,
    info: TaskInfo,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch: int,
    sync: Callable[[], None],
) -> dict[str, float]:
    """Seconds of `end_task`: collecting features over the images (the batches' generator runs from the
    first request to its end) and the rest (decompositions, projectors)."""
    prepared = [
        (method.transform(images[i : i + batch], train=False), labels[i : i + batch])
        for i in range(0, len(images), batch)
    ]
    marks: dict[str, float] = {}

    def batches(train_transform: bool = False, **_) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        sync()
        marks.setdefault("first", time.perf_counter())
        yield from prepared
        sync()
        marks["last"] = time.perf_counter()

    sync()
    start = time.perf_counter()
    method.end_task(info, batches)
    sync()
    total = time.perf_counter() - start
    collect = marks["last"] - marks["first"]
    return {"collect": collect, "decompose": total - collect, "total": total}


# -- one method, in its own process ---------------------------------------------------------------------


def rss_gib() -> float:
    """Current resident set size of this process (VmRSS), GiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def measure(name: str, device: str, batch: int | None, steps: int, warmup: int, end_images: int) -> dict:
    cuda = device.startswith("cuda")
    sync = synchronizer(device)
    torch.manual_seed(0)
    method, precision, recipe_batch = build(name, device)
    batch = batch or recipe_batch
    built_rss = rss_gib()
    images = cifar_like((warmup + 2 * steps) * batch, device, seed=1)
    end_images_t = cifar_like(end_images, device, seed=2)
    first, second = task(0, len(images), batch), task(1, len(images), batch)

    # task 1: a step, then its end (the null spaces the second task projects into)
    method.begin_task(first)
    labels = torch.randint(0, CLASSES_PER_TASK, (len(images),), device=device)
    run_steps(method, images[:batch], labels[:batch], batch, sync)
    method.end_task(
        first,
        lambda train_transform=False, **_: iter(
            [(method.transform(end_images_t[:batch], train=False), labels[:batch])]
        ),
    )

    # task 2: warm-up, timed steps, instrumented steps, then the task's end
    method.begin_task(second)
    labels = labels + CLASSES_PER_TASK
    cut = warmup * batch
    run_steps(method, images[:cut], labels[:cut], batch, sync)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    seconds = run_steps(method, images[cut : cut + steps * batch], labels[cut : cut + steps * batch], batch, sync)
    train_peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    split = split_steps(method, images[cut + steps * batch :], labels[cut + steps * batch :], batch, sync)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    end_labels = torch.randint(0, CLASSES_PER_TASK, (end_images,), device=device) + CLASSES_PER_TASK
    end = task_end(method, second, end_images_t, end_labels, batch, sync)
    end_peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    step = seconds / steps
    return {
        "method": {"nsp2": "VPT-NSP²", "dmnsp": "DMNSP"}[name],
        "model": MODELS[name],
        "precision": precision,
        "batch": batch,
        "timed_steps": steps,
        "img_per_s": batch / step,
        "step_s": step,
        **{f"{k}_s": v for k, v in split.items()},
        "projection_share": split["projection"] / sum(split.values()),
        "peak_memory_gib": train_peak if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "peak_memory_task_end_gib": end_peak,
        "peak_memory_kind": "torch.cuda.max_memory_allocated over the timed steps (task end: its own column)"
        if cuda
        else "process peak RSS (ru_maxrss: the whole process, model build and task end included)",
        "rss_after_build_gib": built_rss,
        "task_end_images": end_images,
        "task_end_collect_s": end["collect"],
        "task_end_decompose_s": end["decompose"],
        "task_end_s": end["total"],
        f"task_end_{FULL_TASK_IMAGES}_images_est_s": end["decompose"] + end["collect"] / end_images * FULL_TASK_IMAGES,
    }


# -- the table ------------------------------------------------------------------------------------------


def device_name(device: str, threads: int) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "cpu",
    )
    return f"{model}, {threads} threads"


def run_child(name: str, args: argparse.Namespace) -> dict:
    """One method in a fresh process (so that its peak memory is its own)."""
    command = [
        sys.executable,
        __file__,
        "--one",
        name,
        "--device",
        args.device,
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--threads",
        str(args.threads),
        "--task-end-images",
        str(args.task_end_images),
    ] + (["--batch", str(args.batch)] if args.batch else [])
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--batch", type=int, default=None, help="default: the recipe's on a GPU, 4 on a CPU")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="timed steps (and as many instrumented ones); default: 20 on a GPU, 3 on a CPU",
    )
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first; default 5 GPU, 1 CPU")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument(
        "--task-end-images",
        type=int,
        default=None,
        help=f"images the null-space build collects; default {FULL_TASK_IMAGES} GPU, 8 CPU",
    )
    parser.add_argument("--one", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    args.batch = args.batch or (None if cuda else 4)
    args.steps = args.steps or (20 if cuda else 3)
    args.warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    args.task_end_images = args.task_end_images or (FULL_TASK_IMAGES if cuda else 8)
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(measure(args.one, args.device, args.batch, args.steps, args.warmup, args.task_end_images)))
        return
    rows = []
    for name in args.methods:
        start = time.perf_counter()
        row = run_child(name, args)
        print(f"{row['method']}: measured in {time.perf_counter() - start:.0f} s", flush=True)
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.insert(0, "device", device_name(args.device, args.threads))
    frame.insert(1, "torch", torch.__version__)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"throughput_{'cuda' if cuda else 'cpu'}.csv"
    frame.to_csv(out, index=False, float_format="%.4g")
    shown = [
        "method",
        "precision",
        "batch",
        "img_per_s",
        "step_s",
        "transform_s",
        "forward_s",
        "backward_s",
        "projection_s",
        "optimizer_s",
        "projection_share",
        "peak_memory_gib",
        "task_end_images",
        "task_end_collect_s",
        "task_end_decompose_s",
        f"task_end_{FULL_TASK_IMAGES}_images_est_s",
    ]
    print(f"device: {frame.device.iloc[0]}; torch {torch.__version__}; peak memory: {frame.peak_memory_kind.iloc[0]}")
    print(frame[shown].set_index("method").T.to_string(float_format=lambda v: f"{v:.4g}"))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
