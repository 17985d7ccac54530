"""Presets: the papers' protocols (`paper`) and the book's CPU versions (`tiny`), as ready experiments."""

from nscl.presets.common import (BENCHMARKS, PRESETS, Benchmark, Experiment, check_preset, load_benchmark,
                                 reference_results)
from nscl.presets.dmnsp import dmnsp_experiment, dmnsp_recipe
from nscl.presets.nsp2 import nsp2_experiment, nsp2_recipe
from nscl.presets.protocols import LOOKALIKES, PAPER_PROTOCOLS, lookalike, tiny_protocols

__all__ = ["BENCHMARKS", "PRESETS", "Benchmark", "Experiment", "check_preset", "load_benchmark", "reference_results",
           "nsp2_experiment", "nsp2_recipe", "dmnsp_experiment", "dmnsp_recipe", "PAPER_PROTOCOLS", "LOOKALIKES",
           "lookalike", "tiny_protocols"]
