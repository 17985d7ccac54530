"""Experiments built from presets: run-setting overrides and the papers' reference numbers."""

from nscl.presets import nsp2_experiment


def test_with_run_overrides_only_what_is_given():
    experiment = nsp2_experiment("tiny", "vit")
    epochs = experiment.run.epochs
    experiment.with_run(epochs=None, max_tasks=3, progress=False)
    assert experiment.run.epochs == epochs and experiment.run.max_tasks == 3 and experiment.run.progress is False


def test_reference_text_cites_the_paper_or_says_there_is_none():
    assert "87.27" in nsp2_experiment("paper", "vit", "cifar100-10s").reference_text()   # VPT-Seq, Table 1
    assert "no published numbers for shapes100-10s" in nsp2_experiment("tiny", "vit").reference_text()
