"""Expert annotation: stratified seeded sampling, no repeats, the CSV round trip."""

from __future__ import annotations

import csv
import json

import pytest
from feedback_helpers import fws_fixture, run_main, store_fixture  # noqa: F401 (fixtures)

from cl_toolkit.core.errors import BadInput
from cl_toolkit.feedback import annotate
from cl_toolkit.feedback.extract import extract

NASTY = 'Line one, with "quotes", commas\nline two: Ünïcödé — 消防 🚒\r\nend'


def _populate(store, n_errors=10, n_low=10, n_rest=20):
    for i in range(n_errors):
        store.log_prediction(f"err{i:02d}", f"q{i}", f"a{i}", "1.0.0", confidence=0.9)
        store.add_feedback(f"err{i:02d}", rating=1 + i % 2)
    for i in range(n_low):
        store.log_prediction(f"low{i:02d}", f"q{i}", f"a{i}", "1.0.0", confidence=0.1)
    for i in range(n_rest):
        store.log_prediction(f"rest{i:02d}", f"q{i}", f"a{i}", "1.0.0", confidence=0.9)
        store.add_feedback(f"rest{i:02d}", rating=5)


def test_sampling_follows_the_strata_and_the_seed(store):
    _populate(store)
    picked = annotate.sample(store, 10, errors=4, low_confidence=3, seed=7)
    strata = [s for _, s in picked]
    assert strata == ["errors"] * 4 + ["low_confidence"] * 3 + ["random"] * 3
    assert all(rid.startswith({"errors": "err", "low_confidence": "low"}.get(s, ""))
               for rid, s in picked)
    assert annotate.sample(store, 10, errors=4, low_confidence=3, seed=7) == picked
    assert annotate.sample(store, 10, errors=4, low_confidence=3, seed=8) != picked


def test_a_short_stratum_hands_its_share_to_random(store):
    _populate(store, n_errors=2, n_low=0, n_rest=20)
    picked = annotate.sample(store, 10)  # defaults: 4 errors, 3 low confidence, 3 random
    assert [s for _, s in picked].count("errors") == 2
    assert len(picked) == 10 and len({rid for rid, _ in picked}) == 10
    with pytest.raises(BadInput):
        annotate.sample(store, 5, errors=4, low_confidence=3)


def test_a_request_is_not_sampled_twice_unless_asked(store, tmp_path):
    _populate(store)
    first = annotate.export_batch(store, tmp_path / "b1.csv", 15, seed=1)
    second = annotate.export_batch(store, tmp_path / "b2.csv", 15, seed=1)
    ids = lambda p: {r["request_id"] for r in csv.DictReader(open(p, encoding="utf-8-sig"))}  # noqa: E731
    assert first["rows"] == second["rows"] == 15
    assert not ids(tmp_path / "b1.csv") & ids(tmp_path / "b2.csv")
    assert store.count("annotation_samples") == 30
    third = annotate.export_batch(store, tmp_path / "b3.csv", 15, seed=1)
    assert third["rows"] == 10  # only 40 requests exist
    again = annotate.export_batch(store, tmp_path / "b4.csv", 15, seed=1, resample=True)
    assert again["rows"] == 15


def test_csv_round_trip_survives_commas_quotes_newlines_and_unicode(store, tmp_path):
    store.log_prediction("r1", NASTY, "wrong, \"very\"\nwrong", "1.0.0", confidence=0.1)
    store.add_feedback("r1", rating=1, correction=NASTY)
    store.log_prediction("r2", "fine", "fine", "1.0.0", confidence=0.9)
    path = tmp_path / "batch.csv"
    annotate.export_batch(store, path, 2)
    rows = list(csv.DictReader(open(path, encoding="utf-8-sig", newline="")))
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    r1 = next(r for r in rows if r["request_id"] == "r1")
    assert (r1["input"], r1["output"], r1["user_correction"]) == (NASTY, "wrong, \"very\"\nwrong", NASTY)
    for r in rows:  # the expert fills in the sheet, as a spreadsheet would save it
        r["expert_rating"], r["expert_correction"] = ("2", NASTY + " (expert)") if r["request_id"] == "r1" else ("", "")
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=annotate.COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    result = annotate.import_batch(store, path)
    assert (result["annotated"], result["blank"], result["added"], result["rejected"]) == (1, 1, 1, 0)
    expert = [f for f in store.get_feedback("r1") if f["source"] == "expert"][0]
    assert (expert["rating"], expert["correction"]) == (2, NASTY + " (expert)")
    extract(store, tmp_path / "train.jsonl", redact_pii=False)
    example = json.loads((tmp_path / "train.jsonl").read_text(encoding="utf-8"))
    assert example["messages"][1]["content"] == NASTY + " (expert)"


def test_annotate_import_reports_bad_rows_and_keeps_good_ones(fws, store, tmp_path, capsys):
    _populate(store, 2, 0, 0)
    path = tmp_path / "batch.csv"
    path.write_text("request_id,expert_rating,expert_correction,expert_notes\n"
                    "err00,5,,ok\n"
                    "err01,seven,,\n"
                    "ghost,4,,\n"
                    '"err00",,"multi\nline",\n', encoding="utf-8")
    code, out, err = run_main(["feedback", "annotate-import", str(path), "--json"], capsys)
    assert code == 2
    result = json.loads(out)
    assert (result["annotated"], result["added"], result["updated"], result["rejected"]) == (2, 1, 1, 2)
    assert f"{path}:3: expert_rating 'seven'" in err and f"{path}:4: unknown request_id" in err
    # err00 appears twice: the later row (line 5, spanning two lines) replaces the first
    expert = [f for f in store.get_feedback("err00") if f["source"] == "expert"]
    assert [(f["rating"], f["correction"], f["notes"]) for f in expert] == [(None, "multi\nline", None)]


def test_annotate_import_rejects_a_file_that_is_not_utf8_or_misses_columns(store, tmp_path):
    bad = tmp_path / "latin1.csv"
    bad.write_bytes("request_id,expert_rating,expert_correction\nr1,5,caf\u00e9\n".encode("latin-1"))
    with pytest.raises(BadInput, match="not UTF-8"):
        annotate.import_batch(store, bad)
    cols = tmp_path / "cols.csv"
    cols.write_text("request_id,rating\nr1,5\n", encoding="utf-8")
    with pytest.raises(BadInput, match="missing columns: expert_correction, expert_rating"):
        annotate.import_batch(store, cols)


def test_cli_annotate_export(fws, store, tmp_path, capsys):
    _populate(store)
    out = tmp_path / "batch.csv"
    code, stdout, _ = run_main(["feedback", "annotate-export", "-n", "6", "-o", str(out),
                                "--errors", "2", "--low-confidence", "2", "--seed", "3",
                                "--json"], capsys)
    assert code == 0
    assert json.loads(stdout)["by_stratum"] == {"errors": 2, "low_confidence": 2, "random": 2}
    assert len(list(csv.DictReader(open(out, encoding="utf-8-sig")))) == 6
