"""CSV and Parquet tables of feedback rows, read for `clt feedback import` and written by
`export_table`.

A table is flat: a column name with dots (`user_feedback.rating`, `metadata.station`) is a
nested key, a `metadata` cell may hold a JSON object, `rating`, `thumbs`, `correction` and
`notes` columns are the feedback, and an empty cell is a missing value. CSV has only text, so
the numeric fields are read from it. `export_table(store_rows(store), path)` writes what a
store holds in this layout; importing it into an empty store gives the same rows.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

from cl_toolkit.core.errors import BadInput, Problem
from cl_toolkit.core.files import atomic_open
from cl_toolkit.feedback.prune import FEEDBACK_KEYS, JOINED_ORDER, JOINED_ROWS, import_row
from cl_toolkit.feedback.records import COLUMN_KEYS, RecordError

FEEDBACK_FIELDS = ("rating", "thumbs", "correction", "notes")  # what a person said
STORED_FEEDBACK = FEEDBACK_KEYS  # the feedback table's order: source, what a person said, when
TABLE_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_INT = re.compile(r"[+-]?\d+\Z")


def coerce(value, key: str):
    """A table cell's text as the number a numeric field needs (CSV has only text)."""
    if not isinstance(value, str):
        return value
    if key in ("rating", "thumbs") and _INT.match(value.strip()):
        return int(value)
    if key in ("confidence", "latency_ms", "quality_score"):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def table_row(cells: dict) -> dict:
    """A CSV or Parquet row (flat columns) as a nested row: empty cells dropped, dotted names
    nested, a JSON `metadata` cell parsed, feedback columns under user_feedback, numbers typed."""
    row: dict = {}
    for name, value in cells.items():
        if value is None or value == "" or name is None or name.startswith("__index_level_"):
            continue
        *parents, leaf = name.split(".")
        node = row
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise RecordError(f"column {name!r} nests under a value", name)
        node[leaf] = value
    if isinstance(row.get("metadata"), str):
        try:
            row["metadata"] = json.loads(row["metadata"])
        except json.JSONDecodeError as e:
            raise RecordError(f"not a JSON object: {e.msg} (column {e.colno})", "metadata") from None
    fb = row.get("user_feedback") if isinstance(row.get("user_feedback"), dict) else {}
    for key in FEEDBACK_FIELDS:
        if key in row:
            fb[key] = row.pop(key)
    for key in ("rating", "thumbs"):
        if key in fb:
            fb[key] = coerce(fb[key], key)
    if fb:
        row["user_feedback"] = fb
    for key in COLUMN_KEYS:
        for holder in (row, row.get("metadata") if isinstance(row.get("metadata"), dict) else {}):
            if key in holder:
                holder[key] = coerce(holder[key], key)
    return row


def file_format(path: Path) -> str:
    """jsonl, csv or parquet, from the file's name (a .gz suffix is read through gzip)."""
    name = path.name.lower().removesuffix(".gz")
    return TABLE_SUFFIXES.get(Path(name).suffix, "jsonl")


def read_table(path: Path) -> Iterator[tuple[int, dict]]:
    """(line or row number, cells) of a CSV (line of the row's start) or Parquet (row) file."""
    if file_format(path) == "parquet":
        yield from _read_parquet(path)
        return
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        try:
            if reader.fieldnames is None:  # reads the header now, so line_num counts from it
                return
        except (csv.Error, UnicodeDecodeError) as e:
            raise BadInput([Problem(file=str(path), line=1, message=f"not readable CSV ({e})")]) from None
        while True:
            start = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as e:
                raise BadInput([Problem(file=str(path), line=start, message=f"not readable CSV ({e})")]) from None
            if None in cells:
                raise BadInput([Problem(file=str(path), line=start, message=(
                    f"{len(cells[None])} more cells than the header's {len(reader.fieldnames)} columns"))])
            yield start, cells


def _read_parquet(path: Path) -> Iterator[tuple[int, dict]]:
    import pyarrow.parquet as pq  # only for Parquet files: pyarrow takes a while to import

    try:
        pf = pq.ParquetFile(path)
        number = 0
        for batch in pf.iter_batches(batch_size=10_000):
            for cells in batch.to_pylist():
                number += 1
                yield number, cells
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise BadInput([Problem(file=str(path), message=f"not a readable Parquet file ({e})")]) from None


TABLE_COLUMNS = ("request_id", "timestamp", "input", "output", "model_version", *COLUMN_KEYS,
                 "metadata", *(f"user_feedback.{k}" for k in STORED_FEEDBACK))


def store_rows(store) -> Iterator[dict]:
    """Everything a feedback store holds, as feedback rows (one per feedback source): the
    rows `clt feedback prune --archive` writes, for the whole store."""
    for r in store.conn.execute(JOINED_ROWS + JOINED_ORDER):
        yield import_row(r)


def _table_cells(row: dict) -> dict:
    meta = dict(row.get("metadata") or {})
    cells = {k: row.get(k) for k in TABLE_COLUMNS[:5]}
    cells.update((k, meta.pop(k, None)) for k in COLUMN_KEYS)
    cells["metadata"] = json.dumps(meta, sort_keys=True, ensure_ascii=False) if meta else None
    fb = row.get("user_feedback") or {}
    cells.update((f"user_feedback.{k}", fb.get(k)) for k in STORED_FEEDBACK)
    return cells


def export_table(rows, path: str | Path) -> int:
    """Feedback rows (the import format, e.g. `store_rows(store)`) as a CSV or
    Parquet table `clt feedback import` reads back as they are; written atomically."""
    path = Path(path)
    cells = [_table_cells(r) for r in rows]
    if file_format(path) == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        types = {"confidence": pa.float64(), "latency_ms": pa.float64(), "quality_score": pa.float64(),
                 "user_feedback.rating": pa.int64(), "user_feedback.thumbs": pa.int64()}
        schema = pa.schema([(c, types.get(c, pa.string())) for c in TABLE_COLUMNS])
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(cells, schema=schema), buf)
        with atomic_open(path, "wb") as f:
            f.write(buf.getvalue())
    else:
        with atomic_open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, TABLE_COLUMNS)
            writer.writeheader()
            writer.writerows({k: "" if v is None else repr(v) if isinstance(v, float) else v
                              for k, v in c.items()} for c in cells)
    return len(cells)
