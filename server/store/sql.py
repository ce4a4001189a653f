"""The SQL both backends share; a backend supplies its connection and three quirks.

Invariant: every write is one transaction; `store_batch` keeps the envelope and all its new
records or nothing (`store_batches`: several envelopes, all or nothing), and never
overwrites a stored record. Statements are written once with
`?` placeholders; a backend that wants `%s` translates them in `_q`.
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from ..ingest.columns import decode_many
from . import schema
from .rows import (
    STORED_COLUMNS,
    AlertRow,
    BatchResult,
    EnvelopeRow,
    GatewayKeyRow,
    GatewayRow,
    InstrumentRow,
    NodeRow,
    RecordRow,
    RejectRow,
    SiteRow,
)

TABLES = ("envelopes", "records", "rejects", "alerts", "sites", "gateways", "gateway_keys",
          "nodes", "instruments")
_REGISTRY = {  # row type -> (table, primary key, columns)
    SiteRow: ("sites", "id", ("id", "name")),
    GatewayRow: ("gateways", "id", ("id", "site")),
    GatewayKeyRow: ("gateway_keys", "kid",
                    ("kid", "gateway", "public_key", "valid_from", "revoked_at")),
    NodeRow: ("nodes", "id", ("id", "gateway", "key")),
    InstrumentRow: ("instruments", "id",
                    ("id", "site", "node", "type", "accuracy_class", "max", "min", "e", "unit",
                     "verified_on", "verification_due", "status")),
}
_LOOKUP_CHUNK = 400  # keys per forgery lookup query (2 parameters each)
_ENVELOPE_INSERT = ("INSERT INTO envelopes (digest, gateway, kid, batch_seq, created, received, "
                    "topic, backfill, n_records, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (digest) DO NOTHING RETURNING id")
_ENVELOPE_COLUMNS = "id, digest, gateway, kid, batch_seq, created, received, topic, backfill, " \
                    "n_records, data"


class SqlStore(ABC):
    """Shared implementation; subclasses set `dialect` and implement the hooks below."""

    dialect = ""
    url = ""

    def __init__(self) -> None:
        self._lock = threading.RLock()  # one connection, used by one thread at a time

    # -- hooks -------------------------------------------------------------------------
    def _q(self, sql: str) -> str:
        return sql

    @abstractmethod
    def _tx(self) -> AbstractContextManager[Any]:
        """A cursor inside one write transaction: commit on success, roll back on error."""

    @abstractmethod
    def _insert_records(self, cur: Any, records: Sequence[RecordRow], envelope_id: int,
                        staged: Any) -> int:
        """Insert records of one envelope (ON CONFLICT DO NOTHING); return how many were new.
        A key repeated inside `records` keeps its first copy. `staged`: what `_stage`
        returned for this envelope."""

    def _stage(self, batches: Sequence[tuple[EnvelopeRow, Sequence[RecordRow]]]) -> list[Any]:
        """Work on each envelope's records that needs no write lock, done before the write
        transaction; one value per envelope, handed to `_insert_records`. None here."""
        return [None] * len(batches)

    def _unstage(self, staged: list[Any]) -> None:
        """Drop what `_stage` left, once the transaction is over (committed or not)."""
        return None

    @abstractmethod
    def _cursor(self) -> Any:
        """A cursor for reads."""

    # -- schema --------------------------------------------------------------------------
    def _migrate(self) -> None:
        """Called last by a backend's constructor: a store that cannot be migrated (or is
        newer than this code) is closed before the error leaves, leaking nothing."""
        try:
            self._apply_migrations()
        except BaseException:
            self.close()
            raise

    def _apply_migrations(self) -> None:
        from . import SchemaError

        with self._tx() as cur:
            self._lock_schema(cur)
            cur.execute("CREATE TABLE IF NOT EXISTS schema_version "
                        "(version INTEGER PRIMARY KEY, description TEXT NOT NULL)")
            cur.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            current = cur.fetchone()[0]
            if current > schema.LATEST:
                raise SchemaError(f"schema version {current} is newer than this code "
                                  f"({schema.LATEST}): upgrade metrotrace")
            for version, description, _ in schema.MIGRATIONS:
                if version > current:
                    for statement in schema.statements(self.dialect, version):
                        cur.execute(statement)
                    cur.execute(self._q("INSERT INTO schema_version VALUES (?, ?)"),
                                (version, description))

    def _lock_schema(self, cur: Any) -> None:  # noqa: B027 - a no-op by default on purpose
        """Serialise concurrent migrations (two workers starting at once). SQLite's write
        transaction already does; PostgreSQL overrides this with an advisory lock."""

    def schema_version(self) -> int:
        with self._lock:
            cur = self._cursor()
            cur.execute("SELECT MAX(version) FROM schema_version")
            return cur.fetchone()[0]

    # -- ingest --------------------------------------------------------------------------
    def store_batch(self, envelope: EnvelopeRow, records: Sequence[RecordRow]) -> BatchResult:
        return self.store_batches([(envelope, records)])[0]

    def store_batches(self, batches: Sequence[tuple[EnvelopeRow, Sequence[RecordRow]]]
                      ) -> list[BatchResult]:
        """store_batch for several envelopes in one transaction (one commit, one fsync):
        all of them are kept, or none. Each is judged against what was stored before it,
        including the envelopes before it in the same call."""
        with self._lock:
            staged = self._stage(batches)
            try:
                with self._tx() as cur:
                    return [self._store_one(cur, envelope, records, s)
                            for (envelope, records), s in zip(batches, staged, strict=True)]
            finally:
                self._unstage(staged)

    def _store_one(self, cur: Any, e: EnvelopeRow, records: Sequence[RecordRow],
                   staged: Any) -> BatchResult:
        cur.execute(self._q(_ENVELOPE_INSERT),
                    (e.digest, e.gateway, e.kid, e.batch_seq, e.created, e.received,
                     e.topic, int(e.backfill), e.n_records, e.data))
        got = cur.fetchone()
        if got is None:
            return BatchResult(None)
        envelope_id = got[0]
        inserted = self._insert_records(cur, records, envelope_id, staged)
        if inserted == len(records):
            return BatchResult(envelope_id, inserted)
        forgeries = self._forgeries(cur, records)
        return BatchResult(envelope_id, inserted, len(records) - inserted - len(forgeries),
                           forgeries)

    def _forgeries(self, cur: Any, records: Sequence[RecordRow]) -> tuple[tuple[bytes, int], ...]:
        """(node, seq) of the records whose stored bytes differ from theirs, in batch order.
        Keys are looked up a few hundred per query (row-value IN), not one by one."""
        stored: dict[tuple[bytes, int], bytes] = {}
        for i in range(0, len(records), _LOOKUP_CHUNK):
            chunk = records[i:i + _LOOKUP_CHUNK]
            cur.execute(self._q("SELECT node, seq, record FROM records WHERE (node, seq) IN "
                                f"(VALUES {', '.join(['(?, ?)'] * len(chunk))})"),
                        [v for r in chunk for v in (r.node, r.seq)])
            stored.update(((bytes(n), s), bytes(rec)) for n, s, rec in cur.fetchall())
        return tuple((r.node, r.seq) for r in records if stored[(r.node, r.seq)] != r.record)

    def add_reject(self, reject: RejectRow) -> None:
        r = reject
        with self._lock, self._tx() as cur:
            cur.execute(self._q("INSERT INTO rejects (received, reason, detail, topic, gateway, "
                                "node, seq, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
                        (r.received, r.reason, r.detail, r.topic, r.gateway, r.node, r.seq,
                         r.data))

    def add_alert(self, alert: AlertRow) -> int:
        a = alert
        with self._lock, self._tx() as cur:
            cur.execute(self._q("INSERT INTO alerts (t, site, kind, detail, gateway, node, seq, "
                                "instrument) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"),
                        (a.t, a.site, a.kind, json.dumps(a.detail, sort_keys=True), a.gateway,
                         a.node, a.seq, a.instrument))
            return cur.fetchone()[0]

    # -- registry ------------------------------------------------------------------------
    def put(self, row: SiteRow | GatewayRow | GatewayKeyRow | NodeRow | InstrumentRow) -> None:
        table, pk, columns = _REGISTRY[type(row)]
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != pk)
        sql = (f"INSERT INTO {table} ({', '.join(columns)}) "
               f"VALUES ({', '.join('?' * len(columns))}) "
               f"ON CONFLICT ({pk}) DO UPDATE SET {updates}")
        with self._lock, self._tx() as cur:
            cur.execute(self._q(sql), tuple(getattr(row, c) for c in columns))
            cur.execute("UPDATE registry_version SET version = version + 1 WHERE id = 1")

    def registry_version(self) -> int:
        with self._lock:
            cur = self._cursor()
            cur.execute("SELECT version FROM registry_version WHERE id = 1")
            return cur.fetchone()[0]

    def registry(self) -> dict[str, list]:
        out: dict[str, list] = {}
        names = {SiteRow: "sites", GatewayRow: "gateways", GatewayKeyRow: "keys",
                 NodeRow: "nodes", InstrumentRow: "instruments"}
        with self._lock:
            cur = self._cursor()
            for row_type, (table, pk, columns) in _REGISTRY.items():
                cur.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {pk}")
                out[names[row_type]] = [row_type(*_plain(r)) for r in cur.fetchall()]
        return out

    # -- queries -------------------------------------------------------------------------
    def records(self, *, instrument: str | None = None, node: bytes | None = None,
                kinds: Sequence[int] = (), t0: int | None = None, t1: int | None = None,
                limit: int = 1000) -> list[RecordRow]:
        where, args = [], []
        for column, op, value in (("inst", "=", instrument), ("node", "=", node),
                                  ("t", ">=", t0), ("t", "<", t1)):
            if value is not None:
                where.append(f"{column} {op} ?")
                args.append(value)
        if kinds:
            where.append(f"kind IN ({', '.join('?' * len(kinds))})")
            args.extend(kinds)
        sql = (f"SELECT {', '.join(STORED_COLUMNS)} FROM records"
               + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY t, node, seq LIMIT ?")
        with self._lock:
            cur = self._cursor()
            cur.execute(self._q(sql), (*args, limit))
            fetched = cur.fetchall()
        return _record_rows(fetched)

    def alerts(self, *, site: str | None = None, since: int | None = None,
               limit: int = 1000) -> list[AlertRow]:
        sql, args = _filtered("SELECT t, site, kind, detail, gateway, node, seq, instrument, id "
                              "FROM alerts", (("site", "=", site), ("t", ">=", since)), limit)
        with self._lock:
            cur = self._cursor()
            cur.execute(self._q(sql), args)
            rows = [_plain(r) for r in cur.fetchall()]
        return [AlertRow(r[0], r[1], r[2], json.loads(r[3]), *r[4:]) for r in rows]

    def rejects(self, *, reason: str | None = None, since: int | None = None,
                limit: int = 1000) -> list[RejectRow]:
        sql, args = _filtered("SELECT received, reason, detail, topic, gateway, node, seq, data, "
                              "id FROM rejects", (("reason", "=", reason),
                                                  ("received", ">=", since)), limit)
        with self._lock:
            cur = self._cursor()
            cur.execute(self._q(sql), args)
            return [RejectRow(*_plain(r)) for r in cur.fetchall()]

    def envelopes(self, after_id: int = 0, batch: int = 500) -> Iterator[EnvelopeRow]:
        sql = self._q(f"SELECT {_ENVELOPE_COLUMNS} FROM envelopes WHERE id > ? "
                      "ORDER BY id LIMIT ?")
        while True:
            with self._lock:
                cur = self._cursor()
                cur.execute(sql, (after_id, batch))
                rows = [_plain(r) for r in cur.fetchall()]
            for r in rows:
                yield EnvelopeRow(r[1], r[2], r[3], r[4], r[5], r[6], r[7], bool(r[8]), r[9],
                                  r[10], id=r[0])
            if len(rows) < batch:
                return
            after_id = rows[-1][0]

    def stored_records(self, batch: int = 5000) -> Iterator[tuple[RecordRow, int]]:
        columns = ", ".join(STORED_COLUMNS)
        first = self._q(f"SELECT {columns}, envelope_id FROM records "
                        "ORDER BY node, seq LIMIT ?")
        after = self._q(f"SELECT {columns}, envelope_id FROM records "
                        "WHERE (node, seq) > (?, ?) ORDER BY node, seq LIMIT ?")
        last: tuple | None = None
        while True:
            with self._lock:
                cur = self._cursor()
                cur.execute(first, (batch,)) if last is None else cur.execute(after,
                                                                              (*last, batch))
                rows = cur.fetchall()
            yield from zip(_record_rows(rows), [r[-1] for r in rows], strict=True)
            if len(rows) < batch:
                return
            last = (bytes(rows[-1][0]), rows[-1][1])

    def count(self, table: str) -> int:
        if table not in TABLES:
            raise ValueError(f"table: unknown table {table!r}")
        with self._lock:
            cur = self._cursor()
            cur.execute(f"SELECT COUNT(*) FROM {table}")
            return cur.fetchone()[0]


_UNREADABLE = RecordRow(*[None] * len(RecordRow._fields))


def _record_rows(fetched: Sequence[Sequence]) -> list[RecordRow]:
    """RecordRows from rows that start with STORED_COLUMNS: those as stored, every other
    field decoded from the record's bytes, as ingest decoded them before storing. Bytes
    changed in the database since may not decode: their other fields are None, and
    `metrotrace verify` reports the row (its tag no longer matches)."""
    fetched = [r if r[5].__class__ is bytes else _plain(r) for r in fetched]
    new = tuple.__new__
    out = []
    for r, d in zip(fetched, decode_many([(r[5], r[6]) for r in fetched]), strict=True):
        if d.__class__ is not RecordRow:
            d = _UNREADABLE
        out.append(new(RecordRow, (r[0], r[1], r[2], r[3], d[4], r[4], d[6], d[7], d[8],
                                   d[9], d[10], d[11], d[12], d[13], d[14], d[15], d[16],
                                   r[5], r[6])))
    return out


def _plain(row: Sequence) -> tuple:
    # PostgreSQL hands BYTEA back as memoryview in some paths; rows carry bytes.
    return tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)


def _filtered(select: str, conditions: tuple, limit: int) -> tuple[str, tuple]:
    where = [f"{column} {op} ?" for column, op, value in conditions if value is not None]
    args = tuple(value for _, _, value in conditions if value is not None)
    sql = select + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id LIMIT ?"
    return sql, (*args, limit)
