"""Benchmark the feedback store on PostgreSQL beside SQLite: bulk import and extract, each
against its floor measured in the same run.

    python benchmarks/bench_pg.py [--rows 1000000] [--pg-url postgresql://...] [--seed 0]

The floor of an import is what no importer can beat: reading and parsing the same JSONL
(json.loads of every line, the prediction and feedback tuples built, nothing checked) plus
the driver's raw bulk insert of those tuples into tables with the same columns, keys and
foreign key (COPY on PostgreSQL, one prepared INSERT on SQLite), in the importer's batches. The floor of an extract is a SELECT of the same rows streamed to JSONL as
chat examples. The target is <= 3x the floor for each (issue #20). Without --pg-url a
throwaway cluster is started with initdb + pg_ctl (tests/pg_support.py); with neither the
server binaries nor a URL, the PostgreSQL half is skipped and says why.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # run from a checkout; the cluster helper

from cl_toolkit.core import dbbackend  # noqa: E402
from cl_toolkit.feedback.extract import extract  # noqa: E402
from cl_toolkit.feedback.importer import import_files  # noqa: E402
from cl_toolkit.feedback.schema import MIGRATIONS  # noqa: E402
from cl_toolkit.feedback.store import FEEDBACK_COLUMNS, PREDICTION_COLUMNS, FeedbackStore  # noqa: E402
from cl_toolkit.feedback.synth import generate_rows, write_jsonl  # noqa: E402

TARGET_RATIO = 3.0
CHUNK = 20_000


def _wall(fn, *args, **kwargs) -> tuple[float, object]:
    t = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - t, result


def _parse(log: Path) -> tuple[list[tuple], list[tuple]]:
    """The floor's reading and parsing: every line as the prediction and feedback tuples the
    store keeps (no checks, no normalising)."""
    predictions, feedback = [], []
    with open(log, "rb") as f:
        for line in f:
            r = json.loads(line)
            meta = r.get("metadata") or {}
            predictions.append((r["request_id"], r.get("timestamp"), r["input"], r["output"], r["model_version"],
                                meta.get("domain"), meta.get("confidence"), meta.get("latency_ms"), None, None))
            fb = r.get("user_feedback")
            if fb:
                feedback.append((r["request_id"], "user", fb.get("rating"), fb.get("thumbs"),
                                 fb.get("correction"), fb.get("notes"), r.get("timestamp")))
    return predictions, feedback


def _floor_tables(conn) -> None:
    """Bare copies of `predictions` and `feedback` (same columns, keys, checks and foreign
    key), for the raw insert."""
    ddl = [MIGRATIONS[1][0].replace("CREATE TABLE predictions", "CREATE TABLE floor_predictions"),
           MIGRATIONS[4][0].replace("CREATE TABLE feedback_v4", "CREATE TABLE floor_feedback")
                           .replace("REFERENCES predictions", "REFERENCES floor_predictions")]
    with dbbackend.transaction(conn):
        for statement in ddl:
            for sql in dbbackend.pg_ddl(statement) if dbbackend.is_postgres(conn) else [statement]:
                conn.execute(sql)


def _raw_insert(conn, parsed: tuple[list[tuple], list[tuple]]) -> None:
    predictions, feedback = parsed
    for start in range(0, len(predictions), CHUNK):  # one transaction per chunk, as the importer
        with dbbackend.transaction(conn):
            dbbackend.bulk_insert(conn, "floor_predictions", PREDICTION_COLUMNS, predictions[start:start + CHUNK])
            dbbackend.bulk_insert(conn, "floor_feedback", FEEDBACK_COLUMNS, feedback[start:start + CHUNK])


def _select_to_jsonl(conn, out: Path) -> int:
    """The extract floor: the rows in extract's order, straight to chat JSONL."""
    n = 0
    with open(out, "w", encoding="utf-8") as f:
        with dbbackend.transaction(conn):
            cur = conn.execute("SELECT input, output FROM predictions ORDER BY timestamp, request_id")
            while chunk := cur.fetchmany(CHUNK):
                for q, a in chunk:
                    f.write(json.dumps({"messages": [{"role": "user", "content": q},
                                                     {"role": "assistant", "content": a}]},
                                       ensure_ascii=False) + "\n")
                n += len(chunk)
    return n


def bench_backend(target: str, log: Path, tmp: Path, rows: int) -> dict:
    """Import and extract through the toolkit, then the two floors, on one database."""
    with FeedbackStore(target, workspace=tmp) as store:
        import_s, summary = _wall(import_files, store, [log], replay_journal=False)
        assert summary.predictions_added == rows, summary
        extract_s, manifest = _wall(extract, store, tmp / "train.jsonl")
        parse_s, parsed = _wall(_parse, log)
        _floor_tables(store.conn)
        insert_s, _ = _wall(_raw_insert, store.conn, parsed)
        select_s, selected = _wall(_select_to_jsonl, store.conn, tmp / "floor.jsonl")
    assert selected == rows
    return {"import_s": import_s, "import_floor_s": parse_s + insert_s, "parse_s": parse_s,
            "insert_s": insert_s, "extract_s": extract_s, "extract_floor_s": select_s,
            "written": manifest["counts"]["written"]}


def _table(rows: list[tuple]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report(rows: int, results: dict[str, dict]) -> tuple[str, bool]:
    """The table, and whether every ratio met the target (decided on the printed figures)."""
    out = [("backend", "step", "toolkit", "rows/s", "floor", "floor rows/s", "ratio", "target", "result")]
    ok = True
    for backend, r in results.items():
        for step in ("import", "extract"):
            s, floor = round(r[f"{step}_s"], 3), round(r[f"{step}_floor_s"], 3)
            ratio = round(s / floor, 2)
            ok &= ratio <= TARGET_RATIO
            out.append((backend, f"{step} {rows:,}", f"{s:.3f} s", f"{rows / s:,.0f}", f"{floor:.3f} s",
                        f"{rows / floor:,.0f}", f"{ratio:.2f}x", f"<= {TARGET_RATIO:.1f}x",
                        "PASS" if ratio <= TARGET_RATIO else "FAIL"))
    return _table(out), ok


def _postgres(args, stack) -> tuple[str | None, str | None]:
    """(URL, None) of an empty database to use, or (None, why not)."""
    if args.pg_url:
        return args.pg_url, None
    from pg_support import Cluster, find_bin_dir, why_unavailable

    reason = why_unavailable()
    if reason:
        return None, reason
    cluster = Cluster(find_bin_dir()).start()
    stack.append(cluster.stop)
    return cluster.database(), None


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table; exit 1 when a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pg-url", help="an empty PostgreSQL database (default: a throwaway cluster)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cleanup: list = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench_pg.") as tmp:
            tmp = Path(tmp)
            log = tmp / "bulk.jsonl"
            write_jsonl(log, generate_rows(args.rows, seed=args.seed, duplicate_rate=0.0))
            results = {"sqlite": bench_backend(str(tmp / "sqlite" / "feedback.db"), log, tmp, args.rows)}
            url, why = _postgres(args, cleanup)
            if url:
                results["postgresql"] = bench_backend(url, log, tmp, args.rows)
    finally:
        for stop in cleanup:
            stop()
    table, ok = report(args.rows, results)
    cores = os.cpu_count() or 1
    print(f"feedback store on PostgreSQL beside SQLite (seed {args.seed})\n{table}\n"
          f"load average {os.getloadavg()[0]:.1f} on {cores} cores")
    if why:
        print(f"postgresql: {why}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
