"""docs/conformance.md cites its evidence as `path::test_name`. Every cited test must exist,
so that renaming or deleting a test breaks CI instead of leaving the self-assessment
pointing at nothing; and the page must add up: one row per checklist item with one status
word, a test behind every met or partly met item, something named for every gap, and a
summary whose counts are the rows'."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "conformance.md"
MICROPYTHON_RUNNER = REPO / "tests" / "test_micropython.py"

# The 32 items of ../shared/research/metrology.md §3.5 (not in this repository, so listed).
CHECKLIST = ([f"SW-ID-{i}" for i in range(1, 6)] + [f"SEP-{i}" for i in range(1, 5)]
             + [f"AUD-{i}" for i in range(1, 6)] + [f"TIME-{i}" for i in range(1, 4)]
             + [f"DATA-{i}" for i in range(1, 9)] + [f"UPD-{i}" for i in range(1, 4)]
             + ["RV-1"] + [f"FR-{i}" for i in range(1, 4)])
STATUSES = ("met", "partly met", "not met", "not applicable")
CITATION = re.compile(r"`([^`\s]+)::([^`\s]+)`")
ITEM = re.compile(r"[A-Z]+(?:-[A-Z]+)?-\d+")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def item_rows(text: str) -> list[list[str]]:
    """The checklist tables' rows: [id, requirement, status, evidence, missing]."""
    rows = []
    for line in text.splitlines():
        if line.startswith("| ") and ITEM.fullmatch(_cells(line)[0]):
            rows.append(_cells(line))
    return rows


def summary_rows(text: str) -> dict[str, tuple[int, list[str]]]:
    section = text.split("\n## Summary", 1)[1].split("\n## ", 1)[0]
    out = {}
    for line in section.splitlines():
        cells = _cells(line) if line.startswith("| ") else []
        if cells and cells[0] in STATUSES:
            out[cells[0]] = (int(cells[1]), ITEM.findall(cells[2]))
    return out


def defined_tests(path: Path) -> set[str]:
    """`name` and `Class::name` of every test function defined in a file."""
    names = set()
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.update(f"{node.name}::{m.name}" for m in node.body
                         if isinstance(m, ast.FunctionDef | ast.AsyncFunctionDef))
    return {n for n in names if n.rsplit("::", 1)[-1].startswith("test")}


def citation_problem(path: str, name: str) -> str | None:
    """Why `path::name` does not name a test that runs, or None."""
    file = REPO / path
    if not file.is_file():
        return f"{path}: no such file (write the full path from the repository root)"
    if file.name.startswith("mp_"):  # MicroPython-only modules run through one test
        if f'"{file.stem}"' not in MICROPYTHON_RUNNER.read_text():
            return f"{path}: not run by tests/test_micropython.py (FIRMWARE_MODULES)"
    elif not (file.name.startswith("test_") and file.suffix == ".py"):
        return f"{path}: not a test file pytest collects"
    if name not in defined_tests(file):
        return f"{path}::{name}: no such test function (renamed? write the full name)"
    return None


def test_every_cited_test_exists_under_its_full_name():
    text = DOC.read_text()
    cited = CITATION.findall(text)
    assert len(cited) > 100, f"only {len(cited)} citations found: did the format change?"
    problems = sorted({p for path, name in cited if (p := citation_problem(path, name))})
    assert not problems, "docs/conformance.md cites tests that do not exist:\n" + \
        "\n".join(problems)


def test_the_checker_refuses_what_it_must():
    assert citation_problem("tests/test_conformance_doc.py",
                            "test_every_cited_test_exists_under_its_full_name") is None
    assert citation_problem("firmware/tests/mp_tasks.py",
                            "test_status_records_are_made_periodically_with_their_fields") is None
    assert "no such test function" in citation_problem("tests/test_conformance_doc.py",
                                                       "test_every_cited_…")
    assert "no such file" in citation_problem("…", "test_x")
    assert "not a test file" in citation_problem("tests/gwharness.py", "wait_for")
    assert "no such test function" in citation_problem("tests/test_conformance_doc.py",
                                                       "item_rows")


def test_every_checklist_item_has_one_row_with_a_status_and_what_backs_it():
    rows = item_rows(DOC.read_text())
    ids = [r[0] for r in rows]
    assert sorted(ids) == sorted(CHECKLIST), "items missing or repeated: " + \
        ", ".join(sorted(set(ids) ^ set(CHECKLIST) | {i for i in ids if ids.count(i) > 1}))
    for row in rows:
        assert len(row) == 5, f"{row[0]}: {len(row)} cells, expected 5 (a stray '|'?)"
        item, _, status, evidence, missing = row
        assert status in STATUSES, f"{item}: status {status!r} is not one of {STATUSES}"
        if status in ("met", "partly met"):
            assert CITATION.search(evidence), f"{item} is {status} but cites no test"
        if status in ("partly met", "not met"):
            assert missing.strip("— "), f"{item} is {status} but names nothing missing"


def test_the_summary_counts_are_the_rows():
    text = DOC.read_text()
    by_status = defaultdict(list)
    for item, _, status, _, _ in item_rows(text):
        by_status[status].append(item)
    summary = summary_rows(text)
    assert set(summary) == set(STATUSES)
    for status, (count, items) in summary.items():
        assert count == len(items), f"summary '{status}': count {count}, {len(items)} listed"
        assert sorted(items) == sorted(by_status[status]), \
            f"summary '{status}' lists {items}, the rows say {by_status[status]}"


def test_the_page_says_at_which_commit_it_was_assessed():
    assert re.search(r"assessment was made at commit `[0-9a-f]{7,40}`", DOC.read_text())
