"""The papers' protocols, the tiny protocols that mirror their shapes, and the map between them.

A protocol's *shape* is its number of tasks and how the classes are shared out among them. The
papers vary the shape to ask two questions, and a CPU grid on the 50 novel shapes100 classes (the
tiny preset's pool, unseen in the tiny backbones' pretraining) asks both:

* few long tasks or many short ones (NSP²: CIFAR-100 in 10, 20 or 50 tasks, ImageNet-R and DomainNet in
  10, 50 or 100; DMNSP: 10, 20 or 50, ImageNet-R in 20);
* a large first task followed by small increments (DMNSP: TinyImageNet, 100 classes then 5/10/20).

Tiny protocols (always the 50 novel classes, in `nscl.data.protocols.NOVEL_CLASSES` order):

| shape | tasks | classes per task | grey id        | tinted id (the tiny DMNSP recipe's) |
| ----- | ----- | ---------------- | -------------- | ----------------------------------- |
| 5s    | 5     | 10               | shapes100-5s   | shapes100-tinted-5s                 |
| 10s   | 10    | 5                | shapes100-10s  | shapes100-tinted-10s                |
| 25s   | 25    | 2                | shapes100-25s  | shapes100-tinted-25s                |
| 25-5  | 6     | 25, then 5       | shapes100-25-5 | shapes100-tinted-25-5               |

Equal splits are named by their number of tasks, as NSP²'s protocols are ("10s"); the large-base
split by base and increment, as DMNSP's are ("100-5"). Each method runs on its tiny recipe's
background: NSP² on the grey images, DMNSP on the tinted ones (see nscl.dmnsp.recipe: on grey
shapes the tiny CLIP is already 96% right zero-shot within a task, so adapters have nothing to do).

The map keeps the number of tasks, the quantity a null-space method spends: every task adds the
directions its features use, and Seq forgets once per task boundary. Where the pool of 50 cannot
give the same count, the nearest count with at least 2 classes per task is taken (a 1-class task
makes a task-local loss, NSP²'s task head and DMNSP's local cross-entropy alike, constant).

| paper protocol      | split         | tiny | why |
| ------------------- | ------------- | ---- | --- |
| cifar100-10s        | 10 x 10       | 10s  | same 10 tasks, each 10% of the classes |
| cifar100-10-10      | 10 x 10       | 10s  | same 10 tasks, each 10% of the classes |
| imagenet-r-10s      | 10 x 20       | 10s  | same 10 tasks, each 10% of the classes |
| domainnet-10s       | 10 x 20       | 10s  | same 10 tasks, each 10% of the classes |
| cifar100-20s        | 20 x 5        | 25s  | no 20-task split of 50; 25 is the nearest (10 erases 10-vs-20) |
| cifar100-5-5        | 20 x 5        | 25s  | as cifar100-20s |
| cifar100-2-2        | 50 x 2        | 25s  | same 2 classes per task; 50 tasks would be of 1 class |
| tinyimagenet-100-20 | 100 + 5 x 20  | 25-5 | exact: half the pool, then 5 increments of 10% (6 tasks) |
| tinyimagenet-100-10 | 100 + 10 x 10 | 25-5 | the only large-base split (25 left: 5 of 5 or 25 of 1) |
| tinyimagenet-100-5  | 100 + 20 x 5  | 25-5 | as tinyimagenet-100-10 |
| cifar100-50s        | 50 x 2        | 25s  | as cifar100-2-2 |
| imagenet-r-50s      | 50 x 4        | 25s  | the most tasks the pool gives without 1-class tasks |
| domainnet-50s       | 50 x 4        | 25s  | as imagenet-r-50s |
| imagenet-r-100s     | 100 x 2       | 25s  | as imagenet-r-50s |
| domainnet-100s      | 100 x 2       | 25s  | as imagenet-r-50s |
| imagenet-r-10-10    | 20 x 10       | 25s  | as cifar100-20s |

What the tiny grid cannot mirror: cifar100-20s/5-5 and cifar100-2-2 share one look-alike (the
20-vs-50-task contrast has no twin), and so do the three TinyImageNet protocols (their 6/11/21-task
ladder has none) and NSP²'s long sequences (Lu et al. 2024, Table 4: 50 and 100 tasks, both 25s). `5s` has no paper twin: it is the few-long-tasks end of the 5/10/25 ladder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nscl.data.shapes import NUM_CLASSES

__all__ = [
    "TINY_IMAGE_SIZE",
    "BASE_CLASSES",
    "NOVEL_CLASSES",
    "NSP2_PROTOCOLS",
    "NSP2_LONG_PROTOCOLS",
    "DMNSP_PROTOCOLS",
    "PAPER_PROTOCOLS",
    "TinyShape",
    "TINY_SHAPES",
    "TINY_POOL",
    "TINY_BACKGROUND",
    "TINY_FAMILIES",
    "LookAlike",
    "LOOKALIKES",
    "tiny_benchmark_id",
    "tiny_protocols",
    "lookalike",
]

NSP2_PROTOCOLS = ("cifar100-10s", "cifar100-20s", "imagenet-r-10s", "domainnet-10s")  # NSP² Table 1
# NSP²'s long sequences (Table 4): 50 and 100 tasks
NSP2_LONG_PROTOCOLS = ("cifar100-50s", "imagenet-r-50s", "domainnet-50s", "imagenet-r-100s", "domainnet-100s")
DMNSP_PROTOCOLS = (
    "cifar100-10-10",
    "cifar100-5-5",
    "cifar100-2-2",
    "tinyimagenet-100-5",
    "tinyimagenet-100-10",
    "tinyimagenet-100-20",
    "imagenet-r-10-10",  # its lineage's ImageNet-R (RL-VIG/LibContinual config/dmnsp_imgnr.yaml)
)
PAPER_PROTOCOLS = NSP2_PROTOCOLS + NSP2_LONG_PROTOCOLS + DMNSP_PROTOCOLS
TINY_POOL = 50  # the novel shapes100 classes
# the tiny recipe's background per method (why: the module docstring)
TINY_BACKGROUND = {"nsp2": "grey", "dmnsp": "tinted"}
# the tiny benchmark families, a ladder of how much the tasks' features overlap: grey (tasks share their
# directions), tinted (a palette shift from pretraining), domains (grey with a stripe texture per task,
# nscl.data.domains: each task needs its own directions)
TINY_FAMILIES = ("grey", "tinted", "domains")


@dataclass(frozen=True)
class TinyShape:
    """A split of the tiny pool: a first task of `initial_increment` classes, then tasks of `increment`."""

    name: str
    initial_increment: int
    increment: int

    def __post_init__(self) -> None:
        rest = TINY_POOL - self.initial_increment
        if not (0 < self.initial_increment <= TINY_POOL and self.increment > 0 and rest % self.increment == 0):
            raise ValueError(
                f"tiny shape {self.name!r}: {TINY_POOL} classes do not split into "
                f"{self.initial_increment} then tasks of {self.increment}"
            )

    @property
    def n_tasks(self) -> int:
        return 1 + (TINY_POOL - self.initial_increment) // self.increment


TINY_SHAPES: dict[str, TinyShape] = {
    s.name: s
    for s in [
        TinyShape("5s", 10, 10),
        TinyShape("10s", 5, 5),
        TinyShape("25s", 2, 2),
        TinyShape("25-5", 25, 5),
    ]
}


@dataclass(frozen=True)
class LookAlike:
    """The tiny shape that asks the question a paper protocol asks, and why."""

    paper: str
    shape: str
    reason: str


_SAME_COUNT = "same 10 tasks, each 10% of the classes"
_LARGE_BASE = "the only large-base split (25 left: 5 of 5 or 25 of 1)"
_MOST_TASKS = "the most tasks the pool gives without 1-class tasks"
LOOKALIKES: dict[str, LookAlike] = {
    a.paper: a
    for a in [
        LookAlike("cifar100-10s", "10s", _SAME_COUNT),
        LookAlike("cifar100-10-10", "10s", _SAME_COUNT),
        LookAlike("imagenet-r-10s", "10s", _SAME_COUNT),
        LookAlike("domainnet-10s", "10s", _SAME_COUNT),
        LookAlike("cifar100-20s", "25s", "no 20-task split of 50; 25 is the nearest (10 erases 10-vs-20)"),
        LookAlike("cifar100-5-5", "25s", "as cifar100-20s"),
        LookAlike("cifar100-2-2", "25s", "same 2 classes per task; 50 tasks would be of 1 class"),
        LookAlike("tinyimagenet-100-20", "25-5", "exact: half the pool, then 5 increments of 10% (6 tasks)"),
        LookAlike("tinyimagenet-100-10", "25-5", _LARGE_BASE),
        LookAlike("tinyimagenet-100-5", "25-5", "as tinyimagenet-100-10"),
        LookAlike("cifar100-50s", "25s", "as cifar100-2-2"),
        LookAlike("imagenet-r-50s", "25s", _MOST_TASKS),
        LookAlike("domainnet-50s", "25s", "as imagenet-r-50s"),
        LookAlike("imagenet-r-100s", "25s", "as imagenet-r-50s"),
        LookAlike("domainnet-100s", "25s", "as imagenet-r-50s"),
        LookAlike("imagenet-r-10-10", "25s", "as cifar100-20s"),
    ]
}


def tiny_benchmark_id(shape: str, background: str = "grey") -> str:
    """The benchmark id of a tiny shape in a family of TINY_FAMILIES ('10s', 'tinted' -> 'shapes100-tinted-10s')."""
    if shape not in TINY_SHAPES:
        raise ValueError(f"unknown tiny shape {shape!r}; choose one of {list(TINY_SHAPES)}")
    if background not in TINY_FAMILIES:
        raise ValueError(f"background={background!r}: choose one of {list(TINY_FAMILIES)}")
    return f"shapes100-{shape}" if background == "grey" else f"shapes100-{background}-{shape}"


def _background(method: str) -> str:
    if method not in TINY_BACKGROUND:
        raise ValueError(f"method={method!r}: choose one of {list(TINY_BACKGROUND)}")
    return TINY_BACKGROUND[method]


def tiny_protocols(method: str) -> tuple[str, ...]:
    """Every tiny protocol on the background of `method`'s tiny recipe."""
    return tuple(tiny_benchmark_id(shape, _background(method)) for shape in TINY_SHAPES)


def lookalike(paper_protocol: str, method: str) -> str:
    """The tiny benchmark that mirrors `paper_protocol` for `method` ('nsp2' or 'dmnsp')."""
    if paper_protocol not in LOOKALIKES:
        raise ValueError(f"{paper_protocol!r} is not a paper protocol; choose one of {list(LOOKALIKES)}")
    return tiny_benchmark_id(LOOKALIKES[paper_protocol].shape, _background(method))


TINY_IMAGE_SIZE = 32


# Checkerboard over (colour, shape): label = colour * 10 + shape is base when colour + shape is even.
BASE_CLASSES: tuple[int, ...] = tuple(c for c in range(NUM_CLASSES) if (c // 10 + c % 10) % 2 == 0)


# Novel classes in a fixed shuffled order; the continual experiments cut it into 10 tasks of 5.
NOVEL_CLASSES: tuple[int, ...] = tuple(
    int(c) for c in np.random.default_rng(0).permutation([c for c in range(NUM_CLASSES) if c not in BASE_CLASSES])
)
