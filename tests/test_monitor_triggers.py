"""Every trigger rule just under, at and over its threshold; the cooldown; health statuses;
the loop's decision; and the policy file (configs/triggers.yml) against the defaults."""

from __future__ import annotations

import dataclasses

import pytest
from test_monitor_support import line_with_champion

from cl_toolkit.core.errors import BadInput, Refused
from cl_toolkit.core.yamlio import LineMap, load_yaml
from cl_toolkit.monitoring.config import MonitorConfig, load_config, parse_config
from cl_toolkit.monitoring.decisions import decide as decide_actions
from cl_toolkit.monitoring.decisions import suggested_recipe
from cl_toolkit.monitoring.health import assess_health
from cl_toolkit.monitoring.observe import Facts, LineFacts, Rates
from cl_toolkit.monitoring.triggers import check_triggers
from cl_toolkit.monitoring.windows import Window, shift
from cl_toolkit.pipeline.loop import perform_rollback
from cl_toolkit.registry import open_registry, rollback

AT = "2025-07-01T00:00:00.000Z"
CFG = MonitorConfig()
N = 10_000  # rated per window: every drop tested here is significant
STEADY, FEW_ERRORS = Rates(N, 9000, 500), Rates(1000, 900, 50)


def facts(*, baseline=STEADY, recent=STEADY, errors=FEW_ERRORS,
          safety_flags=0, user_corrections=0, quality_examples=0, since_release=30.0,
          since_training=30.0, champion="1.1.0") -> Facts:
    """Facts far from every threshold, except what the test sets."""
    line = LineFacts(model="ff", champion=champion, release=shift(AT, -30), last_release=shift(AT, -since_release),
                     last_training=shift(AT, -since_training), newest_version="1.1.0",
                     versions=("1.0.0", "1.1.0"), previous_champion="1.0.0")
    return Facts(line=line, at=AT, baseline_window=Window(shift(AT, -30), shift(AT, -23)),
                 recent_window=Window(shift(AT, -7), AT), baseline=baseline, recent=recent,
                 error_window=Window(shift(AT, -7), AT), errors=errors, safety_flags=safety_flags,
                 user_corrections=user_corrections, quality_examples=quality_examples)


def dropped(drop: float) -> Rates:
    """Recent rates `drop` below the 0.9 baseline (exact counts)."""
    return Rates(N, round((0.9 - drop) * N), 500)


def verdict(f: Facts, rule: str, cfg: MonitorConfig = CFG) -> str:
    return next(r.verdict for r in check_triggers(f, cfg).rules if r.name == rule)


@pytest.mark.parametrize("value, expected", [(0, "no"), (1, "fires"), (2, "fires")])
def test_safety_flags(value, expected):
    report = check_triggers(facts(safety_flags=value), CFG)
    assert verdict(facts(safety_flags=value), "safety_flags") == expected
    assert (report.due, report.urgency) == ((True, "immediate") if expected == "fires" else (False, None))


@pytest.mark.parametrize("drop, critical, planned", [
    (0.0499, "no", "no"), (0.05, "no", "fires"), (0.0501, "no", "fires"),
    (0.0999, "no", "fires"), (0.10, "no", "fires"), (0.1001, "fires", "no")])
def test_accuracy_drop_rules(drop, critical, planned):
    f = facts(recent=dropped(drop))
    assert (verdict(f, "accuracy_drop_critical"), verdict(f, "accuracy_drop")) == (critical, planned)
    assert check_triggers(f, CFG).urgency == ("immediate" if critical == "fires" else "planned" if planned == "fires" else None)


def test_accuracy_drop_needs_enough_ratings_and_significance():
    thin = facts(baseline=Rates(99, 90, 0), recent=Rates(99, 60, 0))
    assert verdict(thin, "accuracy_drop_critical") == "no data"
    enough = facts(baseline=Rates(100, 90, 0), recent=Rates(100, 60, 0))
    assert verdict(enough, "accuracy_drop_critical") == "fires"
    strict = dataclasses.replace(CFG, accuracy=dataclasses.replace(CFG.accuracy, alpha=1e-12))
    assert verdict(facts(baseline=Rates(100, 90, 0), recent=Rates(100, 78, 0)), "accuracy_drop_critical", strict) == "no"
    assert verdict(facts(baseline=None, recent=None), "accuracy_drop") == "no data"


@pytest.mark.parametrize("rule, threshold", [("user_corrections", 500), ("quality_examples", 200)])
@pytest.mark.parametrize("offset, expected", [(-1, "no"), (0, "fires"), (1, "fires")])
def test_planned_counts(rule, threshold, offset, expected):
    f = facts(**{rule: threshold + offset})
    assert verdict(f, rule) == expected
    assert check_triggers(f, CFG).urgency == ("planned" if expected == "fires" else None)


@pytest.mark.parametrize("negative, expected", [(149, "no"), (150, "no"), (151, "fires")])
def test_error_rate(negative, expected):
    assert verdict(facts(errors=Rates(1000, 800, negative)), "error_rate") == expected


def test_error_rate_needs_enough_ratings():
    assert verdict(facts(errors=Rates(99, 0, 99)), "error_rate") == "no data"
    assert verdict(facts(errors=Rates(100, 0, 99)), "error_rate") == "fires"


@pytest.mark.parametrize("days, expected", [(90.99, "no"), (91.0, "fires"), (91.01, "fires")])
def test_release_interval(days, expected):
    f = facts(since_release=days, since_training=days)
    assert verdict(f, "release_interval") == expected
    assert check_triggers(f, CFG).urgency == ("scheduled" if expected == "fires" else None)


@pytest.mark.parametrize("days, expected", [(13.99, "active"), (14.0, "clear"), (14.01, "clear")])
def test_cooldown_blocks_planned_but_not_immediate(days, expected):
    planned = facts(since_training=days, user_corrections=600)
    assert verdict(planned, "cooldown") == expected
    assert check_triggers(planned, CFG).due is (expected == "clear")
    immediate = facts(since_training=days, safety_flags=1)
    report = check_triggers(immediate, CFG)
    assert (report.due, report.urgency, report.cooldown_active) == (True, "immediate", expected == "active")


def test_quiet_line_is_not_due():
    report = check_triggers(facts(), CFG)
    assert not report.due and report.urgency is None and not any(r.fired for r in report.rules)
    assert len({r.name for r in report.rules}) == 8


# --- health ------------------------------------------------------------------------------
@pytest.mark.parametrize("drop, status", [(0.0, "ok"), (0.0499, "ok"), (0.05, "warning"), (0.10, "warning"),
                                          (0.1001, "critical")])
def test_health_status(drop, status):
    report = assess_health(facts(recent=dropped(drop)), CFG)
    assert report.status == status
    assert report.rollback_to == ("1.0.0" if status == "critical" else None)


def test_health_big_but_insignificant_drop_is_a_warning():
    report = assess_health(facts(baseline=Rates(100, 90, 0), recent=Rates(100, 78, 0)),
                           dataclasses.replace(CFG, accuracy=dataclasses.replace(CFG.accuracy, alpha=1e-6)))
    assert report.status == "warning" and "not significant" in report.detail and report.rollback_to is None


def test_rollback_refuses_when_the_champion_moved(empty_workspace):
    line_with_champion(empty_workspace)
    report = assess_health(facts(recent=dropped(0.2)), CFG)
    with open_registry(empty_workspace) as reg:
        rollback(reg, "ff", reason="someone else was faster")
        with pytest.raises(Refused, match="champion changed since the check"):
            perform_rollback(reg, report)
        assert reg.alias("ff", "champion") == "1.0.0"


def test_health_without_champion_or_data():
    assert assess_health(facts(champion=None, baseline=None, recent=None), CFG).status == "no data"
    assert assess_health(facts(recent=Rates(50, 10, 0)), CFG).status == "no data"


# --- the loop's decision -----------------------------------------------------------------
def test_loop_decision():
    bad = facts(recent=dropped(0.2))
    trig, health = check_triggers(bad, CFG), assess_health(bad, CFG)
    actions = decide_actions(trig, health, bad.line, auto_train=None, auto_rollback=False)
    assert [a["action"] for a in actions] == ["recommend_rollback", "write_recipe"]
    assert actions[1]["recipe"] == "recipes/ff/1.1.1.yml" and "--bump patch" in actions[1]["command"]
    actions = decide_actions(trig, health, bad.line, auto_train="recipes/ff/1.2.0.yml", auto_rollback=True)
    assert actions == [{"action": "rollback", "to": "1.0.0"}, {"action": "train", "recipe": "recipes/ff/1.2.0.yml"}]
    quiet = facts()
    assert decide_actions(check_triggers(quiet, CFG), assess_health(quiet, CFG), quiet.line,
                          auto_train=None, auto_rollback=True) == [{"action": "none"}]


def test_suggested_recipe_skips_taken_versions():
    line = facts().line
    assert suggested_recipe(line, "planned")["version"] == "1.2.0"
    taken = dataclasses.replace(line, champion="1.0.0", newest_version="1.1.0")
    assert suggested_recipe(taken, "planned") == {
        "recipe": "recipes/ff/1.2.0.yml", "version": "1.2.0",
        "command": "clt recipe new ff --from 1.1.0 --strategy continued_lora --bump minor --data NEW_DATA.jsonl"}


# --- the policy file ---------------------------------------------------------------------
def test_shipped_policy_equals_the_defaults_and_sets_every_key(repo_root):
    path = repo_root / "configs" / "triggers.yml"
    assert dataclasses.replace(load_config(path), source="") == dataclasses.replace(MonitorConfig(), source="")
    data, _ = load_yaml(path)
    for section in dataclasses.fields(MonitorConfig):
        if section.name != "source":
            assert set(data[section.name]) == {f.name for f in dataclasses.fields(getattr(CFG, section.name))}


def test_policy_problems_are_reported_together_with_lines(tmp_path):
    path = tmp_path / "t.yml"
    path.write_text("planned:\n  user_corrections: 1.5\n  typo: 3\naccuracy:\n  alpha: 2\n"
                    "cooldown:\n  days: true\nnonsense: {}\nerror_rate: {urgency: soon}\n")
    with pytest.raises(BadInput) as e:
        load_config(path)
    text = str(e.value)
    for fragment in ("t.yml:2: [planned.user_corrections] must be a whole number",
                     "t.yml:3: [planned.typo] unknown key", "t.yml:5: [accuracy.alpha] must be between 0 and 1",
                     "t.yml:7: [cooldown.days] must be a number", "t.yml:8: [nonsense] unknown section",
                     "[error_rate.urgency] must be one of"):
        assert fragment in text, text


def test_partial_policy_keeps_the_other_defaults():
    cfg = parse_config({"planned": {"user_corrections": 50}, "cooldown": {"days": 0}}, LineMap(), "x")
    assert cfg.planned.user_corrections == 50 and cfg.cooldown.days == 0.0
    assert cfg.planned.quality_examples == 200 and cfg.immediate == MonitorConfig().immediate
    with pytest.raises(BadInput, match="must not exceed immediate.accuracy_drop"):
        parse_config({"planned": {"accuracy_drop": 0.2}}, LineMap(), "x")

