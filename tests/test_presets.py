"""Experiments built from presets: run-setting overrides and the papers' reference numbers."""

import pytest

from nscl.presets import nsp2_experiment


def test_with_run_overrides_only_what_is_given():
    experiment = nsp2_experiment("tiny", "vit")
    epochs = experiment.run.epochs
    experiment.with_run(epochs=None, max_tasks=3, progress=False)
    assert experiment.run.epochs == epochs and experiment.run.max_tasks == 3 and experiment.run.progress is False


def test_reference_text_cites_the_paper_or_says_there_is_none():
    assert "87.27" in nsp2_experiment("paper", "vit", "cifar100-10s").reference_text()  # VPT-Seq, Table 1
    assert "no published numbers for shapes100-10s" in nsp2_experiment("tiny", "vit").reference_text()


def test_dmnsp_variants_are_named_changes_of_the_recipe():
    from nscl.dmnsp.recipe import VARIANTS, dmnsp_experiment, dmnsp_recipe

    benchmark, cfg, _ = dmnsp_recipe("tiny")
    assert benchmark == "shapes100-tinted-10s" and cfg.energy_threshold == 0.985
    _, paper_cfg, _ = dmnsp_recipe("paper")
    assert paper_cfg.top_select == 1 and paper_cfg.energy_threshold is None  # the official configs
    assert VARIANTS["code"]["variant"] == "code"
    experiment = dmnsp_experiment("tiny", variants=("paper", "top1"), joint=False)
    assert list(experiment.methods) == ["zero-shot CLIP", "prototype", "adapter-Seq", "DMNSP", "DMNSP (top1)"]
    with pytest.raises(ValueError, match="unknown DMNSP variants"):
        dmnsp_experiment("tiny", variants=("official",))
