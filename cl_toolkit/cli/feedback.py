"""`clt feedback ...`: thin commands over the store, import, extract, annotation, incident
review, quality scoring and pruning."""

from __future__ import annotations

import json
import sys
import time

import click

from cl_toolkit.cli.options import default_of, domain_option, json_option, window_options
from cl_toolkit.cli.output import emit, say
from cl_toolkit.core.errors import BadInput, Problem
from cl_toolkit.core.workspace import workspace_dir
from cl_toolkit.feedback import annotate, importer, review
from cl_toolkit.feedback.endpoint import Endpoint
from cl_toolkit.feedback.extract import FORMATS, extract, manifest_path
from cl_toolkit.feedback.import_formats import ImportOptions, parse_maps
from cl_toolkit.feedback.prune import prune
from cl_toolkit.feedback.schema import SOURCES
from cl_toolkit.feedback.scoring import SCORERS, score_store
from cl_toolkit.feedback.store import REDACT_ENV, open_store, redact_at_ingest_default
from cl_toolkit.feedback.summary import compute_stats, format_stats
from cl_toolkit.registry import open_registry
from cl_toolkit.registry.db import registry_target

SHOWN_PROBLEMS = 20
THUMBS = {"up": 1, "neutral": 0, "down": -1, "1": 1, "0": 0, "-1": -1}

def _fail_on(problems: list[Problem], what: str, total: int | None = None) -> None:
    """Exit 2 listing the first problems, once the good part is stored and reported."""
    if problems:
        shown = problems[:SHOWN_PROBLEMS]
        more = (total or len(problems)) - len(shown)
        tail = [Problem(file="", message=f"... and {more} more {what}")] if more else []
        raise BadInput(shown + tail)


class _Progress:
    """A line on stderr every few seconds of long work (short work prints nothing)."""

    EVERY_S = 3.0

    def __init__(self, noun: str):
        self.noun = noun
        self.start = self.last = time.monotonic()

    def __call__(self, done) -> None:
        now = time.monotonic()
        if now - self.last < self.EVERY_S:
            return
        self.last = now
        n = done if isinstance(done, int) else done.lines
        say(f"... {n:,} {self.noun} ({n / (now - self.start):,.0f}/s)")


@click.group()
def cli():
    """Production feedback in, training examples out (store: WORKSPACE/feedback.db, or
    --store-url / $CLT_FEEDBACK_URL)."""


@cli.command("import")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("--map", "maps", multiple=True, metavar="KEY=PATH",
              help="Take KEY (request_id, input, output, model_version, timestamp, domain, "
                   "rating, correction, ...) from a dotted PATH of each row, e.g. "
                   "model_version=meta.ver; repeatable.")
@click.option("--model-version", help="The version of rows that name none.")
@click.option("--timezone", metavar="ZONE",
              help="Read timestamps without a UTC offset in this IANA zone (UTC, Europe/Berlin); "
                   "without it such timestamps are refused.")
@click.option("--batch-size", default=importer.BATCH_SIZE, show_default=True, type=click.IntRange(1),
              help="Lines per transaction.")
@click.option("--max-line-bytes", default=importer.MAX_LINE_BYTES, show_default=True,
              type=click.IntRange(1), help="Longer lines are rejected.")
@click.option("--redact/--no-redact", default=None,
              help=f"Redact PII before it is stored (default: ${REDACT_ENV}, else off).")
@json_option()
def import_cmd(files, maps, model_version, timezone, batch_size, max_line_bytes, redact, as_json):
    """Import production logs, after replaying the serve writer's journal (no FILES: only the
    journal); idempotent. FILES are JSONL (.jsonl, .jsonl.gz such as a prune archive), CSV
    or Parquet; rows may be the toolkit's feedback rows, the guide's collector rows or OpenAI
    request/response logs (docs/formats.md). Exit 2 if any line was rejected."""
    redact = redact_at_ingest_default() if redact is None else redact
    options = ImportOptions(parse_maps(maps), model_version, timezone)
    known = _registry_versions()
    with open_store(redact=redact) as store:
        s = importer.import_files(store, files, batch_size=batch_size, max_line_bytes=max_line_bytes,
                                  progress=_Progress("lines"), options=options, known_versions=known)
    emit(s.as_dict(), as_json, _import_lines(s, files, redact))
    if s.journal and s.journal.problems:  # reported, not fatal: the rest of the journal is stored
        for p in s.journal.problems[:SHOWN_PROBLEMS]:
            say(f"warning: {p}")
    _fail_on(s.problems, "rejected lines (see the quarantine file)", s.rejected)


def _registry_versions() -> set[str] | None:
    """Every version the workspace's registry knows (as V and LINE@V); None without one."""
    if not registry_target().exists():
        return None
    with open_registry() as reg:
        return {v for rec in reg.versions() for v in (rec.version, f"{rec.model}@{rec.version}")}


def _import_lines(s: importer.ImportSummary, files, redact: bool) -> list[str]:
    j = s.journal
    lines = [f"journal: {j.lines:,} lines from {j.files} files replayed ({j.predictions_added:,} "
             f"predictions added, {j.feedback_added + j.feedback_updated:,} feedback stored; "
             f"{j.skipped:,} torn and {j.orphaned:,} orphaned lines quarantined)"] if j else []
    if files:
        lines += [
            f"files {s.files}, lines {s.lines:,} (blank {s.blank:,}, rejected {s.rejected:,}); rows "
            + ", ".join(f"{shape} {n:,}" for shape, n in sorted(s.shapes.items())),
            f"predictions: {s.predictions_added:,} added, {s.predictions_existing:,} already stored",
            f"feedback: {s.feedback_added:,} added, {s.feedback_updated:,} updated, "
            f"{s.feedback_unchanged:,} unchanged",
            f"timestamps: {s.localized:,} rows without a UTC offset read as {s.timezone}" if s.timezone
            else "timestamps: every one had a UTC offset (no --timezone needed)"]
        if s.model_version_default:
            lines.append(f"--model-version {s.model_version_default} given to {s.defaulted_version:,} rows")
        lines.append(_versions_line(s))
    lines += [f"redactions {s.redacted}"] if redact else []
    lines += [f"rejected lines copied to {s.quarantine} ({s.quarantined:,} new there)"] if s.rejected else []
    return lines + ([] if files or j else ["nothing to import: no FILES and no journal"])


def _versions_line(s: importer.ImportSummary) -> str:
    seen = ", ".join(f"{v} {n:,}" for v, n in sorted(s.versions.items())) or "none"
    if s.unknown_versions is None:
        return f"versions: {seen} (not checked: no registry in {workspace_dir()})"
    if not s.unknown_versions:
        return f"versions: {seen}, all in the registry"
    unknown = ", ".join(f"{v} ({n:,} rows)" for v, n in s.unknown_versions.items())
    return f"versions: {seen}; warning: unknown to the registry: {unknown}"


@cli.command("log")
@click.option("--request-id", required=True)
@click.option("--input", "input_", required=True, help="The prompt.")
@click.option("--output", required=True, help="The model's answer.")
@click.option("--model-version", required=True)
@click.option("--timestamp", help="ISO 8601 (default: now).")
@click.option("--domain")
@click.option("--confidence", type=float)
@click.option("--latency-ms", type=float)
@click.option("--quality-score", type=float)
@click.option("--metadata", help="A JSON object of other fields.")
def log_cmd(request_id, input_, output, model_version, metadata, **fields):
    """Log one prediction."""
    try:
        metadata = json.loads(metadata) if metadata else None
    except json.JSONDecodeError as e:
        raise BadInput(f"--metadata is not JSON: {e}") from None
    with open_store() as store:
        added = store.log_prediction(request_id, input_, output, model_version,
                                     metadata=metadata, **fields)
    click.echo(f"{'logged' if added else 'already stored'}: {request_id}")


@cli.command("rate")
@click.argument("request_id")
@click.option("--rating", type=click.IntRange(1, 5), help="1 (bad) to 5 (good).")
@click.option("--thumbs", type=click.Choice(list(THUMBS)), help="up, neutral or down.")
@click.option("--correction", help="The answer it should have given.")
@click.option("--notes")
@click.option("--source", type=click.Choice(SOURCES), default="user", show_default=True)
def rate_cmd(request_id, rating, thumbs, correction, notes, source):
    """Rate a stored prediction (replaces earlier feedback from the same source)."""
    with open_store() as store:
        outcome = store.add_feedback(request_id, rating=rating, correction=correction,
                                     thumbs=THUMBS.get(thumbs), notes=notes, source=source)
    click.echo(f"feedback {outcome}: {request_id} ({source})")


@cli.command("stats")
@json_option()
def stats_cmd(as_json):
    """Totals, feedback rate, mean rating and quality, by model version and domain."""
    with open_store() as store:
        s = compute_stats(store)
    emit(s, as_json, lambda: format_stats(s))


@cli.command("extract")
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default=default_of(extract, "fmt"), show_default=True)
@click.option("--min-rating", default=default_of(extract, "min_rating"), show_default=True, type=click.IntRange(1, 5),
              help="Keep answers rated at least this, as they are.")
@click.option("--max-bad-rating", default=default_of(extract, "max_bad_rating"), show_default=True, type=click.IntRange(1, 5),
              help="Train on the correction of answers rated at most this.")
@click.option("--min-quality", type=float, help="Drop predictions with a lower quality score.")
@window_options("Keep predictions")
@click.option("--model-version", "versions", multiple=True, help="Only these (repeatable).")
@domain_option()
@click.option("--redact/--no-redact", default=True, show_default=True, help="PII redaction.")
@click.option("--dedupe/--no-dedupe", default=True, show_default=True)
@click.option("--system", "system_prompt", help="A system message for every example.")
@click.option("--pseudo-label-min-confidence", type=click.FloatRange(0, 1),
              help="Also keep unrated answers at or above this model confidence (off by default).")
@click.option("--trust-api-corrections", is_flag=True,
              help="Also train on corrections posted to `clt serve`'s /v1/feedback that no expert "
                   "has reviewed (off: anyone holding an answer's feedback token can post one).")
@json_option()
def extract_cmd(out, fmt, versions, redact, as_json, **options):
    """Write training examples and OUT.manifest.json beside them (with every filter used:
    --domain hazmat makes one domain's training data)."""
    with open_store() as store:
        m = extract(store, out, fmt=fmt, model_versions=versions, redact_pii=redact,
                    progress=_Progress("predictions read"), **options)
    c = m["counts"]
    emit(m, as_json, [
        f"wrote {c['written']:,} examples ({fmt}) to {out}, sha256 {m['output']['sha256'][:16]}"
        + (f" (domains {', '.join(m['filters']['domains'])})" if m["filters"]["domains"] else ""),
        f"selected {c['selected']:,}: kept {c['kept_as_is']:,}, corrected {c['corrected']:,} "
        f"(+{c['corrected_by_expert']:,} by experts), duplicates {c['duplicates']:,}",
        f"dropped: bad without correction {c['bad_without_correction']:,}, neutral "
        f"{c['neutral']:,}, unrated {c['unrated']:,}, below quality {c['below_quality']:,}",
        f"redactions {m['redactions']}; manifest {manifest_path(out)}"]
        + ([f"unreviewed API corrections withheld: {m['api_corrections']['withheld']:,} "
            f"(--trust-api-corrections uses them)"] if m["api_corrections"]["withheld"] else [])
        + ([f"pseudo-labelled {m['pseudo_labels']['rows']:,} (confidence >= "
            f"{m['pseudo_labels']['min_confidence']})"] if "pseudo_labels" in m else []))


@cli.command("annotate-export")
@click.option("-n", "n", default=default_of(annotate.export_batch, "n"), show_default=True, type=click.IntRange(0))
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False))
@click.option("--errors", type=click.IntRange(0), help="From requests rated <= 2 (default 40%).")
@click.option("--low-confidence", type=click.IntRange(0), help="Below the threshold (default 30%).")
@click.option("--confidence-threshold", default=default_of(annotate.sample, "confidence_threshold"), show_default=True,
              type=float)
@click.option("--seed", default=default_of(annotate.sample, "seed"), show_default=True, type=int)
@click.option("--resample", is_flag=True, help="Allow requests already sent out or annotated.")
@domain_option("Sample only predictions of this domain (repeatable: any of them); a domain "
               "the store lacks is an error naming those it holds.")
@click.option("--batch", help="A name for the batch (default: OUT@time).")
@json_option()
def annotate_export_cmd(out, as_json, **options):
    """Sample requests by strata into a CSV for expert annotation, with OUT.manifest.json
    beside it (the batch, the filters, the rows per stratum, the CSV's SHA-256)."""
    with open_store() as store:
        r = annotate.export_batch(store, out, **options)
    emit(r, as_json, [f"wrote {r['rows']} requests to {out} (batch {r['batch']}"
                      + (f", domains {', '.join(r['domains'])}" if r["domains"] else "") + "): "
                       + ", ".join(f"{k} {v}" for k, v in r["by_stratum"].items())])


@cli.command("annotate-import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@json_option()
def annotate_import_cmd(file, as_json):
    """Store an annotated CSV's expert ratings and corrections (source expert)."""
    with open_store() as store:
        r = annotate.import_batch(store, file)
    emit({**r, "problems": [str(p) for p in r["problems"]]}, as_json, [
        f"{r['annotated']} annotated ({r['added']} added, {r['updated']} updated, "
        f"{r['unchanged']} unchanged), {r['blank']} blank, {r['rejected']} rejected"])
    _fail_on(r["problems"], "rejected rows")


@cli.command("review")
@click.argument("incident")
@window_options()
@click.option("--tag", "tags", multiple=True,
              help="KEY=VALUE (a metadata key or column) or TAG (in metadata.tags); repeatable.")
@click.option("--ids", type=click.Path(exists=True, dir_okay=False),
              help="A file of request ids, one a line.")
@click.option("--answers", type=click.Path(exists=True, dir_okay=False),
              help="Take the answers from a CSV or YAML file instead of asking.")
@click.option("--reviewer", default=review.default_reviewer, help="Recorded with each answer.")
@json_option()
def review_cmd(incident, since, until, tags, ids, answers, reviewer, as_json):
    """Review an incident's predictions: rating, what happened, what should have been
    recommended (stored as source incident). Resumable: run it again to continue."""
    with open_store() as store:
        wanted = review.Selection(since, until, tags, review.read_ids(ids) if ids else None)
        r = review.run_review(store, incident, wanted, answers=answers, interactive=sys.stdin.isatty(),
                              ask=review.terminal_input, say=lambda text: click.echo(text, err=as_json), reviewer=reviewer)
    problems = r.pop("problems", [])
    if answers or as_json:  # a walk has already said how far it got
        emit({**r, "problems": [str(p) for p in problems]}, as_json,
             [", ".join(f"{k} {v}" for k, v in r.items() if k != "incident")])
    _fail_on(problems, "rejected answers")


@cli.command("score")
@click.option("--scorer", type=click.Choice(list(SCORERS)), default=default_of(score_store, "scorer"), show_default=True)
@window_options()
@click.option("--model-version", "model_versions", multiple=True, help="Only these (repeatable).")
@click.option("--rescore", is_flag=True, help="Score again what already has a score.")
@click.option("--base-url", help="Judge: OpenAI-compatible base URL (http://HOST:PORT/v1).")
@click.option("--model", help="Judge: the model name.")
@click.option("--api-key-env", default=default_of(Endpoint, "api_key_env"), show_default=True,
              help="Judge: environment variable holding the API key (never stored).")
@json_option()
def score_cmd(scorer, base_url, model, api_key_env, as_json, **options):
    """Fill quality_score with a scorer (by default only unscored predictions)."""
    endpoint = Endpoint(base_url, model or "", api_key_env=api_key_env) if base_url else None
    with open_store() as store:
        r = score_store(store, scorer, endpoint=endpoint, progress=_Progress("predictions scored"),
                        **options)
    emit(r, as_json, [f"{scorer}: scored {r['scored']:,} of {r['selected']:,} "
                      f"(unscored {r['unscored']:,}), mean {r['mean_score']}, flags {r['flags']}"])


@cli.command("prune")
@click.option("--older-than", required=True, help="Age such as 365d, 12w or 48h.")
@click.option("--archive", required=True, type=click.Path(dir_okay=False),
              help="The gzip JSONL archive to write (FILE.jsonl.gz; importable).")
@click.option("--dry-run", is_flag=True, help="Only count what would go.")
@json_option()
def prune_cmd(older_than, archive, dry_run, as_json):
    """Move old predictions and their feedback to a verified archive, then VACUUM."""
    with open_store() as store:
        r = prune(store, older_than, archive, dry_run=dry_run, progress=_Progress("lines archived"))
    verb = "would prune" if dry_run else "pruned"
    emit(r, as_json, [f"{verb} {r['predictions']:,} predictions and {r['feedback']:,} feedback "
                      f"rows older than {r['cutoff']}"]
         + ([f"archive {r['archive']} ({r['archive_bytes']:,} bytes, sha256 "
             f"{r['archive_sha256'][:16]}); store {r['db_bytes_before']:,} -> "
             f"{r['db_bytes_after']:,} bytes"] if r["archive"] else []))
