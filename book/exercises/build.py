"""Build the exercise sets: student notebooks, autograders and solutions, from one source each.

    python book/exercises/build.py [--out build/exercises] [--no-run-tests] [NAME ...]

Every source ``book/exercises/exNN_*.py`` (a jupytext py:percent notebook in Otter Assign's format:
``# ASSIGNMENT CONFIG``, ``# BEGIN QUESTION``, ``# BEGIN SOLUTION``, ``# BEGIN TESTS`` raw cells) is
converted to .ipynb and run through Otter Assign (otter-grader), which by default also executes the
solutions and fails unless every check passes. The results are gathered into

    <out>/student/<name>.ipynb              hand these out: no solutions, no hidden checks
    <out>/autograder/<name>-autograder.zip  what `python -m book.exercises.grade` grades with
    <out>/solution/<name>.ipynb             the lecturer's copy: solutions and every check
    <out>/manifest.json                     exercises, questions and points

NAME restricts the build to some sources (``ex01_null_space`` or ``ex01``). Sources stay in
book/exercises; nothing in <out> is meant to be edited.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEFAULT_OUT = ROOT / "build" / "exercises"
KINDS = ("student", "autograder", "solution")


def sources(names: list[str] | None = None, folder: Path = HERE) -> list[Path]:
    """Exercise sources in order, optionally only those whose stem is or starts with one of `names`."""
    found = sorted(p for p in folder.glob("ex[0-9][0-9]_*.py") if p.is_file())
    if not names:
        return found
    chosen = [p for p in found if any(p.stem == n or p.stem.startswith(n + "_") for n in names)]
    missing = [n for n in names if not any(p.stem == n or p.stem.startswith(n + "_") for p in found)]
    if missing:
        raise SystemExit(f"build: no exercise source for {', '.join(missing)} in {folder}")
    return chosen


def to_notebook(source: Path, dest: Path) -> Path:
    """The jupytext source as an .ipynb (what Otter Assign reads)."""
    import jupytext

    notebook = jupytext.read(source)
    notebook.metadata.pop("jupytext", None)
    dest.parent.mkdir(parents=True, exist_ok=True)
    jupytext.write(notebook, dest, fmt="ipynb")
    return dest


def questions(notebook_path: Path) -> list[dict]:
    """(name, points) of every question of a built notebook, from Otter's test metadata."""
    from otter.test_files import ExceptionTestFile

    nb = json.loads(notebook_path.read_text(encoding="utf-8"))
    out = []
    for name, source in nb["metadata"]["otter"]["tests"].items():
        test = ExceptionTestFile.from_string(source, path=name)
        out.append({"name": name, "points": sum(tc.points for tc in test.test_cases)})
    return out


def build_one(source: Path, out: Path, run_tests: bool = True) -> dict:
    """Run Otter Assign on one source; copy its three products into out/{student,autograder,solution}."""
    import otter.assign

    name = source.stem
    start = time.time()
    with tempfile.TemporaryDirectory(prefix=f"otter-{name}-") as tmp:
        master = to_notebook(source, Path(tmp) / "src" / f"{name}.ipynb")
        result = Path(tmp) / "dist"
        otter.assign.main(str(master), str(result), no_pdfs=True, no_run_tests=not run_tests)
        zips = sorted((result / "autograder").glob(f"{name}-autograder_*.zip"))
        if len(zips) != 1:
            raise RuntimeError(f"build: expected one autograder zip for {name}, found {[z.name for z in zips]}")
        for kind in KINDS:
            (out / kind).mkdir(parents=True, exist_ok=True)
        shutil.copy2(result / "student" / f"{name}.ipynb", out / "student" / f"{name}.ipynb")
        shutil.copy2(zips[0], out / "autograder" / f"{name}-autograder.zip")
        shutil.copy2(result / "autograder" / f"{name}.ipynb", out / "solution" / f"{name}.ipynb")
    qs = questions(out / "solution" / f"{name}.ipynb")
    return {"name": name, "source": str(source.relative_to(ROOT)) if source.is_relative_to(ROOT) else str(source),
            "questions": qs, "points": sum(q["points"] for q in qs), "seconds": round(time.time() - start, 1),
            "checked": run_tests}


def build(names: list[str] | None = None, out: Path = DEFAULT_OUT, run_tests: bool = True) -> list[dict]:
    out = Path(out)
    entries = []
    for source in sources(names):
        print(f"build: {source.name}{' (running the solutions against every check)' if run_tests else ''}",
              flush=True)
        entry = build_one(source, out, run_tests)
        print(f"build: {entry['name']}: {len(entry['questions'])} questions, {entry['points']:g} points, "
              f"{entry['seconds']} s", flush=True)
        entries.append(entry)
    manifest = out / "manifest.json"
    old = json.loads(manifest.read_text()) if manifest.is_file() else {"exercises": []}
    merged = {e["name"]: e for e in old.get("exercises", [])}
    merged.update({e["name"]: e for e in entries})
    manifest.write_text(json.dumps({"exercises": [merged[k] for k in sorted(merged)]}, indent=1) + "\n")
    return entries


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="only these exercises (e.g. ex01 or ex01_null_space)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--no-run-tests", action="store_true",
                        help="do not execute the solutions against the checks (faster; no verification)")
    args = parser.parse_args(argv)
    entries = build(args.names, args.out, run_tests=not args.no_run_tests)
    print(f"build: {len(entries)} exercise sets in {args.out}/{{{','.join(KINDS)}}}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
