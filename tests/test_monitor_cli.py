"""The monitoring verbs as a user runs them, on a seeded synthetic feedback store and a real
registry: injected drift, an injected quality drop that ends in an automatic rollback, an
A/B test that reaches significance, and the loop's decision log."""

from __future__ import annotations

import json

import pytest
from test_monitor_support import line_with_champion, seed_store, traffic
from test_registry_support import add_version

from cl_toolkit.core.errors import BadInput, CltError
from cl_toolkit.feedback.records import now_timestamp
from cl_toolkit.monitoring.windows import shift
from cl_toolkit.pipeline import loop as loop_mod
from cl_toolkit.registry import open_registry, promote

# every test on SQLite and on PostgreSQL (the monitoring queries run on both)
pytestmark = pytest.mark.usefixtures("store_backend")


# --- drift -------------------------------------------------------------------------------
def test_drift_finds_injected_drift_and_nothing_else(clt, empty_workspace):
    seed_store(empty_workspace,
               traffic("apr", "1.0.0", "2025-04-01T00:00:00Z", days=29, n=1000, seed=1, positive_rate=0.9,
                       domain_weights=(4, 3, 2, 1))
               + traffic("may", "1.0.0", "2025-05-01T00:00:00Z", days=30, n=1000, seed=2, positive_rate=0.75,
                         latency=(420.0, 60.0), domain_weights=(1, 2, 3, 4))
               + traffic("jun", "1.0.0", "2025-06-01T00:00:00Z", days=29, n=1000, seed=3, positive_rate=0.9,
                         domain_weights=(4, 3, 2, 1)))
    code, out, err = clt("drift", "--reference", "2025-04-01..2025-04-30", "--current", "2025-05-01..2025-05-31", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["reference"] == {"start": "2025-04-01T00:00:00.000Z", "end": "2025-05-01T00:00:00.000Z"}
    latency = report["numeric"]["latency_ms"]
    assert latency["n_reference"] == latency["n_current"] == 1000
    assert latency["severity"] == "significant" and latency["ks_differs"] and latency["ks_method"] == "asymptotic"
    assert report["categorical"]["domain"]["severity"] == "significant"
    assert sorted(report["drifted"]) == ["domain", "latency_ms"]
    for stable in ("prompt_length", "response_length", "confidence", "quality_score"):
        assert report["numeric"][stable]["severity"] == "none", stable
    concept = report["concept"]
    assert (concept["positive_rate_reference"], concept["positive_rate_current"]) == (0.9, 0.75)
    assert concept["drop"] == pytest.approx(0.15) and concept["drift"] is True

    code, out, _ = clt("drift", "--reference", "2025-04-01..2025-04-30", "--current", "2025-06-01..2025-06-30")
    assert code == 0 and out.splitlines()[0].endswith(": none")
    assert "latency_ms" in out and "concept drift: positive rate 90.0% -> 90.0%" in out


def test_drift_bad_windows(clt, empty_workspace):
    seed_store(empty_workspace, traffic("apr", "1.0.0", "2025-04-01T00:00:00Z", n=20))
    code, _, err = clt("drift", "--reference", "2025-04-01", "--current", "2025-05-01..2025-05-02")
    assert code == 2 and "expected START..END" in err
    code, _, err = clt("drift", "--reference", "2025-04-05..2025-04-01", "--current", "2025-04-01..2025-04-02")
    assert code == 2 and "is empty" in err
    code, _, err = clt("drift", "--reference", "2025-04-01..2025-04-08", "--current", "2025-05-01..2025-05-02")
    assert code == 2 and "--current 2025-05-01T00:00:00.000Z..2025-05-03T00:00:00.000Z holds no predictions" in err


# --- health and auto-rollback ------------------------------------------------------------
@pytest.fixture
def degraded(empty_workspace):
    """ff 1.1.0 champion: 90% positive in its first week, 70% three weeks later."""
    release = line_with_champion(empty_workspace)
    seed_store(empty_workspace,
               traffic("base", "1.1.0", shift(release, 0.01), days=6, n=400, positive_rate=0.9, seed=4)
               + traffic("late", "1.1.0", shift(release, 21), days=6, n=400, positive_rate=0.7, seed=5))
    return empty_workspace, shift(release, 28)


def _champion(ws) -> str:
    with open_registry(ws) as reg:
        return reg.alias("ff", "champion")


def test_health_recommends_then_performs_rollback(clt, degraded):
    ws, at = degraded
    code, out, _ = clt("health", "--at", at, "--json")
    report = json.loads(out)
    assert code == 3 and report["status"] == "critical" and report["rollback_to"] == "1.0.0"
    assert report["drop"] == pytest.approx(0.2) and report["p_value"] < 1e-6 and report["rolled_back"] is None
    assert (report["baseline"]["rated"], report["recent"]["rated"]) == (400, 400)
    assert _champion(ws) == "1.1.0"  # recommended, not done
    code, out, _ = clt("health", "ff", "--at", at)
    assert code == 3 and "CRITICAL" in out and "recommend: clt registry rollback ff --to 1.0.0" in out

    code, out, err = clt("health", "ff", "--auto-rollback", "--who", "oncall-bot", "--at", at, "--json")
    assert code == 0, err
    assert json.loads(out)["rolled_back"] == {"from": "1.1.0", "to": "1.0.0"}
    assert _champion(ws) == "1.0.0"
    code, out, _ = clt("registry", "history", "ff", "--json")
    last = json.loads(out)[-1]
    assert (last["action"], last["version"], last["previous"], last["who"]) == ("rollback", "1.0.0", "1.1.0", "oncall-bot")
    assert last["why"].startswith("auto-rollback: 1.1.0 is critical (drop 20.0%")

    code, out, _ = clt("health", "--at", at, "--json")  # 1.0.0 served none of this traffic
    assert code == 0 and json.loads(out)["status"] == "no data"


def test_trigger_check_on_the_degraded_line(clt, degraded):
    ws, at = degraded
    code, out, _ = clt("trigger", "check", "--at", at, "--json")
    report = json.loads(out)
    assert code == 0 and report["due"] and report["urgency"] == "immediate"
    assert report["fired"] == ["accuracy_drop_critical", "error_rate"]
    assert report["config"] == "configs/triggers.yml"
    code, out, _ = clt("trigger", "check", "ff", "--at", shift(at, -20))  # a week after release: too early
    assert code == 3 and "no update due" in out.splitlines()[0]
    assert any(line.split()[1:2] == ["accuracy_drop_critical"] and "no data" in line for line in out.splitlines())
    assert any(line.split()[:2] == ["cooldown", "cooldown"] and " active " in line for line in out.splitlines())


def test_trigger_check_fires_on_a_safety_flag(clt, empty_workspace):
    release = line_with_champion(empty_workspace)
    rows = traffic("q", "1.1.0", shift(release, 0.01), days=2, n=50, seed=6)
    seed_store(empty_workspace, rows)
    at = shift(release, 3)
    code, out, _ = clt("trigger", "check", "--at", at, "--json")
    assert code == 3 and json.loads(out)["fired"] == []
    incident = dict(rows[0], request_id="q-incident", feedback=[{"source": "incident", "rating": 1}])
    noted = dict(rows[1], request_id="q-noted", feedback=[{"source": "expert", "notes": "SAFETY: critical, wrong distance"}])
    seed_store(empty_workspace, [incident, noted])
    code, out, _ = clt("trigger", "check", "--at", at, "--json")
    report = json.loads(out)
    safety = next(r for r in report["rules"] if r["name"] == "safety_flags")
    assert code == 0 and report["urgency"] == "immediate" and report["cooldown_active"] and safety["value"] == 2


def test_model_line_must_be_named_when_ambiguous(clt, empty_workspace):
    code, _, err = clt("trigger", "check")
    assert code == 2 and "registry holds no model line" in err
    with open_registry(empty_workspace) as reg:
        add_version(reg, empty_workspace, "1.0.0", model="ff")
        add_version(reg, empty_workspace, "1.0.0", model="hazmat")
    code, _, err = clt("health")
    assert code == 2 and "several model lines (ff, hazmat): name MODEL" in err


# --- A/B -----------------------------------------------------------------------------------
@pytest.fixture
def ab_store(empty_workspace):
    start = "2025-05-01T00:00:00Z"
    seed_store(empty_workspace,
               traffic("a", "1.0.0", start, n=1500, positive_rate=0.80, quality=(0.78, 0.05), seed=7, model="ff")
               + traffic("b", "1.1.0", start, n=1500, positive_rate=0.86, quality=(0.82, 0.05),
                         latency=(310.0, 40.0), seed=8, model="ff")
               + traffic("c", "1.2.0", start, n=1500, positive_rate=0.74, seed=9, model="ff"))
    return empty_workspace


def test_ab_reaches_significance_and_promotes(clt, ab_store):
    code, out, err = clt("ab", "analyze", "--champion", "1.0.0", "--challenger", "1.1.0", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["model"] == "ff" and result["verdict"] == "promote"
    assert (result["champion"]["rated"], result["challenger"]["rated"]) == (1500, 1500)
    assert result["test"]["diff"] == pytest.approx(0.06) and result["test"]["p_value"] < 1e-4
    assert result["test"]["ci_low"] > 0.02 and result["weighted"]["score"] > 0
    assert result["weighted"]["components"]["latency"]["relative_change"] > 0  # slower, outweighed
    code, out, _ = clt("ab", "analyze", "ff", "--champion", "1.0.0", "--challenger", "1.1.0")
    assert code == 0 and out.startswith("A/B ff: PROMOTE") and "z=4.3" in out


def test_ab_keep_and_need_more_data(clt, ab_store):
    code, out, _ = clt("ab", "analyze", "--champion", "1.0.0", "--challenger", "1.2.0", "--json")
    result = json.loads(out)
    assert code == 3 and result["verdict"] == "keep" and result["test"]["diff"] == pytest.approx(-0.06)
    code, out, _ = clt("ab", "analyze", "--champion", "1.0.0", "--challenger", "1.1.0", "--json",
                       "--window", "2025-05-01T00:00:00Z..2025-05-02T00:00:00Z")
    result = json.loads(out)
    rated = result["champion"]["rated"]
    assert code == 3 and result["verdict"] == "need more data" and 200 < rated < 230
    assert result["needed_per_arm"] == 6039  # to see +2 points over 80% with 80% power
    assert result["still_needed"]["champion"] == 6039 - rated
    code, out, _ = clt("ab", "analyze", "--champion", "1.0.0", "--challenger", "1.1.0", "--min-samples", "5000")
    assert code == 3 and "still needed: champion 4539, challenger 4539" in out


def test_ab_model_lines(clt, empty_workspace):
    start = "2025-05-01T00:00:00Z"
    seed_store(empty_workspace, traffic("a", "1.0.0", start, n=30, model="ff")
               + traffic("b", "1.1.0", start, n=30, model="hazmat"))
    code, _, err = clt("ab", "analyze", "--champion", "1.0.0", "--challenger", "1.1.0")
    assert code == 2 and "several model lines for these versions (ff, hazmat): name MODEL" in err
    code, out, _ = clt("ab", "analyze", "hazmat", "--champion", "1.0.0", "--challenger", "1.1.0", "--json")
    result = json.loads(out)
    assert code == 3 and (result["champion"]["rated"], result["challenger"]["rated"]) == (0, 30)
    code, _, err = clt("ab", "analyze", "--champion", "1.0.0", "--challenger", "1.0.0")
    assert code == 2 and "must be different" in err


# --- the loop ------------------------------------------------------------------------------
def _decisions(ws) -> list[dict]:
    return [json.loads(line) for line in (ws / "monitoring" / "decisions.jsonl").read_text().splitlines()]


def test_loop_once_logs_each_decision(clt, degraded):
    ws, at = degraded
    code, out, err = clt("loop", "--once", "--at", at, "--json")
    assert code == 0, err
    record = json.loads(out)
    assert [a["action"] for a in record["actions"]] == ["recommend_rollback", "write_recipe"]
    assert record["actions"][1]["recipe"] == "recipes/ff/1.1.1.yml" and _champion(ws) == "1.1.0"
    code, out, _ = clt("loop", "ff", "--once", "--auto-rollback", "--at", at)
    assert code == 0 and "rollback to 1.0.0 -> rolled back 1.1.0 -> 1.0.0" in out and _champion(ws) == "1.0.0"
    with open_registry(ws) as reg:
        assert reg.events("ff")[-1].who.endswith("(clt loop --auto-rollback)")
    log = _decisions(ws)
    assert len(log) == 2 and log[0] == record
    assert log[1]["actions"][0] == {"action": "rollback", "to": "1.0.0", "rolled_back": {"from": "1.1.0", "to": "1.0.0"}}
    assert log[1]["health"]["status"] == "critical" and log[1]["trigger"]["urgency"] == "immediate"


def test_loop_options(clt, empty_workspace):
    code, _, err = clt("loop", "--interval", "often", "--once")
    assert code == 2 and "--interval" in err
    code, _, err = clt("loop", "--at", "2025-01-01")
    assert code == 2 and "--at needs --once" in err
    code, _, err = clt("loop", "--once")
    assert code == 2 and "registry holds no model line" in err


def test_run_loop_keeps_going_after_an_error():
    calls, shown, errors, sleeps = [], [], [], []

    def step():
        calls.append(1)
        if len(calls) == 2:
            raise BadInput("store busy")
        return {"n": len(calls)}

    def sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        loop_mod.run_loop(step, 3600, False, on_record=shown.append, on_error=errors.append, sleep=sleep)
    assert shown == [{"n": 1}, {"n": 3}] and [str(e) for e in errors] == ["store busy"] and sleeps == [3600] * 3
    calls.clear()
    calls.append(1)  # the next step fails: with once, the error is raised, not swallowed
    with pytest.raises(CltError, match="store busy"):
        loop_mod.run_loop(step, 1, True, on_record=shown.append, on_error=errors.append, sleep=sleep)
    assert len(errors) == 1


def test_loop_auto_train_checks_the_recipe_before_training(clt, empty_workspace):
    """A due update with --auto-train: a recipe of another line is an error (exit 1, logged);
    a recipe whose version is registered already is skipped (nothing trains in this test)."""
    with open_registry(empty_workspace) as reg:
        add_version(reg, empty_workspace, "1.0.0", model="firefighter")
        add_version(reg, empty_workspace, "1.0.0", model="ff")
        for model in ("firefighter", "ff"):
            promote(reg, model, "1.0.0", reason="first release")
    at = shift(now_timestamp(), 100)  # a quarter since the release: the scheduled rule fires
    recipe = "recipes/firefighter/1.0.0.yml"
    code, out, err = clt("loop", "firefighter", "--once", "--at", at, "--auto-train", recipe)
    assert code == 0, err
    assert f"update due (scheduled: release_interval); health no data; train {recipe} -> skipped: " \
           "firefighter 1.0.0 is already registered" in out
    code, _, err = clt("loop", "ff", "--once", "--at", at, "--auto-train", recipe)
    assert code == 1 and f"{recipe} trains firefighter, not ff" in err
    log = _decisions(empty_workspace)
    assert [a["action"] for r in log for a in r["actions"]] == ["train", "train"]
    assert "error" in log[1]["actions"][0] and "skipped" in log[0]["actions"][0]


def test_ab_named_line_with_an_empty_registry(clt, empty_workspace):
    start = "2025-05-01T00:00:00Z"
    seed_store(empty_workspace, traffic("a", "1.0.0", start, n=40) + traffic("b", "1.1.0", start, n=40))
    for args in ([], ["ff"]):  # unattributed predictions: the store's one line, whatever its name
        code, out, _ = clt("ab", "analyze", *args, "--champion", "1.0.0", "--challenger", "1.1.0", "--json")
        assert code == 3 and json.loads(out)["challenger"]["rated"] == 40


def test_trigger_check_prints_intervals_in_days_and_what_its_exit_code_means(clt, empty_workspace):
    release = line_with_champion(empty_workspace)
    code, out, _ = clt("trigger", "check", "ff", "--at", shift(release, 2 / 86400))  # 2 s after release
    rows = {line.split()[1]: line for line in out.splitlines()[1:-1]}
    assert code == 3 and "  0.00 days  >= 91 days" in rows["release_interval"]
    assert "  0.00 days  < 14 days" in rows["cooldown"] and "e-0" not in out
    assert out.splitlines()[-1] == "exit 3: no update is due (not an error)"
    code, out, _ = clt("trigger", "check", "ff", "--at", shift(release, 91.5))
    assert code == 0 and "  91.50 days  >= 91 days   fires" in out
    assert out.splitlines()[-1] == "exit 0: an update is due"
    code, out, _ = clt("trigger", "check", "--help")
    assert "Exit code: 0 an update is due, 3 no update is due" in " ".join(out.split())
