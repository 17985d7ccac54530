"""The exercise sets of book/exercises: built with Otter Assign, solved, checked, graded.

* every solution passes every check of its set (public and hidden), run as Otter's autograder runs them;
* for every question, plausible wrong answers (a wrong sign, a missing normalisation, the transpose, an
  off-by-one...) fail its checks, and the failure says what is wrong (the expected phrase is asserted);
* the student notebooks run in a kernel up to their first blank, and hold no solution and no hidden check;
* `python -m book.exercises.grade` over a folder with one solved and one wrong submission writes the
  expected scores.

The solutions are executed once per session in this process (tiny models, 2-3 tasks, 1-2 epochs);
the whole file takes a few minutes on 2 cores.
"""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("otter")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exercise_wrong_answers import WRONG  # noqa: E402  (tests/ is on sys.path under pytest)

from book.exercises import build as exbuild  # noqa: E402
from book.exercises import tools  # noqa: E402

SOURCES = exbuild.sources()
NAMES = [p.stem for p in SOURCES]


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exercises")
    exbuild.build(out=out, run_tests=False)
    return out


_solved: dict[str, dict] = {}


def solved(built: Path, name: str) -> dict:
    """The namespace of the executed solution notebook (once per session)."""
    if name not in _solved:
        _solved[name] = tools.execute(built / "solution" / f"{name}.ipynb")[0]
    return _solved[name]


def checks(built: Path, name: str) -> dict[str, str]:
    return tools.question_tests(built / "solution" / f"{name}.ipynb")


# -- every solution passes its checks ----------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_solution_passes_every_check(built, name):
    env = solved(built, name)
    tests = checks(built, name)
    assert len(tests) >= 3, f"{name}: an exercise set has 3-5 tasks"
    for question, source in tests.items():
        outcomes = tools.run_checks(source, env, question)
        assert any(o.hidden for o in outcomes), f"{name} {question}: no hidden check"
        failed = [o.message for o in outcomes if not o.passed]
        assert not failed, f"{name} {question}: the solution fails its checks:\n" + "\n".join(failed)


# -- plausible wrong answers fail, with a message that says what is wrong ----------------------------

WRONG_CASES = [(name, i) for name in NAMES if name in WRONG for i in range(len(WRONG[name]()))]


def test_every_question_has_wrong_answers(built):
    for name in NAMES:
        assert name in WRONG, f"{name}: no wrong answers are tested"
        covered = {q for q, *_ in WRONG[name]()}
        assert covered == set(checks(built, name)), (
            f"{name}: questions without a wrong answer: {set(checks(built, name)) - covered}"
        )


@pytest.mark.parametrize(
    "name,index",
    WRONG_CASES,
    ids=[f"{n}-{WRONG[n]()[i][0]}-{WRONG[n]()[i][1].replace(' ', '_')}" for n, i in WRONG_CASES],
)
def test_wrong_answer_fails_with_its_message(built, name, index):
    question, label, mutate, phrase = WRONG[name]()[index]
    env = dict(solved(built, name))
    env.update(mutate(env))
    outcomes = tools.run_checks(checks(built, name)[question], env, question)
    failed = [o for o in outcomes if not o.passed]
    assert failed, f"{name} {question}: the wrong answer '{label}' passes every check"
    messages = "\n".join(o.message for o in failed)
    assert phrase in messages, f"{name} {question} '{label}': expected '{phrase}' in the failure, got:\n{messages}"


# -- the student versions -----------------------------------------------------------------------------


def _solution_lines(solution_nb: dict, student_nb: dict) -> list[str]:
    """The lines that only the solutions hold: those marked `# SOLUTION` or inside `# BEGIN SOLUTION` /
    `# END SOLUTION` in the answer cells, less any that the public parts also show (the prompts, the given
    code around the blanks, the public checks)."""
    tag = "otter_assign_solution_cell"
    secret, public = [], []
    for cell in solution_nb["cells"]:
        source = "".join(cell["source"])
        if tag not in cell.get("metadata", {}).get("tags", []):
            public.append(source)
            continue
        inside = False
        for line in source.splitlines():
            stripped = line.strip()
            if stripped.startswith("# BEGIN SOLUTION"):
                inside = True
            elif stripped.startswith("# END SOLUTION"):
                inside = False
            elif inside or stripped.endswith("# SOLUTION"):
                secret.append(line.split("# SOLUTION")[0].strip())
            else:
                public.append(line)
    public_text = "\n".join(public) + "\n".join(student_nb["metadata"]["otter"]["tests"].values())
    lines = [t for t in secret if len(t) >= 8 and not t.startswith("#") and t not in public_text]
    assert lines, "no solution line found to look for"
    return lines


@pytest.mark.parametrize("name", NAMES)
def test_no_solution_in_student_notebook(built, name):
    student = tools.load(built / "student" / f"{name}.ipynb")
    solution = tools.load(built / "solution" / f"{name}.ipynb")
    text = json.dumps(student)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "# SOLUTION", "BEGIN TESTS", "hidden=True", "hidden: true"):
        assert marker not in text, f"{name}: '{marker}' in the student notebook"
    leaked = [line for line in _solution_lines(solution, student) if line in text]
    assert not leaked, f"{name}: solution lines in the student notebook: {leaked}"
    for question, source in solution["metadata"]["otter"]["tests"].items():
        hidden = re.findall(r"hidden=True[^\n]*\n(def \w+)", source)
        assert hidden, f"{name} {question}: no hidden check"
        for header in hidden:
            assert header not in text, f"{name} {question}: the hidden check '{header}' is in the student notebook"


@pytest.mark.parametrize("name", NAMES)
def test_student_notebook_cells_are_valid_python(built, name):
    """Every code cell of the student version parses (a blank is `...`, a valid expression)."""
    import ast

    for source in tools.code_cells(tools.load(built / "student" / f"{name}.ipynb")):
        ast.parse(source)


@pytest.mark.parametrize("name", NAMES)
def test_student_notebook_runs_to_its_first_blank(built, name):
    import nbformat
    from nbclient import NotebookClient

    path = built / "student" / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "code" and tools.has_blank(cell.source):
            break
        cells.append(cell)
    assert len(cells) < len(nb.cells), f"{name}: the student notebook has no blank to fill"
    assert any(c.cell_type == "code" and "grader = otter.Notebook" in c.source for c in cells)
    nb.cells = cells
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()


# -- grading a folder -----------------------------------------------------------------------------------

GRADED = "ex00_metrics"


def test_grade_command_writes_expected_scores(built, tmp_path):
    """One solved and one wrong submission of set 0: the wrong one lets forgetting's max run over the
    last step too (task 2: its public check passes, its hidden one fails) and leaves task 5 blank."""
    solution = tools.load(built / "solution" / f"{GRADED}.ipynb")
    student = tools.load(built / "student" / f"{GRADED}.ipynb")
    wrong = json.loads(json.dumps(solution))
    changed = 0
    for cell in wrong["cells"]:
        src = "".join(cell["source"])
        if "R[j: t - 1, j].max()" in src and "def forgetting_of" in src:
            cell["source"] = src.replace("R[j: t - 1, j].max()", "R[j:, j].max()")
            changed += 1
    answer_cells = [c for c in wrong["cells"] if "otter_assign_solution_cell" in c.get("metadata", {}).get("tags", [])]
    blank_q5 = [c for c in student["cells"] if "otter_answer_cell" in c.get("metadata", {}).get("tags", [])][-1]
    assert changed == 1 and "q5_answer" in "".join(answer_cells[-1]["source"])
    answer_cells[-1]["source"] = blank_q5["source"]
    submissions = tmp_path / "submissions"
    (submissions / "alice").mkdir(parents=True)
    (submissions / "alice" / f"{GRADED}.ipynb").write_text(json.dumps(solution))
    (submissions / f"bob_{GRADED}.ipynb").write_text(json.dumps(wrong))
    out = tmp_path / "scores.csv"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "book.exercises.grade",
            str(submissions),
            "--out",
            str(out),
            "--autograders",
            str(built / "autograder"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    print(proc.stdout)
    print(out.read_text())
    rows = {r["submission"]: r for r in csv.DictReader(out.open())}
    assert set(rows) == {f"alice/{GRADED}.ipynb", f"bob_{GRADED}.ipynb"}
    alice, bob = rows[f"alice/{GRADED}.ipynb"], rows[f"bob_{GRADED}.ipynb"]
    assert alice["exercise"] == bob["exercise"] == GRADED
    assert float(alice["total"]) == float(alice["possible"]) == 15 and float(alice["percent"]) == 100
    expected = {"q1": 3, "q2": 2, "q3": 3, "q4": 3, "q5": 0}
    assert {q: float(bob[q]) for q in expected} == expected
    assert float(bob["total"]) == sum(expected.values()) and float(bob["possible"]) == 15
    assert math.isclose(float(bob["percent"]), round(100 * 11 / 15, 1))
