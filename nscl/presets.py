"""Presets: the papers' protocols (`paper`) and the book's CPU versions (`tiny`), as ready experiments."""

from nscl.data.benchmarks import BENCHMARKS, Benchmark, load_benchmark, reference_results
from nscl.data.protocols import LOOKALIKES, PAPER_PROTOCOLS, lookalike, tiny_protocols
from nscl.dmnsp.recipe import dmnsp_experiment, dmnsp_recipe
from nscl.experiment.experiment import PRESETS, Experiment, check_preset
from nscl.nsp2.recipe import nsp2_experiment, nsp2_recipe

__all__ = [
    "BENCHMARKS",
    "PRESETS",
    "Benchmark",
    "Experiment",
    "check_preset",
    "load_benchmark",
    "reference_results",
    "nsp2_experiment",
    "nsp2_recipe",
    "dmnsp_experiment",
    "dmnsp_recipe",
    "PAPER_PROTOCOLS",
    "LOOKALIKES",
    "lookalike",
    "tiny_protocols",
]
