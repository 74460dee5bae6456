"""The remaining verbs through the real CLI: log, rate, stats."""

from __future__ import annotations

import json

from feedback_helpers import fws_fixture, invoke, row, run_main, write_jsonl  # noqa: F401 (fixtures)

from cl_toolkit.feedback.store import open_store


def test_log_then_rate_then_stats(fws, capsys):
    code, out, _ = run_main(["feedback", "log", "--request-id", "r1", "--input", "q",
                             "--output", "a", "--model-version", "1.0.0", "--domain", "hose",
                             "--confidence", "0.4", "--metadata", '{"shift": "night"}'], capsys)
    assert code == 0 and "logged: r1" in out
    code, out, _ = run_main(["feedback", "rate", "r1", "--rating", "2", "--correction",
                             "better"], capsys)
    assert code == 0 and "feedback added" in out
    code, out, _ = run_main(["feedback", "rate", "r1", "--thumbs", "down", "--source",
                             "incident"], capsys)
    assert code == 0
    code, out, _ = run_main(["feedback", "stats", "--json"], capsys)
    stats = json.loads(out)
    assert (stats["predictions"], stats["with_feedback"], stats["feedback_events"]) == (1, 1, 2)
    assert stats["mean_rating"] == 2 and stats["corrections"] == 1
    assert stats["thumbs"] == {"up": 0, "neutral": 0, "down": 1}
    assert stats["by_domain"]["hose"]["corrections"] == 1
    assert stats["by_source"]["incident"]["events"] == 1


def test_stats_counts_by_version_and_domain(fws, tmp_path):
    rows = [row("a", rating=5, quality_score=0.5), row("b", rating=3, quality_score=1.0),
            row("c", model_version="2.0.0", domain=None), row("d", model_version="2.0.0",
                                                              correction="fix", rating=1)]
    assert invoke(["feedback", "import", str(write_jsonl(tmp_path / "x.jsonl", rows))]).exit_code == 0
    result = invoke(["feedback", "stats", "--json"])
    s = json.loads(result.output)
    assert s["feedback_rate"] == 0.75 and s["mean_rating"] == 3.0 and s["mean_quality"] == 0.75
    assert s["by_model_version"]["1.0.0"] == {"predictions": 2, "with_feedback": 2,
                                              "mean_rating": 4.0, "mean_quality": 0.75,
                                              "corrections": 0}
    assert s["by_model_version"]["2.0.0"]["with_feedback"] == 1
    assert set(s["by_domain"]) == {"hose", "(none)"}
    human = invoke(["feedback", "stats"]).output
    assert "predictions 4, with feedback 3 (rate 75.0%)" in human


def test_stats_on_an_empty_store(fws):
    s = json.loads(invoke(["feedback", "stats", "--json"]).output)
    assert (s["predictions"], s["feedback_rate"], s["mean_rating"]) == (0, 0.0, None)


def test_bad_input_exits_2_without_a_traceback(fws, capsys):
    code, _, err = run_main(["feedback", "rate", "ghost", "--rating", "4"], capsys)
    assert code == 2 and "unknown request_id 'ghost'" in err and "Traceback" not in err
    code, _, err = run_main(["feedback", "rate", "ghost", "--rating", "9"], capsys)
    assert code == 2
    code, _, err = run_main(["feedback", "log", "--request-id", "r", "--input", "q", "--output",
                             "a", "--model-version", "1", "--confidence", "7"], capsys)
    assert code == 2 and "[confidence]" in err
    code, _, err = run_main(["feedback", "log", "--request-id", "r", "--input", "q", "--output",
                             "a", "--model-version", "1", "--metadata", "{nope"], capsys)
    assert code == 2 and "--metadata" in err
    with open_store() as store:
        assert store.count("predictions") == 0


def test_workspace_option_picks_the_store(fws, tmp_path, capsys):
    ws = tmp_path / "other"
    code, _, _ = run_main(["--workspace", str(ws), "feedback", "log", "--request-id", "r",
                           "--input", "q", "--output", "a", "--model-version", "1"], capsys)
    assert code == 0 and (ws / "feedback.db").exists() and not fws.exists()
