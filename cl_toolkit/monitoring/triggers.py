"""`clt trigger check`: is a model update due? Pure rules over Facts (see observe.py).

Immediate rules start an update at once; planned and scheduled ones only outside the
cooldown after the last training. Each rule reports its value, its threshold and a
verdict: "fires", "no", or "no data" (too few rated predictions to judge); the cooldown
rule says "active" or "clear". The thresholds and what each rule counts are described in
configs/triggers.yml.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from cl_toolkit.monitoring.config import MonitorConfig
from cl_toolkit.monitoring.observe import Facts, Rates
from cl_toolkit.monitoring.stat_tests import two_proportion_ztest
from cl_toolkit.monitoring.windows import days_between

ROUND = 9  # values are compared after rounding, so "exactly at the threshold" is at it
URGENCY_ORDER = ("immediate", "planned", "scheduled")


@dataclass(frozen=True)
class RuleResult:
    name: str
    urgency: str  # immediate | planned | scheduled | cooldown
    value: float | int | None
    threshold: str
    verdict: str  # fires | no | no data | active | clear
    detail: str = ""
    unit: str = ""  # "days" for the interval rules; counts and shares have none

    @property
    def fired(self) -> bool:
        return self.verdict == "fires"


@dataclass(frozen=True)
class AccuracyChange:
    """The champion's positive rate now against its release baseline."""

    drop: float | None  # baseline rate minus recent rate; None when either window is thin
    p_value: float | None
    detail: str


@dataclass(frozen=True)
class TriggerReport:
    model: str
    at: str
    champion: str | None
    rules: list[RuleResult]
    due: bool
    urgency: str | None
    cooldown_active: bool

    def as_dict(self) -> dict:
        return {**asdict(self), "fired": [r.name for r in self.rules if r.fired]}


def _r(x: float) -> float:
    return round(x, ROUND)


def accuracy_change(baseline: Rates | None, recent: Rates | None, min_rated: int) -> AccuracyChange:
    """Drop in positive rate and the pooled z-test's p-value, if both windows have enough."""
    if baseline is None or recent is None:
        return AccuracyChange(None, None, "no champion release window yet")
    if min(baseline.rated, recent.rated) < min_rated:
        return AccuracyChange(None, None, f"rated: baseline {baseline.rated}, recent {recent.rated}; "
                                          f"need {min_rated} each")
    test = two_proportion_ztest(baseline.positive, baseline.rated, recent.positive, recent.rated)
    return AccuracyChange(_r(-test.diff), test.p_value,
                          f"{baseline.positive_rate:.1%} of {baseline.rated} at release -> "
                          f"{recent.positive_rate:.1%} of {recent.rated} now, p={test.p_value:.2g}")


def _drop_rule(name: str, urgency: str, change: AccuracyChange, low: float, high: float | None,
               alpha: float) -> RuleResult:
    """Fires when low < drop (immediate: high None) or low <= drop <= high, if significant."""
    threshold = f"> {low:g}" if high is None else f"{low:g}..{high:g}"
    if change.drop is None:
        return RuleResult(name, urgency, None, threshold, "no data", change.detail)
    inside = change.drop > low if high is None else low <= change.drop <= high
    significant = change.p_value < alpha
    detail = change.detail + ("" if significant or not inside else f" (not significant at {alpha:g})")
    return RuleResult(name, urgency, change.drop, threshold, "fires" if inside and significant else "no", detail)


def _at_least(name: str, urgency: str, value, threshold, detail: str = "", unit: str = "") -> RuleResult:
    return RuleResult(name, urgency, value, f">= {threshold:g}{_unit(unit)}",
                      "fires" if value >= threshold else "no", detail, unit)


def _unit(unit: str) -> str:
    return f" {unit}" if unit else ""


def _error_rule(facts: Facts, cfg: MonitorConfig) -> RuleResult:
    rule = cfg.error_rate
    share, rated = facts.errors.negative_share, facts.errors.rated
    threshold = f"> {rule.max_negative_share:g}"
    if rated < rule.min_rated:
        return RuleResult("error_rate", rule.urgency, None, threshold, "no data",
                          f"{rated} rated in the last {rule.window_days:g} days; need {rule.min_rated}")
    value = _r(share)
    return RuleResult("error_rate", rule.urgency, value, threshold,
                      "fires" if value > rule.max_negative_share else "no",
                      f"{facts.errors.negative} negative of {rated} rated in the last {rule.window_days:g} days")


def _days_since(since: str | None, at: str) -> float | None:
    return _r(days_between(since, at)) if since else None


def rules(facts: Facts, cfg: MonitorConfig) -> list[RuleResult]:
    """Every rule evaluated on the facts, in the order they are reported."""
    change = accuracy_change(facts.baseline, facts.recent, cfg.accuracy.min_rated)
    alpha = cfg.accuracy.alpha
    since_release = _days_since(facts.line.last_release, facts.at)
    since_training = _days_since(facts.line.last_training, facts.at)
    return [
        _at_least("safety_flags", "immediate", facts.safety_flags, cfg.immediate.safety_flags,
                  "critical safety flags since the last training"),
        _drop_rule("accuracy_drop_critical", "immediate", change, cfg.immediate.accuracy_drop, None, alpha),
        _drop_rule("accuracy_drop", "planned", change, cfg.planned.accuracy_drop,
                   cfg.immediate.accuracy_drop, alpha),
        _at_least("user_corrections", "planned", facts.user_corrections, cfg.planned.user_corrections,
                  "user corrections since the last training"),
        _at_least("quality_examples", "planned", facts.quality_examples, cfg.planned.quality_examples,
                  "expert-approved or corrected examples since the last training"),
        _error_rule(facts, cfg),
        _at_least("release_interval", "scheduled", since_release, cfg.scheduled.interval_days,
                  f"since the last release ({facts.line.last_release})", "days")
        if since_release is not None else
        RuleResult("release_interval", "scheduled", None, f">= {cfg.scheduled.interval_days:g} days",
                   "no data", "never released", "days"),
        RuleResult("cooldown", "cooldown", since_training, f"< {cfg.cooldown.days:g} days",
                   "active" if since_training is not None and since_training < cfg.cooldown.days else "clear",
                   f"since the last training ({facts.line.last_training}); while active only "
                   f"immediate rules start an update", "days"),
    ]


def decide(model: str, at: str, champion: str | None, results: list[RuleResult]) -> TriggerReport:
    """Due when an immediate rule fires, or a planned / scheduled one outside the cooldown."""
    cooldown = any(r.urgency == "cooldown" and r.verdict == "active" for r in results)
    fired = {r.urgency for r in results if r.fired}
    allowed = {"immediate"} if cooldown else set(URGENCY_ORDER)
    urgency = next((u for u in URGENCY_ORDER if u in fired and u in allowed), None)
    return TriggerReport(model, at, champion, results, urgency is not None, urgency, cooldown)


def check_triggers(facts: Facts, cfg: MonitorConfig) -> TriggerReport:
    """Evaluate every rule and decide whether an update is due."""
    return decide(facts.line.model, facts.at, facts.line.champion, rules(facts, cfg))


def format_report(report: TriggerReport) -> list[str]:
    """The report as text: a headline, then one line per rule."""
    verdict = f"UPDATE DUE ({report.urgency})" if report.due else "no update due"
    lines = [f"{report.model}: champion {report.champion or '-'}, as of {report.at}: {verdict}"]
    for r in report.rules:
        lines.append(f"  {r.urgency:<9} {r.name:<22} {_value(r):>10}  {r.threshold:<12} {r.verdict:<7}  {r.detail}")
    return lines


def _value(r: RuleResult) -> str:
    """A rule's value as a person reads it: days to two decimals, shares and counts as they are."""
    if r.value is None:
        return "-"
    if r.unit == "days":
        return f"{r.value:,.2f} days"
    return f"{r.value:g}" if isinstance(r.value, float) else str(r.value)
