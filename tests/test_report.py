"""nscl.results.report on a synthetic run root: two methods per family, two seeds, known accuracy matrices."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from nscl.metrics import summarize
from nscl.results import collect, report
from nscl.results.collect import report_tables
from nscl.results.plots import plot_accuracy_matrix
from nscl.results.tables import step_curves

NAN = float("nan")
# per (method, seed): a 2-task accuracy matrix R[i, j]; every task has 100 test images
MATRICES = {
    ("VPT-NSP²", 0): [[1.0, NAN], [0.8, 0.9]],
    ("VPT-NSP²", 1): [[0.9, NAN], [0.6, 0.7]],
    ("VPT-Seq", 0): [[1.0, NAN], [0.5, 0.9]],
    ("VPT-Seq", 1): [[0.9, NAN], [0.4, 0.8]],
    ("DMNSP", 0): [[0.7, NAN], [0.6, 0.5]],
    ("DMNSP", 1): [[0.8, NAN], [0.7, 0.6]],
    ("adapter-Seq", 0): [[0.7, NAN], [0.3, 0.6]],
    ("adapter-Seq", 1): [[0.8, NAN], [0.5, 0.6]],
}


def write_run(run_dir, benchmark: str, method: str, seed: int, matrix, epochs: int = 1) -> None:
    """One run directory as nscl.experiment.run writes it: accuracy.csv, metrics.json, config.json, run.json."""
    r = np.array(matrix, dtype=float)
    sizes = np.full(len(r), 100)
    run_dir.mkdir(parents=True)
    rows = [
        dict(train_task=i, eval_task=j, accuracy=r[i, j], accuracy_task_aware=r[i, j], n_test=100)
        for i in range(len(r))
        for j in range(i + 1)
    ]
    pd.DataFrame(rows).to_csv(run_dir / "accuracy.csv", index=False)
    metrics = {"tasks_done": len(r), **summarize(r, sizes).as_dict(), "settings": "0"}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "run.json").write_text(json.dumps({"benchmark": benchmark, "method": method, "seed": seed}))
    config = {
        "method": method,
        "run_config": {"epochs": epochs, "batch_size": 4, "seed": seed, "device": "cpu", "precision": "fp32"},
    }
    (run_dir / "config.json").write_text(json.dumps(config))


@pytest.fixture
def root(tmp_path):
    for (method, seed), matrix in MATRICES.items():
        family = "nsp2" if method.startswith("VPT") else "dmnsp"
        write_run(tmp_path / family / "shapes100-10s" / f"seed{seed}" / method, "shapes100-10s", method, seed, matrix)
    return tmp_path


def test_a_missing_or_empty_root_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"(?s)does not exist.*python -m nscl sweep"):
        collect.resolve_run_root(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no run"):
        collect.resolve_run_root(tmp_path / "empty")


def test_means_and_stds_over_seeds_are_the_known_ones(root):
    runs = collect.load_runs(collect.resolve_run_root(root))
    assert len(runs) == 8 and set(runs.epochs) == {1}
    summary = report.seed_summary(runs).set_index(["method", "metric"])
    last = summary.loc[("VPT-NSP²", "last_accuracy")]  # seeds: (0.8 + 0.9) / 2 = 0.85 and 0.65
    assert last["mean"] == pytest.approx(75.0) and last["std"] == pytest.approx(math.sqrt(200))
    assert last["seeds"] == 2
    forgetting = summary.loc[("VPT-NSP²", "forgetting")]  # 1.0 - 0.8 and 0.9 - 0.6
    assert forgetting["mean"] == pytest.approx(25.0) and forgetting["std"] == pytest.approx(math.sqrt(50))
    average = summary.loc[("DMNSP", "average_incremental_accuracy")]  # (0.7 + 0.55) / 2, (0.8 + 0.65) / 2
    assert average["mean"] == pytest.approx(67.5)
    table = report.benchmark_table(report.seed_summary(runs), "shapes100-10s", 2)
    assert table.loc["VPT-NSP²", "last (ours)"] == "75.0 ± 14.1"
    assert list(table.index) == ["VPT-Seq", "VPT-NSP²", "adapter-Seq", "DMNSP"]


def test_mean_matrix_and_per_task_curves(root):
    runs = collect.load_runs(root)
    accuracy = collect.load_accuracy(runs)
    np.testing.assert_allclose(
        report.mean_matrix(accuracy, "shapes100-10s", 2, "VPT-NSP²"), [[0.95, np.nan], [0.7, 0.8]]
    )
    curves = step_curves(accuracy)
    seed0 = curves[(curves.method == "VPT-NSP²") & (curves.seed == 0)].sort_values("task")
    np.testing.assert_allclose(seed0.accuracy, [1.0, 0.85])
    with pytest.raises(ValueError, match="no accuracy matrix"):
        report.mean_matrix(accuracy, "shapes100-10s", 2, "nobody")


def test_cross_method_table_pairs_seeds_and_gains_over_seq(root):
    cross = report.cross_method_table(collect.load_runs(root)).set_index("metric")
    last = cross.loc["last"]
    # NSP² last 0.85, 0.65; DMNSP 0.55, 0.65: paired +30 and 0 points
    assert last["paired_mean"] == pytest.approx(15.0) and last["paired_min"] == pytest.approx(0.0)
    assert last["paired_max"] == pytest.approx(30.0) and last["paired_seeds"] == 2
    # NSP² - VPT-Seq: 0.85 - 0.7 and 0.65 - 0.6; DMNSP - adapter-Seq: 0.55 - 0.45 and 0.65 - 0.55
    assert last["nsp2_gain_mean"] == pytest.approx(10.0) and last["dmnsp_gain_mean"] == pytest.approx(10.0)
    assert last["protocol"] == "shapes100: 10 tasks, 5 classes each"


def test_protocols_ignore_the_class_order_and_the_background():
    assert report.protocol_of("cifar100-10s") == report.protocol_of("cifar100-10-10")
    assert report.protocol_of("shapes100-10s") == report.protocol_of("shapes100-tinted-10s")
    assert report.protocol_of("cifar100-10s") != report.protocol_of("cifar100-20s")
    assert report.protocol_of("made-up") == "made-up"


def test_methods_on_their_own_backgrounds_meet_on_one_protocol(tmp_path):
    for (method, seed), matrix in MATRICES.items():
        benchmark = "shapes100-10s" if method.startswith("VPT") else "shapes100-tinted-10s"
        write_run(tmp_path / method / f"seed{seed}", benchmark, method, seed, matrix)
    cross = report.cross_method_table(collect.load_runs(tmp_path))
    assert len(cross) == 3 and not cross.same_benchmark.any()
    assert set(cross["NSP² − DMNSP (paired)"]) == {"— (different benchmarks)"}
    assert cross.set_index("metric").loc["last", "nsp2_gain_mean"] == pytest.approx(10.0)


def test_papers_numbers_join_by_label_with_their_source(root):
    write_run(root / "paper" / "VPT-NSP" / "seed0", "cifar100-10s", "VPT-NSP²", 0, [[1.0, NAN], [0.9, 0.95]])
    runs = collect.load_runs(root)
    summary = report.seed_summary(runs)
    table = report.benchmark_table(summary, "cifar100-10s", 2)
    row = table.loc["VPT-NSP²"]
    # the paper's ± over seeds (Table 2) beside its number
    assert row["last (ours)"] == "92.5" and row["last (paper)"] == "91.74 ± 0.63"
    assert row["forgetting (paper)"] == "3.28 ± 0.45"
    assert "lu2024nsp2" in row["paper source"] and "Table 1" in row["paper source"]
    assert row["avg incremental (paper)"] == "—" and row["seeds"] == 1
    assert table.loc["VPT-Seq", "last (ours)"] == "not run" and table.loc["VPT-Seq", "last (paper)"] == "87.27"
    secondary = report.benchmark_table(summary, "cifar100-10-10", 10).loc["DMNSP", "paper source"]
    assert "kang2025dmnsp" in secondary and "(secondary)" in secondary and "[repository README]" in secondary
    tiny = report.benchmark_table(summary, "shapes100-10s", 2)
    assert set(tiny["last (paper)"]) == {"none reported"}
    assert set(tiny["paper source"]) == {"no reported numbers for shapes100-10s"}
    bare = report.benchmark_table(summary, "shapes100-10s", 2, drop_unreported=True)
    assert list(bare.columns) == ["last (ours)", "avg incremental (ours)", "forgetting (ours)", "seeds"]
    kept = report.benchmark_table(summary, "cifar100-10s", 2, drop_unreported=True)
    assert list(kept.columns) == list(table.columns)  # reported numbers are never dropped


def test_two_runs_of_one_method_and_seed_are_refused(root):
    write_run(
        root / "again" / "VPT-NSP²" / "seed0", "shapes100-10s", "VPT-NSP²", 0, MATRICES[("VPT-NSP²", 0)], epochs=5
    )
    with pytest.raises(ValueError, match="same benchmark, method, seed"):
        collect.load_runs(root)
    with pytest.raises(ValueError, match="same benchmark, method, seed"):  # python -m nscl report, too
        report_tables(root)


def test_adam_moments_are_read_from_report_files(root):
    run_dir = root / "dmnsp" / "shapes100-10s" / "seed0" / "DMNSP"
    rows = [
        {
            "task": t,
            "tower": "visual",
            "weight": "down_proj",
            "share_nonfinite_exp_avg_sq": 0.5 * t,
            "share_nonfinite_exp_avg": 0.0,
            "share_unchanged": 0.1,
            "n_entries": 8,
        }
        for t in range(2)
    ]
    torch.save({"adam_moments": rows, "log": []}, run_dir / "report.pt")
    moments = report.adam_moments(collect.load_runs(root))
    assert len(moments) == 2 and set(moments.method) == {"DMNSP"} and moments.share_nonfinite_exp_avg_sq.max() == 0.5
    assert report.adam_moments(collect.load_runs(root)[lambda f: f.method != "DMNSP"]).empty


def test_cross_method_sentences_read_the_table(root):
    write_run(root / "paper" / "VPT-NSP" / "seed0", "cifar100-10s", "VPT-NSP²", 0, [[1.0, NAN], [0.9, 0.95]])
    write_run(root / "paper" / "DMNSP" / "seed0", "cifar100-10-10", "DMNSP", 0, [[1.0, NAN], [0.8, 0.95]])
    sentences = report.cross_method_sentences(report.cross_method_table(collect.load_runs(root)))
    assert len(sentences) == 6
    cifar = [s for s in sentences if s.startswith("cifar100") and ", last:" in s][0]
    assert "NSP² ahead by 5.0 points (different benchmarks, not paired)" in cifar
    assert "NSP² − its Seq: no common seed" in cifar
    shapes = [s for s in sentences if s.startswith("shapes100") and ", last:" in s][0]
    # paired NSP² - DMNSP: +30 and 0 points; NSP² - VPT-Seq: +15 and +5
    assert "NSP² ahead by 15.0 points (the 2 seeds do not all agree)" in shapes
    assert "NSP² − its Seq +10.0 (all 2 seeds agree)" in shapes
    forgetting = [s for s in sentences if s.startswith("shapes100") and "forgetting" in s][0]
    # forgetting NSP² 0.2, 0.3; DMNSP 0.1, 0.1: DMNSP forgets less
    assert "DMNSP ahead by 15.0 points" in forgetting


def test_heat_maps_of_long_sequences_thin_their_tick_labels():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.tril(np.full((25, 25), 0.5))
    matrix[np.triu_indices(25, 1)] = np.nan
    fig, ax = plt.subplots()
    plot_accuracy_matrix(ax, matrix, title="25 tasks")
    shown = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert shown[0] == "1" and len(shown) <= 13 and ax.get_xlabel() == "evaluated on task j"
    plt.close(fig)


def test_accuracy_keeps_the_task_aware_column(root, tmp_path):
    accuracy = collect.load_accuracy(collect.load_runs(root))
    assert accuracy.accuracy_task_aware.notna().all()
    assert np.allclose(accuracy.accuracy, accuracy.accuracy_task_aware)  # write_run stores the same matrix
    old = tmp_path / "old"  # a run written before nscl recorded the task-aware accuracy
    write_run(old / "run", "shapes100-10s", "VPT-Seq", 0, MATRICES[("VPT-Seq", 0)])
    frame = pd.read_csv(old / "run" / "accuracy.csv").drop(columns="accuracy_task_aware")
    frame.to_csv(old / "run" / "accuracy.csv", index=False)
    accuracy = collect.load_accuracy(collect.load_runs(old))
    assert accuracy.accuracy_task_aware.isna().all() and len(accuracy) == 3
