"""SQLite backend: the embedded default, one file in WAL mode.

Invariant: a write transaction holds an exclusive flock on `<file>-writelock` and starts
with BEGIN IMMEDIATE, so worker processes on one file take turns: the next writer wakes the
moment the lock is free (SQLite's own busy handler sleeps up to 100 ms between tries,
which would waste most of a second worker's time). A commit is on disk (synchronous=FULL)
before ingest acknowledges the message to the broker.
"""

from __future__ import annotations

import fcntl
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .rows import STORED_COLUMNS, RecordRow, stored_values
from .sql import SqlStore

BUSY_TIMEOUT_MS = 60_000
_RECORD_INSERT_FOR = (f"INSERT INTO records ({', '.join(STORED_COLUMNS)}, envelope_id) "
                      f"VALUES ({', '.join('?' * len(STORED_COLUMNS))}, {{envelope_id}}) "
                      "ON CONFLICT (node, seq) DO NOTHING")

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
        self._migrate()

    def _cursor(self) -> sqlite3.Cursor:
        return self.conn.cursor()

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        with self._lock:
            fcntl.flock(self._write_lock, fcntl.LOCK_EX)
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

    def _insert_records(self, cur: Any, records: Sequence[RecordRow], envelope_id: int) -> int:
        # The envelope id goes into the statement text (an int, formatted by us): one
        # statement per envelope, and 7 parameters bound per record (STORED_COLUMNS).
        before = self.conn.total_changes
        cur.executemany(_RECORD_INSERT_FOR.format(envelope_id=int(envelope_id)),
                        map(stored_values, records))
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

