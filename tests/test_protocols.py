"""Both methods on all ten paper protocols (cross-protocol recipes), the tiny look-alike protocols,
the paper -> tiny map, and the tiny grid's points; one 2-task smoke run per method on a new protocol."""

import importlib.util
import math
import os
import re

import pytest

from nscl.data import protocols
from nscl.data.benchmarks import BENCHMARKS, Benchmark, benchmark_scenario
from nscl.data.protocols import LOOKALIKES, NOVEL_CLASSES, PAPER_PROTOCOLS, TINY_SHAPES, lookalike, tiny_protocols
from nscl.dmnsp import recipe as dmnsp_module
from nscl.dmnsp.recipe import dmnsp_experiment, dmnsp_recipe
from nscl.experiment.config import ExperimentConfig
from nscl.nsp2 import recipe as nsp2_module
from nscl.nsp2.recipe import VPT_SOURCE, nsp2_experiment, nsp2_recipe
from nscl.paths import repo_root

DATA_FOLDERS = ("cifar-100-python", "imagenet-r", "domainnet", "tiny-imagenet-200")
TASK_SIZES = {"5s": (10,) * 5, "10s": (5,) * 10, "25s": (2,) * 25, "25-5": (25,) + (5,) * 5}


@pytest.fixture
def no_data_or_weights(monkeypatch):
    """Recipes, configs and experiments must load no data set and build no backbone."""

    def forbidden(*args, **kwargs):
        raise AssertionError("loaded data or weights")

    import nscl.data.benchmarks as benchmarks
    import nscl.models.backbones as backbones
    import nscl.models.tiny as tiny

    monkeypatch.setattr(benchmarks, "load_dataset", forbidden)
    for module, names in (
        (tiny, ("pretrained_tiny_vit", "pretrained_tiny_clip")),
        (backbones, ("build_vit", "build_clip")),
    ):
        for name in names:
            monkeypatch.setattr(module, name, forbidden)


def table_rows(doc: str, first_cell: str) -> list[list[str]]:
    """The cells of every markdown table row in `doc` whose first cell matches `first_cell` (a regex)."""
    rows = []
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.strip().startswith("|") and re.fullmatch(first_cell, cells[0]):
            rows.append(cells)
    return rows


# -- cross-protocol paper recipes ---------------------------------------------------------------


@pytest.mark.parametrize("method, backbone", [("nsp2", "vit"), ("nsp2", "clip"), ("dmnsp", "clip")])
@pytest.mark.parametrize("benchmark", PAPER_PROTOCOLS)
def test_every_method_backbone_and_paper_protocol_builds_a_validated_experiment(
    method, backbone, benchmark, tmp_path, no_data_or_weights
):
    for folder in DATA_FOLDERS:
        (tmp_path / folder).mkdir()
    config = ExperimentConfig(
        method=method, backbone=backbone, preset="paper", benchmark=benchmark, data_root=str(tmp_path)
    )
    experiment = config.experiment()
    assert experiment.benchmark is BENCHMARKS[benchmark]  # the benchmark's own data definition
    assert set(config.selected_methods()) <= set(experiment.methods)


@pytest.mark.parametrize("benchmark", PAPER_PROTOCOLS)
def test_cross_protocol_recipes_keep_the_benchmarks_data(benchmark, monkeypatch):
    calls = []
    for module in (nsp2_module, dmnsp_module):
        monkeypatch.setattr(module, "load_benchmark", lambda b, seed, **kw: calls.append((b, seed)))
    nsp2_experiment("paper", "vit", benchmark).data(1)
    dmnsp_experiment("paper", benchmark).data(1)
    assert calls == [(benchmark, 1), (benchmark, 1)]


def test_vpt_values_follow_the_docstring_table():
    rows = table_rows(nsp2_module.__doc__, r"[a-z0-9-]+")
    table = {row[0]: row for row in rows if row[0] in PAPER_PROTOCOLS}
    assert set(table) == set(PAPER_PROTOCOLS)
    for benchmark, (_, source, temperature, eta, transforms) in table.items():
        _, cfg, run = nsp2_recipe("paper", "vit", benchmark)
        assert (source if source != "own" else benchmark) == VPT_SOURCE[benchmark]
        assert cfg.temperature == float(temperature) and cfg.conditions.eta1 == cfg.conditions.eta2 == float(eta)
        assert (run.epochs, run.data_repeats, run.batch_size, cfg.lr) == (10, 10, 256, 0.01)
        dataset = BENCHMARKS[benchmark].dataset
        assert transforms == ("cifar100" if dataset == "cifar100" else "folder set")
    # the stated sources: CIFAR-100 by task size, TinyImageNet from ImageNet-R, never extrapolated
    assert [
        nsp2_recipe("paper", "vit", b)[1].temperature
        for b in ("cifar100-10-10", "cifar100-5-5", "cifar100-2-2", "tinyimagenet-100-5")
    ] == [28.0, 25.0, 25.0, 30.0]
    assert nsp2_recipe("paper", "vit", "tinyimagenet-100-20")[1].conditions.eta1 == 0.94


@pytest.mark.parametrize("benchmark", PAPER_PROTOCOLS)
def test_clip_nsp2_and_dmnsp_recipes_are_the_same_on_every_protocol(benchmark):
    _, clip, clip_run = nsp2_recipe("paper", "clip", benchmark)
    assert (clip.temperature, clip.conditions.eta1, clip.lr, clip_run.data_repeats, clip_run.batch_size) == (
        1.0,
        0.98,
        0.001,
        2,
        220,
    )
    _, cfg, run = dmnsp_recipe("paper", benchmark)
    assert (cfg.lr, cfg.weight_decay, cfg.warmup_steps, run.epochs, run.batch_size) == (1e-3, 0.0, 30, 4, 128)
    assert cfg == dmnsp_recipe("paper", "cifar100-10-10")[1] and run == dmnsp_recipe("paper", "cifar100-10-10")[2]


def test_dmnsp_default_seeds_follow_the_docstring_table():
    rows = table_rows(dmnsp_module.__doc__, r"[a-z0-9, /-]+")
    stated = {}
    for cells in rows:
        if cells[-1] in ("(32,)", "(0,)"):
            names = re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)+|100-\d+", cells[0])
            prefix = "tinyimagenet-" if cells[0].startswith("tinyimagenet") else ""
            for name in names:
                stated[name if name.startswith(("cifar", "tiny", "imagenet", "domain")) else prefix + name] = cells[-1]
    assert set(stated) == set(PAPER_PROTOCOLS)
    for benchmark, seeds in stated.items():
        assert str(dmnsp_experiment("paper", benchmark).default_seeds) == seeds


def test_nsp2_transform_treats_tinyimagenet_as_a_folder_set():
    from nscl.data.transforms import nsp2_transform

    stats = ((0.5,) * 3, (0.5,) * 3)
    for backbone in ("vit", "clip"):
        tiny, folder = nsp2_transform("tinyimagenet", backbone, *stats), nsp2_transform("imagenet_r", backbone, *stats)
        assert tiny == folder and tiny.autoaugment_policy == "imagenet" and tiny.interpolation == "bilinear"
    assert nsp2_transform("tinyimagenet", "vit", *stats).eval_resize == 256


def test_recipes_reject_a_preset_and_benchmark_that_do_not_meet():
    with pytest.raises(ValueError, match="use preset='tiny'"):
        nsp2_recipe("paper", "vit", "shapes100-10s")
    with pytest.raises(ValueError, match="use preset='tiny'"):
        dmnsp_recipe("paper", "shapes100-tinted-10s")
    with pytest.raises(ValueError, match="use preset='paper'"):
        nsp2_recipe("tiny", "vit", "cifar100-10-10")
    with pytest.raises(ValueError, match="use preset='paper'"):
        dmnsp_recipe("tiny", "cifar100-10s")


# -- tiny look-alikes ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", list(TINY_SHAPES))
def test_tiny_protocols_split_the_50_novel_classes_as_intended(shape):
    grey, tinted = BENCHMARKS[f"shapes100-{shape}"], BENCHMARKS[f"shapes100-tinted-{shape}"]
    for bench in (grey, tinted):
        assert bench.task_sizes == TASK_SIZES[shape] and bench.n_tasks == len(TASK_SIZES[shape])
        scenario = benchmark_scenario(bench.id)
        tasks = [set(scenario.task_classes(t)) for t in range(scenario.n_tasks)]
        assert [len(t) for t in tasks] == list(TASK_SIZES[shape])
        assert set().union(*tasks) == set(NOVEL_CLASSES) and sum(map(len, tasks)) == 50  # disjoint, covering
    assert dict(grey.options) == {} and dict(tinted.options) == {"background": "tinted"}


def test_a_benchmark_split_must_divide_its_classes():
    with pytest.raises(ValueError, match="do not split"):
        Benchmark("shapes100-25-10", "shapes100", 50, 25, 10, "shapes100_novel")
    with pytest.raises(ValueError, match="do not split"):
        protocols.TinyShape("3s", 17, 17)


@pytest.mark.parametrize("method", ["nsp2", "dmnsp"])
def test_both_tiny_recipes_accept_every_tiny_protocol(method, no_data_or_weights):
    grey = [f"shapes100-{s}" for s in TINY_SHAPES]
    tinted = [f"shapes100-tinted-{s}" for s in TINY_SHAPES]
    assert tiny_protocols(method) == tuple(grey if method == "nsp2" else tinted)
    for benchmark in grey + tinted:
        config = ExperimentConfig(method=method, benchmark=benchmark, epochs=1, max_tasks=2)
        assert config.experiment().benchmark.id == benchmark


def test_the_lookalike_map_covers_every_paper_protocol_by_its_stated_rule():
    assert set(LOOKALIKES) == set(PAPER_PROTOCOLS) and len(PAPER_PROTOCOLS) == 16
    equal = {name: s for name, s in TINY_SHAPES.items() if s.initial_increment == s.increment}
    for paper, alike in LOOKALIKES.items():
        bench, tiny = BENCHMARKS[paper], TINY_SHAPES[alike.shape]
        if bench.initial_increment > bench.increment:  # a large first task: half the pool, as in B100 of 200
            assert tiny.initial_increment / 50 == bench.initial_increment / bench.n_classes
        else:  # equal tasks: the nearest task count
            nearest = min(equal, key=lambda s: abs(math.log(equal[s].n_tasks / bench.n_tasks)))
            assert alike.shape == nearest
        assert lookalike(paper, "nsp2") == f"shapes100-{alike.shape}"
        assert lookalike(paper, "dmnsp") == f"shapes100-tinted-{alike.shape}"
    assert LOOKALIKES["tinyimagenet-100-20"].shape == "25-5" and LOOKALIKES["cifar100-10s"].shape == "10s"
    documented = {
        row[0]: (row[2], row[3])
        for row in table_rows(protocols.__doc__, r"[a-z0-9]+-[a-z0-9-]+")
        if row[0] in PAPER_PROTOCOLS
    }
    assert documented == {p: (a.shape, a.reason) for p, a in LOOKALIKES.items()}


def test_the_tiny_grid_runs_each_method_and_its_controls_on_every_tiny_protocol(tmp_path, no_data_or_weights):
    spec = importlib.util.spec_from_file_location("tiny_grid", repo_root() / "benchmarks" / "tiny_grid.py")
    grid = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(grid)
    points = grid.grid_points(["nsp2", "dmnsp"], list(TINY_SHAPES), [0, 1], tmp_path, epochs=2)
    assert len(points) == 2 * len(TINY_SHAPES) * 2
    assert {p.config.benchmark_id for p in points} == set(tiny_protocols("nsp2")) | set(tiny_protocols("dmnsp"))
    nsp2, dmnsp = points[0].config, points[-1].config
    assert nsp2.selected_methods() == ["VPT-Seq", "VPT-NSP²", "VPT-frozen", "VPT-prototype"] and nsp2.epochs == 2
    assert dmnsp.selected_methods() == ["zero-shot CLIP", "prototype", "adapter-Seq", "frozen", "DMNSP"]
    assert points[0].run_dir == tmp_path / "nsp2" / "shapes100-5s" / "seed0"
    # the ladder: every method on every family; CLIP-NSP² runs apart from VPT-NSP² (its own folder)
    ladder = grid.grid_points(["nsp2-clip", "dmnsp"], ["10s"], [0], tmp_path, families=["grey", "domains"])
    assert [(p.config.backbone_id, p.config.benchmark_id) for p in ladder] == [
        ("clip", "shapes100-10s"),
        ("clip", "shapes100-domains-10s"),
        ("clip", "shapes100-10s"),
        ("clip", "shapes100-domains-10s"),
    ]
    assert ladder[1].run_dir == tmp_path / "nsp2-clip" / "shapes100-domains-10s" / "seed0"
    assert ladder[1].key == "nsp2-clip/shapes100-domains-10s/seed0"
    assert ladder[0].config.selected_methods() == ["CLIP-Seq", "CLIP-NSP²", "CLIP-frozen", "CLIP-prototype"]


# -- smoke: a 2-task, 1-epoch run of the large-base protocol for each method ------------------------


@pytest.mark.parametrize(
    "method, label, benchmark", [("nsp2", "VPT-NSP²", "shapes100-25-5"), ("dmnsp", "DMNSP", "shapes100-tinted-25-5")]
)
def test_a_two_task_run_on_the_large_base_protocol(method, label, benchmark, tmp_path, monkeypatch):
    from nscl.data.benchmarks import load_benchmark

    monkeypatch.setenv("NSCL_CACHE", os.environ.get("NSCL_CACHE", str(repo_root() / ".cache" / "nscl")))
    experiment = ExperimentConfig(method=method, benchmark=benchmark, epochs=1, max_tasks=2).experiment()
    data = load_benchmark(benchmark, 0, shapes_train_per_class=12, shapes_test_per_class=6)  # small: seconds
    result = experiment.run_one(label, 0, tmp_path / "run", data=data)
    accuracy = result.accuracy_frame()
    assert result.accuracy.shape[0] == 2
    tested = accuracy[accuracy.train_task == accuracy.train_task.max()].set_index("eval_task").n_test
    assert tested.to_dict() == {0: 25 * 6, 1: 5 * 6}  # 25 classes first, then 5
    assert ((accuracy.accuracy >= 0) & (accuracy.accuracy <= 1)).all()
    assert (tmp_path / "run" / "metrics.json").exists() and (tmp_path / "run" / "accuracy.csv").exists()
