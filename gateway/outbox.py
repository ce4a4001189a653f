"""The durable outbox: accepted node records until the broker has acknowledged them.

SQLite in WAL mode. Tables:

    seen     (node, seq) -> SHA-256 of the record bytes: what was ever accepted
    pending  accepted records not yet in a batch, oldest first
    batches  sealed envelopes (COSE_Sign1 bytes) not yet acknowledged by the broker
    marks    node -> highest seq acknowledged to the node (gateway/acks.py)
    firmware node -> firmware id last reported (the birth message's inventory)
    meta     the last batch seq handed out

Invariants:
- every accepted record is, at every commit, either in `pending` or inside exactly one
  envelope in `batches`; sealing moves records in one transaction, and a batch row is
  deleted only when its PUBACK arrives (`delete_batch`). A kill -9 at any point loses
  nothing committed; with synchronous=FULL neither does a power cut.
- `seen` and `pending` change in the same transaction, so a record is never
  remembered as accepted without being stored.
- depth (records in pending and in batches) never exceeds the bound: `room()` says
  how many more fit, and the caller refuses the rest (OutboxFull policy: refuse new
  records and alert, never drop stored ones).

Also the SeenRecords of gateway/verify.py: `digest` and `remember` run inside the
caller's transaction.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (node BLOB NOT NULL, seq INTEGER NOT NULL,
    digest BLOB NOT NULL, PRIMARY KEY (node, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending (id INTEGER PRIMARY KEY, node BLOB NOT NULL,
    seq INTEGER NOT NULL, record BLOB NOT NULL, tag BLOB NOT NULL,
    received INTEGER NOT NULL, t INTEGER NOT NULL, tq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS batches (seq INTEGER PRIMARY KEY, envelope BLOB NOT NULL,
    records INTEGER NOT NULL, backfill INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS marks (node BLOB PRIMARY KEY, mark INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS firmware (node BLOB PRIMARY KEY, fw TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class PendingRecord:
    id: int
    record: bytes
    tag: bytes
    received: int
    t: int
    tq: int


@dataclass(frozen=True)
class SealedBatch:
    seq: int
    envelope: bytes
    records: int
    backfill: bool


class Outbox:
    def __init__(self, path: str | Path, max_records: int, synchronous: str = "full") -> None:
        self.max_records = max_records
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
        self._db.executescript(SCHEMA)
        # One connection shared by the ingress and uplink threads; the lock makes each
        # transaction whole.
        self.lock = threading.RLock()
        self._in_txn = False
        self._pending = self._db.execute("SELECT count(*) FROM pending").fetchone()[0]
        self._batched = self._db.execute(
            "SELECT coalesce(sum(records), 0) FROM batches").fetchone()[0]
        # Highest seq remembered per node: a seq above it cannot be in `seen`, which
        # spares a lookup for every new record (a stale, too-high value only costs one).
        self._top = dict(self._db.execute("SELECT node, max(seq) FROM seen GROUP BY node"))

    def close(self) -> None:
        with self.lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.lock:
            if self._in_txn:  # nested: part of the enclosing transaction
                yield
                return
            self._db.execute("BEGIN IMMEDIATE")
            self._in_txn = True
            pending, batched = self._pending, self._batched
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                self._pending, self._batched = pending, batched
                raise
            else:
                self._db.execute("COMMIT")
            finally:
                self._in_txn = False

    # -- SeenRecords (verify.py) -----------------------------------------------------
    def digest(self, node: bytes, seq: int) -> bytes | None:
        if seq > self._top.get(node, -1):
            return None
        row = self._db.execute("SELECT digest FROM seen WHERE node=? AND seq=?",
                               (node, seq)).fetchone()
        return row[0] if row else None

    def remember(self, node: bytes, seq: int, digest: bytes) -> None:
        self._db.execute("INSERT INTO seen VALUES (?, ?, ?)", (node, seq, digest))
        if seq > self._top.get(node, -1):
            self._top[node] = seq

    # -- records ---------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return self._pending + self._batched

    @property
    def pending_count(self) -> int:
        return self._pending

    def room(self) -> int:
        return max(0, self.max_records - self.depth)

    def add(self, node: bytes, seq: int, record: bytes, tag: bytes, received: int, t: int,
            tq: int) -> None:
        self._db.execute(
            "INSERT INTO pending (node, seq, record, tag, received, t, tq) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)", (node, seq, record, tag, received, t, tq))
        self._pending += 1

    def oldest_pending(self) -> int | None:
        """Receive time of the oldest record waiting for a batch."""
        row = self._db.execute("SELECT received FROM pending ORDER BY id LIMIT 1").fetchone()
        return row[0] if row else None

    def take_pending(self, limit: int) -> list[PendingRecord]:
        rows = self._db.execute(
            "SELECT id, record, tag, received, t, tq FROM pending ORDER BY id LIMIT ?",
            (limit,))
        return [PendingRecord(*row) for row in rows]

    # -- batches ---------------------------------------------------------------------
    def next_batch_seq(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE name='batch_seq'").fetchone()
        return (row[0] if row else 0) + 1

    def sealed(self, seq: int, envelope: bytes, records: list[PendingRecord],
               backfill: bool) -> None:
        """Move `records` from pending into the envelope `seq`, in one transaction."""
        with self.transaction():
            self._db.execute("INSERT INTO batches (seq, envelope, records, backfill) "
                             "VALUES (?, ?, ?, ?)", (seq, envelope, len(records), backfill))
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('batch_seq', ?)", (seq,))
            self._db.execute(
                "DELETE FROM pending WHERE id BETWEEN ? AND ?", (records[0].id, records[-1].id))
            self._pending -= len(records)
            self._batched += len(records)

    def batches_after(self, seq: int, limit: int) -> list[SealedBatch]:
        with self.lock:
            rows = self._db.execute(
                "SELECT seq, envelope, records, backfill FROM batches WHERE seq > ? "
                "ORDER BY seq LIMIT ?", (seq, limit)).fetchall()
        return [SealedBatch(s, e, n, bool(b)) for s, e, n, b in rows]

    def batch(self, seq: int) -> SealedBatch | None:
        found = self.batches_after(seq - 1, 1)
        return found[0] if found and found[0].seq == seq else None

    def delete_batch(self, seq: int) -> int:
        """The broker acknowledged batch `seq`: forget it. Returns its record count."""
        with self.transaction():
            row = self._db.execute("SELECT records FROM batches WHERE seq=?", (seq,)).fetchone()
            if row is None:
                return 0
            self._db.execute("DELETE FROM batches WHERE seq=?", (seq,))
            self._batched -= row[0]
            return row[0]

    # -- acknowledgement marks and firmware inventory --------------------------------
    def marks(self) -> dict[bytes, int]:
        return dict(self._db.execute("SELECT node, mark FROM marks"))

    def save_marks(self, marks: dict[bytes, int]) -> None:
        self._db.executemany("INSERT OR REPLACE INTO marks VALUES (?, ?)", marks.items())

    def firmware(self) -> dict[bytes, str]:
        with self.lock:
            return dict(self._db.execute("SELECT node, fw FROM firmware"))

    def set_firmware(self, node: bytes, fw: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO firmware VALUES (?, ?)", (node, fw))
