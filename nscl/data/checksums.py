"""Checksums of the generated shapes100 sets that the book's shipped results were computed from.

shapes100 is rendered on the reader's machine, so its bytes are a function of the machine as well as
of the arguments: numpy and OpenBLAS pick SIMD kernels per CPU. The renderer works in float64 so
that this cannot move a uint8 pixel in practice (nscl.data.shapes), and this module makes sure of
it: the per-class SHA-256 of every standard set (those the book, the benchmarks and the tiny
backbones' pretraining use) ships in shapes100_checksums.json, and a set whose checksum is known is
compared with it after it is rendered or read from the cache. A difference is an error that names
the set and the class, never a silently different data set.

`python -m nscl artifacts build` writes the file (`record_checksums`); sets of other sizes or seeds
have no entry and are not checked.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nscl.files import atomic_write_text

__all__ = [
    "CHECKSUMS_FILE",
    "GENERATOR_VERSION",
    "STANDARD_SETS",
    "ShapesChecksumError",
    "set_key",
    "class_checksums",
    "known_checksums",
    "verify_classes",
    "record_checksums",
]

CHECKSUMS_FILE = Path(__file__).with_name("shapes100_checksums.json")
# Bump when the renderer changes its pixels (2: float64 rendering); cache file names carry it.
GENERATOR_VERSION = 2


# (split, n_per_class, image_size, seed, background) of every set the shipped results use.
STANDARD_SETS: tuple[tuple[str, int, int, int, str], ...] = (
    ("train", 1000, 32, 0, "grey"),  # the tiny backbones' pretraining (base classes)
    ("train", 100, 32, 1, "grey"),
    ("test", 50, 32, 1, "grey"),  # the tiny benchmarks (nscl.presets)
    ("train", 100, 32, 1, "tinted"),
    ("test", 50, 32, 1, "tinted"),
    ("test", 50, 32, 0, "grey"),  # held-out base images (tiny_pretraining)
    ("test", 4, 32, 0, "grey"),
    ("test", 4, 32, 0, "tinted"),  # chapter 0's grids
    ("train", 200, 16, 0, "grey"),
    ("test", 50, 16, 0, "grey"),  # chapter 1 with dataset="shapes100"
    ("test", 40, 32, 0, "grey"),
    ("test", 1, 32, 0, "grey"),  # chapter 2, exercise set 2
)


class ShapesChecksumError(RuntimeError):
    """The shapes100 images made or read here differ from those the shipped results were computed from."""


def set_key(split: str, n_per_class: int, image_size: int, seed: int, background: str) -> str:
    """The name of one standard set, e.g. 'test_n50_s32_seed0_grey'."""
    return f"{split}_n{n_per_class}_s{image_size}_seed{seed}_{background}"


def class_checksums(images: np.ndarray, labels: Sequence[int], n_per_class: int) -> dict[str, str]:
    """SHA-256 (first 16 hex digits) of each class's block of images (sets are ordered by class)."""
    blocks = np.ascontiguousarray(images).reshape(len(labels), n_per_class, -1)
    return {str(c): hashlib.sha256(block.tobytes()).hexdigest()[:16] for c, block in zip(labels, blocks)}


def known_checksums(key: str) -> dict[str, str] | None:
    """The shipped per-class checksums of set `key`, or None when it is not a standard set."""
    if not CHECKSUMS_FILE.exists():
        return None
    table = json.loads(CHECKSUMS_FILE.read_text())
    if table.get("generator") != GENERATOR_VERSION:
        return None
    return table["sets"].get(key)


def verify_classes(key: str, images: np.ndarray, labels: Sequence[int], n_per_class: int, where: str) -> None:
    """Raise ShapesChecksumError if a class of `images` differs from the shipped checksum of set `key`."""
    expected = known_checksums(key)
    if expected is None:
        return
    found = class_checksums(images, labels, n_per_class)
    wrong = [c for c, digest in found.items() if c in expected and expected[c] != digest]
    if wrong:
        c = wrong[0]
        raise ShapesChecksumError(
            f"shapes100 set {key} {where}: {len(wrong)} of {len(found)} classes differ from the images the shipped "
            f"results were computed from (class {c}: sha256 {found[c]}, expected {expected[c]} in {CHECKSUMS_FILE.name}). "
            f"A damaged cache file: delete it and run again. Freshly rendered: this machine's numpy renders other "
            f"pixels; please report it with the output of `python -c 'import numpy; numpy.show_runtime()'`."
        )


def record_checksums(sets: dict[str, dict[str, str]]) -> Path:
    """Write the checksums of the standard sets (key -> class -> digest) to CHECKSUMS_FILE."""
    payload = {"generator": GENERATOR_VERSION, "sets": {k: sets[k] for k in sorted(sets)}}
    atomic_write_text(CHECKSUMS_FILE, json.dumps(payload, indent=1, sort_keys=True) + "\n")
    return CHECKSUMS_FILE
