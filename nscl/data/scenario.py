"""Class-incremental scenarios: a class order cut into tasks.

A `Scenario` is a class order (original dataset labels) with an initial increment and an increment,
as in continuum / Continual-CLIP ("B10 Inc10", "B100 Inc10", ...). Inside the scenario every class
is known by its *position* in the order, so task t's classes are the contiguous global labels
`scenario.task_positions(t)`; models and metrics only ever see positions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from nscl.paths import repo_data_dir

__all__ = ["Scenario", "load_class_order", "available_class_orders"]


def available_class_orders() -> list[str]:
    return sorted(p.stem for p in (repo_data_dir() / "class_orders").glob("*.json"))


def load_class_order(name: str) -> list[int]:
    """A class order stored in data/class_orders/<name>.json (see each file's `source`)."""
    path = repo_data_dir() / "class_orders" / f"{name}.json"
    if not path.exists():
        raise ValueError(f"class order {name!r} not found in {path.parent}; available: {available_class_orders()}")
    return [int(c) for c in json.loads(path.read_text())["order"]]


@dataclass(frozen=True)
class Scenario:
    class_order: tuple[int, ...]
    initial_increment: int
    increment: int

    def __post_init__(self) -> None:
        order = tuple(int(c) for c in self.class_order)
        object.__setattr__(self, "class_order", order)
        if len(set(order)) != len(order):
            raise ValueError("class_order repeats a class; each class must appear once")
        if min(order, default=0) < 0:
            raise ValueError("class_order holds a negative label")
        if not 0 < self.initial_increment <= len(order):
            raise ValueError(
                f"initial_increment={self.initial_increment} must be in 1..{len(order)} "
                f"(the number of classes in the order)"
            )
        if self.increment <= 0:
            raise ValueError(f"increment must be positive, got {self.increment}")
        rest = len(order) - self.initial_increment
        if rest % self.increment:
            raise ValueError(
                f"{len(order)} classes do not split into a first task of {self.initial_increment} "
                f"and tasks of {self.increment} (remainder {rest % self.increment}); "
                f"choose increments that divide the class count"
            )

    @classmethod
    def equal_split(cls, class_order: Sequence[int], n_tasks: int) -> Scenario:
        """`n_tasks` tasks of equal size (NSP²'s protocol)."""
        n = len(class_order)
        if n_tasks <= 0 or n % n_tasks:
            raise ValueError(f"{n} classes cannot be split into {n_tasks} equal tasks; n_tasks must divide {n}")
        return cls(tuple(class_order), n // n_tasks, n // n_tasks)

    @classmethod
    def seeded(cls, n_classes: int, n_tasks: int, seed: int) -> Scenario:
        """Equal split of classes 0..n-1 shuffled by numpy's PCG64(seed), NSP²'s class-order rule."""
        order = np.arange(n_classes, dtype=np.int64)
        np.random.Generator(np.random.PCG64(seed)).shuffle(order)
        return cls.equal_split(order.tolist(), n_tasks)

    @property
    def n_classes(self) -> int:
        return len(self.class_order)

    @property
    def n_tasks(self) -> int:
        return 1 + (self.n_classes - self.initial_increment) // self.increment

    def _bounds(self, task: int) -> tuple[int, int]:
        if not 0 <= task < self.n_tasks:
            raise IndexError(
                f"task {task} out of range: this scenario has {self.n_tasks} tasks (0..{self.n_tasks - 1})"
            )
        if task == 0:
            return 0, self.initial_increment
        start = self.initial_increment + (task - 1) * self.increment
        return start, start + self.increment

    def task_positions(self, task: int) -> range:
        """Global labels (positions in the order) of one task's classes."""
        return range(*self._bounds(task))

    def task_classes(self, task: int) -> tuple[int, ...]:
        """Original dataset labels of one task's classes."""
        lo, hi = self._bounds(task)
        return self.class_order[lo:hi]

    def n_seen(self, task: int) -> int:
        """Number of classes seen after training `task`."""
        return self._bounds(task)[1]

    def position_lookup(self, n_labels: int | None = None) -> torch.Tensor:
        """Tensor mapping original label -> position (-1 for labels not in the order)."""
        size = max(self.class_order) + 1 if n_labels is None else n_labels
        lookup = torch.full((size,), -1, dtype=torch.long)
        lookup[torch.tensor(self.class_order)] = torch.arange(self.n_classes)
        return lookup

    def task_of_position(self, position: int) -> int:
        if position < self.initial_increment:
            return 0
        return 1 + (position - self.initial_increment) // self.increment

    def task_indices(self, targets: torch.Tensor | np.ndarray, task: int) -> np.ndarray:
        """Indices of the samples whose (original) label belongs to `task`."""
        t = np.asarray(targets)
        return np.nonzero(np.isin(t, np.asarray(self.task_classes(task))))[0]

    def to_dict(self) -> dict:
        return {
            "class_order": list(self.class_order),
            "initial_increment": self.initial_increment,
            "increment": self.increment,
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict()))
