"""What `clt feedback import` reads besides its own rows: other row shapes, CSV and Parquet,
`--map`, a default version and the timezone of naive timestamps.

Every row, whatever file it came from, is turned into the feedback row of docs/formats.md
before `records.py` checks it, so one set of rules judges them all. Three shapes are told
apart row by row (`shape_of`):

- ``feedback``: the toolkit's own row (`input`, `output`, `model_version`, ...);
- ``guide``: the feedback collector of the continual-learning guide: `prompt`, `response`,
  `rating`, `correction`, `timestamp` (naive, `datetime.now().isoformat()`) and the version
  in `metadata.model_version`; a row without an `id` gets one from its content, so
  importing it again is still a no-op;
- ``openai``: a chat-completions log, `{"request": {...}, "response": {...}}` or the two
  merged: the last user message in, `choices[0].message.content` out, `model`
  (`LINE@VERSION` as `clt serve` answers, or any name) and `created` (epoch seconds).

CSV and Parquet rows are tables: a column name with dots (`user_feedback.rating`) is a
nested key, a `metadata` cell may hold a JSON object, and `rating`, `thumbs`,
`correction`, `notes` columns are feedback. `export_table` writes what a store holds in
that layout, so a table round-trips.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cl_toolkit.core.errors import BadInput, Problem
from cl_toolkit.core.files import atomic_open
from cl_toolkit.feedback.records import COLUMN_KEYS, RecordError

FEEDBACK_FIELDS = ("rating", "thumbs", "correction", "notes")  # what a person said
STORED_FEEDBACK = ("source", *FEEDBACK_FIELDS, "timestamp")  # the feedback table's order
REQUIRED = ("request_id", "input", "output", "model_version")
# the names other logs use for a required field: a missing field's error suggests the --map
ALIASES = {
    "request_id": ("request_id", "id", "interaction_id", "requestId", "uuid", "log_id"),
    "input": ("input", "prompt", "question", "query", "user_message", "instruction"),
    "output": ("output", "response", "answer", "completion", "prediction", "content"),
    "model_version": ("model_version", "version", "modelVersion", "model"),
}
MAP_KEYS = frozenset({*REQUIRED, "timestamp", *COLUMN_KEYS, *FEEDBACK_FIELDS})
TABLE_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_INT = re.compile(r"[+-]?\d+\Z")
_MISSING = object()


class NaiveTimestamp(RecordError):
    """A timestamp without an offset and no --timezone to read it in: stops the import."""


@dataclass
class ImportOptions:
    """How rows that are not the toolkit's own are read (all optional)."""

    maps: dict[str, tuple[str, ...]] = field(default_factory=dict)  # KEY -> PATH parts
    model_version: str | None = None  # for rows that have none
    timezone: str | None = None  # IANA name naive timestamps are read in

    def __post_init__(self):
        self._zone = zone(self.timezone) if self.timezone else None


@dataclass
class RowCounts:
    """What the conversion did, over every row."""

    shapes: dict = field(default_factory=dict)  # shape -> rows
    localized: int = 0  # rows with a naive timestamp read in --timezone
    defaulted_version: int = 0  # rows given --model-version


def zone(name: str) -> ZoneInfo:
    """An IANA timezone, or BadInput saying what is wrong."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadInput(f"--timezone {name!r} is not a timezone: give an IANA name such as "
                       "UTC, Europe/Berlin or America/New_York") from None


def parse_maps(specs) -> dict[str, tuple[str, ...]]:
    """--map KEY=PATH values as KEY -> path parts (`a.b.0.c` or `a.b[0].c`)."""
    maps, problems = {}, []
    for spec in specs or ():
        key, sep, path = spec.partition("=")
        key, path = key.strip(), path.strip()
        if not sep or not path or key not in MAP_KEYS:
            problems.append(Problem(file="--map", key=key or None, message=(
                f"{spec!r}: give KEY=PATH, KEY one of {', '.join(sorted(MAP_KEYS))}, PATH a "
                "dotted path into the row (e.g. model_version=meta.ver)")))
            continue
        maps[key] = tuple(p for p in re.split(r"\.|\[(\d+)\]", path) if p)
    if problems:
        raise BadInput(problems)
    return maps


def get_path(row, parts: tuple[str, ...]):
    """The value at a dotted path (list items by index), or _MISSING."""
    value = row
    for part in parts:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def shape_of(row: dict) -> str:
    """feedback, guide or openai: which kind of log a row is."""
    if "choices" in row or isinstance(row.get("response"), dict) or isinstance(row.get("request"), dict):
        return "openai"
    if "prompt" in row and "response" in row and "input" not in row:
        return "guide"
    return "feedback"


def _guide(row: dict) -> dict:
    meta = dict(row.get("metadata") or {}) if isinstance(row.get("metadata"), dict) else row.get("metadata")
    out = {k: v for k, v in row.items()
           if k not in ("prompt", "response", "id", "metadata", *FEEDBACK_FIELDS)}
    out["input"], out["output"] = row.get("prompt"), row.get("response")
    rid = row.get("id", row.get("interaction_id"))
    if rid is None:  # the content is the identity: importing the same log again adds nothing
        digest = hashlib.sha256(json.dumps([str(row.get("timestamp")), out["input"], out["output"]],
                                           ensure_ascii=False).encode("utf-8", "surrogatepass"))
        rid = f"guide-{digest.hexdigest()[:24]}"
    out["request_id"] = rid
    if isinstance(meta, dict) and "model_version" in meta and "model_version" not in row:
        out["model_version"] = meta.pop("model_version")
    if meta is not None:
        out["metadata"] = meta
    fb = {k: row[k] for k in FEEDBACK_FIELDS if row.get(k) is not None}
    if fb:
        out["user_feedback"] = fb
    return out


def _text_of(content):
    if isinstance(content, list):  # content parts: the text ones, joined
        texts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "\n".join(t for t in texts if isinstance(t, str)) or None
    return content


def _openai(row: dict) -> dict:
    req = row["request"] if isinstance(row.get("request"), dict) else row
    resp = row["response"] if isinstance(row.get("response"), dict) else row
    messages = req.get("messages") if isinstance(req.get("messages"), list) else []
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    output = get_path(resp, ("choices", "0", "message", "content"))
    model = resp.get("model", req.get("model"))
    line, at, version = model.rpartition("@") if isinstance(model, str) else ("", "", model)
    meta = dict(req["metadata"]) if isinstance(req.get("metadata"), dict) else {}
    if isinstance(row.get("metadata"), dict) and row is not req:
        meta.update(row["metadata"])
    if model is not None:
        meta["model"] = line if at else model
    if len(messages) > 1:  # as `clt serve` keeps it: the input is the last user turn
        meta["messages"] = messages
    if (finish := get_path(resp, ("choices", "0", "finish_reason"))) not in (_MISSING, None):
        meta["finish_reason"] = finish
    out = {"request_id": resp.get("id", row.get("request_id")),
           "timestamp": resp.get("created", row.get("timestamp")),
           "input": _text_of(users[-1].get("content")) if users else None,
           "output": None if output is _MISSING else _text_of(output),
           "model_version": version or None, "metadata": meta}
    if isinstance(row.get("user_feedback"), dict):
        out["user_feedback"] = row["user_feedback"]
    return {k: v for k, v in out.items() if v is not None}


SHAPES = {"feedback": lambda row: row, "guide": _guide, "openai": _openai}


def _localize(value, key: str, tz: ZoneInfo | None):
    """A naive ISO string or datetime as an aware ISO string in `tz`; others unchanged."""
    if isinstance(value, str):
        if value.endswith("Z"):  # the usual case, without parsing
            return value, False
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            return value, False  # records.py says what is wrong with it
    elif isinstance(value, datetime):
        dt = value
    else:
        return value, False
    if dt.tzinfo is not None:
        return value, False
    if tz is None:
        raise NaiveTimestamp(
            f"naive timestamp {str(value)!r} (no UTC offset): pass --timezone ZONE to say "
            "where it was logged (an IANA name such as UTC or Europe/Berlin)", key)
    return dt.replace(tzinfo=tz).isoformat(), True


def _hint(key: str, row: dict) -> str:
    found = [p for p in _paths(row) if p.rsplit(".", 1)[-1] in ALIASES[key] and p != key]
    fix = f"pass --map {key}={found[0]}" if found else f"pass --map {key}=PATH"
    if key == "model_version":
        fix += " (or --model-version V for rows that have none)"
    where = f"found `{found[0]}`" if found else f"keys here: {', '.join(sorted(row)) or 'none'}"
    return f"`{key}` missing; {where}: {fix}"


def _paths(value, prefix: str = "", depth: int = 0) -> Iterator[str]:
    if isinstance(value, dict) and depth < 4:
        for k, v in value.items():
            path = f"{prefix}{k}"
            yield path
            yield from _paths(v, path + ".", depth + 1)


def _coerce(value, key: str):
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


def to_feedback_row(row, opts: ImportOptions, counts: RowCounts, *, table: bool = False) -> dict:
    """Any row `clt feedback import` reads, as the feedback row; RecordError if it cannot be."""
    if not isinstance(row, dict):
        raise RecordError(f"a line must be a JSON object, got {type(row).__name__}")
    if table:
        row = table_row(row)
    original, mapped = row, {}
    if opts.maps:
        row, mapped = _take_mapped(row, opts.maps)
    shape = shape_of(row)
    counts.shapes[shape] = counts.shapes.get(shape, 0) + 1
    out = SHAPES[shape](row)
    if mapped:
        out = _put_mapped(dict(out), mapped)
    if out.get("model_version") is None and opts.model_version:
        out["model_version"] = opts.model_version
        counts.defaulted_version += 1
    for key in REQUIRED:
        if out.get(key) is None:
            raise RecordError(_hint(key, original), key)
    if "timestamp" in out:
        out["timestamp"], local = _localize(out["timestamp"], "timestamp", opts._zone)
        counts.localized += local
    fb = out.get("user_feedback")
    if isinstance(fb, dict) and "timestamp" in fb:
        fb["timestamp"], _ = _localize(fb["timestamp"], "user_feedback.timestamp", opts._zone)
    return out


def _take_mapped(row: dict, maps: dict) -> tuple[dict, dict]:
    """(the row without the values --map took, KEY -> value taken): a mapped field is
    stored once, in its column, not again in the metadata."""
    mapped = {}
    for key, parts in maps.items():
        value = get_path(row, parts)
        if value is _MISSING:
            continue
        mapped[key] = _coerce(value, key)
        row = _without(row, parts)
    return row, mapped


def _without(node, parts: tuple[str, ...]):
    """A copy of `node` without the dict leaf at `parts` (copies only along the path)."""
    if not isinstance(node, dict) or parts[0] not in node:
        return node
    out = dict(node)
    if len(parts) == 1:
        del out[parts[0]]
    else:
        out[parts[0]] = _without(node[parts[0]], parts[1:])
        if out[parts[0]] == {}:
            del out[parts[0]]
    return out


def _put_mapped(out: dict, mapped: dict) -> dict:
    fb = out.get("user_feedback")
    fb = dict(fb) if isinstance(fb, dict) else {} if fb is None else fb  # not an object: records says so
    for key, value in mapped.items():
        if key in FEEDBACK_FIELDS and isinstance(fb, dict):
            fb[key] = value
        elif key not in FEEDBACK_FIELDS:
            out[key] = value
    if fb:
        out["user_feedback"] = fb
    return out


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
            fb[key] = _coerce(fb[key], key)
    if fb:
        row["user_feedback"] = fb
    for key in COLUMN_KEYS:
        for holder in (row, row.get("metadata") if isinstance(row.get("metadata"), dict) else {}):
            if key in holder:
                holder[key] = _coerce(holder[key], key)
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


_STORE_ROWS = """SELECT p.request_id, p.timestamp, p.input, p.output, p.model_version, p.domain,
    p.confidence, p.latency_ms, p.quality_score, p.metadata,
    f.source, f.rating, f.thumbs, f.correction, f.notes, f.timestamp
FROM predictions p LEFT JOIN feedback f ON f.request_id = p.request_id
ORDER BY p.timestamp, p.request_id, f.source"""


def store_rows(store) -> Iterator[dict]:
    """Everything a feedback store holds, as feedback rows (one per feedback source)."""
    for r in store.conn.execute(_STORE_ROWS):
        meta = json.loads(r[9]) if r[9] else {}
        meta.update((k, v) for k, v in zip(COLUMN_KEYS, r[5:9], strict=True) if v is not None)
        row = dict(zip(("request_id", "timestamp", "input", "output", "model_version"), r[:5],
                       strict=True))
        if meta:
            row["metadata"] = meta
        if r[10] is not None:
            row["user_feedback"] = {k: v for k, v in zip(STORED_FEEDBACK,
                                                         r[10:16], strict=True) if v is not None}
        yield row


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
