"""`clt health`: the champion's recent positive rate against its own release baseline.

Status: "ok" (drop under planned.accuracy_drop), "warning" (at or over it), "critical"
(over immediate.accuracy_drop and significant: z-test p < accuracy.alpha), "no data"
(a window has fewer than accuracy.min_rated rated predictions, or there is no champion).
A critical champion is rolled back to the previous one, through the registry, so the
move is in its history with who and why; without --auto-rollback it is recommended.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from cl_toolkit.core.errors import Refused
from cl_toolkit.monitoring.config import MonitorConfig
from cl_toolkit.monitoring.observe import Facts
from cl_toolkit.monitoring.triggers import accuracy_change
from cl_toolkit.registry import AliasMove, RegistryStore, rollback
from cl_toolkit.registry.db import current_user


@dataclass(frozen=True)
class HealthReport:
    model: str
    at: str
    champion: str | None
    release: str | None
    baseline_window: dict | None
    recent_window: dict | None
    baseline: dict | None
    recent: dict | None
    drop: float | None
    p_value: float | None
    status: str  # ok | warning | critical | no data
    rollback_to: str | None
    detail: str

    def as_dict(self) -> dict:
        return asdict(self)


def _dict(value) -> dict | None:
    return value.as_dict() if value is not None else None


def assess_health(facts: Facts, cfg: MonitorConfig) -> HealthReport:
    """Judge the champion from the facts (no side effects)."""
    change = accuracy_change(facts.baseline, facts.recent, cfg.accuracy.min_rated)
    if facts.line.champion is None:
        status, detail = "no data", f"{facts.line.model} has no champion"
    elif change.drop is None:
        status, detail = "no data", change.detail
    elif change.drop > cfg.immediate.accuracy_drop and change.p_value < cfg.accuracy.alpha:
        status, detail = "critical", f"drop {change.drop:.1%} > {cfg.immediate.accuracy_drop:.0%}: {change.detail}"
    elif change.drop > cfg.immediate.accuracy_drop:
        status, detail = "warning", (f"drop {change.drop:.1%} > {cfg.immediate.accuracy_drop:.0%} but not "
                                     f"significant at {cfg.accuracy.alpha:g}: {change.detail}")
    elif change.drop >= cfg.planned.accuracy_drop:
        status, detail = "warning", f"drop {change.drop:.1%}: {change.detail}"
    else:
        status, detail = "ok", change.detail
    return HealthReport(
        model=facts.line.model, at=facts.at, champion=facts.line.champion, release=facts.line.release,
        baseline_window=_dict(facts.baseline_window), recent_window=_dict(facts.recent_window),
        baseline=_dict(facts.baseline), recent=_dict(facts.recent), drop=change.drop,
        p_value=change.p_value, status=status,
        rollback_to=facts.line.previous_champion if status == "critical" else None, detail=detail)


def rollback_reason(report: HealthReport) -> str:
    return f"auto-rollback: {report.champion} is critical ({report.detail})"


def perform_rollback(reg: RegistryStore, report: HealthReport, who: str | None = None,
                     via: str = "clt health --auto-rollback"):
    """Roll a critical champion back through the registry (logged with who and why)."""
    if report.status != "critical":
        raise ValueError("only a critical champion is rolled back")
    if reg.alias(report.model, "champion") != report.champion:
        raise Refused(f"{report.model}'s champion changed since the check; run it again")
    if report.rollback_to is None:
        raise Refused(f"{report.model} {report.champion} is critical but has no earlier champion to roll "
                      f"back to; pick one: clt registry rollback {report.model} --to VERSION --reason ...")
    return rollback(reg, report.model, to=report.rollback_to, reason=rollback_reason(report),
                    who=who or f"{current_user()} ({via})")


def format_health(report: HealthReport, action: str | None) -> list[str]:
    lines = [f"{report.model}: champion {report.champion or '-'} released {report.release or '-'}, "
             f"as of {report.at}: {report.status.upper()}", f"  {report.detail}"]
    if report.status == "critical":
        target = report.rollback_to or "(no earlier champion)"
        lines.append(f"  {action or f'recommend: clt registry rollback {report.model} --to {target} --reason ...'}")
    return lines


def check_health(reg: RegistryStore, facts: Facts, cfg: MonitorConfig, *, auto_rollback: bool = False,
                 who: str | None = None) -> tuple[HealthReport, AliasMove | None]:
    """`clt health`: assess the champion and, with `auto_rollback`, roll a critical one back
    when it has an earlier champion; the report and the move made, if any."""
    report = assess_health(facts, cfg)
    if auto_rollback and report.status == "critical" and report.rollback_to:
        return report, perform_rollback(reg, report, who)
    return report, None
