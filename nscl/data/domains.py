r"""Task domains: a fixed texture per task, so that tasks need different directions of the backbone.

On plain shapes100 every task is "shapes of some colours on a grey textured background": the tasks' features
share their dominant directions (chapter 6 measures a top-8 subspace overlap of about 0.9), so a null space of
the old tasks leaves a new task little room. The *domains* family gives each task its own look, which the
backbone sees in every patch: task $k$'s images, train and test, carry a stripe pattern $s_k$ of its own
orientation and period and a colour cast $c_k$ of its own (a $\pm$ offset per channel) added to every pixel,

$$x'_{ch} = \mathrm{clip}\big(x_{ch} + a\, s_k + b\, c_{k,ch},\ 0,\ 255\big), \qquad
s_k(i, j) = \pm 1 \text{ by } \lfloor (u_k i + v_k j) / p_k \rfloor \bmod 2, \quad c_{k} \in \{-1, 1\}^3 .$$

The arithmetic is on integers, so the images are the same bytes on every machine. Shapes stay recognisable
(the amplitude $a$ is a fraction of the shape/background contrast); a class keeps its task's pattern, so the
pattern says which task an image is from, as a domain does in the papers' DomainNet and ImageNet-R.
"""

from __future__ import annotations

import torch

from nscl.data.base import TensorImageSet
from nscl.data.scenario import Scenario

__all__ = [
    "STRIPES",
    "CASTS",
    "DOMAIN_AMPLITUDE",
    "CAST_AMPLITUDE",
    "stripe_pattern",
    "task_stripes",
    "task_cast",
    "with_task_domains",
]

# (u, v, period): 4 orientations (vertical, horizontal, two diagonals) x 4 periods = 16 distinct textures.
# Task k takes STRIPES[k % 16]: protocols of more than 16 tasks reuse them (25s: tasks k and k + 16 share one).
STRIPES: tuple[tuple[int, int, int], ...] = tuple(
    (u, v, period) for period in (2, 3, 4, 6) for (u, v) in ((1, 0), (0, 1), (1, 1), (1, -1))
)
# (r, g, b) signs: the 8 corners of the colour cube; task k takes CASTS[k % 8] (with its stripes: 16 x 8 looks).
# The cast moves every token's mean, which a zero-mean texture alone hardly does (the tasks' top directions,
# dominated by what all tokens share, then stay alike: measured in chapter 6's overlap).
CASTS: tuple[tuple[int, int, int], ...] = tuple((r, g, b) for r in (-1, 1) for g in (-1, 1) for b in (-1, 1))
DOMAIN_AMPLITUDE = 40  # stripes, of 255: about a third of the contrast between a shape and its background
CAST_AMPLITUDE = 48  # colour cast, of 255


def stripe_pattern(u: int, v: int, period: int, size: int) -> torch.Tensor:
    """(size, size) int16 of +-1: stripes along (u, v) whose bands are `period` pixels wide."""
    i = torch.arange(size).view(-1, 1)
    j = torch.arange(size).view(1, -1)
    band = torch.div(u * i + v * j + 4 * size, period, rounding_mode="floor") % 2  # + 4 size: no negatives
    return (2 * band - 1).to(torch.int16)


def task_stripes(task: int, size: int) -> torch.Tensor:
    """Task `task`'s pattern (STRIPES, cycled)."""
    if task < 0:
        raise ValueError(f"task={task}: a task index is >= 0")
    return stripe_pattern(*STRIPES[task % len(STRIPES)], size)


def task_cast(task: int) -> torch.Tensor:
    """Task `task`'s colour cast: (3,) int16 of +-1 (CASTS, cycled)."""
    if task < 0:
        raise ValueError(f"task={task}: a task index is >= 0")
    return torch.tensor(CASTS[task % len(CASTS)], dtype=torch.int16)


def with_task_domains(
    data: TensorImageSet, scenario: Scenario, amplitude: int = DOMAIN_AMPLITUDE, cast: int = CAST_AMPLITUDE
) -> TensorImageSet:
    """`data` with each image in its class's task look (classes in no task of `scenario` stay as they are)."""
    for name, value in (("amplitude", amplitude), ("cast", cast)):
        if not 0 <= value <= 127:
            raise ValueError(f"{name}={value}: expected an integer in 0..127 (of 255)")
    height, width = data.image_size
    if height != width:
        raise ValueError(f"{data.name}: task domains need square images, got {height}x{width}")
    task_of_class = torch.full((len(data.classes),), -1, dtype=torch.long)
    for k in range(scenario.n_tasks):
        task_of_class[list(scenario.task_classes(k))] = k
    tasks = task_of_class[data.targets]  # -1: in no task, picks the last (zero) pattern below
    looks = torch.stack(
        [amplitude * task_stripes(k, height) + cast * task_cast(k)[:, None, None] for k in range(scenario.n_tasks)]
    )  # (T, 3, H, W)
    looks = torch.cat([looks, torch.zeros_like(looks[:1])])
    shifted = data.images.to(torch.int16) + looks[tasks]
    return TensorImageSet(
        name=f"{data.name}-domains",
        images=shifted.clamp_(0, 255).to(torch.uint8),
        targets=data.targets,
        classes=data.classes,
    )
