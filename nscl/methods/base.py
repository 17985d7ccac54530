"""The small interface every continual method implements, and what the run loop tells it.

The loop (nscl.experiment.run) owns data, epochs, evaluation and checkpoints; a method owns its model,
optimizer and whatever it keeps between tasks (null spaces, bases, old prompts):

    setup(device, precision)             once, before the first task
    begin_task(task)                     build heads / optimizer / schedule for this task
    training_step(images, labels)        one optimisation step, returns the loss (on device)
    end_task(task, batches)              after training: collect features, update projectors
    logits(images)                       scores over the classes seen so far
    state_dict() / load_state_dict()     everything needed to resume after a finished task
    report()                             what the method learnt per task, for analysis (optional)
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from nscl.data.loading import BatchTransform

__all__ = ["TaskInfo", "ContinualMethod", "Batches", "PRECISIONS"]

PRECISIONS = ("fp32", "bf16", "fp16")
Batches = Callable[..., Iterator[tuple[torch.Tensor, torch.Tensor]]]


@dataclass(frozen=True)
class TaskInfo:
    index: int
    positions: range  # global labels (class positions) of this task
    n_seen: int  # classes seen once this task is learnt
    class_names: tuple[str, ...]  # every class name in position order
    n_train: int
    steps_per_epoch: int
    epochs: int

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    @property
    def first_position(self) -> int:
        return self.positions.start


class ContinualMethod(ABC):
    """Base class: subclasses set `name` and `transform` and implement the abstract methods."""

    name: str = "method"
    transform: BatchTransform
    trains: bool = True  # False: the run loop skips training (e.g. zero-shot CLIP)

    def __init__(self) -> None:
        self.device = torch.device("cpu")
        self.precision = "fp32"

    def setup(self, device: torch.device | str = "cpu", precision: str = "fp32") -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r}; choose one of {PRECISIONS}")
        self.device = torch.device(device)
        self.precision = precision
        for module in self.modules():
            module.to(self.device)

    def modules(self) -> list[torch.nn.Module]:
        """The nn.Modules this method owns (moved to the device by `setup`)."""
        return []

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision for forward passes, as set by `setup` (no-op in fp32)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    @abstractmethod
    def begin_task(self, task: TaskInfo) -> None: ...

    @abstractmethod
    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor: ...

    def end_task(self, task: TaskInfo, batches: Batches) -> None:  # noqa: B027 (an optional hook)
        """Called after training a task; `batches(train_transform=False)` replays its training data."""

    @abstractmethod
    def logits(self, images: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def state_dict(self) -> dict: ...

    @abstractmethod
    def load_state_dict(self, state: dict) -> None: ...

    def report(self) -> dict:
        """Per-task records for analysis (null-space sizes, coefficients, parameter snapshots...).

        Must be rebuilt by `load_state_dict`, so a resumed run reports the same. The run loop keeps it
        in `RunResult.extras["report"]` and saves it to `report.pt` in the run directory."""
        return {}
