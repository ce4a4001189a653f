"""The durable outbox: accepted node records until the broker has acknowledged them.

SQLite in WAL mode. Tables:

    seen     (node, seq) -> the record's node tag (its digest: gateway/verify.py), and
             when it arrived: what was accepted (pruned, see below); stored as one
             block per node per commit (gateway/seen.py)
    inbox    accepted records not yet in a batch: one row per commit, its body the
             columns of a Pending run (gateway/pending.py), oldest row first;
             meta `inbox_done` counts the records of the oldest row already sealed
    batches  sealed envelopes (COSE_Sign1 bytes) not yet acknowledged by the broker,
             with the arrival time of their oldest record
    marks    node -> highest seq acknowledged to the node (gateway/acks.py)
    firmware node -> firmware id last reported (the birth message's inventory)
    alerts   alerts not yet acknowledged by the broker (kept across restarts)
    meta     the last batch seq handed out; inbox_done

Writes of a chunk are staged in memory and go to SQLite just before COMMIT: one
`seen` block per node and one `inbox` row for all the chunk's records; reads inside
the transaction see the staged rows. So a chunk costs a few row inserts, not a few
per record.

The inbox rows this process wrote are also kept in memory (up to `cache_records`
records), so sealing takes them from there instead of reading back what it just
wrote; after a restart, or past the bound, it reads the rows from SQLite. SQLite is
always the durable copy; the memory copy changes only after a COMMIT (a rollback
drops it and it is read again).

Pruning `seen` (`prune`, block by block: gateway/seen.py). A digest may go only when
all three hold: its seq is at or
below the node's acknowledgement mark (the node has been told to delete it, so only a
resend whose ack was lost can bring it back, within minutes); it is not among the
node's newest `keep_per_node` digests; and it arrived before both `now - keep_ms` and
the oldest record still in the outbox (so every record in the outbox keeps its
digest). A record at or below the mark whose digest is gone is refused as `stale`
(verify.py): never stored or forwarded again, so pruning never lets an old
(node, seq) through twice, nor a forgery of one; what is lost for such old records
is only the distinction between a harmless resend and a forgery.

Invariants:
- every accepted record is, at every commit, either in `inbox` (past `inbox_done`) or
  inside exactly one envelope in `batches`; sealing moves records in one transaction
  (the batch row in, the inbox rows out or `inbox_done` on), and a batch row is
  deleted only when its PUBACK arrives (`delete_batch`). A kill -9 at any point loses
  nothing committed; with synchronous=FULL neither does a power cut lose anything
  acknowledged (`transaction(acked=...)`: sealing and deleting are not fsynced, as
  nothing is acknowledged on them; losing them only publishes a batch again).
- `seen` and `inbox` change in the same transaction, so a record is never
  remembered as accepted without being stored.
- depth (records in inbox and in batches) never exceeds the bound: `room()` says
  how many more fit, and the caller refuses the rest (OutboxFull policy: refuse new
  records and alert, never drop stored ones).

Also the SeenRecords of gateway/verify.py: `digest`, `remember`, `remember_run` and
`highest` run inside the caller's transaction.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import seen
from .pending import Pending

SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (id INTEGER PRIMARY KEY, received INTEGER NOT NULL,
    records INTEGER NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS batches (seq INTEGER PRIMARY KEY, envelope BLOB NOT NULL,
    records INTEGER NOT NULL, backfill INTEGER NOT NULL, received INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS marks (node BLOB PRIMARY KEY, mark INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS firmware (node BLOB PRIMARY KEY, fw TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
CACHE_RECORDS = 50_000  # pending records kept in memory as well (a few MB)


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
                 clock: Callable[[], int] = now_ms,
                 cache_records: int = CACHE_RECORDS) -> None:
        self.max_records = max_records
        self.clock = clock
        self.cache_records = cache_records
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._full = synchronous == "full"
        self._db.execute(f"PRAGMA synchronous={'FULL' if self._full else 'NORMAL'}")
        self._db.executescript(SCHEMA)
        # One connection shared by the ingress and uplink threads; the lock makes each
        # transaction whole.
        self.lock = threading.RLock()
        self._in_txn = False
        self._staged = Pending.empty()
        self._now = 0
        self._queue: deque[tuple[int, Pending]] = deque()  # the oldest inbox rows
        self._migrate()
        self._seen = seen.Seen(self._db)
        self._load()

    def _load(self) -> None:
        """Counts and the inbox position from SQLite; the memory copy starts empty."""
        self._done = self._meta("inbox_done")
        self._pending = self._db.execute(
            "SELECT coalesce(sum(records), 0) FROM inbox").fetchone()[0] - self._done
        self._batched = self._db.execute(
            "SELECT coalesce(sum(records), 0) FROM batches").fetchone()[0]
        self._queue.clear()
        self._queued = 0  # records in _queue, sealed ones included
        self._whole = self._pending == 0  # _queue holds every inbox row

    def _meta(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return row[0] if row else 0

    def _migrate(self) -> None:
        """Outboxes written before the inbox table kept one `pending` row per record,
        and one `seen` row per record."""
        with self.lock:
            self._db.execute("BEGIN IMMEDIATE")
            if self._db.execute("SELECT 1 FROM sqlite_master WHERE name='pending'").fetchone():
                rows = self._db.execute(
                    "SELECT record, tag, t, tq, received FROM pending ORDER BY id").fetchall()
                if rows:
                    run = Pending(*map(list, zip(*rows, strict=True)))
                    self._db.execute(
                        "INSERT INTO inbox (received, records, body) VALUES (?, ?, ?)",
                        (min(run.received), len(run), run.encode()))
                self._db.execute("DROP TABLE pending")
            seen.create(self._db)
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self.lock:
            self._db.close()

    @contextmanager
    def transaction(self, acked: bool = True) -> Iterator[None]:
        """One transaction (nested ones join the enclosing one). `acked`: something is
        acknowledged on the strength of this commit (to a node), so with
        synchronous="full" it is fsynced before it returns. Commits nothing is
        acknowledged on (sealing, deleting after a PUBACK, pruning) are not: a power cut
        can undo the last of them, which republishes a batch (duplicates the server
        absorbs on (node, seq)) and never loses a record. The WAL is written in order,
        so what survives is always a prefix of the commits."""
        with self.lock:
            if self._in_txn:  # nested: part of the enclosing transaction
                yield
                return
            lazy = self._full and not acked
            if lazy:
                self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                with self._transaction():
                    yield
            finally:
                if lazy:
                    self._db.execute("PRAGMA synchronous=FULL")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self.lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._in_txn = True
            self._now = self.clock()
            try:
                yield
                row_id = self._flush()
            except BaseException:
                self._db.execute("ROLLBACK")
                self._load()  # the memory copy may have moved on: read it again
                raise
            else:
                self._db.execute("COMMIT")
                if row_id is not None:
                    self._cache_row(row_id)
            finally:
                self._in_txn = False
                self._seen.reset()
                self._staged = Pending.empty()

    def _flush(self) -> int | None:
        self._seen.flush(self._now)
        staged = self._staged
        if not staged:
            return None
        return self._db.execute(
            "INSERT INTO inbox (received, records, body) VALUES (?, ?, ?)",
            (min(staged.received), len(staged), staged.encode())).lastrowid

    def _cache_row(self, row_id: int) -> None:
        """A committed inbox row: keep it in memory too, if the copy is whole and small."""
        if self._whole and self._queued + len(self._staged) <= self.cache_records:
            self._queue.append((row_id, self._staged))
            self._queued += len(self._staged)
        else:
            self._whole = False

    # -- SeenRecords (verify.py), kept in `seen` (gateway/seen.py) ---------------------
    def digest(self, node: bytes, seq: int) -> bytes | None:
        return self._seen.digest(node, seq)

    def prefetch(self, wanted: Iterable[tuple[bytes, int]]) -> None:
        """Read the digests of these (node, seq) in one query per node (inside a
        transaction): a go-back-N resend of a thousand records costs one read."""
        self._seen.prefetch(wanted)

    def remember(self, node: bytes, seq: int, digest: bytes) -> None:
        self._seen.remember(node, seq, digest)

    def remember_run(self, node: bytes, seqs: list[int], digests: list[bytes]) -> None:
        self._seen.remember_run(node, seqs, digests)

    def highest(self, node: bytes) -> int:
        return self._seen.highest(node)

    def prune(self, keep_per_node: int, keep_ms: int) -> int:
        """Forget old digests (policy in the module docstring); returns how many."""
        with self.transaction(acked=False):
            cutoff = self._now - keep_ms
            oldest = self._db.execute(
                "SELECT min(r) FROM (SELECT min(received) AS r FROM inbox "
                "UNION ALL SELECT min(received) FROM batches)").fetchone()[0]
            if oldest is not None:
                cutoff = min(cutoff, oldest)
            return self._seen.prune(self.marks(), keep_per_node, cutoff)

    # -- records ---------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return self._pending + self._batched

    @property
    def pending_count(self) -> int:
        return self._pending

    def room(self) -> int:
        return max(0, self.max_records - self.depth)

    def _staging(self, n: int) -> Pending:
        if not self._in_txn:
            raise RuntimeError("add() belongs inside transaction()")
        self._pending += n
        return self._staged

    def add(self, node: bytes, seq: int, record: bytes, tag: bytes, received: int, t: int,
            tq: int) -> None:
        """Stage a record (inside a transaction); it is written just before COMMIT."""
        self._staging(1).append(record, tag, t, tq, received)

    def add_run(self, run: Pending) -> None:
        """Stage many records at once (inside a transaction)."""
        self._staging(len(run)).extend(run)

    def oldest_pending(self) -> int | None:
        """Receive time of the oldest record waiting for a batch."""
        with self.lock:
            self._fill(1)
            return self._queue[0][1].received[self._done] if self._queue else None

    def _fill(self, limit: int) -> None:
        """Have at least `limit` pending records in memory (or all there are): read the
        inbox rows after those in memory, oldest first."""
        if self._queued - self._done >= limit or self._whole:
            return
        after = self._queue[-1][0] if self._queue else 0
        for row_id, body in self._db.execute(
                "SELECT id, body FROM inbox WHERE id > ? ORDER BY id", (after,)):
            run = Pending.decode(body)
            self._queue.append((row_id, run))
            self._queued += len(run)
            if self._queued - self._done >= limit:
                return
        self._whole = True

    def take_pending(self, limit: int) -> Pending:
        """The oldest pending records, at most `limit`, in arrival order (from memory;
        what is not there yet is read from SQLite into it)."""
        with self.lock:
            self._fill(limit)
            out, skip = Pending.empty(), self._done
            for _, run in self._queue:
                if len(out) >= limit:
                    break
                out.extend(run[skip:skip + limit - len(out)])
                skip = 0
            return out

    def _consume(self, n: int) -> None:
        """The oldest n pending records are in a batch now (inside a transaction)."""
        while n:
            if not self._queue:
                raise RuntimeError("sealed() takes records from take_pending()")
            row_id, run = self._queue[0]
            left = len(run) - self._done
            if n < left:
                self._done += n
                break
            self._db.execute("DELETE FROM inbox WHERE id=?", (row_id,))
            self._queue.popleft()
            self._queued -= len(run)
            self._done = 0
            n -= left
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('inbox_done', ?)", (self._done,))

    # -- batches ---------------------------------------------------------------------
    def next_batch_seq(self) -> int:
        return self._meta("batch_seq") + 1

    def sealed(self, seq: int, envelope: bytes, records: Pending, backfill: bool) -> None:
        """Move `records` (the oldest pending, from take_pending) into the envelope
        `seq`, in one transaction (or in the caller's, which may seal several)."""
        with self.transaction(acked=False):
            self._db.execute(
                "INSERT INTO batches (seq, envelope, records, backfill, received) "
                "VALUES (?, ?, ?, ?, ?)",
                (seq, envelope, len(records), backfill, min(records.received)))
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('batch_seq', ?)", (seq,))
            self._consume(len(records))
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
        with self.transaction(acked=False):
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
        with self.transaction(acked=False):
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
