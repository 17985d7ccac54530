"""The task loop: train, evaluate on every seen task, let the method update its state, checkpoint.

    for task t:
        method.begin_task(t)
        for epoch, batch: method.training_step(batch)
        method.end_task(t, replay of t's training data)
        R[t, j] = accuracy on task j's test data, for j <= t
        checkpoint (method state + R) -> run_dir

A killed run restarts from its last finished task: every task reseeds the RNGs from (seed, task),
so a resumed run ends with the same numbers as an uninterrupted one (on the same device).
Results: accuracy.csv (tidy: train_task, eval_task, accuracy, n_test), tasks.csv, metrics.json.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm  # text bars: tqdm.auto warns in kernels without ipywidgets

from nscl.data.base import ImageSet
from nscl.data.continual import ContinualData
from nscl.data.loading import iterate_batches
from nscl.methods.base import PRECISIONS, ContinualMethod, TaskInfo
from nscl.metrics import ContinualMetrics, summarize

__all__ = ["RunConfig", "RunResult", "RunMismatchError", "run_continual", "evaluate", "seed_everything", "repeated"]

CHECKPOINT = "checkpoint.pt"


class RunMismatchError(RuntimeError):
    """run_dir already holds a run made with other settings; it is left untouched."""


@dataclass(frozen=True)
class RunConfig:
    epochs: int = 1
    batch_size: int = 64
    eval_batch_size: int = 256
    data_repeats: int = 1        # each epoch walks the task's data this many times (NSP²'s expand_times)
    seed: int = 0
    device: str = "cpu"
    precision: str = "fp32"      # fp32 | bf16 | fp16 (autocast inside the method's forward)
    num_workers: int = 0         # for image-folder data sets
    joint: bool = False          # train task t on all data of tasks 0..t (upper bound)
    max_tasks: int | None = None  # stop after this many tasks (the matrix stays square)
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size", "data_repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"RunConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"RunConfig.precision={self.precision!r}; choose one of {PRECISIONS}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"RunConfig.device={self.device!r} but no CUDA device is visible; use device='cpu'")


@dataclass
class RunResult:
    accuracy: np.ndarray          # R[i, j], NaN above the diagonal (class-incremental)
    task_sizes: np.ndarray        # test samples per task
    tasks: pd.DataFrame           # per-task log: time, loss, step accuracy
    accuracy_task_aware: np.ndarray | None = None  # same, argmax within task j's classes only
    run_dir: Path | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def metrics(self) -> ContinualMetrics:
        return summarize(self.accuracy, self.task_sizes)

    @property
    def metrics_task_aware(self) -> ContinualMetrics:
        return summarize(self.accuracy_task_aware, self.task_sizes)

    def accuracy_frame(self) -> pd.DataFrame:
        til = self.accuracy_task_aware
        rows = [dict(train_task=i, eval_task=j, accuracy=self.accuracy[i, j],
                     accuracy_task_aware=np.nan if til is None else til[i, j], n_test=int(self.task_sizes[j]))
                for i in range(self.accuracy.shape[0]) for j in range(i + 1)]
        return pd.DataFrame(rows)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _task_seed(seed: int, task: int, salt: int = 0) -> int:
    return (seed * 1_000_003 + task * 7_919 + salt) % 2**31


@torch.no_grad()
def evaluate(method: ContinualMethod, data: ImageSet, config: RunConfig,
             task_positions: range | None = None) -> tuple[float, float]:
    """Top-1 accuracy of `method.logits` on `data` (labels are class positions).

    Returns (class-incremental accuracy: argmax over all seen classes, task-aware accuracy: argmax
    over `task_positions` only, NaN when not given). Counts stay on the device until the end.
    """
    correct = torch.zeros(2, dtype=torch.long, device=method.device)
    for images, labels in iterate_batches(data, config.eval_batch_size, device=method.device,
                                          num_workers=config.num_workers):
        logits = method.logits(method.transform(images, train=False))
        correct[0] += (logits.argmax(dim=1) == labels).sum()
        if task_positions is not None:
            local = logits[:, task_positions.start:task_positions.stop].argmax(dim=1) + task_positions.start
            correct[1] += (local == labels).sum()
    n = len(data)
    if n == 0:
        return float("nan"), float("nan")
    counts = correct.tolist()
    return counts[0] / n, (counts[1] / n if task_positions is not None else float("nan"))


def repeated(data: ImageSet, repeats: int) -> ImageSet:
    """`data` listed `repeats` times, so that one shuffle mixes all copies (NSP²'s expand_times).

    The official loop repeats the task's data set and batches the result once per epoch:
    ceil(repeats * n / batch) steps (196 for a CIFAR-100 task of 5,000 images, 10 repeats, batch 256),
    not repeats * ceil(n / batch) (200) with a reshuffle per copy.
    """
    if repeats == 1:
        return data
    return data.subset(np.tile(np.arange(len(data)), repeats))


def _fingerprint(method: ContinualMethod, data: ContinualData, config: RunConfig) -> dict:
    cfg = asdict(config)
    for volatile in ("progress", "num_workers", "max_tasks"):
        cfg.pop(volatile)
    method_cfg = getattr(method, "config", None)
    return json.loads(json.dumps({
        "method": method.name,
        "method_config": asdict(method_cfg) if method_cfg is not None else None,
        "run_config": cfg,
        "dataset": data.train.name, "n_train": len(data.train), "n_test": len(data.test),
        "scenario": data.scenario.to_dict(),
    }, default=str))


def _save_checkpoint(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # atomic: a kill during the save leaves the previous checkpoint intact


def _write_results(run_dir: Path, result: RunResult) -> None:
    result.accuracy_frame().to_csv(run_dir / "accuracy.csv", index=False)
    result.tasks.to_csv(run_dir / "tasks.csv", index=False)
    done = int(np.isfinite(np.diag(result.accuracy)).sum())
    sizes = result.task_sizes[:done]
    metrics = {"tasks_done": done}
    if done:
        metrics.update(summarize(result.accuracy[:done, :done], sizes).as_dict())
        metrics["task_aware"] = summarize(result.accuracy_task_aware[:done, :done], sizes).as_dict()
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))


def run_continual(method: ContinualMethod, data: ContinualData, config: RunConfig = RunConfig(),
                  run_dir: str | Path | None = None, resume: bool = True) -> RunResult:
    """Train `method` through the tasks of `data`; checkpoint to `run_dir` after every task."""
    n_tasks = data.n_tasks if config.max_tasks is None else min(config.max_tasks, data.n_tasks)
    method.setup(config.device, config.precision)
    accuracy = np.full((n_tasks, n_tasks), np.nan)
    accuracy_til = np.full((n_tasks, n_tasks), np.nan)
    task_sizes = np.array([len(data.task(j, "test")) for j in range(n_tasks)], dtype=np.int64)
    log: list[dict] = []
    start = 0
    fingerprint = _fingerprint(method, data, config)
    run_path = Path(run_dir) if run_dir is not None else None
    if run_path is not None:
        run_path.mkdir(parents=True, exist_ok=True)
        ckpt_path = run_path / CHECKPOINT
        if ckpt_path.exists():
            if not resume:
                raise RunMismatchError(f"{run_path} already holds a run; pass resume=True to continue it or "
                                       f"choose a new run_dir (finished work is never overwritten)")
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
            if ckpt["fingerprint"] != fingerprint:
                diff = {k: (ckpt["fingerprint"].get(k), v) for k, v in fingerprint.items()
                        if ckpt["fingerprint"].get(k) != v}
                raise RunMismatchError(f"{run_path} holds a run with other settings (checkpoint vs now: {diff}); "
                                       f"use another run_dir to start a new run")
            method.load_state_dict(ckpt["method"])
            done = ckpt["tasks_done"]
            accuracy[:done, :done] = ckpt["accuracy"][:done, :done]
            accuracy_til[:done, :done] = ckpt["accuracy_task_aware"][:done, :done]
            log = ckpt["log"]
            start = done
        (run_path / "config.json").write_text(json.dumps(fingerprint, indent=2))

    for t in range(start, n_tasks):
        seed_everything(_task_seed(config.seed, t))
        train_set = data.tasks_up_to(t, "train") if config.joint else data.task(t, "train")
        epoch_set = repeated(train_set, config.data_repeats)
        steps_per_epoch = math.ceil(len(epoch_set) / config.batch_size)
        info = TaskInfo(index=t, positions=data.scenario.task_positions(t), n_seen=data.scenario.n_seen(t),
                        class_names=data.class_names, n_train=len(train_set), steps_per_epoch=steps_per_epoch,
                        epochs=config.epochs)
        t0 = time.perf_counter()
        method.begin_task(info)
        loss_sum = torch.zeros((), device=method.device)
        aug = torch.Generator().manual_seed(_task_seed(config.seed, t, salt=1))
        bar = tqdm(total=info.total_steps if method.trains else 0, desc=f"{method.name} task {t + 1}/{n_tasks}", disable=not config.progress,
                   leave=False)
        for epoch in range(config.epochs if method.trains else 0):
            for images, labels in iterate_batches(epoch_set, config.batch_size, shuffle=True,
                                                  seed=_task_seed(config.seed, t, salt=100 + epoch),
                                                  device=method.device, num_workers=config.num_workers):
                loss = method.training_step(method.transform(images, train=True, generator=aug), labels)
                loss_sum += loss.detach()  # stays on the device: no host sync per step
                bar.update(1)
            if config.progress:
                bar.set_postfix(loss=f"{loss_sum.item() / max(bar.n, 1):.4f}")
        bar.close()
        train_time = time.perf_counter() - t0

        def replay(train_transform: bool = False, batch_size: int | None = None, shuffle: bool = False):
            gen = torch.Generator().manual_seed(_task_seed(config.seed, t, salt=2))
            for images, labels in iterate_batches(train_set, batch_size or config.eval_batch_size, shuffle=shuffle,
                                                  seed=_task_seed(config.seed, t, salt=3), device=method.device,
                                                  num_workers=config.num_workers):
                yield method.transform(images, train=train_transform, generator=gen), labels

        method.end_task(info, replay)
        for j in range(t + 1):
            accuracy[t, j], accuracy_til[t, j] = evaluate(method, data.task(j, "test"), config,
                                                          data.scenario.task_positions(j))
        step_acc = float(np.dot(accuracy[t, : t + 1], task_sizes[: t + 1]) / task_sizes[: t + 1].sum())
        log.append(dict(task=t, n_train=len(train_set), steps=info.total_steps, train_seconds=train_time,
                        total_seconds=time.perf_counter() - t0, mean_loss=loss_sum.item() / max(info.total_steps, 1),
                        step_accuracy=step_acc))
        if run_path is not None:
            _save_checkpoint(run_path / CHECKPOINT, dict(fingerprint=fingerprint, tasks_done=t + 1,
                                                         accuracy=accuracy, accuracy_task_aware=accuracy_til, log=log,
                                                         method=method.state_dict()))
            _write_results(run_path, RunResult(accuracy, task_sizes, pd.DataFrame(log), accuracy_til))
        if config.progress:
            tqdm.write(f"{method.name}: task {t + 1}/{n_tasks} accuracy on seen classes {step_acc:.4f} "
                       f"({train_time:.1f}s)")
    report = method.report()
    if run_path is not None and report:
        torch.save(report, run_path / "report.pt")
    return RunResult(accuracy, task_sizes, pd.DataFrame(log), accuracy_til, run_path, extras={"report": report})
