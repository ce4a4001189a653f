"""PostgreSQL backend (psycopg 3): production, many workers on one database.

Invariant: records go in by COPY, straight into the table when none of their keys is
stored yet, else into a per-transaction temporary table and then one INSERT ... ON
CONFLICT DO NOTHING, so a batch costs a few round trips, not one per record;
schema migrations take a transaction-scoped advisory lock so concurrent starts are safe.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from operator import itemgetter
from typing import Any

import psycopg

from .rows import STORED_COLUMNS, RecordRow, stored_values
from .sql import SqlStore

_MIGRATION_LOCK = 0x6D657472  # "metr": advisory lock id for schema changes
_COLUMNS = ", ".join(STORED_COLUMNS) + ", envelope_id"
_KEY = itemgetter(0, 1)  # (node, seq)


class PostgresStore(SqlStore):
    dialect = "postgres"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.conn = psycopg.connect(url, autocommit=True)
        self._leases: set[str] = set()
        self._migrate()

    def _q(self, sql: str) -> str:
        return sql.replace("?", "%s")

    def _cursor(self) -> psycopg.Cursor:
        return self.conn.cursor()

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        with self._lock, self.conn.transaction(), self.conn.cursor() as cur:
            yield cur

    def _lock_schema(self, cur: Any) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))

    def _insert_records(self, cur: Any, records: Sequence[RecordRow], envelope_id: int,
                        staged: Any) -> int:
        # Key order avoids lock-order deadlocks between workers inserting the same keys.
        rows = sorted(records, key=_KEY)
        # New records, the usual case: COPY straight into the table, under a savepoint. A
        # key already there (a resend, a forgery, a key twice in this batch) fails the
        # whole COPY; the batch then goes the way that skips conflicts. Straight in costs
        # the server about half: no temporary rows, no sort, no speculative insertion.
        try:
            with self.conn.transaction(), cur.copy(f"COPY records ({_COLUMNS}) FROM STDIN") \
                    as copy:
                for row in rows:
                    copy.write_row((*stored_values(row), envelope_id))
            return len(rows)
        except psycopg.errors.UniqueViolation:
            pass
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS incoming "
                    "(LIKE records INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
        with cur.copy(f"COPY incoming ({_COLUMNS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row((*stored_values(row), envelope_id))
        # DISTINCT ON keeps the first copy of a key repeated inside one batch; the later
        # copy is then judged (duplicate or forgery) against the stored one.
        cur.execute(f"INSERT INTO records ({_COLUMNS}) "
                    f"SELECT DISTINCT ON (node, seq) {_COLUMNS} FROM incoming "
                    # rows of earlier envelopes of the same transaction are still there
                    "WHERE envelope_id = %s "
                    "ORDER BY node, seq, ctid ON CONFLICT (node, seq) DO NOTHING",
                    (envelope_id,))
        return cur.rowcount

    def try_lease(self, name: str) -> bool:
        # A session-level advisory lock: held by this connection until it closes, dropped
        # by the server when the connection (or the process holding it) dies.
        if name in self._leases:
            return True
        key = int.from_bytes(hashlib.sha256(f"metrotrace:{name}".encode()).digest()[:8],
                             "big", signed=True)
        with self._lock:
            held = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]
        if held:
            self._leases.add(name)
        return bool(held)

    def close(self) -> None:
        # Release leases before closing: the server drops a closed session's locks only
        # when its backend notices the hang-up, so another worker could miss its turn.
        if self._leases and not self.conn.closed:
            with self._lock, suppress(psycopg.Error):  # a dead connection holds no locks
                self.conn.execute("SELECT pg_advisory_unlock_all()")
        self._leases.clear()
        self.conn.close()
