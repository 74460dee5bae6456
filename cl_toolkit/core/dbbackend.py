"""The one module that knows SQLite from PostgreSQL.

Both stores keep one schema definition and one list of numbered migrations, written in
the SQL they always had (SQLite's), and their queries keep SQLite's qmark parameters. On
SQLite everything runs as it is (core/sqlitedb.py). On PostgreSQL a `PgConnection` wraps a
psycopg 3 connection and translates at the boundary:

- parameters: `?` -> `%s`, `?3` -> the third one, `:name` -> `%(name)s` (a literal `%` is
  escaped); `INSERT OR IGNORE` -> `ON CONFLICT DO NOTHING`; `a IS b` / `a IS NOT b` ->
  `IS [NOT] DISTINCT FROM`; `BEGIN IMMEDIATE` -> `BEGIN`, and a bare `BEGIN` (a snapshot
  for several reads) -> `BEGIN ISOLATION LEVEL REPEATABLE READ`; `rowid` -> `ctid`;
- DDL: `INTEGER` -> `BIGINT` (SQLite's integers are 64-bit), `INTEGER PRIMARY KEY
  AUTOINCREMENT` -> `BIGSERIAL PRIMARY KEY`, `REAL` -> `DOUBLE PRECISION`, `TEXT` ->
  `TEXT COLLATE "C"` (SQLite compares text byte by byte: the same order on both), no
  `WITHOUT ROWID`, and SQLite's `RAISE(ABORT)` triggers become a PL/pgSQL trigger that
  refuses the change (plus a TRUNCATE guard);
- types: `numeric` results (AVG of integers) load as float, as SQLite gives them;
- a few SQLite functions the queries use (`json_extract`, `json_each`, `instr`, `SUM` of a
  comparison) are created as SQL functions in the database (`_COMPAT`).

The schema version is SQLite's `PRAGMA user_version`, and on PostgreSQL a row per store in
`clt_schema`; each migration step is one transaction under an advisory lock, so several
processes opening a new database at once apply each step once.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import sqlite3
from collections.abc import Iterable, Sequence
from functools import lru_cache

from cl_toolkit.core import sqlitedb
from cl_toolkit.core.errors import CltError
from cl_toolkit.core.storeurl import StoreTarget, masked

Migration = sqlitedb.Migration
MIGRATION_LOCK = 0x636C74  # 'clt': one advisory lock for every store's migrations
STREAM_ROWS = 5000  # rows a server-side cursor fetches at a time

try:  # the driver is the `postgres` extra: SQLite users need not install it
    import psycopg
    from psycopg.types.numeric import FloatLoader

    DB_ERRORS: tuple[type[BaseException], ...] = (sqlite3.Error, psycopg.Error)
    INTEGRITY_ERRORS: tuple[type[BaseException], ...] = (sqlite3.IntegrityError, psycopg.IntegrityError)
except ImportError:  # pragma: no cover - exercised only without the extra
    psycopg = None
    DB_ERRORS = (sqlite3.Error,)
    INTEGRITY_ERRORS = (sqlite3.IntegrityError,)


# --- opening -----------------------------------------------------------------------------

def connect(target: StoreTarget, *, what: str, rows: str = "tuple", **sqlite_options):
    """A connection to `target`: sqlite3's (with `sqlite_options` for sqlitedb.connect) or
    a PgConnection, whose lock waits end after the same `busy_timeout_s` (an error then, as
    SQLite's busy timeout). `rows`: "tuple", or "row" (by index and by column name)."""
    if not target.is_postgres:
        factory = sqlite3.Row if rows == "row" else None
        return sqlitedb.connect(target.target, row_factory=factory, **sqlite_options)
    if psycopg is None:
        raise CltError(f"{what} {target}: PostgreSQL needs the psycopg driver "
                       f"(pip install 'cl_toolkit[postgres]')")
    try:
        conn = psycopg.connect(target.target, autocommit=True, connect_timeout=10)
    except psycopg.Error as e:
        raise CltError(f"{what} {target}: cannot connect ({masked(_first_line(e))})") from None
    conn.execute(f"SET lock_timeout = {int(sqlite_options.get('busy_timeout_s', 30) * 1000)}")
    return PgConnection(conn, rows=rows)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def backend(conn) -> str:
    return "postgresql" if isinstance(conn, PgConnection) else "sqlite"


def is_postgres(conn) -> bool:
    return isinstance(conn, PgConnection)


transaction = sqlitedb.transaction  # BEGIN IMMEDIATE; on PostgreSQL translated to BEGIN


# --- PostgreSQL connection ---------------------------------------------------------------

class SqlRow(tuple):
    """A row by index and by column name, like sqlite3.Row (`dict(row)` works)."""

    def __new__(cls, values, index: dict[str, int]):
        row = super().__new__(cls, values)
        row._index = index
        return row

    def keys(self) -> list[str]:
        return list(self._index)

    def __getitem__(self, key):
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)


def _sqlrow_factory(cursor):
    names = [c.name for c in cursor.description or ()]
    index = {n: i for i, n in enumerate(names)}
    return lambda values: SqlRow(values, index)


class PgCursor:
    """What the stores use of a sqlite3 cursor: iteration, fetchone/fetchall, rowcount,
    lastrowid (the serial value the last INSERT drew)."""

    def __init__(self, conn: PgConnection, cursor, rowcount: int | None = None):
        self._conn, self._cursor = conn, cursor
        self.rowcount = cursor.rowcount if rowcount is None else rowcount

    def __iter__(self):
        return iter(self._cursor) if self._cursor.description else iter(())

    def fetchone(self):
        return self._cursor.fetchone()

    def fetchall(self):
        return self._cursor.fetchall() if self._cursor.description else []

    def fetchmany(self, size: int):
        return self._cursor.fetchmany(size)

    @property
    def description(self):
        return self._cursor.description

    @property
    def lastrowid(self) -> int:
        return self._conn.raw.execute("SELECT lastval()").fetchone()[0]


class PgConnection:
    """A psycopg connection in autocommit mode (transactions are explicit, as on SQLite)
    that accepts the stores' SQLite-flavoured SQL."""

    def __init__(self, conn, *, rows: str = "tuple"):
        self.raw = conn
        conn.adapters.register_loader("numeric", FloatLoader)
        self._row_factory = _sqlrow_factory if rows == "row" else psycopg.rows.tuple_row
        self._snapshot = False  # inside a read snapshot (a bare BEGIN): SELECTs stream
        self._cursors = itertools.count()

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def cursor(self):
        return self.raw.cursor(row_factory=self._row_factory)

    def execute(self, sql: str, params=()) -> PgCursor:
        text, style = translate(sql)
        if self._snapshot and text.lstrip()[:6].upper() == "SELECT":
            # a server-side cursor: a million-row read arrives in pages, not all at once
            cur = self.raw.cursor(name=f"clt_read_{next(self._cursors)}", row_factory=self._row_factory)
            cur.itersize = STREAM_ROWS
        else:
            cur = self.cursor()
        cur.execute(text, _params(params, style))
        if text == _BEGIN["BEGIN"]:
            self._snapshot = True
        elif text.upper() in ("COMMIT", "ROLLBACK"):
            self._snapshot = False
        return PgCursor(self, cur)

    def executemany(self, sql: str, seq: Iterable) -> PgCursor:
        text, style = translate(sql)
        cur = self.cursor()
        rows = [_params(p, style) for p in seq]
        if not rows:
            return PgCursor(self, cur, rowcount=0)
        cur.executemany(text, rows)
        return PgCursor(self, cur)

    def execute_raw(self, sql: str):
        """A statement as it is: no translation, no parameters (DDL the backend wrote)."""
        return self.raw.execute(sql)

    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence]) -> None:
        """COPY rows into a table (the bulk path)."""
        cur = self.raw.cursor()
        with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def close(self) -> None:
        self.raw.close()


def _params(params, style: str):
    if style == "numbered":
        return {f"p{i}": v for i, v in enumerate(params, 1)}
    if style == "named":
        return dict(params)
    return list(params)


_PLACEHOLDER = re.compile(r"""('(?:[^']|'')*'|"[^"]*"|--[^\n]*)|(\?\d+)|(\?)|(?<![:\w]):([A-Za-z_]\w*)|(%)""")
_BEGIN = {"BEGIN IMMEDIATE": "BEGIN", "BEGIN": "BEGIN ISOLATION LEVEL REPEATABLE READ"}
_REWRITES = [
    (re.compile(r"\bIS\s+NOT\s+(?!NULL\b)", re.I), "IS DISTINCT FROM "),
    (re.compile(r"\bIS\s+(?!NOT\b|NULL\b|DISTINCT\b|TRUE\b|FALSE\b)", re.I), "IS NOT DISTINCT FROM "),
    (re.compile(r"\browid\b"), "ctid"),
]
_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO\b", re.I)


@lru_cache(maxsize=512)
def translate(sql: str) -> tuple[str, str]:
    """SQLite-flavoured SQL as PostgreSQL SQL, and the parameter style it used
    (qmark | numbered | named)."""
    styles: set[str] = set()

    def swap(m: re.Match) -> str:
        literal, numbered, qmark, named, percent = m.groups()
        if literal is not None:
            return literal.replace("%", "%%")
        if numbered:
            styles.add("numbered")
            return f"%(p{numbered[1:]})s"
        if qmark:
            styles.add("qmark")
            return "%s"
        if named:
            styles.add("named")
            return f"%({named})s"
        return "%%"

    begin = _BEGIN.get(" ".join(sql.split()).upper())
    if begin:
        return begin, "qmark"
    text = sql
    for pattern, replacement in _REWRITES:
        text = pattern.sub(replacement, text)
    if _OR_IGNORE.match(text):
        text = _OR_IGNORE.sub("INSERT INTO", text).rstrip().rstrip(";") + " ON CONFLICT DO NOTHING"
    text = _PLACEHOLDER.sub(swap, text)
    if len(styles) > 1:
        raise ValueError(f"mixed parameter styles in {sql!r}")
    return text, styles.pop() if styles else "qmark"


# --- schema and migrations ---------------------------------------------------------------

_TRIGGER = re.compile(r"CREATE\s+TRIGGER\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)\s+BEFORE\s+(UPDATE|DELETE)\s+ON\s+(\w+)"
                      r"\s+BEGIN\s+SELECT\s+RAISE\s*\(\s*ABORT\s*,\s*'((?:[^']|'')*)'\s*\)\s*;\s*END", re.I | re.S)
_DDL_TYPES = [
    (re.compile(r"\bINTEGER\s+PRIMARY\s+KEY\s+AUTOINCREMENT\b", re.I), "BIGSERIAL PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b", re.I), "BIGINT"),
    (re.compile(r"\bREAL\b", re.I), "DOUBLE PRECISION"),
    (re.compile(r"\bTEXT\b", re.I), 'TEXT COLLATE "C"'),
    (re.compile(r"\)\s*WITHOUT\s+ROWID\s*$", re.I), ")"),
]
_REFUSE_FN = """CREATE OR REPLACE FUNCTION clt_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'restrict_violation'; END $$"""
# SQLite functions the stores' queries call, as PostgreSQL functions (created with the schema)
_COMPAT = [
    """CREATE OR REPLACE FUNCTION json_extract(doc text, path text) RETURNS text
       LANGUAGE sql IMMUTABLE AS $$ SELECT doc::jsonb #>> string_to_array(
         replace(regexp_replace(path, '^[$][.]?', ''), '"', ''), '.') $$""",
    """CREATE OR REPLACE FUNCTION json_each(doc text, path text) RETURNS TABLE (value text)
       LANGUAGE sql IMMUTABLE AS $$ SELECT CASE jsonb_typeof(j) WHEN 'array' THEN e.v END FROM
         (SELECT doc::jsonb #> string_to_array(replace(regexp_replace(path, '^[$][.]?', ''), '"', ''), '.')) s(j),
         LATERAL jsonb_array_elements_text(CASE jsonb_typeof(j) WHEN 'array' THEN j ELSE '[]' END) e(v) $$""",
    """CREATE OR REPLACE FUNCTION json_each(doc text) RETURNS TABLE (value text)
       LANGUAGE sql IMMUTABLE AS $$ SELECT jsonb_array_elements_text(doc::jsonb) $$""",
    """CREATE OR REPLACE FUNCTION instr(haystack text, needle text) RETURNS bigint
       LANGUAGE sql IMMUTABLE AS $$ SELECT strpos(haystack, needle) $$""",
    """CREATE OR REPLACE FUNCTION clt_bool_sum(state bigint, v boolean) RETURNS bigint
       LANGUAGE sql IMMUTABLE AS $$ SELECT CASE WHEN v IS NULL THEN state
                                           ELSE coalesce(state, 0) + v::int END $$""",
    """DO $$ BEGIN CREATE AGGREGATE sum(boolean) (SFUNC = clt_bool_sum, STYPE = bigint);
       EXCEPTION WHEN duplicate_function THEN NULL; END $$""",
]


def pg_ddl(statement: str) -> list[str]:
    """One SQLite schema statement as the PostgreSQL statements that do the same."""
    trigger = _TRIGGER.search(statement)
    if trigger:
        name, event, table, message = trigger.groups()
        out = [_REFUSE_FN, f"DROP TRIGGER IF EXISTS {name} ON {table}",
               f"CREATE TRIGGER {name} BEFORE {event.upper()} ON {table} FOR EACH ROW "
               f"EXECUTE FUNCTION clt_refuse_change('{message}')"]
        if event.upper() == "DELETE":
            out += [f"DROP TRIGGER IF EXISTS {name}_truncate ON {table}",
                    f"CREATE TRIGGER {name}_truncate BEFORE TRUNCATE ON {table} FOR EACH STATEMENT "
                    f"EXECUTE FUNCTION clt_refuse_change('{message}')"]
        return out
    if re.match(r"\s*(CREATE\s+TABLE|ALTER\s+TABLE\s+\w+\s+ADD\s+COLUMN)", statement, re.I):
        for pattern, replacement in _DDL_TYPES:
            statement = pattern.sub(replacement, statement)
    return [statement]


def schema_version(conn, store: str) -> int:
    """The schema version the database records for `store` (0 when new)."""
    if not is_postgres(conn):
        return sqlitedb.schema_version(conn)
    row = conn.raw.execute("SELECT version FROM clt_schema WHERE store = %s", [store]).fetchone() \
        if _has_schema_table(conn) else None
    return row[0] if row else 0


def _has_schema_table(conn: PgConnection) -> bool:
    return conn.raw.execute("SELECT to_regclass('clt_schema') IS NOT NULL").fetchone()[0]


def migrate(conn, migrations: Sequence[Migration], what: str, *, store: str) -> int:
    """Bring the database to the last migration (sqlitedb.migrate on SQLite)."""
    if not is_postgres(conn):
        return sqlitedb.migrate(conn, migrations, what)
    sqlitedb._check_numbering(migrations)
    target = sqlitedb.latest(migrations)
    for version, step in migrations:
        if schema_version(conn, store) >= version:
            continue
        with transaction(conn):
            conn.raw.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
            conn.raw.execute("CREATE TABLE IF NOT EXISTS clt_schema (store TEXT PRIMARY KEY, version INTEGER NOT NULL)")
            if schema_version(conn, store) >= version:
                continue  # another process migrated while we waited for the lock
            if version == 1:
                for statement in _COMPAT:
                    conn.raw.execute(statement)
            _apply_pg(conn, step)
            conn.raw.execute("INSERT INTO clt_schema (store, version) VALUES (%s, %s) ON CONFLICT (store) "
                             "DO UPDATE SET version = excluded.version", [store, version])
    found = schema_version(conn, store)
    if found > target:
        raise CltError(f"{what} has schema version {found}, newer than this toolkit knows "
                       f"({target}); upgrade cl_toolkit")
    return found


def _apply_pg(conn: PgConnection, step) -> None:
    if callable(step):
        step(conn)
        return
    for statement in step:
        for ddl in pg_ddl(statement):
            conn.raw.execute(ddl)


# --- what differs beyond SQL text --------------------------------------------------------

def integrity(conn) -> str:
    """'ok', or what the database's own check found (SQLite's quick_check; a PostgreSQL
    server checks its pages itself: 'ok' once it answers)."""
    if is_postgres(conn):
        conn.raw.execute("SELECT 1").fetchone()
        return "ok"
    return conn.execute("PRAGMA quick_check").fetchone()[0]


def for_update(sql: str, conn) -> str:
    """A SELECT that locks the rows it reads on PostgreSQL (SQLite's BEGIN IMMEDIATE
    already holds the whole database)."""
    return f"{sql} FOR UPDATE" if is_postgres(conn) else sql


def lock_key(conn, name: str) -> None:
    """Serialise the transactions that name the same thing (a row that does not exist yet
    cannot be locked) on PostgreSQL; a no-op on SQLite, whose writers are serial."""
    if is_postgres(conn):
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        conn.raw.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def insert_ignoring_known(conn, table: str, columns: Sequence[str], rows: list[tuple]) -> int:
    """Insert rows, skipping those whose key is stored already; -> rows added. PostgreSQL
    COPYs them into a temporary table and inserts from there in one statement; SQLite
    runs one prepared INSERT OR IGNORE over the batch. Call inside a transaction."""
    if not rows:
        return 0
    cols = ", ".join(columns)
    if not is_postgres(conn):
        marks = ", ".join("?" * len(columns))
        return conn.executemany(f"INSERT OR IGNORE INTO {table} ({cols}) VALUES ({marks})", rows).rowcount
    staging = f"clt_stage_{table}"
    conn.raw.execute(f"CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {table} INCLUDING DEFAULTS) "
                     f"ON COMMIT DELETE ROWS")
    conn.raw.execute(f"TRUNCATE {staging}")
    conn.copy_rows(staging, columns, rows)
    return conn.raw.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {staging} "
                            f"ON CONFLICT DO NOTHING").rowcount


def table_columns(conn, table: str) -> list[str]:
    """A table's columns in their order."""
    if is_postgres(conn):
        rows = conn.raw.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                                "AND table_schema = current_schema() ORDER BY ordinal_position", [table])
        return [r[0] for r in rows]
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def bulk_insert(conn, table: str, columns: Sequence[str], rows: Iterable[Sequence]) -> None:
    """Insert many rows as they are (explicit ids included): COPY on PostgreSQL, one
    prepared INSERT over the rows on SQLite. Call inside a transaction."""
    if is_postgres(conn):
        conn.copy_rows(table, columns, rows)
        return
    marks = ", ".join("?" * len(columns))
    conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


def after_explicit_ids(conn, table: str) -> None:
    """After rows were inserted with their own `id`s: move PostgreSQL's sequence past them
    (SQLite's AUTOINCREMENT follows the largest id by itself)."""
    if is_postgres(conn) and "id" in table_columns(conn, table):
        conn.raw.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(MAX(id), 1), "
                         f"MAX(id) IS NOT NULL) FROM {table}")


def has_table(conn, table: str) -> bool:
    if is_postgres(conn):
        return conn.raw.execute("SELECT to_regclass(%s) IS NOT NULL", [table]).fetchone()[0]
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone() is not None
