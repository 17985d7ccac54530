import numpy as np
import pytest
import torch
from torch import nn

from nscl.data import BatchTransform, ContinualData, Scenario, load_dataset
from nscl.experiment.run import RunConfig, run_continual
from nscl.methods.prototype import PrototypeClassifier, class_means
from nscl.models.features import PooledEmbedding, RandomReLUFeatures
from nscl.models.tiny import build_tiny_clip, build_tiny_vit

CONFIG = RunConfig(epochs=1, batch_size=32, eval_batch_size=37, progress=False)  # 37: batches cut classes apart


@pytest.fixture(scope="module")
def digits():
    return ContinualData(
        load_dataset("digits", "train"), load_dataset("digits", "test"), Scenario.equal_split(list(range(10)), 5)
    )


def prototype_method():
    transform = BatchTransform(size=8, mean=(0.3,) * 3, std=(0.4,) * 3)
    return PrototypeClassifier(RandomReLUFeatures(64, 128), transform)


def test_class_means_on_a_hand_worked_case():
    features = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 4.0], [2.0, 2.0], [5.0, 5.0]], dtype=torch.float64)
    labels = torch.tensor([4, 4, 5, 5, 5])  # global positions of a task holding classes 4 and 5
    means = class_means(features, labels, range(4, 6))
    assert torch.equal(means, torch.tensor([[2.0, 1.0], [7 / 3, 11 / 3]], dtype=torch.float64))


def test_class_means_names_what_is_wrong():
    features = torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"no training images for classes \[5\]"):
        class_means(features, torch.tensor([4, 4, 4]), range(4, 6))
    with pytest.raises(ValueError, match="outside the task's classes"):
        class_means(features, torch.tensor([4, 7, 4]), range(4, 6))


def test_logits_are_cosines_to_the_prototypes():
    method = PrototypeClassifier(nn.Identity(), BatchTransform(size=2, mean=(0.0,), std=(1.0,)))
    method.prototypes = torch.tensor([[2.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    scores = method.logits(torch.tensor([[3.0, 4.0]]))
    assert torch.allclose(scores, torch.tensor([[3 / 5, 7 / (5 * 2**0.5)]]))


def test_old_prototypes_never_change_and_later_tasks_only_add_competitors(digits):
    method = prototype_method()
    snapshots = []
    result = run_continual(method, digits, CONFIG, after_task=lambda t, m: snapshots.append(m.prototypes.clone()))
    assert [len(s) for s in snapshots] == [2, 4, 6, 8, 10]
    for before, after in zip(snapshots, snapshots[1:]):
        assert torch.equal(after[: len(before)], before)  # bit for bit: nothing old is touched
    # the prototype of a class is the mean embedding of exactly its training images
    images = digits.task(1, "train")
    feats = method.embed(method.transform(images.images, train=False))
    expected = class_means(feats, images.targets, range(2, 4))  # task data carry class positions
    assert torch.allclose(snapshots[-1][2:4], expected, atol=1e-10)
    # task-aware accuracy of an old task cannot change: its own prototypes and its images are fixed
    aware = result.accuracy_task_aware
    for j in range(5):
        assert np.allclose(aware[j:, j], aware[j, j])
    assert np.diag(aware).min() > 0.85 and result.metrics.last_accuracy > 0.5


def test_a_resumed_run_ends_with_the_same_prototypes_and_metrics(digits, tmp_path):
    full = run_continual(prototype_method(), digits, CONFIG)
    run_continual(prototype_method(), digits, RunConfig(**{**CONFIG.__dict__, "max_tasks": 2}), run_dir=tmp_path)
    resumed_method = prototype_method()
    resumed = run_continual(resumed_method, digits, CONFIG, run_dir=tmp_path)
    assert np.array_equal(resumed.accuracy, full.accuracy, equal_nan=True)
    assert len(resumed_method.prototypes) == 10


@pytest.mark.parametrize("build", [build_tiny_vit, lambda: build_tiny_clip()], ids=["timm-vit", "open_clip"])
def test_pooled_embedding_is_the_backbones_own_feature(build):
    model = build()
    embedding = PooledEmbedding(model).train()  # train() keeps the frozen backbone in eval mode
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = (
            model.forward_head(model.forward_features(images), pre_logits=True)
            if embedding.kind == "timm"
            else model.encode_image(images)
        )
        assert torch.equal(embedding(images), expected)
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_pooled_embedding_refuses_other_models():
    with pytest.raises(TypeError, match="timm ViT .* or an open_clip CLIP"):
        PooledEmbedding(nn.Linear(2, 2))
