"""The command line: `python -m nscl run | sweep | report`.

    python -m nscl run --method nsp2 --benchmark shapes100-10s --seeds 0 1 2 --epochs 1
    python -m nscl run --config presets/dmnsp-tiny.toml --overrides lr=0.005 --max-tasks 2
    python -m nscl sweep --methods nsp2 dmnsp --benchmarks shapes100-10s shapes100-tinted-10s --seeds 0 1 2 \\
        --run-root runs/tiny [--address auto]
    python -m nscl report runs/tiny

`run` and `sweep` take every ExperimentConfig field as an option (generated from the dataclass, so
`--help` lists each with its type, default and accepted values); a `--config` file (TOML, YAML or
JSON) gives the base values and the options given on the line win. The whole config is validated
before any data is loaded.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import sys
import typing
import warnings
from typing import Any, Callable, Literal, Sequence

from nscl.experiment.config import ExperimentConfig, _choices, describe_type, read_config_file

__all__ = ["main", "build_parser"]

_SWEEP_GRID = ("method", "benchmark", "seeds", "run_root")


def _strip_optional(hint: Any) -> tuple[Any, bool]:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, __import__("types").UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else hint), True
    return hint, False


def _scalar(kind: Any, optional: bool):
    def parse(text: str):
        if optional and text.lower() in ("none", "null"):
            return None
        try:
            if kind is int:
                return int(text)
            if kind is float:
                return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        return text

    parse.__name__ = getattr(kind, "__name__", "value")
    return parse


def parse_value(text: str) -> Any:
    """A command-line value: JSON (numbers, true/false, null, lists), a Python literal, else the string."""
    for loader in (json.loads, ast.literal_eval):
        try:
            return loader(text)
        except (ValueError, SyntaxError):
            continue
    return text


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: give KEY=VALUE, e.g. lr=0.005")
    return key.strip(), parse_value(value.strip())


def _help(f: dataclasses.Field, hint: Any) -> str:
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    text = f"{f.metadata.get('help', '')} [type: {describe_type(hint)}; default: {default!r}"
    choices = _choices(f)
    if choices is None and typing.get_origin(_strip_optional(hint)[0]) is Literal:
        choices = typing.get_args(_strip_optional(hint)[0])
    if choices is not None:
        text += f"; accepted: {', '.join(map(str, choices))}"
    return (text + "]").replace("%", "%%")


def add_config_arguments(parser: argparse.ArgumentParser, skip: Sequence[str] = ()) -> None:
    """One option per ExperimentConfig field (not given: argparse.SUPPRESS, so files keep their values)."""
    hints = typing.get_type_hints(ExperimentConfig)
    group = parser.add_argument_group("experiment config (nscl.experiment.config.ExperimentConfig)")
    for f in dataclasses.fields(ExperimentConfig):
        if f.name in skip:
            continue
        hint = hints[f.name]
        base, optional = _strip_optional(hint)
        flag = "--" + f.name.replace("_", "-")
        common = dict(dest=f.name, default=argparse.SUPPRESS, help=_help(f, hint))
        origin = typing.get_origin(base)
        if base is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
        elif origin is tuple:
            element = typing.get_args(base)[0]
            group.add_argument(
                flag, nargs="+", type=_scalar(element, optional), metavar=describe_type(element).upper(), **common
            )
        elif origin is dict or base is dict or dataclasses.is_dataclass(base):  # a dataclass: its fields as KEY=VALUE
            group.add_argument(flag, nargs="+", type=_key_value, metavar="KEY=VALUE", **common)
        else:
            kind = base if base in (int, float) else str
            choices = _choices(f) or (typing.get_args(base) if origin is Literal else None)
            metavar = (
                "{" + ",".join(map(str, choices)) + "}"
                if choices and len(choices) <= 4
                else describe_type(kind).upper()
            )
            group.add_argument(flag, type=_scalar(kind, optional), metavar=metavar, **common)


def _config_values(args: argparse.Namespace, skip: Sequence[str] = ()) -> dict:
    """The file's values (if --config) with the options given on the line on top."""
    values = read_config_file(args.config) if getattr(args, "config", None) else {}
    given = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(ExperimentConfig)
        if hasattr(args, f.name) and f.name not in skip
    }
    for name, value in list(given.items()):
        if isinstance(value, list) and value == [None]:
            given[name] = None
    for name in ("overrides", "own_data"):  # KEY=VALUE on the line change the file's table, key by key
        if name in given and given[name] is not None:
            given[name] = {**dict(values.get(name) or values.get(name.replace("_", "-")) or {}), **dict(given[name])}
    return {**{k.replace("-", "_"): v for k, v in values.items()}, **given}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nscl",
        description="Null-space continual learning: run an "
        "experiment, a grid of them on Ray, or report on finished runs.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{run,sweep,report,artifacts,export}")

    run = commands.add_parser(
        "run",
        allow_abbrev=False,
        help="one experiment (a method family on a benchmark, every seed), resumable",
        description="Run one experiment: the selected methods of a preset for every seed, "
        "checkpointed under run_root/<method label>/seed<k> (run again to resume).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "--config", metavar="FILE", help="TOML / YAML / JSON file with ExperimentConfig fields (options given here win)"
    )
    run.add_argument("--dry-run", action="store_true", help="validate and print the config, run nothing")
    run.add_argument("--threads", type=_threads, metavar="N", help=THREADS_HELP)
    add_config_arguments(run)

    sweep = commands.add_parser(
        "sweep",
        allow_abbrev=False,
        help="methods x benchmarks x seeds, each a resumable run, on Ray",
        description="Expand methods x benchmarks x seeds and run each point as a resumable "
        "run in run_root/<method>/<benchmark>/seed<k>, on Ray (local unless "
        "--address). Finished points are skipped, unfinished ones resumed; a "
        "failing point is reported and does not stop the others.",
    )
    sweep.add_argument(
        "--config",
        metavar="FILE",
        help="TOML / YAML / JSON file: ExperimentConfig fields shared by "
        "every point, and optionally methods, benchmarks, seeds",
    )
    sweep.add_argument("--methods", nargs="+", metavar="METHOD", help="method families [accepted: nsp2, dmnsp]")
    sweep.add_argument(
        "--benchmarks", nargs="+", metavar="BENCHMARK", help="benchmark ids (default: each method's preset default)"
    )
    sweep.add_argument("--seeds", nargs="+", type=int, metavar="INT", help="seeds (default: 0)")
    sweep.add_argument(
        "--run-root",
        dest="run_root",
        metavar="DIR",
        help="root of the grid's run directories (default: $NSCL_OUTPUT/sweeps/<preset>)",
    )
    sweep.add_argument(
        "--address",
        metavar="ADDR",
        help="Ray cluster address ('auto', 'host:port', 'ray://host:10001'); default: a local Ray",
    )
    sweep.add_argument(
        "--backend",
        choices=("auto", "ray", "local"),
        default="auto",
        help="'ray', 'local' (sequential, no Ray) or 'auto' (Ray when installed) [default: auto]",
    )
    sweep.add_argument(
        "--num-cpus",
        dest="num_cpus",
        type=_cpu_slots,
        metavar="N",
        help="CPU slots of the local Ray (default: all cores); one point per slot without GPUs",
    )
    sweep.add_argument("--dry-run", action="store_true", help="validate and list the points, run nothing")
    sweep.add_argument(
        "--threads", type=_threads, metavar="N", help=THREADS_HELP + " (backend local; Ray gives each point its CPUs)"
    )
    add_config_arguments(sweep, skip=_SWEEP_GRID)

    report = commands.add_parser(
        "report",
        help="mean ± std tables of the runs under a root",
        description="Gather every run directory under RUN_ROOT (metrics.json with its "
        "run.json / config.json) into mean ± std tables per benchmark and "
        "method (nscl.results.tables.summary_table), and list failed sweep points.",
    )
    report.add_argument("run_root", metavar="RUN_ROOT")
    report.add_argument("--csv", metavar="FILE", help="also write one row per run to this CSV")
    report.add_argument(
        "--skip-unreadable",
        action="store_true",
        help="leave out runs whose metrics.json cannot be read (listed); without it they stop the report",
    )

    artifacts = commands.add_parser(
        "artifacts",
        help="verify (or rebuild) the shipped tiny backbones and shapes100 checksums",
        description="verify: check the shipped tiny backbones' files against their checksums and render the standard "
        "shapes100 sets here, comparing them byte for byte with the shipped checksums (does this machine "
        "start from the same point as the committed results?). build: pretrain the tiny backbones on this "
        "machine and record them and the data checksums as the shipped artifacts (every committed result "
        "must then be recomputed).",
    )
    artifacts.add_argument("action", choices=("verify", "build"))
    artifacts.add_argument(
        "--only",
        nargs="+",
        choices=("vit", "clip", "shapes"),
        default=["vit", "clip", "shapes"],
        help="which artifacts [default: all]",
    )
    export = commands.add_parser(
        "export",
        help="write a data set as image folders (train/<class>/*.png, test/<class>/*.png)",
        description="Write CIFAR-10 / CIFAR-100 (or shapes100, digits) as image folders: the layout other code "
        "bases read and the one --own-data reads. PNG: the exact pixels.",
    )
    export.add_argument("dataset", choices=("cifar10", "cifar100", "shapes100", "digits"))
    export.add_argument("out", help="folder to write train/ and test/ into")
    export.add_argument("--data-root", default=None, help="where the data set is (default: $NSCL_DATA)")
    export.add_argument("--download", action="store_true", help="let torchvision download CIFAR when missing")
    parser.set_defaults(
        _parsers={"run": run, "sweep": sweep, "report": report, "artifacts": artifacts, "export": export}
    )
    return parser


def _print_config(config: ExperimentConfig) -> None:
    print(json.dumps(config.to_dict(), indent=2, default=str))


def _cmd_run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from nscl.results.tables import summary_table

    try:
        config = ExperimentConfig.from_dict(_config_values(args))
        config.check_device()
    except ValueError as err:
        parser.error(str(err))
    _print_config(config)
    print(f"methods: {config.selected_methods()}")
    if config.own_data is not None:
        from nscl.data.benchmarks import own_data_summary
        from nscl.data.folders import ImageFolderError

        try:  # a dry run decodes every image too: an unreadable one is named before a GPU is booked
            print(own_data_summary(config.benchmark_spec, check=args.dry_run and config.own_data.check_images))
        except ImageFolderError as err:
            print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
            return 2
    if args.dry_run:
        return 0
    _set_threads(args.threads)
    root = config.run_root or config.default_run_root()
    try:
        frame, _ = config.run(root)
    except (ValueError, RuntimeError, FileNotFoundError, FloatingPointError) as err:
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # e.g. a read-only or full run root: say where, not a trace
        print(
            f"error: cannot write the runs under {root}: {err.strerror or err} ({err.filename}). "
            "Give a writable --run-root",
            file=sys.stderr,
        )
        return 1
    print(summary_table(frame).to_string())
    print(f"runs in {root} (metrics.csv: one row per method and seed)")
    return 0


THREADS_HELP = (
    "torch threads of this process (default: torch's, one per core); with N runs side by side on N cores, "
    "give 1 each so that they do not oversubscribe the cores (benchmarks/concurrent_runs.py measures it)"
)


def _positive_int(what: str) -> Callable[[str], int]:
    """An argparse type: an integer >= 1, refused with `what` it counts (0 Ray slots would wait forever)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < 1:
            raise argparse.ArgumentTypeError(
                f"{text if value is not None else repr(text)}: expected an integer >= 1 ({what})"
            )
        return value

    return parse


_threads = _positive_int("torch threads")
_cpu_slots = _positive_int("CPU slots of the local Ray; every point needs one")


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _cmd_sweep(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from nscl.experiment import grid
    from nscl.results import collect

    try:
        values = _config_values(args, skip=_SWEEP_GRID)
        methods = args.methods or values.pop("methods", None) or ([values["method"]] if "method" in values else None)
        benchmarks = (
            args.benchmarks
            or values.pop("benchmarks", None)
            or ([values["benchmark"]] if values.get("benchmark") else [None])
        )
        seeds = args.seeds or values.get("seeds") or [0]
        run_root = args.run_root or values.get("run_root")
        for key in ("methods", "benchmarks"):
            values.pop(key, None)
        if not methods:
            parser.error("give --methods (nsp2, dmnsp) or `methods` in the --config file")
        if run_root is None:
            from nscl.paths import output_dir

            run_root = output_dir("sweeps") / values.get("preset", "tiny")
        runs = grid.expand(methods, benchmarks, seeds, run_root, base=values)
    except ValueError as err:
        parser.error(str(err))
    print(f"{len(runs)} point(s) under {run_root}:")
    for run in runs:
        print(f"  {run.key}{'  (done)' if grid.is_finished(run) else ''}")
    if args.dry_run:
        return 0
    _set_threads(args.threads)
    try:
        outcomes = grid.sweep(runs, address=args.address, backend=args.backend, num_cpus=args.num_cpus)
    except (ValueError, RuntimeError) as err:  # settings that no point could run with: a message, not a trace
        print(f"sweep: {err}", file=sys.stderr)
        return 2
    print(grid.format_outcomes(outcomes))
    for title, table in collect.report_tables(run_root).items():
        print(f"\n== {title} ==\n{table.to_string()}")
    return 1 if any(o["state"] == "failed" for o in outcomes) else 0


def _cmd_report(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from pathlib import Path

    from nscl.experiment import grid
    from nscl.results import collect

    root = Path(args.run_root)
    if not root.is_dir():
        parser.error(f"RUN_ROOT {str(root)!r} is not a directory")
    try:
        with warnings.catch_warnings():  # the runs left out on purpose are listed below, once
            warnings.simplefilter("ignore")
            runs = collect.collect_runs(root, skip_unreadable=args.skip_unreadable)
            tables = collect.report_tables(root, skip_unreadable=args.skip_unreadable, collected=runs)
    except ValueError as err:  # unreadable runs, or two runs of one method and seed: a message, not a trace
        print(f"report: {err}", file=sys.stderr)
        return 2
    if not tables:
        print(f"no finished task in any run under {root} (looked for metrics.json)")
        return 1
    for problem in runs.attrs.get("unreadable", []):
        print(f"left out (unreadable): {problem}")
    print("mean ± std over seeds, in % (std omitted for one seed)")
    for title, table in tables.items():
        print(f"\n== {title} ==\n{table.to_string()}")
    failed = grid.failed_points(root)
    if failed:
        print(f"\n{len(failed)} failed sweep point(s):")
        for point in failed:
            print(f"  {point['key']} ({point['run_dir']}): {point['error']}")
    if args.csv:
        runs.to_csv(args.csv, index=False)
        print(f"\none row per run: {args.csv}")
    return 0


def _cmd_artifacts(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from nscl.data.checksums import STANDARD_SETS, record_checksums
    from nscl.data.shapes import make_shapes100, standard_set_checksums
    from nscl.models import tiny
    from nscl.models.artifacts import load_shipped, read_manifest

    backbones = tuple(n for n in ("vit", "clip") if n in args.only)
    if args.action == "build":
        if "shapes" in args.only:
            print(f"shapes100 checksums: {record_checksums(standard_set_checksums())}")
        for name, entry in tiny.build_shipped_weights(backbones).items():
            print(
                f"tiny-{name}: {entry['file']} ({entry['bytes'] / 2**20:.1f} MiB), identity {entry['identity']}, "
                f"final loss {entry['stats']['final_loss']:.3f}, {entry['stats']['seconds']:.0f} s on {entry['made_on']}"
            )
        return 0
    failures = 0
    for name in backbones:
        config = tiny.TINY_PRETRAIN[name]
        shipped = load_shipped(f"tiny-{name}", tiny.pretraining_key(name, config))  # raises on a damaged file
        if shipped is None:
            failures += 1
            print(
                f"tiny-{name}: no shipped weights for the current recipe (key {tiny.pretraining_key(name, config)}); "
                f"the manifest has {read_manifest().get(f'tiny-{name}', {}).get('key', 'none')}: run `python -m nscl "
                f"artifacts build` and recompute the committed results"
            )
        else:
            print(f"tiny-{name}: shipped file matches its checksum, identity {shipped[1].identity}")
    if "shapes" in args.only:
        for split, n, size, seed, background in STANDARD_SETS:
            make_shapes100(split, n, size, seed, background=background)  # raises ShapesChecksumError on a difference
        print(f"shapes100: the {len(STANDARD_SETS)} standard sets render here exactly as shipped")
    return 1 if failures else 0


def _cmd_export(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from nscl.data.datasets import DatasetNotFoundError
    from nscl.data.export import export_image_folder

    try:
        written = export_image_folder(args.dataset, args.out, root=args.data_root, download=args.download)
    except (DatasetNotFoundError, ValueError) as err:
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print(f"{args.dataset}: {written['train']} train and {written['test']} test images in {args.out}/{{train,test}}")
    return 0


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings as the command line's users read them: the class and the message, not a source line."""
    return f"{category.__name__}: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    command = {
        "run": _cmd_run,
        "sweep": _cmd_sweep,
        "report": _cmd_report,
        "artifacts": _cmd_artifacts,
        "export": _cmd_export,
    }[args.command]
    return command(args, args._parsers[args.command]) or 0
