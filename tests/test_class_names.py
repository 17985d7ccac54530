"""The class names in the text prompts are the official code's, per data set and method lineage."""

import pickle

import numpy as np
import pytest

from nscl.data import load_dataset
from nscl.data.official import available_lineages, class_name_table, split_list
from nscl.data.shapes import class_names as shapes_class_names
from nscl.paths import repo_data_dir


def test_every_real_data_set_ships_names_with_a_cited_source():
    import json

    expected = {"cifar100": ["dmnsp", "nsp2"], "imagenet_r": ["nsp2"], "domainnet": ["nsp2"], "tinyimagenet": ["dmnsp"]}
    for dataset, lineages in expected.items():
        assert available_lineages(dataset) == lineages
        for lineage in lineages:
            blob = json.loads((repo_data_dir() / "class_names" / f"{dataset}_{lineage}.json").read_text())
            assert blob["dataset"] == dataset and "@" in blob["source"]  # repository@commit path
            table = class_name_table(dataset, lineage)
            assert len(table) == (100 if dataset == "cifar100" else 200)
            assert len({label_id for label_id, _ in table}) == len(table)


def test_name_lists_hold_the_official_names():
    assert dict(class_name_table("cifar100", "nsp2"))["aquarium_fish"] == "aquarium fish"  # CLIP-NSP² prompts
    assert dict(class_name_table("cifar100", "dmnsp"))["aquarium_fish"] == "aquarium_fish"  # DMNSP keeps '_'
    tiny = class_name_table("tinyimagenet", "dmnsp")
    assert tiny[:2] == (("n02124075", "Egyptian Mau"), ("n04067472", "fishing casting reel"))  # not words.txt's "reel"
    imagenet_r = class_name_table("imagenet_r", "nsp2")
    assert [w for w, _ in imagenet_r] == sorted(w for w, _ in imagenet_r)
    assert imagenet_r[2] == ("n01494475", "hammerhead shark")
    domainnet = class_name_table("domainnet", "nsp2")
    assert domainnet[0] == ("000", "pickup truck") and domainnet[2] == ("002", "The Eiffel Tower")
    assert [label for label, _ in domainnet] == [f"{i:03d}" for i in range(200)]


def test_shipped_imagenet_r_split_is_the_official_one():
    train, test = split_list("imagenet_r", "train"), split_list("imagenet_r", "test")
    assert (len(train), len(test)) == (24_000, 6_000) and not set(train) & set(test)
    wnids = {w for w, _ in class_name_table("imagenet_r", "nsp2")}
    assert {p.split("/")[0] for p in train} == {p.split("/")[0] for p in test} == wnids
    assert train[0] == "n02128757/sculpture_4.jpg"


def fake_cifar(root, names):
    base = root / "cifar-100-python"
    base.mkdir()
    data = np.zeros((len(names), 3072), dtype=np.uint8)
    for split in ("train", "test"):
        with open(base / split, "wb") as f:
            pickle.dump({"data": data, "fine_labels": list(range(len(names)))}, f)
    with open(base / "meta", "wb") as f:
        pickle.dump({"fine_label_names": names}, f)


def test_cifar100_names_are_selectable_per_lineage(tmp_path):
    fake_cifar(tmp_path, ["apple", "aquarium_fish", "maple_tree"])
    assert load_dataset("cifar100", root=tmp_path).classes == ("apple", "aquarium_fish", "maple_tree")
    assert load_dataset("cifar100", root=tmp_path, class_names="dmnsp").classes == (
        "apple",
        "aquarium_fish",
        "maple_tree",
    )
    assert load_dataset("cifar100", root=tmp_path, class_names="nsp2").classes == (
        "apple",
        "aquarium fish",
        "maple tree",
    )
    with pytest.raises(ValueError, match=r"class_names='coop'.*\['dmnsp', 'nsp2'\]"):
        load_dataset("cifar100", root=tmp_path, class_names="coop")


def test_shapes_keep_their_names_and_refuse_a_name_set():
    data = load_dataset("shapes100", "test", n_per_class=1, image_size=8, cache=False)
    assert data.classes == shapes_class_names()
    with pytest.raises(ValueError, match="class_names='nsp2': shapes100 has a single set of names"):
        load_dataset("shapes100", class_names="nsp2")


def test_prompts_keep_the_lineages_class_names():
    """DMNSP and zero-shot CLIP prompt with the names as given ("aquarium_fish", as the official DMNSP);
    NSP²'s CIFAR-100 protocols load NSP²'s own names ("aquarium fish")."""
    from nscl.data.benchmarks import BENCHMARKS
    from nscl.data.loading import BatchTransform
    from nscl.dmnsp.method import DMNSP, DMNSPConfig
    from nscl.methods.base import TaskInfo
    from nscl.methods.zeroshot import ZeroShotCLIP
    from nscl.models.tiny import build_tiny_clip, tiny_tokenizer

    seen: list[list[str]] = []
    tokenizer = tiny_tokenizer()

    def recording_tokenizer(texts):
        seen.append(list(texts))
        return tokenizer(texts)

    names = ("aquarium_fish", "maple_tree")
    task = TaskInfo(index=0, positions=range(0, 2), n_seen=2, class_names=names, n_train=2, steps_per_epoch=1, epochs=1)
    transform = BatchTransform(size=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    for method in (
        DMNSP(build_tiny_clip(), recording_tokenizer, transform, DMNSPConfig()),
        ZeroShotCLIP(build_tiny_clip(), recording_tokenizer, transform),
    ):
        method.setup("cpu", "fp32")
        method.begin_task(task)
    assert seen == [["a bad photo of a aquarium_fish.", "a bad photo of a maple_tree."]] * 2
    assert dict(BENCHMARKS["cifar100-10s"].options)["class_names"] == "nsp2"
    assert "class_names" not in dict(BENCHMARKS["cifar100-10-10"].options)
