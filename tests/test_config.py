"""nscl.experiment.config.ExperimentConfig: validated completely at construction, from dicts and files; check_parameters."""

import json
import types

import pytest

from nscl.experiment.config import ExperimentConfig, check_parameters


@pytest.fixture(autouse=True)
def no_data_or_weights(monkeypatch):
    """Building or validating a config must load no data set and build no backbone."""

    def forbidden(*args, **kwargs):
        raise AssertionError("a config loaded data or weights")

    import nscl.data.benchmarks as benchmarks
    import nscl.models.tiny as tiny

    monkeypatch.setattr(benchmarks, "load_dataset", forbidden)
    monkeypatch.setattr(tiny, "pretrained_tiny_vit", forbidden)
    monkeypatch.setattr(tiny, "pretrained_tiny_clip", forbidden)


def test_defaults_build_the_tiny_nsp2_experiment_with_the_run_settings():
    config = ExperimentConfig(epochs=2, max_tasks=3, seeds=[0, 1], only=["Seq", "NSP2"], overrides={"lr": 0.005})
    assert config.seeds == (0, 1) and config.only == ("Seq", "NSP2")  # lists become tuples
    assert config.selected_methods() == ["VPT-Seq", "VPT-NSP²"]
    experiment = config.experiment()
    assert experiment.benchmark.id == "shapes100-10s"
    assert experiment.run.epochs == 2 and experiment.run.max_tasks == 3 and experiment.run.progress is False
    assert set(config.selected_methods()) <= set(experiment.methods)


def test_dmnsp_variants_and_method_names():
    config = ExperimentConfig(method="dmnsp", variants=["paper", "code"], only=["DMNSP", "Seq", "frozen"])
    assert config.backbone_id == "clip" and config.benchmark_id == "shapes100-tinted-10s"
    assert config.selected_methods() == ["adapter-Seq", "frozen", "DMNSP", "DMNSP (code)"]
    assert "frozen" in config.experiment().methods
    assert ExperimentConfig(method="dmnsp").selected_methods() == [
        "zero-shot CLIP",
        "prototype",
        "adapter-Seq",
        "DMNSP",
        "joint",
    ]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"method": "dmnsp", "backbone": "vit"},
            r"ExperimentConfig\.backbone='vit': accepted: for method='dmnsp': \['clip'\]",
        ),
        ({"method": "nsp3"}, r"ExperimentConfig\.method='nsp3': accepted: one of \['nsp2', 'dmnsp'\]"),
        ({"benchmark": "cifar100-10x"}, r"ExperimentConfig\.benchmark='cifar100-10x'.*did you mean 'cifar100-10s'"),
        # either method runs on all ten paper protocols (tests/test_protocols.py); a tiny benchmark needs preset='tiny'
        (
            {"preset": "paper", "benchmark": "shapes100-10s"},
            r"benchmark='shapes100-10s'.*nsp2 paper recipe.*"
            r"papers' protocols.*use preset='tiny'",
        ),
        (
            {"method": "dmnsp", "preset": "paper", "benchmark": "shapes100-tinted-25-5"},
            r"benchmark='shapes100-tinted-25-5'.*dmnsp paper recipe.*use preset='tiny'",
        ),
        ({"benchmark": "cifar100-10s"}, r"benchmark='cifar100-10s'.*preset='tiny' a shapes100 benchmark"),
        ({"seeds": "abc"}, r"ExperimentConfig\.seeds='abc': accepted: list of int"),
        ({"seeds": 3}, r"ExperimentConfig\.seeds=3"),
        ({"seeds": [0, 0]}, r"seeds.*listed twice"),
        ({"epochs": 0}, r"ExperimentConfig\.epochs=0: accepted: an integer >= 1"),
        ({"epochs": 1.5}, r"ExperimentConfig\.epochs=1.5: accepted: int or None"),
        ({"max_tasks": -1}, r"ExperimentConfig\.max_tasks=-1"),
        ({"device": "gpu"}, r"ExperimentConfig\.device='gpu': accepted: 'auto'.*'cpu', 'cuda', 'cuda:N'"),
        ({"precision": "int8"}, r"ExperimentConfig\.precision='int8': accepted: one of \['fp32', 'bf16', 'fp16'\]"),
        ({"progress": "yes"}, r"ExperimentConfig\.progress='yes': accepted: bool"),
        ({"only": ["Sq"]}, r"ExperimentConfig\.only=\('Sq',\).*did you mean 'Seq'"),
        ({"variants": ["paper"]}, r"ExperimentConfig\.variants=.*None for method='nsp2'"),
        (
            {"method": "dmnsp", "variants": ["official"]},
            r"variants=\('official',\): accepted: one of \['paper', 'code'",
        ),
        ({"overrides": {"lrr": 0.1}}, r"overrides=\{'lrr': 0.1\}: accepted: fields of NSP2Config.*did you mean 'lr'"),
        ({"overrides": {"lr": 0}}, r"NSP2Config\.lr=0"),
        ({"overrides": {"lr": "fast"}}, r"overrides\['lr'\] \(NSP2Config\.lr\)='fast': accepted: float"),
        ({"overrides": {"accumulate": "max"}}, r"NSP2Config\.accumulate\)='max': accepted: one of \['sum', 'mean'\]"),
        ({"overrides": {"conditions": {"eta1": 1.5}}}, r"overrides\['conditions'\].*ConditionSpec\.eta1=1.5"),
        ({"overrides": {"seed": 3}}, r"overrides=\{'seed': 3\}.*the experiment sets those per method"),
        ({"method": "dmnsp", "overrides": {"bottleneck": 0}}, r"DMNSPConfig\.bottleneck=0"),
        ({"method": "dmnsp", "overrides": {"adapter_dropout": 1.5}}, r"DMNSPConfig\.adapter_dropout=1.5"),
    ],
)
def test_invalid_configs_are_rejected_naming_field_value_and_accepted(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ExperimentConfig(**kwargs)


def test_a_missing_data_root_for_a_real_data_set_is_rejected(tmp_path, monkeypatch):
    monkeypatch.setenv("NSCL_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(
        ValueError,
        match=r"ExperimentConfig\.data_root=None: .*cifar-100-python/.*nowhere.*does "
        r"not exist.*download=True",
    ):
        ExperimentConfig(preset="paper", benchmark="cifar100-10s")
    with pytest.raises(ValueError, match=r"data_root='.*'.*has no imagenet-r/"):
        ExperimentConfig(preset="paper", benchmark="imagenet-r-10s", data_root=str(tmp_path))
    ExperimentConfig(preset="paper", benchmark="cifar100-10s", download=True)  # torchvision may fetch it
    (tmp_path / "imagenet-r").mkdir()
    ExperimentConfig(preset="paper", benchmark="imagenet-r-10s", data_root=str(tmp_path))


def test_partial_nested_overrides_change_the_recipes_value():
    config = ExperimentConfig(overrides={"conditions": {"eta1": 0.9}, "milestones": [1, 2]})
    assert config.overrides["conditions"].eta1 == 0.9 and config.overrides["conditions"].eta2 == 0.97
    assert config.overrides["milestones"] == (1, 2)


def test_from_dict_rejects_unknown_fields_with_a_suggestion():
    with pytest.raises(ValueError, match=r"unknown ExperimentConfig field \['benchmrk'\] \(did you mean 'benchmark'"):
        ExperimentConfig.from_dict({"benchmrk": "shapes100-10s"})
    assert ExperimentConfig.from_dict({"max-tasks": 2}).max_tasks == 2


def test_round_trip_through_dict_and_files(tmp_path):
    config = ExperimentConfig(
        method="dmnsp",
        variants=["paper", "top1"],
        seeds=[0, 1, 2],
        epochs=1,
        overrides={"lr": 0.005, "warmup_steps": 2},
        run_root=str(tmp_path),
    )
    assert ExperimentConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    toml = tmp_path / "exp.toml"
    toml.write_text(
        'method = "dmnsp"\nvariants = ["paper", "top1"]\nseeds = [0, 1, 2]\nepochs = 1\n'
        f'run_root = "{tmp_path}"\n[overrides]\nlr = 0.005\nwarmup_steps = 2\n'
    )
    assert ExperimentConfig.from_file(toml) == config
    yaml = tmp_path / "exp.yaml"
    yaml.write_text(
        f"method: dmnsp\nvariants: [paper, top1]\nseeds: [0, 1, 2]\nepochs: 1\nrun_root: {tmp_path}\n"
        "overrides: {lr: 0.005, warmup_steps: 2}\n"
    )
    assert ExperimentConfig.from_file(yaml) == config
    assert ExperimentConfig.from_file(toml, epochs=3).epochs == 3
    bad = tmp_path / "bad.toml"
    bad.write_text('method = "nsp2"\nlr = 0.1\n')
    with pytest.raises(ValueError, match=r"unknown ExperimentConfig field \['lr'\]"):
        ExperimentConfig.from_file(bad)
    with pytest.raises(ValueError, match="unknown config format '.ini'"):
        (tmp_path / "x.ini").write_text("")
        ExperimentConfig.from_file(tmp_path / "x.ini")


def test_overriding_nested_config_round_trips_through_a_file(tmp_path):
    config = ExperimentConfig(overrides={"conditions": {"eta1": 0.5, "rule1": {"mode": "energy", "value": 0.01}}})
    again = ExperimentConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again.overrides["conditions"] == config.overrides["conditions"]


# -- the chapters' guard ---------------------------------------------------------------------------


def test_check_parameters_rejects_a_mistyped_papermill_parameter():
    namespace = {
        "preset": "tiny",
        "benchmark": None,
        "seeds": [0],
        "benchmrk": "cifar100-10s",  # injected typo
        "np": types.ModuleType("numpy"),
        "helper": print,
        "_private": 1,
        "In": [],
        "Out": {},
    }
    with pytest.raises(ValueError, match=r"unknown parameter 'benchmrk' \(did you mean 'benchmark'\?\)"):
        check_parameters(namespace, {"preset", "benchmark", "seeds"})
    del namespace["benchmrk"]
    assert check_parameters(namespace, {"preset", "benchmark", "seeds"}) == {
        "benchmark": None,
        "preset": "tiny",
        "seeds": [0],
    }
    namespace["seeds"] = "abc"  # papermill -p seeds abc
    with pytest.raises(ValueError, match=r"parameter seeds='abc': accepted: list"):
        check_parameters(namespace, {"preset", "benchmark", "seeds"}, types={"seeds": list})


def test_check_parameters_refuses_a_bool_for_an_int_and_values_below_the_least():
    namespace = {"seed": True, "samples_per_class": 4}  # papermill -p seed True
    with pytest.raises(ValueError, match=r"parameter seed=True: accepted: int"):
        check_parameters(namespace, {"seed", "samples_per_class"}, types={"seed": int})
    namespace = {"seed": 0, "samples_per_class": -3}
    with pytest.raises(ValueError, match=r"parameter samples_per_class=-3: accepted: a number >= 1"):
        check_parameters(namespace, {"seed", "samples_per_class"}, at_least={"samples_per_class": 1})
    assert check_parameters({"flag": True}, {"flag"}, types={"flag": bool}) == {"flag": True}


@pytest.mark.parametrize("value", [float("inf"), float("nan"), "inf", "-Infinity", "NaN"])
def test_a_float_field_must_be_finite(value):
    with pytest.raises(ValueError, match=r"NSP2Config\.lr\)=.*: accepted: a finite float"):
        ExperimentConfig(overrides={"lr": value})


def test_an_accelerator_this_machine_lacks_is_named_before_anything_trains(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = ExperimentConfig(device="cuda:1")  # a config may be written anywhere ...
    with pytest.raises(ValueError, match=r"device='cuda:1': accepted: a device this machine has \(no CUDA GPU here\)"):
        config.experiment()  # ... but not run where the device is missing
    ExperimentConfig(device="cpu").check_device()


@pytest.mark.parametrize("suffix", [".toml", ".yaml", ".json"])
def test_an_empty_config_file_is_refused_alike_in_every_format(tmp_path, suffix):
    empty = tmp_path / f"empty{suffix}"
    empty.write_text("\n")
    with pytest.raises(ValueError, match=r"empty\.\w+: the file holds no setting, and an empty config would silently"):
        ExperimentConfig.from_file(empty)


@pytest.mark.parametrize(
    "suffix, text",
    [(".yaml", "method: nsp2\nepochs: 1\nepochs: 3\n"), (".json", '{"epochs": 1, "method": "nsp2", "epochs": 3}')],
)
def test_a_key_given_twice_is_refused(tmp_path, suffix, text):
    twice = tmp_path / f"twice{suffix}"
    twice.write_text(text)
    with pytest.raises(ValueError, match=r"key\(s\) \['epochs'\] given twice; the last would silently win"):
        ExperimentConfig.from_file(twice)


def test_a_directory_given_as_config_file_is_called_a_directory(tmp_path):
    with pytest.raises(ValueError, match="is a directory; give a .toml, .yaml or .json file in it"):
        ExperimentConfig.from_file(tmp_path)
