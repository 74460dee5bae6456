"""`clt feedback extract`: each rule, precedence, filters, dedupe, redaction, formats."""

from __future__ import annotations

import json

import pytest
from feedback_helpers import fws_fixture, read_jsonl, run_main, store_fixture  # noqa: F401 (fixtures)

from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.files import sha256_file
from cl_toolkit.feedback.extract import extract, manifest_path

pytestmark = pytest.mark.usefixtures("store_backend")  # every test on SQLite and on PostgreSQL


def _log(store, rid, *, q=None, a=None, ts="2025-04-01T00:00:00Z", version="1.0.0",
         quality=None, **feedback):
    store.log_prediction(rid, q or f"question {rid}", a or f"answer {rid}", version,
                         timestamp=ts, quality_score=quality)
    by_source: dict = {}
    for key, value in feedback.items():
        source, field = key.split("_", 1)
        by_source.setdefault(source, {})[field] = value
    for source, fields in by_source.items():
        store.add_feedback(rid, source=source, **fields)


def _pairs(path):
    return [(m["messages"][0]["content"], m["messages"][1]["content"]) for m in read_jsonl(path)]


def test_each_rule(store, tmp_path):
    _log(store, "good", user_rating=4)
    _log(store, "great", user_rating=5, user_correction="ignored: rated well")
    _log(store, "fixed", user_rating=2, user_correction="the fix")
    _log(store, "bad", user_rating=1)
    _log(store, "meh", user_rating=3, user_correction="not used")
    _log(store, "silent")
    _log(store, "up", user_thumbs=1)
    _log(store, "down", user_thumbs=-1, user_correction="thumbs-down fix")
    m = extract(store, tmp_path / "out.jsonl")
    assert sorted(_pairs(tmp_path / "out.jsonl")) == sorted([
        ("question good", "answer good"), ("question great", "answer great"),
        ("question fixed", "the fix"), ("question up", "answer up"),
        ("question down", "thumbs-down fix")])
    assert m["counts"] == {"selected": 8, "kept_as_is": 3, "corrected": 2,
                           "corrected_by_expert": 0, "bad_without_correction": 1, "neutral": 1,
                           "unrated": 1, "below_quality": 0, "duplicates": 0, "written": 5}


def test_min_and_max_ratings_are_configurable(store, tmp_path):
    _log(store, "four", user_rating=4)
    _log(store, "three", user_rating=3, user_correction="fix three")
    m = extract(store, tmp_path / "o.jsonl", min_rating=5, max_bad_rating=3)
    assert _pairs(tmp_path / "o.jsonl") == [("question three", "fix three")]
    assert m["counts"]["neutral"] == 1
    with pytest.raises(BadInput):
        extract(store, tmp_path / "x.jsonl", min_rating=3, max_bad_rating=3)


def test_an_expert_beats_a_user(store, tmp_path):
    _log(store, "both", user_rating=1, user_correction="user fix", expert_rating=1,
         expert_correction="expert fix")
    _log(store, "overruled", user_rating=1, user_correction="user fix", expert_rating=5)
    _log(store, "confirmed", user_rating=5, expert_rating=2, expert_correction="expert says no")
    _log(store, "note_only", user_rating=1, user_correction="user fix", expert_notes="checked")
    m = extract(store, tmp_path / "o.jsonl")
    assert dict(_pairs(tmp_path / "o.jsonl")) == {
        "question both": "expert fix", "question overruled": "answer overruled",
        "question confirmed": "expert says no", "question note_only": "user fix"}
    assert (m["counts"]["corrected_by_expert"], m["counts"]["corrected"]) == (2, 1)


def test_quality_window_and_version_filters(store, tmp_path):
    _log(store, "early", ts="2025-03-31T23:59:59Z", quality=0.9, user_rating=5)
    _log(store, "start", ts="2025-04-01T00:00:00Z", quality=0.9, user_rating=5)
    _log(store, "low", ts="2025-04-15T00:00:00Z", quality=0.2, user_rating=5)
    _log(store, "unknown", ts="2025-04-16T00:00:00Z", user_rating=5)
    _log(store, "other", ts="2025-04-20T00:00:00Z", version="2.0.0", quality=0.9, user_rating=5)
    _log(store, "end", ts="2025-07-01T00:00:00Z", quality=0.9, user_rating=5)
    m = extract(store, tmp_path / "o.jsonl", min_quality=0.5, since="2025-04-01",
                until="2025-07-01T00:00:00Z", model_versions=["1.0.0"])
    assert _pairs(tmp_path / "o.jsonl") == [("question start", "answer start")]
    assert m["counts"]["selected"] == 3 and m["counts"]["below_quality"] == 2
    assert m["filters"]["since"] == "2025-04-01T00:00:00.000Z"
    assert m["filters"]["model_versions"] == ["1.0.0"] and m["filters"]["min_quality"] == 0.5


def test_dedupe_ignores_case_and_whitespace_and_keeps_the_oldest(store, tmp_path):
    _log(store, "a", q="How  do I vent?", a="Open the roof.", ts="2025-04-02T00:00:00Z",
         user_rating=5)
    _log(store, "b", q="how do i VENT?\n", a=" open the  ROOF.", ts="2025-04-01T00:00:00Z",
         user_rating=4)
    _log(store, "c", q="How do I vent?", a="Open a window.", user_rating=5)
    m = extract(store, tmp_path / "o.jsonl")
    assert _pairs(tmp_path / "o.jsonl") == [("how do i VENT?\n", " open the  ROOF."),
                                            ("How do I vent?", "Open a window.")]
    assert m["counts"]["duplicates"] == 1
    extract(store, tmp_path / "all.jsonl", dedupe=False)
    assert len(read_jsonl(tmp_path / "all.jsonl")) == 3


def test_pii_is_redacted_by_default_and_counted(store, tmp_path):
    _log(store, "p", q="I am jane@example.com, call +44 20 7946 0958",
         a="Refund to card 4111 1111 1111 1111 or IBAN DE89 3704 0044 0532 0130 00",
         user_rating=5)
    m = extract(store, tmp_path / "o.jsonl")
    assert _pairs(tmp_path / "o.jsonl") == [("I am [EMAIL], call [PHONE]",
                                             "Refund to card [CARD] or IBAN [IBAN]")]
    assert m["redactions"] == {"email": 1, "iban": 1, "card": 1, "ip": 0, "national_id": 0, "phone": 1}
    extract(store, tmp_path / "raw.jsonl", redact_pii=False)
    assert "jane@example.com" in _pairs(tmp_path / "raw.jsonl")[0][0]


@pytest.mark.parametrize("fmt, expected", [
    ("chat", {"messages": [{"role": "system", "content": "Be brief."},
                           {"role": "user", "content": "q\u00e9 \"1\""},
                           {"role": "assistant", "content": "a,\nb"}]}),
    ("alpaca", {"instruction": "q\u00e9 \"1\"", "input": "", "output": "a,\nb",
                "system": "Be brief."}),
    ("completion", {"text": "Be brief.\nq\u00e9 \"1\"\na,\nb"}),
])
def test_formats_are_canonical_json_lines(store, tmp_path, fmt, expected):
    _log(store, "r", q="q\u00e9 \"1\"", a="a,\nb", user_rating=5)
    out = tmp_path / f"{fmt}.jsonl"
    extract(store, out, fmt=fmt, system_prompt="Be brief.")
    assert out.read_text(encoding="utf-8") == json.dumps(expected, sort_keys=True,
                                                         ensure_ascii=False) + "\n"


def test_output_is_deterministic_and_the_manifest_describes_it(store, tmp_path):
    for i in range(30):
        _log(store, f"r{i:02d}", ts=f"2025-04-01T00:00:{i:02d}Z", user_rating=5 - i % 5)
    m1 = extract(store, tmp_path / "one.jsonl")
    m2 = extract(store, tmp_path / "two.jsonl")
    assert (tmp_path / "one.jsonl").read_bytes() == (tmp_path / "two.jsonl").read_bytes()
    assert m1["output"]["sha256"] == sha256_file(tmp_path / "one.jsonl") == m2["output"]["sha256"]
    on_disk = json.loads(manifest_path(tmp_path / "one.jsonl").read_text())
    assert on_disk == m1 and on_disk["output"]["rows"] == 12
    assert on_disk["source"]["predictions"] == 30 and on_disk["source"]["store"] == str(store.path)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_cli_extract(fws, store, tmp_path, capsys):
    _log(store, "r1", user_rating=5)
    _log(store, "r2", version="2.0.0", user_rating=5)
    out = tmp_path / "data" / "train.jsonl"
    code, stdout, _ = run_main(["feedback", "extract", "-o", str(out), "--format", "alpaca",
                                "--model-version", "2.0.0", "--no-redact", "--json"], capsys)
    assert code == 0
    manifest = json.loads(stdout)
    assert manifest["counts"]["written"] == 1 and manifest["filters"]["redact_pii"] is False
    assert read_jsonl(out) == [{"input": "", "instruction": "question r2", "output": "answer r2"}]
    code, _, err = run_main(["feedback", "extract", "-o", str(out), "--since", "soon"], capsys)
    assert code == 2 and "--since" in err


