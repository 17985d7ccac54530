import pytest
import torch

from nscl.data import BatchTransform, TensorImageSet, iterate_batches


def image_set(n=10, size=12):
    images = torch.arange(n, dtype=torch.uint8)[:, None, None, None].expand(n, 3, size, size).contiguous()
    return TensorImageSet("toy", images, torch.arange(n), tuple(str(i) for i in range(n)))


def test_batches_cover_every_sample_once_and_shuffle_by_seed():
    data = image_set(10)
    seen = torch.cat([y for _, y in iterate_batches(data, 3, shuffle=True, seed=1)])
    assert sorted(seen.tolist()) == list(range(10))
    again = torch.cat([y for _, y in iterate_batches(data, 3, shuffle=True, seed=1)])
    other = torch.cat([y for _, y in iterate_batches(data, 3, shuffle=True, seed=2)])
    assert torch.equal(seen, again) and not torch.equal(seen, other)
    assert len(list(iterate_batches(data, 3, drop_last=True))) == 3
    with pytest.raises(ValueError, match="batch_size"):
        next(iterate_batches(data, 0))


def test_eval_transform_resizes_and_normalises():
    images = torch.full((2, 3, 8, 8), 255, dtype=torch.uint8)
    out = BatchTransform(size=16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))(images)
    assert out.shape == (2, 3, 16, 16)
    torch.testing.assert_close(out, torch.full_like(out, 2.0))  # (1 - 0.5) / 0.25


def test_train_augmentations_keep_shape_and_follow_the_generator():
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    for augment in ("flip", "rrc", "rrc_flip", "autoaugment"):
        tf = BatchTransform(size=24, augment=augment)
        a = tf(images, train=True, generator=torch.Generator().manual_seed(0))
        b = tf(images, train=True, generator=torch.Generator().manual_seed(0))
        assert a.shape == (4, 3, 24, 24) and torch.equal(a, b), augment
        assert torch.equal(tf(images, train=False), BatchTransform(size=24)(images))


def test_flip_really_flips():
    images = torch.zeros(64, 3, 4, 4, dtype=torch.uint8)
    images[..., 0] = 255  # left column white
    out = BatchTransform(size=4, augment="flip", mean=(0, 0, 0), std=(1, 1, 1))(
        images, train=True, generator=torch.Generator().manual_seed(0)
    )
    flipped = out[:, 0, 0, -1] == 1.0
    assert 10 < int(flipped.sum()) < 54 and torch.all(out[flipped, :, :, 0] == 0)


def test_bad_transform_arguments_fail_clearly():
    with pytest.raises(ValueError, match="augment"):
        BatchTransform(size=8, augment="mixup")
    with pytest.raises(TypeError, match="uint8"):
        BatchTransform(size=8)(torch.zeros(1, 3, 8, 8))


def write_image(path, array):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def gradient(height, width):
    """uint8 (H, W, 3): a horizontal ramp in red, vertical in green, so that crops and resizes show."""
    import numpy as np

    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack(
        [cols * 255 // max(width - 1, 1), rows * 255 // max(height - 1, 1), np.full_like(rows, 60)], axis=-1
    ).astype(np.uint8)


def test_folder_images_arrive_at_their_own_size(tmp_path):
    from nscl.data import FileImageSet

    shapes = [(30, 50), (40, 20), (30, 50)]
    paths = []
    for i, (h, w) in enumerate(shapes):
        write_image(tmp_path / f"{i}.png", gradient(h, w))
        paths.append(str(tmp_path / f"{i}.png"))
    data = FileImageSet("toy", tuple(paths), torch.tensor([0, 1, 0]), ("a", "b"))
    images, labels = next(iterate_batches(data, batch_size=3))
    assert isinstance(images, list) and [tuple(x.shape) for x in images] == [(3, h, w) for h, w in shapes]
    assert torch.equal(images[1].permute(1, 2, 0), torch.from_numpy(gradient(40, 20))) and labels.tolist() == [0, 1, 0]
    same_size = data.subset([0, 2])
    batch, _ = next(iterate_batches(same_size, batch_size=2))  # one size: a batch tensor
    assert isinstance(batch, torch.Tensor) and batch.shape == (2, 3, 30, 50)
    small = FileImageSet("toy", tuple(paths), torch.tensor([0, 1, 0]), ("a", "b"), storage_size=10)
    shrunk, _ = next(iterate_batches(small, batch_size=3))
    assert [tuple(x.shape[1:]) for x in shrunk] == [(10, 16), (20, 10), (10, 16)]  # shorter side 10, aspect kept
    with pytest.raises(ValueError, match="storage_size"):
        FileImageSet("toy", tuple(paths), torch.tensor([0, 1, 0]), ("a", "b"), storage_size=0)


def test_folder_eval_resizes_the_whole_image_then_centre_crops(tmp_path):
    """Official NSP² eval on ImageNet-R / DomainNet: Resize((256, 256)) + CenterCrop(224) of the original image."""
    from torchvision.transforms import v2

    from nscl.data import FileImageSet
    from nscl.data.transforms import nsp2_transform

    write_image(tmp_path / "wide.png", gradient(300, 600))
    data = FileImageSet("toy", (str(tmp_path / "wide.png"),), torch.tensor([0]), ("a",))
    images, _ = next(iterate_batches(data, batch_size=1))
    out = nsp2_transform("imagenet_r", "vit", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))(images)
    official = v2.Compose([v2.Resize((256, 256), antialias=True), v2.CenterCrop(224)])
    expected = official(torch.from_numpy(gradient(300, 600)).permute(2, 0, 1)).float() / 255
    torch.testing.assert_close(out[0], expected, atol=1e-6, rtol=0)
    # the red ramp spans the centre 224/256 of the full width, not of a square cut from the middle
    assert abs(float(out[0, 0, 0, 0]) - 16 / 256) < 0.02 and abs(float(out[0, 0, 0, -1]) - 240 / 256) < 0.02
