"""Trace tables on a DB-API connection someone else opened (sqlite3 or psycopg 3).

Invariant: a capture stores all of its events or none (one transaction, taken under a
writer lock: BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL), and only after
every event passed the checks in `plan.py`. Rows are append-only except container contents,
so the genealogy graph (trace_edge) only grows and an index over it can catch up by id.
The schema is versioned in trace_meta; `migrate` applies what is missing, in order.
"""

from __future__ import annotations

import gc
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from . import StoreError
from .epcis import Event
from .plan import CapturePlan, NodeInfo, plan_capture

# sqlite3 looks up an adapter for every parameter that is not int, float or str, and for
# None (a third of a capture's values) that lookup fails twice before binding NULL; an
# adapter that returns None finds it at once (about 7,700 instructions an event fewer,
# callgrind; server/store/sqlite.py does the same for bytes). Process-wide and harmless:
# None still binds as NULL.
if sqlite3.adapters.get((type(None), sqlite3.PrepareProtocol)) is None:
    sqlite3.register_adapter(type(None), {}.get)

SCHEMA_VERSION = 2
LOCK_KEY = 74_007_007  # pg_advisory_xact_lock key for trace writers

_V1 = [
    "CREATE TABLE trace_event (id {pk}, event_id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,"
    " time BIGINT NOT NULL, record_time BIGINT NOT NULL, biz_step TEXT, disposition TEXT,"
    " location TEXT, read_point TEXT, instrument TEXT, measured BIGINT, measured_unit TEXT,"
    " raw_ref TEXT, doc TEXT NOT NULL)",
    "CREATE INDEX trace_event_time ON trace_event (time)",
    "CREATE INDEX trace_event_location ON trace_event (location, time)",
    "CREATE TABLE trace_node (id {pk}, urn TEXT NOT NULL UNIQUE, dim TEXT, origin BIGINT)",
    # role: obs (ObjectEvent/TransactionEvent), in/out (TransformationEvent),
    # child/parent (Aggregation/AssociationEvent); via: the container a row was expanded from
    "CREATE TABLE trace_touch (node BIGINT NOT NULL, event BIGINT NOT NULL, role TEXT NOT NULL,"
    " qty BIGINT, dim TEXT, via BIGINT)",
    "CREATE INDEX trace_touch_node ON trace_touch (node, event)",
    "CREATE INDEX trace_touch_event ON trace_touch (event)",
    "CREATE TABLE trace_edge (id {pk}, src BIGINT NOT NULL, dst BIGINT NOT NULL,"
    " event BIGINT NOT NULL)",
    "CREATE INDEX trace_edge_src ON trace_edge (src, dst)",
    "CREATE INDEX trace_edge_dst ON trace_edge (dst, src)",
    "CREATE TABLE trace_content (container BIGINT NOT NULL, node BIGINT NOT NULL, qty BIGINT,"
    " dim TEXT, PRIMARY KEY (container, node))",
    "CREATE TABLE trace_tolerance (instrument TEXT NOT NULL, from_t BIGINT NOT NULL,"
    " state TEXT NOT NULL, PRIMARY KEY (instrument, from_t))",
    "CREATE TABLE trace_context (prefix TEXT PRIMARY KEY, iri TEXT NOT NULL)",
]
# v2: a counter of writes to trace_tolerance, so an index may keep the table in memory
_V2 = ["DELETE FROM trace_meta WHERE key = 'tolerance_version'",
       "INSERT INTO trace_meta (key, value) VALUES ('tolerance_version', '0')"]
_BUMP = ("UPDATE trace_meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT)"
         " WHERE key = 'tolerance_version'")
_V2_SQLITE = [f"CREATE TRIGGER trace_tolerance_{op.lower()} AFTER {op} ON trace_tolerance"
              f" BEGIN {_BUMP}; END" for op in ("INSERT", "UPDATE", "DELETE")]
_V2_POSTGRESQL = [
    "CREATE OR REPLACE FUNCTION trace_tolerance_bump() RETURNS trigger LANGUAGE plpgsql AS"
    f" $$ BEGIN {_BUMP}; RETURN NULL; END $$",
    "CREATE TRIGGER trace_tolerance_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE"
    " ON trace_tolerance FOR EACH STATEMENT EXECUTE FUNCTION trace_tolerance_bump()"]
MIGRATIONS: list[tuple[int, list[str]]] = [(1, _V1), (2, _V2)]
DIALECT_MIGRATIONS = {(2, "sqlite"): _V2_SQLITE, (2, "postgresql"): _V2_POSTGRESQL}
# column types for binary COPY on PostgreSQL (every other trace column is text)
_PG_TYPES = {c: "int8" for c in ("id", "time", "record_time", "measured", "origin", "node",
                                 "event", "qty", "via", "src", "dst", "container", "from_t")}


def connect(url: str) -> Any:
    """A connection to the store a URL names (sqlite:///PATH or postgresql://...), the way
    every trace command and server opens it: SQLite waits up to 30 s for the writer lock and
    may be handed between threads (one user at a time)."""
    if url.startswith("sqlite:///"):
        return sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30,
                               check_same_thread=False)
    import psycopg

    return psycopg.connect(url)


class TraceStore:
    """Trace tables over a connection; `dialect` is "sqlite" or "postgresql"."""

    def __init__(self, conn: Any):
        self.conn = conn
        self.dialect = "sqlite" if isinstance(conn, sqlite3.Connection) else "postgresql"
        if self.dialect == "postgresql" and type(conn).__module__.split(".")[0] != "psycopg":
            raise StoreError("trace store takes a sqlite3 or a psycopg 3 connection")
        self._node_cache: dict[str, NodeInfo] = {}

    # -- SQL helpers: one spelling of each statement, '?' placeholders on both engines
    def sql(self, text: str) -> str:
        return text if self.dialect == "sqlite" else text.replace("?", "%s")

    def rows(self, text: str, params: Sequence[Any] = ()) -> list[tuple]:
        cur = self.conn.cursor()
        cur.execute(self.sql(text), params)
        return cur.fetchall()

    def execute(self, text: str, params: Sequence[Any] = ()) -> None:
        self.conn.cursor().execute(self.sql(text), params)

    def execute_many(self, text: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.conn.cursor().executemany(self.sql(text), rows)

    def rows_in(self, text: str, values: Sequence[Any]) -> list[tuple]:
        """`text` ends in `WHERE column` (or `… AND column`): rows whose column is one of
        `values`, in chunks on SQLite, as one `= ANY(array)` on PostgreSQL."""
        if not values:
            return []
        if self.dialect == "postgresql":
            # Planned for each call, never prepared: a generic plan made while the table
            # was small stays a sequential scan, and capture grows quadratically with it.
            cur = self.conn.cursor()
            cur.execute(self.sql(text + " = ANY(?)"), (list(values),), prepare=False)
            return cur.fetchall()
        out: list[tuple] = []
        for chunk in _chunks(list(values), 500):
            out += self.rows(text + f" IN ({', '.join('?' * len(chunk))})", chunk)
        return out

    def rows_in_delete(self, text: str, values: Sequence[Any]) -> None:
        """`text` ends in `WHERE column`: delete the rows whose column is one of `values`."""
        if self.dialect == "postgresql":
            self.execute(text + " = ANY(?)", (list(values),))
            return
        for chunk in _chunks(list(values), 500):
            self.execute(text + f" IN ({', '.join('?' * len(chunk))})", chunk)

    def insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        cur = self.conn.cursor()
        if self.dialect == "postgresql":
            types = [_PG_TYPES.get(c, "text") for c in columns]
            # binary COPY: the server parses no text, psycopg converts each value in C
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN"
                          " (FORMAT BINARY)") as copy:
                copy.set_types(types)
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" * len(columns))
            cur.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
                            rows)

    def begin_write(self) -> None:
        if self.dialect == "sqlite":
            if self.conn.in_transaction:
                self.conn.commit()
            self.conn.execute("BEGIN IMMEDIATE")
        else:
            self.execute("SELECT pg_advisory_xact_lock(?)", (LOCK_KEY,))

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()

    def end_read(self) -> None:
        """End the transaction a read left open (psycopg opens one for every SELECT), so
        a long-lived connection neither pins an old snapshot nor idles in a transaction."""
        if self.dialect == "postgresql" or self.conn.in_transaction:
            self.conn.rollback()

    # -- schema
    def version(self) -> int:
        try:
            found = self.rows("SELECT value FROM trace_meta WHERE key = 'schema_version'")
        except (sqlite3.Error, _pg_errors()) as exc:
            self.rollback()
            if "trace_meta" in str(exc):
                return 0
            raise
        return int(found[0][0]) if found else 0

    def migrate(self) -> int:
        """Bring the trace tables to SCHEMA_VERSION; return the version found before."""
        before = self.version()
        if before > SCHEMA_VERSION:
            raise StoreError(f"trace tables are at version {before}; this code knows "
                             f"{SCHEMA_VERSION}: upgrade metrotrace")
        pk = "INTEGER PRIMARY KEY" if self.dialect == "sqlite" else "BIGINT PRIMARY KEY"
        self.begin_write()
        self.execute("CREATE TABLE IF NOT EXISTS trace_meta (key TEXT PRIMARY KEY,"
                     " value TEXT NOT NULL)")
        for version, statements in MIGRATIONS:
            if version > before:
                for statement in statements + DIALECT_MIGRATIONS.get((version, self.dialect),
                                                                     []):
                    self.execute(statement.replace("{pk}", pk))
        self.execute("DELETE FROM trace_meta WHERE key = 'schema_version'")
        self.execute("INSERT INTO trace_meta (key, value) VALUES ('schema_version', ?)",
                     (str(SCHEMA_VERSION),))
        self.commit()
        return before

    # -- capture
    def capture(self, events: list[Event], record_time: int, require_known: bool = True,
                context: dict[str, str] | None = None,
                meta: dict[str, str] | None = None) -> list[int]:
        """Store events atomically; return their row ids. Raises DocumentError (nothing
        stored) when an event breaks a rule; an event already stored is skipped. `meta`
        entries (trace_meta) are written in the same transaction: a feed's cursor moves
        exactly when its events are stored."""
        self.begin_write()
        try:
            with gc_paused():  # planning allocates a few small tuples per event, no cycles
                ids = self._capture_locked(events, record_time, require_known,
                                           context or {})
            for key, value in (meta or {}).items():
                self._put_meta(key, value)
        except BaseException:
            self.rollback()
            self._node_cache.clear()
            raise
        self.commit()
        return ids

    def _capture_locked(self, events: list[Event], record_time: int, require_known: bool,
                        context: dict[str, str]) -> list[int]:
        known_events = self._existing_events([e.event_id for e in events])
        seen: set[str | None] = set(known_events)
        indexes, fresh = [], []
        for index, event in enumerate(events):  # a resent event changes nothing
            if event.event_id not in seen:
                seen.add(event.event_id)
                indexes.append(index)
                fresh.append(event)
        urns = {u for e in fresh for u in _referenced(e)}
        nodes = self._nodes(urns)
        contents = self._contents([nodes[u].id for u in urns if u in nodes])
        next_event = self._max_id("trace_event") + 1
        next_node = self._max_id("trace_node") + 1
        next_edge = self._max_id("trace_edge") + 1
        plan = plan_capture(fresh, nodes, contents, next_event, next_node, next_edge,
                            record_time, require_known, indexes)
        self._write(plan)
        for prefix, iri in context.items():
            self._put_context(prefix, iri)
        by_id = dict(known_events)
        by_id.update(zip([e.event_id for e in fresh], plan.event_ids, strict=True))
        return [by_id[e.event_id] for e in events]

    def _write(self, plan: CapturePlan) -> None:
        self.insert("trace_event", ("id", "event_id", "type", "time", "record_time",
                                    "biz_step", "disposition", "location", "read_point",
                                    "instrument", "measured", "measured_unit", "raw_ref",
                                    "doc"), plan.events)
        self.insert("trace_node", ("id", "urn", "dim", "origin"), plan.new_nodes)
        # batched (psycopg pipelines executemany): one round trip, not one per row
        self.execute_many("UPDATE trace_node SET dim = COALESCE(dim, ?),"
                          " origin = COALESCE(origin, ?) WHERE id = ?",
                          [(dim, origin, node) for node, dim, origin in plan.node_updates])
        self.insert("trace_touch", ("node", "event", "role", "qty", "dim", "via"), plan.touches)
        self.insert("trace_edge", ("id", "src", "dst", "event"), plan.edges)
        if plan.emptied:  # one statement for every container emptied
            self.rows_in_delete("DELETE FROM trace_content WHERE container", plan.emptied)
        self.execute_many("DELETE FROM trace_content WHERE container = ? AND node = ?",
                          plan.unpacked)
        self.insert("trace_content", ("container", "node", "qty", "dim"), plan.packed)
        for urn, info in plan.node_info.items():
            self._node_cache[urn] = info

    def _existing_events(self, event_ids: list[str | None]) -> dict[str, int]:
        return dict(self.rows_in("SELECT event_id, id FROM trace_event WHERE event_id",
                                 [i for i in event_ids if i]))

    def _nodes(self, urns: set[str]) -> dict[str, NodeInfo]:
        out = {u: self._node_cache[u] for u in urns if u in self._node_cache}
        missing = [u for u in urns if u not in out]
        for node_id, urn, dim, origin in self.rows_in(
                "SELECT id, urn, dim, origin FROM trace_node WHERE urn", missing):
            out[urn] = self._node_cache[urn] = NodeInfo(node_id, dim, origin)
        if len(self._node_cache) > 2_000_000:  # bound the cache; it refills on demand
            self._node_cache.clear()
        return out

    def _contents(self, node_ids: list[int]) -> dict[int, list[tuple[int, int | None, str]]]:
        out: dict[int, list[tuple[int, int | None, str]]] = {}
        for container, node, qty, dim in self.rows_in(
                "SELECT container, node, qty, dim FROM trace_content WHERE container",
                node_ids):
            out.setdefault(container, []).append((node, qty, dim))
        return out

    def _max_id(self, table: str) -> int:
        return int(self.rows(f"SELECT COALESCE(MAX(id), 0) FROM {table}")[0][0])

    def _put_meta(self, key: str, value: str) -> None:
        self.execute("DELETE FROM trace_meta WHERE key = ?", (key,))
        self.execute("INSERT INTO trace_meta (key, value) VALUES (?, ?)", (key, value))

    def put_meta(self, key: str, value: str) -> None:
        """Set one trace_meta entry (configuration such as the stored trace rules)."""
        self.begin_write()
        try:
            self._put_meta(key, value)
        except BaseException:
            self.rollback()
            raise
        self.commit()

    def meta(self, key: str) -> str | None:
        found = self.rows("SELECT value FROM trace_meta WHERE key = ?", (key,))
        return found[0][0] if found else None

    def _put_context(self, prefix: str, iri: str) -> None:
        if not self.rows("SELECT 1 FROM trace_context WHERE prefix = ?", (prefix,)):
            self.execute("INSERT INTO trace_context (prefix, iri) VALUES (?, ?)", (prefix, iri))

    # -- reading back
    def context(self) -> dict[str, str]:
        return dict(self.rows("SELECT prefix, iri FROM trace_context ORDER BY prefix"))

    def events(self, where: str = "", params: Sequence[Any] = (),
               limit: int | None = None) -> list[tuple[Event, int]]:
        """Stored events (with their record times) in capture order."""
        sql = "SELECT doc, record_time FROM trace_event"
        if where:
            sql += " WHERE " + where
        sql += " ORDER BY id" + (f" LIMIT {int(limit)}" if limit else "")
        return [(Event.from_json(json.loads(doc)), rt) for doc, rt in self.rows(sql, params)]

    def node_id(self, urn: str) -> int | None:
        found = self.rows("SELECT id FROM trace_node WHERE urn = ?", (urn,))
        return int(found[0][0]) if found else None


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC around work that allocates many small acyclic objects (planning
    a capture, writing a trace out): a collection they trigger scans every object the
    process holds, which is what made the slowest traces and batches slow."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _referenced(event: Event) -> list[str]:
    out = event.inputs() + event.output_objects()
    if event.parent_id:
        out.append(event.parent_id)
    return out


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _pg_errors() -> type[Exception]:
    try:
        import psycopg
    except ImportError:  # a SQLite-only install
        return sqlite3.Error
    return psycopg.errors.UndefinedTable
