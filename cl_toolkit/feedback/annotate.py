"""Expert annotation batches: sample requests into a CSV, read the expert's verdicts back.

Sampling is stratified and seeded: *errors* (a user rated it <= 2 or thumbs down), *low
confidence* (model confidence below a threshold) and *random* (the rest). A request goes
out in at most one batch (recorded in ``annotation_samples``) and is never sampled once an
expert has annotated it, unless `resample` is asked for. The CSV is UTF-8 with a BOM (so
spreadsheet programs read non-ASCII text) and standard quoting, so commas, quotes and
newlines in the text survive the round trip.

The CSV is spreadsheet-safe: experts open it in a spreadsheet program, which would run a
cell such as ``=HYPERLINK(...)`` as a formula. Every exported cell that begins with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'`` (the OWASP way; plain
numbers such as ``-1`` are left alone, a spreadsheet reads them as numbers anyway), and so
does every cell that genuinely begins with ``'``; reading the file back drops one leading
``'`` from every cell, so the round trip is exact.

`domains` restricts every stratum to predictions of those domains (a batch for the weak
ones); a domain the store lacks is an error naming those it holds. Beside the CSV,
OUT.manifest.json records the batch, the filters and strata asked for, the rows per
stratum and the CSV's SHA-256.
"""

from __future__ import annotations

import csv
import io
import random
import re
from pathlib import Path

from cl_toolkit.core.errors import BadInput, Problem
from cl_toolkit.core.files import atomic_write_bytes, atomic_write_json, sha256_bytes
from cl_toolkit.feedback.domains import check_store_domains, domain_clause
from cl_toolkit.feedback.extract import manifest_path
from cl_toolkit.feedback.ratings import NEGATIVE_MAX
from cl_toolkit.feedback.records import now_timestamp
from cl_toolkit.feedback.store import FeedbackStore

COLUMNS = ("request_id", "stratum", "timestamp", "model_version", "domain", "confidence",
           "input", "output", "user_rating", "user_thumbs", "user_correction",
           "expert_rating", "expert_correction", "expert_notes")
MANIFEST_KIND = "annotation-export"
STRATA = ("errors", "low_confidence", "random")
DEFAULT_SHARES = {"errors": 0.4, "low_confidence": 0.3}
_CANDIDATES = f"""SELECT p.request_id,
    EXISTS (SELECT 1 FROM feedback f WHERE f.request_id = p.request_id
            AND f.source != 'expert' AND (f.rating <= {NEGATIVE_MAX} OR f.thumbs = -1)),
    p.confidence < ?
FROM predictions p
WHERE NOT EXISTS (SELECT 1 FROM feedback f WHERE f.request_id = p.request_id
                  AND f.source = 'expert') {{extra}}
ORDER BY p.request_id"""
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?\Z")
_NOT_SAMPLED = "AND NOT EXISTS (SELECT 1 FROM annotation_samples s WHERE s.request_id = p.request_id)"
# the user's feedback: logged by the application (source user) or posted to `clt serve`'s
# /v1/feedback (source api, whose corrections wait for this review before training uses them)
_DETAILS = """SELECT p.request_id, p.timestamp, p.model_version, p.domain, p.confidence, p.input,
    p.output, CASE WHEN u.request_id IS NULL THEN a.rating ELSE u.rating END,
    CASE WHEN u.request_id IS NULL THEN a.thumbs ELSE u.thumbs END,
    CASE WHEN u.request_id IS NULL THEN a.correction ELSE u.correction END FROM predictions p
LEFT JOIN feedback u ON u.request_id = p.request_id AND u.source = 'user'
LEFT JOIN feedback a ON a.request_id = p.request_id AND a.source = 'api'
WHERE p.request_id = ?"""


def _targets(n: int, errors: int | None, low_confidence: int | None) -> dict[str, int]:
    errors = round(n * DEFAULT_SHARES["errors"]) if errors is None else errors
    low = round(n * DEFAULT_SHARES["low_confidence"]) if low_confidence is None else low_confidence
    if min(n, errors, low) < 0 or errors + low > n:
        raise BadInput(f"stratum counts errors={errors} + low_confidence={low} exceed n={n}")
    return {"errors": errors, "low_confidence": low, "random": n - errors - low}


def _pools(store: FeedbackStore, threshold: float, resample: bool,
           domains: tuple[str, ...] = ()) -> dict[str, list[str]]:
    pools: dict[str, list[str]] = {s: [] for s in STRATA}
    clause, params = domain_clause(domains)
    extra = ("" if resample else _NOT_SAMPLED) + (f" AND {clause}" if clause else "")
    sql = _CANDIDATES.format(extra=extra)
    for request_id, is_error, low in store.conn.execute(sql, (threshold, *params)):
        pools["errors" if is_error else "low_confidence" if low else "random"].append(request_id)
    return pools


def sample(store: FeedbackStore, n: int, *, errors: int | None = None,
           low_confidence: int | None = None, confidence_threshold: float = 0.5,
           seed: int = 0, resample: bool = False,
           domains: tuple[str, ...] | list[str] = ()) -> list[tuple[str, str]]:
    """[(request_id, stratum)]: a stratum short of candidates hands its share to random.
    `domains` (checked against the store) restricts the candidates to those domains."""
    domains = check_store_domains(store, domains)
    targets, pools = _targets(n, errors, low_confidence), _pools(store, confidence_threshold,
                                                                  resample, domains)
    rng, chosen = random.Random(seed), []
    for stratum in ("errors", "low_confidence"):
        k = min(targets[stratum], len(pools[stratum]))
        picked = rng.sample(pools[stratum], k)
        chosen += [(rid, stratum) for rid in sorted(picked)]
        targets["random"] += targets[stratum] - k
        pools["random"] += sorted(set(pools[stratum]) - set(picked))
    rest = sorted(pools["random"])
    picked = rng.sample(rest, min(targets["random"], len(rest)))
    return chosen + [(rid, "random") for rid in sorted(picked)]


def escape_cell(value) -> str:
    """A cell as written to the CSV: text a spreadsheet would run as a formula, or that
    begins with ``'``, gets a leading ``'``; None becomes empty."""
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_START) and not _NUMBER.match(text):
        return "'" + text
    return text


def unescape_cell(text: str | None) -> str | None:
    """The inverse of escape_cell: one leading ``'`` is dropped."""
    return text[1:] if text and text.startswith("'") else text


def _csv_bytes(store: FeedbackStore, chosen: list[tuple[str, str]]) -> bytes:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(COLUMNS)
    for request_id, stratum in chosen:
        row = store.conn.execute(_DETAILS, (request_id,)).fetchone()
        cells = [row[0], stratum, *row[1:]] + ["", "", ""]
        writer.writerow(escape_cell(c) for c in cells)
    return buf.getvalue().encode("utf-8-sig")


def export_batch(store: FeedbackStore, out_path: str | Path, n: int = 50, *,
                 batch: str | None = None, **sampling) -> dict:
    """Sample `n` requests into a CSV for experts and record them as sampled.

    `sampling` takes sample()'s keywords (errors, low_confidence, confidence_threshold,
    seed, resample, domains). Writes OUT.manifest.json beside the CSV.
    Returns {"path", "batch", "rows", "by_stratum", "domains", "manifest"}.
    """
    out_path = Path(out_path)
    sampling["domains"] = check_store_domains(store, sampling.get("domains"))
    chosen = sample(store, n, **sampling)
    data = _csv_bytes(store, chosen)
    atomic_write_bytes(out_path, data)
    batch = batch or f"{out_path.stem}@{now_timestamp()}"
    with store.transaction() as conn:
        conn.executemany(
            "INSERT INTO annotation_samples (request_id, batch, stratum, sampled_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (request_id) DO UPDATE SET batch = excluded.batch, stratum = excluded.stratum, "
            "sampled_at = excluded.sampled_at", [(rid, batch, s, now_timestamp()) for rid, s in chosen])
    by_stratum = {s: sum(1 for _, st in chosen if st == s) for s in STRATA}
    manifest = atomic_write_json(manifest_path(out_path), {
        "kind": MANIFEST_KIND, "batch": batch, "created_at": now_timestamp(),
        "filters": {"n": n, **{k: (list(v) if k == "domains" else v) for k, v in sorted(sampling.items())}},
        "by_stratum": by_stratum,
        "output": {"path": out_path.name, "rows": len(chosen), "bytes": len(data),
                   "sha256": sha256_bytes(data)}})
    return {"path": str(out_path), "batch": batch, "rows": len(chosen), "by_stratum": by_stratum,
            "domains": list(sampling["domains"]), "manifest": str(manifest)}


def read_rows(path: str | Path) -> list[tuple[int, dict]]:
    """[(line the record starts on, row)] of an annotation CSV, every cell unescaped;
    BadInput when the file is not readable CSV or lacks the columns import needs."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise BadInput([Problem(file=str(path), message=f"not UTF-8 (byte {e.start + 1}); "
                                "save it as 'CSV UTF-8'")]) from None
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 26))  # texts can exceed 128 KiB
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = {"request_id", "expert_rating", "expert_correction"} - set(reader.fieldnames or ())
    if missing:
        raise BadInput([Problem(file=str(path), line=1,
                                message=f"missing columns: {', '.join(sorted(missing))}")])
    rows, start = [], 2
    try:
        for row in reader:
            rows.append((start, {k: v if k is None else unescape_cell(v) for k, v in row.items()}))
            start = reader.line_num + 1
    except csv.Error as e:
        raise BadInput([Problem(file=str(path), line=start, message=f"bad CSV: {e}")]) from None
    return rows


def _verdict(store: FeedbackStore, row: dict, now: str) -> tuple | None:
    """A feedback row with source expert, None when left blank; ValueError if wrong."""
    rating_text = (row.get("expert_rating") or "").strip()
    correction = row.get("expert_correction") or None
    notes = row.get("expert_notes") or None
    if correction is not None and not correction.strip():
        correction = None
    if not (rating_text or correction or notes):
        return None
    if rating_text and rating_text not in {"1", "2", "3", "4", "5"}:
        raise ValueError(f"expert_rating {rating_text!r} is not a whole number 1-5")
    request_id = (row.get("request_id") or "").strip()
    if not store.has_prediction(request_id):
        raise ValueError(f"unknown request_id {request_id!r}")
    rating = int(rating_text) if rating_text else None
    return (request_id, "expert", rating, None, correction, notes, now)


def import_batch(store: FeedbackStore, path: str | Path) -> dict:
    """Store the expert ratings and corrections of an annotated CSV (source expert).

    Blank rows are skipped; bad rows are listed in "problems" and the rest is stored, in
    one transaction. Returns the counts.
    """
    path, now = Path(path), now_timestamp()
    verdicts, problems, blank = [], [], 0
    for line, row in read_rows(path):
        try:
            verdict = _verdict(store, row, now)
        except ValueError as e:
            problems.append(Problem(file=str(path), line=line, message=str(e)))
            continue
        blank += verdict is None
        if verdict:
            verdicts.append(verdict)
    with store.transaction():
        added, updated = store.upsert_feedback(verdicts)
    return {"rows": len(verdicts) + blank + len(problems), "annotated": len(verdicts),
            "blank": blank, "added": added, "updated": updated,
            "unchanged": len(verdicts) - added - updated, "rejected": len(problems),
            "problems": problems}
