"""The durable outbox: accepted node records until the broker has acknowledged them.

SQLite in WAL mode. Tables:

    seen     (node, seq) -> SHA-256 of the record bytes, and when it arrived: what was
             accepted (pruned, see below)
    pending  accepted records not yet in a batch, oldest first
    batches  sealed envelopes (COSE_Sign1 bytes) not yet acknowledged by the broker,
             with the arrival time of their oldest record
    marks    node -> highest seq acknowledged to the node (gateway/acks.py)
    firmware node -> firmware id last reported (the birth message's inventory)
    alerts   alerts not yet acknowledged by the broker (kept across restarts)
    meta     the last batch seq handed out

Writes of a chunk are staged in memory and go to SQLite in one `executemany` per table
just before COMMIT; reads inside the transaction see the staged rows.

Pruning `seen` (`prune`). A digest may go only when all three hold: its seq is at or
below the node's acknowledgement mark (the node has been told to delete it, so only a
resend whose ack was lost can bring it back, within minutes); it is not among the
node's newest `keep_per_node` digests; and it arrived before both `now - keep_ms` and
the oldest record still in the outbox (so every record in the outbox keeps its
digest). A record at or below the mark whose digest is gone is refused as `stale`
(verify.py): never stored or forwarded again, so pruning never lets an old
(node, seq) through twice, nor a forgery of one; what is lost for such old records
is only the distinction between a harmless resend and a forgery.

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
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (node BLOB NOT NULL, seq INTEGER NOT NULL,
    digest BLOB NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (node, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending (id INTEGER PRIMARY KEY, node BLOB NOT NULL,
    seq INTEGER NOT NULL, record BLOB NOT NULL, tag BLOB NOT NULL,
    received INTEGER NOT NULL, t INTEGER NOT NULL, tq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS batches (seq INTEGER PRIMARY KEY, envelope BLOB NOT NULL,
    records INTEGER NOT NULL, backfill INTEGER NOT NULL, received INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
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


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Outbox:
    def __init__(self, path: str | Path, max_records: int, synchronous: str = "full",
                 clock: Callable[[], int] = now_ms) -> None:
        self.max_records = max_records
        self.clock = clock
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
        self._db.executescript(SCHEMA)
        # One connection shared by the ingress and uplink threads; the lock makes each
        # transaction whole.
        self.lock = threading.RLock()
        self._in_txn = False
        self._staged_seen: dict[tuple[bytes, int], bytes] = {}
        self._seen_rows: list[tuple] = []
        self._pending_rows: list[tuple] = []
        self._cache: dict[tuple[bytes, int], bytes] = {}  # digests read this transaction
        self._spans: dict[bytes, tuple[int, int]] = {}  # node -> seq range read into _cache
        self._now = 0
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
            self._now = self.clock()
            pending, batched = self._pending, self._batched
            try:
                yield
                self._flush()
            except BaseException:
                self._db.execute("ROLLBACK")
                self._pending, self._batched = pending, batched
                raise
            else:
                self._db.execute("COMMIT")
            finally:
                self._in_txn = False
                self._staged_seen.clear()
                self._seen_rows.clear()
                self._pending_rows.clear()
                self._cache.clear()
                self._spans.clear()

    def _flush(self) -> None:
        if self._seen_rows:
            self._db.executemany("INSERT INTO seen VALUES (?, ?, ?, ?)", self._seen_rows)
        if self._pending_rows:
            self._db.executemany(
                "INSERT INTO pending (node, seq, record, tag, received, t, tq) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", self._pending_rows)

    # -- SeenRecords (verify.py) -----------------------------------------------------
    def digest(self, node: bytes, seq: int) -> bytes | None:
        key = (node, seq)
        found = self._staged_seen.get(key) or self._cache.get(key)
        if found is not None or seq > self._top.get(node, -1):
            return found
        span = self._spans.get(node)
        if span is not None and span[0] <= seq <= span[1]:
            return None  # prefetched: not there
        row = self._db.execute("SELECT digest FROM seen WHERE node=? AND seq=?",
                               key).fetchone()
        return row[0] if row else None

    def prefetch(self, wanted: Iterable[tuple[bytes, int]]) -> None:
        """Read the digests of these (node, seq) in one query per node (inside a
        transaction): a go-back-N resend of a thousand records costs one read."""
        spans: dict[bytes, list[int]] = {}
        for node, seq in wanted:
            if seq <= self._top.get(node, -1):
                span = spans.setdefault(node, [seq, seq])
                span[0], span[1] = min(span[0], seq), max(span[1], seq)
        for node, (low, high) in spans.items():
            self._cache.update(((node, seq), digest) for seq, digest in self._db.execute(
                "SELECT seq, digest FROM seen WHERE node=? AND seq BETWEEN ? AND ?",
                (node, low, high)))
            self._spans[node] = (low, high)

    def remember(self, node: bytes, seq: int, digest: bytes) -> None:
        self._staged_seen[(node, seq)] = digest
        self._seen_rows.append((node, seq, digest, self._now))
        if seq > self._top.get(node, -1):
            self._top[node] = seq

    def prune(self, keep_per_node: int, keep_ms: int) -> int:
        """Forget old digests (policy in the module docstring); returns how many."""
        with self.transaction():
            cutoff = self._now - keep_ms
            oldest = self._db.execute(
                "SELECT min(r) FROM (SELECT min(received) AS r FROM pending "
                "UNION ALL SELECT min(received) FROM batches)").fetchone()[0]
            if oldest is not None:
                cutoff = min(cutoff, oldest)
            removed = 0
            for node, mark in self._db.execute("SELECT node, mark FROM marks").fetchall():
                row = self._db.execute(
                    "SELECT seq FROM seen WHERE node=? ORDER BY seq DESC LIMIT 1 OFFSET ?",
                    (node, keep_per_node)).fetchone()
                if row is None:
                    continue  # no more than keep_per_node digests
                removed += self._db.execute(
                    "DELETE FROM seen WHERE node=? AND seq<=? AND at<?",
                    (node, min(mark, row[0]), cutoff)).rowcount
            return removed

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
        """Stage a record (inside a transaction); it is written just before COMMIT."""
        if not self._in_txn:
            raise RuntimeError("add() belongs inside transaction()")
        self._pending_rows.append((node, seq, record, tag, received, t, tq))
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
        """Move `records` from pending into the envelope `seq`, in one transaction
        (or in the caller's, which may seal several)."""
        with self.transaction():
            self._db.execute(
                "INSERT INTO batches (seq, envelope, records, backfill, received) "
                "VALUES (?, ?, ?, ?, ?)",
                (seq, envelope, len(records), backfill, min(r.received for r in records)))
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
        return self.delete_batches([seq])

    def delete_batches(self, seqs: list[int]) -> int:
        """The broker acknowledged these batches: forget them in one transaction.
        Returns how many records they held."""
        with self.transaction():
            removed = 0
            for seq in seqs:
                row = self._db.execute("SELECT records FROM batches WHERE seq=?",
                                       (seq,)).fetchone()
                if row is not None:
                    self._db.execute("DELETE FROM batches WHERE seq=?", (seq,))
                    removed += row[0]
            self._batched -= removed
            return removed

    def replace_envelope(self, seq: int, envelope: bytes) -> None:
        """Batch `seq` sealed again (its key was revoked): same records, new envelope."""
        with self.transaction():
            self._db.execute("UPDATE batches SET envelope=? WHERE seq=?", (envelope, seq))

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

    # -- alerts, kept until the broker has them ---------------------------------------
    def add_alert(self, body: str) -> int:
        with self.transaction():
            return self._db.execute("INSERT INTO alerts (body) VALUES (?)", (body,)).lastrowid

    def alerts(self) -> list[tuple[int, str]]:
        with self.lock:
            return self._db.execute("SELECT id, body FROM alerts ORDER BY id").fetchall()

    def delete_alert(self, alert_id: int) -> None:
        with self.transaction():
            self._db.execute("DELETE FROM alerts WHERE id=?", (alert_id,))
