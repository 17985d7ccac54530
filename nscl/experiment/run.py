"""The task loop: train, evaluate on every seen task, let the method update its state, checkpoint.

    for task t:
        method.begin_task(t)
        for epoch, batch: method.training_step(batch)
        method.end_task(t, replay of t's training data)
        R[t, j] = accuracy on task j's test data, for j <= t
        checkpoint (method state + R) -> run_dir

A killed run restarts from its last finished task: every task reseeds the RNGs from (seed, task),
so a resumed run ends with the same numbers as an uninterrupted one (on the same device).
Results: accuracy.csv (tidy: train_task, eval_task, accuracy, n_test), tasks.csv, metrics.json,
config.json (the settings' fingerprint, checked against every later call into the same run_dir).

Guards: a non-finite loss or parameter stops the run (`DivergedError`, naming the task, epoch and
step) before anything of that task is written. The loss is checked on the device (a flag and the
first bad step are kept there) and read back every `CHECK_EVERY` steps and at the end of each epoch.
Checkpoints (nscl.experiment.checkpoints): written to a temporary file and renamed; the previous one is kept as checkpoint.prev.pt;
a damaged checkpoint is reported (with its path), set aside as *.damaged.pt, and the run resumes from
the previous one, or starts over when there is none.
"""

from __future__ import annotations

import json
import math
import numbers
import random
import re
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm  # text bars: tqdm.auto warns in kernels without ipywidgets

from nscl.data.base import ImageSet
from nscl.data.continual import ContinualData
from nscl.data.loading import iterate_batches
from nscl.experiment.checkpoints import (
    CHECKPOINT,
    PREVIOUS_CHECKPOINT,
    RESULT_FILES,
    CheckpointWarning,
    RunMismatchError,
    resume_point,
    save_checkpoint,
    write_results,
)
from nscl.experiment.result import RunResult
from nscl.files import atomic_write_text, read_json
from nscl.methods.base import PRECISIONS, ContinualMethod, TaskInfo
from nscl.models.artifacts import describe, weights_of

__all__ = [
    "RunConfig",
    "RunMismatchError",
    "DivergedError",
    "CheckpointWarning",
    "run_continual",
    "evaluate",
    "seed_everything",
    "repeated",
    "CHECKPOINT",
    "PREVIOUS_CHECKPOINT",
    "RESULT_FILES",
    "DEVICE_PATTERN",
]

CHECK_EVERY = 50  # steps between reads of the on-device loss flag (and at the end of every epoch)
DEVICE_PATTERN = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")


class DivergedError(FloatingPointError):
    """The loss or a parameter became NaN or infinite; nothing of the task in progress was written."""


@dataclass(frozen=True)
class RunConfig:
    epochs: int = 1
    batch_size: int = 64
    eval_batch_size: int = 256
    data_repeats: int = 1  # each epoch walks the task's data this many times (NSP²'s expand_times)
    seed: int = 0
    device: str = "cpu"
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast inside the method's forward)
    num_workers: int = 0  # for image-folder data sets
    joint: bool = False  # train task t on all data of tasks 0..t (upper bound)
    max_tasks: int | None = None  # stop after this many tasks (the matrix stays square)
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.device, torch.device):
            object.__setattr__(self, "device", str(self.device))
        for name in ("epochs", "batch_size", "eval_batch_size", "data_repeats", "seed", "num_workers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ValueError(f"RunConfig.{name}={value!r}: give an integer")
            object.__setattr__(self, name, int(value))  # numpy ints (np.arange seeds) become ints
        for name in ("epochs", "batch_size", "eval_batch_size", "data_repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"RunConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise ValueError(f"RunConfig.num_workers={self.num_workers}: give 0 (load in the main process) or more")
        if self.max_tasks is not None and (
            isinstance(self.max_tasks, bool) or not isinstance(self.max_tasks, numbers.Integral) or self.max_tasks < 1
        ):
            raise ValueError(
                f"RunConfig.max_tasks={self.max_tasks!r}: give an integer >= 1 (stop after that many "
                f"tasks) or None (all tasks)"
            )
        for name in ("joint", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"RunConfig.{name}={getattr(self, name)!r}: give True or False")
        if self.precision not in PRECISIONS:
            raise ValueError(f"RunConfig.precision={self.precision!r}; choose one of {PRECISIONS}")
        if not isinstance(self.device, str) or not DEVICE_PATTERN.match(self.device):
            raise ValueError(
                f"RunConfig.device={self.device!r} is not a device; accepted: 'cpu', 'cuda', 'cuda:N' "
                f"(N = GPU index) or 'mps'"
            )
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"RunConfig.device={self.device!r} but no CUDA device is visible; use device='cpu'")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _task_seed(seed: int, task: int, salt: int = 0) -> int:
    return (seed * 1_000_003 + task * 7_919 + salt) % 2**31


@torch.no_grad()
def evaluate(
    method: ContinualMethod, data: ImageSet, config: RunConfig, task_positions: range | None = None
) -> tuple[float, float]:
    """Top-1 accuracy of `method.logits` on `data` (labels are class positions).

    Returns (class-incremental accuracy: argmax over all seen classes, task-aware accuracy: argmax
    over `task_positions` only, NaN when not given). Counts stay on the device until the end.
    """
    correct = torch.zeros(2, dtype=torch.long, device=method.device)
    for images, labels in iterate_batches(
        data, config.eval_batch_size, device=method.device, num_workers=config.num_workers
    ):
        logits = method.logits(method.transform(images, train=False))
        correct[0] += (logits.argmax(dim=1) == labels).sum()
        if task_positions is not None:
            local = logits[:, task_positions.start : task_positions.stop].argmax(dim=1) + task_positions.start
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


def settings_of(method_config: Any) -> dict:
    """A method config as the fingerprint records it: every field, except those listed in the config class's
    `ADDED_LATER` while they hold their default (a field added after runs were made: at its default it computes
    what those runs computed, so they stay valid and resumable)."""
    settings = asdict(method_config)
    for name in getattr(type(method_config), "ADDED_LATER", ()):
        default = next(f.default for f in fields(method_config) if f.name == name)
        if settings.get(name) == default:
            settings.pop(name)
    return settings


def _fingerprint(method: ContinualMethod, data: ContinualData, config: RunConfig) -> dict:
    cfg = asdict(config)
    for volatile in ("progress", "num_workers", "max_tasks"):
        cfg.pop(volatile)
    method_cfg = getattr(method, "config", None)
    return json.loads(
        json.dumps(
            {
                "method": method.name,
                # which pretrained weights the run starts from: another backbone is another run
                "backbone_weights": describe(weights_of(method, *method.modules())),
                "method_config": settings_of(method_cfg) if method_cfg is not None else None,
                "run_config": cfg,
                "dataset": data.train.name,
                "n_train": len(data.train),
                "n_test": len(data.test),
                "scenario": data.scenario.to_dict(),
            },
            default=str,
        )
    )


def _method_tensors(method: ContinualMethod) -> list[tuple[str, torch.Tensor]]:
    """The method's parameters: those of its modules and of nn.Module / nn.Parameter attributes."""
    modules = list(method.modules()) + [v for v in vars(method).values() if isinstance(v, torch.nn.Module)]
    seen, named = set(), []
    for module in modules:
        for name, p in module.named_parameters():
            if id(p) not in seen and p.is_floating_point():
                seen.add(id(p))
                named.append((f"{type(module).__name__}.{name}", p))
    for key, value in vars(method).items():
        if isinstance(value, torch.nn.Parameter) and id(value) not in seen:
            seen.add(id(value))
            named.append((key, value))
    return named


def _nonfinite_parameters(method: ContinualMethod) -> list[str]:
    named = _method_tensors(method)
    if not named:
        return []
    with torch.no_grad():
        flags = torch.stack([torch.isfinite(p).all() for _, p in named]).cpu()  # one host sync
    return [name for (name, _), ok in zip(named, flags.tolist()) if not ok]


def _lr_hint(method: ContinualMethod) -> str:
    lr = getattr(getattr(method, "config", None), "lr", None)
    if isinstance(lr, (int, float)) and not math.isfinite(lr):
        return f"set a finite learning rate (now lr={lr})"
    if isinstance(lr, (int, float)):
        return f"lower the learning rate (now lr={lr:g}; try {lr / 10:g} or less)"
    return "lower the learning rate"


def run_continual(
    method: ContinualMethod,
    data: ContinualData,
    config: RunConfig = RunConfig(),
    run_dir: str | Path | None = None,
    resume: bool = True,
    after_task: Callable[[int, ContinualMethod], None] | None = None,
) -> RunResult:
    """Train `method` through the tasks of `data`; checkpoint to `run_dir` after every task.

    after_task(t, method): called after task t's end_task, before its evaluation, for every task this
    call trains (not for tasks read back from a checkpoint); e.g. `nscl.analysis.invariance.OutputRecorder`.

    Reopening a run_dir with a smaller `max_tasks` than it holds reads back the first tasks' results
    (the method is loaded with the checkpoint's state, after all of its tasks: see extras["tasks_in_state"]).
    Raises DivergedError on a non-finite loss or parameter, RunMismatchError when run_dir holds results of
    other settings (or any results with resume=False).
    """
    n_tasks = data.n_tasks if config.max_tasks is None else min(config.max_tasks, data.n_tasks)
    method.setup(config.device, config.precision)
    accuracy = np.full((n_tasks, n_tasks), np.nan)
    accuracy_til = np.full((n_tasks, n_tasks), np.nan)
    task_sizes = np.array([len(data.task(j, "test")) for j in range(n_tasks)], dtype=np.int64)
    log: list[dict] = []
    start = 0
    tasks_in_state = 0
    fingerprint = _fingerprint(method, data, config)
    run_path = Path(run_dir) if run_dir is not None else None
    where = "" if run_path is None else f" (run_dir {run_path})"
    if run_path is not None:
        run_path.mkdir(parents=True, exist_ok=True)
        ckpt = resume_point(run_path, fingerprint, resume)
        if ckpt is not None:
            method.load_state_dict(ckpt["method"])
            tasks_in_state = int(ckpt["tasks_done"])
            start = min(tasks_in_state, n_tasks)  # a smaller max_tasks reads back the first tasks only
            accuracy[:start, :start] = np.asarray(ckpt["accuracy"])[:start, :start]
            accuracy_til[:start, :start] = np.asarray(ckpt["accuracy_task_aware"])[:start, :start]
            log = list(ckpt["log"])[:start]
        # written when missing, or when a run that never finished a task is started with new settings
        if read_json(run_path / "config.json") != fingerprint:
            atomic_write_text(run_path / "config.json", json.dumps(fingerprint, indent=2))

    for t in range(start, n_tasks):
        seed_everything(_task_seed(config.seed, t))
        train_set = data.tasks_up_to(t, "train") if config.joint else data.task(t, "train")
        epoch_set = repeated(train_set, config.data_repeats)
        steps_per_epoch = math.ceil(len(epoch_set) / config.batch_size)
        info = TaskInfo(
            index=t,
            positions=data.scenario.task_positions(t),
            n_seen=data.scenario.n_seen(t),
            class_names=data.class_names,
            n_train=len(train_set),
            steps_per_epoch=steps_per_epoch,
            epochs=config.epochs,
        )
        t0 = time.perf_counter()
        method.begin_task(info)
        loss_sum = torch.zeros((), device=method.device)
        # the divergence guard, on the device: index of the first non-finite loss of the task (-1: none yet)
        step_index = torch.zeros((), dtype=torch.long, device=method.device)
        first_bad = torch.full((), -1, dtype=torch.long, device=method.device)
        bad_value = torch.zeros((), device=method.device)

        def check(epoch: int, end_of_epoch: bool) -> None:
            bad = int(first_bad.item())  # the only host sync of the guard
            if bad >= 0:
                raise DivergedError(
                    f"{method.name}: the training loss is {bad_value.item()} at task {t + 1}/{n_tasks}, epoch "
                    f"{bad // steps_per_epoch + 1}/{config.epochs}, step {bad % steps_per_epoch + 1}/{steps_per_epoch}"
                    f"{where}: the training diverged; {_lr_hint(method)}. Nothing of task {t + 1} was saved."
                )
            if end_of_epoch:
                broken = _nonfinite_parameters(method)
                if broken:
                    raise DivergedError(
                        f"{method.name}: parameters {broken[:5]} are not finite after task {t + 1}/{n_tasks}, "
                        f"epoch {epoch + 1}/{config.epochs}{where}: the training diverged; {_lr_hint(method)}. "
                        f"Nothing of task {t + 1} was saved."
                    )

        steps_done = 0
        aug = torch.Generator().manual_seed(_task_seed(config.seed, t, salt=1))
        bar = tqdm(
            total=info.total_steps if method.trains else 0,
            desc=f"{method.name} task {t + 1}/{n_tasks}",
            disable=not config.progress,
            leave=False,
        )
        for epoch in range(config.epochs if method.trains else 0):
            for images, labels in iterate_batches(
                epoch_set,
                config.batch_size,
                shuffle=True,
                seed=_task_seed(config.seed, t, salt=100 + epoch),
                device=method.device,
                num_workers=config.num_workers,
            ):
                loss = method.training_step(method.transform(images, train=True, generator=aug), labels)
                loss = torch.as_tensor(loss, device=method.device).detach().float()
                loss_sum += loss  # stays on the device: no host sync per step
                new_bad = (first_bad < 0) & ~torch.isfinite(loss)
                first_bad = torch.where(new_bad, step_index, first_bad)
                bad_value = torch.where(new_bad, loss, bad_value)
                step_index += 1
                steps_done += 1
                bar.update(1)
                if steps_done % CHECK_EVERY == 0:
                    check(epoch, end_of_epoch=False)
            check(epoch, end_of_epoch=True)
            if config.progress:
                bar.set_postfix(loss=f"{loss_sum.item() / max(steps_done, 1):.4f}")
        bar.close()
        train_time = time.perf_counter() - t0

        def replay(train_transform: bool = False, batch_size: int | None = None, shuffle: bool = False):
            gen = torch.Generator().manual_seed(_task_seed(config.seed, t, salt=2))
            for images, labels in iterate_batches(
                train_set,
                batch_size or config.eval_batch_size,
                shuffle=shuffle,
                seed=_task_seed(config.seed, t, salt=3),
                device=method.device,
                num_workers=config.num_workers,
            ):
                yield method.transform(images, train=train_transform, generator=gen), labels

        method.end_task(info, replay)
        broken = _nonfinite_parameters(method)
        if broken:
            raise DivergedError(
                f"{method.name}: parameters {broken[:5]} are not finite after task {t + 1}/{n_tasks}'s "
                f"end_task{where}; {_lr_hint(method)}. Nothing of task {t + 1} was saved."
            )
        if after_task is not None:
            after_task(t, method)
        for j in range(t + 1):
            accuracy[t, j], accuracy_til[t, j] = evaluate(
                method, data.task(j, "test"), config, data.scenario.task_positions(j)
            )
        step_acc = float(np.dot(accuracy[t, : t + 1], task_sizes[: t + 1]) / task_sizes[: t + 1].sum())
        log.append(
            dict(
                task=t,
                n_train=len(train_set),
                steps=info.total_steps,
                train_seconds=train_time,
                total_seconds=time.perf_counter() - t0,
                mean_loss=loss_sum.item() / max(info.total_steps, 1),
                step_accuracy=step_acc,
            )
        )
        tasks_in_state = t + 1
        if run_path is not None:
            save_checkpoint(
                run_path,
                dict(
                    fingerprint=fingerprint,
                    tasks_done=t + 1,
                    accuracy=accuracy,
                    accuracy_task_aware=accuracy_til,
                    log=log,
                    method=method.state_dict(),
                ),
            )
            write_results(run_path, RunResult(accuracy, task_sizes, pd.DataFrame(log), accuracy_til), fingerprint)
        if config.progress:
            tqdm.write(
                f"{method.name}: task {t + 1}/{n_tasks} accuracy on seen classes {step_acc:.4f} ({train_time:.1f}s)"
            )
    report = method.report()
    if run_path is not None and report and (start < n_tasks or not (run_path / "report.pt").exists()):
        torch.save(report, run_path / "report.pt")
    return RunResult(
        accuracy,
        task_sizes,
        pd.DataFrame(log),
        accuracy_til,
        run_path,
        extras={
            "report": report,
            "tasks_in_state": tasks_in_state,
            "backbone_weights": fingerprint["backbone_weights"],
        },
    )
