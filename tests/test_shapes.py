"""shapes100: naming and label convention, determinism, API contract, and that colour and shape are learnable."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from nscl.data.base import TensorImageSet
from nscl.data.shapes import COLOURS, SHAPES, _shape_alpha, class_names, make_shapes100, render_shapes


def test_class_names_follow_label_convention() -> None:
    names = class_names()
    assert len(COLOURS) == len(SHAPES) == 10
    assert len(set(COLOURS)) == 10 and len(set(SHAPES)) == 10
    assert len(names) == 100 and len(set(names)) == 100
    for c, colour in enumerate(COLOURS):
        for s, shape in enumerate(SHAPES):
            assert names[c * 10 + s] == f"{colour} {shape}"
    # Every name splits into exactly one known colour and one known shape.
    assert all(n.split(" ", 1)[0] in COLOURS and n.split(" ", 1)[1] in SHAPES for n in names)


def test_make_shapes100_types_shapes_and_order() -> None:
    data = make_shapes100("train", n_per_class=3, seed=0)
    assert isinstance(data, TensorImageSet)
    assert data.name == "shapes100" and data.classes == class_names()
    assert data.images.dtype == torch.uint8 and tuple(data.images.shape) == (300, 3, 32, 32)
    assert data.targets.dtype == torch.int64
    assert torch.equal(data.targets, torch.arange(100).repeat_interleave(3))
    # Images use the whole intensity range sensibly, not a constant or a saturated field.
    assert 60 < data.images.float().mean() < 190 and data.images.float().std() > 20


@pytest.mark.parametrize(("split", "expected"), [("train", 500), ("test", 100)])
def test_default_images_per_class(split: str, expected: int) -> None:
    assert len(make_shapes100(split, classes=[0], image_size=8)) == expected


def test_same_seed_is_bit_identical_and_other_seed_or_split_differs() -> None:
    a = make_shapes100("train", n_per_class=2, seed=7)
    b = make_shapes100("train", n_per_class=2, seed=7)
    assert torch.equal(a.images, b.images) and torch.equal(a.targets, b.targets)
    other_seed = make_shapes100("train", n_per_class=2, seed=8)
    test_split = make_shapes100("test", n_per_class=2, seed=7)
    for other in (other_seed, test_split):
        assert torch.equal(other.targets, a.targets)
        # Not merely different somewhere: no image is shared between the two sets.
        same = (other.images == a.images).flatten(1).all(1)
        assert not same.any()


def test_render_shapes_is_deterministic_in_rng_state() -> None:
    labels = np.array([0, 55, 99, 12])
    a = render_shapes(labels, 24, np.random.default_rng(3))
    b = render_shapes(labels, 24, np.random.default_rng(3))
    assert a.dtype == np.uint8 and a.shape == (4, 3, 24, 24)
    assert np.array_equal(a, b)
    assert render_shapes(np.array([], dtype=np.int64), 16, np.random.default_rng(0)).shape == (0, 3, 16, 16)


@pytest.mark.parametrize("size", [16, 48, 224])
def test_image_size_is_configurable(size: int) -> None:
    data = make_shapes100("test", n_per_class=2, image_size=size, classes=[3, 97])
    assert data.image_size == (size, size) and tuple(data.images.shape) == (4, 3, size, size)


def test_classes_restriction_is_sorted_and_matches_the_full_set() -> None:
    full = make_shapes100("test", n_per_class=2, seed=1)
    part = make_shapes100("test", n_per_class=2, seed=1, classes=[42, 7])
    assert torch.equal(part.targets, torch.tensor([7, 7, 42, 42]))
    assert part.classes == class_names()  # labels stay global ids
    # A class renders the same images whether or not other classes are generated with it.
    assert torch.equal(part.images[:2], full.images[14:16])
    assert torch.equal(part.images[2:], full.images[84:86])


def test_shape_is_inside_the_image_and_reasonably_large() -> None:
    size = 32
    shape_ids = np.repeat(np.arange(10), 50)
    alpha = _shape_alpha(shape_ids, size, np.random.default_rng(0)) > 0.5
    rows, cols = alpha.any(2), alpha.any(1)
    extent = np.maximum(rows.sum(1), cols.sum(1)) / size
    assert extent.min() >= 0.3 and extent.max() <= 0.9
    # Touching the border is allowed (anti-aliasing), covering a whole border row or column is not.
    assert (alpha[:, [0, -1], :].sum(2) < size // 2).all() and (alpha[:, :, [0, -1]].sum(1) < size // 2).all()


def test_tinted_backgrounds_are_coloured_and_deterministic() -> None:
    grey = make_shapes100("test", n_per_class=20, image_size=32, classes=range(10)).images.float() / 255
    tinted = make_shapes100("test", n_per_class=20, image_size=32, classes=range(10), background="tinted")
    again = make_shapes100("test", n_per_class=20, image_size=32, classes=range(10), background="tinted")
    assert torch.equal(tinted.images, again.images)
    assert tinted.name == "shapes100-tinted"  # run fingerprints tell the two looks apart
    tinted = tinted.images.float() / 255

    def corner_saturation(images: torch.Tensor) -> torch.Tensor:
        # per-image channel spread of the 3x3 corners, which the shape never reaches (mean over corners)
        corners = torch.cat(
            [images[..., :3, :3], images[..., :3, -3:], images[..., -3:, :3], images[..., -3:, -3:]], dim=-1
        )
        spread = corners.amax(dim=1) - corners.amin(dim=1)
        return spread.flatten(1).mean(1)

    # grey: a slight cast and pixel noise only; tinted: most images clearly coloured (some tints are white/black)
    assert corner_saturation(grey).median() < 0.15
    assert corner_saturation(tinted).median() > 0.3


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"split": "val"}, "split"),
        ({"n_per_class": 0}, "n_per_class"),
        ({"n_per_class": 2.5}, "n_per_class"),
        ({"image_size": 7}, "image_size"),
        ({"seed": -1}, "seed"),
        ({"classes": [0, 100]}, "classes"),
        ({"classes": [-1]}, "classes"),
        ({"classes": []}, "classes"),
        ({"background": "blue"}, "background"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs: dict, parameter: str) -> None:
    with pytest.raises(ValueError, match=parameter):
        make_shapes100(**{"n_per_class": 1, **kwargs})


def test_render_shapes_rejects_bad_labels() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="labels"):
        render_shapes(np.array([0, 100]), 16, rng)
    with pytest.raises(ValueError, match="labels"):
        render_shapes(np.zeros((2, 2), dtype=np.int64), 16, rng)
    with pytest.raises(ValueError, match="image_size"):
        render_shapes(np.array([0]), 4, rng)


def _colour_histogram(images: torch.Tensor, bins: int = 4) -> np.ndarray:
    """Normalised joint RGB histogram per image: position-, rotation- and shape-blind by construction."""
    q = images.numpy().astype(np.int64) // (256 // bins)
    idx = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]
    hist = np.stack([np.bincount(i.ravel(), minlength=bins**3) for i in idx]).astype(np.float64)
    return np.sqrt(hist / hist.sum(1, keepdims=True))


def _standardise(images: torch.Tensor) -> torch.Tensor:
    x = images.float() / 255.0
    return x - x.mean(dim=(2, 3), keepdim=True)


@pytest.fixture
def single_thread() -> Iterator[None]:
    """Run BLAS/OpenMP single-threaded: on a 2-core box shared with other jobs, spinning worker
    threads of torch and OpenBLAS oversubscribe the cores and slow small models down 10-40x."""
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(previous)


def test_colour_and_shape_are_learnable_on_held_out_images(single_thread: None) -> None:
    """Colour from a linear model on colour histograms; shape (under rotation) from a tiny CNN."""
    from sklearn.linear_model import LogisticRegression

    train = make_shapes100("train", n_per_class=30, seed=0)
    test = make_shapes100("test", n_per_class=5, seed=0)

    colour_clf = LogisticRegression(max_iter=500).fit(_colour_histogram(train.images), train.targets.numpy() // 10)
    colour_acc = colour_clf.score(_colour_histogram(test.images), test.targets.numpy() // 10)
    assert colour_acc > 0.9, f"colour accuracy {colour_acc:.2f} (chance 0.10)"

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    )
    x, y = _standardise(train.images), train.targets % 10
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(6):
        for batch in torch.randperm(len(x)).split(64):
            loss = nn.functional.cross_entropy(net(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        shape_acc = (net(_standardise(test.images)).argmax(1) == test.targets % 10).float().mean().item()
    assert shape_acc > 0.45, f"shape accuracy {shape_acc:.2f} (chance 0.10)"
