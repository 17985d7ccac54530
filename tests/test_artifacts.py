"""The shipped tiny backbones and shapes100 checksums: checked at load, recorded by runs, matched by results."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from nscl.data import checksums
from nscl.data.shapes import make_shapes100
from nscl.models import artifacts, tiny
from nscl.paths import repo_root

RESULTS = repo_root() / "benchmarks" / "results"


@pytest.fixture
def weights_copy(tmp_path, monkeypatch) -> Path:
    """A private copy of the shipped weights folder, which the loaders then read."""
    folder = tmp_path / "weights"
    shutil.copytree(artifacts.WEIGHTS_DIR, folder)
    monkeypatch.setattr(artifacts, "WEIGHTS_DIR", folder)
    monkeypatch.setattr(artifacts, "MANIFEST", folder / "manifest.json")
    return folder


def _forbidden(*args, **kwargs):
    raise AssertionError("pretrained on the spot although shipped weights exist for this recipe")


def test_manifest_lists_both_backbones_with_their_current_keys():
    manifest = artifacts.read_manifest()
    for name, config in (("vit", tiny.TINY_VIT_PRETRAIN), ("clip", tiny.TINY_CLIP_PRETRAIN)):
        entry = manifest[f"tiny-{name}"]
        assert entry["key"] == tiny.pretraining_key(name, config), f"tiny-{name}: shipped for another recipe"
        path = artifacts.WEIGHTS_DIR / entry["file"]
        assert artifacts.file_sha256(path) == entry["sha256"]
        assert entry["bytes"] == path.stat().st_size < 10 * 2**20


def test_shipped_weights_load_as_float32_without_training(monkeypatch):
    monkeypatch.setattr(tiny, "pretrain_classifier", _forbidden)
    monkeypatch.setattr(tiny, "pretrain_clip", _forbidden)
    vit = tiny.pretrained_tiny_vit()
    clip, _ = tiny.pretrained_tiny_clip()
    manifest = artifacts.read_manifest()
    for model, name in ((vit, "tiny-vit"), (clip, "tiny-clip")):
        assert model.nscl_weights == artifacts.WeightsId(name, manifest[name]["identity"], "shipped")
        assert all(p.dtype == torch.float32 for p in model.parameters())
    state, weights = artifacts.load_shipped("tiny-vit", tiny.pretraining_key("vit", tiny.TINY_VIT_PRETRAIN))
    assert artifacts.weights_identity(state) == weights.identity  # the identity is that of what is loaded


def test_a_damaged_shipped_file_is_an_error_not_a_retrain(weights_copy, monkeypatch):
    monkeypatch.setattr(tiny, "pretrain_classifier", _forbidden)
    path = weights_copy / "tiny-vit.safetensors"
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(
        artifacts.ArtifactError, match=r"tiny-vit: .*tiny-vit.safetensors has sha256 .* the manifest says"
    ):
        tiny.pretrained_tiny_vit()
    path.unlink()
    with pytest.raises(artifacts.ArtifactError, match="which is missing"):
        tiny.pretrained_tiny_vit()


def test_write_shipped_stores_float16_and_reads_back_its_identity(weights_copy):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 3), torch.nn.BatchNorm1d(3))
    entry = artifacts.write_shipped("toy", "key0", model, {"final_loss": 0.5, "losses": [1.0, 0.5]}, "a test")
    assert entry["stats"] == {"final_loss": 0.5}  # the loss curve and class list stay out of the manifest
    state, weights = artifacts.load_shipped("toy", "key0")
    for name, value in model.state_dict().items():
        expected = value.half().float() if value.is_floating_point() else value
        assert state[name].dtype == expected.dtype and torch.equal(state[name], expected), name
    assert weights == artifacts.WeightsId("toy", entry["identity"], "shipped")
    assert artifacts.load_shipped("toy", "another recipe") is None  # made for another key: not used


def test_perturbed_weights_move_at_rounding_level_and_say_so(monkeypatch):
    reference = tiny.pretrained_tiny_vit()
    monkeypatch.setenv(artifacts.PERTURB_ENV, "3")
    perturbed = tiny.pretrained_tiny_vit()
    assert perturbed.nscl_weights.identity == reference.nscl_weights.identity + "+perturbed3"
    changed = 0
    for (name, a), b in zip(reference.state_dict().items(), perturbed.state_dict().values()):
        if a.is_floating_point():
            assert torch.all((a - b).abs() <= 2 * 2.0**-23 * a.abs()), name
            changed += int(not torch.equal(a, b))
    assert changed > 10
    monkeypatch.setenv(artifacts.PERTURB_ENV, "one")
    with pytest.raises(ValueError, match="NSCL_PERTURB_WEIGHTS='one': expected an integer seed"):
        tiny.pretrained_tiny_vit()


def test_committed_results_were_computed_from_the_shipped_weights():
    """Rebuilding the shipped weights without recomputing the committed results fails here, naming both."""
    manifest = artifacts.read_manifest()
    shipped = {f"{name}@{entry['identity']}" for name, entry in manifest.items()}
    configs = sorted((RESULTS / "tiny_grid").rglob("config.json"))
    assert len(configs) >= 80
    for path in configs:
        used = json.loads(path.read_text())["backbone_weights"]
        assert used in shipped, f"{path.relative_to(RESULTS)} was computed from {used!r}; shipped: {sorted(shipped)}"
    tables = [p for p in RESULTS.glob("*.csv") if "backbone_weights" in pd.read_csv(p, nrows=0).columns]
    assert len(tables) >= 3
    for table in tables:
        for used in pd.read_csv(table).backbone_weights.dropna().unique():
            # the machine spread's control runs name the shipped weights plus their perturbation
            base, _, perturbation = used.partition("+")
            assert perturbation in ("", "perturbed1"), f"{table.name}: unknown weights {used!r}"
            assert base in shipped, f"{table.name} was computed from {used!r}; shipped: {sorted(shipped)}"


def test_every_standard_shapes_set_has_checksums_for_all_classes():
    table = json.loads(checksums.CHECKSUMS_FILE.read_text())
    assert table["generator"] == checksums.GENERATOR_VERSION
    keys = {checksums.set_key(*s) for s in checksums.STANDARD_SETS}
    assert set(table["sets"]) == keys
    assert all(len(classes) == 100 for classes in table["sets"].values())


def test_a_standard_set_renders_as_shipped_and_a_changed_checksum_is_named(tmp_path, monkeypatch):
    data = make_shapes100("test", 1, 32, 0)  # verified against the shipped checksums
    table = json.loads(checksums.CHECKSUMS_FILE.read_text())
    table["sets"]["test_n1_s32_seed0_grey"]["42"] = "0" * 16
    changed = tmp_path / "checksums.json"
    changed.write_text(json.dumps(table))
    monkeypatch.setattr(checksums, "CHECKSUMS_FILE", changed)
    with pytest.raises(
        checksums.ShapesChecksumError,
        match=r"test_n1_s32_seed0_grey as rendered on this machine: "
        r"1 of 100 classes differ .*class 42",
    ):
        make_shapes100("test", 1, 32, 0)
    assert make_shapes100("test", 1, 32, 0, verify=False).images.equal(data.images)
    make_shapes100("test", 2, 32, 0)  # not a standard set: nothing to compare


def test_a_tampered_cache_file_is_named(tmp_path, monkeypatch):
    from nscl.data import load_dataset

    monkeypatch.setenv("NSCL_CACHE", str(tmp_path))
    first = load_dataset("shapes100", "test", n_per_class=1, image_size=32, seed=0)
    (path,) = (tmp_path / "shapes100").glob("*.pt")
    assert path.name == f"test_n1_s32_seed0_v{checksums.GENERATOR_VERSION}.pt"
    assert not list((tmp_path / "shapes100").glob("*.tmp"))
    blob = torch.load(path)
    blob["images"][7, 0, 0, 0] ^= 1
    torch.save(blob, path)
    with pytest.raises(checksums.ShapesChecksumError, match=f"read from {path}"):
        load_dataset("shapes100", "test", n_per_class=1, image_size=32, seed=0)
    path.unlink()
    assert load_dataset("shapes100", "test", n_per_class=1, image_size=32, seed=0).images.equal(first.images)


def test_class_checksums_are_per_class_blocks():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(6, 4)
    digests = checksums.class_checksums(images, [5, 9], 3)
    assert list(digests) == ["5", "9"]
    assert digests["5"] == checksums.class_checksums(images[:3], [5], 3)["5"] != digests["9"]
