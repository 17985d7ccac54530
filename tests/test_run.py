import json

import numpy as np
import pandas as pd
import pytest
import torch

from nscl.analysis.invariance import OutputRecorder
from nscl.data import BatchTransform, ContinualData, Scenario, load_dataset
from nscl.experiment.run import RunConfig, RunMismatchError, run_continual
from nscl.methods.linear import SharedLayerClassifier, SharedLayerConfig
from nscl.models.features import RandomReLUFeatures
from nscl.nullspace import NullSpaceRule

CONFIG = RunConfig(epochs=3, batch_size=32, progress=False)


@pytest.fixture(scope="module")
def digits():
    return ContinualData(
        load_dataset("digits", "train"), load_dataset("digits", "test"), Scenario.equal_split(list(range(10)), 5)
    )


def make_method(null_space=None, **kw):
    transform = BatchTransform(size=8, mean=(0.3,) * 3, std=(0.4,) * 3)
    return SharedLayerClassifier(
        RandomReLUFeatures(64, 128), 128, transform, SharedLayerConfig(null_space=null_space, **kw)
    )


def test_seq_runs_end_to_end_and_writes_tidy_results(digits, tmp_path):
    result = run_continual(make_method(), digits, CONFIG, run_dir=tmp_path)
    acc = result.accuracy
    assert acc.shape == (5, 5) and np.isnan(acc[0, 1]) and np.all(np.isfinite(np.tril(acc)))
    assert np.all(np.diag(result.accuracy_task_aware) > 0.9)  # it learns each task ...
    assert result.metrics.forgetting > 0.2  # ... and sequential training forgets
    frame = result.accuracy_frame()
    assert list(frame.columns) == ["train_task", "eval_task", "accuracy", "accuracy_task_aware", "n_test"]
    assert len(frame) == 15
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["tasks_done"] == 5 and saved["last_accuracy"] == pytest.approx(result.metrics.last_accuracy)
    assert (tmp_path / "accuracy.csv").exists() and (tmp_path / "tasks.csv").exists()


def test_exact_null_space_keeps_old_task_outputs(digits):
    method = make_method(NullSpaceRule("energy", 0.0), dtype="float64")
    # The null space is estimated from task 0's training inputs, so outputs on exactly those stay put.
    recorder = OutputRecorder(digits.task(0, "train").images, columns=slice(0, 2))
    result = run_continual(method, digits, CONFIG, after_task=recorder)
    changes = recorder.changes()
    assert len(changes) == 4 and max(changes) < 1e-10, changes
    seq = OutputRecorder(digits.task(0, "train").images, columns=slice(0, 2))
    run_continual(make_method(dtype="float64"), digits, CONFIG, after_task=seq)
    assert min(seq.changes()) > 1e-3  # without the projection the same outputs move
    assert result.metrics_task_aware.forgetting == 0.0
    assert min(np.diag(result.accuracy_task_aware)) > 0.6  # new tasks are still learnt


def test_killed_run_resumes_with_the_same_metrics(digits, tmp_path):
    full = run_continual(make_method(NullSpaceRule("energy", 1e-2)), digits, CONFIG)

    class Killed(RuntimeError):
        pass

    method = make_method(NullSpaceRule("energy", 1e-2))
    original_step = method.training_step

    def dying_step(images, labels):
        if method.task.index == 3:
            raise Killed
        return original_step(images, labels)

    method.training_step = dying_step
    with pytest.raises(Killed):
        run_continual(method, digits, CONFIG, run_dir=tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text())["tasks_done"] == 3
    resumed = run_continual(make_method(NullSpaceRule("energy", 1e-2)), digits, CONFIG, run_dir=tmp_path)
    np.testing.assert_array_equal(resumed.accuracy, full.accuracy)
    assert resumed.metrics == full.metrics


def test_a_run_dir_with_other_settings_is_never_overwritten(digits, tmp_path):
    run_continual(
        make_method(), digits, RunConfig(epochs=1, batch_size=32, progress=False, max_tasks=1), run_dir=tmp_path
    )
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(RunMismatchError, match="other settings"):
        run_continual(make_method(lr=0.5), digits, RunConfig(epochs=1, batch_size=32, progress=False), run_dir=tmp_path)
    with pytest.raises(RunMismatchError, match="resume=True"):
        run_continual(make_method(), digits, CONFIG, run_dir=tmp_path, resume=False)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def test_bad_run_config_fails_clearly():
    with pytest.raises(ValueError, match="epochs"):
        RunConfig(epochs=0)
    with pytest.raises(ValueError, match="precision"):
        RunConfig(precision="int8")


# -- checkpoints and run directories (issue 13) ------------------------------------------------------


def _ckpt_tasks(path):
    return torch.load(path, weights_only=False)["tasks_done"]


def _files(run_dir, names=("accuracy.csv", "metrics.json", "config.json", "tasks.csv")):
    return {n: (run_dir / n).read_bytes() for n in names if (run_dir / n).exists()}


def test_the_previous_checkpoint_is_kept_and_no_temporary_file_is_left(digits, tmp_path):
    run_continual(
        make_method(), digits, RunConfig(epochs=1, batch_size=32, progress=False, max_tasks=3), run_dir=tmp_path
    )
    assert _ckpt_tasks(tmp_path / "checkpoint.pt") == 3 and _ckpt_tasks(tmp_path / "checkpoint.prev.pt") == 2
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_a_damaged_checkpoint_is_reported_and_the_run_resumes_from_the_previous_one(digits, tmp_path, damage):
    from nscl.experiment.run import CheckpointWarning

    config = RunConfig(epochs=1, batch_size=32, progress=False)
    full = run_continual(make_method(NullSpaceRule("energy", 1e-2)), digits, config)
    run_continual(
        make_method(NullSpaceRule("energy", 1e-2)),
        digits,
        RunConfig(epochs=1, batch_size=32, progress=False, max_tasks=3),
        run_dir=tmp_path,
    )
    ckpt = tmp_path / "checkpoint.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(
        {"truncated": data[: len(data) // 2], "empty": b"", "garbage": b"not a checkpoint\x00" * 50}[damage]
    )
    with pytest.warns(CheckpointWarning, match=rf"{ckpt}.*resuming from the previous checkpoint \(after task 2\)"):
        resumed = run_continual(make_method(NullSpaceRule("energy", 1e-2)), digits, config, run_dir=tmp_path)
    np.testing.assert_array_equal(resumed.accuracy, full.accuracy)
    assert (tmp_path / "checkpoint.damaged.pt").exists() and _ckpt_tasks(ckpt) == 5


def test_with_no_readable_checkpoint_the_run_starts_over_and_says_so(digits, tmp_path):
    from nscl.experiment.run import CheckpointWarning

    config = RunConfig(epochs=1, batch_size=32, progress=False)
    full = run_continual(make_method(), digits, config)
    run_continual(
        make_method(), digits, RunConfig(epochs=1, batch_size=32, progress=False, max_tasks=2), run_dir=tmp_path
    )
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    (tmp_path / "checkpoint.prev.pt").write_bytes(b"\x80garbage")
    with pytest.warns(CheckpointWarning, match="starts over from the first task"):
        again = run_continual(make_method(), digits, config, run_dir=tmp_path)
    np.testing.assert_array_equal(again.accuracy, full.accuracy)


def test_a_finished_run_reopened_with_fewer_tasks_reads_back_the_first_ones(digits, tmp_path):
    config = RunConfig(epochs=1, batch_size=32, progress=False, max_tasks=3)
    first = run_continual(make_method(), digits, config, run_dir=tmp_path)
    before = _files(tmp_path)
    fewer = run_continual(
        make_method(), digits, RunConfig(epochs=1, batch_size=32, progress=False, max_tasks=2), run_dir=tmp_path
    )
    assert fewer.accuracy.shape == (2, 2) and len(fewer.tasks) == 2
    np.testing.assert_array_equal(fewer.accuracy, first.accuracy[:2, :2])
    assert fewer.extras["tasks_in_state"] == 3
    assert _files(tmp_path) == before  # the 3-task results are not rewritten


def test_results_of_other_settings_are_never_overwritten_even_without_a_checkpoint(digits, tmp_path):
    small = RunConfig(epochs=1, batch_size=32, progress=False, max_tasks=2)
    run_continual(make_method(), digits, small, run_dir=tmp_path)
    (tmp_path / "checkpoint.pt").unlink()
    (tmp_path / "checkpoint.prev.pt").unlink()
    before = _files(tmp_path)
    with pytest.raises(RunMismatchError, match=r"config\.json -> now: method_config\.lr: 0\.01 -> 0\.5\)") as err:
        run_continual(make_method(lr=0.5), digits, small, run_dir=tmp_path)
    assert len(str(err.value)) < 300 + len(str(tmp_path))  # only the setting that differs, not every setting
    with pytest.raises(RunMismatchError, match="resume=True"):
        run_continual(make_method(), digits, small, run_dir=tmp_path, resume=False)
    assert _files(tmp_path) == before
    (tmp_path / "config.json").unlink()  # results of unknown settings: refused too
    with pytest.raises(RunMismatchError, match="no config.json"):
        run_continual(make_method(), digits, small, run_dir=tmp_path)
    assert _files(tmp_path) == {k: v for k, v in before.items() if k != "config.json"}


def test_the_same_settings_without_a_checkpoint_start_over_in_place(digits, tmp_path):
    small = RunConfig(epochs=1, batch_size=32, progress=False, max_tasks=2)
    first = run_continual(make_method(), digits, small, run_dir=tmp_path)
    (tmp_path / "checkpoint.pt").unlink()
    (tmp_path / "checkpoint.prev.pt").unlink()
    again = run_continual(make_method(), digits, small, run_dir=tmp_path)
    np.testing.assert_array_equal(again.accuracy, first.accuracy)


def test_run_all_merges_run_root_metrics_across_calls(digits, tmp_path):
    import pandas as pd

    from nscl.data.benchmarks import BENCHMARKS
    from nscl.experiment.experiment import Experiment

    experiment = Experiment(
        benchmark=BENCHMARKS["shapes100-10s"],
        data=lambda seed: digits,
        run=RunConfig(epochs=1, batch_size=32, progress=False, max_tasks=2),
        methods={"NS": lambda seed: make_method(NullSpaceRule("energy", 1e-2)), "Seq": lambda seed: make_method()},
    )
    experiment.run_all(seeds=[0, 1], run_root=tmp_path, only=["NS"])
    experiment.run_all(seeds=[0], run_root=tmp_path, only=["Seq"])
    frame = pd.read_csv(tmp_path / "metrics.csv")
    assert sorted(zip(frame.method, frame.seed)) == [("NS", 0), ("NS", 1), ("Seq", 0)]
    experiment.run_all(seeds=[0], run_root=tmp_path, only=["Seq"])  # again: replaced, not duplicated
    assert len(pd.read_csv(tmp_path / "metrics.csv")) == 3
    labels = json.loads((tmp_path / "Seq" / "seed0" / "run.json").read_text())
    assert labels["method"] == "Seq" and labels["seed"] == 0 and labels["benchmark"] == "shapes100-10s"


def test_after_task_is_called_for_the_tasks_this_call_trains(digits, tmp_path):
    calls = []
    record = lambda t, method: calls.append((t, method.name))  # noqa: E731
    run_continual(
        make_method(), digits, RunConfig(epochs=1, batch_size=32, max_tasks=2), run_dir=tmp_path, after_task=record
    )
    assert [t for t, _ in calls] == [0, 1]
    calls.clear()  # resumed: tasks 1-2 come from the checkpoint, tasks 3-5 are trained
    run_continual(make_method(), digits, RunConfig(epochs=1, batch_size=32), run_dir=tmp_path, after_task=record)
    assert [t for t, _ in calls] == [2, 3, 4]


def test_a_finished_run_read_back_writes_nothing(digits, tmp_path, monkeypatch):
    """So that a run root on read-only storage can still print its table."""
    from nscl.data.benchmarks import BENCHMARKS
    from nscl.experiment import checkpoints, experiment, run
    from nscl.experiment.experiment import Experiment

    small = RunConfig(epochs=1, batch_size=32, progress=False, max_tasks=2)
    setup = Experiment(BENCHMARKS["shapes100-10s"], lambda seed: digits, small, {"Seq": lambda seed: make_method()})
    first, _ = setup.run_all(seeds=[0], run_root=tmp_path)

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    for module in (checkpoints, experiment, run):
        for name in ("atomic_write", "atomic_write_text", "save_checkpoint", "write_results"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, read_only)
    again, _ = setup.run_all(seeds=[0], run_root=tmp_path)
    pd.testing.assert_frame_equal(again, first)


def test_a_field_added_later_leaves_older_runs_valid_at_its_default():
    """DMNSPConfig.project came after the reference runs: at its default the fingerprint is what it was."""
    from dataclasses import fields

    from nscl.dmnsp.method import DMNSPConfig
    from nscl.experiment.run import settings_of

    assert "project" not in settings_of(DMNSPConfig())
    assert settings_of(DMNSPConfig(project="update"))["project"] == "update"  # a new setting is a new run
    assert set(settings_of(DMNSPConfig())) == {f.name for f in fields(DMNSPConfig) if f.name != "project"}
