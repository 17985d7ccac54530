"""`python -m nscl run | sweep | report`: options generated from ExperimentConfig, files, errors, the report."""

import dataclasses
import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from nscl.cli import main
from nscl.experiment.config import ExperimentConfig


def _help(capsys, *argv):
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines


def test_run_help_lists_every_field_with_type_default_and_accepted_values(capsys):
    text = _help(capsys, "run")
    for f in dataclasses.fields(ExperimentConfig):
        assert "--" + f.name.replace("_", "-") in text, f.name
    assert "[type: one of 'nsp2', 'dmnsp'; default: 'nsp2'; accepted: nsp2, dmnsp]" in text
    assert "[type: list of int or None; default: None]" in text  # seeds
    assert "accepted: cifar100-10-10, cifar100-10s" in text and "shapes100-10s" in text  # benchmark
    assert "--progress, --no-progress" in text and "[type: bool; default: False]" in text
    assert "--config FILE" in text


def test_sweep_help_lists_the_grid_and_the_shared_fields(capsys):
    text = _help(capsys, "sweep")
    for flag in (
        "--methods",
        "--benchmarks",
        "--seeds",
        "--address",
        "--run-root",
        "--epochs",
        "--max-tasks",
        "--only",
        "--overrides",
        "--device",
    ):
        assert flag in text, flag


def test_run_dry_run_merges_a_file_with_the_options_given(tmp_path, capsys):
    config = tmp_path / "exp.toml"
    config.write_text('method = "nsp2"\nepochs = 3\nseeds = [0, 1]\n[overrides]\nlr = 0.02\ngamma = 0.5\n')
    assert (
        main(
            [
                "run",
                "--config",
                str(config),
                "--dry-run",
                "--epochs",
                "1",
                "--only",
                "Seq",
                "--overrides",
                "lr=0.005",
                'conditions={"eta1": 0.9}',
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    printed = json.loads(out[: out.rindex("}") + 1])
    assert printed["epochs"] == 1 and printed["seeds"] == [0, 1] and printed["only"] == ["Seq"]
    assert printed["overrides"]["lr"] == 0.005 and printed["overrides"]["gamma"] == 0.5
    assert printed["overrides"]["conditions"]["eta1"] == 0.9
    assert "methods: ['VPT-Seq']" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--method", "dmnsp", "--backbone", "vit"], "ExperimentConfig.backbone='vit'"),
        (["--epochs", "0"], "ExperimentConfig.epochs=0"),
        (["--epochs", "two"], "'two' is not an integer"),
        (["--overrides", "lrr=1"], "did you mean 'lr'"),
        (["--overrides", "lr"], "give KEY=VALUE"),
        (["--benchmrk", "x"], "unrecognized arguments: --benchmrk"),
        (["--bench", "shapes100-10s"], "unrecognized arguments: --bench"),  # no silent abbreviations
    ],
)
def test_invalid_options_exit_2_naming_the_field(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--dry-run", *argv])
    assert exit_.value.code == 2
    assert message in " ".join(capsys.readouterr().err.split())


def test_report_prints_mean_and_std_per_benchmark_and_method(tmp_path, capsys):
    from nscl.data import BatchTransform, ContinualData, Scenario, load_dataset
    from nscl.data.benchmarks import BENCHMARKS
    from nscl.experiment.experiment import Experiment
    from nscl.experiment.run import RunConfig
    from nscl.methods.linear import SharedLayerClassifier, SharedLayerConfig
    from nscl.models.features import RandomReLUFeatures

    digits = ContinualData(
        load_dataset("digits", "train"), load_dataset("digits", "test"), Scenario.equal_split(list(range(10)), 5)
    )

    def method(seed):
        return SharedLayerClassifier(
            RandomReLUFeatures(64, 128, seed=seed),
            128,
            BatchTransform(size=8, mean=(0.3,) * 3, std=(0.4,) * 3),
            SharedLayerConfig(),
        )

    experiment = Experiment(
        BENCHMARKS["shapes100-10s"],
        lambda seed: digits,
        RunConfig(epochs=1, batch_size=32, progress=False, max_tasks=2),
        {"Seq": method},
    )
    experiment.run_all(seeds=[0, 1], run_root=tmp_path / "a")
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "== shapes100-10s (2 tasks) ==" in out and "last_accuracy" in out
    row = next(line for line in out.splitlines() if line.startswith("Seq"))
    assert row.count("±") == 3 and row.split()[-1] == "2"  # three metrics, two seeds
    with pytest.raises(SystemExit):
        main(["report", str(tmp_path / "missing")])


def test_python_dash_m_nscl_runs_the_command_line(tmp_path):
    env = {**os.environ, "NSCL_CACHE": os.environ.get("NSCL_CACHE", str(tmp_path))}
    done = subprocess.run(
        [sys.executable, "-m", "nscl", "run", "--dry-run", "--method", "dmnsp", "--only", "DMNSP"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "methods: ['DMNSP']" in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "nscl", "run", "--device", "gpu"], capture_output=True, text=True, env=env, timeout=300
    )
    assert bad.returncode == 2 and "ExperimentConfig.device='gpu'" in bad.stderr


def _two_seed_root(root):
    for seed in (0, 1):
        run = root / "Seq" / f"seed{seed}"
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({"tasks_done": 2, "last_accuracy": 0.5 + seed / 10}))
        (run / "run.json").write_text(json.dumps({"benchmark": "shapes100-10s", "method": "Seq", "seed": seed}))
        (run / "config.json").write_text(json.dumps({"run_config": {"epochs": 1}}))
    return root / "Seq" / "seed1" / "metrics.json"


def test_report_names_an_unreadable_run_instead_of_dropping_it(tmp_path, capsys):
    damaged = _two_seed_root(tmp_path)
    damaged.write_text('{"tasks_done": 2, "last_acc')  # half-written
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(damaged) in err and "not valid JSON" in err and "--skip-unreadable" in err
    csv = tmp_path / "runs.csv"
    assert main(["report", str(tmp_path), "--skip-unreadable", "--csv", str(csv)]) == 0
    out = capsys.readouterr().out
    assert f"left out (unreadable): {damaged}: is not valid JSON" in out
    row = next(line for line in out.splitlines() if line.startswith("Seq"))
    assert row.split()[-1] == "1"  # the mean says it holds one seed
    assert len(pd.read_csv(csv)) == 1


def test_report_refuses_two_runs_of_one_method_and_seed_with_a_message(tmp_path, capsys):
    _two_seed_root(tmp_path / "a")
    _two_seed_root(tmp_path / "b")
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "same benchmark, method, seed and tasks done" in err and "Traceback" not in err


def test_threads_are_set_for_this_process_and_must_be_positive(tmp_path, capsys, monkeypatch):
    import torch

    from nscl import cli

    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    cli._set_threads(1)
    cli._set_threads(None)  # default: torch's own
    assert calls == [1]
    with pytest.raises(SystemExit) as stop:
        main(["run", "--threads", "0", "--dry-run"])
    assert stop.value.code == 2 and "--threads: 0: expected an integer >= 1" in capsys.readouterr().err
