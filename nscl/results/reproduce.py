"""How to reproduce each reported row: the command, the data it needs, what it should cost, what to compare.

One row per (paper, benchmark, method) of data/reference_results.csv. The GPU figures are estimates until
a GPU run measures them, and say so:

* time: the images a run pushes through the model (every training image `epochs x data_repeats` times, the
  joint bound once per task over everything seen, one evaluation pass per task over the seen test images,
  one feature pass per task for the null spaces) divided by an assumed throughput of one H100
  (`ASSUMED_THROUGHPUT`: the design's 2,000 img/s target for ViT-B/16 in bf16; a third of it in fp32, DMNSP's
  precision; evaluation 3x faster than training);
* memory: the activations a ViT-B/16 keeps for the backward pass, s·h·(34 + 5·a·s/h) bytes per layer and
  image in 16-bit (Korthikanti et al., "Reducing Activation Recomputation in Large Transformer Models",
  2022, eq. 1; twice that in fp32), over all 12 layers (the gradient reaches the first prompted layer through
  every layer above it) times the batch, plus the weights, plus for DMNSP the text tower over every seen
  class's prompt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from nscl.data.benchmarks import BENCHMARKS, Benchmark
from nscl.paths import repo_data_dir

__all__ = [
    "ASSUMED_THROUGHPUT",
    "DATA_SIZES",
    "DATA_PREPARATION",
    "activation_bytes",
    "estimate_gpu",
    "GPUEstimate",
    "reproduction_rows",
]

ASSUMED_THROUGHPUT = {"bf16": 2000.0, "fp32": 2000.0 / 3}  # training images per second on one H100 (assumed)
EVAL_SPEEDUP = 3.0  # a forward pass costs about a third of forward + backward
# (train, test) images of each data set as nscl reads it; DomainNet's subset size is not shipped with nscl
DATA_SIZES: dict[str, tuple[int, int] | None] = {
    "cifar100": (50_000, 10_000),
    "imagenet_r": (24_000, 6_000),  # NSP²'s split lists (data/splits)
    "tinyimagenet": (100_000, 10_000),
    "domainnet": None,
}
DATA_PREPARATION = {
    "cifar100": "cifar-100-python/ under the data root: `--download` fetches it (torchvision), or extract "
    "cifar-100-python.tar.gz there. As image folders (for other code bases): `python -m nscl export cifar100 OUT`",
    "imagenet_r": "imagenet-r/<wnid>/*.jpg under the data root: extract imagenet-r.tar (Hendrycks et al.); the "
    "train/test split is NSP²'s lists, shipped in data/splits",
    "domainnet": "domainnet/{train,test}/<label:03d>/ under the data root: DomainNet's 200-class subset built "
    "with NSP²'s tools/split_sdomainnet.py (its sdomain_{train,val}.txt lists)",
    "tinyimagenet": "tiny-imagenet-200/{train,val} under the data root: unzip tiny-imagenet-200.zip",
}
_BACKBONE = {"VPT": "vit", "CLIP": "clip"}


@dataclass(frozen=True)
class Recipe:
    """What the estimate needs of a recipe."""

    epochs: int
    data_repeats: int
    batch_size: int
    precision: str  # "bf16" or "fp32"
    prompts: int  # tokens added to every image's sequence
    text_tower: bool  # DMNSP trains text adapters over every seen class's prompt


RECIPES = {
    "VPT": Recipe(10, 10, 256, "bf16", 4, False),
    "CLIP": Recipe(10, 2, 220, "bf16", 4, False),
    "DMNSP": Recipe(4, 1, 128, "fp32", 0, True),
}


def activation_bytes(tokens: int, width: int, heads: int, layers: int, batch: int, bytes_per_value: int = 2) -> float:
    """Activations kept for backward by `layers` transformer layers (Korthikanti et al. 2022, eq. 1)."""
    per_layer = tokens * width * (34 + 5 * heads * tokens / width) * (bytes_per_value / 2)
    return per_layer * layers * batch


@dataclass(frozen=True)
class GPUEstimate:
    minutes: float | None
    memory_gb: float

    def text(self) -> str:
        time = "n/a (data set size unknown here)" if self.minutes is None else f"~{_round(self.minutes)} min"
        return f"{time}, ~{self.memory_gb:.0f} GB (estimates, not measured)"


def _round(minutes: float) -> str:
    return f"{minutes:.0f}" if minutes < 100 else f"{round(minutes, -1):.0f}"


def estimate_gpu(bench: Benchmark, family: str, joint: bool = False) -> GPUEstimate:
    """One seed of `family` ('VPT', 'CLIP', 'DMNSP') on a paper benchmark, on one H100 (see the module docstring)."""
    recipe = RECIPES[family]
    value_bytes = 2 if recipe.precision == "bf16" else 4
    tokens = 197 + recipe.prompts  # ViT-B/16 at 224 px: 196 patches and the class token
    memory = activation_bytes(tokens, 768, 12, 12, recipe.batch_size, value_bytes)
    memory += (86e6 if family == "VPT" else 150e6) * 4  # fp32 weights (the backbone is frozen: no moments)
    if recipe.text_tower:  # 77 tokens, width 512, 8 heads, 12 layers, one prompt per seen class
        memory += activation_bytes(77, 512, 8, 12, bench.n_classes, value_bytes)
    sizes = DATA_SIZES.get(bench.dataset)
    if sizes is None:
        return GPUEstimate(None, memory / 1e9)
    train, test = sizes
    t = bench.n_tasks
    passes = recipe.epochs * recipe.data_repeats
    trained = train * passes * ((t + 1) / 2 if joint else 1)  # joint: all seen data at every task
    evaluated = test * (t + 1) / 2 + train  # seen test images after each task; one feature pass for the bases
    seconds = (trained + evaluated / EVAL_SPEEDUP) / ASSUMED_THROUGHPUT[recipe.precision]
    return GPUEstimate(seconds / 60, memory / 1e9)


def _family(method: str) -> str:
    return "DMNSP" if not method.startswith(("VPT-", "CLIP-")) else method.split("-")[0]


def _command(paper: str, method: str, benchmark: str) -> tuple[str, str]:
    """(command line, papermill) for one reported row."""
    family = _family(method)
    seeds = "0 1 2" if paper == "NSP2" else "32"
    if family in ("VPT", "CLIP"):
        only = "joint" if method.endswith("joint") else ("Seq" if method.endswith("Seq") else "NSP2")
        overrides = ""
        if "(eta 1)" in method:
            overrides = ' --overrides \'conditions={"eta1": 1.0, "eta2": 1.0}\''
        elif "(B1 only)" in method:
            overrides = " --overrides 'conditions={\"eta2\": 0.0}'"
        line = (
            f"python -m nscl run --method nsp2 --backbone {_BACKBONE[family]} --preset paper --benchmark {benchmark} "
            f"--device cuda --seeds {seeds} --only {only}{overrides}"
        )
        # lists go in as YAML (-y): papermill's -p passes "[0, 1, 2]" as a string
        book = (
            f"papermill 03_nsp2.ipynb out.ipynb -p preset paper -p backbone {_BACKBONE[family]} -p benchmark "
            f"{benchmark} -p device cuda -y '{{seeds: [{seeds.replace(' ', ', ')}]}}'"
            + (" -p include_joint True" if only == "joint" else "")
        )
        return line, book
    variant = "code"  # the released code's algorithm produced the published numbers (nscl.dmnsp.recipe)
    line = (
        f"python -m nscl run --method dmnsp --preset paper --benchmark {benchmark} --device cuda --seeds {seeds} "
        f"--variants {variant} --only DMNSP"
    )
    book = (
        f"papermill 05_dmnsp.ipynb out.ipynb -p preset paper -p benchmark {benchmark} -p device cuda "
        f"-y '{{seeds: [{seeds}], variants: [{variant}]}}'"
    )
    return line, book


def reproduction_rows(references: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per reported (paper, benchmark, method): table, reported numbers, commands, data, GPU estimate,
    the report columns to compare."""
    refs = pd.read_csv(repo_data_dir() / "reference_results.csv") if references is None else references
    rows = []
    for (paper, benchmark, method), group in refs.groupby(["paper", "benchmark", "method"], sort=False):
        bench = BENCHMARKS[benchmark]
        reported = "; ".join(
            f"{r.metric} {r.value:.2f}" + (f" ± {r.std:.2f}" if "std" in r._fields and pd.notna(r.std) else "")
            for r in group.itertuples()
        )
        table = re.findall(r"Table \d+", " ".join(group.source))
        kinds = ", ".join(dict.fromkeys(group.source_kind)) if "source_kind" in group else "paper table"
        row = {
            "paper": paper,
            "benchmark": benchmark,
            "method": method.replace("NSP2", "NSP²"),
            "source": (table[0] if table else kinds),
            "reported": reported,
            "data": DATA_PREPARATION[bench.dataset],
        }
        if method == "MoE-Adapters":
            row.update(command="not in nscl (reported for context)", papermill="—", gpu="—", compare="—")
        else:
            family = _family(method)
            row["command"], row["papermill"] = _command(paper, method, benchmark)
            row["gpu"] = estimate_gpu(bench, family, joint=method.endswith("joint")).text()
            row["compare"] = ", ".join(f"{m} (report column `{m}`)" for m in dict.fromkeys(group.metric))
        rows.append(row)
    # protocols nscl runs that no paper reports a number for (DMNSP's ImageNet-R, which its lineage evaluates
    # task-aware)
    reported = set(refs.benchmark)
    for benchmark in ("imagenet-r-10-10",):
        if benchmark not in reported:
            line, book = _command("DMNSP", "DMNSP", benchmark)
            rows.append(
                {
                    "paper": "DMNSP",
                    "benchmark": benchmark,
                    "method": "DMNSP",
                    "source": "RL-VIG/LibContinual config/dmnsp_imgnr.yaml (no number reported)",
                    "reported": "none",
                    "data": DATA_PREPARATION["imagenet_r"],
                    "command": line,
                    "papermill": book,
                    "gpu": estimate_gpu(BENCHMARKS[benchmark], "DMNSP").text(),
                    "compare": "last_accuracy_task_aware, average_incremental_accuracy_task_aware (the config "
                    "evaluates task-aware)",
                }
            )
    return pd.DataFrame(rows)
