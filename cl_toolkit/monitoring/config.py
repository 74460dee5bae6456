"""The monitoring policy: trigger thresholds, windows, drift bands and A/B settings.

The defaults are the dataclasses below; `configs/triggers.yml` ships the same values with
comments that explain each rule (a test keeps the two equal). A YAML file may set any
subset; unknown keys and wrong types are reported together, each with its line.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from cl_toolkit.core.errors import BadInput, Problem
from cl_toolkit.core.workspace import project_root
from cl_toolkit.core.yamlio import display, format_key, load_yaml

CONFIG_PATH = Path("configs") / "triggers.yml"
SCHEMA_VERSION = 1
URGENCIES = ("immediate", "planned", "scheduled")


@dataclass(frozen=True)
class Accuracy:
    """Positive rate of the champion: a recent window against the baseline after release."""

    recent_days: float = 7.0
    baseline_days: float = 7.0
    min_rated: int = 100  # per window; fewer: the accuracy rules say "no data"
    alpha: float = 0.05  # a drop counts only when the pooled z-test gives p < alpha


@dataclass(frozen=True)
class Immediate:
    accuracy_drop: float = 0.10  # fires when the drop is over this (absolute, 0.10 = 10 points)
    safety_flags: int = 1  # fires at this many critical safety flags since the last training
    safety_note: str = "safety: critical"  # feedback notes containing this are a flag
    incident_rating: int = 1  # incident feedback rated at or below this is a flag


@dataclass(frozen=True)
class Planned:
    accuracy_drop: float = 0.05  # fires from this drop up to immediate.accuracy_drop
    user_corrections: int = 500  # user corrections since the last training
    quality_examples: int = 200  # expert-approved or expert-corrected examples since then


@dataclass(frozen=True)
class Scheduled:
    interval_days: float = 91.0  # since the last release (quarterly)


@dataclass(frozen=True)
class ErrorRate:
    window_days: float = 7.0
    max_negative_share: float = 0.15  # fires when the negative share is over this
    min_rated: int = 100
    urgency: str = "planned"


@dataclass(frozen=True)
class Cooldown:
    days: float = 14.0  # after the last training only immediate rules start an update


@dataclass(frozen=True)
class Drift:
    bins: int = 10  # quantile bins of the reference window
    epsilon: float = 1.0e-4  # share given to an empty bin
    psi_moderate: float = 0.10
    psi_significant: float = 0.25
    ks_alpha: float = 0.05
    concept_drop: float = 0.05  # positive-rate drop that counts as concept drift


@dataclass(frozen=True)
class AB:
    min_samples_per_arm: int = 1000  # rated predictions
    min_improvement: float = 0.02  # absolute gain in positive rate
    alpha: float = 0.05
    power: float = 0.80  # for the sample size still needed
    weight_quality: float = 0.5
    weight_positive_rate: float = 0.3
    weight_latency: float = -0.2


@dataclass(frozen=True)
class MonitorConfig:
    accuracy: Accuracy = field(default_factory=Accuracy)
    immediate: Immediate = field(default_factory=Immediate)
    planned: Planned = field(default_factory=Planned)
    scheduled: Scheduled = field(default_factory=Scheduled)
    error_rate: ErrorRate = field(default_factory=ErrorRate)
    cooldown: Cooldown = field(default_factory=Cooldown)
    drift: Drift = field(default_factory=Drift)
    ab: AB = field(default_factory=AB)
    source: str = "built-in defaults"  # where it was read from (not a setting)


SECTIONS = {f.name: f.default_factory for f in dataclasses.fields(MonitorConfig) if f.name != "source"}
_PROBABILITIES = {("accuracy", "alpha"), ("drift", "ks_alpha"), ("ab", "alpha"), ("ab", "power"),
                  ("error_rate", "max_negative_share")}
_SIGNED = {("ab", "weight_quality"), ("ab", "weight_positive_rate"), ("ab", "weight_latency")}


def _check_value(section: str, key: str, value, default) -> str | None:
    """What is wrong with one value, or None."""
    if isinstance(default, str):
        if not isinstance(value, str):
            return "must be a string"
        if key == "urgency" and value not in URGENCIES:
            return f"must be one of {', '.join(URGENCIES)}"
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "must be a number"
    if isinstance(default, int) and not isinstance(value, int):
        return "must be a whole number"
    if (section, key) in _PROBABILITIES and not 0 < value < 1:
        return "must be between 0 and 1"
    if (section, key) not in _SIGNED and value < 0:
        return "must not be negative"
    if key == "bins" and value < 2:
        return "must be at least 2"
    return None


def _section(name: str, raw, lines, fname: str, problems: list[Problem]):
    default = SECTIONS[name]()
    if not isinstance(raw, dict):
        problems.append(Problem(fname, "must be a mapping", lines.line_for((name,)), name))
        return default
    known = {f.name: getattr(default, f.name) for f in dataclasses.fields(default)}
    values = {}
    for key, value in raw.items():
        where = lines.line_for((name, key))
        if key not in known:
            problems.append(Problem(fname, f"unknown key (known: {', '.join(known)})", where,
                                    format_key((name, key))))
        elif (why := _check_value(name, key, value, known[key])) is not None:
            problems.append(Problem(fname, f"{why}, got {value!r}", where, format_key((name, key))))
        else:
            values[key] = float(value) if isinstance(known[key], float) else value
    return dataclasses.replace(default, **values)


def parse_config(data, lines, fname: str) -> MonitorConfig:
    """A MonitorConfig from parsed YAML; BadInput listing every problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise BadInput([Problem(fname, "must be a YAML mapping", 1)])
    problems: list[Problem] = []
    if data.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        problems.append(Problem(fname, f"schema_version must be {SCHEMA_VERSION}",
                                lines.line_for(("schema_version",)), "schema_version"))
    sections = {}
    for name, raw in data.items():
        if name == "schema_version":
            continue
        if name not in SECTIONS:
            problems.append(Problem(fname, f"unknown section (known: {', '.join(SECTIONS)})",
                                    lines.line_for((name,)), name))
            continue
        sections[name] = _section(name, raw, lines, fname, problems)
    cfg = MonitorConfig(**sections, source=fname)
    if cfg.planned.accuracy_drop > cfg.immediate.accuracy_drop:
        problems.append(Problem(fname, "must not exceed immediate.accuracy_drop",
                                lines.line_for(("planned", "accuracy_drop")), "planned.accuracy_drop"))
    if cfg.drift.psi_moderate > cfg.drift.psi_significant:
        problems.append(Problem(fname, "must not exceed drift.psi_significant",
                                lines.line_for(("drift", "psi_moderate")), "drift.psi_moderate"))
    if problems:
        raise BadInput(problems)
    return cfg


def load_config(path: str | Path | None = None) -> MonitorConfig:
    """The policy from `path`, else from the project's configs/triggers.yml, else the
    built-in defaults (the same values)."""
    if path is None:
        path = project_root() / CONFIG_PATH
        if not path.is_file():
            return MonitorConfig()
    data, lines = load_yaml(path)
    return parse_config(data, lines, display(path))
