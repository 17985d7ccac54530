"""Your own data: an image folder (or CIFAR-10 by name) run end to end, and every bad layout named."""

import json
import pickle
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from nscl.cli import main
from nscl.data.benchmarks import benchmark_scenario, load_benchmark, own_benchmark
from nscl.data.example import folder_tree, write_image_folder
from nscl.data.folders import (
    ClassMismatchError,
    ClassNamesError,
    ClassOrderError,
    EmptyFolderError,
    FolderNotFoundError,
    MixedImageModesWarning,
    SingleClassError,
    TaskSplitError,
    TooFewImagesError,
    UnreadableImageError,
    check_images,
    scan_image_folder,
    to_rgb,
)
from nscl.data.own import OwnData
from nscl.experiment.config import ExperimentConfig


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """6 classes x 8 train / 3 test images, mixed sizes and modes (written once for the module)."""
    return write_image_folder(
        tmp_path_factory.mktemp("own") / "shapes", n_classes=6, train_per_class=8, test_per_class=3
    )


def copy(folder, tmp_path):
    return shutil.copytree(folder, tmp_path / "copy")


# -- reading ---------------------------------------------------------------------------------------


def test_the_example_folder_reads_as_six_classes_with_their_images(folder):
    scan = scan_image_folder(folder)
    assert scan.layout == "train-test" and len(scan.classes) == 6 and scan.classes == tuple(sorted(scan.classes))
    assert scan.counts("train") == [8] * 6 and scan.counts("test") == [3] * 6
    assert "train/" in folder_tree(folder) and "... 6 more" in folder_tree(folder)
    with pytest.warns(MixedImageModesWarning, match="1 CMYK, 1 L, 6 RGBA"):
        check = check_images(p for _, p in scan.train)
    assert check.n_images == 48 and check.converted == 8


def test_modes_are_converted_to_the_rgb_they_show():
    grey = Image.fromarray(np.full((4, 4), 77, np.uint8), mode="L")
    assert np.all(np.asarray(to_rgb(grey)) == 77)
    rgba = Image.fromarray(np.dstack([np.full((4, 4), c, np.uint8) for c in (10, 20, 30, 255)]), mode="RGBA")
    assert np.asarray(to_rgb(rgba))[0, 0].tolist() == [10, 20, 30]
    sixteen = Image.fromarray(np.full((4, 4), 65535, np.uint16))  # 16-bit white: PIL's own convert would clip
    assert np.asarray(to_rgb(sixteen))[0, 0].tolist() == [255, 255, 255]
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # pure red in CMYK
    assert np.asarray(to_rgb(cmyk))[0, 0].tolist() == [255, 0, 0]


def test_one_folder_is_split_per_class_by_a_seeded_fraction(folder, tmp_path):
    single = write_image_folder(tmp_path / "single", n_classes=3, train_per_class=10, test_per_class=0, layout="single")
    scan = scan_image_folder(single, test_fraction=0.3, split_seed=1)
    assert scan.layout == "single" and scan.counts("test") == [3, 3, 3] and scan.counts("train") == [7, 7, 7]
    assert not {p for _, p in scan.train} & {p for _, p in scan.test}
    again, other = scan_image_folder(single, 0.3, 1), scan_image_folder(single, 0.3, 2)
    assert again.test == scan.test and other.test != scan.test


def test_a_names_file_and_an_order_file_set_the_prompts_and_the_tasks(folder, tmp_path):
    folders = scan_image_folder(folder).classes
    names = tmp_path / "names.json"
    names.write_text(json.dumps({f: f"thing {i}" for i, f in enumerate(folders)}))
    order = tmp_path / "order.txt"
    order.write_text("\n".join(reversed(folders)))
    own = OwnData(str(folder), first_task=2, increment=4, class_order=str(order), class_names=str(names))
    bench = own_benchmark(own)
    assert bench.id == "own-shapes-2-4" and bench.n_tasks == 2 and bench.task_sizes == (2, 4)
    data = load_benchmark(bench, seed=0)
    assert data.scenario.class_order == (5, 4, 3, 2, 1, 0) == benchmark_scenario(bench).class_order
    assert data.class_names[0] == "thing 5" and len(data.task(0, "train")) == 16


def test_the_seeded_order_follows_the_seed_and_sorted_keeps_the_folders(folder):
    seeded = own_benchmark(OwnData(str(folder), tasks=3))
    assert benchmark_scenario(seeded, 0).class_order != benchmark_scenario(seeded, 1).class_order
    assert benchmark_scenario(own_benchmark(OwnData(str(folder), tasks=3, class_order="sorted"))).class_order == tuple(
        range(6)
    )


# -- every bad case, named -------------------------------------------------------------------------


def test_a_missing_or_wrong_root_is_named(tmp_path):
    with pytest.raises(FolderNotFoundError, match="does not exist"):
        scan_image_folder(tmp_path / "nope")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(FolderNotFoundError, match="is a file"):
        scan_image_folder(tmp_path / "file.txt")
    (tmp_path / "half" / "train" / "cat").mkdir(parents=True)
    with pytest.raises(FolderNotFoundError, match="train/ but no test/"):
        scan_image_folder(tmp_path / "half")


def test_empty_folders_are_named(tmp_path, folder):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmptyFolderError, match="no class folders"):
        scan_image_folder(tmp_path / "empty")
    loose = tmp_path / "loose"
    loose.mkdir()
    Image.new("RGB", (4, 4)).save(loose / "a.png")
    with pytest.raises(EmptyFolderError, match="loose images"):
        scan_image_folder(loose)
    root = copy(folder, tmp_path)
    (root / "train" / "zebra").mkdir()
    (root / "test" / "zebra").mkdir()
    (root / "train" / "zebra" / "notes.txt").write_text("not an image")
    with pytest.raises(EmptyFolderError, match=r"\['zebra'\] hold no images"):
        scan_image_folder(root)


def test_a_single_class_and_mismatched_splits_are_named(tmp_path, folder):
    one = write_image_folder(tmp_path / "one", n_classes=2, train_per_class=2, test_per_class=1, mixed_modes=False)
    shutil.rmtree(one / "train" / sorted(p.name for p in (one / "train").iterdir())[0])
    with pytest.raises(ClassMismatchError, match="only in test/"):
        scan_image_folder(one)
    shutil.rmtree(one / "test" / sorted(p.name for p in (one / "test").iterdir())[0])
    with pytest.raises(SingleClassError, match="at least two"):
        scan_image_folder(one)


def test_a_class_too_small_to_split_is_named(tmp_path):
    root = write_image_folder(tmp_path / "s", n_classes=2, train_per_class=3, test_per_class=0, layout="single")
    for path in sorted(next(p for p in sorted(root.iterdir())).iterdir())[1:]:
        path.unlink()
    with pytest.raises(TooFewImagesError, match="at least 2"):
        scan_image_folder(root)


def test_tasks_that_do_not_split_the_classes_are_named(folder):
    with pytest.raises(TaskSplitError, match=r"tasks=4 .*tasks among \[1, 2, 3, 6\]"):
        own_benchmark(OwnData(str(folder), tasks=4))
    with pytest.raises(TaskSplitError, match="first task of 2 and tasks of 3"):
        own_benchmark(OwnData(str(folder), first_task=2, increment=3))
    with pytest.raises(ValueError, match="give the protocol"):
        OwnData(str(folder))
    with pytest.raises(ValueError, match="both given"):
        OwnData(str(folder), tasks=2, increment=3)


def test_bad_names_and_order_files_are_named(folder, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("a\nb\n")
    with pytest.raises(ClassNamesError, match="2 names for 6 class folders"):
        own_benchmark(OwnData(str(folder), tasks=2, class_names=str(names)))
    order = tmp_path / "order.txt"
    order.write_text("0\n1\n2\n3\n4\n4\n")
    with pytest.raises(ClassOrderError, match="missing .* repeated"):
        own_benchmark(OwnData(str(folder), tasks=2, class_order=str(order)))
    order.write_text("giraffe\n")
    with pytest.raises(ClassOrderError, match="'giraffe' is neither"):
        own_benchmark(OwnData(str(folder), tasks=2, class_order=str(order)))


def test_truncated_and_fake_images_are_named_before_training(folder, tmp_path):
    root = copy(folder, tmp_path)
    victim = sorted((root / "train").rglob("*.png"))[5]
    victim.write_bytes(victim.read_bytes()[:150])  # a cut-off copy
    fake = root / "test" / victim.parent.name / "fake.jpg"
    fake.write_text("<html>not found</html>")  # a saved error page
    config = ExperimentConfig(own_data={"source": str(root), "tasks": 2}, epochs=1)  # listing only: builds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MixedImageModesWarning)
        with pytest.raises(UnreadableImageError, match="2 of 67") as err:
            config.run(tmp_path / "runs")
    assert str(victim) in str(err.value) and str(fake) in str(err.value)
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("checkpoint*"))


def test_the_config_names_the_field_and_refuses_a_benchmark_beside_own_data(folder):
    with pytest.raises(TaskSplitError, match=r"^ExperimentConfig.own_data: 6 classes"):
        ExperimentConfig(own_data={"source": str(folder), "tasks": 5})
    with pytest.raises(ValueError, match="benchmark.*None when own_data is given"):
        ExperimentConfig(own_data={"source": str(folder), "tasks": 2}, benchmark="shapes100-10s")
    with pytest.raises(ValueError, match="unknown OwnData fields"):
        ExperimentConfig(own_data={"source": str(folder), "taks": 2})


# -- end to end ------------------------------------------------------------------------------------


def test_an_image_folder_runs_from_the_command_line_and_a_config_file(folder, tmp_path, capsys):
    argv = ["run", "--own-data", f"source={folder}", "tasks=3", "--epochs", "1", "--only", "Seq", "NSP2"]
    assert main([*argv, "--run-root", str(tmp_path / "line")]) == 0
    out = capsys.readouterr().out
    assert "own-shapes-3s" in out and "48 train, 18 test" in out
    frame = pd.read_csv(tmp_path / "line" / "metrics.csv")
    assert sorted(frame.method) == ["VPT-NSP²", "VPT-Seq"] and frame.last_accuracy.between(0, 100).all()
    run = json.loads((tmp_path / "line" / "VPT-NSP" / "seed0" / "run.json").read_text())
    assert run["benchmark"] == "own-shapes-3s"

    config = tmp_path / "mine.toml"
    config.write_text(
        f'method = "dmnsp"\nepochs = 1\nonly = ["DMNSP"]\n[own_data]\nsource = "{folder}"\nfirst_task = 2\n'
        'increment = 4\nclass_order = "sorted"\n'
    )
    assert main(["run", "--config", str(config), "--run-root", str(tmp_path / "file")]) == 0
    accuracy = pd.read_csv(tmp_path / "file" / "DMNSP" / "seed0" / "accuracy.csv")
    assert len(accuracy) == 3  # two tasks: R[0,0], R[1,0], R[1,1]
    # the line's KEY=VALUE change the file's table key by key
    assert main(["run", "--config", str(config), "--own-data", "first_task=4", "increment=2", "--dry-run"]) == 0
    assert "own-shapes-4-2" in capsys.readouterr().out


def test_a_dry_run_decodes_every_image_and_names_a_bad_one(folder, tmp_path, capsys):
    root = copy(folder, tmp_path)
    bad = sorted((root / "test").rglob("*.png"))[0]
    bad.write_bytes(bad.read_bytes()[:100])
    assert main(["run", "--own-data", f"source={root}", "tasks=2", "--dry-run"]) == 2
    assert "UnreadableImageError" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["nsp2", "dmnsp"])
def test_the_paper_recipes_take_your_folder_with_every_control(folder, method):
    config = ExperimentConfig(method=method, preset="paper", own_data={"source": str(folder), "tasks": 3})
    experiment = config.experiment()
    assert experiment.benchmark.own is not None and experiment.default_seeds == (0,)
    labels = set(experiment.methods)
    expected = (
        {"VPT-Seq", "VPT-NSP²", "VPT-frozen", "VPT-prototype", "VPT-joint"}
        if method == "nsp2"
        else {
            "zero-shot CLIP",
            "prototype",
            "adapter-Seq",
            "DMNSP",
            "joint",
        }
    )
    assert expected <= labels


def test_the_paper_vit_trains_a_step_on_your_folders_mixed_sizes(folder):
    """ViT-B/16 at 224 px (random weights on a CPU): the folder pipeline crops every image size to 224."""
    from nscl.data.loading import iterate_batches
    from nscl.methods.base import TaskInfo
    from nscl.nsp2.recipe import build_nsp2, nsp2_recipe

    bench = own_benchmark(OwnData(str(folder), tasks=3))
    _, config, _ = nsp2_recipe("paper", "vit", bench)
    assert config.temperature == 30.0 and config.conditions.eta1 == 0.94  # the folder-set values (ImageNet-R's)
    method = build_nsp2("paper", "vit", config, bench, pretrained=False)
    method.setup("cpu", "fp32")
    data = load_benchmark(bench, seed=0).task(0, "train")
    images, labels = next(iterate_batches(data, batch_size=3))
    assert isinstance(images, list) and len({tuple(i.shape) for i in images}) == 2  # 32 and 48 px files
    x = method.transform(images, train=True, generator=torch.Generator().manual_seed(0))
    assert x.shape == (3, 3, 224, 224)
    method.begin_task(TaskInfo(0, range(0, 2), 2, data.classes, len(data), steps_per_epoch=1, epochs=1))
    assert torch.isfinite(method.training_step(x, labels))


# -- CIFAR-10 by name --------------------------------------------------------------------------------


def write_cifar10(root, n=10):
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(base / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": list(range(n))}, f)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                                     "truck"]}, f)  # fmt: skip


def test_cifar10_by_name_runs_any_protocol(tmp_path, monkeypatch):
    from nscl.data.datasets import DatasetNotFoundError, load_dataset

    with pytest.raises(ValueError, match="data_root.*cifar-10-batches-py.*download=True"):
        ExperimentConfig(own_data={"source": "cifar10", "tasks": 5}, data_root=str(tmp_path))
    write_cifar10(tmp_path)
    train = load_dataset("cifar10", "train", root=tmp_path)
    assert train.images.shape == (50, 3, 32, 32) and train.classes[0] == "airplane"
    config = ExperimentConfig(own_data={"source": "CIFAR-10", "tasks": 5}, data_root=str(tmp_path))
    data = load_benchmark(config.benchmark_spec, seed=0, root=tmp_path)
    assert config.benchmark_id == "own-cifar10-5s" and data.n_tasks == 5 and len(data.task(0)) == 10

    import torchvision

    def offline(*args, **kwargs):
        raise RuntimeError("no network")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(DatasetNotFoundError, match="CIFAR-10 could not be downloaded.*cifar-10-python.tar.gz"):
        load_dataset("cifar10", root=tmp_path / "elsewhere", download=True)


def test_grid_points_finished_before_own_data_existed_stay_finished(tmp_path):
    from nscl.experiment import grid

    (run,) = grid.expand(["nsp2"], ["shapes100-10s"], [0], tmp_path)
    old = {k: v for k, v in run.config.to_dict().items() if k != "own_data"}  # a status.json of an older nscl
    run.run_dir.mkdir(parents=True)
    (run.run_dir / grid.STATUS_FILE).write_text(json.dumps({"state": "done", "config": old}))
    assert grid.is_finished(run)
    (run.run_dir / grid.STATUS_FILE).write_text(json.dumps({"state": "done", "config": {**old, "seeds": [1]}}))
    assert not grid.is_finished(run)


def test_cifar10_exported_as_image_folders_reads_back_the_same_pixels(tmp_path, capsys):
    write_cifar10(tmp_path / "data")
    assert main(["export", "cifar10", str(tmp_path / "folders"), "--data-root", str(tmp_path / "data")]) == 0
    assert "50 train and 10 test images" in capsys.readouterr().out
    scan = scan_image_folder(tmp_path / "folders")
    assert scan.layout == "train-test" and scan.classes[0] == "airplane" and scan.counts("test") == [1] * 10
    from nscl.data.datasets import load_dataset

    original = load_dataset("cifar10", "test", root=tmp_path / "data")
    label, path = scan.test[3]
    with Image.open(path) as image:
        assert np.array_equal(np.asarray(image), original.images[3].permute(1, 2, 0).numpy())
    assert scan.classes[label] == original.classes[int(original.targets[3])]


@pytest.mark.notebook
def test_an_image_folder_runs_as_a_chapter_parameter_through_papermill(tmp_path):
    """Chapter 8 on a folder given with `-p image_folder` (the one-folder layout), small settings."""
    import os
    import subprocess
    import sys

    from nscl.paths import repo_root

    folder = write_image_folder(tmp_path / "mine", n_classes=4, train_per_class=10, test_per_class=0, layout="single")
    notebook = tmp_path / "08.ipynb"
    python = sys.executable
    subprocess.run(
        [python, "-m", "jupytext", "--quiet", "--to", "ipynb", "--output", str(notebook),
         str(repo_root() / "book" / "08_your_data.py")], check=True)  # fmt: skip
    env = {**os.environ, "NSCL_OUTPUT": str(tmp_path / "outputs")}
    parameters = ["-p", "image_folder", str(folder), "-p", "tasks", "2", "-p", "epochs", "1"]
    parameters += ["-y", "{nsp2_methods: [Seq], dmnsp_methods: [zero-shot]}"]  # lists: papermill's YAML
    subprocess.run(
        [python, "-m", "papermill", "--log-level", "WARNING", str(notebook), str(tmp_path / "out.ipynb"), *parameters],
        check=True, env=env, cwd=repo_root())  # fmt: skip
    executed = (tmp_path / "out.ipynb").read_text()
    assert "own-mine-2s" in executed and "one folder, 20% held out per class" in executed
    assert "VPT-Seq" in executed and "zero-shot CLIP" in executed


def test_large_photos_can_be_decoded_smaller(folder):
    from nscl.data.loading import iterate_batches

    bench = own_benchmark(OwnData(str(folder), tasks=3, storage_size=16))
    images, _ = next(iterate_batches(load_benchmark(bench, 0).task(0), batch_size=4))
    assert {tuple(i.shape[-2:]) for i in (images if isinstance(images, list) else [*images])} == {(16, 16)}
    with pytest.raises(ValueError, match="storage_size=0"):
        OwnData(str(folder), tasks=3, storage_size=0)


def test_a_point_finished_with_more_dmnsp_variants_is_finished_for_fewer(tmp_path):
    """The main tiny grid (DMNSP paper) and the ladder (paper and update) share a point: neither reruns it in turn."""
    from nscl.experiment import grid

    (plain,) = grid.expand(["dmnsp"], ["shapes100-tinted-10s"], [0], tmp_path)
    (both,) = grid.expand(["dmnsp"], ["shapes100-tinted-10s"], [0], tmp_path, base={"variants": ["paper", "update"]})
    assert plain.run_dir == both.run_dir
    plain.run_dir.mkdir(parents=True)
    status = tmp_path / plain.run_dir / grid.STATUS_FILE
    status.write_text(json.dumps({"state": "done", "config": both.config.to_dict()}))
    assert grid.is_finished(plain) and grid.is_finished(both)
    status.write_text(json.dumps({"state": "done", "config": plain.config.to_dict()}))
    assert grid.is_finished(plain) and not grid.is_finished(both)  # the update variant was never run there
