"""SQLite backend: the embedded default, one file in WAL mode.

Invariant: a write transaction holds an exclusive flock on `<file>-writelock` and starts
with BEGIN IMMEDIATE, so worker processes on one file take turns: the next writer wakes the
moment the lock is free (SQLite's own busy handler sleeps up to 100 ms between tries,
which would waste most of a second worker's time). A commit is on disk (synchronous=FULL)
before ingest acknowledges the message to the broker.

The lock is what workers on one file take turns at. A group of envelopes that finds it
free takes it at once and binds its records straight into `records`. One that finds it
held uses the wait: it binds its records into this connection's own TEMP table (no lock
on the file), then, with the lock, one INSERT ... SELECT per envelope copies them in C.
Binding 7 values a record from Python is about 40% of the time under the lock; staging
costs a lone worker ~5% more, so it is done only when there is a wait to fill
(docs/server.md, "Two workers on one SQLite file").
"""

from __future__ import annotations

import fcntl
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .rows import STORED_COLUMNS, EnvelopeRow, RecordRow, stored_values
from .sql import SqlStore

BUSY_TIMEOUT_MS = 60_000
_COLUMNS = ", ".join(STORED_COLUMNS)
_RECORD_INSERT_FOR = (f"INSERT INTO records ({_COLUMNS}, envelope_id) "
                      f"VALUES ({', '.join('?' * len(STORED_COLUMNS))}, {{envelope_id}}) "
                      "ON CONFLICT (node, seq) DO NOTHING")
# Untyped columns keep each value as bound; the records table's own column affinities
# then apply on the copy, as they would to the bound values.
_STAGED_TABLE = f"CREATE TEMP TABLE IF NOT EXISTS staged_records ({_COLUMNS})"
_STAGE_INSERT = f"INSERT INTO temp.staged_records VALUES ({', '.join('?' * len(STORED_COLUMNS))})"
# A rowid span per envelope; the WHERE also settles SQLite's INSERT ... SELECT ... ON
# CONFLICT parsing ambiguity. Rows are copied in rowid (= batch) order, so a key repeated
# in an envelope keeps its first copy, as with one INSERT a record.
_RECORD_COPY_FOR = (f"INSERT INTO records ({_COLUMNS}, envelope_id) "
                    f"SELECT {_COLUMNS}, {{envelope_id}} FROM temp.staged_records "
                    "WHERE rowid BETWEEN ? AND ? ON CONFLICT (node, seq) DO NOTHING")

# CPython's sqlite3 (3.11) looks a `bytes` parameter up in its adapter registry and, on a
# miss, asks for `__adapt__` and `__conform__`, raising and clearing AttributeError each
# time: about 0.25 us a parameter, 3 per record. An identity adapter makes that a
# dictionary hit and changes no value bound, for any connection in the process.
# `bytes.__bytes__` (a method without arguments: b itself) is the cheapest identity to
# call: about 2,300 instructions a record fewer than `bytes`, whose constructor parses
# arguments (callgrind, docs/server.md Performance).
if sqlite3.adapters.get((bytes, sqlite3.PrepareProtocol)) in (None, bytes):
    sqlite3.register_adapter(bytes, bytes.__bytes__)


class SqliteStore(SqlStore):
    dialect = "sqlite"

    def __init__(self, path: str | Path, synchronous: str = "FULL") -> None:
        super().__init__()
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                    timeout=BUSY_TIMEOUT_MS / 1000)
        self._write_lock = open(f"{self.path}-writelock", "a")  # noqa: SIM115 (held open)
        # Under the write lock: on a fresh file, switching to WAL while another process
        # does the same fails at once with "database is locked" (no busy wait), so
        # workers starting together would die (server/tests/test_migrations.py).
        fcntl.flock(self._write_lock, fcntl.LOCK_EX)
        try:
            self.conn.execute("PRAGMA journal_mode=WAL")
        finally:
            fcntl.flock(self._write_lock, fcntl.LOCK_UN)
        self.conn.execute(f"PRAGMA synchronous={synchronous}")
        self.conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self._leases: dict[str, Any] = {}  # name -> open lock file holding its flock
        self._held = False  # the write lock, taken by _stage for the transaction after it
        self.staged_groups = 0  # groups that found the lock held and staged their records
        self._migrate()
        self.conn.execute("PRAGMA temp_store=MEMORY")
        self.conn.execute(_STAGED_TABLE)

    def _cursor(self) -> sqlite3.Cursor:
        return self.conn.cursor()

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        with self._lock:
            if not self._held:
                fcntl.flock(self._write_lock, fcntl.LOCK_EX)
            self._held = False
            try:
                cur = self.conn.cursor()
                cur.execute("BEGIN IMMEDIATE")
                try:
                    yield cur
                except BaseException:
                    cur.execute("ROLLBACK")
                    raise
                cur.execute("COMMIT")
            finally:
                fcntl.flock(self._write_lock, fcntl.LOCK_UN)

    def _stage(self, batches: Sequence[tuple[EnvelopeRow, Sequence[RecordRow]]]
               ) -> list[tuple[int, int] | None]:
        """Take the write lock if it is free (then nothing is staged: None per envelope);
        else bind every envelope's records into TEMP staged_records and return each
        envelope's rowid span (a new row's rowid is the largest + 1)."""
        try:
            fcntl.flock(self._write_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._held = True
            return [None] * len(batches)
        except BlockingIOError:
            pass
        self.staged_groups += 1
        cur = self.conn.cursor()
        cur.execute("BEGIN")
        try:
            cur.execute("SELECT coalesce(max(rowid), 0) FROM temp.staged_records")
            first = cur.fetchone()[0] + 1
            spans = []
            for _, records in batches:
                cur.executemany(_STAGE_INSERT, map(stored_values, records))
                spans.append((first, first + len(records) - 1))
                first += len(records)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return spans

    def _unstage(self, staged: list[Any]) -> None:
        if self._held:  # taken by _stage, and no transaction came to release it
            self._held = False
            fcntl.flock(self._write_lock, fcntl.LOCK_UN)
        if any(span is not None for span in staged):
            self.conn.execute("DELETE FROM temp.staged_records")

    def _insert_records(self, cur: Any, records: Sequence[RecordRow], envelope_id: int,
                        staged: tuple[int, int] | None) -> int:
        # The envelope id goes into the statement text (an int, formatted by us): one
        # statement per envelope, and straight in, 7 parameters bound per record.
        before = self.conn.total_changes
        if staged is None:
            cur.executemany(_RECORD_INSERT_FOR.format(envelope_id=int(envelope_id)),
                            map(stored_values, records))
        else:
            cur.execute(_RECORD_COPY_FOR.format(envelope_id=int(envelope_id)), staged)
        return self.conn.total_changes - before

    def try_lease(self, name: str) -> bool:
        # flock on `<file>-lease-<name>`: every process on this file sees it, and the
        # kernel drops it when the holder dies, so a crashed holder never blocks the rest.
        if name in self._leases:
            return True
        if not name.isidentifier():
            raise ValueError(f"lease name: expected an identifier, got {name!r}")
        f = open(f"{self.path}-lease-{name}", "a")  # noqa: SIM115 (held open while leased)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            return False
        self._leases[name] = f
        return True

    def close(self) -> None:
        self.conn.close()
        self._write_lock.close()
        for f in self._leases.values():
            f.close()
        self._leases.clear()

