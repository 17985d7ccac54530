"""Guards that stop a bad run early and clearly (issue 13): divergence, invalid configs, unknown ids, data errors."""

import json

import numpy as np
import pytest
import timm
import torch

from nscl.data import BatchTransform, ContinualData, Scenario, load_dataset
from nscl.data.datasets import DatasetNotFoundError
from nscl.dmnsp.method import DMNSPConfig
from nscl.experiment.run import DivergedError, RunConfig, run_continual
from nscl.methods.linear import SharedLayerClassifier, SharedLayerConfig
from nscl.models.features import RandomReLUFeatures
from nscl.nsp2.conditions import ConditionSpec
from nscl.nsp2.method import NSP2, NSP2Config

CONFIG = RunConfig(epochs=3, batch_size=32, progress=False)


@pytest.fixture(scope="module")
def digits():
    return ContinualData(
        load_dataset("digits", "train"), load_dataset("digits", "test"), Scenario.equal_split(list(range(10)), 5)
    )


@pytest.fixture(scope="module")
def shapes_tasks():
    train = load_dataset("shapes100", "train", n_per_class=24, image_size=16)
    test = load_dataset("shapes100", "test", n_per_class=10, image_size=16)
    return ContinualData(train, test, Scenario.equal_split(list(range(0, 60, 10)), 3))


def linear_method(**kw):
    transform = BatchTransform(size=8, mean=(0.3,) * 3, std=(0.4,) * 3)
    return SharedLayerClassifier(RandomReLUFeatures(64, 128), 128, transform, SharedLayerConfig(**kw))


def small_nsp2(null_space: bool, lr: float) -> NSP2:
    torch.manual_seed(0)
    vit = timm.create_model(
        "vit_base_patch16_224",
        pretrained=False,
        img_size=16,
        patch_size=8,
        embed_dim=64,
        depth=2,
        num_heads=2,
        num_classes=0,
    )
    return NSP2(
        vit, BatchTransform(size=16), NSP2Config(null_space=null_space, lr=lr, milestones=(1,), temperature=4.0)
    )


# -- divergence ------------------------------------------------------------------------------------


@pytest.mark.parametrize("null_space", [False, True], ids=["VPT-Seq", "VPT-NSP2"])
def test_a_diverging_run_stops_at_once_and_writes_nothing(shapes_tasks, tmp_path, null_space):
    """lr 1e30: Seq used to end with exit 0 and NaN prompts, NSP² in an ill-conditioned eigh."""
    with pytest.raises(DivergedError) as err:
        run_continual(
            small_nsp2(null_space, lr=1e30),
            shapes_tasks,
            RunConfig(epochs=2, batch_size=16, progress=False),
            run_dir=tmp_path,
        )
    message = str(err.value)
    assert "task 1/3, epoch 1/2, step 2/" in message  # the first step after the 1e30 update
    assert "lower the learning rate" in message and "lr=1e+30" in message and str(tmp_path) in message
    assert not (tmp_path / "checkpoint.pt").exists() and not (tmp_path / "metrics.json").exists()
    assert not (tmp_path / "accuracy.csv").exists()


def test_the_rerun_a_divergence_suggests_is_not_refused(shapes_tasks, tmp_path):
    """Nothing of task 1 was saved, so the run directory holds no result: a lower lr starts there anew."""
    with pytest.raises(DivergedError, match="lower the learning rate"):
        run_continual(
            small_nsp2(False, lr=1e30),
            shapes_tasks,
            RunConfig(epochs=2, batch_size=16, progress=False),
            run_dir=tmp_path,
        )
    rerun = run_continual(
        small_nsp2(False, lr=1e-3),
        shapes_tasks,
        RunConfig(epochs=1, batch_size=16, progress=False, max_tasks=1),
        run_dir=tmp_path,
    )
    assert rerun.accuracy.shape == (1, 1) and (tmp_path / "checkpoint.pt").exists()
    assert (
        json.loads((tmp_path / "config.json").read_text())["method_config"]["lr"] == 1e-3
    )  # the new settings, recorded


def test_a_non_finite_learning_rate_is_named_as_such():
    from nscl.experiment.run import _lr_hint

    assert _lr_hint(small_nsp2(False, lr=float("inf"))) == "set a finite learning rate (now lr=inf)"
    assert "try 0.001 or less" in _lr_hint(small_nsp2(False, lr=0.01))


class NaNAt(SharedLayerClassifier):
    """Returns a NaN loss at one (task, step of the task), or poisons a parameter after one step."""

    def __init__(self, task: int, step: int, poison_parameter: bool = False):
        base = linear_method()
        self.__dict__.update(base.__dict__)
        self.bad_task, self.bad_step, self.poison = task, step, poison_parameter
        self.steps = 0

    def begin_task(self, task):
        super().begin_task(task)
        self.steps = 0

    def training_step(self, images, labels):
        loss = super().training_step(images, labels)
        self.steps += 1
        if self.task.index == self.bad_task and self.steps == self.bad_step:
            if self.poison:
                with torch.no_grad():
                    next(self.shared.parameters()).fill_(float("nan"))
            else:
                return loss * float("nan")
        return loss


def test_the_error_names_the_first_bad_step_and_earlier_tasks_stay_saved(digits, tmp_path):
    steps = -(-len(digits.task(1, "train")) // CONFIG.batch_size)
    bad = steps + 3  # task 2, epoch 2, step 3
    with pytest.raises(DivergedError, match=rf"task 2/5, epoch 2/3, step 3/{steps}\b"):
        run_continual(NaNAt(task=1, step=bad), digits, CONFIG, run_dir=tmp_path)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["tasks_done"] == 1
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["tasks_done"] == 1 and np.isfinite(metrics["last_accuracy"])
    frame = np.loadtxt(tmp_path / "tasks.csv", delimiter=",", skiprows=1, ndmin=2)
    assert frame.shape[0] == 1 and np.all(np.isfinite(frame))


def test_a_non_finite_parameter_with_a_finite_loss_is_caught_at_the_end_of_the_epoch(digits, tmp_path):
    # poisoned after the last step of task 1's first epoch: the loss never saw it
    steps = -(-len(digits.task(0, "train")) // CONFIG.batch_size)
    with pytest.raises(DivergedError, match=r"parameters .* are not finite after task 1/5, epoch 1/3"):
        run_continual(NaNAt(task=0, step=steps, poison_parameter=True), digits, CONFIG, run_dir=tmp_path)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_the_loss_guard_reads_the_device_once_per_epoch_not_per_step(digits, monkeypatch):
    calls = {"n": 0}
    item = torch.Tensor.item

    def counting_item(self):
        calls["n"] += 1
        return item(self)

    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    config = RunConfig(epochs=2, batch_size=8, progress=False, max_tasks=1)
    steps = -(-len(digits.task(0, "train")) // 8) * 2
    run_continual(linear_method(), digits, config)
    assert steps > 40 and calls["n"] < steps / 4, (calls["n"], steps)


# -- configs rejected at construction ----------------------------------------------------------------


@pytest.mark.parametrize("kwargs, field", [({"eta1": 1.5}, "eta1"), ({"eta2": -0.1}, "eta2"), ({"eta1": "1"}, "eta1")])
def test_condition_spec_rejects_eta_outside_0_1(kwargs, field):
    with pytest.raises(ValueError, match=rf"ConditionSpec\.{field}=.*\[0, 1\]"):
        ConditionSpec(**kwargs)
    ConditionSpec(eta1=0.0, eta2=1.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lr": 0}, r"DMNSPConfig\.lr=0"),
        ({"lr": -1e-3}, r"DMNSPConfig\.lr=-0.001"),
        ({"bottleneck": 0}, r"DMNSPConfig\.bottleneck=0.*>= 1"),
        ({"adapter_dropout": 1.5}, r"adapter_dropout=1.5.*\[0, 1\)"),
        ({"adapter_dropout": 1.0}, r"adapter_dropout=1.0"),
        ({"adapter_dropout": -0.1}, r"adapter_dropout=-0.1"),
    ],
)
def test_dmnsp_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DMNSPConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lr": 0}, "lr=0"),
        ({"gamma": -0.1}, "gamma"),
        ({"drift_weight": -1}, "drift_weight"),
        ({"accumulate": "max"}, "accumulate='max'"),
    ],
)
def test_nsp2_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NSP2Config(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_tasks": 0}, r"max_tasks=0.*>= 1"),
        ({"max_tasks": -1}, r"max_tasks=-1.*>= 1"),
        ({"device": "gpu"}, r"device='gpu'.*'cpu', 'cuda', 'cuda:N'"),
        ({"epochs": 1.5}, r"epochs=1.5.*integer"),
        ({"progress": "no"}, r"progress='no'"),
    ],
)
def test_run_config_rejects_bad_values_naming_field_value_and_accepted(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RunConfig(**kwargs)
    assert RunConfig(device=torch.device("cpu")).device == "cpu"


def test_unknown_benchmark_ids_give_one_value_error_listing_the_valid_ids():
    from nscl.presets import dmnsp_experiment, load_benchmark, nsp2_experiment

    for make in (
        lambda: nsp2_experiment("tiny", "vit", "cifar100-10x"),
        lambda: dmnsp_experiment("tiny", "nope"),
        lambda: load_benchmark("nope"),
    ):
        with pytest.raises(ValueError, match=r"unknown benchmark .*choose one of .*'shapes100-10s'") as err:
            make()
        assert not str(err.value).startswith('"')  # not a KeyError's quoted repr


@pytest.mark.parametrize("seeds", [3, "abc", [0, "1"], [], [-1]])
def test_run_all_says_seeds_must_be_a_list_of_ints(seeds):
    from nscl.presets import nsp2_experiment

    experiment = nsp2_experiment("tiny", "vit")
    with pytest.raises(ValueError, match=r"seeds=.*seeds must be a (non-empty )?list of ints"):
        experiment.run_all(seeds=seeds)


# -- data errors -------------------------------------------------------------------------------------


def test_an_empty_imagenet_r_folder_says_what_is_missing_and_how_to_prepare_it(tmp_path):
    (tmp_path / "imagenet-r").mkdir()
    with pytest.raises(DatasetNotFoundError, match=r"ImageNet-R at .*imagenet-r is empty.*imagenet-r\.tar"):
        load_dataset("imagenet_r", "train", root=tmp_path)


def test_a_cifar_folder_holding_only_meta_says_what_is_missing_and_how_to_prepare_it(tmp_path):
    (tmp_path / "cifar-100-python").mkdir()
    (tmp_path / "cifar-100-python" / "meta").write_bytes(b"")
    with pytest.raises(DatasetNotFoundError, match=r"incomplete: train, test missing.*cifar-100-python\.tar\.gz"):
        load_dataset("cifar100", "train", root=tmp_path)
