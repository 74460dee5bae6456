"""Everything the checks read, as plain data: counts and columns from the feedback store
(plain SQL over its `predictions` and `feedback` tables) and a model line's facts from the
registry. The other monitoring modules take these values and never touch a database.
"""

from __future__ import annotations

from dataclasses import dataclass

from cl_toolkit.core.errors import BadInput
from cl_toolkit.core.semver import parse as parse_semver
from cl_toolkit.feedback.ratings import EFFECTIVE_RATING, NEGATIVE_MAX, POSITIVE_MIN, SOURCE_JOINS
from cl_toolkit.monitoring.config import MonitorConfig
from cl_toolkit.monitoring.windows import Window, shift, to_store_time
from cl_toolkit.registry import RegistryStore, previous_champion

_JOINS = SOURCE_JOINS
# the model line of a prediction: metadata.model, else the registry's only line
_LINE = "COALESCE(json_extract(p.metadata, '$.model'), :default_line) IS :model"
NUMERIC_FEATURES = ("prompt_length", "response_length", "latency_ms", "confidence", "quality_score")
CATEGORICAL_FEATURES = ("domain",)
NO_DOMAIN = "(none)"


@dataclass(frozen=True)
class Rates:
    """Rated predictions and how many of them were positive and negative."""

    rated: int = 0
    positive: int = 0
    negative: int = 0

    @property
    def positive_rate(self) -> float | None:
        return self.positive / self.rated if self.rated else None

    @property
    def negative_share(self) -> float | None:
        return self.negative / self.rated if self.rated else None

    def as_dict(self) -> dict:
        return {"rated": self.rated, "positive": self.positive, "negative": self.negative,
                "positive_rate": self.positive_rate, "negative_share": self.negative_share}


@dataclass(frozen=True)
class LineFacts:
    """What the registry says about one model line."""

    model: str
    champion: str | None
    release: str | None  # the champion's latest promote event, else its created_at
    last_release: str | None  # the line's latest promotion to champion, else newest created_at
    last_training: str | None  # the newest version's created_at
    newest_version: str | None  # the highest semver registered
    versions: tuple[str, ...]  # every registered version, oldest first
    previous_champion: str | None  # where a rollback would go


@dataclass(frozen=True)
class Facts:
    """One model line at one moment: every number the trigger and health checks need."""

    line: LineFacts
    at: str
    baseline_window: Window | None
    recent_window: Window | None
    baseline: Rates | None  # the champion's positive rate in its release window
    recent: Rates | None
    error_window: Window
    errors: Rates  # the champion's (or the line's, without one) rated predictions
    safety_flags: int
    user_corrections: int
    quality_examples: int


# --- model lines ---------------------------------------------------------------------------
def default_line(reg: RegistryStore, named: str | None = None) -> str | None:
    """The line of predictions without metadata.model: the registry's only model line
    (with an empty registry: the line the user named, if any)."""
    models = reg.models()
    if not models:
        return named
    return models[0] if len(models) == 1 else None


def registry_model(reg: RegistryStore, model: str | None) -> str:
    """MODEL, or the registry's only model line."""
    if model:
        return model
    models = reg.models()
    if len(models) == 1:
        return models[0]
    if not models:
        raise BadInput("the registry holds no model line; register a version first (or name MODEL)")
    raise BadInput(f"the registry holds several model lines ({', '.join(models)}): name MODEL")


def store_model(conn, versions: list[str], default: str | None) -> str | None:
    """The only model line among predictions of these versions (None: no line named anywhere)."""
    marks = ", ".join("?" * len(versions))
    lines = [r[0] for r in conn.execute(
        f"SELECT DISTINCT COALESCE(json_extract(metadata, '$.model'), ?) FROM predictions "
        f"WHERE model_version IN ({marks})", [default, *versions])]
    if len(lines) > 1:
        shown = ", ".join(str(x) for x in sorted(lines, key=str))
        raise BadInput(f"the store holds several model lines for these versions ({shown}): name MODEL")
    return lines[0] if lines else default


def line_facts(reg: RegistryStore, model: str) -> LineFacts:
    """The champion, its release, the last release and training of a model line."""
    recs = reg.versions(model)
    if not recs:
        raise BadInput(f"no versions of {model!r} are registered (models: {', '.join(reg.models()) or 'none'})")
    champion = reg.alias(model, "champion")
    promotions = [e for e in reg.events(model) if e.action == "promote" and e.alias == "champion"]
    created = {r.version: to_store_time(r.created_at, f"{model} {r.version} created_at") for r in recs}
    release = next((to_store_time(e.at) for e in reversed(promotions) if e.version == champion),
                   created.get(champion))
    last_training = max(created.values())
    return LineFacts(
        model=model, champion=champion, release=release,
        last_release=to_store_time(promotions[-1].at) if promotions else last_training,
        last_training=last_training,
        newest_version=max((r.version for r in recs), key=parse_semver),
        versions=tuple(r.version for r in recs),
        previous_champion=previous_champion(reg, model) if champion else None)


# --- store reads ---------------------------------------------------------------------------
def rates(conn, model: str | None, default: str | None, window: Window, version: str | None) -> Rates:
    """Rated / positive / negative predictions of a line (one version, or all) in a window."""
    where = "p.timestamp >= :start AND p.timestamp < :end AND " + _LINE
    if version is not None:
        where += " AND p.model_version = :version"
    row = conn.execute(
        f"SELECT COUNT(r), COALESCE(SUM(r >= {POSITIVE_MIN}), 0), COALESCE(SUM(r <= {NEGATIVE_MAX}), 0) FROM "
        f"(SELECT {EFFECTIVE_RATING} AS r FROM predictions p {_JOINS} WHERE {where}) AS rated",
        {"start": window.start, "end": window.end, "model": model, "default_line": default,
         "version": version}).fetchone()
    return Rates(*row)


def feedback_counts(conn, model: str, default: str | None, since: str | None, at: str,
                    cfg: MonitorConfig) -> tuple[int, int, int]:
    """(safety flags, user corrections, quality examples) of a line, by feedback time."""
    row = conn.execute(
        f"""SELECT
            COALESCE(SUM(instr(lower(COALESCE(f.notes, '')), lower(:note)) > 0
                         OR (f.source = 'incident' AND f.rating <= :incident_rating)), 0),
            COALESCE(SUM(f.source IN ('user', 'api') AND f.correction IS NOT NULL), 0),
            COALESCE(SUM(f.source = 'expert' AND (f.correction IS NOT NULL OR f.rating >= {POSITIVE_MIN}
                                                  OR f.thumbs = 1)), 0)
        FROM feedback f JOIN predictions p ON p.request_id = f.request_id
        WHERE f.timestamp >= :since AND f.timestamp < :at AND {_LINE}""",
        {"note": cfg.immediate.safety_note, "incident_rating": cfg.immediate.incident_rating,
         "since": since or "", "at": at, "model": model, "default_line": default}).fetchone()
    return tuple(row)


def feature_columns(conn, window: Window) -> dict[str, list]:
    """Every prediction in a window as columns: the drift features and the effective rating."""
    cur = conn.execute(
        f"SELECT length(p.input), length(p.output), p.latency_ms, p.confidence, p.quality_score, "
        f"COALESCE(p.domain, '{NO_DOMAIN}'), {EFFECTIVE_RATING} FROM predictions p {_JOINS} "
        f"WHERE p.timestamp >= ? AND p.timestamp < ?", (window.start, window.end))
    names = (*NUMERIC_FEATURES, *CATEGORICAL_FEATURES, "rating")
    columns: dict[str, list] = {name: [] for name in names}
    for row in cur:
        for name, value in zip(names, row, strict=True):
            if value is not None:
                columns[name].append(value)
    return columns


def arm_rows(conn, model: str | None, default: str | None, versions: list[str],
             window: Window | None) -> dict[str, dict]:
    """Per version: predictions, rated, positive, mean quality score and mean latency."""
    where = _LINE + f" AND p.model_version IN ({', '.join(f':v{k}' for k in range(len(versions)))})"
    params = {"model": model, "default_line": default, **{f"v{k}": v for k, v in enumerate(versions)}}
    if window is not None:
        where += " AND p.timestamp >= :start AND p.timestamp < :end"
        params.update(start=window.start, end=window.end)
    cur = conn.execute(
        f"SELECT v, COUNT(*), COUNT(r), COALESCE(SUM(r >= {POSITIVE_MIN}), 0), AVG(q), AVG(lat) FROM "
        f"(SELECT p.model_version AS v, p.quality_score AS q, p.latency_ms AS lat, "
        f"{EFFECTIVE_RATING} AS r FROM predictions p {_JOINS} WHERE {where}) AS rated GROUP BY v", params)
    keys = ("predictions", "rated", "positive", "mean_quality", "mean_latency_ms")
    return {row[0]: dict(zip(keys, row[1:], strict=True)) for row in cur}


def window_columns(conn, windows: dict[str, Window]) -> dict[str, dict[str, list]]:
    """feature_columns of each named window (`clt drift`: reference, current); a window
    without predictions is bad input, named by its option."""
    columns = {name: feature_columns(conn, w) for name, w in windows.items()}
    for name, cols in columns.items():
        if not cols["prompt_length"]:
            raise BadInput(f"--{name} {windows[name].start}..{windows[name].end} holds no predictions")
    return columns


def ab_rows(conn, reg: RegistryStore, model: str | None, versions: list[str],
            window: Window | None) -> tuple[str | None, dict[str, dict]]:
    """`clt ab analyze`: the model line (as named, else the one the versions' predictions
    name) and arm_rows of each version."""
    default = default_line(reg, model)
    model = model or store_model(conn, versions, default)
    return model, arm_rows(conn, model, default, versions, window)


# --- one line at one moment ----------------------------------------------------------------
def accuracy_windows(release: str | None, at: str, cfg: MonitorConfig) -> tuple[Window | None, Window | None]:
    """The baseline window after release and the recent window before `at`, kept apart."""
    if release is None or release >= at:
        return None, None
    baseline = Window(release, min(shift(release, cfg.accuracy.baseline_days), at))
    recent = Window(max(shift(at, -cfg.accuracy.recent_days), baseline.end), at)
    return baseline, recent if recent.start < recent.end else None


def gather(conn, reg: RegistryStore, model: str, at: str, cfg: MonitorConfig) -> Facts:
    """Read every fact the trigger and health checks need for `model` as of `at`."""
    line = line_facts(reg, model)
    default = default_line(reg)
    baseline_w, recent_w = accuracy_windows(line.release, at, cfg)
    champ = line.champion
    error_w = Window(shift(at, -cfg.error_rate.window_days), at)
    flags, corrections, quality = feedback_counts(conn, model, default, line.last_training, at, cfg)
    return Facts(
        line=line, at=at, baseline_window=baseline_w, recent_window=recent_w,
        baseline=rates(conn, model, default, baseline_w, champ) if baseline_w else None,
        recent=rates(conn, model, default, recent_w, champ) if recent_w else None,
        error_window=error_w, errors=rates(conn, model, default, error_w, champ),
        safety_flags=flags, user_corrections=corrections, quality_examples=quality)
