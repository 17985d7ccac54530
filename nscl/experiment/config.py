"""One typed, validated experiment config: filled alike by a chapter, the command line and a preset file.

    config = ExperimentConfig(method="nsp2", backbone="vit", benchmark="shapes100-10s", seeds=(0, 1, 2),
                              epochs=1, overrides={"lr": 0.005})
    config = ExperimentConfig.from_file("presets/nsp2-tiny.toml")    # TOML, YAML (PyYAML) or JSON
    frame, results = config.run()                                      # = config.experiment().run_all(...)

Everything is checked when the config is built, before any data is loaded or any weight is made:
unknown field names, wrong types, values out of range, a method/backbone/benchmark mismatch (DMNSP
with a ViT, a paper preset on a tiny benchmark; either method runs on every paper protocol and on your own data),
method overrides against the fields and types of NSP2Config / DMNSPConfig, and a missing data root
for a real data set. Each error is one ValueError naming the field, the value and what is accepted.

`check_parameters(globals(), {...})` is the chapters' guard against mistyped papermill parameters.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from nscl.data.own import OwnData
from nscl.experiment.coerce import check_parameters, coerce, describe_type, message, plain, read_config_file, suggest

__all__ = [
    "ExperimentConfig",
    "check_parameters",
    "METHODS",
    "BACKBONES",
    "config_fields",
    "describe_type",
    "RESERVED_OVERRIDES",
]

METHODS = ("nsp2", "dmnsp")
BACKBONES = {"nsp2": ("vit", "clip"), "dmnsp": ("clip",)}
DEFAULT_BACKBONE = {"nsp2": "vit", "dmnsp": "clip"}
DEVICES = "'auto' (cuda when visible, else cpu), 'cpu', 'cuda', 'cuda:N' or 'mps'"
# method-config fields the experiment sets per method (Seq, frozen, joint...): not overridable
RESERVED_OVERRIDES = {
    "nsp2": ("seed", "name", "null_space", "freeze_prompts", "loss_over"),
    "dmnsp": ("seed", "name", "projection", "freeze_visual_after_first_task", "loss_over"),
}
# the folder each real data set needs under the data root (see nscl.data.datasets)
_DATA_FOLDERS = {
    "cifar10": "cifar-10-batches-py",
    "cifar100": "cifar-100-python",
    "imagenet_r": "imagenet-r",
    "domainnet": "domainnet",
    "tinyimagenet": "tiny-imagenet-200",
}


def _benchmark_ids() -> tuple[str, ...]:
    from nscl.data.benchmarks import BENCHMARKS

    return tuple(sorted(BENCHMARKS))


def _precisions() -> tuple[str, ...]:
    from nscl.methods.base import PRECISIONS

    return PRECISIONS


def _variant_names() -> tuple[str, ...]:
    from nscl.dmnsp.recipe import VARIANTS

    return tuple(VARIANTS)


def _f(default: Any, help: str, choices: Any = None, **kw) -> Any:
    """A field with its help text and accepted values (a tuple, or a function giving one) for --help."""
    meta = {"help": help, "choices": choices}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


@dataclass(frozen=True)
class ExperimentConfig:
    """An experiment: a method family and its knobs, backbone, benchmark, preset, seeds, run settings, paths."""

    method: Literal["nsp2", "dmnsp"] = _f("nsp2", "method family: NSP² (prompts) or DMNSP (CLIP adapters)", METHODS)
    preset: Literal["tiny", "paper"] = _f(
        "tiny",
        "'tiny' (CPU, tiny backbones on shapes100) or 'paper' (the papers' recipes, ViT-B/16, GPU)",
        ("tiny", "paper"),
    )
    backbone: str | None = _f(None, "backbone; None: vit for nsp2 (VPT-NSP²), clip for dmnsp", ("vit", "clip"))
    benchmark: str | None = _f(
        None,
        "benchmark id; None: the preset's default (tiny: shapes100-10s for nsp2, shapes100-tinted-10s for dmnsp)",
        _benchmark_ids,
    )
    own_data: OwnData | None = _f(
        None,
        "your own data instead of a benchmark id: an image folder or cifar10 / cifar100 and the protocol, e.g. "
        "{'source': 'pets/', 'tasks': 5}; on the command line: --own-data source=pets/ tasks=5 "
        "(fields: nscl.data.own.OwnData)",
    )
    seeds: tuple[int, ...] | None = _f(
        None, "seeds to run; None: the recipe's own (tiny 0, DMNSP paper 32, 0 on NSP²'s seeded protocols)"
    )
    only: tuple[str, ...] | None = _f(
        None,
        "which of the experiment's methods to run (labels such as VPT-Seq, or "
        "short names: Seq, NSP2, frozen, prototype, joint, zero-shot, DMNSP); None: all "
        "the preset's",
    )
    variants: tuple[str, ...] | None = _f(
        None, "DMNSP only: the DMNSP variants to compare; None: ('paper',)", _variant_names
    )
    overrides: dict[str, Any] = _f(
        {},
        "method config fields to change (NSP2Config / DMNSPConfig), e.g. "
        "{'lr': 0.005}; on the command line: --overrides lr=0.005 drift_weight=0",
    )
    epochs: int | None = _f(None, "epochs per task; None: the recipe's")
    max_tasks: int | None = _f(None, "stop after this many tasks; None: all")
    device: str = _f("cpu", f"where to train: {DEVICES}")
    precision: str | None = _f(
        None, "autocast precision; None: the recipe's (bf16 on a GPU for the paper preset)", _precisions
    )
    progress: bool = _f(False, "tqdm bars per task")
    data_root: str | None = _f(None, "folder holding the real data sets; None: $NSCL_DATA or ~/.cache/nscl/data")
    download: bool = _f(False, "let torchvision download CIFAR-100 when it is missing (needs internet)")
    run_root: str | None = _f(
        None,
        "where the runs go (run_root/<method label>/seed<k>, resumable); None: "
        "$NSCL_OUTPUT/runs/<preset>/<method>/<benchmark>",
    )
    clip_prompt_layers: Literal["paper", "code"] = _f(
        "paper",
        "NSP² with CLIP, paper preset: prompts in 3 blocks ('paper') or 4 (the official script, 'code')",
        ("paper", "code"),
    )

    # -- validation ------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = coerce(f"ExperimentConfig.{f.name}", getattr(self, f.name), hints[f.name])
            object.__setattr__(self, f.name, value)
            choices = _choices(f)
            if choices is not None and value is not None:
                for item in value if isinstance(value, tuple) else (value,):
                    if item not in choices:
                        raise ValueError(message(f.name, value, f"one of {list(choices)}" + suggest(item, choices)))
        from nscl.data.benchmarks import BENCHMARKS
        from nscl.experiment.experiment import check_seeds
        from nscl.experiment.run import DEVICE_PATTERN

        if self.seeds is not None:
            try:
                check_seeds(self.seeds, "ExperimentConfig.seeds")
            except ValueError as err:
                raise ValueError(str(err)) from None
        for name in ("epochs", "max_tasks"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(message(name, value, "an integer >= 1, or None (the recipe's / all tasks)"))
        if self.device != "auto" and not DEVICE_PATTERN.match(self.device):
            raise ValueError(message("device", self.device, DEVICES))
        if self.backbone is not None and self.backbone not in BACKBONES[self.method]:
            why = " (DMNSP adapts CLIP's two towers)" if self.method == "dmnsp" else ""
            raise ValueError(
                message(
                    "backbone",
                    self.backbone,
                    f"for method={self.method!r}: {list(BACKBONES[self.method])} or None{why}",
                )
            )
        if self.variants is not None and self.method != "dmnsp":
            raise ValueError(
                message(
                    "variants",
                    self.variants,
                    "None for method='nsp2' (variants are DMNSP's: "
                    f"{list(_variant_names())}); choose NSP² methods with `only`",
                )
            )
        if self.variants is not None and not self.variants:
            raise ValueError(message("variants", self.variants, f"a non-empty list of {list(_variant_names())}"))
        if self.own_data is not None and self.benchmark is not None:
            raise ValueError(
                message(
                    "benchmark",
                    self.benchmark,
                    f"None when own_data is given (own_data={self.own_data.source!r} is the benchmark); give one",
                )
            )
        bench = self._resolve_benchmark()
        object.__setattr__(self, "_bench", bench)
        benchmark = self.benchmark_id
        if self.preset == "tiny" and bench.dataset != "shapes100" and bench.own is None:
            tiny = [b for b, v in BENCHMARKS.items() if v.dataset == "shapes100"]
            raise ValueError(
                message(
                    "benchmark",
                    benchmark,
                    f"for preset='tiny' a shapes100 benchmark {tiny} "
                    "(the tiny backbones were pretrained on shapes100); use preset='paper' for "
                    f"{bench.dataset}",
                )
            )
        try:
            _, method_config, _ = self._recipe("cpu")
        except ValueError as err:  # the recipe's own protocol check (e.g. the paper preset on a shapes100 benchmark)
            raise ValueError(
                message("benchmark", benchmark, f"a protocol of the {self.method} {self.preset} recipe: {err}")
            ) from None
        object.__setattr__(self, "overrides", self._checked_overrides(method_config))
        self._check_data_root(bench)
        selected = self.selected_methods()  # checks `only`
        if not selected:
            raise ValueError(message("only", self.only, "at least one method"))

    def _checked_overrides(self, method_config) -> dict:
        if any(not isinstance(k, str) for k in self.overrides):
            raise ValueError(message("overrides", self.overrides, "a dict of field name -> value"))
        cls = type(method_config)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        reserved = RESERVED_OVERRIDES[self.method]
        checked = {}
        for key, value in self.overrides.items():
            if key in reserved:
                raise ValueError(
                    message(
                        "overrides",
                        {key: value},
                        f"fields of {cls.__name__} other than "
                        f"{list(reserved)} (the experiment sets those per method; seeds via "
                        "`seeds`)",
                    )
                )
            if key not in fields:
                allowed = [n for n in fields if n not in reserved]
                raise ValueError(
                    message("overrides", {key: value}, f"fields of {cls.__name__}: {allowed}" + suggest(key, allowed))
                )
            where = f"ExperimentConfig.overrides[{key!r}] ({cls.__name__}.{key})"
            current = getattr(method_config, key)
            if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
                # a partial dict changes the recipe's value: {"conditions": {"eta1": 0.9}} keeps its eta2
                sub_hints = typing.get_type_hints(type(current))
                names = [f.name for f in dataclasses.fields(current)]
                unknown = [k for k in value if k not in names]
                if unknown:
                    raise ValueError(
                        f"{where}: unknown {type(current).__name__} fields {unknown}; accepted: {names}"
                        + suggest(unknown[0], names)
                    )
                try:
                    checked[key] = dataclasses.replace(
                        current, **{k: coerce(f"{where}.{k}", v, sub_hints[k]) for k, v in value.items()}
                    )
                except ValueError as err:
                    raise ValueError(str(err) if str(err).startswith(where) else f"{where}: {err}") from None
            else:
                checked[key] = coerce(where, value, hints[key])
        try:
            dataclasses.replace(method_config, **checked)  # the method config's own range checks
        except (ValueError, TypeError) as err:
            raise ValueError(f"ExperimentConfig.overrides={self.overrides!r}: {err}") from None
        return checked

    def _resolve_benchmark(self):
        """The benchmark: the table's (by id or the preset's default), or your own data's (folder listed, protocol,
        class-order and names files checked: nscl.data.folders names what is wrong)."""
        from nscl.data.benchmarks import BENCHMARKS, own_benchmark
        from nscl.data.folders import ImageFolderError

        if self.own_data is None:
            return BENCHMARKS[self.benchmark_id]
        try:
            return own_benchmark(self.own_data)
        except ImageFolderError as err:
            # the same error class (a test or a caller can tell the cases apart), the field named
            raise type(err)(f"ExperimentConfig.own_data: {err}") from None

    @property
    def benchmark_spec(self):
        """The `Benchmark` this config runs (nscl.data.benchmarks): the table's, or your own data's."""
        return self._bench

    def _check_data_root(self, bench) -> None:
        """The data root holds the benchmark's data set (CIFAR named in own_data too; a folder was listed already)."""
        dataset = bench.dataset
        what = f"own_data={bench.own.source!r}" if bench.own is not None else f"benchmark {bench.id!r}"
        if dataset not in _DATA_FOLDERS:
            return  # shapes100 and digits are generated here
        from nscl.paths import data_root

        root = data_root(self.data_root)
        folder = root / _DATA_FOLDERS[dataset]
        if self.download and dataset in ("cifar10", "cifar100"):
            return
        if not root.is_dir() or not folder.exists():
            given = "given" if self.data_root is not None else "from $NSCL_DATA or the default ~/.cache/nscl/data"
            where = f"{root} ({given})"
            missing = "does not exist" if not root.is_dir() else f"has no {_DATA_FOLDERS[dataset]}/"
            cifar = dataset in ("cifar10", "cifar100")
            how = "; or download=True (CIFAR-10 / CIFAR-100 only, needs internet)" if cifar else ""
            raise ValueError(
                message(
                    "data_root",
                    self.data_root,
                    f"a folder holding {_DATA_FOLDERS[dataset]}/ "
                    f"for {what}: {where} {missing}. Set data_root / $NSCL_DATA "
                    f"to where the data set is prepared (see nscl.data.datasets){how}",
                )
            )

    # -- derived -----------------------------------------------------------------------------------
    @property
    def backbone_id(self) -> str:
        return self.backbone or DEFAULT_BACKBONE[self.method]

    @property
    def benchmark_id(self) -> str:
        if self.own_data is not None:
            return self._bench.id
        if self.benchmark is not None:
            return self.benchmark
        if self.preset == "tiny":
            return "shapes100-10s" if self.method == "nsp2" else "shapes100-tinted-10s"
        return "cifar100-10s" if self.method == "nsp2" else "cifar100-10-10"

    @property
    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def check_device(self) -> None:
        """ValueError when `device` names an accelerator this machine does not have (checked before training, and
        by a dry run, not when the config is built: a config may be written on a laptop for a GPU machine)."""
        import torch

        if self.device.startswith("cuda"):
            index = int(self.device.split(":")[1]) if ":" in self.device else 0
            if not torch.cuda.is_available() or index >= torch.cuda.device_count():
                found = f"{torch.cuda.device_count()} CUDA device(s)" if torch.cuda.is_available() else "no CUDA GPU"
                raise ValueError(
                    message(
                        "device",
                        self.device,
                        f"a device this machine has ({found} here): 'auto' or 'cpu', or run where the GPU is",
                    )
                )
        if self.device == "mps" and not torch.backends.mps.is_available():
            raise ValueError(message("device", self.device, "a device this machine has (no MPS here): 'auto' or 'cpu'"))

    def _recipe(self, device: str):
        if self.method == "nsp2":
            from nscl.nsp2.recipe import nsp2_recipe

            return nsp2_recipe(self.preset, self.backbone_id, self._recipe_benchmark, device, self.clip_prompt_layers)
        from nscl.dmnsp.recipe import dmnsp_recipe

        return dmnsp_recipe(self.preset, self._recipe_benchmark, device)

    @property
    def _recipe_benchmark(self):
        """What the recipes take: a table id, or your own data's Benchmark."""
        return self._bench if self.own_data is not None else self.benchmark_id

    def _build(self, device: str, frozen: bool):
        if self.method == "nsp2":
            from nscl.nsp2.recipe import nsp2_experiment

            return nsp2_experiment(
                self.preset,
                self.backbone_id,
                self._recipe_benchmark,
                device=device,
                data_root=self.data_root,
                download=self.download,
                clip_prompt_layers=self.clip_prompt_layers,
                **self.overrides,
            )
        from nscl.dmnsp.recipe import dmnsp_experiment

        return dmnsp_experiment(
            self.preset,
            self._recipe_benchmark,
            device=device,
            data_root=self.data_root,
            download=self.download,
            variants=self.variants or ("paper",),
            frozen=frozen,
            **self.overrides,
        )

    def method_labels(self) -> dict[str, str]:
        """Every accepted name in `only` -> the experiment's method label (labels and short aliases)."""
        labels = list(self._build("cpu", frozen=True).methods)
        table: dict[str, str] = {}
        for label in labels:  # exact labels first, then their short forms
            table[label] = label
        for label in labels:
            short = label
            for prefix in ("VPT-", "CLIP-", "adapter-"):
                short = short.removeprefix(prefix)
            short = short.replace("zero-shot CLIP", "zero-shot").replace(" (", "-").removesuffix(")")
            for alias in (label.replace("²", "2"), short, short.replace("²", "2")):
                table.setdefault(alias, label)
        return table

    def selected_methods(self) -> list[str]:
        """The experiment's method labels this config runs (in the experiment's order)."""
        table = self.method_labels()
        if self.only is None:
            default = [label for label in dict.fromkeys(table.values())]
            return [label for label in default if not (self.method == "dmnsp" and label == "frozen")]
        chosen = []
        for name in self.only:
            if name == "DMNSP" and self.method == "dmnsp":  # every DMNSP variant asked for ('code' alone included)
                chosen += [label for label in dict.fromkeys(table.values()) if label.startswith("DMNSP")]
                continue
            if name not in table:
                raise ValueError(
                    message("only", self.only, f"names among {sorted(set(table))}" + suggest(name, list(table)))
                )
            chosen.append(table[name])
        order = list(dict.fromkeys(table.values()))
        return sorted(set(chosen), key=order.index)

    def experiment(self):
        """The preset's Experiment with these settings (nothing is loaded or trained yet)."""
        self.check_device()
        device = self.resolved_device
        experiment = self._build(device, frozen="frozen" in self.selected_methods())
        return experiment.with_run(
            epochs=self.epochs, max_tasks=self.max_tasks, progress=self.progress, precision=self.precision
        )

    def default_run_root(self) -> Path:
        from nscl.paths import output_dir

        return output_dir("runs") / self.preset / self.method / self.benchmark_id

    def run(self, run_root: str | Path | None = None):
        """Run the selected methods for every seed (resumable): (metrics frame, {(method, seed): RunResult})."""
        experiment = self.experiment()
        root = Path(run_root or self.run_root or self.default_run_root())
        return experiment.run_all(seeds=self.seeds, run_root=root, only=self.selected_methods())

    # -- (de)serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        out["overrides"] = plain(self.overrides)
        out["own_data"] = plain(self.own_data)
        return out

    def replace(self, **changes) -> ExperimentConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], **changes) -> ExperimentConfig:
        """From a mapping (a preset file's contents); keys may use dashes; `changes` win over `values`."""
        if not isinstance(values, Mapping):
            raise ValueError(f"an experiment config must be a mapping of field -> value, got {type(values).__name__}")
        merged = {str(k).replace("-", "_"): v for k, v in {**values, **changes}.items()}
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in merged if k not in names]
        if unknown:
            raise ValueError(
                f"unknown ExperimentConfig field{'s' if len(unknown) > 1 else ''} {unknown}"
                f"{suggest(unknown[0], names)}; the fields are {names}"
            )
        return cls(**merged)

    @classmethod
    def from_file(cls, path: str | os.PathLike, **changes) -> ExperimentConfig:
        """From a TOML (.toml), YAML (.yaml/.yml, needs PyYAML) or JSON (.json) file; `changes` win."""
        return cls.from_dict(read_config_file(path), **changes)


def config_fields() -> list[dataclasses.Field]:
    return list(dataclasses.fields(ExperimentConfig))


def _choices(f: dataclasses.Field) -> tuple | None:
    choices = f.metadata.get("choices")
    return tuple(choices()) if callable(choices) else choices
