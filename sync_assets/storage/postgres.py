"""PostgreSQL, for runs on several machines: data, staging, checkpoints and state all in the database.

Nothing is kept on a local disk, so a run on any machine can finish a refresh that a killed run on
another machine began: its staged pages and checkpoints are rows like everything else. Stage locks
are session advisory locks, which PostgreSQL releases by itself when the holder's connection dies
(a SIGKILLed pod included), so a killed run never blocks the next one.

Each stream is a typed table ``"<source>"."<stream>"``, with a view ``"<source>"."<stream>_current"``
(the latest version of each primary key) for streams with one. A partition is published in one
transaction: its old rows deleted, its staged rows loaded by ``COPY``, its state row written. A full
refresh is loaded into a table of its own and swapped in by renaming it, in one short transaction at
the end; readers see the old snapshot until that commit, then the new one.
"""

from __future__ import annotations

import io
import json
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.csv as pa_csv

from sync_assets.errors import ConfigurationError
from sync_assets.redaction import mask, mask_url, register_secret, url_without_credentials
from sync_assets.schema import (
    BOOLEAN,
    CURSOR_COLUMN,
    DATE,
    EXTRACTED_AT_COLUMN,
    INTEGER,
    JSON,
    NUMBER,
    PARTITION_COLUMN,
    STRING,
    TIMESTAMP,
    Drift,
    arrow_schema,
    merge_schemas,
)
from sync_assets.storage.bookkeeping import Bookkeeping, Cursor, Dialect, PartitionState
from sync_assets.storage.layout import quote, safe_name
from sync_assets.storage.store import (
    KeyTally,
    Part,
    Published,
    Stage,
    StageBusyError,
    Store,
    TableSpec,
    Tallies,
)

STATE_SCHEMA = "sync_assets"
_SQL_TYPES = {BOOLEAN: "BOOLEAN", INTEGER: "BIGINT", NUMBER: "DOUBLE PRECISION", STRING: "TEXT",
              DATE: "DATE", TIMESTAMP: "TIMESTAMPTZ", JSON: "JSONB"}
_CONVERT = {STRING: "{c}::text", JSON: "to_jsonb({c})", NUMBER: "{c}::double precision"}
_CSV = pa_csv.WriteOptions(include_header=False)
_SEQ = "_sync_seq"  # rows in the order they were loaded (COPY fills it); reads come back in that order


def _lock_id(text: str) -> int:
    """A stable 63-bit key for ``pg_advisory_lock``."""
    return zlib.crc32(text.encode()) << 31 | zlib.crc32(text[::-1].encode()) >> 1


class _LockSession:
    """The one session that holds a store's advisory locks, however many: a run of a year of partitions
    holds 365 locks on one connection, not on 365 connections (PostgreSQL allows 100 by default). The
    server releases them all when the session ends, as when a killed run's process dies.

    A session may take the same advisory lock twice, so this store refuses a scope it already holds itself:
    two stages of one scope in one process exclude each other as two processes do."""

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._connect = connect
        self._conn: Any = None
        self._held: set[int] = set()
        self._mutex = threading.Lock()

    def acquire(self, scope: str) -> None:
        key = _lock_id(scope)
        with self._mutex:
            if key in self._held:
                raise StageBusyError(f"{scope} is being read by another run right now")
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
                # A holder on a machine that vanished (no FIN, no RST) is noticed in about 30 s, not in the
                # kernel's default two hours: the server probes this session's socket.
                self._conn.execute("SET tcp_keepalives_idle = 15; SET tcp_keepalives_interval = 5; "
                                   "SET tcp_keepalives_count = 3")
            (got,) = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            if not got:
                raise StageBusyError(f"{scope} is being read by another run right now")
            self._held.add(key)

    def release(self, scope: str) -> None:
        key = _lock_id(scope)
        with self._mutex:
            self._held.discard(key)
            conn = self._conn
            if conn is None or conn.closed:
                return  # the session is gone, and the server released its locks with it
            try:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
            except Exception:  # a broken session: the server releases its locks as it drops it
                conn.close()
            if not self._held:  # no idle session is left open between stages
                conn.close()
                self._conn = None


class PostgresStore(Store):
    """Every part of the store in one PostgreSQL database, reachable from every machine."""

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise ConfigurationError("a postgresql:// store needs psycopg: install sync-assets[postgres]") from None
        self._psycopg, self.url = psycopg, url
        password = urlsplit(url).password
        if password:
            register_secret(unquote(password))  # masked from now on, in every log line and error
            register_secret(password)

        def connect() -> Any:
            try:
                conn = psycopg.connect(url, autocommit=True, options=f"-c search_path={STATE_SCHEMA} -c TimeZone=UTC")
            except psycopg.OperationalError as exc:
                raise ConfigurationError(f"cannot connect to the PostgreSQL store {mask_url(url)}: {mask(str(exc))}; "
                                         "check SYNC_ASSETS_STORE_URL (or the IO manager's url)") from None
            return conn

        # One process at a time creates what a new database lacks: CREATE ... IF NOT EXISTS is not safe
        # against itself in PostgreSQL (two at once collide in the catalog's unique indexes).
        schema_lock = f"SELECT pg_advisory_xact_lock({_lock_id('sync-assets:state schema')})"
        with connect() as conn, conn.transaction():
            conn.execute(schema_lock)
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {STATE_SCHEMA}")
        self._connect = connect
        self._locks = _LockSession(connect)
        self._books = Bookkeeping(Dialect(connect=connect, begin="BEGIN", blob="BYTEA", placeholder="%s",
                                     schema_lock=schema_lock))
        self._prepared: set[str] = set()  # streams whose table this process has checked against their columns

    def __repr__(self) -> str:
        return f"PostgresStore({mask_url(self.url)!r})"

    @property
    def location(self) -> str:
        return url_without_credentials(self.url)  # the same in every process, whatever secrets it knows

    # --- locks: session advisory locks, released by the server when a holder dies ---

    @contextmanager
    def lock(self, scope: str) -> Iterator[None]:
        self._locks.acquire(scope)
        try:
            yield
        finally:
            self._locks.release(scope)

    def locked(self, scope: str) -> bool:
        key = _lock_id(scope)
        # Advisory locks belong to a database, but pg_locks shows the whole server's: another store's database
        # holding the same key (the same source and stream) must not look like a reader of this one.
        rows = self._books.rows("SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
                               "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                               "AND ((classid::bigint << 32) | objid::bigint) = ?", (key,))
        return bool(rows)

    # --- tables ---

    def _table(self, table: TableSpec, suffix: str = "") -> str:
        return f"{quote(safe_name(table.source, 'source'))}.{quote(safe_name(table.stream, 'stream') + suffix)}"

    def _prepare(self, db: Cursor, table: TableSpec, columns: dict[str, str]) -> tuple[dict[str, str], list[Drift]]:
        """The stream's table holds (at least) ``columns``, widened where needed: returns its columns, and drift."""
        known = self._books.columns_in(db, table.source, table.stream)
        merged, drift = merge_schemas(known, [arrow_schema(columns)])
        if merged == known and table.name in self._prepared:
            return merged, drift  # the table is as this process last left it: no DDL, no catalog query
        name, current = self._table(table), self._table(table, "_current")
        with_view = bool(table.primary_key) and table.kind == "partitions"
        db.execute("SELECT 1 FROM pg_namespace WHERE nspname = ?", (table.source,))
        if not db.fetchall():  # a source's streams create its schema at once: one of them does (held to commit)
            db.execute("SELECT pg_advisory_xact_lock(?)", (_lock_id(f"schema:{table.source}"),))
            db.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(table.source)}")
        db.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
                   (table.source, table.stream))
        present = {row[0] for row in db.fetchall()}
        if not present:
            # no data columns yet when the first partitions published are empty: later ones add them
            definitions = [f"{quote(c)} {_SQL_TYPES[k]}" for c, k in merged.items()]
            definitions += [f"{quote(PARTITION_COLUMN)} TEXT", f"{quote(_SEQ)} BIGINT GENERATED ALWAYS AS IDENTITY"]
            db.execute(f"CREATE TABLE {name} ({', '.join(definitions)})")
            if table.kind == "partitions":
                db.execute(f"CREATE INDEX ON {name} ({quote(PARTITION_COLUMN)})")
        changes = [(c, k) for c, k in merged.items() if present and (c not in present or known.get(c, k) != k)]
        if changes and with_view:
            db.execute(f"DROP VIEW IF EXISTS {current}")  # a view pins the types of its columns
        for column, kind in changes:
            if column not in present:
                db.execute(f"ALTER TABLE {name} ADD COLUMN {quote(column)} {_SQL_TYPES[kind]}")
            else:
                using = _CONVERT.get(kind, "{c}").format(c=quote(column))
                db.execute(f"ALTER TABLE {name} ALTER COLUMN {quote(column)} TYPE {_SQL_TYPES[kind]} USING {using}")
        keys = [quote(k) for k in table.primary_key if k in merged]
        if with_view and keys and (changes or not present):
            order = f"{quote(CURSOR_COLUMN)} DESC NULLS LAST, " if CURSOR_COLUMN in merged else ""
            db.execute(f"CREATE OR REPLACE VIEW {current} AS SELECT DISTINCT ON ({', '.join(keys)}) * FROM {name} "
                       f"ORDER BY {', '.join(keys)}, {order}{quote(EXTRACTED_AT_COLUMN)} DESC")
        if merged != known:
            self._books.save_columns(db, table.source, table.stream, merged)
        self._prepared.add(table.name)
        return merged, drift

    def _copy(self, db: Cursor, name: str, parts: list[Part], columns: dict[str, str], tallies: Tallies) -> None:
        """Load the stages' pages (each with its partition key) into ``name`` by ``COPY``, a page at a time."""
        names = [*columns, PARTITION_COLUMN]
        with db.copy(f"COPY {name} ({', '.join(quote(c) for c in names)}) FROM STDIN (FORMAT csv)") as copy:
            for rows in self._rows(parts, arrow_schema(columns), tallies):
                if rows.num_rows:
                    arrays = [a.storage if isinstance(a.type, pa.JsonType) else a for a in rows.columns]
                    out = io.BytesIO()
                    pa_csv.write_csv(pa.RecordBatch.from_arrays(arrays, names=names), out, _CSV)
                    copy.write(out.getvalue())

    # --- publishing ---

    def publish_partitions(self, stages: Sequence[Stage], states: Sequence[PartitionState]) -> list[Published]:
        table = stages[0].table
        parts: list[Part] = [(state.partition_key, stage.batches) for stage, state in zip(stages, states, strict=True)]
        columns, _ = self._partition_columns(parts, table)
        name = self._table(table)
        with self._books.transaction() as db:
            db.execute("SELECT pg_advisory_xact_lock(?)", (_lock_id(f"publish:{table.name}"),))
            merged, drift = self._prepare(db, table, columns)
            tallies = {state.partition_key: KeyTally(table, arrow_schema(merged)) for state in states}
            db.execute(f"DELETE FROM {name} WHERE {quote(PARTITION_COLUMN)} = ANY(?)",
                       ([state.partition_key for state in states],))
            self._copy(db, name, parts, merged, tallies.get)
            for stage, state in zip(stages, states, strict=True):
                self._books.save_partition(db, table.source, table.stream, state)
                self._books.drop_stage(db, stage.scope)  # a substream's stage; a window's has no rows here
        for stage in stages:
            stage.close()
        return self._published(merged, drift, tallies, states)

    def publish_refresh(self, table: TableSpec, refresh: int, chunks: int) -> Published:
        parts = self._chunk_parts(table, refresh, chunks)
        columns, _ = self._partition_columns(parts, table)
        name, loading = self._table(table), self._table(table, f"__refresh_{refresh}")
        with self._books.transaction() as db:
            db.execute("SELECT pg_advisory_xact_lock(?)", (_lock_id(f"publish:{table.name}"),))
            merged, drift = self._prepare(db, table, columns)  # the stream's columns, and its table to copy
            db.execute(f"DROP TABLE IF EXISTS {loading}")
            db.execute(f"CREATE TABLE {loading} (LIKE {name} INCLUDING ALL)")
            keys = KeyTally(table, arrow_schema(merged))
            self._copy(db, loading, parts, merged, lambda _: keys)
            db.execute(f"DROP TABLE {name}")  # waits for readers of the old snapshot; new ones wait for the commit
            db.execute(f"ALTER TABLE {loading} RENAME TO {quote(table.stream)}")
            self._books.mark_published(db, table.source, table.stream, refresh, chunks)
        self._remove_superseded(table)
        return Published(merged, drift, keys.duplicates())

    def _remove_refresh_data(self, table: TableSpec, refresh: int) -> None:
        with self._books.transaction() as db:  # a refresh abandoned while being swapped in leaves its table
            db.execute(f"DROP TABLE IF EXISTS {self._table(table, f'__refresh_{refresh}')}")

    # --- reading ---

    def _select(self, table: TableSpec, where: str, order: str, params: tuple[Any, ...]) -> Iterator[pa.RecordBatch]:
        schema = self.read_schema(table)
        json_columns = {f.name for f in schema if isinstance(f.type, pa.JsonType)}
        names = ", ".join(quote(c) for c in schema.names)
        conn = self._connect()
        try:
            with conn.transaction(), conn.cursor(name="sync_assets_read") as cursor:
                cursor.execute(f"SELECT {names} FROM {self._table(table)} {where} ORDER BY {order}", params)
                while rows := cursor.fetchmany(10_000):
                    yield pa.RecordBatch.from_arrays([
                        pa.array([_json(r[i]) if c in json_columns else r[i] for r in rows], schema.field(i).type)
                        for i, c in enumerate(schema.names)], schema=schema)
        except self._psycopg.errors.UndefinedTable:
            return
        finally:
            conn.close()

    def read_partitions(self, table: TableSpec, keys: list[str]) -> Iterator[pa.RecordBatch]:
        committed = self._books.partition_states(table.source, table.stream)
        missing = [key for key in keys if key not in committed]
        if missing:
            raise ConfigurationError(
                f"partition {missing[0]!r} of {table.name} has not been synced; materialize it first"
            )
        yield from self._select(table, f"WHERE {quote(PARTITION_COLUMN)} = ANY(%s)",
                                f"array_position(%s, {quote(PARTITION_COLUMN)}), {quote(_SEQ)}", (keys, keys))

    def read_snapshot(self, table: TableSpec) -> Iterator[pa.RecordBatch]:
        if self._books.latest_refresh(table.source, table.stream, "published") is None:
            return
        yield from self._select(table, "", quote(_SEQ), ())


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
