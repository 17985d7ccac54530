"""book/build_site.py: generated tables kept in their own file still render inside the page that marks them."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from book import build_site  # noqa: E402


def test_a_marked_line_is_replaced_by_the_file_it_names(tmp_path, monkeypatch):
    monkeypatch.setattr(build_site, "ROOT", tmp_path)
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "answers.md").write_text("| seed | q |\n|---|---|\n| 0 | 1 |\n")
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n<!-- expected answers: tables/answers.md -->\n\nAfter.\n")
    text = build_site.inline_marked_files(page)
    assert "| 0 | 1 |" in text and "<!--" not in text
    assert text.index("# Title") < text.index("| seed | q |") < text.index("After.")


def test_the_teachers_page_marks_a_file_that_exists():
    text = build_site.inline_marked_files(ROOT / "book" / "exercises" / "teachers.md")
    assert "expected answers:" not in text and "| seed |" in text
