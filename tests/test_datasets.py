import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from nscl.data import ContinualData, DatasetNotFoundError, FileImageSet, Scenario, iterate_batches, load_dataset


def write_png(path, colour, size=20):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size + 4), colour).save(path)  # width 20, height 24


def test_unknown_dataset_name_lists_the_choices():
    with pytest.raises(ValueError, match="unknown dataset 'cifar1000'.*cifar100"):
        load_dataset("cifar1000")
    with pytest.raises(ValueError, match="split"):
        load_dataset("digits", split="val")


def test_missing_cifar_root_says_where_to_put_the_files(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="cifar-100-python") as err:
        load_dataset("cifar100", root=tmp_path)
    assert str(tmp_path) in str(err.value) and "download=True" in str(err.value)


def test_cifar100_reader_on_a_small_file_in_the_official_format(tmp_path):
    base = tmp_path / "cifar-100-python"
    base.mkdir()
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=(6, 3072), dtype=np.uint8)
    for split in ("train", "test"):
        with open(base / split, "wb") as f:
            pickle.dump({"data": data, "fine_labels": [0, 1, 2, 0, 1, 2]}, f)
    with open(base / "meta", "wb") as f:
        pickle.dump({"fine_label_names": ["apple", "aquarium_fish", "baby"]}, f)
    ds = load_dataset("cifar100", root=tmp_path)
    assert ds.images.shape == (6, 3, 32, 32) and ds.classes == ("apple", "aquarium_fish", "baby")
    # channel-major rows: the first 1024 bytes are the red plane
    assert torch.equal(ds.images[0, 0].flatten(), torch.from_numpy(data[0, :1024]))


def test_missing_image_folders_say_how_to_prepare(tmp_path):
    for name, hint in [
        ("imagenet_r", "imagenet-r.tar"),
        ("tinyimagenet", "tiny-imagenet-200.zip"),
        ("domainnet", "split_sdomainnet"),
    ]:
        with pytest.raises(DatasetNotFoundError, match=hint):
            load_dataset(name, root=tmp_path)


def official_list(split):
    from nscl.data.official import split_list

    return split_list("imagenet_r", split)


def test_imagenet_r_uses_the_official_split_lists(tmp_path):
    """A fake imagenet-r tree whose files come from the shipped NSP² lists; labels number the sorted wnids."""
    train_list, test_list = official_list("train"), official_list("test")
    wnids = ["n01443537", "n01484850"]  # labels 0 and 1 (goldfish, great white shark)
    picked = {
        split: [p for w in wnids for p in [q for q in listed if q.startswith(w + "/")][:3]]
        for split, listed in (("train", train_list), ("test", test_list))
    }
    colours = {"n01443537": (255, 0, 0), "n01484850": (0, 0, 255)}
    for files in picked.values():
        for rel in files:
            write_png(tmp_path / "imagenet-r" / rel, colours[rel.split("/")[0]])
    lists = tmp_path / "lists"
    lists.mkdir()
    for split, files in picked.items():
        (lists / f"imagenet_r_{split}.txt").write_text("\n".join(files) + "\n")
    train = load_dataset("imagenet_r", "train", root=tmp_path, split_lists=lists)
    test = load_dataset("imagenet_r", "test", root=tmp_path, split_lists=lists)
    assert isinstance(train, FileImageSet) and len(train) == len(test) == 6
    assert train.targets.tolist() == [0, 0, 0, 1, 1, 1] and len(train.classes) == 200
    assert train.classes[:2] == ("goldfish", "great white shark")
    assert [p.split("imagenet-r/")[1] for p in train.paths] == sorted(picked["train"])
    assert not set(train.paths) & set(test.paths)
    images, labels = next(iterate_batches(train, batch_size=64))
    assert images.shape == (6, 3, 24, 20) and images.dtype == torch.uint8  # decoded at the file's own size
    red = labels == 0
    assert images[red][:, 0].float().mean() > 250 and images[~red][:, 2].float().mean() > 250
    # with the official lists, every listed file must be there
    with pytest.raises(DatasetNotFoundError, match=f"lacks {len(train_list) - 6} of the {len(train_list)} files"):
        load_dataset("imagenet_r", "train", root=tmp_path)


def test_tinyimagenet_numbers_classes_in_wnids_txt_order(tmp_path):
    """continuum's TinyImageNet200 (DMNSP's loader) labels wnids by their line in wnids.txt, not sorted."""
    base = tmp_path / "tiny-imagenet-200"
    wnids = ("n01443537", "n02124075", "n04067472")  # sorted; in wnids.txt order they are lines 22, 0 and 1
    for wnid in wnids:
        for i in range(2):
            write_png(base / "train" / wnid / "images" / f"{wnid}_{i}.png", (10, 200, 10))
    write_png(base / "val" / "images" / "val_0.png", (0, 0, 0))
    write_png(base / "val" / "images" / "val_1.png", (0, 0, 0))
    (base / "val" / "val_annotations.txt").write_text(
        "val_0.png\tn04067472\t0\t0\t1\t1\nval_1.png\tn01443537\t0\t0\t1\t1\n"
    )
    train = load_dataset("tinyimagenet", "train", root=tmp_path)
    test = load_dataset("tinyimagenet", "test", root=tmp_path)
    assert train.targets.tolist() == [0, 0, 1, 1, 22, 22]
    assert [p.split("/")[-3] for p in train.paths] == ["n02124075"] * 2 + ["n04067472"] * 2 + ["n01443537"] * 2
    assert train.classes[:2] == ("Egyptian Mau", "fishing casting reel") and train.classes[22] == "goldfish"
    assert sorted(test.targets.tolist()) == [1, 22]
    (base / "train" / "n99999999").mkdir()
    with pytest.raises(DatasetNotFoundError, match="'n99999999' is not one of the 200 official classes"):
        load_dataset("tinyimagenet", "train", root=tmp_path)


def test_domainnet_subset_folders_are_labels_with_the_official_names(tmp_path):
    for label in ("000", "002"):
        write_png(tmp_path / "domainnet" / "train" / label / "a.png", (1, 2, 3))
        write_png(tmp_path / "domainnet" / "val" / label / "b.png", (1, 2, 3))
    train = load_dataset("domainnet", "train", root=tmp_path)
    test = load_dataset("domainnet", "test", root=tmp_path)  # the official tool calls the test split 'val'
    assert train.targets.tolist() == test.targets.tolist() == [0, 2]
    assert train.classes[0] == "pickup truck" and train.classes[2] == "The Eiffel Tower"


def test_digits_is_real_and_split_stratified():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert len(train) + len(test) == 1797
    assert train.images.shape[1:] == (3, 8, 8) and train.images.max() == 255
    assert torch.bincount(test.targets).min() >= 50


def test_continual_data_relabels_to_positions():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    data = ContinualData(train, test, Scenario((9, 8, 7, 6, 5, 4, 3, 2, 1, 0), 2, 2))
    first = data.task(0, "test")
    assert set(first.targets.tolist()) == {0, 1}
    assert data.class_names[:2] == ("9", "8")
    assert len(data.tasks_up_to(4, "train")) == len(train)


def test_concurrent_writers_fill_the_shapes100_cache_safely(tmp_path):
    """Four processes fill an empty cache with the same set at once: each gets the set, no temporary file is left."""
    import subprocess
    import sys

    code = (
        "from nscl.data import load_dataset; d = load_dataset('shapes100', 'test', n_per_class=3, image_size=16, "
        "seed=5); print(int(d.images.sum()))"
    )
    env = {**__import__("os").environ, "NSCL_CACHE": str(tmp_path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-500:] for _, err in outputs]
    assert len({out.strip() for out, _ in outputs}) == 1
    files = sorted(p.name for p in (tmp_path / "shapes100").iterdir())
    assert len(files) == 1 and files[0].endswith(".pt"), files
