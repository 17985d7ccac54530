"""Helpers shared by the exercise tests and the timing of the exercises.

    python -m book.exercises.tools time [build/exercises/solution/*.ipynb]
    python -m book.exercises.tools seeds --seeds 0 1 2 build/exercises/solution/ex03_nsp2.ipynb
    python -m book.exercises.tools seeds --markdown book/exercises/expected_answers.md   # the teachers' tables

`execute` runs a built notebook's code cells in this process (Otter's own cells skipped) and returns
its global namespace with the seconds spent per question: the cells from one `grader.check` to the
next count towards the next question, so a task's setup cells count with it. `question_tests` and
`run_checks` run a question's checks (public and hidden) against such a namespace with Otter's own
test-file classes, exactly as the autograder does after executing a submission.
"""

from __future__ import annotations

import argparse
import json
import numbers
import re
import time
from dataclasses import dataclass
from pathlib import Path

CHECK = re.compile(r"""grader\.check\(\s*["'](\w+)["']\s*\)""")


def load(path: str | Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def code_cells(nb: dict) -> list[str]:
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in nb["cells"] if c["cell_type"] == "code"]


def is_otter_cell(source: str) -> bool:
    return "import otter" in source or "grader.check_all()" in source or "grader.export(" in source


SEED_LINE = re.compile(r"^seed = \d+", flags=re.MULTILINE)


def execute(path: str | Path, stop_before_blank: bool = False, seed: int | None = None
            ) -> tuple[dict, dict[str, float]]:
    """Run the notebook's code cells in a fresh namespace; (namespace, seconds per question).

    stop_before_blank: stop at the first cell with a `...` placeholder (a student notebook's blank).
    seed: replaces the notebook's `seed = 0` line (the seed of its experiments), if it has one.
    """
    nb = load(path)
    env: dict = {"__name__": "__main__"}
    times: dict[str, float] = {}
    pending = 0.0
    for source in code_cells(nb):
        if is_otter_cell(source):
            continue
        check = CHECK.search(source)
        if check:
            times[check.group(1)] = times.get(check.group(1), 0.0) + pending
            pending = 0.0
            continue
        if stop_before_blank and has_blank(source):
            break
        if seed is not None:
            source = SEED_LINE.sub(f"seed = {int(seed)}", source)
        start = time.perf_counter()
        exec(compile(source, f"<{Path(path).name} cell>", "exec"), env)
        pending += time.perf_counter() - start
    if pending:
        times["after the last question"] = pending
    return env, times


def has_blank(source: str) -> bool:
    """Whether a code cell holds one of Otter's placeholders (`x = ...` or a bare `...` line)."""
    return any(line.strip() == "..." or re.search(r"=\s*\.\.\.\s*(#.*)?$", line) for line in source.splitlines())


def question_tests(nb_or_path) -> dict[str, str]:
    """{question: exception-based test file source} from a built notebook's Otter metadata."""
    nb = load(nb_or_path) if isinstance(nb_or_path, (str, Path)) else nb_or_path
    return dict(nb["metadata"]["otter"]["tests"])


@dataclass
class Outcome:
    name: str
    passed: bool
    hidden: bool
    points: float
    message: str


def run_checks(test_source: str, env: dict, name: str = "q") -> list[Outcome]:
    """Every test case of one question against `env`, as Otter's autograder runs them."""
    from otter.test_files import ExceptionTestFile

    test = ExceptionTestFile.from_string(test_source, path=name)
    test.run(env)
    return [Outcome(r.test_case.name, r.passed, r.test_case.hidden, r.test_case.points, r.message)
            for r in test.test_case_results]


def score(outcomes: list[Outcome]) -> float:
    return sum(o.points for o in outcomes if o.passed)


def answers(env: dict) -> dict:
    """The answer variables (q1_..., q2_...) of an executed notebook, printable."""
    out = {}
    for key, value in env.items():
        if re.match(r"q\d+_", key) and not callable(value):
            out[key] = value.round(4).to_dict() if hasattr(value, "to_dict") else value
    return out


def flat_answers(env: dict) -> dict[str, object]:
    """The scalar answers of an executed notebook, dicts and one-column tables spread out as name[key]."""
    flat: dict[str, object] = {}
    for key, value in answers(env).items():
        if isinstance(value, dict):
            for inner, item in value.items():
                if _is_scalar(item):   # not a DataFrame's column ({row: value}) nor a run's result
                    flat[f"{key}[{inner}]"] = item
        elif _is_scalar(value):
            flat[key] = value
    return flat


def _is_scalar(value: object) -> bool:
    return isinstance(value, (numbers.Number, str)) or value is None


def _cell(value: object) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_tables(rows: dict[str, dict[int, dict[str, object]]]) -> str:
    """One Markdown table per set: a row per seed, a column per scalar answer."""
    parts = []
    for name, by_seed in rows.items():
        columns = list(dict.fromkeys(k for answers_ in by_seed.values() for k in answers_))
        parts += [f"**{name}**", "", "| seed | " + " | ".join(f"`{c}`" for c in columns) + " |",
                  "|---|" + "---|" * len(columns)]
        for seed, answers_ in by_seed.items():
            parts.append(f"| {seed} | " + " | ".join(_cell(answers_.get(c, "")) for c in columns) + " |")
        parts.append("")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="time the solutions of built exercise notebooks, per question; "
                                                 "or print their answers for several seeds")
    parser.add_argument("command", choices=["time", "seeds"])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--markdown", type=Path, help="seeds: also write the answers as Markdown tables here")
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parents[2]
    notebooks = args.notebooks or sorted((root / "build" / "exercises" / "solution").glob("*.ipynb"))
    if args.command == "seeds":
        tables: dict[str, dict[int, dict[str, object]]] = {}
        for path in notebooks:
            for seed in args.seeds:
                try:
                    env, _ = execute(path, seed=seed)
                except Exception as exc:  # report and go on with the next seed
                    print(f"{path.stem} seed {seed}: FAILED {type(exc).__name__}: {exc}", flush=True)
                    continue
                print(f"{path.stem} seed {seed}: {answers(env)}", flush=True)
                if "seed" in env:   # sets without a seed give the same answers for every seed
                    tables.setdefault(path.stem, {})[seed] = flat_answers(env)
        if args.markdown:
            from nscl.models.artifacts import machine_description, read_manifest

            weights = ", ".join(f"{k}@{v['identity']}" for k, v in sorted(read_manifest().items()))
            header = (f"<!-- written by `python -m book.exercises.tools seeds --markdown {args.markdown}`; "
                      f"weights {weights}; {machine_description()} -->\n\n")
            args.markdown.write_text(header + markdown_tables(tables))
            print(f"-> {args.markdown}")
        return
    for path in notebooks:
        start = time.perf_counter()
        env, times = execute(path)
        total = time.perf_counter() - start
        failed = []
        for q, source in question_tests(path).items():
            failed += [f"{q}: {o.message}" for o in run_checks(source, env, q) if not o.passed]
        per = ", ".join(f"{q} {t:.1f} s" for q, t in times.items())
        print(f"{path.stem}: {total:.1f} s ({per}){'; FAILED ' + '; '.join(failed) if failed else ''}", flush=True)


if __name__ == "__main__":
    main()
