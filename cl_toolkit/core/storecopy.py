"""Copying a store's tables from one database to another and proving the copy: the rows
of each table in key order, counted and hashed on both sides (`clt store migrate`).

The hash of a table is the SHA-256 of its rows, one JSON array per line in column order,
read in primary-key order. Both backends order text by bytes (PostgreSQL's columns are
COLLATE "C") and give 8-byte floats, so the same rows hash the same on either.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from cl_toolkit.core import dbbackend
from cl_toolkit.core.errors import BadInput, CltError

CHUNK_ROWS = 5000


@dataclass(frozen=True)
class TableSummary:
    rows: int
    sha256: str


def _rows(conn, table: str, columns: Sequence[str], key: Sequence[str]) -> Iterator[tuple]:
    cur = conn.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {', '.join(key)}")
    while chunk := cur.fetchmany(CHUNK_ROWS):
        yield from (tuple(r) for r in chunk)


def summarise(conn, table: str, columns: Sequence[str], key: Sequence[str]) -> TableSummary:
    """Rows and content hash of one table."""
    digest, n = hashlib.sha256(), 0
    for row in _rows(conn, table, columns, key):
        digest.update(json.dumps(list(row), ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
        n += 1
    return TableSummary(n, digest.hexdigest())


def summaries(conn, tables: Mapping[str, Sequence[str]]) -> dict[str, TableSummary]:
    """Every table's TableSummary ({table: primary key columns} in copy order)."""
    return {t: summarise(conn, t, dbbackend.table_columns(conn, t), key) for t, key in tables.items()}


def copy_tables(source, dest, tables: Mapping[str, Sequence[str]], *, what: str) -> dict[str, TableSummary]:
    """Copy every table of `tables` from `source` into the empty `dest` (both migrated to
    the same schema) in one transaction, and commit only when each table's count and hash
    match the source's. -> the summaries. BadInput when `dest` holds rows already."""
    held = {t: n for t in tables if (n := dest.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])}
    if held:
        raise BadInput(f"{what}: the destination is not empty ({', '.join(f'{t}: {n} rows' for t, n in held.items())}); "
                       f"migrate into a new database")
    want = summaries(source, tables)
    with dbbackend.transaction(dest):
        for table, key in tables.items():
            columns = dbbackend.table_columns(source, table)
            dbbackend.bulk_insert(dest, table, columns, _rows(source, table, columns, key))
            dbbackend.after_explicit_ids(dest, table)
        got = summaries(dest, tables)
        wrong = [t for t in tables if got[t] != want[t]]
        if wrong:
            raise CltError(f"{what}: the copy differs from the source in {', '.join(wrong)} "
                           f"(rows {[want[t].rows for t in wrong]} -> {[got[t].rows for t in wrong]}); nothing was committed")
    return got
