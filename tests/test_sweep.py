"""nscl.experiment.grid: a tiny grid on a local Ray with 2 workers, resumable, with one deliberately failing point."""

import json
import os
import time

import pandas as pd
import pytest

from nscl.cli import main
from nscl.experiment.config import ExperimentConfig
from nscl.experiment.grid import SweepRun, expand, point_dir, sweep
from nscl.paths import repo_root
from nscl.results.collect import report_tables

SETTINGS = dict(only=["Seq"], epochs=1, max_tasks=2)


@pytest.fixture(scope="module")
def tiny_cache():
    """The tiny backbones' cache (as `make test` sets it), warmed once so that workers only read it."""
    old = os.environ.get("NSCL_CACHE")
    os.environ.setdefault("NSCL_CACHE", str(repo_root() / ".cache" / "nscl"))
    from nscl.models.tiny import pretrained_tiny_vit

    pretrained_tiny_vit()
    yield
    if old is None:
        os.environ.pop("NSCL_CACHE", None)


@pytest.fixture(scope="module")
def ray_session(tiny_cache):
    ray = pytest.importorskip("ray")
    yield ray
    ray.shutdown()


def test_expand_validates_every_point_before_running(tmp_path):
    runs = expand(["nsp2", "dmnsp"], ["shapes100-10s", "shapes100-tinted-10s"], [0, 1, 2], tmp_path, **SETTINGS)
    assert len(runs) == 12 and len({r.run_dir for r in runs}) == 12
    assert runs[0].run_dir == tmp_path / "nsp2" / "shapes100-10s" / "seed0" and runs[0].config.seeds == (0,)
    with pytest.raises(ValueError, match=r"(?s)invalid points.*nsp2 on cifar100-10s: .*preset='tiny'"):
        expand(["nsp2"], ["shapes100-10s", "cifar100-10s"], [0], tmp_path)
    with pytest.raises(ValueError, match="seeds must be a list of ints"):
        expand(["nsp2"], ["shapes100-10s"], 3, tmp_path)
    with pytest.raises(ValueError, match=r"ExperimentConfig\.epochs=0"):
        expand(["nsp2"], ["shapes100-10s"], [0], tmp_path, epochs=0)


def test_sweep_command_lists_the_points(tmp_path, capsys):
    assert (
        main(
            [
                "sweep",
                "--dry-run",
                "--methods",
                "nsp2",
                "dmnsp",
                "--benchmarks",
                "shapes100-10s",
                "--seeds",
                "0",
                "1",
                "--run-root",
                str(tmp_path),
                "--epochs",
                "1",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "4 point(s)" in out and "dmnsp/shapes100-10s/seed1" in out
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "--methods", "nsp3", "--run-root", str(tmp_path)])
    assert exit_.value.code == 2


def test_a_tiny_grid_on_local_ray_resumes_skips_and_reports_a_failing_point(tmp_path, ray_session, capsys):
    start = time.perf_counter()
    runs = expand(["nsp2"], ["shapes100-10s"], [0, 1], tmp_path, **SETTINGS)
    failing = ExperimentConfig(seeds=[2], overrides={"lr": 1e30}, **SETTINGS)  # diverges at once
    runs.append(SweepRun(failing, point_dir(tmp_path, failing)))

    # seed 1 stopped after its first task (here: a sequential sweep with max_tasks=1, no Ray)
    first = expand(["nsp2"], ["shapes100-10s"], [1], tmp_path, **{**SETTINGS, "max_tasks": 1})
    assert [o["state"] for o in sweep(first, backend="local")] == ["done"]
    seed1 = runs[1].run_dir / "VPT-Seq"
    task1_log = pd.read_csv(seed1 / "tasks.csv")

    outcomes = sweep(runs, num_cpus=2)  # a local Ray with 2 CPU slots: 2 points at a time
    assert ray_session.cluster_resources()["CPU"] == 2
    assert [o["state"] for o in outcomes] == ["done", "done", "failed"]
    assert "DivergedError" in outcomes[2]["error"] and "lower the learning rate" in outcomes[2]["error"]
    status = json.loads((runs[2].run_dir / "status.json").read_text())
    assert status["state"] == "failed" and "task 1/2, epoch 1/1" in status["error"]
    for run in runs[:2]:
        metrics = json.loads((run.run_dir / "VPT-Seq" / "metrics.json").read_text())
        assert metrics["tasks_done"] == 2 and 0 < metrics["last_accuracy"] <= 1
    resumed_log = pd.read_csv(seed1 / "tasks.csv")
    pd.testing.assert_frame_equal(resumed_log.iloc[:1], task1_log)  # task 1 was read back, not retrained

    again = sweep(runs[:2], num_cpus=2)  # started again: finished points are skipped
    assert [o["state"] for o in again] == ["skipped", "skipped"]

    tables = report_tables(tmp_path)
    assert list(tables) == ["shapes100-10s (2 tasks)"]
    assert tables["shapes100-10s (2 tasks)"].loc["VPT-Seq", "seeds"] == 2
    capsys.readouterr()
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "VPT-Seq" in out and "1 failed sweep point(s)" in out and "nsp2/shapes100-10s/seed2" in out
    print(f"tiny grid on local Ray: {time.perf_counter() - start:.1f} s")


@pytest.mark.parametrize("num_cpus", [0, -2, True, 1.5])
def test_a_sweep_without_cpu_slots_is_refused_before_ray_starts(tmp_path, num_cpus, monkeypatch):
    import nscl.experiment.grid as grid_module

    monkeypatch.setattr(grid_module, "_run_on_ray", lambda *a: pytest.fail("Ray must not start"))
    with pytest.raises(ValueError, match=r"num_cpus=.*: every point needs a CPU slot; give an integer >= 1"):
        grid_module.sweep([], backend="ray", num_cpus=num_cpus)


def test_the_command_line_refuses_zero_cpu_slots_with_a_message(tmp_path, capsys):
    from nscl.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["sweep", "--methods", "nsp2", "--num-cpus", "0", "--run-root", str(tmp_path)])
    assert stop.value.code == 2
    assert "--num-cpus: 0: expected an integer >= 1" in capsys.readouterr().err


def test_a_refused_rerun_leaves_a_finished_points_status_as_it_was(tmp_path, monkeypatch):
    from nscl.experiment import grid
    from nscl.experiment.checkpoints import RunMismatchError

    config = ExperimentConfig(seeds=[0], epochs=1)
    done = {"key": "nsp2/shapes100-10s/seed0", "state": "done", "config": config.to_dict(), "seconds": 12.0}
    (tmp_path / "status.json").write_text(json.dumps(done))

    def refuse(self):
        raise RunMismatchError("holds results of a run with other settings")

    monkeypatch.setattr(ExperimentConfig, "experiment", refuse)
    status = grid.run_point(config.replace(epochs=2).to_dict(), str(tmp_path))
    assert status["state"] == "failed" and "other settings" in status["error"]
    assert json.loads((tmp_path / "status.json").read_text()) == done  # still done: report lists it as finished
