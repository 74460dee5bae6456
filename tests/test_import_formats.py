"""`clt feedback import` of what people already log: the guide's collector rows, OpenAI logs,
CSV and Parquet, --map, --model-version, --timezone, and versions the registry does not know."""

from __future__ import annotations

import csv
import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from feedback_helpers import fws_fixture, row, run_main, store_fixture, write_jsonl  # noqa: F401 (fixtures)
from test_registry_support import add_version

from cl_toolkit.feedback.import_formats import ImportOptions, parse_maps
from cl_toolkit.feedback.importer import import_files
from cl_toolkit.feedback.store import FeedbackStore
from cl_toolkit.feedback.tables import export_table, store_rows
from cl_toolkit.registry import open_registry

T0 = datetime(2025, 4, 1, 9, 0, 0, 123456)  # naive, as datetime.now().isoformat() writes it


def guide_row(i: int) -> dict:
    """One line of the guide's feedback collector: version in metadata, naive timestamp."""
    return {"id": f"int-{i:05d}", "timestamp": (T0 + timedelta(minutes=i)).isoformat(),
            "prompt": f"What is the flow of line {i}?", "response": f"{i} gpm.",
            "rating": (i % 5) + 1 if i % 3 else None,
            "correction": f"{i + 1} gpm." if i % 10 == 0 else None,
            "metadata": {"model_version": "0.9.0" if i % 50 == 0 else "1.0.0", "domain": "hose",
                         "user_id": f"u{i % 7}"}}


def renamed(r: dict) -> dict:
    """The same row as another collector names it."""
    meta = {"ver" if k == "model_version" else k: v for k, v in r["metadata"].items()}
    return {"interaction_id": r["id"], "logged_at": r["timestamp"], "question": r["prompt"],
            "answer": r["response"], "feedback": {"stars": r["rating"], "fix": r["correction"]},
            "metadata": meta}


def clt(args: list[str], capsys) -> tuple[int, str]:
    """`clt ARGS` as users run it: (exit code, stdout and stderr together)."""
    code, out, err = run_main(args, capsys)
    return code, out + err


def tables(store: FeedbackStore) -> tuple[list, list]:
    return (store.conn.execute("SELECT * FROM predictions ORDER BY request_id").fetchall(),
            store.conn.execute("SELECT * FROM feedback ORDER BY request_id, source").fetchall())


def test_2000_guide_rows_import_with_no_mapping(store, tmp_path):
    path = write_jsonl(tmp_path / "guide.jsonl", [guide_row(i) for i in range(2000)])
    s = import_files(store, [path], options=ImportOptions(timezone="Europe/Berlin"))
    assert (s.predictions_added, s.rejected, s.shapes, s.localized) == (2000, 0, {"guide": 2000}, 2000)
    assert s.versions == {"0.9.0": 40, "1.0.0": 1960}
    assert s.feedback_added == sum(1 for i in range(2000) if i % 3 or i % 10 == 0)
    p = store.get_prediction("int-00010")
    # 09:10 in Berlin in April (CEST, +02:00) is 07:10 UTC
    assert (p["timestamp"], p["input"], p["output"], p["model_version"], p["domain"]) == (
        "2025-04-01T07:10:00.123Z", "What is the flow of line 10?", "10 gpm.", "1.0.0", "hose")
    assert json.loads(p["metadata"]) == {"user_id": "u3"}  # the version is a column, not kept twice
    fb = store.get_feedback("int-00010")[0]
    assert (fb["rating"], fb["correction"], fb["timestamp"]) == (1, "11 gpm.", "2025-04-01T07:10:00.123Z")


def test_guide_rows_without_an_id_get_one_from_their_content(store, tmp_path):
    rows = [{k: v for k, v in guide_row(i).items() if k != "id"} for i in range(3)]
    path = write_jsonl(tmp_path / "guide.jsonl", rows)
    assert import_files(store, [path], options=ImportOptions(timezone="UTC")).predictions_added == 3
    again = import_files(store, [path], options=ImportOptions(timezone="UTC"))
    assert (again.predictions_added, again.predictions_existing) == (0, 3)


def test_the_same_rows_renamed_import_with_map_into_the_same_store(tmp_path):
    rows = [guide_row(i) for i in range(2000)]
    plain = FeedbackStore(tmp_path / "plain.db")
    import_files(plain, [write_jsonl(tmp_path / "g.jsonl", rows)], options=ImportOptions(timezone="UTC"))
    mapped = FeedbackStore(tmp_path / "mapped.db")
    path = write_jsonl(tmp_path / "renamed.jsonl", [renamed(r) for r in rows])
    maps = parse_maps(["request_id=interaction_id", "input=question", "output=answer",
                       "timestamp=logged_at", "model_version=metadata.ver", "rating=feedback.stars",
                       "correction=feedback.fix"])
    s = import_files(mapped, [path], options=ImportOptions(maps, timezone="UTC"))
    assert (s.predictions_added, s.rejected) == (2000, 0)
    assert tables(mapped) == tables(plain)
    plain.close(), mapped.close()


def test_a_missing_field_names_the_map_that_would_fix_it(fws, tmp_path, capsys):
    r = row("r1")
    r["metadata"]["model_version"] = r.pop("model_version")
    path = write_jsonl(tmp_path / "a.jsonl", [r, renamed(guide_row(1))])
    result_code, result = clt(["feedback", "import", str(path)], capsys)
    assert result_code == 2
    assert (f"{path}:1: [model_version] `model_version` missing; found `metadata.model_version`: "
            "pass --map model_version=metadata.model_version (or --model-version V") in result
    assert f"{path}:2: [request_id] `request_id` missing; found `interaction_id`: pass --map " \
           "request_id=interaction_id" in result


def test_model_version_fills_only_rows_that_have_none(store, tmp_path):
    without = {k: v for k, v in row("r1").items() if k != "model_version"}
    path = write_jsonl(tmp_path / "a.jsonl", [without, row("r2", model_version="1.1.0")])
    s = import_files(store, [path], options=ImportOptions(model_version="1.0.0"))
    assert (s.predictions_added, s.defaulted_version) == (2, 1)
    assert [store.get_prediction(r)["model_version"] for r in ("r1", "r2")] == ["1.0.0", "1.1.0"]


def test_naive_timestamps_without_timezone_are_refused(fws, tmp_path, capsys):
    path = write_jsonl(tmp_path / "guide.jsonl", [guide_row(i) for i in range(5)])
    result_code, result = clt(["feedback", "import", str(path)], capsys)
    assert result_code == 2
    assert (f"{path}:1: [timestamp] naive timestamp '2025-04-01T09:00:00.123456' (no UTC offset): "
            "pass --timezone ZONE") in result
    with FeedbackStore(fws / "feedback.db") as store:
        assert tables(store) == ([], [])
    ok_code, ok = clt(["feedback", "import", str(path), "--timezone", "America/New_York"], capsys)
    assert ok_code == 0, ok
    assert "timestamps: 5 rows without a UTC offset read as America/New_York" in ok


def test_a_naive_timestamp_mid_file_keeps_the_whole_batches_before_it(store, tmp_path):
    rows = [row(f"r{i:02d}") for i in range(30)]
    rows[24]["timestamp"] = "2025-04-01 12:00:00"
    with pytest.raises(Exception, match=r"a.jsonl:25: \[timestamp\] naive .*lines 1-20 are stored"):
        import_files(store, [write_jsonl(tmp_path / "a.jsonl", rows)], batch_size=10)
    assert store.conn.execute("SELECT count(*) FROM predictions").fetchone()[0] == 20


def test_openai_request_response_logs(store, tmp_path):
    nested = {"request": {"model": "firefighter", "messages": [
                  {"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "What is the IDLH for ammonia?"}],
                  "metadata": {"domain": "exposure_limits"}},
              "response": {"id": "chatcmpl-1", "created": 1743508800, "model": "firefighter@1.1.0",
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": "300 ppm."},
                                        "finish_reason": "stop"}]},
              "user_feedback": {"rating": 5}}
    flat = {"id": "chatcmpl-2", "created": 1743508860, "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "UN number of gasoline?"}]}],
            "choices": [{"message": {"role": "assistant", "content": "UN 1203."}}]}
    s = import_files(store, [write_jsonl(tmp_path / "openai.jsonl", [nested, flat])])
    assert (s.predictions_added, s.rejected, s.shapes, s.localized) == (2, 0, {"openai": 2}, 0)
    one, two = store.get_prediction("chatcmpl-1"), store.get_prediction("chatcmpl-2")
    assert (one["input"], one["output"], one["model_version"], one["timestamp"], one["domain"]) == (
        "What is the IDLH for ammonia?", "300 ppm.", "1.1.0", "2025-04-01T12:00:00.000Z", "exposure_limits")
    meta = json.loads(one["metadata"])
    assert meta["model"] == "firefighter" and meta["messages"][0]["content"] == "Be brief."
    assert store.get_feedback("chatcmpl-1")[0]["rating"] == 5
    assert (two["input"], two["output"], two["model_version"]) == ("UN number of gasoline?", "UN 1203.",
                                                                   "gpt-4o-mini")


def _varied_rows() -> list[dict]:
    rows = [row(f"r{i}", rating=(i % 5) + 1 if i % 2 else None, thumbs=-1 if i % 7 == 0 else None,
                correction="line one,\n\"line two\"" if i % 4 == 0 else None, quality_score=i / 10,
                timestamp=f"2025-04-01T12:{i:02d}:00+02:00", input=f"Wie weit ist Schlauch {i}? ü, é",
                station=i, shift="night" if i % 3 else None) for i in range(25)]
    rows[3]["user_feedback"] = {"rating": 1, "source": "expert", "notes": "checked", "timestamp": "2025-05-01T00:00:00Z"}
    return rows


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_tables_round_trip(tmp_path, suffix):
    first = FeedbackStore(tmp_path / "first.db")
    import_files(first, [write_jsonl(tmp_path / "a.jsonl", _varied_rows()), write_jsonl(
        tmp_path / "b.jsonl", [row("r3", rating=4)])])  # r3: feedback from two sources
    table = tmp_path / f"export{suffix}"
    assert export_table(store_rows(first), table) == 26
    second = FeedbackStore(tmp_path / "second.db")
    s = import_files(second, [table])
    assert (s.predictions_added, s.feedback_added, s.rejected) == (25, 26 - sum(
        1 for r in _varied_rows() if "user_feedback" not in r), 0)
    assert tables(second) == tables(first)
    first.close(), second.close()


def test_a_hand_made_csv_in_the_guide_shape(store, tmp_path):
    path = tmp_path / "log.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "timestamp", "prompt", "response", "rating", "correction", "metadata.model_version"])
        w.writerow(["a1", "2025-04-01T09:00:00", "Two\nlines?", "yes", "4", "", "1.0.0"])
        w.writerow(["a2", "2025-04-01T09:01:00", "Rated nine?", "no", "9", "", "1.0.0"])
    s = import_files(store, [path], options=ImportOptions(timezone="UTC"))
    assert (s.predictions_added, s.rejected) == (1, 1)
    assert store.get_feedback("a1")[0]["rating"] == 4
    assert str(s.problems[0]).startswith(f"{path}:4: [user_feedback.rating] 9 is not one of")


def test_versions_unknown_to_the_registry_are_reported(fws, tmp_path, capsys):
    with open_registry(fws) as reg:
        add_version(reg, fws, "1.0.0")
    path = write_jsonl(tmp_path / "guide.jsonl", [guide_row(i) for i in range(100)])
    result_code, result = clt(["feedback", "import", str(path), "--timezone", "UTC"], capsys)
    assert result_code == 0, result
    assert "versions: 0.9.0 2, 1.0.0 98; warning: unknown to the registry: 0.9.0 (2 rows)" in result
    other_code, other = clt(["feedback", "import", str(path), "--timezone", "UTC", "--json"], capsys)
    assert json.loads(other)["unknown_versions"] == {"0.9.0": 2}


def test_without_a_registry_the_summary_says_versions_were_not_checked(fws, tmp_path, capsys):
    path = write_jsonl(tmp_path / "a.jsonl", [row("r1")])
    result_code, result = clt(["feedback", "import", str(path)], capsys)
    assert result_code == 0, result
    assert f"versions: 1.0.0 1 (not checked: no registry in {fws})" in result
    assert "timestamps: every one had a UTC offset (no --timezone needed)" in result


@pytest.mark.parametrize("spec", ["model_version", "colour=meta.c", "input="])
def test_a_bad_map_is_refused(spec):
    with pytest.raises(Exception, match="give KEY=PATH"):
        parse_maps([spec])


def test_the_documented_examples_import(store, tmp_path):
    text = (Path(__file__).parents[1] / "docs" / "formats.md").read_text(encoding="utf-8")
    section = text.split("### Other logs:", 1)[1].split("\n#", 1)[0]
    (example,) = re.findall(r"```json\n(.*?)```", section, re.DOTALL)
    path = tmp_path / "examples.jsonl"
    path.write_text(example, encoding="utf-8")
    s = import_files(store, [path], options=ImportOptions(timezone="UTC"))
    assert (s.predictions_added, s.rejected, s.shapes) == (2, 0, {"guide": 1, "openai": 1})
    assert store.get_prediction("int-00010")["model_version"] == "1.0.0"
    assert store.get_prediction("chatcmpl-1")["output"] == "UN 1203."


@pytest.mark.parametrize("stamp, stored", [
    ("2025-04-01", None), ("2025-04-01 12:00:00", None), ("2025-04-01T12:00:00.5", None),
    ("2025-04-01T12:00:00+02:00", "2025-04-01T10:00:00.000Z"), ("2025-04-01T12:00:00Z", "2025-04-01T12:00:00.000Z"),
    (1743508800, "2025-04-01T12:00:00.000Z"),
])
def test_which_timestamps_are_naive(store, tmp_path, stamp, stored):
    path = write_jsonl(tmp_path / "a.jsonl", [row("r1", timestamp=stamp)])
    if stored is None:
        with pytest.raises(Exception, match="naive timestamp"):
            import_files(store, [path])
    else:
        import_files(store, [path])
        assert store.get_prediction("r1")["timestamp"] == stored


def test_redaction_and_quarantine_hold_for_every_shape(fws, tmp_path, capsys):
    guide = dict(guide_row(1), prompt="Mail jane.doe@example.com the IDLH?", correction="ask bob@example.org")
    table = tmp_path / "bad.csv"
    table.write_text("id,timestamp,prompt,response,rating,metadata.model_version\n"
                     "b1,2025-04-01T09:00:00Z,call carol@example.net,ok,7,1.0.0\n", encoding="utf-8")
    code, out = clt(["feedback", "import", "--redact", "--timezone", "UTC",
                     str(write_jsonl(tmp_path / "g.jsonl", [guide])), str(table)], capsys)
    assert code == 2 and f"{table}:2: [user_feedback.rating] 7 is not one of" in out
    with FeedbackStore(fws / "feedback.db") as store:
        dump = json.dumps(tables(store))
        quarantine = store.quarantine_path.read_text(encoding="utf-8")
    assert "[EMAIL]" in dump and "@example" not in dump
    (entry,) = [json.loads(line) for line in quarantine.splitlines()]
    assert (entry["file"], entry["line"], entry["key"]) == (str(table), 2, "user_feedback.rating")
    assert "[EMAIL]" in entry["raw"] and "carol@" not in entry["raw"]


def test_parquet_timestamps_typed_without_a_zone_need_timezone(store, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "typed.parquet"
    pq.write_table(pa.table({"request_id": ["p1"], "input": ["q"], "output": ["a"], "model_version": ["1.0.0"],
                             "timestamp": pa.array([datetime(2025, 4, 1, 12, 0)], pa.timestamp("us"))}), path)
    with pytest.raises(Exception, match=r"typed.parquet:1: \[timestamp\] naive timestamp"):
        import_files(store, [path])
    import_files(store, [path], options=ImportOptions(timezone="America/New_York"))
    assert store.get_prediction("p1")["timestamp"] == "2025-04-01T16:00:00.000Z"
