"""`clt feedback stats`: what the store holds, overall and by model version and domain,
and each model version's latency percentiles."""

from __future__ import annotations

import itertools

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
