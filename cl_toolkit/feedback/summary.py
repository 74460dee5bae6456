"""`clt feedback stats`: what the store holds, overall and by model version and domain,
and each model version's latency percentiles; and one quarter of one model line's
production feedback, for the quarterly report (`quarter_feedback`)."""

from __future__ import annotations

import itertools
import re

from cl_toolkit.core.errors import BadInput
from cl_toolkit.feedback.ratings import (
    EFFECTIVE_CORRECTION,
    EFFECTIVE_RATING,
    NEGATIVE_MAX,
    SOURCE_JOINS,
)
from cl_toolkit.feedback.schema import SOURCES
from cl_toolkit.feedback.store import FeedbackStore

_GROUPS = {"by_model_version": "model_version", "by_domain": "domain"}
NO_DOMAIN = "(none)"
PERCENTILES = (50, 95, 99)


def _one(conn, sql: str, params=()) -> tuple:
    return conn.execute(sql, params).fetchone()


def _rounded(value, digits: int = 4):
    return None if value is None else round(value, digits)


def _grouped(conn, column: str) -> dict:
    groups: dict = {}
    sql = f"SELECT {column}, COUNT(*), AVG(quality_score) FROM predictions GROUP BY 1 ORDER BY 1"
    for key, n, quality in conn.execute(sql):
        groups[key if key is not None else NO_DOMAIN] = {
            "predictions": n, "with_feedback": 0, "mean_rating": None,
            "mean_quality": _rounded(quality), "corrections": 0}
    sql = (f"SELECT p.{column}, COUNT(DISTINCT f.request_id), AVG(f.rating), "
           "SUM(f.correction IS NOT NULL) FROM feedback f JOIN predictions p "
           "ON p.request_id = f.request_id GROUP BY 1")
    for key, with_feedback, rating, corrections in conn.execute(sql):
        group = groups[key if key is not None else NO_DOMAIN]
        group.update(with_feedback=with_feedback, mean_rating=_rounded(rating),
                     corrections=corrections)
    return groups


def _latency_percentiles(conn) -> dict:
    """{version: {count, p50, p95, p99}} of latency_ms, interpolating linearly between
    ranks; one sorted pass that keeps only the values at the ranks it needs."""
    counts = dict(conn.execute("SELECT model_version, COUNT(latency_ms) FROM predictions "
                               "GROUP BY 1"))
    rows = conn.execute("SELECT model_version, latency_ms FROM predictions "
                        "WHERE latency_ms IS NOT NULL ORDER BY 1, 2")
    result = {}
    for version, group in itertools.groupby(rows, key=lambda r: r[0]):
        n = counts[version]
        ranks = {q: q / 100 * (n - 1) for q in PERCENTILES}
        needed = {int(r) for r in ranks.values()} | {min(int(r) + 1, n - 1) for r in ranks.values()}
        values = {i: v for i, (_, v) in enumerate(group) if i in needed}
        result[version] = {"count": n}
        for q, rank in ranks.items():
            low, high = values[int(rank)], values[min(int(rank) + 1, n - 1)]
            result[version][f"p{q}"] = _rounded(low + (high - low) * (rank - int(rank)), 3)
    return result


def compute_stats(store: FeedbackStore) -> dict:
    """Totals, feedback rate, mean rating and quality, thumbs, corrections, and groups."""
    conn = store.conn
    conn.execute("BEGIN")  # one snapshot for every number
    try:
        predictions, quality, first, last = _one(
            conn, "SELECT COUNT(*), AVG(quality_score), MIN(timestamp), MAX(timestamp) "
                  "FROM predictions")
        with_feedback = _one(conn, "SELECT COUNT(DISTINCT request_id) FROM feedback")[0]
        rating, up, neutral, down = _one(
            conn, "SELECT AVG(rating), SUM(thumbs = 1), SUM(thumbs = 0), SUM(thumbs = -1) "
                  "FROM feedback")
        by_source = {s: {"events": 0, "corrections": 0, "mean_rating": None} for s in SOURCES}
        for source, events, corrections, mean in conn.execute(
                "SELECT source, COUNT(*), SUM(correction IS NOT NULL), AVG(rating) "
                "FROM feedback GROUP BY source"):
            by_source[source] = {"events": events, "corrections": corrections,
                                 "mean_rating": _rounded(mean)}
        groups = {name: _grouped(conn, column) for name, column in _GROUPS.items()}
        latency = _latency_percentiles(conn)
    finally:
        conn.execute("COMMIT")
    return {
        "store": str(store.path), "schema_version": store.schema_version,
        "predictions": predictions, "with_feedback": with_feedback,
        "feedback_rate": _rounded(with_feedback / predictions if predictions else 0.0),
        "feedback_events": sum(s["events"] for s in by_source.values()),
        "mean_rating": _rounded(rating), "mean_quality": _rounded(quality),
        "thumbs": {"up": up or 0, "neutral": neutral or 0, "down": down or 0},
        "corrections": sum(s["corrections"] for s in by_source.values()),
        "by_source": by_source, "first": first, "last": last, **groups,
        "latency_ms_by_model_version": latency,
    }


def format_stats(s: dict) -> list[str]:
    """compute_stats as text: totals, then per model version and domain, then latency."""
    lines = [f"predictions {s['predictions']:,}, with feedback {s['with_feedback']:,} "
             f"(rate {s['feedback_rate']:.1%}), feedback events {s['feedback_events']:,}",
             f"mean rating {s['mean_rating']}, mean quality {s['mean_quality']}, "
             f"corrections {s['corrections']:,}, thumbs {s['thumbs']}"]
    for group in ("by_model_version", "by_domain"):
        lines.append(f"{group.replace('_', ' ')}:")
        lines += [f"  {key}: {v['predictions']:,} predictions, {v['with_feedback']:,} rated, "
                  f"mean rating {v['mean_rating']}, corrections {v['corrections']:,}"
                  for key, v in s[group].items()]
    lines.append("latency ms by model version:")
    lines += [f"  {key}: p50 {v['p50']}, p95 {v['p95']}, p99 {v['p99']} (n {v['count']:,})"
              for key, v in s["latency_ms_by_model_version"].items()]
    return lines


# ---- one quarter of one model line, for the quarterly report ---------------------------

_QUARTER = re.compile(r"^(\d{4})-?Q([1-4])$")


def quarter_of(timestamp: str) -> str:
    """The calendar quarter of a store timestamp: '2026-05-03T...' -> '2026Q2'."""
    return f"{timestamp[:4]}Q{(int(timestamp[5:7]) - 1) // 3 + 1}"


def quarter_window(quarter: str) -> tuple[str, str]:
    """'2026Q2' -> ('2026-04-01T00:00:00.000Z', '2026-07-01T00:00:00.000Z'): since, until."""
    m = _QUARTER.match(quarter.strip().upper())
    if not m:
        raise BadInput(f"quarter {quarter!r} must look like 2026Q2")
    year, q = int(m.group(1)), int(m.group(2))
    start = f"{year}-{3 * q - 2:02d}-01T00:00:00.000Z"
    end = f"{year + 1}-01-01T00:00:00.000Z" if q == 4 else f"{year}-{3 * q + 1:02d}-01T00:00:00.000Z"
    return start, end


def _stored_names(model: str, versions: list[str]) -> dict[str, str]:
    """What a prediction of each version may carry: '1.1.0' or 'firefighter@1.1.0'."""
    return {**{v: v for v in versions}, **{f"{model}@{v}": v for v in versions}}


def newest_quarter(store: FeedbackStore, model: str, versions: list[str]) -> str | None:
    """The quarter of the newest prediction of any of the line's versions (None: none)."""
    names = _stored_names(model, versions)
    if not names:
        return None
    marks = ", ".join("?" * len(names))
    newest = _one(store.conn, f"SELECT MAX(timestamp) FROM predictions WHERE model_version IN ({marks})",
                  tuple(names))[0]
    return quarter_of(newest) if newest else None


def _cells(store: FeedbackStore, names: dict[str, str], since: str, until: str) -> tuple[list, int]:
    """(version, domain, effective rating, corrected, count) groups of the window, and the
    window's predictions of versions outside the line."""
    marks = ", ".join("?" * len(names))
    window = "p.timestamp >= ? AND p.timestamp < ?"
    sql = (f"SELECT p.model_version, p.domain, {EFFECTIVE_RATING}, {EFFECTIVE_CORRECTION} IS NOT NULL, COUNT(*) "
           f"FROM predictions p {SOURCE_JOINS} WHERE {window} AND p.model_version IN ({marks}) GROUP BY 1, 2, 3, 4")
    conn = store.conn
    conn.execute("BEGIN")  # one snapshot for every number
    try:
        cells = conn.execute(sql, (since, until, *names)).fetchall()
        others = _one(conn, f"SELECT COUNT(*) FROM predictions p WHERE {window} "
                            f"AND p.model_version NOT IN ({marks})", (since, until, *names))[0]
    finally:
        conn.execute("COMMIT")
    return cells, others


def _tally() -> dict:
    return {"predictions": 0, "rated": 0, "rating_sum": 0, "corrections": 0, "complaints": 0}


def _add(t: dict, rating, corrected, n: int) -> None:
    t["predictions"] += n
    if rating is not None:
        t["rated"] += n
        t["rating_sum"] += rating * n
        t["complaints"] += n if rating <= NEGATIVE_MAX else 0
    t["corrections"] += n if corrected else 0


def _done(t: dict) -> dict:
    total = t.pop("rating_sum")
    return {**t, "mean_rating": _rounded(total / t["rated"], 2) if t["rated"] else None}


def quarter_feedback(store: FeedbackStore, model: str, versions: list[str], quarter: str) -> dict:
    """Production feedback on a model line's versions in one calendar quarter: predictions,
    ratings (the effective rating: most trusted source first, a thumb as 5/3/1), the rating
    distribution, corrections, and the domains users complained about most (a complaint:
    effective rating <= NEGATIVE_MAX), per version and per (version, domain)."""
    since, until = quarter_window(quarter)
    names = _stored_names(model, versions)
    cells, others = _cells(store, names, since, until) if names else ([], 0)
    overall, by_version, by_cell, by_domain = _tally(), {}, {}, {}
    distribution = {str(r): 0 for r in range(1, 6)} | {"unrated": 0}
    for stored, domain, rating, corrected, n in cells:
        version, domain = names[stored], domain if domain is not None else NO_DOMAIN
        for t in (overall, by_version.setdefault(version, _tally()), by_cell.setdefault((version, domain), _tally()),
                  by_domain.setdefault(domain, _tally())):
            _add(t, rating, corrected, n)
        distribution["unrated" if rating is None else str(int(rating))] += n
    complained = sorted(((d, _done(t)) for d, t in by_domain.items()),
                        key=lambda kv: (-kv[1]["complaints"], -(kv[1]["complaints"] / max(kv[1]["rated"], 1)), kv[0]))
    order = {v: i for i, v in enumerate(versions)}
    return {"quarter": quarter_of(since), "since": since, "until": until, **_done(overall),
            "rating_distribution": distribution, "other_versions": others,
            "by_version": {v: _done(by_version[v]) for v in sorted(by_version, key=order.get)},
            "by_version_domain": [{"version": v, "domain": d, **_done(by_cell[(v, d)])}
                                  for v, d in sorted(by_cell, key=lambda k: (order[k[0]], k[1]))],
            "complaints_by_domain": [{"domain": d, **t, "complaint_rate": _rounded(t["complaints"] / t["rated"], 4)
                                      if t["rated"] else None} for d, t in complained]}


def domain_evidence(store: FeedbackStore, model: str, versions: list[str], quarter: str, domain: str,
                    limit: int = 10) -> dict:
    """The requests behind one domain's feedback numbers in a quarter (`clt analyze`): the
    ids of its complaints (effective rating <= NEGATIVE_MAX), lowest rated first, and its
    most common effective corrections, each with how often it was given and by which requests."""
    since, until = quarter_window(quarter)
    names = _stored_names(model, versions)
    if not names:
        return {"complaints": [], "corrections": []}
    marks = ", ".join("?" * len(names))
    where = (f"p.timestamp >= ? AND p.timestamp < ? AND p.model_version IN ({marks}) "
             f"AND {'p.domain IS NULL' if domain == NO_DOMAIN else 'p.domain = ?'}")
    args = (since, until, *names, *(() if domain == NO_DOMAIN else (domain,)))
    sql = (f"SELECT p.request_id, {EFFECTIVE_RATING}, {EFFECTIVE_CORRECTION} FROM predictions p {SOURCE_JOINS} "
           f"WHERE {where} ORDER BY p.timestamp, p.request_id")
    complaints, corrections = [], {}
    for request_id, rating, correction in store.conn.execute(sql, args):
        if rating is not None and rating <= NEGATIVE_MAX:
            complaints.append((rating, request_id))
        if correction is not None and correction.strip():
            corrections.setdefault(" ".join(correction.split()), []).append(request_id)
    common = sorted(corrections.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:limit]
    return {"complaints": [r for _, r in sorted(complaints)[:limit]],
            "corrections": [{"correction": c, "count": len(ids), "request_ids": ids[:limit]} for c, ids in common]}
