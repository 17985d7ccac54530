"""Grade a folder of submitted exercise notebooks with Otter's autograders; write a CSV of scores.

    python -m book.exercises.grade SUBMISSIONS [--out scores.csv] [--autograders build/exercises/autograder]
                                   [--feedback DIR]

Every ``*.ipynb`` under SUBMISSIONS (sub-folders included, checkpoints skipped) is matched to its
exercise set by the notebook's Otter metadata (``assignment_name``, kept by Jupyter when a student
saves), or else by its file name containing the set's name, and graded with that set's
``<name>-autograder.zip`` through Otter's local grading API (``otter.api.grade_submission``: the
notebook is executed in a fresh kernel, then every public and hidden check runs). No Docker is needed;
the submissions' code runs with this user's rights, so grade untrusted notebooks in a container or VM.

The CSV has one row per submission: ``submission, exercise, <question scores...>, total, possible,
percent, error``. ``--feedback DIR`` also writes each submission's full report (hidden checks
included) as ``DIR/<submission>.txt``, to read or to pass on.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_AUTOGRADERS = ROOT / "build" / "exercises" / "autograder"


def autograders(folder: Path) -> dict[str, Path]:
    """{exercise name: autograder zip} in `folder` (as book/exercises/build.py writes them)."""
    found = {p.name[: -len("-autograder.zip")]: p for p in sorted(Path(folder).glob("*-autograder.zip"))}
    if not found:
        raise SystemExit(f"grade: no *-autograder.zip in {folder}: run `python book/exercises/build.py` first")
    return found


def exercise_of(notebook: Path, names: list[str]) -> str | None:
    """The exercise a submission belongs to: Otter's metadata first, then the file name."""
    try:
        meta = json.loads(notebook.read_text(encoding="utf-8")).get("metadata", {}).get("otter", {})
        name = meta.get("assignment_name")
        if name in names:
            return name
    except (OSError, json.JSONDecodeError):
        pass
    matches = [n for n in names if n in notebook.name or n.split("_")[0] == notebook.name.split("_")[0]]
    return max(matches, key=len) if matches else None


def submissions(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def grade_one(notebook: Path, zip_path: Path):
    from otter.api import grade_submission

    return grade_submission(str(notebook), str(zip_path), quiet=True)


def grade_folder(folder: Path, out: Path, autograder_dir: Path = DEFAULT_AUTOGRADERS,
                 feedback: Path | None = None) -> list[dict]:
    zips = autograders(autograder_dir)
    rows, questions = [], {}
    for notebook in submissions(folder):
        rel = notebook.relative_to(folder).as_posix()
        name = exercise_of(notebook, list(zips))
        row: dict = {"submission": rel, "exercise": name or "", "error": ""}
        if name is None:
            row["error"] = "no matching exercise set (metadata or file name)"
            rows.append(row)
            print(f"grade: {rel}: {row['error']}", file=sys.stderr)
            continue
        start = time.time()
        try:
            results = grade_one(notebook, zips[name])
        except Exception as exc:  # a submission that cannot be graded gets a row, not a crash
            row["error"] = f"{type(exc).__name__}: {exc}"
            rows.append(row)
            print(f"grade: {rel}: {row['error']}", file=sys.stderr)
            continue
        seen = questions.setdefault(name, [])
        for q in results.test_files:
            row[q] = round(float(results.get_score(q)), 4)
            if q not in seen:
                seen.append(q)
        row.update(total=round(float(results.total), 4), possible=round(float(results.possible), 4),
                   percent=round(100 * float(results.total) / float(results.possible), 1) if results.possible else 0.0)
        if results.catastrophic_error is not None:
            row["error"] = f"{type(results.catastrophic_error).__name__}: {results.catastrophic_error}"
        if feedback is not None:
            target = Path(feedback) / (rel.replace("/", "__") + ".txt")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(results.summary(), encoding="utf-8")
        rows.append(row)
        print(f"grade: {rel} ({name}): {row['total']:g} / {row['possible']:g} in {time.time() - start:.0f} s",
              flush=True)
    columns = ["submission", "exercise"]
    for name in sorted(questions):
        columns += [q for q in questions[name] if q not in columns]
    columns += ["total", "possible", "percent", "error"]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("submissions", type=Path, help="folder of submitted notebooks (searched recursively)")
    parser.add_argument("--out", type=Path, default=Path("scores.csv"), help="CSV to write (default scores.csv)")
    parser.add_argument("--autograders", type=Path, default=DEFAULT_AUTOGRADERS,
                        help="folder of <name>-autograder.zip files (default build/exercises/autograder)")
    parser.add_argument("--feedback", type=Path, default=None, help="write each submission's report here")
    args = parser.parse_args(argv)
    if not args.submissions.is_dir():
        raise SystemExit(f"grade: {args.submissions} is not a folder")
    rows = grade_folder(args.submissions, args.out, args.autograders, args.feedback)
    print(f"grade: {len(rows)} submissions -> {args.out}")


if __name__ == "__main__":
    main()
