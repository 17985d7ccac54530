"""shapes100: a procedural, offline image set of 100 classes = 10 colours x 10 shapes.

Each image shows one shape of the class colour, randomly placed, scaled, rotated and mirrored, on a
low-saturation textured background (smooth noise + gradient + optional stripes + pixel noise).
With `background="tinted"` the background is pulled 50-80% of the way towards a random palette
colour: a domain shift for models pretrained on the grey backgrounds (colour naming gets harder,
the shapes stay learnable), which the tiny DMNSP benchmark uses. Class names read
"<colour> <shape>" so a small text encoder can learn compositional names, and
`label = colour_index * 10 + shape_index`.

Rendering is vectorised over the batch: every image gets an inverse similarity transform of a
shared pixel grid into the shape's canonical frame, where the shape is a signed distance field
(SDF, negative inside, shape radius <= ~1). A soft edge of one pixel width gives anti-aliasing
without supersampling. Images are deterministic in (seed, split, class, n_per_class, image_size).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from numbers import Integral

import numpy as np
import torch

from nscl.data.base import TensorImageSet
from nscl.data.checksums import STANDARD_SETS, class_checksums, set_key, verify_classes

COLOURS: tuple[str, ...] = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "white", "black")
SHAPES: tuple[str, ...] = (
    "circle",
    "ring",
    "square",
    "triangle",
    "star",
    "cross",
    "crescent",
    "half-disk",
    "L-shape",
    "arrow",
)
# Saturated, well-separated hues plus black and white; the background is kept in a mid-grey band
# so that black and white shapes still contrast with it.
_RGB = np.array(
    [
        [0.90, 0.10, 0.10],
        [1.00, 0.55, 0.00],
        [0.95, 0.90, 0.10],
        [0.10, 0.70, 0.15],
        [0.00, 0.80, 0.85],
        [0.10, 0.25, 0.95],
        [0.55, 0.15, 0.80],
        [1.00, 0.45, 0.75],
        [0.97, 0.97, 0.97],
        [0.05, 0.05, 0.05],
    ],
    dtype=np.float64,
)
NUM_CLASSES = len(COLOURS) * len(SHAPES)
_SPLITS = {"train": 0, "test": 1}
_DEFAULT_N_PER_CLASS = {"train": 500, "test": 100}
_PIXEL_BUDGET = 1 << 21  # pixels rendered per chunk: bounds memory to ~200 MB at any image size
# Rendered in float64. numpy and OpenBLAS pick SIMD kernels per CPU (AVX-512, AVX2, SSE) whose sin,
# cos, hypot and matmul differ in the last bits; in float32 that moved 3-61 uint8 pixels per set
# between emulated CPUs. In float64 a pixel changes only if its value falls within ~1e-13 of a
# rounding boundary; the checksums in shapes100_checksums.json catch it if it ever does.
_FLOAT = np.float64
_SCALE_RANGE = (0.45, 0.8)  # shape diameter as a fraction of the image side
BACKGROUNDS: tuple[str, ...] = ("grey", "tinted")
_TINT_RANGE = (0.5, 0.8)  # tinted backgrounds: weight of the palette colour in the mix

Array = np.ndarray


def class_names() -> tuple[str, ...]:
    """The 100 class names "<colour> <shape>" in label order (label = colour * 10 + shape)."""
    return tuple(f"{colour} {shape}" for colour in COLOURS for shape in SHAPES)


# --- signed distance fields in the shape's canonical frame (u, v), negative inside ----------------


def _box(u: Array, v: Array, cx: float, cy: float, hx: float, hy: float) -> Array:
    # Chebyshev form: exact along the edges, which is all the one-pixel soft edge looks at.
    return np.maximum(np.abs(u - cx) - hx, np.abs(v - cy) - hy)


def _disk(u: Array, v: Array, cx: float, cy: float, r: float) -> Array:
    return np.hypot(u - cx, v - cy) - r


def _edge(u: Array, v: Array, ax: float, ay: float, bx: float, by: float) -> Array:
    """Signed distance to the line a->b, positive on its right (outside for counter-clockwise polygons)."""
    ex, ey = bx - ax, by - ay
    return ((u - ax) * ey - (v - ay) * ex) / np.hypot(ex, ey)


def _circle(u: Array, v: Array) -> Array:
    return _disk(u, v, 0.0, 0.0, 0.85)


def _ring(u: Array, v: Array) -> Array:
    return np.abs(np.hypot(u, v) - 0.7) - 0.25  # hole radius 0.45: still ~6 px wide at 32 px


def _square(u: Array, v: Array) -> Array:
    return _box(u, v, 0.0, 0.0, 0.68, 0.68)


def _triangle(u: Array, v: Array) -> Array:
    # Equilateral, circumradius 1, centroid at the origin.
    a, b, c = ((np.cos(t), np.sin(t)) for t in np.deg2rad([90.0, 210.0, 330.0]))
    return np.maximum(np.maximum(_edge(u, v, *a, *b), _edge(u, v, *b, *c)), _edge(u, v, *c, *a))


def _star(u: Array, v: Array, points: int = 5, outer: float = 1.0, inner: float = 0.42) -> Array:
    # Fold the plane into one half-sector [0, pi/points] and measure against the single edge
    # from the tip (outer, 0) to the inner vertex at angle pi/points.
    sector = 2.0 * np.pi / points
    angle = np.abs(np.mod(np.arctan2(v, u) + sector / 2, sector) - sector / 2)
    r = np.hypot(u, v)
    qx, qy = r * np.cos(angle), r * np.sin(angle)
    half = sector / 2
    return _edge(qx, qy, outer, 0.0, inner * np.cos(half), inner * np.sin(half))


def _cross(u: Array, v: Array) -> Array:
    return np.minimum(_box(u, v, 0.0, 0.0, 0.9, 0.25), _box(u, v, 0.0, 0.0, 0.25, 0.9))


def _crescent(u: Array, v: Array) -> Array:
    # A disk minus an offset disk, shifted so the crescent's bounding box is centred.
    return np.maximum(_disk(u, v, 0.2, 0.0, 0.9), -_disk(u, v, 0.6, 0.0, 0.75))


def _half_disk(u: Array, v: Array) -> Array:
    return np.maximum(_disk(u, v, 0.0, -0.35, 0.95), -0.35 - v)


def _l_shape(u: Array, v: Array) -> Array:
    return np.minimum(_box(u, v, -0.375, 0.025, 0.225, 0.775), _box(u, v, 0.025, -0.525, 0.625, 0.225))


def _arrow(u: Array, v: Array) -> Array:
    head = np.maximum(np.maximum(_edge(u, v, 0.95, 0.0, 0.1, 0.55), _edge(u, v, 0.1, -0.55, 0.95, 0.0)), 0.1 - u)
    return np.minimum(head, _box(u, v, -0.4, 0.0, 0.5, 0.18))


_SDFS: tuple[Callable[[Array, Array], Array], ...] = (
    _circle,
    _ring,
    _square,
    _triangle,
    _star,
    _cross,
    _crescent,
    _half_disk,
    _l_shape,
    _arrow,
)


# --- rendering -------------------------------------------------------------------------------------


def _pixel_centres(image_size: int) -> Array:
    """Pixel-centre coordinates in [-1, 1]; the image side has length 2."""
    return ((np.arange(image_size, dtype=_FLOAT) + 0.5) * (2.0 / image_size) - 1.0).astype(_FLOAT)


def _bilinear_matrix(n_out: int, n_in: int) -> Array:
    """(n_out, n_in) matrix that linearly interpolates n_in samples onto n_out points."""
    t = np.linspace(0.0, n_in - 1.0, n_out)
    lo = np.minimum(t.astype(np.int64), n_in - 2)
    frac = (t - lo).astype(_FLOAT)
    m = np.zeros((n_out, n_in), dtype=_FLOAT)
    m[np.arange(n_out), lo] = 1.0 - frac
    m[np.arange(n_out), lo + 1] = frac
    return m


def _shape_alpha(shape_ids: Array, image_size: int, rng: np.random.Generator) -> Array:
    """Coverage in [0, 1], (B, H, W), of one randomly posed shape per image."""
    b = len(shape_ids)
    scale = rng.uniform(*_SCALE_RANGE, b).astype(_FLOAT)
    # Shapes fit in the unit disk (to ~3%), so a centre within 1 - 1.05 * scale keeps them inside at any angle.
    centre = ((1.0 - 1.05 * scale)[:, None] * rng.uniform(-1.0, 1.0, (b, 2))).astype(_FLOAT)
    theta = rng.uniform(0.0, 2.0 * np.pi, b)
    mirror = np.where(rng.random(b) < 0.5, -1.0, 1.0)  # the L (unequal arms) is chiral: show both hands
    cos = (np.cos(theta) / scale).astype(_FLOAT)
    sin = (np.sin(theta) / scale).astype(_FLOAT)
    mirror = mirror.astype(_FLOAT)

    grid = _pixel_centres(image_size)
    alpha = np.empty((b, image_size, image_size), dtype=_FLOAT)
    for shape in np.unique(shape_ids):
        idx = np.flatnonzero(shape_ids == shape)
        dx = grid[None, None, :] - centre[idx, 0, None, None]  # (k, 1, W)
        dy = grid[None, :, None] - centre[idx, 1, None, None]  # (k, H, 1)
        c, s = cos[idx, None, None], sin[idx, None, None]
        u = (dx * c + dy * s) * mirror[idx, None, None]
        v = dy * c - dx * s
        # SDF units -> pixels: one canonical unit spans scale * image_size / 2 pixels.
        px_per_unit = scale[idx, None, None] * (image_size / 2.0)
        alpha[idx] = np.clip(0.5 - _SDFS[shape](u, v) * px_per_unit, 0.0, 1.0)
    return alpha


def _background(b: int, image_size: int, rng: np.random.Generator) -> Array:
    """Low-saturation textured backgrounds in [0, 1], (B, 3, H, W)."""
    grid = _pixel_centres(image_size)
    level = rng.uniform(0.35, 0.65, b)
    # Linear gradient in a random direction.
    phi = rng.uniform(0.0, 2.0 * np.pi, b)
    grad = rng.uniform(0.0, 0.12, b)
    # Stripes on about half the images, at 1.5-5 periods per image side.
    psi = rng.uniform(0.0, 2.0 * np.pi, b)
    freq = rng.uniform(1.5 * np.pi, 5.0 * np.pi, b)
    stripe_amp = rng.uniform(0.03, 0.09, b) * (rng.random(b) < 0.5)
    phase = rng.uniform(0.0, 2.0 * np.pi, b)
    # Per-image scalars as (B, 1, 1) arrays, so the per-pixel work below broadcasts.
    level, gx, gy, sx, sy, stripe_amp, phase = (
        np.asarray(p, dtype=_FLOAT)[:, None, None]
        for p in (
            level,
            grad * np.cos(phi),
            grad * np.sin(phi),
            freq * np.cos(psi),
            freq * np.sin(psi),
            stripe_amp,
            phase,
        )
    )
    # Smooth blobs: a coarse random grid, bilinearly upsampled (two small matmuls per image).
    coarse = rng.normal(0.0, 0.09, (b, 5, 5)).astype(_FLOAT)
    up = _bilinear_matrix(image_size, 5)
    tint = rng.normal(0.0, 0.03, (b, 3, 1, 1)).astype(_FLOAT)  # slight colour cast, never a hue cue

    x, y = grid[None, None, :], grid[None, :, None]
    lum = level + gx * x + gy * y + stripe_amp * np.sin(sx * x + sy * y + phase) + up @ coarse @ up.T
    # Clip to a mid band so white and black shapes always contrast with the background.
    return np.clip(lum[:, None] + tint, 0.2, 0.8)


def _tint(image: Array, rng: np.random.Generator) -> Array:
    """Pull each background towards a random palette colour (possibly the shape's own hue)."""
    b = len(image)
    hue = _RGB[rng.integers(0, len(_RGB), b)][:, :, None, None]
    weight = rng.uniform(*_TINT_RANGE, (b, 1, 1, 1)).astype(_FLOAT)
    return image * (1.0 - weight) + weight * hue


def _render_chunk(labels: Array, image_size: int, rng: np.random.Generator, background: str = "grey") -> Array:
    b = len(labels)
    colour = _RGB[labels // len(SHAPES)]
    colour = colour * rng.uniform(0.88, 1.08, (b, 1)).astype(_FLOAT)
    colour = colour + rng.normal(0.0, 0.025, (b, 3)).astype(_FLOAT)
    alpha = _shape_alpha(labels % len(SHAPES), image_size, rng)[:, None]
    image = _background(b, image_size, rng)
    if background == "tinted":
        image = _tint(image, rng)
    image += alpha * (colour[:, :, None, None] - image)
    noise = rng.standard_normal(image.shape, dtype=np.float32)  # sensor noise over everything
    image *= 255.0
    image += noise * _FLOAT(0.025 * 255.0) + _FLOAT(0.5)  # +0.5: round, not truncate, below
    return np.clip(image, 0.0, 255.0, out=image).astype(np.uint8)


def _check_int(name: str, value: object, minimum: int, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}. {hint}")
    return int(value)


def render_shapes(
    labels: np.ndarray, image_size: int, rng: np.random.Generator, background: str = "grey"
) -> np.ndarray:
    """Render one image per label as uint8 (N, 3, image_size, image_size) on `background` (BACKGROUNDS).

    Work is split into chunks of a fixed pixel budget (a function of image_size only), so the output
    is a deterministic function of (labels, image_size, rng state).
    """
    image_size = _check_int("image_size", image_size, 8, "Use a side length of at least 8 pixels.")
    _check_background(background)
    labels = np.asarray(labels)
    if labels.ndim != 1 or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(
            f"labels must be a 1-D integer array; got shape {labels.shape}, dtype {labels.dtype}. "
            "Pass one class id per image, e.g. np.array([0, 42, 99])."
        )
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(
            f"labels must lie in [0, {NUM_CLASSES}); got range [{labels.min()}, {labels.max()}]. "
            "Use label = colour_index * 10 + shape_index."
        )
    labels = labels.astype(np.int64)
    out = np.empty((len(labels), 3, image_size, image_size), dtype=np.uint8)
    step = max(1, _PIXEL_BUDGET // (image_size * image_size))
    for start in range(0, len(labels), step):
        out[start : start + step] = _render_chunk(labels[start : start + step], image_size, rng, background)
    return out


def _check_background(background: str) -> None:
    if background not in BACKGROUNDS:
        raise ValueError(
            f"background must be one of {BACKGROUNDS}; got {background!r}. 'grey' is the pretraining "
            "look, 'tinted' the shifted domain of the tiny DMNSP benchmark."
        )


def dataset_name(background: str = "grey") -> str:
    """The set's name, which run fingerprints compare: "shapes100", or "shapes100-tinted" for the shifted look."""
    _check_background(background)
    return "shapes100" if background == "grey" else f"shapes100-{background}"


def _class_rng(seed: int, split: str, label: int) -> np.random.Generator:
    # One stream per (seed, split, class): train and test never share samples, and a class renders
    # the same images whether or not other classes are requested alongside it.
    return np.random.default_rng(np.random.SeedSequence([seed, _SPLITS[split], label]))


def make_shapes100(
    split: str = "train",
    n_per_class: int | None = None,
    image_size: int = 32,
    seed: int = 0,
    classes: Sequence[int] | None = None,
    background: str = "grey",
    verify: bool = True,
) -> TensorImageSet:
    """Generate the shapes100 set in memory, ordered by class.

    Args:
        split: "train" or "test"; each draws from its own random streams.
        n_per_class: images per class; default 500 for train and 100 for test.
        image_size: side length in pixels (square RGB images).
        seed: non-negative integer; the same arguments give bit-identical images (on any CPU: the
            standard sets are checked against shipped checksums, nscl.data.checksums).
        classes: labels to generate (default all 100); targets keep the global label ids.
        background: "grey" (default) or "tinted" (the shifted domain; other pixels than "grey" throughout).
        verify: compare a standard set with its shipped checksums (ShapesChecksumError on a difference).
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {sorted(_SPLITS)}; got {split!r}. Use 'train' or 'test'.")
    if n_per_class is None:
        n_per_class = _DEFAULT_N_PER_CLASS[split]
    n_per_class = _check_int("n_per_class", n_per_class, 1, "Ask for at least one image per class.")
    image_size = _check_int("image_size", image_size, 8, "Use a side length of at least 8 pixels.")
    seed = _check_int("seed", seed, 0, "Use a non-negative integer seed.")
    _check_background(background)
    if classes is None:
        labels = list(range(NUM_CLASSES))
    else:
        bad = [c for c in classes if isinstance(c, bool) or not isinstance(c, Integral) or not 0 <= c < NUM_CLASSES]
        if bad or len(classes) == 0:
            problem = f"invalid entries {bad!r}" if bad else "an empty sequence"
            raise ValueError(
                f"classes must be a non-empty sequence of integer labels in [0, {NUM_CLASSES}); got {problem}. "
                "Pass e.g. classes=range(10), or None for all classes."
            )
        labels = sorted({int(c) for c in classes})

    images = np.concatenate(
        [render_shapes(np.full(n_per_class, c), image_size, _class_rng(seed, split, c), background) for c in labels]
    )
    # A standard set (one the shipped results were computed from) must come out byte for byte as shipped.
    if verify:
        verify_classes(
            set_key(split, n_per_class, image_size, seed, background),
            images,
            labels,
            n_per_class,
            "as rendered on this machine",
        )
    targets = torch.as_tensor(np.repeat(np.asarray(labels, dtype=np.int64), n_per_class))
    return TensorImageSet(
        name=dataset_name(background), images=torch.from_numpy(images), targets=targets, classes=class_names()
    )


def standard_set_checksums() -> dict[str, dict[str, str]]:
    """Render every standard set (all 100 classes, unverified) and return its per-class checksums."""
    table = {}
    for split, n, size, seed, background in STANDARD_SETS:
        data = make_shapes100(split, n, size, seed, background=background, verify=False)
        table[set_key(split, n, size, seed, background)] = class_checksums(data.images.numpy(), range(NUM_CLASSES), n)
    return table
